//! The on-disk form of edit log segments.
//!
//! A segment is a header — `RDFSEDIT`, a big-endian layout version and,
//! from layout 2 on, the big-endian epoch of the writer whose edits it holds
//! (0 for a namenode's local edits) — followed by records, each a big-endian
//! u32 payload length, a big-endian CRC32C of the payload, and the payload:
//! an [`EditRecord`] protobuf. The epoch is how journalnodes tell copies of
//! one segment apart when writers of different epochs wrote the same txids
//! (recovery may end a journal before a segment no majority holds edits of,
//! and the next writer starts there again). Files are named as HDFS names
//! them: `edits_inprogress_<first>` while written, `edits_<first>-<last>`
//! once finalized, txids zero-padded to 19 digits.

use std::fs::File;
use std::io::{Read, Seek};
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
/// The layout written; layout 1 (no epoch) is still read.
pub const LAYOUT_VERSION: u32 = 2;
pub const HEADER_LEN: usize = 20;
const V1_HEADER_LEN: usize = 12;
/// The epoch in the header of a namenode's local segments, which no
/// quorum writer wrote.
pub const LOCAL_EPOCH: u64 = 0;
/// No single record comes near this; a larger length is corruption.
pub const MAX_RECORD_LEN: u32 = 16 * 1024 * 1024;

/// The header of a segment holding edits of writer `epoch`.
pub fn header(epoch: u64) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&LAYOUT_VERSION.to_be_bytes());
    out[12..].copy_from_slice(&epoch.to_be_bytes());
    out
}

/// What a segment's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The epoch of the writer whose edits the segment holds (0 for local
    /// edits and layout 1).
    pub epoch: u64,
    /// Where the first record starts.
    pub len: usize,
}

/// Why a header cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HeaderFault {
    /// Fewer bytes than a header: a crash while the file was created.
    Short(usize),
    Corrupt {
        offset: u64,
        reason: String,
    },
}

fn parse_header(bytes: &[u8]) -> Result<Header, HeaderFault> {
    if bytes.len() < V1_HEADER_LEN {
        return Err(HeaderFault::Short(bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err(HeaderFault::Corrupt {
            offset: 0,
            reason: "not an rdfs edit log segment".into(),
        });
    }
    let version = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    match version {
        1 => Ok(Header {
            epoch: 0,
            len: V1_HEADER_LEN,
        }),
        2 if bytes.len() < HEADER_LEN => Err(HeaderFault::Short(bytes.len())),
        2 => {
            let mut epoch = [0u8; 8];
            epoch.copy_from_slice(&bytes[12..HEADER_LEN]);
            Ok(Header {
                epoch: u64::from_be_bytes(epoch),
                len: HEADER_LEN,
            })
        }
        other => Err(HeaderFault::Corrupt {
            offset: 8,
            reason: format!(
                "layout version {other} is not supported (this rdfs reads 1 to {LAYOUT_VERSION})"
            ),
        }),
    }
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

/// The first and (when finalized) last txid a segment file name says.
pub fn parse_name(name: &str) -> Option<(TxId, Option<TxId>)> {
    if let Some(first) = name.strip_prefix("edits_inprogress_") {
        return first.parse().ok().map(|first| (first, None));
    }
    let (first, last) = name.strip_prefix("edits_")?.split_once('-')?;
    Some((first.parse().ok()?, Some(last.parse().ok()?)))
}

/// The segments among the entry `names` of `dir`, ordered by first txid
/// (a finalized segment before an in-progress one at the same txid).
pub fn segments_named<S: AsRef<str>>(dir: &Path, names: &[S]) -> Vec<SegmentFile> {
    let mut out: Vec<SegmentFile> = names
        .iter()
        .filter_map(|name| {
            let name = name.as_ref();
            parse_name(name).map(|(first, last)| SegmentFile {
                path: dir.join(name),
                first,
                last,
            })
        })
        .collect();
    out.sort_by_key(|s| (s.first, s.last.is_none()));
    out
}

/// The segments in `dir`, ordered by first txid.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, SegmentError> {
    let io = |source| SegmentError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        if let Some(name) = entry.map_err(io)?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(segments_named(dir, &names))
}

/// What a segment holds.
#[derive(Debug)]
pub struct SegmentContents {
    /// The epoch its header names (0 when the header is torn).
    pub epoch: u64,
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
    let header = match parse_header(bytes) {
        Ok(header) => header,
        Err(HeaderFault::Short(len)) => {
            return Ok(SegmentContents {
                epoch: 0,
                records: Vec::new(),
                valid_len: 0,
                torn_tail: Some(format!("header is {len} bytes, shorter than {HEADER_LEN}")),
            });
        }
        Err(HeaderFault::Corrupt { offset, reason }) => {
            return Err(SegmentError::Corrupt {
                path: path.to_path_buf(),
                offset,
                reason,
            });
        }
    };
    let mut records = Vec::new();
    let mut offset = header.len;
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
        epoch: header.epoch,
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
pub struct SegmentReader<R = File> {
    reader: std::io::BufReader<R>,
    path: PathBuf,
    offset: u64,
    header: Header,
}

impl SegmentReader<File> {
    /// Opens `path` and checks its header; the next record read is the
    /// first.
    pub fn open(path: &Path) -> Result<Self, SegmentError> {
        let file = File::open(path).map_err(|source| SegmentError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::new(path, file)
    }
}

impl<R: Read + Seek> SegmentReader<R> {
    /// Reads the segment `path` from `inner`, positioned at its start.
    pub fn new(path: &Path, inner: R) -> Result<Self, SegmentError> {
        let mut reader = Self {
            reader: std::io::BufReader::with_capacity(256 * 1024, inner),
            path: path.to_path_buf(),
            offset: 0,
            header: Header { epoch: 0, len: 0 },
        };
        let mut head = [0u8; V1_HEADER_LEN];
        reader.read_exact(&mut head)?;
        let mut bytes = head.to_vec();
        if u32::from_be_bytes([head[8], head[9], head[10], head[11]]) >= 2 {
            let mut rest = [0u8; HEADER_LEN - V1_HEADER_LEN];
            reader.read_exact(&mut rest)?;
            bytes.extend_from_slice(&rest);
        }
        reader.header = match parse_header(&bytes) {
            Ok(header) => header,
            Err(HeaderFault::Short(_)) => return Err(reader.corrupt("the header is cut short")),
            Err(HeaderFault::Corrupt { offset, reason }) => {
                return Err(reader.corrupt_at(offset, &reason));
            }
        };
        Ok(reader)
    }

    /// The segment's header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// Moves to `offset`, which must be the start of a record.
    pub fn seek_to(&mut self, offset: u64) -> Result<(), SegmentError> {
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
            ..Default::default()
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_found() {
        let mut bytes = header(7).to_vec();
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
        let mut bytes = header(7).to_vec();
        for txid in 1..=5 {
            encode_record(&record(txid), &mut bytes);
        }
        let record_len = (bytes.len() - HEADER_LEN) / 5;
        bytes[HEADER_LEN + record_len + 10] ^= 0x01;
        let err = decode_segment(Path::new("x"), &bytes).expect_err("corrupt");
        assert!(err.to_string().contains("valid edits follow"), "{err}");
    }

    #[test]
    fn the_header_carries_the_epoch_and_layout_1_still_reads() {
        let mut bytes = header(9).to_vec();
        encode_record(&record(1), &mut bytes);
        let contents = decode_segment(Path::new("x"), &bytes).expect("decodes");
        assert_eq!((contents.epoch, contents.records.len()), (9, 1));
        let mut reader =
            SegmentReader::new(Path::new("x"), std::io::Cursor::new(&bytes)).expect("opens");
        assert_eq!(
            reader.header(),
            Header {
                epoch: 9,
                len: HEADER_LEN
            }
        );
        let mut framed = Vec::new();
        assert_eq!(reader.next_framed(&mut framed).expect("record"), 1);

        let mut v1 = MAGIC.to_vec();
        v1.extend_from_slice(&1u32.to_be_bytes());
        encode_record(&record(1), &mut v1);
        let contents = decode_segment(Path::new("x"), &v1).expect("decodes");
        assert_eq!((contents.epoch, contents.records.len()), (0, 1));
        let reader = SegmentReader::new(Path::new("x"), std::io::Cursor::new(&v1)).expect("opens");
        assert_eq!(reader.header(), Header { epoch: 0, len: 12 });

        let contents = decode_segment(Path::new("x"), &header(3)[..15]).expect("torn");
        assert!(contents.torn_tail.is_some());
        let mut v3 = header(3);
        v3[11] = 3;
        let err = decode_segment(Path::new("x"), &v3).expect_err("unknown layout");
        assert!(err.to_string().contains("layout version 3"), "{err}");
    }

    #[test]
    fn names_follow_hdfs() {
        assert_eq!(in_progress_name(1), "edits_inprogress_0000000000000000001");
        assert_eq!(
            finalized_name(1, 42),
            "edits_0000000000000000001-0000000000000000042"
        );
        assert_eq!(parse_name(&in_progress_name(5)), Some((5, None)));
        assert_eq!(parse_name(&finalized_name(5, 9)), Some((5, Some(9))));
        assert_eq!(parse_name("edits_5"), None);
        assert_eq!(parse_name("VERSION"), None);
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = header(7).to_vec();
            bytes.extend(tail);
            let _ = decode_segment(Path::new("x"), &bytes);
        }
    }
}
