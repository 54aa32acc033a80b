//! One replica's pair of files: the block data and the meta file holding its
//! chunk checksums. [`ReplicaWriter`] builds or reopens a replica and moves
//! it to `finalized/`; [`ReplicaReader`] serves ranges of one.
//!
//! Writes are positional: a replica reopened for an append or a recovery
//! is first cut to the length asked for (its last partial chunk's checksum
//! recomputed from the bytes on disk), and a packet that continues a
//! partial chunk rewrites that chunk's stored checksum, extended with
//! [`ChecksumKind::extend`] rather than by reading the chunk back.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use rdfs_common::checksum::{CHECKSUM_SIZE, DataChecksum, META_HEADER_LEN, MetaHeader};
use rdfs_common::ids::BlockName;

use crate::dataset::WriterLease;
use crate::error::DatanodeError;
use crate::io_hints;

pub fn block_file_name(block_id: i64) -> String {
    format!("blk_{block_id}")
}

pub fn meta_file_name(block_id: i64, generation_stamp: u64) -> String {
    format!("blk_{block_id}_{generation_stamp}.meta")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatanodeError + '_ {
    move |source| DatanodeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where chunk `index`'s checksum lives in the meta file.
fn checksum_offset(index: u64) -> u64 {
    META_HEADER_LEN as u64 + index * CHECKSUM_SIZE as u64
}

/// A replica being written (in `rbw/`), or reopened to be cut short and
/// finalized by a block recovery (wherever it lies).
pub struct ReplicaWriter {
    pub name: BlockName,
    pub volume: usize,
    block_path: PathBuf,
    meta_path: PathBuf,
    block_file: File,
    meta_file: File,
    checksum: DataChecksum,
    written: u64,
    /// The CRC of the trailing partial chunk's bytes, when the replica ends
    /// in the middle of a chunk.
    tail_crc: Option<u32>,
    writeback_from: u64,
    sync_behind: u64,
    /// A write or sync failed: the volume may be failing, and whoever
    /// releases this replica should have it checked.
    io_failed: bool,
    /// The write session's hold on the replica, handed back to the dataset
    /// when the writer is finalized, released or aborted.
    pub(crate) lease: Option<WriterLease>,
}

impl ReplicaWriter {
    pub fn create(
        name: BlockName,
        volume: usize,
        rbw_dir: &Path,
        checksum: DataChecksum,
        sync_behind: u64,
    ) -> Result<Self, DatanodeError> {
        let block_path = rbw_dir.join(block_file_name(name.block_id));
        let meta_path = rbw_dir.join(meta_file_name(name.block_id, name.generation_stamp));
        let block_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&block_path)
            .map_err(io_err(&block_path))?;
        let meta_file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&meta_path)
        {
            Ok(file) => file,
            Err(err) => {
                let _ = std::fs::remove_file(&block_path);
                return Err(DatanodeError::Io {
                    path: meta_path,
                    source: err,
                });
            }
        };
        if let Err(err) = meta_file.write_all_at(&MetaHeader::new(checksum).encode(), 0) {
            let _ = std::fs::remove_file(&block_path);
            let _ = std::fs::remove_file(&meta_path);
            return Err(DatanodeError::Io {
                path: meta_path,
                source: err,
            });
        }
        Ok(Self {
            name,
            volume,
            block_path,
            meta_path,
            block_file,
            meta_file,
            checksum,
            written: 0,
            tail_crc: None,
            writeback_from: 0,
            sync_behind,
            io_failed: false,
            lease: None,
        })
    }

    /// Reopens an existing replica's files at `length` (an append, a
    /// pipeline or block recovery): both files are cut to that length and
    /// the last partial chunk's checksum is recomputed from the bytes on
    /// disk. `name` carries the generation stamp the replica will have;
    /// the meta file keeps its current name until [`Self::finalize`].
    pub fn open(
        name: BlockName,
        volume: usize,
        block_path: &Path,
        meta_path: &Path,
        length: u64,
        sync_behind: u64,
    ) -> Result<Self, DatanodeError> {
        let corrupt = |reason: String| DatanodeError::CorruptReplica {
            block: name.to_string(),
            reason,
        };
        let open = |path: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(io_err(path))
        };
        let block_file = open(block_path)?;
        let meta_file = open(meta_path)?;
        let header = read_header(&meta_file, meta_path).map_err(corrupt)?;
        let checksum = header.checksum();
        let bpc = checksum.bytes_per_checksum;
        let block_len = block_file.metadata().map_err(io_err(block_path))?.len();
        let meta_len = meta_file.metadata().map_err(io_err(meta_path))?.len();
        if block_len < length {
            return Err(corrupt(format!(
                "block file has {block_len} bytes, {length} are needed"
            )));
        }
        let needed = header.meta_file_len(length);
        // The last chunk's checksum is recomputed below, so a meta file one
        // checksum short of a partial last chunk is fine.
        let needed_whole = checksum_offset(length / u64::from(bpc));
        if meta_len < needed_whole {
            return Err(corrupt(format!(
                "meta file has {meta_len} bytes, {needed} are needed for {length} bytes of data"
            )));
        }
        block_file.set_len(length).map_err(io_err(block_path))?;
        meta_file.set_len(needed).map_err(io_err(meta_path))?;
        let tail = length % u64::from(bpc);
        let tail_crc = if tail == 0 {
            None
        } else {
            let start = length - tail;
            let mut bytes = vec![0u8; tail as usize];
            block_file
                .read_exact_at(&mut bytes, start)
                .map_err(io_err(block_path))?;
            let crc = checksum.kind.checksum(&bytes);
            meta_file
                .write_all_at(&crc.to_be_bytes(), checksum_offset(start / u64::from(bpc)))
                .map_err(io_err(meta_path))?;
            Some(crc)
        };
        Ok(Self {
            name,
            volume,
            block_path: block_path.to_path_buf(),
            meta_path: meta_path.to_path_buf(),
            block_file,
            meta_file,
            checksum,
            written: length,
            tail_crc,
            writeback_from: length,
            sync_behind,
            io_failed: false,
            lease: None,
        })
    }

    /// The replica's length: every byte written, with its checksum.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn checksum(&self) -> DataChecksum {
        self.checksum
    }

    pub fn had_io_error(&self) -> bool {
        self.io_failed
    }

    /// Appends verified data at the replica's end. `checksums` holds one
    /// CRC per chunk of `data` as [`rdfs_common::checksum::chunk_lengths`] cuts it from
    /// the current length: when the replica ends mid-chunk, the first one
    /// covers only the bytes that complete that chunk.
    pub fn write(&mut self, data: &[u8], checksums: &[u8]) -> Result<(), DatanodeError> {
        let written = self.write_files(data, checksums);
        self.io_failed |= written.is_err();
        written
    }

    fn write_files(&mut self, data: &[u8], checksums: &[u8]) -> Result<(), DatanodeError> {
        if data.is_empty() {
            return Ok(());
        }
        let bpc = u64::from(self.checksum.bytes_per_checksum);
        let start = self.written;
        let mut stored = Vec::with_capacity(checksums.len());
        let mut last = 0u32;
        for (i, sum) in checksums.chunks_exact(CHECKSUM_SIZE).enumerate() {
            let mut crc = u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]);
            if i == 0
                && let Some(tail) = self.tail_crc
            {
                // The chunk's earlier bytes are already on disk.
                let fragment = (bpc - start % bpc).min(data.len() as u64) as usize;
                crc = self.checksum.kind.extend(tail, &data[..fragment]);
            }
            stored.extend_from_slice(&crc.to_be_bytes());
            last = crc;
        }
        self.block_file
            .write_all_at(data, start)
            .map_err(io_err(&self.block_path))?;
        self.meta_file
            .write_all_at(&stored, checksum_offset(start / bpc))
            .map_err(io_err(&self.meta_path))?;
        self.written = start + data.len() as u64;
        self.tail_crc = (!self.written.is_multiple_of(bpc)).then_some(last);
        if self.sync_behind > 0 && self.written - self.writeback_from >= self.sync_behind {
            io_hints::start_writeback(
                &self.block_file,
                self.writeback_from,
                self.written - self.writeback_from,
            );
            self.writeback_from = self.written;
        }
        Ok(())
    }

    /// Makes everything written so far durable (hsync).
    pub fn sync(&mut self) -> Result<(), DatanodeError> {
        let synced = self.sync_files();
        self.io_failed |= synced.is_err();
        synced
    }

    /// fdatasyncs the block and meta files.
    fn sync_files(&self) -> Result<(), DatanodeError> {
        self.block_file
            .sync_data()
            .map_err(io_err(&self.block_path))?;
        self.meta_file.sync_data().map_err(io_err(&self.meta_path))
    }

    /// Moves the replica into `finalized_dir` (its meta file named for the
    /// writer's generation stamp), durably when `sync` is set. Returns its
    /// length.
    pub fn finalize(self, finalized_dir: &Path, sync: bool) -> Result<u64, DatanodeError> {
        if sync {
            self.sync_files()?;
        }
        std::fs::create_dir_all(finalized_dir).map_err(io_err(finalized_dir))?;
        let block_dest = finalized_dir.join(block_file_name(self.name.block_id));
        let meta_dest = finalized_dir.join(meta_file_name(
            self.name.block_id,
            self.name.generation_stamp,
        ));
        // Meta first: a block file without its meta is never taken for a
        // finalized replica when the directory is scanned.
        std::fs::rename(&self.meta_path, &meta_dest).map_err(io_err(&self.meta_path))?;
        std::fs::rename(&self.block_path, &block_dest).map_err(io_err(&self.block_path))?;
        if sync {
            // The entries moved out of rbw/ and into finalized/, and the
            // subdir<N> entries that may just have been created.
            let source = self.block_path.parent().unwrap_or(finalized_dir);
            let mut dirs = vec![source, finalized_dir];
            dirs.extend(finalized_dir.ancestors().skip(1).take(2));
            for dir in dirs {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err(dir))?;
            }
        }
        Ok(self.written)
    }

    /// Deletes the replica's files (a new replica whose setup failed).
    pub fn abort(self) {
        for path in [&self.block_path, &self.meta_path] {
            if let Err(err) = std::fs::remove_file(path)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %err, "cannot remove aborted replica file");
            }
        }
    }
}

fn read_header(meta_file: &File, meta_path: &Path) -> Result<MetaHeader, String> {
    let mut header = [0u8; META_HEADER_LEN];
    let read = meta_file
        .read_at(&mut header, 0)
        .map_err(|e| format!("cannot read {}: {e}", meta_path.display()))?;
    MetaHeader::decode(&header[..read]).map_err(|e| format!("{}: {e}", meta_path.display()))
}

/// How many bytes of a replica left unfinished (found in `rbw/` at
/// start-up) its stored checksums vouch for: no more than the block file
/// holds and the meta file covers, and without a last chunk whose checksum
/// does not match (a write torn by a crash). Blocking.
pub fn verified_length(block_path: &Path, meta_path: &Path) -> Result<u64, String> {
    let block_file =
        File::open(block_path).map_err(|e| format!("cannot open {}: {e}", block_path.display()))?;
    let meta_file =
        File::open(meta_path).map_err(|e| format!("cannot open {}: {e}", meta_path.display()))?;
    let header = read_header(&meta_file, meta_path)?;
    let checksum = header.checksum();
    let bpc = u64::from(checksum.bytes_per_checksum);
    let block_len = block_file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", block_path.display()))?
        .len();
    let meta_len = meta_file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", meta_path.display()))?
        .len();
    let chunks = meta_len.saturating_sub(META_HEADER_LEN as u64) / CHECKSUM_SIZE as u64;
    let covered = block_len.min(chunks.saturating_mul(bpc));
    if covered == 0 {
        return Ok(0);
    }
    let last = (covered - 1) / bpc;
    let start = last * bpc;
    let mut bytes = vec![0u8; (covered - start) as usize];
    block_file
        .read_exact_at(&mut bytes, start)
        .map_err(|e| format!("cannot read {}: {e}", block_path.display()))?;
    let mut stored = [0u8; CHECKSUM_SIZE];
    meta_file
        .read_exact_at(&mut stored, checksum_offset(last))
        .map_err(|e| format!("cannot read {}: {e}", meta_path.display()))?;
    if u32::from_be_bytes(stored) == checksum.kind.checksum(&bytes) {
        Ok(covered)
    } else {
        Ok(start)
    }
}

/// A replica opened for reading.
pub struct ReplicaReader {
    pub name: BlockName,
    block_path: PathBuf,
    block_file: File,
    meta_file: File,
    pub checksum: DataChecksum,
    /// The bytes readable: the replica's length, or what has been
    /// acknowledged of a replica being written.
    pub length: u64,
    /// The stored checksum of a partial last chunk may cover more bytes
    /// than `length` (a replica being written): recompute it.
    recompute_tail: bool,
}

impl ReplicaReader {
    /// Opens both files and checks that they are long enough for `length`
    /// bytes: a truncated file is a corrupt replica, reported as such.
    pub fn open(
        name: BlockName,
        block_path: &Path,
        meta_path: &Path,
        length: u64,
    ) -> Result<Self, DatanodeError> {
        let corrupt = |reason: String| DatanodeError::CorruptReplica {
            block: name.to_string(),
            reason,
        };
        let block_file = File::open(block_path)
            .map_err(|e| corrupt(format!("cannot open {}: {e}", block_path.display())))?;
        let meta_file = File::open(meta_path)
            .map_err(|e| corrupt(format!("cannot open {}: {e}", meta_path.display())))?;
        let header = read_header(&meta_file, meta_path).map_err(corrupt)?;
        let block_len = block_file.metadata().map_err(io_err(block_path))?.len();
        if block_len < length {
            return Err(corrupt(format!(
                "block file has {block_len} bytes, the replica has {length}"
            )));
        }
        let meta_len = meta_file.metadata().map_err(io_err(meta_path))?.len();
        let needed = header.meta_file_len(length);
        if meta_len < needed {
            return Err(corrupt(format!(
                "meta file has {meta_len} bytes, {needed} are needed for {length} bytes of data"
            )));
        }
        Ok(Self {
            name,
            block_path: block_path.to_path_buf(),
            block_file,
            meta_file,
            checksum: header.checksum(),
            length,
            recompute_tail: false,
        })
    }

    /// Has the kernel read `[offset, offset + len)` of the block file ahead
    /// of need.
    pub fn read_ahead(&self, offset: u64, len: u64) {
        io_hints::will_need(&self.block_file, offset, len);
    }

    /// Marks the replica as still being written: the checksum of a partial
    /// chunk at `length` is computed from the data rather than read.
    pub fn still_written(mut self) -> Self {
        self.recompute_tail = true;
        self
    }

    /// Reads `len` bytes at the chunk-aligned `offset` and their stored
    /// checksums. A short read means the file was truncated under us.
    pub fn read(&self, offset: u64, len: usize) -> Result<(Bytes, Bytes), DatanodeError> {
        let bpc = u64::from(self.checksum.bytes_per_checksum);
        debug_assert_eq!(offset % bpc, 0);
        let corrupt = |reason: String| DatanodeError::CorruptReplica {
            block: self.name.to_string(),
            reason,
        };
        let mut data = vec![0u8; len];
        self.block_file
            .read_exact_at(&mut data, offset)
            .map_err(|e| {
                corrupt(format!(
                    "reading {len} bytes at {offset} of {}: {e}",
                    self.block_path.display()
                ))
            })?;
        let chunks = (len as u64).div_ceil(bpc) as usize;
        let mut checksums = vec![0u8; chunks * CHECKSUM_SIZE];
        let meta_offset = checksum_offset(offset / bpc);
        self.meta_file
            .read_exact_at(&mut checksums, meta_offset)
            .map_err(|e| {
                corrupt(format!(
                    "reading checksums at {meta_offset} of the meta file: {e}"
                ))
            })?;
        let end = offset + len as u64;
        if self.recompute_tail && end == self.length && !end.is_multiple_of(bpc) && chunks > 0 {
            let tail_start = ((chunks - 1) as u64 * bpc) as usize;
            let crc = self.checksum.kind.checksum(&data[tail_start..]);
            checksums[(chunks - 1) * CHECKSUM_SIZE..].copy_from_slice(&crc.to_be_bytes());
        }
        Ok((Bytes::from(data), Bytes::from(checksums)))
    }
}

/// The CRC32C checksums of `data` as a packet starting at
/// `offset_in_block` carries them (tests and tools).
pub fn packet_checksums(data: &[u8], offset_in_block: u64, bytes_per_checksum: u32) -> Vec<u8> {
    let checksum = DataChecksum::crc32c(bytes_per_checksum);
    let mut out = Vec::with_capacity(checksum.checksums_len_at(offset_in_block, data.len()));
    checksum.compute_at(data, offset_in_block, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_finalize_read_and_detect_truncation() {
        let tmp = tempfile::tempdir().expect("tmp");
        let rbw = tmp.path().join("rbw");
        let fin = tmp.path().join("fin");
        std::fs::create_dir_all(&rbw).expect("mkdir");
        let name = BlockName {
            block_id: 1073741825,
            generation_stamp: 1001,
        };
        let mut writer =
            ReplicaWriter::create(name, 0, &rbw, crate::test_support::CRC32C_512, 4096)
                .expect("creates");
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let sums = crate::test_support::CRC32C_512.compute(&data);
        writer.write(&data, &sums).expect("writes");
        assert_eq!(writer.finalize(&fin, true).expect("finalizes"), 5000);
        let block_path = fin.join(block_file_name(name.block_id));
        let meta_path = fin.join(meta_file_name(name.block_id, name.generation_stamp));
        let reader = ReplicaReader::open(name, &block_path, &meta_path, 5000).expect("opens");
        let (got, got_sums) = reader.read(1024, 5000 - 1024).expect("reads");
        assert_eq!(&got[..], &data[1024..]);
        crate::test_support::CRC32C_512
            .verify_at(&got, &got_sums, 1024)
            .expect("stored checksums match");

        std::fs::OpenOptions::new()
            .write(true)
            .open(&block_path)
            .and_then(|f| f.set_len(100))
            .expect("truncate");
        assert!(matches!(
            reader.read(0, 512),
            Err(DatanodeError::CorruptReplica { .. })
        ));
        assert!(matches!(
            ReplicaReader::open(name, &block_path, &meta_path, 5000),
            Err(DatanodeError::CorruptReplica { .. })
        ));
    }

    /// Checks every stored checksum of the first `len` bytes against the
    /// data on disk.
    fn assert_checksums_match(block_path: &Path, meta_path: &Path, data: &[u8]) {
        let name = BlockName {
            block_id: 1,
            generation_stamp: 1,
        };
        let reader =
            ReplicaReader::open(name, block_path, meta_path, data.len() as u64).expect("opens");
        let (got, sums) = reader.read(0, data.len()).expect("reads");
        assert_eq!(&got[..], data);
        crate::test_support::CRC32C_512
            .verify_at(&got, &sums, 0)
            .expect("stored checksums match");
        let meta_len = std::fs::metadata(meta_path).expect("meta").len();
        assert_eq!(
            meta_len,
            MetaHeader::new(crate::test_support::CRC32C_512).meta_file_len(data.len() as u64)
        );
    }

    #[test]
    fn packets_continue_a_partial_chunk_and_reopening_recomputes_its_checksum() {
        let tmp = tempfile::tempdir().expect("tmp");
        let rbw = tmp.path().join("rbw");
        let fin = tmp.path().join("fin");
        std::fs::create_dir_all(&rbw).expect("mkdir");
        let name = BlockName {
            block_id: 1,
            generation_stamp: 1,
        };
        let data: Vec<u8> = (0..2500u32).map(|i| (i * 13 % 251) as u8).collect();
        let mut writer = ReplicaWriter::create(name, 0, &rbw, crate::test_support::CRC32C_512, 0)
            .expect("creates");
        writer
            .write(&data[..700], &packet_checksums(&data[..700], 0, 512))
            .expect("first 700");
        // The next packet starts mid-chunk: its first checksum covers the
        // 324 bytes that complete the chunk.
        let sums = packet_checksums(&data[700..1700], 700, 512);
        assert_eq!(sums.len(), 3 * CHECKSUM_SIZE);
        writer.write(&data[700..1700], &sums).expect("1000 more");
        assert_eq!(writer.written(), 1700);
        assert_eq!(writer.finalize(&fin, false).expect("finalizes"), 1700);
        let block_path = fin.join(block_file_name(1));
        let meta_path = fin.join(meta_file_name(1, 1));
        assert_checksums_match(&block_path, &meta_path, &data[..1700]);

        // Reopened at its length (an append under a new generation stamp).
        let appended = BlockName {
            block_id: 1,
            generation_stamp: 2,
        };
        let mut writer =
            ReplicaWriter::open(appended, 0, &block_path, &meta_path, 1700, 0).expect("reopens");
        writer
            .write(
                &data[1700..2500],
                &packet_checksums(&data[1700..2500], 1700, 512),
            )
            .expect("appends");
        assert_eq!(writer.finalize(&fin, true).expect("finalizes"), 2500);
        assert!(!meta_path.exists(), "the meta file takes the new stamp");
        let meta_path = fin.join(meta_file_name(1, 2));
        assert_checksums_match(&block_path, &meta_path, &data[..2500]);

        // Cut back mid-chunk (a recovery or truncate): the last chunk's
        // checksum covers just what is left.
        let writer =
            ReplicaWriter::open(appended, 0, &block_path, &meta_path, 1000, 0).expect("cuts");
        drop(writer);
        assert_eq!(std::fs::metadata(&block_path).expect("block").len(), 1000);
        assert_checksums_match(&block_path, &meta_path, &data[..1000]);
        // And on a chunk boundary.
        drop(ReplicaWriter::open(appended, 0, &block_path, &meta_path, 512, 0).expect("cuts"));
        assert_checksums_match(&block_path, &meta_path, &data[..512]);
        // Not beyond what is there.
        assert!(matches!(
            ReplicaWriter::open(appended, 0, &block_path, &meta_path, 600, 0),
            Err(DatanodeError::CorruptReplica { .. })
        ));
    }

    #[test]
    fn a_replica_read_while_written_gets_the_checksum_of_its_visible_tail() {
        let tmp = tempfile::tempdir().expect("tmp");
        let name = BlockName {
            block_id: 1,
            generation_stamp: 1,
        };
        let data = vec![9u8; 1000];
        let mut writer =
            ReplicaWriter::create(name, 0, tmp.path(), crate::test_support::CRC32C_512, 0)
                .expect("creates");
        writer
            .write(&data, &packet_checksums(&data, 0, 512))
            .expect("writes");
        let block_path = tmp.path().join(block_file_name(1));
        let meta_path = tmp.path().join(meta_file_name(1, 1));
        // Only 800 bytes are visible; the stored checksum covers 1000.
        let reader = ReplicaReader::open(name, &block_path, &meta_path, 800)
            .expect("opens")
            .still_written();
        let (got, sums) = reader.read(512, 288).expect("reads");
        crate::test_support::CRC32C_512
            .verify_at(&got, &sums, 512)
            .expect("tail recomputed");
    }

    #[test]
    fn the_length_checksums_vouch_for_drops_a_torn_tail() {
        let tmp = tempfile::tempdir().expect("tmp");
        let name = BlockName {
            block_id: 1,
            generation_stamp: 1,
        };
        let data = vec![5u8; 1500];
        let mut writer =
            ReplicaWriter::create(name, 0, tmp.path(), crate::test_support::CRC32C_512, 0)
                .expect("creates");
        writer
            .write(&data, &packet_checksums(&data, 0, 512))
            .expect("writes");
        drop(writer);
        let block_path = tmp.path().join(block_file_name(1));
        let meta_path = tmp.path().join(meta_file_name(1, 1));
        assert_eq!(verified_length(&block_path, &meta_path), Ok(1500));
        // Data that reached the disk without its checksum: the last chunk
        // no longer matches and is cut.
        let file = OpenOptions::new()
            .write(true)
            .open(&block_path)
            .expect("open");
        file.write_all_at(&[6u8; 100], 1500).expect("torn write");
        assert_eq!(verified_length(&block_path, &meta_path), Ok(1024));
        // A block file shorter than the meta file covers.
        file.set_len(700).expect("truncate");
        assert_eq!(
            verified_length(&block_path, &meta_path),
            Ok(700 - 700 % 512)
        );
    }
}
