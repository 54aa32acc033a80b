//! Receiving one replica's packets, whatever transport carries them: each
//! packet is checked for order and shape, its chunk checksums verified, and
//! it is written to the replica. The gRPC pipeline drives this; Hadoop's
//! DataTransferProtocol will drive it the same way.

use bytes::Bytes;

use rdfs_common::checksum::{self, ChecksumMismatch};

use crate::error::DatanodeError;
use crate::replica::ReplicaWriter;

/// A packet of block data, as the pipeline carries it.
#[derive(Debug, Clone)]
pub struct Packet {
    pub seqno: i64,
    pub offset_in_block: u64,
    pub last_packet_in_block: bool,
    pub sync_block: bool,
    pub data: Bytes,
    pub checksums: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("packet out of order: expected seqno {expected}, got {got}")]
    OutOfOrder { expected: i64, got: i64 },
    #[error("packet {seqno} starts at offset {got}, but {expected} bytes were received")]
    BadOffset { seqno: i64, expected: u64, got: u64 },
    #[error(
        "packet {seqno} carries {got} checksum bytes for {data} data bytes; {expected} expected"
    )]
    ChecksumLength {
        seqno: i64,
        data: usize,
        got: usize,
        expected: usize,
    },
    #[error(
        "packet {seqno} follows a partial chunk; only the block's last data packet may end mid-chunk"
    )]
    AfterPartialChunk { seqno: i64 },
    #[error("packet {seqno} would grow the block to {size} bytes, past its limit of {limit}")]
    TooLong { seqno: i64, size: u64, limit: u64 },
    #[error("packet {seqno}: {source}")]
    Checksum {
        seqno: i64,
        source: ChecksumMismatch,
    },
    #[error("a packet arrived after the last one")]
    AfterLast,
    #[error(transparent)]
    Storage(#[from] DatanodeError),
}

impl PacketError {
    pub fn is_checksum(&self) -> bool {
        matches!(self, Self::Checksum { .. })
    }
}

pub struct BlockReceiver {
    writer: ReplicaWriter,
    bytes_per_checksum: u32,
    max_len: u64,
    next_seqno: i64,
    received: u64,
    finished: bool,
}

impl BlockReceiver {
    pub fn new(writer: ReplicaWriter, bytes_per_checksum: u32, max_len: u64) -> Self {
        Self {
            writer,
            bytes_per_checksum,
            max_len,
            next_seqno: 0,
            received: 0,
            finished: false,
        }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Checks and writes one packet; `Ok(true)` after the block's last one.
    pub fn receive(&mut self, packet: &Packet) -> Result<bool, PacketError> {
        if self.finished {
            return Err(PacketError::AfterLast);
        }
        let seqno = packet.seqno;
        if seqno != self.next_seqno {
            return Err(PacketError::OutOfOrder {
                expected: self.next_seqno,
                got: seqno,
            });
        }
        if packet.offset_in_block != self.received {
            return Err(PacketError::BadOffset {
                seqno,
                expected: self.received,
                got: packet.offset_in_block,
            });
        }
        let bpc = self.bytes_per_checksum;
        if !packet.data.is_empty() {
            if !self.received.is_multiple_of(u64::from(bpc)) {
                return Err(PacketError::AfterPartialChunk { seqno });
            }
            let expected = checksum::checksums_len(packet.data.len(), bpc);
            if packet.checksums.len() != expected {
                return Err(PacketError::ChecksumLength {
                    seqno,
                    data: packet.data.len(),
                    got: packet.checksums.len(),
                    expected,
                });
            }
            let size = self.received + packet.data.len() as u64;
            if size > self.max_len {
                return Err(PacketError::TooLong {
                    seqno,
                    size,
                    limit: self.max_len,
                });
            }
            checksum::verify(&packet.data, &packet.checksums, bpc, self.received)
                .map_err(|source| PacketError::Checksum { seqno, source })?;
            self.writer.write(&packet.data, &packet.checksums)?;
            self.received = size;
        }
        if packet.sync_block {
            self.writer.sync()?;
        }
        self.next_seqno += 1;
        self.finished = packet.last_packet_in_block;
        Ok(self.finished)
    }

    /// The replica's writer, to finalize (after the last packet) or abort.
    pub fn into_writer(self) -> ReplicaWriter {
        self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdfs_common::ids::BlockName;

    fn receiver(dir: &std::path::Path) -> BlockReceiver {
        let name = BlockName {
            block_id: 1,
            generation_stamp: 1,
        };
        BlockReceiver::new(
            ReplicaWriter::create(name, 0, dir, 512, 0).expect("writer"),
            512,
            1 << 20,
        )
    }

    fn packet(seqno: i64, offset: u64, data: &[u8]) -> Packet {
        Packet {
            seqno,
            offset_in_block: offset,
            last_packet_in_block: false,
            sync_block: false,
            data: Bytes::copy_from_slice(data),
            checksums: Bytes::from(checksum::compute(data, 512)),
        }
    }

    #[test]
    fn rejects_bad_packets_and_keeps_what_was_received() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut rx = receiver(tmp.path());
        assert!(!rx.receive(&packet(0, 0, &[1; 1024])).expect("first packet"));
        assert!(matches!(
            rx.receive(&packet(2, 1024, &[1; 512])),
            Err(PacketError::OutOfOrder {
                expected: 1,
                got: 2
            })
        ));
        assert!(matches!(
            rx.receive(&packet(1, 0, &[1; 512])),
            Err(PacketError::BadOffset { .. })
        ));
        let mut bad = packet(1, 1024, &[1; 512]);
        bad.checksums = Bytes::from_static(&[0, 0, 0, 0]);
        let err = rx.receive(&bad).expect_err("bad checksum");
        assert!(err.is_checksum(), "{err}");
        let mut short = packet(1, 1024, &[1; 600]);
        short.checksums = short.checksums.slice(..4);
        assert!(matches!(
            rx.receive(&short),
            Err(PacketError::ChecksumLength { .. })
        ));
        assert!(
            !rx.receive(&packet(1, 1024, &[2; 700]))
                .expect("partial chunk is fine last")
        );
        assert!(matches!(
            rx.receive(&packet(2, 1724, &[2; 10])),
            Err(PacketError::AfterPartialChunk { .. })
        ));
        let mut last = packet(2, 1724, &[]);
        last.last_packet_in_block = true;
        assert!(rx.receive(&last).expect("last"));
        assert_eq!(rx.received(), 1724);
        assert!(matches!(
            rx.receive(&packet(3, 1724, &[])),
            Err(PacketError::AfterLast)
        ));
    }
}
