//! The datanode's failures.

use std::path::PathBuf;

use rdfs_common::ExceptionKind;

use crate::volume::FailedVolume;

#[derive(Debug, thiserror::Error)]
pub enum DatanodeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("volume {0} is locked by another datanode process")]
    VolumeLocked(PathBuf),
    #[error("{path} is invalid: {reason}")]
    BadVersionFile { path: PathBuf, reason: String },
    #[error(
        "Incompatible clusterIDs in {dir}: namenode clusterID = {namenode}; datanode clusterID = {datanode}"
    )]
    IncompatibleCluster {
        dir: PathBuf,
        namenode: String,
        datanode: String,
    },
    #[error("inconsistent volumes: {0}")]
    Inconsistent(String),
    #[error("no volume has room for a new replica (needs {needed} bytes)")]
    NoSpace { needed: u64 },
    #[error("Block {0} already exists in state {1} and thus cannot be created.")]
    ReplicaExists(String, &'static str),
    #[error("Replica not found for {0}")]
    ReplicaNotFound(String),
    #[error("replica {block} is corrupt: {reason}")]
    CorruptReplica { block: String, reason: String },
    #[error("this datanode does not serve block pool {requested} (it serves {served})")]
    WrongPool { requested: String, served: String },
    #[error("this datanode has not registered with its namenode yet")]
    NotReady,
    #[error("{0}")]
    InvalidRequest(String),
    /// A replica's generation stamp does not allow the operation.
    #[error("stale generation stamp: {0}")]
    StaleGenerationStamp(String),
    /// The replica is (or was taken) under a block recovery.
    #[error("{0}")]
    RecoveryInProgress(String),
    #[error("volume {root} has failed: {reason}")]
    VolumeFailed { root: PathBuf, reason: String },
    /// More volumes failed than `failed_volumes_tolerated`, or none is
    /// left: the datanode must stop.
    #[error("too many failed volumes: {failed} failed, {tolerated} tolerated: {}", describe(.volumes))]
    TooManyFailedVolumes {
        failed: usize,
        tolerated: u32,
        volumes: Vec<FailedVolume>,
    },
    #[error("no volume left in service: {}", describe(.volumes))]
    NoVolumeLeft { volumes: Vec<FailedVolume> },
    #[error("Block token verification failed: op={op}, block={block}: {error}")]
    InvalidBlockToken {
        op: String,
        block: String,
        error: rdfs_common::block_token::TokenError,
    },
}

fn describe(volumes: &[FailedVolume]) -> String {
    volumes
        .iter()
        .map(|v| format!("{} ({})", v.root.display(), v.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

impl DatanodeError {
    pub fn kind(&self) -> ExceptionKind {
        match self {
            Self::ReplicaNotFound(_) => ExceptionKind::ReplicaNotFound,
            Self::CorruptReplica { .. } => ExceptionKind::CorruptReplica,
            Self::InvalidRequest(_) | Self::WrongPool { .. } => ExceptionKind::IllegalArgument,
            Self::ReplicaExists(..) => ExceptionKind::FileAlreadyExists,
            Self::NotReady => ExceptionKind::Retriable,
            Self::RecoveryInProgress(_) => ExceptionKind::RecoveryInProgress,
            Self::InvalidBlockToken { .. } => ExceptionKind::InvalidBlockToken,
            _ => ExceptionKind::Io,
        }
    }
}
