//! One replica's pair of files: the block data and the meta file holding its
//! chunk checksums. [`ReplicaWriter`] builds a replica in `rbw/` and moves it
//! to `finalized/`; [`ReplicaReader`] serves ranges of a finalized one.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use rdfs_common::checksum::{CHECKSUM_SIZE, META_HEADER_LEN, MetaHeader};
use rdfs_common::ids::BlockName;

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

/// A replica being written, in `rbw/`.
pub struct ReplicaWriter {
    pub name: BlockName,
    pub volume: usize,
    block_path: PathBuf,
    meta_path: PathBuf,
    block_file: File,
    meta: BufWriter<File>,
    written: u64,
    writeback_from: u64,
    sync_behind: u64,
    /// A write or sync failed: the volume may be failing, and whoever
    /// aborts this replica should have it checked.
    io_failed: bool,
}

impl ReplicaWriter {
    pub fn create(
        name: BlockName,
        volume: usize,
        rbw_dir: &Path,
        bytes_per_checksum: u32,
        sync_behind: u64,
    ) -> Result<Self, DatanodeError> {
        let block_path = rbw_dir.join(block_file_name(name.block_id));
        let meta_path = rbw_dir.join(meta_file_name(name.block_id, name.generation_stamp));
        let block_file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&block_path)
            .map_err(io_err(&block_path))?;
        let meta_file = match OpenOptions::new()
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
        let mut meta = BufWriter::with_capacity(64 * 1024, meta_file);
        meta.write_all(&MetaHeader::crc32c(bytes_per_checksum).encode())
            .map_err(io_err(&meta_path))?;
        Ok(Self {
            name,
            volume,
            block_path,
            meta_path,
            block_file,
            meta,
            written: 0,
            writeback_from: 0,
            sync_behind,
            io_failed: false,
        })
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn had_io_error(&self) -> bool {
        self.io_failed
    }

    /// Appends verified data and its checksums.
    pub fn write(&mut self, data: &[u8], checksums: &[u8]) -> Result<(), DatanodeError> {
        let written = self.write_files(data, checksums);
        self.io_failed |= written.is_err();
        written
    }

    fn write_files(&mut self, data: &[u8], checksums: &[u8]) -> Result<(), DatanodeError> {
        self.block_file
            .write_all(data)
            .map_err(io_err(&self.block_path))?;
        self.meta
            .write_all(checksums)
            .map_err(io_err(&self.meta_path))?;
        self.written += data.len() as u64;
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
        let synced = self
            .meta
            .flush()
            .map_err(io_err(&self.meta_path))
            .and_then(|()| self.sync_files());
        self.io_failed |= synced.is_err();
        synced
    }

    /// fdatasyncs the block and meta files (the meta buffer already flushed).
    fn sync_files(&self) -> Result<(), DatanodeError> {
        self.block_file
            .sync_data()
            .map_err(io_err(&self.block_path))?;
        self.meta
            .get_ref()
            .sync_data()
            .map_err(io_err(&self.meta_path))
    }

    /// Moves the replica into `finalized_dir`, durably when `sync` is set.
    /// Returns its length.
    pub fn finalize(mut self, finalized_dir: &Path, sync: bool) -> Result<u64, DatanodeError> {
        self.meta.flush().map_err(io_err(&self.meta_path))?;
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
            let rbw = self.block_path.parent().unwrap_or(finalized_dir);
            let mut dirs = vec![rbw, finalized_dir];
            dirs.extend(finalized_dir.ancestors().skip(1).take(2));
            for dir in dirs {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err(dir))?;
            }
        }
        Ok(self.written)
    }

    /// Deletes the partial replica.
    pub fn abort(self) {
        drop(self.block_file);
        for path in [&self.block_path, &self.meta_path] {
            if let Err(err) = std::fs::remove_file(path)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %err, "cannot remove aborted replica file");
            }
        }
    }
}

/// A finalized replica opened for reading.
pub struct ReplicaReader {
    pub name: BlockName,
    block_path: PathBuf,
    block_file: File,
    meta_file: File,
    pub bytes_per_checksum: u32,
    /// The replica's length as the datanode recorded it.
    pub length: u64,
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
        let mut header = [0u8; META_HEADER_LEN];
        let read = meta_file
            .read_at(&mut header, 0)
            .map_err(io_err(meta_path))?;
        let header = MetaHeader::decode(&header[..read])
            .map_err(|e| corrupt(format!("{}: {e}", meta_path.display())))?;
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
            bytes_per_checksum: header.bytes_per_checksum,
            length,
        })
    }

    /// Reads `len` bytes at the chunk-aligned `offset` and their stored
    /// checksums. A short read means the file was truncated under us.
    pub fn read(&self, offset: u64, len: usize) -> Result<(Bytes, Bytes), DatanodeError> {
        let bpc = u64::from(self.bytes_per_checksum);
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
        let meta_offset = META_HEADER_LEN as u64 + offset / bpc * CHECKSUM_SIZE as u64;
        self.meta_file
            .read_exact_at(&mut checksums, meta_offset)
            .map_err(|e| {
                corrupt(format!(
                    "reading checksums at {meta_offset} of the meta file: {e}"
                ))
            })?;
        Ok((Bytes::from(data), Bytes::from(checksums)))
    }
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
        let mut writer = ReplicaWriter::create(name, 0, &rbw, 512, 4096).expect("creates");
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let sums = rdfs_common::checksum::compute(&data, 512);
        writer.write(&data, &sums).expect("writes");
        assert_eq!(writer.finalize(&fin, true).expect("finalizes"), 5000);
        let block_path = fin.join(block_file_name(name.block_id));
        let meta_path = fin.join(meta_file_name(name.block_id, name.generation_stamp));
        let reader = ReplicaReader::open(name, &block_path, &meta_path, 5000).expect("opens");
        let (got, got_sums) = reader.read(1024, 5000 - 1024).expect("reads");
        assert_eq!(&got[..], &data[1024..]);
        rdfs_common::checksum::verify(&got, &got_sums, 512, 1024).expect("stored checksums match");

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
}
