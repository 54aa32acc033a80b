//! Sending a range of a replica as packets of whole chunks, each with the
//! checksums stored on disk (the reader verifies them).

use bytes::Bytes;

use rdfs_common::checksum::DataChecksum;

use crate::error::DatanodeError;
use crate::replica::ReplicaReader;

/// Data bytes per read packet.
pub const READ_PACKET_SIZE: usize = 256 * 1024;
/// How far ahead of a sequential read the kernel is asked to read (HDFS's
/// `dfs.datanode.readahead.bytes`).
const READ_AHEAD: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ReadChunk {
    pub offset_in_block: u64,
    pub data: Bytes,
    pub checksums: Bytes,
}

/// Iterates over `[offset, offset + length)` of a replica, widened to chunk
/// boundaries at the start.
pub struct BlockSender {
    reader: ReplicaReader,
    position: u64,
    end: u64,
    packet_size: usize,
    /// Where the last readahead hint ended.
    read_ahead_to: u64,
}

impl BlockSender {
    /// Fails when the range does not fit in the replica.
    pub fn new(reader: ReplicaReader, offset: u64, length: u64) -> Result<Self, DatanodeError> {
        let end = offset
            .checked_add(length)
            .filter(|end| *end <= reader.length)
            .ok_or_else(|| {
                DatanodeError::InvalidRequest(format!(
                    "Offset {offset} and length {length} don't match block {} ( blockLen {} )",
                    reader.name, reader.length
                ))
            })?;
        let bpc = u64::from(reader.checksum.bytes_per_checksum);
        let position = offset - offset % bpc;
        // Whole chunks only: a stored checksum covers its whole chunk.
        let end = end.div_ceil(bpc).saturating_mul(bpc).min(reader.length);
        let packet_size = (READ_PACKET_SIZE / bpc as usize).max(1) * bpc as usize;
        Ok(Self {
            reader,
            position,
            end,
            packet_size,
            read_ahead_to: position,
        })
    }

    pub fn checksum(&self) -> DataChecksum {
        self.reader.checksum
    }

    /// The next packet, or `None` once the range is sent.
    pub fn next_chunk(&mut self) -> Option<Result<ReadChunk, DatanodeError>> {
        if self.position >= self.end {
            return None;
        }
        let len = (self.end - self.position).min(self.packet_size as u64) as usize;
        let offset = self.position;
        // Keep at least one window requested ahead of the reader, asking
        // for the next when it gets within a window of the last one's end.
        if self.read_ahead_to < self.end && self.read_ahead_to < offset + READ_AHEAD {
            let from = self.read_ahead_to.max(offset);
            let to = (from + READ_AHEAD).min(self.end);
            self.reader.read_ahead(from, to - from);
            self.read_ahead_to = to;
        }
        Some(self.reader.read(offset, len).map(|(data, checksums)| {
            self.position += len as u64;
            ReadChunk {
                offset_in_block: offset,
                data,
                checksums,
            }
        }))
    }
}
