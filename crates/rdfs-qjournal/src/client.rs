//! The namenode's side of the quorum journal: format it, see who holds the
//! leadership lease, become the writer (a new epoch), and read committed
//! edits as a standby. Every call goes to all journalnodes at once and is
//! decided by a majority.

use std::sync::Arc;
use std::time::Duration;

use rdfs_common::config::QuorumJournalUri;
use rdfs_common::time::{BootClock, Clock};
use rdfs_proto::editlog::EditRecord;
use rdfs_proto::{
    FormatJournalRequest, GetJournalStateRequest, GetJournalStateResponse, JournalFaultKind,
    NewEpochRequest, ReadEditsRequest,
};

use crate::fault::JnError;
use crate::peer::{GrpcPeer, JournalPeer, PeerCall};
use crate::quorum::{QuorumCall, Waited, majority};
use crate::segment::{self, TxId};
use crate::stamp::NamespaceStamp;
use crate::writer::QuorumWriter;

/// How long a read waits, after a majority answered, for the rest.
const READ_GRACE: Duration = Duration::from_millis(100);

/// Why a quorum call failed.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// A journalnode has promised a newer epoch: another namenode took over.
    #[error(
        "journalnode {journalnode} has promised epoch {promised}, newer than our epoch {ours}: another namenode took over"
    )]
    Fenced {
        journalnode: String,
        ours: u64,
        promised: u64,
    },
    /// The current writer's lease is still held on a majority.
    #[error(
        "the leadership lease of {writer} is still held on a majority of journalnodes for about {remaining_ms} ms"
    )]
    LeaseHeld { writer: String, remaining_ms: u64 },
    #[error("{succeeded} journalnodes succeeded, {needed} needed: {errors}")]
    NoQuorum {
        needed: usize,
        succeeded: usize,
        errors: String,
    },
    #[error("the journal is not formatted: {0}")]
    NotFormatted(String),
    #[error("the journal belongs to another namespace: {0}")]
    Mismatch(String),
    #[error("the journal is already formatted: {0}")]
    AlreadyFormatted(String),
    /// The edits asked for are gone from every journalnode that answered
    /// (purged after a checkpoint): the reader needs a newer image.
    #[error(
        "edits from txid {from_txid} were purged; the oldest the journalnodes hold is {oldest}"
    )]
    Purged { from_txid: TxId, oldest: TxId },
    /// Recovery found the journalnodes in a state the protocol rules out.
    #[error("recovery of the journal failed: {0}")]
    Recovery(String),
    /// The caller broke the writer's rules (txids out of order, no segment
    /// open, recover() not run first).
    #[error("{0}")]
    Usage(String),
    /// A batch failed to reach a majority: the journalnodes may now hold
    /// gaps, so this writer takes no more edits; take a new epoch.
    #[error("the writer of epoch {epoch} failed earlier and takes no more edits: {why}")]
    WriterFailed { epoch: u64, why: String },
}

/// One journalnode's answer to a read: the records, the oldest txid it
/// holds, and the epoch of the segment its last record comes from.
struct Answer {
    records: Vec<EditRecord>,
    first_available: TxId,
    epoch: u64,
}

/// Who holds the leadership lease, as a majority sees it.
#[derive(Debug, Clone)]
pub struct LeaseView {
    /// The newest epoch promised on the journalnodes that answered.
    pub epoch: u64,
    /// Its writer.
    pub writer: String,
    /// Whether too few journalnodes have gone a lease timeout without
    /// hearing from their writer for a new epoch to be granted.
    pub held: bool,
    /// How long until it would no longer be held, if the writer stays
    /// silent (0 when not held).
    pub remaining_ms: u64,
}

pub(crate) struct Journalnodes {
    pub(crate) journal_id: String,
    pub(crate) names: Vec<String>,
    pub(crate) peers: Vec<Arc<dyn JournalPeer>>,
}

#[derive(Clone)]
pub struct QuorumClient {
    pub(crate) jns: Arc<Journalnodes>,
    pub(crate) timeout: Duration,
    pub(crate) recovery_timeout: Duration,
    /// The clock a writer's leadership lease is measured on.
    pub(crate) clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for QuorumClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumClient")
            .field("journal", &self.jns.journal_id)
            .field("journalnodes", &self.jns.names)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl QuorumClient {
    /// Connections are made on first use, so a journalnode that is down
    /// now costs nothing until it is called.
    pub fn new(uri: &QuorumJournalUri, timeout: Duration) -> Self {
        let peers = uri
            .journalnodes
            .iter()
            .map(|name| Arc::new(GrpcPeer::new(name.clone(), timeout)) as Arc<dyn JournalPeer>)
            .collect();
        Self::with_peers(&uri.journal_id, peers, timeout, Arc::new(BootClock))
    }

    /// A client of the journal `journal_id` on `peers`, with leases on
    /// `clock` (the simulator passes its own of each).
    pub(crate) fn with_peers(
        journal_id: &str,
        peers: Vec<Arc<dyn JournalPeer>>,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            jns: Arc::new(Journalnodes {
                journal_id: journal_id.to_string(),
                names: peers.iter().map(|peer| peer.name().to_string()).collect(),
                peers,
            }),
            timeout,
            // Recovery moves whole segments between journalnodes.
            recovery_timeout: timeout.max(Duration::from_secs(60)),
            clock,
        }
    }

    /// How long recovery calls (which may move a whole segment) may take;
    /// the default is the call timeout or 60 s, whichever is longer.
    pub fn with_recovery_timeout(mut self, timeout: Duration) -> Self {
        self.recovery_timeout = timeout;
        self
    }

    pub fn journalnodes(&self) -> &[String] {
        &self.jns.names
    }

    pub fn journal_id(&self) -> &str {
        &self.jns.journal_id
    }

    /// One call per journalnode.
    pub(crate) fn direct<T>(
        &self,
        f: impl Fn(&dyn JournalPeer) -> PeerCall<T>,
    ) -> Vec<PeerCall<T>> {
        self.jns.peers.iter().map(|peer| f(peer.as_ref())).collect()
    }

    fn no_quorum<T: Send + 'static>(&self, call: &QuorumCall<'_, T>, needed: usize) -> QuorumError {
        QuorumError::NoQuorum {
            needed,
            succeeded: call.successes.len(),
            errors: call.errors(),
        }
    }

    fn states(&self) -> QuorumCall<'_, GetJournalStateResponse> {
        let journal_id = self.jns.journal_id.clone();
        let calls = self.direct(move |peer| {
            peer.get_journal_state(GetJournalStateRequest {
                journal_id: journal_id.clone(),
            })
        });
        QuorumCall::new(&self.jns.names, calls, self.timeout)
    }

    /// The journal state of a majority; `NoQuorum` without one.
    async fn majority_states(&self) -> Result<Vec<(usize, GetJournalStateResponse)>, QuorumError> {
        self.majority_states_within(Duration::ZERO).await
    }

    /// Like [`Self::majority_states`], also waiting up to `grace` for the
    /// journalnodes beyond the majority.
    async fn majority_states_within(
        &self,
        grace: Duration,
    ) -> Result<Vec<(usize, GetJournalStateResponse)>, QuorumError> {
        let mut call = self.states();
        match call.wait_for_majority(|_| false).await {
            Waited::Succeeded => {
                call.linger(grace).await;
                Ok(std::mem::take(&mut call.successes))
            }
            _ => Err(self.no_quorum(&call, majority(self.jns.names.len()))),
        }
    }

    /// Formats the journal on every journalnode: all must succeed, so no
    /// journalnode is left behind unformatted (as in HDFS).
    pub async fn format(&self, stamp: &NamespaceStamp, force: bool) -> Result<(), QuorumError> {
        let journal_id = self.jns.journal_id.clone();
        let proto = stamp.to_proto();
        let calls = self.direct(move |peer| {
            peer.format_journal(FormatJournalRequest {
                journal_id: journal_id.clone(),
                stamp: Some(proto.clone()),
                force,
            })
        });
        let n = self.jns.names.len();
        let mut call = QuorumCall::new(&self.jns.names, calls, self.timeout);
        if call.wait_for(n, 0, |_| false).await == Waited::Succeeded {
            tracing::info!(journal = %self.jns.journal_id, force, "journal formatted on every journalnode");
            return Ok(());
        }
        let formatted: Vec<String> = call
            .failures
            .iter()
            .filter(|(_, err)| err.kind() == Some(JournalFaultKind::JournalFaultAlreadyFormatted))
            .map(|(i, err)| format!("{}: {err}", call.name(*i)))
            .collect();
        if !formatted.is_empty() {
            return Err(QuorumError::AlreadyFormatted(formatted.join("; ")));
        }
        Err(self.no_quorum(&call, n))
    }

    /// The namespace the journal is formatted for, or `None` when no
    /// journalnode that answered is formatted. Waits for more than a
    /// majority only when the answers disagree.
    pub async fn formatted_stamp(&self) -> Result<Option<NamespaceStamp>, QuorumError> {
        let n = self.jns.names.len();
        let mut call = self.states();
        loop {
            let answered = &call.successes;
            let unanimous = answered
                .windows(2)
                .all(|w| w[0].1.formatted == w[1].1.formatted && w[0].1.stamp == w[1].1.stamp);
            if answered.len() >= majority(n) && unanimous {
                break;
            }
            if !call.next().await {
                break;
            }
        }
        if call.successes.len() < majority(n) {
            return Err(self.no_quorum(&call, majority(n)));
        }
        let mut stamp: Option<(usize, NamespaceStamp)> = None;
        for (i, state) in call.successes.iter().filter(|(_, s)| s.formatted) {
            let theirs = NamespaceStamp::from_proto(&state.stamp.clone().unwrap_or_default());
            match &stamp {
                None => stamp = Some((*i, theirs)),
                Some((first, ours)) => {
                    if let Some(why) = ours.mismatch(&theirs) {
                        return Err(QuorumError::Mismatch(format!(
                            "journalnodes {} and {} disagree: {why}",
                            call.name(*first),
                            call.name(*i)
                        )));
                    }
                }
            }
        }
        Ok(stamp.map(|(_, stamp)| stamp))
    }

    /// Who holds the leadership lease: a new epoch is granted only once a
    /// majority has gone `lease_timeout` without hearing from its writer.
    pub async fn lease_view(&self, lease_timeout: Duration) -> Result<LeaseView, QuorumError> {
        let states = self.majority_states().await?;
        Ok(lease_view_of(&states, lease_timeout, self.jns.names.len()))
    }

    /// Becomes the writer: takes an epoch one above any a majority has
    /// promised. Refused while the current writer's lease is held on a
    /// majority, unless `take_over_held_lease` (an operator's forced
    /// failover). The writer must [`QuorumWriter::recover`] before writing.
    pub async fn new_epoch(
        &self,
        stamp: &NamespaceStamp,
        writer_id: &str,
        lease_timeout: Duration,
        take_over_held_lease: bool,
    ) -> Result<QuorumWriter, QuorumError> {
        let n = self.jns.names.len();
        let need = majority(n);
        // The epoch must be above every promise: one a journalnode outside
        // the first majority made (to a candidate that got no further)
        // would fence this writer at its first call there.
        let states = self.majority_states_within(READ_GRACE).await?;
        let unformatted: Vec<&str> = states
            .iter()
            .filter(|(_, s)| !s.formatted)
            .map(|(i, _)| self.jns.names[*i].as_str())
            .collect();
        if unformatted.len() >= need {
            return Err(QuorumError::NotFormatted(format!(
                "journal '{}' is not formatted on {}",
                self.jns.journal_id,
                unformatted.join(", ")
            )));
        }
        for (i, state) in states.iter().filter(|(_, s)| s.formatted) {
            let theirs = NamespaceStamp::from_proto(&state.stamp.clone().unwrap_or_default());
            if let Some(why) = theirs.mismatch(stamp) {
                return Err(QuorumError::Mismatch(format!(
                    "journalnode {}: {why}",
                    self.jns.names[*i]
                )));
            }
        }
        // Asking a majority first keeps a hopeless candidate from bumping
        // the promise on the few journalnodes that lost touch with the
        // writer, which would fence it there for nothing.
        let view = lease_view_of(&states, lease_timeout, n);
        if view.held && !take_over_held_lease {
            return Err(QuorumError::LeaseHeld {
                writer: view.writer,
                remaining_ms: view.remaining_ms,
            });
        }
        let epoch = states
            .iter()
            .map(|(_, s)| s.last_promised_epoch)
            .max()
            .unwrap_or(0)
            + 1;
        let request = NewEpochRequest {
            journal_id: self.jns.journal_id.clone(),
            stamp: Some(stamp.to_proto()),
            epoch,
            writer_id: writer_id.to_string(),
            lease_timeout_ms: lease_timeout.as_millis() as u64,
            take_over_held_lease,
        };
        let sent_at = self.clock.now();
        let calls = self.direct(move |peer| peer.new_epoch(request.clone()));
        let mut call = QuorumCall::new(&self.jns.names, calls, self.timeout);
        if call.wait_for_majority(|_| false).await != Waited::Succeeded {
            return Err(self.new_epoch_failure(&call, epoch));
        }
        let last_segment_txid = call
            .successes
            .iter()
            .map(|(_, r)| r.last_segment_txid)
            .max()
            .unwrap_or(0);
        tracing::info!(journal = %self.jns.journal_id, epoch, writer = writer_id,
            granted = call.successes.len(), last_segment_txid, "new writer epoch");
        Ok(QuorumWriter::new(
            self.clone(),
            writer_id.to_string(),
            epoch,
            lease_timeout,
            last_segment_txid,
            sent_at,
        ))
    }

    fn new_epoch_failure<T: Send + 'static>(
        &self,
        call: &QuorumCall<'_, T>,
        epoch: u64,
    ) -> QuorumError {
        let need = majority(self.jns.names.len());
        let of_kind = |kind: JournalFaultKind| {
            call.failures
                .iter()
                .filter(move |(_, err)| err.kind() == Some(kind))
        };
        let named = |(i, err): &(usize, JnError)| format!("journalnode {}: {err}", call.name(*i));
        if let Some(failure) = of_kind(JournalFaultKind::JournalFaultMismatch).next() {
            return QuorumError::Mismatch(named(failure));
        }
        if let Some((i, err)) = of_kind(JournalFaultKind::JournalFaultEpochNotNewer).next() {
            return QuorumError::Fenced {
                journalnode: call.name(*i).to_string(),
                ours: epoch,
                promised: err.fault().map_or(0, |f| f.promised_epoch),
            };
        }
        let mut held: Vec<(String, u64)> = of_kind(JournalFaultKind::JournalFaultLeaseHeld)
            .filter_map(|(_, err)| err.fault())
            .map(|f| (f.lease_holder.clone(), f.lease_remaining_ms))
            .collect();
        let missing = need.saturating_sub(call.successes.len());
        if !held.is_empty() && call.failures.len() > self.jns.names.len() - need {
            held.sort_by_key(|(_, ms)| *ms);
            let (writer, remaining_ms) = held[missing.min(held.len()).saturating_sub(1)].clone();
            return QuorumError::LeaseHeld {
                writer,
                remaining_ms,
            };
        }
        let unformatted: Vec<String> = of_kind(JournalFaultKind::JournalFaultNotFormatted)
            .map(named)
            .collect();
        if !unformatted.is_empty() {
            return QuorumError::NotFormatted(unformatted.join("; "));
        }
        self.no_quorum(call, need)
    }

    /// Committed edits with txid >= from_txid, contiguous, at most
    /// max_records, from finalized and in-progress segments; empty when
    /// there are none yet. Never returns an edit a majority has not
    /// acknowledged.
    pub async fn read_committed(
        &self,
        from_txid: u64,
        max_records: usize,
    ) -> Result<Vec<EditRecord>, QuorumError> {
        if max_records == 0 {
            return Ok(Vec::new());
        }
        let from = from_txid.max(1);
        let journal_id = self.jns.journal_id.clone();
        let calls = self.direct(move |peer| {
            let read = peer.read_edits(ReadEditsRequest {
                journal_id: journal_id.clone(),
                from_txid: from,
                max_records: max_records as u64,
            });
            Box::pin(async move {
                let chunks = read.await?;
                let mut first_available = None;
                let mut records = Vec::new();
                let mut epoch = 0;
                for chunk in chunks {
                    first_available.get_or_insert(chunk.first_available_txid);
                    let decoded =
                        segment::decode_records(&chunk.records).map_err(JnError::BadReply)?;
                    if !decoded.is_empty() {
                        epoch = chunk.segment_epoch;
                    }
                    records.extend(decoded);
                }
                if records.len() > max_records {
                    return Err(JnError::BadReply(format!(
                        "{} edits sent, {max_records} asked for",
                        records.len()
                    )));
                }
                if let Some((i, record)) = records
                    .iter()
                    .enumerate()
                    .find(|(i, r)| r.txid != from + *i as u64)
                {
                    return Err(JnError::BadReply(format!(
                        "txid {} sent where {} belongs",
                        record.txid,
                        from + i as u64
                    )));
                }
                Ok(Answer {
                    records,
                    first_available: first_available.unwrap_or(0),
                    epoch,
                })
            })
        });
        let mut call = QuorumCall::new(&self.jns.names, calls, self.timeout);
        if call.wait_for_majority(|_| false).await != Waited::Succeeded {
            return Err(self.no_quorum(&call, majority(self.jns.names.len())));
        }
        // A journalnode that restarted serves nothing of the open segment
        // until the next one, so the first majority may be the ones knowing
        // least: the others get a moment to answer too.
        call.linger(READ_GRACE).await;
        let answers = std::mem::take(&mut call.successes);
        let purged_on: Vec<TxId> = answers
            .iter()
            .map(|(_, answer)| answer.first_available)
            .filter(|oldest| *oldest > from)
            .collect();
        let best = self.best_answer(answers, from);
        if best.is_empty() && purged_on.len() >= majority(self.jns.names.len()) {
            return Err(QuorumError::Purged {
                from_txid: from,
                oldest: purged_on.into_iter().min().unwrap_or(0),
            });
        }
        Ok(best)
    }

    /// Every journalnode serves only committed edits, so the answers are
    /// prefixes of one log and the longest is the most up to date. Should
    /// two disagree all the same, the copy of the newer epoch wins, never
    /// the one that happened to arrive first or last; the disagreement is
    /// logged, as it means a journalnode holds what it must not.
    fn best_answer(&self, answers: Vec<(usize, Answer)>, from: TxId) -> Vec<EditRecord> {
        let Some(best) = answers
            .iter()
            .enumerate()
            .max_by_key(|(order, (_, a))| (a.epoch, a.records.len(), std::cmp::Reverse(*order)))
            .map(|(order, _)| order)
        else {
            return Vec::new();
        };
        for (i, answer) in &answers {
            let chosen = &answers[best].1;
            if let Some(at) = answer
                .records
                .iter()
                .zip(&chosen.records)
                .position(|(a, b)| a != b)
            {
                tracing::error!(journal = %self.jns.journal_id,
                    journalnode = %self.jns.names[*i], chosen = %self.jns.names[answers[best].0],
                    txid = from + at as u64, epoch = answer.epoch, chosen_epoch = chosen.epoch,
                    "journalnodes serve different committed edits under one txid; reading the newer epoch's");
            }
        }
        answers
            .into_iter()
            .nth(best)
            .map(|(_, a)| a.records)
            .unwrap_or_default()
    }

    /// The highest txid known committed (for -bootstrapStandby and status).
    pub async fn last_committed_txid(&self) -> Result<u64, QuorumError> {
        let states = self.majority_states().await?;
        Ok(states
            .iter()
            .map(|(_, s)| s.committed_txid)
            .max()
            .unwrap_or(0))
    }
}

/// The lease as the journalnodes that answered see it: it is held until a
/// majority of all journalnodes has gone `lease_timeout` without their
/// writer.
fn lease_view_of(
    states: &[(usize, GetJournalStateResponse)],
    lease_timeout: Duration,
    n: usize,
) -> LeaseView {
    let lease_ms = lease_timeout.as_millis() as u64;
    let epoch = states
        .iter()
        .map(|(_, s)| s.last_promised_epoch)
        .max()
        .unwrap_or(0);
    let writer = states
        .iter()
        .find(|(_, s)| s.last_promised_epoch == epoch)
        .map(|(_, s)| s.writer_id.clone())
        .unwrap_or_default();
    let mut remaining: Vec<u64> = states
        .iter()
        .map(|(_, s)| match s.writer_silent_ms {
            Some(silent) if s.last_promised_epoch > 0 => lease_ms.saturating_sub(silent),
            _ => 0,
        })
        .collect();
    remaining.sort_unstable();
    let need = majority(n);
    let expired = remaining.iter().filter(|ms| **ms == 0).count();
    let held = expired < need;
    LeaseView {
        epoch,
        writer,
        held,
        remaining_ms: if held {
            remaining.get(need - 1).copied().unwrap_or(lease_ms)
        } else {
            0
        },
    }
}
