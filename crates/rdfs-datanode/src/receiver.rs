//! Receiving one replica's packets, whatever transport carries them: each
//! packet is checked for order and shape, its chunk checksums verified, and
//! it is written to the replica. The gRPC pipeline drives this; Hadoop's
//! DataTransferProtocol will drive it the same way.

use rdfs_common::checksum::{ChecksumMismatch, DataChecksum};
pub use rdfs_transfer::HEARTBEAT_SEQNO;
use rdfs_transfer::Packet;

use crate::error::DatanodeError;
use crate::replica::ReplicaWriter;

#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("packet out of order: expected seqno {expected}, got {got}")]
    OutOfOrder { expected: i64, got: i64 },
    #[error("packet {seqno} starts at offset {got}, but the replica has {expected} bytes")]
    BadOffset { seqno: i64, expected: u64, got: u64 },
    #[error(
        "packet {seqno} carries {got} checksum bytes for {data} data bytes at offset {offset}; {expected} expected"
    )]
    ChecksumLength {
        seqno: i64,
        offset: u64,
        data: usize,
        got: usize,
        expected: usize,
    },
    #[error("packet {seqno} would grow the block to {size} bytes, past its limit of {limit}")]
    TooLong { seqno: i64, size: u64, limit: u64 },
    #[error("packet {seqno}: {source}")]
    Checksum {
        seqno: i64,
        source: ChecksumMismatch,
    },
    #[error("packet {seqno} arrived after the last one")]
    AfterLast { seqno: i64 },
    #[error("packet {seqno}: a heartbeat packet carries no data and is never the last")]
    BadHeartbeat { seqno: i64 },
    #[error(transparent)]
    Storage(#[from] DatanodeError),
}

impl PacketError {
    pub fn is_checksum(&self) -> bool {
        matches!(self, Self::Checksum { .. })
    }
}

/// What one packet did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Data (possibly none) written; the replica now ends at `end`.
    Data { end: u64 },
    /// The block's last packet: the replica is complete at `end`.
    Last { end: u64 },
    /// A heartbeat: nothing written.
    Heartbeat,
}

pub struct BlockReceiver {
    writer: ReplicaWriter,
    checksum: DataChecksum,
    max_len: u64,
    /// `None` until the first packet sets where the sequence starts.
    next_seqno: Option<i64>,
    received: u64,
    finished: bool,
}

impl BlockReceiver {
    /// Receives packets from the writer's current length on. `first_seqno`
    /// is the seqno the first packet must have (0 for a new replica);
    /// `None` lets the first packet set it (appends, recoveries, copies).
    pub fn new(
        writer: ReplicaWriter,
        checksum: DataChecksum,
        max_len: u64,
        first_seqno: Option<i64>,
    ) -> Self {
        let received = writer.written();
        Self {
            writer,
            checksum,
            max_len,
            next_seqno: first_seqno,
            received,
            finished: false,
        }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Checks and writes one packet.
    pub fn receive(&mut self, packet: &Packet) -> Result<Received, PacketError> {
        let seqno = packet.seqno;
        if self.finished {
            return Err(PacketError::AfterLast { seqno });
        }
        if seqno == HEARTBEAT_SEQNO {
            if !packet.data.is_empty() || packet.last_packet_in_block {
                return Err(PacketError::BadHeartbeat { seqno });
            }
            return Ok(Received::Heartbeat);
        }
        let expected = self.next_seqno.unwrap_or(seqno);
        if seqno != expected || seqno < 0 {
            return Err(PacketError::OutOfOrder {
                expected,
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
        if !packet.data.is_empty() {
            let expected = self
                .checksum
                .checksums_len_at(self.received, packet.data.len());
            if packet.checksums.len() != expected {
                return Err(PacketError::ChecksumLength {
                    seqno,
                    offset: self.received,
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
            self.checksum
                .verify_at(&packet.data, &packet.checksums, self.received)
                .map_err(|source| PacketError::Checksum { seqno, source })?;
            self.writer.write(&packet.data, &packet.checksums)?;
            self.received = size;
        }
        if packet.sync_block {
            self.writer.sync()?;
        }
        self.next_seqno = Some(seqno + 1);
        self.finished = packet.last_packet_in_block;
        Ok(if self.finished {
            Received::Last { end: self.received }
        } else {
            Received::Data { end: self.received }
        })
    }

    /// The replica's writer, to finalize (after the last packet) or release.
    pub fn into_writer(self) -> ReplicaWriter {
        self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rdfs_common::ids::BlockName;

    fn receiver(dir: &std::path::Path, first_seqno: Option<i64>) -> BlockReceiver {
        let name = BlockName {
            block_id: 1,
            generation_stamp: 1,
        };
        BlockReceiver::new(
            ReplicaWriter::create(name, 0, dir, crate::test_support::CRC32C_512, 0)
                .expect("writer"),
            DataChecksum::crc32c(512),
            1 << 20,
            first_seqno,
        )
    }

    use crate::test_support::packet;

    #[test]
    fn rejects_bad_packets_and_keeps_what_was_received() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut rx = receiver(tmp.path(), Some(0));
        assert!(matches!(
            rx.receive(&packet(1, 0, &[1; 512])),
            Err(PacketError::OutOfOrder {
                expected: 0,
                got: 1
            })
        ));
        assert_eq!(
            rx.receive(&packet(0, 0, &[1; 1024])).expect("first packet"),
            Received::Data { end: 1024 }
        );
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
        assert_eq!(
            rx.receive(&packet(1, 1024, &[2; 700]))
                .expect("partial chunk"),
            Received::Data { end: 1724 }
        );
        // A heartbeat is acknowledged, never written, and does not count.
        assert_eq!(
            rx.receive(&packet(HEARTBEAT_SEQNO, 1724, &[]))
                .expect("heartbeat"),
            Received::Heartbeat
        );
        // After an hflush of a partial chunk, the next packet continues it.
        assert_eq!(
            rx.receive(&packet(2, 1724, &[3; 10]))
                .expect("continues mid-chunk"),
            Received::Data { end: 1734 }
        );
        let mut last = packet(3, 1734, &[]);
        last.last_packet_in_block = true;
        assert_eq!(
            rx.receive(&last).expect("last"),
            Received::Last { end: 1734 }
        );
        assert_eq!(rx.received(), 1734);
        assert!(matches!(
            rx.receive(&packet(4, 1734, &[])),
            Err(PacketError::AfterLast { seqno: 4 })
        ));
    }

    #[test]
    fn the_first_packet_sets_the_sequence_after_an_append_or_recovery() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut rx = receiver(tmp.path(), None);
        assert_eq!(
            rx.receive(&packet(41, 0, &[1; 100])).expect("first"),
            Received::Data { end: 100 }
        );
        assert!(matches!(
            rx.receive(&packet(41, 100, &[1; 100])),
            Err(PacketError::OutOfOrder {
                expected: 42,
                got: 41
            })
        ));
        let mut limited =
            BlockReceiver::new(rx.into_writer(), DataChecksum::crc32c(512), 150, None);
        assert!(matches!(
            limited.receive(&packet(0, 100, &[1; 100])),
            Err(PacketError::TooLong {
                size: 200,
                limit: 150,
                ..
            })
        ));
    }
}
