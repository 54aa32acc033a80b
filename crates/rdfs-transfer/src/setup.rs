//! How a block transfer starts: the pipeline setup a writer sends ahead of
//! its packets and the answer it gets, and a read request.

use bytes::Bytes;

use rdfs_common::block_token::Token;
use rdfs_common::checksum::DataChecksum;
use rdfs_common::protocol::{DatanodeInfo, ExtendedBlock};

use crate::packet::Status;

/// What a write session does to the replica (HDFS's
/// `BlockConstructionStage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// A new, empty replica.
    SetupCreate,
    /// A datanode copying a finalized replica to others (re-replication, a
    /// balancer move): the block's length is final and known.
    TransferFinalized,
    /// Reopen the finalized replica (its generation stamp and length must
    /// match) under the latest generation stamp; packets continue at its
    /// length, the first one possibly mid-chunk.
    SetupAppend,
    /// Pipeline recovery while streaming: the replica takes the latest
    /// generation stamp, is cut back to `min_bytes_rcvd` and written on.
    SetupStreamingRecovery,
    /// A copy of a replica still being written, to a datanode joining its
    /// pipeline: it stays unfinalized for the writer's recovery.
    TransferRbw,
}

impl Stage {
    /// HDFS's name for the stage.
    pub fn name(self) -> &'static str {
        match self {
            Self::SetupCreate => "PIPELINE_SETUP_CREATE",
            Self::TransferFinalized => "TRANSFER_FINALIZED",
            Self::SetupAppend => "PIPELINE_SETUP_APPEND",
            Self::SetupStreamingRecovery => "PIPELINE_SETUP_STREAMING_RECOVERY",
            Self::TransferRbw => "TRANSFER_RBW",
        }
    }

    /// A copy from another datanode rather than a client's write.
    pub fn is_transfer(self) -> bool {
        matches!(self, Self::TransferFinalized | Self::TransferRbw)
    }
}

/// The header of a write session: the block, the rest of the pipeline and
/// how the replica is to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteSetup {
    /// The replica as the sender knows it before the session.
    pub block: ExtendedBlock,
    /// The datanodes after the receiving one, in pipeline order.
    pub targets: Vec<DatanodeInfo>,
    pub target_storage_ids: Vec<String>,
    pub client_name: String,
    pub stage: Stage,
    pub checksum: DataChecksum,
    /// The generation stamp the replica takes (append, recovery); 0 keeps
    /// `block`'s.
    pub latest_generation_stamp: u64,
    /// Recovery: the bytes every datanode of the old pipeline acknowledged.
    pub min_bytes_rcvd: u64,
    /// Recovery: the bytes the writer had sent.
    pub max_bytes_rcvd: u64,
    /// The most bytes the replica may grow to (the file's block size); 0
    /// for no limit.
    pub block_size: u64,
    /// WRITE access to `block`.
    pub token: Token,
}

impl WriteSetup {
    /// The setup the next datanode of the pipeline gets: the same, without
    /// itself in the targets.
    pub fn for_next(&self) -> Self {
        let mut next = self.clone();
        if !next.targets.is_empty() {
            next.targets.remove(0);
        }
        if !next.target_storage_ids.is_empty() {
            next.target_storage_ids.remove(0);
        }
        next
    }

    /// The generation stamp the replica has once set up.
    pub fn new_generation_stamp(&self) -> u64 {
        if self.latest_generation_stamp == 0 {
            self.block.generation_stamp
        } else {
            self.latest_generation_stamp
        }
    }
}

/// A datanode's answer to a pipeline setup, once every datanode after it
/// has answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReply {
    pub status: Status,
    /// The transfer address of the first datanode that could not join;
    /// empty when the answering datanode itself failed.
    pub first_bad_link: String,
    pub message: String,
}

impl SetupReply {
    pub fn success() -> Self {
        Self {
            status: Status::Success,
            first_bad_link: String::new(),
            message: String::new(),
        }
    }

    pub fn failed(status: Status, first_bad_link: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            first_bad_link: first_bad_link.to_string(),
            message: message.into(),
        }
    }
}

/// A request for a range of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub block: ExtendedBlock,
    /// The range; the reply starts at `offset` rounded down to a chunk
    /// boundary.
    pub offset: u64,
    pub length: u64,
    pub client_name: String,
    /// READ access to `block`.
    pub token: Token,
}

/// Chunk-aligned bytes of a replica with their checksums, as a datanode
/// sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPacket {
    pub offset_in_block: u64,
    pub data: Bytes,
    pub checksums: Bytes,
    pub checksum: DataChecksum,
}
