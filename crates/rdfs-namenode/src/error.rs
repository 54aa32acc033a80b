//! The namenode's failures, each mapped onto the HDFS exception kind a
//! client sees.

use rdfs_common::ExceptionKind;
use rdfs_common::path::PathError;

use crate::edit_log::JournalError;

#[derive(Debug, thiserror::Error)]
pub enum NamenodeError {
    #[error("{0}")]
    FileNotFound(String),
    #[error("{0}")]
    FileAlreadyExists(String),
    #[error("{0}")]
    ParentNotDirectory(String),
    #[error("{0}")]
    NotEmptyDirectory(String),
    #[error(transparent)]
    InvalidPath(#[from] PathError),
    #[error("{0}")]
    AccessControl(String),
    #[error("{0}")]
    AlreadyBeingCreated(String),
    /// An ACL HDFS would refuse, or ACLs turned off.
    #[error("{0}")]
    Acl(String),
    #[error("{0}")]
    LeaseExpired(String),
    #[error("{0}")]
    RecoveryInProgress(String),
    #[error("{0}")]
    NotReplicatedYet(String),
    #[error("{0}")]
    NotEnoughReplicas(String),
    #[error("{0}")]
    IllegalArgument(String),
    #[error("{0}")]
    IncorrectVersion(String),
    #[error("{0}")]
    UnregisteredNode(String),
    #[error("{0}")]
    DisallowedDatanode(String),
    #[error("{0}")]
    SafeMode(String),
    #[error("{0}")]
    Standby(String),
    /// The call cannot be served yet and the client should try again after
    /// a pause (HDFS's RetriableException): an active namenode still in its
    /// start-up safe mode.
    #[error("{0}")]
    Retriable(String),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

pub type Result<T, E = NamenodeError> = std::result::Result<T, E>;

impl NamenodeError {
    pub fn kind(&self) -> ExceptionKind {
        match self {
            Self::FileNotFound(_) => ExceptionKind::FileNotFound,
            Self::FileAlreadyExists(_) => ExceptionKind::FileAlreadyExists,
            Self::ParentNotDirectory(_) => ExceptionKind::ParentNotDirectory,
            Self::NotEmptyDirectory(_) => ExceptionKind::PathIsNotEmptyDirectory,
            Self::InvalidPath(_) => ExceptionKind::InvalidPath,
            Self::AccessControl(_) => ExceptionKind::AccessControl,
            Self::AlreadyBeingCreated(_) => ExceptionKind::AlreadyBeingCreated,
            Self::Acl(_) => ExceptionKind::Acl,
            Self::LeaseExpired(_) => ExceptionKind::LeaseExpired,
            Self::RecoveryInProgress(_) => ExceptionKind::RecoveryInProgress,
            Self::NotReplicatedYet(_) => ExceptionKind::NotReplicatedYet,
            Self::NotEnoughReplicas(_) => ExceptionKind::NotEnoughReplicas,
            Self::IllegalArgument(_) => ExceptionKind::IllegalArgument,
            Self::IncorrectVersion(_) => ExceptionKind::IncorrectVersion,
            Self::UnregisteredNode(_) => ExceptionKind::UnregisteredNode,
            Self::DisallowedDatanode(_) => ExceptionKind::DisallowedDatanode,
            Self::SafeMode(_) => ExceptionKind::SafeMode,
            Self::Standby(_) => ExceptionKind::Standby,
            Self::Retriable(_) => ExceptionKind::Retriable,
            Self::Journal(JournalError::NotActive(_)) => ExceptionKind::Standby,
            Self::Io(_) | Self::Journal(_) => ExceptionKind::Io,
        }
    }
}

impl From<NamenodeError> for tonic::Status {
    fn from(err: NamenodeError) -> Self {
        err.kind().status(err.to_string())
    }
}
