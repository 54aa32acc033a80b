//! The on-disk form of edit log segments.
//!
//! A segment is a 12-byte header (`RDFSEDIT` and a big-endian layout version)
//! followed by records, each a big-endian u32 payload length, a big-endian
//! CRC32C of the payload, and the payload: an [`EditRecord`] protobuf. Files
//! are named as HDFS names them: `edits_inprogress_<first>` while written,
//! `edits_<first>-<last>` once finalized, txids zero-padded to 19 digits.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::BufMut;
use prost::Message;

use rdfs_proto::editlog::EditRecord;

/// A transaction id; the first edit is 1.
pub type TxId = u64;

/// Why a segment cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("edit log I/O on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("edit log segment {path} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        path: std::path::PathBuf,
        offset: u64,
        reason: String,
    },
}

pub const MAGIC: &[u8; 8] = b"RDFSEDIT";
pub const LAYOUT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 12;
/// No single record comes near this; a larger length is corruption.
pub const MAX_RECORD_LEN: u32 = 16 * 1024 * 1024;

pub fn header() -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..].copy_from_slice(&LAYOUT_VERSION.to_be_bytes());
    out
}

/// Appends one framed record to `out`.
pub fn encode_record(record: &EditRecord, out: &mut Vec<u8>) {
    let len = record.encoded_len();
    out.reserve(8 + len);
    out.put_u32(len as u32);
    let crc_at = out.len();
    out.put_u32(0);
    let payload_at = out.len();
    // Encoding into a Vec cannot run out of space.
    let _ = record.encode(out);
    let crc = crc32c::crc32c(&out[payload_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
}

pub fn in_progress_name(first: TxId) -> String {
    format!("edits_inprogress_{first:019}")
}

pub fn finalized_name(first: TxId, last: TxId) -> String {
    format!("edits_{first:019}-{last:019}")
}

/// A segment file found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub first: TxId,
    /// `None` while in progress.
    pub last: Option<TxId>,
}

/// The segments in `dir`, ordered by first txid.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, SegmentError> {
    let io = |source| SegmentError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(first) = name.strip_prefix("edits_inprogress_") {
            if let Ok(first) = first.parse() {
                out.push(SegmentFile {
                    path: entry.path(),
                    first,
                    last: None,
                });
            }
        } else if let Some(range) = name.strip_prefix("edits_")
            && let Some((first, last)) = range.split_once('-')
            && let (Ok(first), Ok(last)) = (first.parse(), last.parse())
        {
            out.push(SegmentFile {
                path: entry.path(),
                first,
                last: Some(last),
            });
        }
    }
    out.sort_by_key(|s| (s.first, s.last.is_none()));
    Ok(out)
}

/// What a segment holds.
#[derive(Debug)]
pub struct SegmentContents {
    pub records: Vec<EditRecord>,
    /// Bytes up to the end of the last whole, valid record.
    pub valid_len: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub torn_tail: Option<String>,
}

/// The record at `offset` and the offset after it; `Ok(None)` at the end.
/// A record with length 0, txid 0 or no operation is never written (a
/// zero-filled tail left by a crash looks like one).
fn read_record(bytes: &[u8], offset: usize) -> Result<Option<(EditRecord, usize)>, String> {
    let rest = &bytes[offset..];
    if rest.is_empty() {
        return Ok(None);
    }
    if rest.len() < 8 {
        return Err(format!("{} stray bytes at offset {offset}", rest.len()));
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(format!(
            "record length {len} at offset {offset} is impossible"
        ));
    }
    let Some(payload) = rest.get(8..8 + len as usize) else {
        return Err(format!(
            "record at offset {offset} is cut short ({} of {len} bytes)",
            rest.len() - 8
        ));
    };
    if crc32c::crc32c(payload) != crc {
        return Err(format!("record at offset {offset} fails its checksum"));
    }
    match EditRecord::decode(payload) {
        Ok(record) if record.txid > 0 && record.op.is_some() => {
            Ok(Some((record, offset + 8 + len as usize)))
        }
        Ok(_) => Err(format!("record at offset {offset} holds no edit")),
        Err(err) => Err(format!("record at offset {offset} does not decode: {err}")),
    }
}

/// Reads every valid record of a segment. A damaged or partial record stops
/// the read; the caller decides whether that is a torn tail (in-progress
/// segment) or corruption.
pub fn read_segment(path: &Path) -> Result<SegmentContents, SegmentError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|source| SegmentError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    decode_segment(path, &bytes)
}

pub fn decode_segment(path: &Path, bytes: &[u8]) -> Result<SegmentContents, SegmentError> {
    if bytes.len() < HEADER_LEN {
        return Ok(SegmentContents {
            records: Vec::new(),
            valid_len: 0,
            torn_tail: Some(format!(
                "header is {} bytes, shorter than {HEADER_LEN}",
                bytes.len()
            )),
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(SegmentError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason: "not an rdfs edit log segment".into(),
        });
    }
    let version = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != LAYOUT_VERSION {
        return Err(SegmentError::Corrupt {
            path: path.to_path_buf(),
            offset: 8,
            reason: format!(
                "layout version {version} is not supported (expected {LAYOUT_VERSION})"
            ),
        });
    }
    let mut records = Vec::new();
    let mut offset = HEADER_LEN;
    let torn_tail = loop {
        match read_record(bytes, offset) {
            Ok(None) => break None,
            Ok(Some((record, next))) => {
                records.push(record);
                offset = next;
            }
            Err(why) => break Some(why),
        }
    };
    // A torn write only ever damages the last, unsynced batch: valid edits
    // after the damage mean the log is corrupt, and cutting it there would
    // drop acknowledged changes.
    if let Some(why) = &torn_tail {
        let last = records.last().map_or(0, |r| r.txid);
        if let Some(found) = (offset + 1..bytes.len()).find(
            |at| matches!(read_record(bytes, *at), Ok(Some((record, _))) if record.txid > last),
        ) {
            return Err(SegmentError::Corrupt {
                path: path.to_path_buf(),
                offset: offset as u64,
                reason: format!(
                    "{why}; valid edits follow at offset {found}, so this is damage, not an interrupted write"
                ),
            });
        }
    }
    Ok(SegmentContents {
        records,
        valid_len: offset as u64,
        torn_tail,
    })
}

/// Decodes framed records (no segment header) that must fill `bytes`
/// exactly: what a writer sends and a reader receives.
pub fn decode_records(bytes: &[u8]) -> Result<Vec<EditRecord>, String> {
    Ok(decode_records_with_offsets(bytes)?
        .into_iter()
        .map(|(record, _)| record)
        .collect())
}

/// Like [`decode_records`], with the offset in `bytes` where each record's
/// frame starts.
pub fn decode_records_with_offsets(bytes: &[u8]) -> Result<Vec<(EditRecord, usize)>, String> {
    let mut out = Vec::new();
    let mut offset = 0;
    while let Some((record, next)) = read_record(bytes, offset)? {
        out.push((record, offset));
        offset = next;
    }
    Ok(out)
}

/// Reads a segment file one framed record at a time, so serving a large
/// segment never holds it all in memory.
pub struct SegmentReader {
    reader: std::io::BufReader<File>,
    path: PathBuf,
    offset: u64,
}

impl SegmentReader {
    /// Opens `path` and checks its header; the next record read is the
    /// first.
    pub fn open(path: &Path) -> Result<Self, SegmentError> {
        let file = File::open(path).map_err(|source| SegmentError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = Self {
            reader: std::io::BufReader::with_capacity(256 * 1024, file),
            path: path.to_path_buf(),
            offset: 0,
        };
        let mut head = [0u8; HEADER_LEN];
        reader.read_exact(&mut head)?;
        if head != header() {
            return Err(reader.corrupt("not an rdfs edit log segment of this layout version"));
        }
        Ok(reader)
    }

    /// Moves to `offset`, which must be the start of a record.
    pub fn seek_to(&mut self, offset: u64) -> Result<(), SegmentError> {
        use std::io::Seek;
        self.reader
            .seek(std::io::SeekFrom::Start(offset))
            .map_err(|source| SegmentError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.offset = offset;
        Ok(())
    }

    /// Skips the next record without checking it.
    pub fn skip(&mut self) -> Result<(), SegmentError> {
        let mut head = [0u8; 8];
        self.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(self.corrupt(&format!("record length {len} is impossible")));
        }
        self.reader
            .seek_relative(i64::from(len))
            .map_err(|source| SegmentError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.offset += u64::from(len);
        Ok(())
    }

    /// Appends the next record, framed as on disk, to `out` and returns its
    /// txid. The caller knows how many records there are: running out of
    /// bytes is corruption here, not the end.
    pub fn next_framed(&mut self, out: &mut Vec<u8>) -> Result<TxId, SegmentError> {
        let at = self.offset;
        let mut head = [0u8; 8];
        self.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(self.corrupt_at(at, &format!("record length {len} is impossible")));
        }
        let start = out.len();
        out.extend_from_slice(&head);
        out.resize(start + 8 + len as usize, 0);
        if let Err(err) = self.read_exact(&mut out[start + 8..]) {
            out.truncate(start);
            return Err(err);
        }
        match read_record(&out[start..], 0) {
            Ok(Some((record, _))) => Ok(record.txid),
            Ok(None) => Err(self.corrupt_at(at, "record is empty")),
            Err(why) => {
                out.truncate(start);
                Err(self.corrupt_at(at, &why))
            }
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SegmentError> {
        self.reader.read_exact(buf).map_err(|source| {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                self.corrupt("ends in the middle of a record")
            } else {
                SegmentError::Io {
                    path: self.path.clone(),
                    source,
                }
            }
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn corrupt(&self, reason: &str) -> SegmentError {
        self.corrupt_at(self.offset, reason)
    }

    fn corrupt_at(&self, offset: u64, reason: &str) -> SegmentError {
        SegmentError::Corrupt {
            path: self.path.clone(),
            offset,
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rdfs_proto::editlog::SetReplication;
    use rdfs_proto::editlog::edit_record::Op;

    fn record(txid: TxId) -> EditRecord {
        EditRecord {
            txid,
            op: Some(Op::SetReplication(SetReplication {
                inode_id: 16386,
                replication: 2,
            })),
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_found() {
        let mut bytes = header().to_vec();
        for txid in 1..=3 {
            encode_record(&record(txid), &mut bytes);
        }
        let whole = bytes.len();
        let contents = decode_segment(Path::new("x"), &bytes).expect("decodes");
        assert_eq!(contents.records.len(), 3);
        assert_eq!(contents.valid_len, whole as u64);
        assert!(contents.torn_tail.is_none());

        for cut in [whole - 1, whole - 5, whole - 9] {
            let contents = decode_segment(Path::new("x"), &bytes[..cut]).expect("decodes");
            assert_eq!(contents.records.len(), 2, "cut at {cut}");
            assert!(contents.torn_tail.is_some());
        }
        let mut flipped = bytes.clone();
        flipped[whole - 2] ^= 0x40;
        let contents = decode_segment(Path::new("x"), &flipped).expect("decodes");
        assert_eq!(contents.records.len(), 2);
        assert!(contents.torn_tail.expect("torn").contains("checksum"));
        // A zero-filled tail, as some filesystems leave after a crash.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0u8; 4096]);
        let contents = decode_segment(Path::new("x"), &zeros).expect("decodes");
        assert_eq!(contents.records.len(), 3);
        assert!(contents.torn_tail.is_some());
    }

    #[test]
    fn damage_in_the_middle_is_corruption_not_a_torn_tail() {
        let mut bytes = header().to_vec();
        for txid in 1..=5 {
            encode_record(&record(txid), &mut bytes);
        }
        let record_len = (bytes.len() - HEADER_LEN) / 5;
        bytes[HEADER_LEN + record_len + 10] ^= 0x01;
        let err = decode_segment(Path::new("x"), &bytes).expect_err("corrupt");
        assert!(err.to_string().contains("valid edits follow"), "{err}");
    }

    #[test]
    fn names_follow_hdfs() {
        assert_eq!(in_progress_name(1), "edits_inprogress_0000000000000000001");
        assert_eq!(
            finalized_name(1, 42),
            "edits_0000000000000000001-0000000000000000042"
        );
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = header().to_vec();
            bytes.extend(tail);
            let _ = decode_segment(Path::new("x"), &bytes);
        }
    }
}
