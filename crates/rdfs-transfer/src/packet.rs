//! What flows along a write pipeline once it is set up: packets of block
//! data downstream, acks upstream (HDFS's `PacketHeader` and
//! `PipelineAck`), whatever transport carries them.

use bytes::Bytes;

/// The seqno of a heartbeat packet (HDFS's `HEART_BEAT_SEQNO`).
pub const HEARTBEAT_SEQNO: i64 = -1;

/// A run of whole chunks of a block and one checksum per chunk. Only the
/// block's last data packet may end in a partial chunk, and a packet may
/// start mid-chunk only where the replica ends (after an hflush of a
/// partial chunk, or an append).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packet {
    /// One more per packet of a session; after an append or a recovery
    /// setup the first packet sets where the sequence starts.
    pub seqno: i64,
    pub offset_in_block: u64,
    pub last_packet_in_block: bool,
    /// Sync this packet to disk before acknowledging it (hsync).
    pub sync_block: bool,
    pub data: Bytes,
    /// One checksum per chunk of `data`, as the stream's checksum type
    /// encodes it (4 big-endian bytes for CRC32 and CRC32C).
    pub checksums: Bytes,
}

impl Packet {
    /// An empty packet that keeps an idle pipeline from timing out; every
    /// datanode forwards and acknowledges it.
    pub fn heartbeat() -> Self {
        Self {
            seqno: HEARTBEAT_SEQNO,
            ..Self::default()
        }
    }

    pub fn is_heartbeat(&self) -> bool {
        self.seqno == HEARTBEAT_SEQNO
    }

    /// The offset in the block just past this packet's data.
    pub fn end(&self) -> u64 {
        self.offset_in_block + self.data.len() as u64
    }
}

/// HDFS's `DataTransferProtos.Status` values the pipeline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Success,
    Error,
    ErrorChecksum,
    ErrorInvalid,
    ErrorExists,
}

impl Status {
    pub fn is_success(self) -> bool {
        self == Self::Success
    }

    /// HDFS's name for the status, as its logs and messages print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Error => "ERROR",
            Self::ErrorChecksum => "ERROR_CHECKSUM",
            Self::ErrorInvalid => "ERROR_INVALID",
            Self::ErrorExists => "ERROR_EXISTS",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The acknowledgement of one packet by the datanode that sends it and by
/// every datanode downstream of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub seqno: i64,
    /// The sending datanode's status first, then each downstream one's.
    pub replies: Vec<Status>,
    /// Why the first failing datanode failed.
    pub message: String,
}

impl Ack {
    /// The first datanode, counted from the sender, that did not succeed.
    pub fn first_failure(&self) -> Option<(usize, Status)> {
        self.replies
            .iter()
            .copied()
            .enumerate()
            .find(|(_, s)| !s.is_success())
    }
}
