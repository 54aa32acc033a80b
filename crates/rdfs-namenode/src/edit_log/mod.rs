//! The edit log: every namespace change as a typed record with a
//! transaction id, durable before the change is acknowledged.
//!
//! [`Journal`] is the seam: the namenode appends records while it holds the
//! namespace lock (so txids follow the order changes were applied) and waits
//! for [`Journal::sync`] after releasing it, so many RPCs share one fsync
//! (group commit). [`FileJournal`] writes segments into the name dirs; the
//! quorum journal will be another implementation.

mod file_journal;
mod memory_journal;

use futures::future::BoxFuture;

pub use file_journal::FileJournal;
pub use memory_journal::MemoryJournal;
pub use rdfs_proto::editlog::EditRecord;
pub use rdfs_proto::editlog::edit_record::Op;
pub use rdfs_qjournal::segment;
pub use rdfs_qjournal::segment::{SegmentError, TxId};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("edit log I/O on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("no name directory is left to write the edit log to; last error: {0}")]
    NoDirsLeft(String),
    #[error("the edit log failed earlier and accepts no more edits: {0}")]
    Failed(String),
    #[error("edit log segment {path} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        path: std::path::PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("the quorum journal: {0}")]
    Quorum(String),
    /// This namenode may not (or no longer) write edits: it is a standby,
    /// or it lost its epoch or its journal quorum. Clients try another
    /// namenode.
    #[error("{0}")]
    NotActive(String),
    #[error("edit log has a gap: expected txid {expected}, found {found} in {path}")]
    Gap {
        path: std::path::PathBuf,
        expected: TxId,
        found: TxId,
    },
}

/// The client call that made an edit (HDFS's rpc ids): the client's 16-byte
/// id and its call id. Recorded with at-most-once calls' edits, so a
/// namenode applying them can answer retries (see `retry_cache`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RpcId {
    pub client_id: [u8; 16],
    pub call_id: i32,
}

impl RpcId {
    /// The ids a record carries, if any.
    pub fn of(record: &EditRecord) -> Option<Self> {
        let client_id: [u8; 16] = record.rpc_client_id.as_slice().try_into().ok()?;
        Some(Self {
            client_id,
            call_id: record.rpc_call_id,
        })
    }
}

/// The record of edit `txid`: `op`, made by the call `rpc`.
pub fn record(txid: TxId, op: Op, rpc: Option<&RpcId>) -> EditRecord {
    EditRecord {
        txid,
        op: Some(op),
        rpc_client_id: rpc.map(|r| r.client_id.to_vec()).unwrap_or_default(),
        rpc_call_id: rpc.map_or(0, |r| r.call_id),
    }
}

pub trait Journal: Send + Sync {
    /// Adds `op`, made by the client call `rpc` when it is an at-most-once
    /// call, to the log and returns its txid. Never blocks on I/O.
    fn append(&self, op: Op, rpc: Option<&RpcId>) -> Result<TxId, JournalError>;

    /// Resolves once every edit up to `txid` is durable.
    fn sync(&self, txid: TxId) -> BoxFuture<'_, Result<(), JournalError>>;

    /// The txid of the last appended edit (0 when none).
    fn last_txid(&self) -> TxId;

    /// Makes everything appended durable, finalizes the current segment and
    /// starts a new one; returns the first txid the new segment will hold.
    fn roll(&self) -> BoxFuture<'_, Result<TxId, JournalError>>;

    /// A standby applied the edit `txid`, tailed from the shared journal
    /// (so [`Journal::last_txid`] follows it). Journals that only write
    /// ignore it.
    fn note_applied(&self, _txid: TxId) {}
}

impl From<SegmentError> for JournalError {
    fn from(err: SegmentError) -> Self {
        match err {
            SegmentError::Io { path, source } => Self::Io { path, source },
            SegmentError::Corrupt {
                path,
                offset,
                reason,
            } => Self::Corrupt {
                path,
                offset,
                reason,
            },
        }
    }
}
