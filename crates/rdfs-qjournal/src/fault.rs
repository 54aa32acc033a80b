//! How journal failures cross the wire. A refusal is a gRPC status with the
//! usual `x-rdfs-exception` kind (so a Hadoop front door could map it) and,
//! in the status details, a [`JournalFault`] naming the journal-specific
//! reason with its numbers (promised epoch, lease holder, expected txid), so
//! the writer branches on data rather than on message text.

use bytes::Bytes;
use prost::Message;
use tonic::{Code, Status};

use rdfs_common::ExceptionKind;
use rdfs_common::exception::EXCEPTION_METADATA_KEY;
use rdfs_proto::{JournalFault, JournalFaultKind};

use crate::journal::JournalError;

impl JournalError {
    fn fault(&self) -> JournalFault {
        let mut fault = JournalFault::default();
        let kind = match self {
            Self::NotFormatted(_) => JournalFaultKind::JournalFaultNotFormatted,
            Self::AlreadyFormatted { .. } => JournalFaultKind::JournalFaultAlreadyFormatted,
            Self::Mismatch { .. } => JournalFaultKind::JournalFaultMismatch,
            Self::EpochNotNewer { epoch, promised } => {
                fault.epoch = *epoch;
                fault.promised_epoch = *promised;
                JournalFaultKind::JournalFaultEpochNotNewer
            }
            Self::EpochTooOld { epoch, promised } => {
                fault.epoch = *epoch;
                fault.promised_epoch = *promised;
                JournalFaultKind::JournalFaultEpochTooOld
            }
            Self::LeaseHeld {
                holder,
                epoch,
                remaining_ms,
            } => {
                fault.lease_holder = holder.clone();
                fault.promised_epoch = *epoch;
                fault.lease_remaining_ms = *remaining_ms;
                JournalFaultKind::JournalFaultLeaseHeld
            }
            Self::OutOfSync { .. } => JournalFaultKind::JournalFaultOutOfSync,
            Self::Gap { expected, got, .. } => {
                fault.expected_txid = *expected;
                fault.got_txid = *got;
                JournalFaultKind::JournalFaultGap
            }
            Self::Invalid { .. } => JournalFaultKind::JournalFaultInvalid,
            Self::Io { .. } | Self::Damaged { .. } | Self::Segment(_) => {
                JournalFaultKind::JournalFaultIo
            }
        };
        fault.kind = kind as i32;
        fault
    }

    fn wire_kind(&self) -> (Code, ExceptionKind) {
        match self {
            Self::NotFormatted(_)
            | Self::EpochNotNewer { .. }
            | Self::EpochTooOld { .. }
            | Self::OutOfSync { .. }
            | Self::Gap { .. } => (Code::FailedPrecondition, ExceptionKind::Io),
            Self::AlreadyFormatted { .. } => (Code::AlreadyExists, ExceptionKind::Io),
            Self::Mismatch { .. } => (Code::FailedPrecondition, ExceptionKind::IncorrectVersion),
            Self::LeaseHeld { .. } => (Code::Unavailable, ExceptionKind::Retriable),
            Self::Invalid { .. } => (Code::InvalidArgument, ExceptionKind::IllegalArgument),
            Self::Io { .. } | Self::Damaged { .. } | Self::Segment(_) => {
                (Code::Internal, ExceptionKind::Io)
            }
        }
    }

    pub(crate) fn into_status(self) -> Status {
        let (code, kind) = self.wire_kind();
        let details = Bytes::from(self.fault().encode_to_vec());
        let mut status = Status::with_details(code, self.to_string(), details);
        status.metadata_mut().insert(
            EXCEPTION_METADATA_KEY,
            tonic::metadata::MetadataValue::from_static(kind.name()),
        );
        status
    }
}

/// Why one journalnode did not do what the client asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JnError {
    /// The journalnode answered with a refusal.
    #[error("{message}")]
    Refused {
        fault: JournalFault,
        message: String,
    },
    /// The call failed without a journal-specific reason (unreachable,
    /// transport error, a server without this service).
    #[error("{0}")]
    Rpc(String),
    #[error("no answer within {0} ms")]
    TimedOut(u64),
    /// The writer skips this journalnode until its next segment.
    #[error("out of sync ({0}); skipped until the next segment")]
    OutOfSync(String),
    /// The journalnode answered with data that does not hold together.
    #[error("bad answer: {0}")]
    BadReply(String),
}

impl JnError {
    pub(crate) fn from_status(status: &Status) -> Self {
        match JournalFault::decode(status.details()) {
            Ok(fault) if !status.details().is_empty() => Self::Refused {
                fault,
                message: status.message().to_string(),
            },
            _ => Self::Rpc(match status.code() {
                Code::Unavailable => format!("unreachable: {}", status.message()),
                Code::DeadlineExceeded => format!("deadline exceeded: {}", status.message()),
                code => format!("{code:?}: {}", status.message()),
            }),
        }
    }

    pub(crate) fn kind(&self) -> Option<JournalFaultKind> {
        match self {
            Self::Refused { fault, .. } => Some(
                JournalFaultKind::try_from(fault.kind)
                    .unwrap_or(JournalFaultKind::JournalFaultOther),
            ),
            _ => None,
        }
    }

    pub(crate) fn fault(&self) -> Option<&JournalFault> {
        match self {
            Self::Refused { fault, .. } => Some(fault),
            _ => None,
        }
    }

    /// A journalnode promised a newer epoch than the caller's.
    pub(crate) fn fenced_by(&self) -> Option<u64> {
        match self.kind()? {
            JournalFaultKind::JournalFaultEpochTooOld
            | JournalFaultKind::JournalFaultEpochNotNewer => self.fault().map(|f| f.promised_epoch),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_survive_the_trip_through_a_status() {
        let status = JournalError::EpochTooOld {
            epoch: 3,
            promised: 5,
        }
        .into_status();
        assert_eq!(ExceptionKind::of_status(&status), Some(ExceptionKind::Io));
        let err = JnError::from_status(&status);
        assert_eq!(err.fenced_by(), Some(5));
        assert_eq!(
            err.to_string(),
            "epoch 3 is older than promised epoch 5; another namenode has taken over"
        );
        let plain = JnError::from_status(&Status::unavailable("connection refused"));
        assert!(plain.kind().is_none());
        assert_eq!(plain.to_string(), "unreachable: connection refused");
    }
}
