//! What can go wrong for a client, with the HDFS exception kind of a
//! namenode or datanode refusal kept so callers can branch on it.

use rdfs_common::ExceptionKind;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The namenode or a datanode refused the request.
    #[error("{message}")]
    Remote {
        kind: ExceptionKind,
        message: String,
    },
    /// The peer could not be reached or the connection failed.
    #[error("{0}")]
    Transport(String),
    /// No replica of a block could be read.
    #[error("Could not obtain block: {block} file={path}")]
    BlockMissing { block: String, path: String },
    /// Writing a block through its pipeline failed.
    #[error("{0}")]
    Pipeline(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    pub fn kind(&self) -> Option<ExceptionKind> {
        match self {
            Self::Remote { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub fn is(&self, kind: ExceptionKind) -> bool {
        self.kind() == Some(kind)
    }

    /// Converts a failed call; `peer` names whom it was addressed to.
    pub fn from_status(status: tonic::Status, peer: &str) -> Self {
        match ExceptionKind::of_status(&status) {
            Some(kind) => Self::Remote {
                kind,
                message: status.message().to_string(),
            },
            None => Self::Transport(format!(
                "Call to {peer} failed: {}",
                rdfs_common::grpc::status_detail(&status, peer)
            )),
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
