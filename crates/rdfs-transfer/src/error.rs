//! How a stream to or from a datanode fails.

use std::time::Duration;

use rdfs_common::ExceptionKind;

use crate::grpc::Malformed;

/// A data-transfer stream that broke, naming the peer at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("{peer} closed the stream")]
    Closed { peer: String },
    #[error("{peer} sent nothing within {waited:?}")]
    Timeout { peer: String, waited: Duration },
    /// The peer answered with an error, typed when it named one.
    #[error("{peer}: {message}")]
    Failed {
        peer: String,
        kind: Option<ExceptionKind>,
        message: String,
    },
    #[error("{peer} sent a {source}")]
    Malformed {
        peer: String,
        #[source]
        source: Malformed,
    },
}

impl StreamError {
    pub fn peer(&self) -> &str {
        match self {
            Self::Closed { peer }
            | Self::Timeout { peer, .. }
            | Self::Failed { peer, .. }
            | Self::Malformed { peer, .. } => peer,
        }
    }

    /// The remote exception, when the peer named one.
    pub fn kind(&self) -> Option<ExceptionKind> {
        match self {
            Self::Failed { kind, .. } => *kind,
            _ => None,
        }
    }

    /// A gRPC status from `peer`: its exception when it names one,
    /// otherwise what the transport says went wrong.
    pub(crate) fn from_status(status: &tonic::Status, peer: &str) -> Self {
        let kind = ExceptionKind::of_status(status);
        let message = match kind {
            Some(_) => status.message().to_string(),
            None => rdfs_common::grpc::status_detail(status, peer),
        };
        Self::Failed {
            peer: peer.to_string(),
            kind,
            message,
        }
    }
}

/// Why a write pipeline could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SetupFailure {
    /// The transfer address of the first datanode that failed: the one
    /// connected to, or one further down that the pipeline named.
    pub first_bad_link: String,
    /// The pipeline answered with a failed setup (rather than the first
    /// datanode being unreachable, stalled or broken).
    pub refused: bool,
    pub message: String,
}
