//! A writer's ordered link to one journalnode (HDFS's `IPCLoggerChannel`).
//!
//! Writer calls to one journalnode must arrive in the order they were made
//! (a batch before the next), while the writer must never wait for a slow
//! journalnode beyond what a majority needs. So each journalnode gets a
//! queue and a task that sends its calls one at a time; the writer enqueues
//! to every link and waits for a majority of the answers.
//!
//! A link that missed a batch (failed, timed out, or waited in the queue
//! past its deadline) is *out of sync*: its journalnode would see a gap. It
//! skips every batch until the writer starts the next segment, which it can
//! join again — as HDFS does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use rdfs_proto::{
    AcceptRecoveryRequest, FinalizeLogSegmentRequest, JournalHeartbeatRequest, JournalRequest,
    JournalRequestInfo, PrepareRecoveryRequest, PrepareRecoveryResponse, PurgeLogsRequest,
    SegmentStateProto, StartLogSegmentRequest,
};

use crate::fault::JnError;
use crate::peer::JournalPeer;
use crate::segment::TxId;

/// Edits queued for one journalnode beyond which it is dropped out of sync
/// rather than let a dead node hold the writer's memory.
const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// A writer call, in the order it must reach the journalnode.
#[derive(Clone)]
pub(crate) enum Op {
    Heartbeat,
    StartSegment {
        txid: TxId,
    },
    Journal {
        segment_first: TxId,
        first_txid: TxId,
        count: u64,
        records: Bytes,
    },
    Finalize {
        first: TxId,
        last: TxId,
    },
    Purge {
        min_txid_to_keep: TxId,
    },
    Prepare {
        segment_txid: TxId,
    },
    /// `edits`: the chosen segment's framed records in chunks, when this
    /// journalnode lacks them.
    Accept {
        chosen: SegmentStateProto,
        edits: Option<Arc<Vec<Bytes>>>,
    },
}

impl Op {
    fn queued_bytes(&self) -> usize {
        match self {
            Self::Journal { records, .. } => records.len(),
            _ => 0,
        }
    }
}

pub(crate) enum Reply {
    Done,
    Prepared(PrepareRecoveryResponse),
}

struct Job {
    op: Op,
    info: JournalRequestInfo,
    deadline: Instant,
    reply: oneshot::Sender<Result<Reply, JnError>>,
}

/// What the writer and a link's task share.
struct Shared {
    /// Why the link is out of sync, while it is.
    out_of_sync: Mutex<Option<String>>,
    queued_bytes: AtomicUsize,
}

/// Where a link reports that its journalnode promised a newer epoch: the
/// writer is fenced from then on.
pub(crate) type FenceSlot = Arc<Mutex<Option<(String, u64)>>>;

pub(crate) struct Logger {
    name: String,
    jobs: mpsc::UnboundedSender<Job>,
    shared: Arc<Shared>,
}

impl Logger {
    /// Starts the link's task; it ends when the logger is dropped.
    pub(crate) fn spawn(peer: Arc<dyn JournalPeer>, fence: FenceSlot) -> Self {
        let name = peer.name().to_string();
        let (jobs, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            out_of_sync: Mutex::new(None),
            queued_bytes: AtomicUsize::new(0),
        });
        let link = Link {
            name: name.clone(),
            peer,
            shared: Arc::clone(&shared),
            fence,
        };
        tokio::spawn(link.run(queue));
        Self { name, jobs, shared }
    }

    /// Queues `op` behind the calls already queued and returns its answer.
    /// Must be called in the order the calls are to arrive.
    pub(crate) fn submit(
        &self,
        op: Op,
        info: JournalRequestInfo,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Reply, JnError>> {
        let bytes = op.queued_bytes();
        if bytes > 0 {
            let queued = self.shared.queued_bytes.fetch_add(bytes, Ordering::SeqCst);
            if queued + bytes > MAX_QUEUED_BYTES {
                self.shared.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
                let why = format!(
                    "over {} MiB of edits queued for it",
                    MAX_QUEUED_BYTES / (1024 * 1024)
                );
                mark_out_of_sync(&self.name, &self.shared, &why);
                return Box::pin(async move { Err(JnError::OutOfSync(why)) });
            }
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            op,
            info,
            deadline,
            reply,
        };
        if self.jobs.send(job).is_err() {
            return Box::pin(async { Err(JnError::Rpc("the journalnode link stopped".into())) });
        }
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(JnError::Rpc("the journalnode link stopped".into())))
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Why this link skips edits, if it does.
    pub(crate) fn out_of_sync(&self) -> Option<String> {
        self.shared.out_of_sync.lock().clone()
    }
}

fn mark_out_of_sync(name: &str, shared: &Shared, why: &str) {
    let mut state = shared.out_of_sync.lock();
    if state.is_none() {
        // Logged once per episode: every later batch is skipped silently
        // until the next segment.
        tracing::warn!(journalnode = %name, why, "journalnode out of sync; skipping it until the next segment");
        *state = Some(why.to_string());
    }
}

struct Link {
    name: String,
    peer: Arc<dyn JournalPeer>,
    shared: Arc<Shared>,
    fence: FenceSlot,
}

impl Link {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = queue.recv().await {
            let bytes = job.op.queued_bytes();
            let result = self.execute(job.op, job.info, job.deadline).await;
            self.shared.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
            if let Err(err) = &result
                && let Some(promised) = err.fenced_by()
            {
                let mut fence = self.fence.lock();
                if fence.is_none() {
                    *fence = Some((self.name.clone(), promised));
                }
            }
            let _ = job.reply.send(result);
        }
    }

    async fn execute(
        &self,
        op: Op,
        info: JournalRequestInfo,
        deadline: Instant,
    ) -> Result<Reply, JnError> {
        if let Op::Journal { .. } = op
            && let Some(why) = self.shared.out_of_sync.lock().clone()
        {
            return Err(JnError::OutOfSync(why));
        }
        let now = Instant::now();
        if now >= deadline {
            let err =
                JnError::Rpc("waited in the queue behind slower calls past its deadline".into());
            self.after(&op, &err);
            return Err(err);
        }
        let timeout_ms = (deadline - now).as_millis() as u64;
        let result = match tokio::time::timeout_at(deadline, self.call(op.clone(), info)).await {
            Ok(result) => result,
            Err(_) => Err(JnError::TimedOut(timeout_ms)),
        };
        match &result {
            Ok(_) => {
                if let Op::StartSegment { txid } = op {
                    let mut state = self.shared.out_of_sync.lock();
                    if state.take().is_some() {
                        tracing::info!(journalnode = %self.name, txid, "journalnode back in sync at a new segment");
                    }
                }
            }
            Err(err) => self.after(&op, err),
        }
        result
    }

    /// A journalnode that missed a batch or a segment start would see a gap.
    fn after(&self, op: &Op, err: &JnError) {
        match op {
            Op::Journal { first_txid, .. } => {
                mark_out_of_sync(
                    &self.name,
                    &self.shared,
                    &format!("txid {first_txid}: {err}"),
                );
            }
            Op::StartSegment { txid } => {
                mark_out_of_sync(
                    &self.name,
                    &self.shared,
                    &format!("segment {txid} not started: {err}"),
                );
            }
            _ => {}
        }
    }

    async fn call(&self, op: Op, info: JournalRequestInfo) -> Result<Reply, JnError> {
        let info = Some(info);
        let peer = &self.peer;
        match op {
            Op::Heartbeat => peer.heartbeat(JournalHeartbeatRequest { info }).await?,
            Op::StartSegment { txid } => {
                peer.start_log_segment(StartLogSegmentRequest { info, txid })
                    .await?;
            }
            Op::Journal {
                segment_first,
                first_txid,
                count,
                records,
            } => {
                peer.journal(JournalRequest {
                    info,
                    segment_first_txid: segment_first,
                    first_txid,
                    num_records: count,
                    records: records.to_vec(),
                })
                .await?;
            }
            Op::Finalize { first, last } => {
                peer.finalize_log_segment(FinalizeLogSegmentRequest {
                    info,
                    first_txid: first,
                    last_txid: last,
                })
                .await?;
            }
            Op::Purge { min_txid_to_keep } => {
                peer.purge_logs(PurgeLogsRequest {
                    info,
                    min_txid_to_keep,
                })
                .await?;
            }
            Op::Prepare { segment_txid } => {
                let response = peer
                    .prepare_recovery(PrepareRecoveryRequest { info, segment_txid })
                    .await?;
                return Ok(Reply::Prepared(response));
            }
            Op::Accept { chosen, edits } => {
                let head = AcceptRecoveryRequest {
                    info,
                    segment_state: Some(chosen),
                    records: Vec::new(),
                };
                peer.accept_recovery(head, edits).await?;
            }
        }
        Ok(Reply::Done)
    }
}
