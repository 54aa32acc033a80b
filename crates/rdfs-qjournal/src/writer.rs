//! The writer of one epoch: the active namenode's handle on the quorum
//! journal. Methods take `&self` so the namenode can share it; calls are put
//! on every journalnode's link in the order they are made, and each resolves
//! when a majority has made it durable.

use std::sync::Arc;
use std::time::Duration;

use rdfs_common::time::BootInstant;

use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;

use rdfs_proto::JournalRequestInfo;

use crate::client::{QuorumClient, QuorumError};
use crate::fault::JnError;
use crate::logger::{FenceSlot, Logger, Op, Reply};
use crate::quorum::{QuorumCall, Waited, majority};
use crate::segment::TxId;

pub struct QuorumWriter {
    pub(crate) client: QuorumClient,
    pub(crate) writer_id: String,
    pub(crate) epoch: u64,
    lease_timeout: Duration,
    pub(crate) loggers: Vec<Logger>,
    /// First txid of the newest segment a majority reported at new_epoch:
    /// the one recovery must close.
    pub(crate) last_segment_txid: TxId,
    fence: FenceSlot,
    pub(crate) state: Mutex<WriterState>,
}

pub(crate) struct WriterState {
    pub(crate) recovered: bool,
    /// First txid of the open segment.
    pub(crate) segment: Option<TxId>,
    /// The last txid sent (or recovered); the next edit must follow it.
    pub(crate) last_txid: TxId,
    /// The highest txid a majority acknowledged.
    pub(crate) committed_txid: TxId,
    failed: Option<String>,
    /// When the last call that a majority acknowledged was sent.
    lease_renewed_at: BootInstant,
}

impl std::fmt::Debug for QuorumWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumWriter")
            .field("journal", &self.client.jns.journal_id)
            .field("writer", &self.writer_id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl QuorumWriter {
    pub(crate) fn new(
        client: QuorumClient,
        writer_id: String,
        epoch: u64,
        lease_timeout: Duration,
        last_segment_txid: TxId,
        granted_at: BootInstant,
    ) -> Self {
        let fence: FenceSlot = Arc::new(Mutex::new(None));
        let loggers = client
            .jns
            .peers
            .iter()
            .map(|peer| Logger::spawn(Arc::clone(peer), Arc::clone(&fence)))
            .collect();
        Self {
            client,
            writer_id,
            epoch,
            lease_timeout,
            loggers,
            last_segment_txid,
            fence,
            state: Mutex::new(WriterState {
                recovered: false,
                segment: None,
                last_txid: 0,
                committed_txid: 0,
                failed: None,
                lease_renewed_at: granted_at,
            }),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The highest txid a majority has acknowledged.
    pub fn committed_txid(&self) -> TxId {
        self.state.lock().committed_txid
    }

    /// When this writer's leadership lease runs out unless renewed: a lease
    /// timeout after the last call a majority acknowledged was *sent*. The
    /// journalnodes count from when they received it, so by this writer's
    /// clock the lease always ends first; an active should stop serving
    /// once it has passed.
    pub fn lease_expires_at(&self) -> BootInstant {
        self.state.lock().lease_renewed_at + self.lease_timeout
    }

    /// The journalnodes this writer skips until its next segment, with why.
    pub fn out_of_sync(&self) -> Vec<(String, String)> {
        self.loggers
            .iter()
            .filter_map(|l| l.out_of_sync().map(|why| (l.name().to_string(), why)))
            .collect()
    }

    pub(crate) fn info(&self, committed_txid: TxId) -> JournalRequestInfo {
        JournalRequestInfo {
            journal_id: self.client.jns.journal_id.clone(),
            epoch: self.epoch,
            writer_id: self.writer_id.clone(),
            committed_txid,
        }
    }

    fn fenced(&self) -> Option<QuorumError> {
        self.fence
            .lock()
            .as_ref()
            .map(|(journalnode, promised)| QuorumError::Fenced {
                journalnode: journalnode.clone(),
                ours: self.epoch,
                promised: *promised,
            })
    }

    /// Fenced or failed writers take no more calls.
    pub(crate) fn check_usable(&self) -> Result<(), QuorumError> {
        if let Some(fenced) = self.fenced() {
            return Err(fenced);
        }
        if let Some(why) = &self.state.lock().failed {
            return Err(QuorumError::WriterFailed {
                epoch: self.epoch,
                why: why.clone(),
            });
        }
        Ok(())
    }

    /// Queues `op` on every link (the caller holds the state lock when
    /// order matters).
    pub(crate) fn submit(
        &self,
        op: &Op,
        committed_txid: TxId,
        timeout: Duration,
    ) -> Vec<BoxFuture<'static, Result<Reply, JnError>>> {
        let info = self.info(committed_txid);
        let deadline = tokio::time::Instant::now() + timeout;
        self.loggers
            .iter()
            .map(|logger| logger.submit(op.clone(), info.clone(), deadline))
            .collect()
    }

    /// Waits for a majority of `calls`; any journalnode that promised a
    /// newer epoch ends the wait (and this writer) with `Fenced`.
    pub(crate) async fn await_majority(
        &self,
        calls: Vec<BoxFuture<'static, Result<Reply, JnError>>>,
        timeout: Duration,
        sent_at: BootInstant,
    ) -> Result<Vec<(usize, Reply)>, QuorumError> {
        let names = &self.client.jns.names;
        let mut call = QuorumCall::new(names, calls, timeout);
        let waited = call
            .wait_for_majority(|err| err.fenced_by().is_some())
            .await;
        if let Some(fenced) = self.fenced() {
            tracing::error!(epoch = self.epoch, error = %fenced, "writer fenced");
            return Err(fenced);
        }
        match waited {
            Waited::Succeeded => {
                let mut st = self.state.lock();
                st.lease_renewed_at = st.lease_renewed_at.max(sent_at);
                Ok(std::mem::take(&mut call.successes))
            }
            Waited::Fatal(at) => {
                let (i, err) = &call.failures[at];
                Err(QuorumError::Fenced {
                    journalnode: names[*i].clone(),
                    ours: self.epoch,
                    promised: err.fenced_by().unwrap_or(0),
                })
            }
            Waited::Failed | Waited::TimedOut => Err(QuorumError::NoQuorum {
                needed: majority(names.len()),
                succeeded: call.successes.len(),
                errors: call.errors(),
            }),
        }
    }

    pub async fn start_segment(&self, first_txid: u64) -> Result<(), QuorumError> {
        self.check_usable()?;
        let (calls, sent_at) = {
            let st = self.state.lock();
            if !st.recovered {
                return Err(QuorumError::Usage(
                    "recover() must finish before the writer starts a segment".into(),
                ));
            }
            if let Some(open) = st.segment {
                return Err(QuorumError::Usage(format!(
                    "segment {open} is still open; finalize it before starting segment {first_txid}"
                )));
            }
            if first_txid == 0 || (st.last_txid > 0 && first_txid != st.last_txid + 1) {
                return Err(QuorumError::Usage(format!(
                    "the journal ends at txid {}, so the next segment starts at txid {}, not {first_txid}",
                    st.last_txid,
                    st.last_txid + 1
                )));
            }
            let op = Op::StartSegment { txid: first_txid };
            (
                self.submit(&op, st.committed_txid, self.client.timeout),
                self.client.clock.now(),
            )
        };
        self.await_majority(calls, self.client.timeout, sent_at)
            .await?;
        let mut st = self.state.lock();
        st.segment = Some(first_txid);
        st.last_txid = first_txid - 1;
        tracing::info!(
            epoch = self.epoch,
            first_txid,
            "segment started on the quorum"
        );
        Ok(())
    }

    /// Sends already-framed records (segment::encode_record output, no
    /// header) holding txids first_txid..first_txid+count-1; resolves when
    /// a majority made them durable. Calls may overlap: each is queued in
    /// txid order behind the ones before it.
    pub async fn journal(
        &self,
        first_txid: u64,
        count: u64,
        framed: Bytes,
    ) -> Result<(), QuorumError> {
        self.check_usable()?;
        let (calls, sent_at) = {
            let mut st = self.state.lock();
            let Some(segment_first) = st.segment else {
                return Err(QuorumError::Usage(format!(
                    "no segment is open for edits at txid {first_txid}"
                )));
            };
            if count == 0 || first_txid != st.last_txid + 1 {
                return Err(QuorumError::Usage(format!(
                    "edits must follow txid {}; got {count} edits from txid {first_txid}",
                    st.last_txid
                )));
            }
            let op = Op::Journal {
                segment_first,
                first_txid,
                count,
                records: framed,
            };
            let calls = self.submit(&op, st.committed_txid, self.client.timeout);
            st.last_txid = first_txid + count - 1;
            (calls, self.client.clock.now())
        };
        match self
            .await_majority(calls, self.client.timeout, sent_at)
            .await
        {
            Ok(_) => {
                let mut st = self.state.lock();
                st.committed_txid = st.committed_txid.max(first_txid + count - 1);
                Ok(())
            }
            Err(err) => {
                // The journalnodes that missed this batch would reject the
                // next as a gap: this writer cannot go on.
                let mut st = self.state.lock();
                if st.failed.is_none() {
                    tracing::error!(epoch = self.epoch, first_txid, count, error = %err,
                        "edits did not reach a majority of journalnodes");
                    st.failed = Some(format!(
                        "txids {first_txid}..{}: {err}",
                        first_txid + count - 1
                    ));
                }
                Err(err)
            }
        }
    }

    pub async fn finalize_segment(
        &self,
        first_txid: u64,
        last_txid: u64,
    ) -> Result<(), QuorumError> {
        self.check_usable()?;
        let (calls, sent_at) = {
            let st = self.state.lock();
            if st.segment != Some(first_txid) {
                return Err(QuorumError::Usage(format!(
                    "segment {first_txid} is not the open segment ({:?})",
                    st.segment
                )));
            }
            if last_txid != st.last_txid {
                return Err(QuorumError::Usage(format!(
                    "segment {first_txid} holds edits up to txid {}, not {last_txid}",
                    st.last_txid
                )));
            }
            let op = Op::Finalize {
                first: first_txid,
                last: last_txid,
            };
            (
                self.submit(&op, st.committed_txid, self.client.timeout),
                self.client.clock.now(),
            )
        };
        self.await_majority(calls, self.client.timeout, sent_at)
            .await?;
        let mut st = self.state.lock();
        st.segment = None;
        st.committed_txid = st.committed_txid.max(last_txid);
        tracing::info!(
            epoch = self.epoch,
            first_txid,
            last_txid,
            "segment finalized on the quorum"
        );
        Ok(())
    }

    /// Renews the leadership lease on a majority (also carries the
    /// committed txid so tailers see the latest batch). Err(Fenced) as soon
    /// as any journalnode reports a newer epoch.
    pub async fn heartbeat(&self) -> Result<(), QuorumError> {
        self.check_usable()?;
        let (calls, sent_at) = {
            let st = self.state.lock();
            (
                self.submit(&Op::Heartbeat, st.committed_txid, self.client.timeout),
                self.client.clock.now(),
            )
        };
        self.await_majority(calls, self.client.timeout, sent_at)
            .await
            .map(drop)
    }

    pub async fn purge_older_than(&self, txid: u64) -> Result<(), QuorumError> {
        self.check_usable()?;
        let (calls, sent_at) = {
            let st = self.state.lock();
            let op = Op::Purge {
                min_txid_to_keep: txid,
            };
            (
                self.submit(&op, st.committed_txid, self.client.timeout),
                self.client.clock.now(),
            )
        };
        self.await_majority(calls, self.client.timeout, sent_at)
            .await
            .map(drop)
    }
}
