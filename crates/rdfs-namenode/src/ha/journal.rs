//! The edit log of an HA namenode.
//!
//! [`QuorumJournal`] writes through a [`QuorumWriter`] with group commit as
//! [`crate::edit_log::FileJournal`] does: appends only encode into a pending
//! buffer; a sync sends everything pending as one batch and resolves once a
//! majority of journalnodes made it durable. One batch is in flight at a
//! time, in a task that owns the turn, so a cancelled RPC can neither
//! reorder batches nor leave the log stuck.
//!
//! [`HaJournal`] is what the namesystem holds: as a standby it only follows
//! the txids of tailed edits and refuses appends; once active it forwards to
//! its quorum journal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use rdfs_qjournal::QuorumWriter;

use crate::edit_log::segment::encode_record;
use crate::edit_log::{Journal, JournalError, Op, RpcId, TxId, record};

pub struct QuorumJournal {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Arc<QuorumWriter>,
    state: Mutex<State>,
    /// Every edit up to here is durable on a majority of journalnodes.
    synced: AtomicU64,
    /// Held by the task sending a batch (or rolling), one at a time.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Cancelled when the journal fails: the namesystem is no longer fit to
    /// serve (the namenode steps down and reloads).
    on_failure: CancellationToken,
}

struct State {
    pending: Vec<u8>,
    pending_first: TxId,
    pending_count: u64,
    last_appended: TxId,
    segment_first: TxId,
    failed: Option<String>,
}

impl QuorumJournal {
    /// A journal whose open segment (already started on the quorum) begins
    /// at `segment_first`.
    pub fn new(
        writer: Arc<QuorumWriter>,
        segment_first: TxId,
        on_failure: CancellationToken,
    ) -> Self {
        let last = segment_first.saturating_sub(1);
        Self {
            inner: Arc::new(Inner {
                writer,
                state: Mutex::new(State {
                    pending: Vec::new(),
                    pending_first: segment_first,
                    pending_count: 0,
                    last_appended: last,
                    segment_first,
                    failed: None,
                }),
                synced: AtomicU64::new(last),
                turn: Arc::new(tokio::sync::Mutex::new(())),
                on_failure,
            }),
        }
    }

    pub fn writer(&self) -> &Arc<QuorumWriter> {
        &self.inner.writer
    }

    /// The first txid of the open segment.
    pub fn segment_first(&self) -> TxId {
        self.inner.state.lock().segment_first
    }

    /// Refuses everything from now on (the namenode is stepping down).
    pub fn abort(&self, why: &str) {
        self.inner.fail(why.to_string());
    }

    /// Flushes what is pending and finalizes the open segment, so the next
    /// active has nothing to recover (graceful shutdown or failover).
    pub async fn close(&self) -> Result<TxId, JournalError> {
        self.turn(Turn::Close).await
    }

    async fn turn(&self, kind: Turn) -> Result<TxId, JournalError> {
        self.turn_until(kind, None).await
    }

    /// Takes the turn and sends the pending batch, unless (`until`) the
    /// edits the caller waits for became durable while it queued for the
    /// turn: callers that arrive during a send all ride on the next one,
    /// instead of each sending whatever little is pending by then.
    async fn turn_until(&self, kind: Turn, until: Option<TxId>) -> Result<TxId, JournalError> {
        let guard = Arc::clone(&self.inner.turn).lock_owned().await;
        if let Some(txid) = until
            && self.inner.synced.load(Ordering::Acquire) >= txid
        {
            return Ok(txid + 1);
        }
        let inner = Arc::clone(&self.inner);
        match tokio::spawn(async move { inner.run(kind, guard).await }).await {
            Ok(result) => result,
            Err(err) => {
                let why = format!("edit log task failed: {err}");
                self.inner.fail(why.clone());
                Err(JournalError::Failed(why))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    Sync,
    Roll,
    Close,
}

impl Inner {
    fn fail(&self, why: String) {
        let mut state = self.state.lock();
        if state.failed.is_none() {
            tracing::error!(error = %why, "quorum edit log failed; this namenode can no longer write");
            state.failed = Some(why);
        }
        drop(state);
        self.on_failure.cancel();
    }

    fn check(&self) -> Result<(), JournalError> {
        match &self.state.lock().failed {
            Some(why) => Err(not_active(why)),
            None => Ok(()),
        }
    }

    /// Sends the pending batch, then rolls or closes the segment if asked;
    /// the caller holds the turn.
    async fn run(
        &self,
        kind: Turn,
        _turn: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<TxId, JournalError> {
        self.check()?;
        let (batch, first, count, segment_first, last) = {
            let mut state = self.state.lock();
            let batch = std::mem::take(&mut state.pending);
            let first = state.pending_first;
            let count = state.pending_count;
            state.pending_first = state.last_appended + 1;
            state.pending_count = 0;
            (
                batch,
                first,
                count,
                state.segment_first,
                state.last_appended,
            )
        };
        if count > 0
            && let Err(err) = self.writer.journal(first, count, batch.into()).await
        {
            let why = format!(
                "writing edits {first}-{} to the journal quorum: {err}",
                first + count - 1
            );
            self.fail(why.clone());
            return Err(JournalError::Quorum(why));
        }
        self.synced.fetch_max(last, Ordering::AcqRel);
        if kind == Turn::Sync {
            return Ok(last + 1);
        }
        if last >= segment_first {
            if let Err(err) = self.writer.finalize_segment(segment_first, last).await {
                let why = format!("finalizing edits {segment_first}-{last}: {err}");
                self.fail(why.clone());
                return Err(JournalError::Quorum(why));
            }
        } else if kind == Turn::Roll {
            // Nothing was written since the last roll: keep the segment.
            return Ok(segment_first);
        }
        if kind == Turn::Close {
            self.fail("the edit log is closed".to_string());
            return Ok(last + 1);
        }
        if let Err(err) = self.writer.start_segment(last + 1).await {
            let why = format!("starting the segment at txid {}: {err}", last + 1);
            self.fail(why.clone());
            return Err(JournalError::Quorum(why));
        }
        self.state.lock().segment_first = last + 1;
        Ok(last + 1)
    }
}

impl Journal for QuorumJournal {
    fn append(&self, op: Op, rpc: Option<&RpcId>) -> Result<TxId, JournalError> {
        let mut state = self.inner.state.lock();
        if let Some(failed) = &state.failed {
            return Err(not_active(failed));
        }
        let txid = state.last_appended + 1;
        encode_record(&record(txid, op, rpc), &mut state.pending);
        if state.pending_count == 0 {
            state.pending_first = txid;
        }
        state.pending_count += 1;
        state.last_appended = txid;
        Ok(txid)
    }

    fn sync(&self, txid: TxId) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            loop {
                if self.inner.synced.load(Ordering::Acquire) >= txid {
                    return Ok(());
                }
                self.inner.check()?;
                self.turn_until(Turn::Sync, Some(txid)).await?;
            }
        })
    }

    fn last_txid(&self) -> TxId {
        self.inner.state.lock().last_appended
    }

    fn roll(&self) -> BoxFuture<'_, Result<TxId, JournalError>> {
        Box::pin(self.turn(Turn::Roll))
    }
}

/// The error of a journal that can no longer write: clients fail over.
fn not_active(why: &str) -> JournalError {
    JournalError::NotActive(format!(
        "this namenode can no longer write edits ({why}); another namenode takes over"
    ))
}

/// The journal a namesystem of an HA namenode holds.
#[derive(Default)]
pub struct HaJournal {
    active: RwLock<Option<Arc<QuorumJournal>>>,
    /// As a standby: the last tailed edit applied.
    applied: AtomicU64,
}

impl HaJournal {
    /// A standby's journal whose namespace holds every edit up to `applied`.
    pub fn standby(applied: TxId) -> Self {
        Self {
            active: RwLock::new(None),
            applied: AtomicU64::new(applied),
        }
    }

    /// From now on edits go to `journal` (the namenode became active).
    pub fn activate(&self, journal: Arc<QuorumJournal>) {
        *self.active.write() = Some(journal);
    }

    pub fn quorum(&self) -> Option<Arc<QuorumJournal>> {
        self.active.read().clone()
    }

    fn standby_error() -> JournalError {
        JournalError::NotActive("Operation category WRITE is not supported in state standby".into())
    }
}

impl Journal for HaJournal {
    fn append(&self, op: Op, rpc: Option<&RpcId>) -> Result<TxId, JournalError> {
        match &*self.active.read() {
            Some(journal) => journal.append(op, rpc),
            None => Err(Self::standby_error()),
        }
    }

    fn sync(&self, txid: TxId) -> BoxFuture<'_, Result<(), JournalError>> {
        let journal = self.quorum();
        Box::pin(async move {
            match journal {
                Some(journal) => journal.sync(txid).await,
                None if txid <= self.applied.load(Ordering::Acquire) => Ok(()),
                None => Err(Self::standby_error()),
            }
        })
    }

    fn last_txid(&self) -> TxId {
        match &*self.active.read() {
            Some(journal) => journal.last_txid(),
            None => self.applied.load(Ordering::Acquire),
        }
    }

    fn roll(&self) -> BoxFuture<'_, Result<TxId, JournalError>> {
        let journal = self.quorum();
        Box::pin(async move {
            match journal {
                Some(journal) => journal.roll().await,
                None => Err(Self::standby_error()),
            }
        })
    }

    fn note_applied(&self, txid: TxId) {
        self.applied.fetch_max(txid, Ordering::AcqRel);
    }
}
