//! The simulated journalnodes and the network between them and their
//! clients. Each journalnode is the real [`Journal`] over a [`SimDisk`];
//! each client reaches it through a [`SimPeer`], the simulator's
//! [`JournalPeer`]. A call is a message that may be lost, delayed,
//! duplicated or held up by a partition or a paused journalnode; it runs
//! on the journalnode when it arrives, whether or not its caller is still
//! waiting — as a request already on the wire does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::oneshot;
use tokio::time::Instant;

use rdfs_common::time::{BootInstant, Clock};
use rdfs_proto::{
    AcceptRecoveryRequest, EditsChunk, FetchSegmentRequest, FinalizeLogSegmentRequest,
    FormatJournalRequest, GetJournalStateRequest, GetJournalStateResponse, JournalHeartbeatRequest,
    JournalRequest, NewEpochRequest, NewEpochResponse, PrepareRecoveryRequest,
    PrepareRecoveryResponse, PurgeLogsRequest, ReadEditsRequest, StartLogSegmentRequest,
};

use super::disk::SimDisk;
use super::history::History;
use super::rng::Rng;
use crate::fault::JnError;
use crate::journal::{self, Journal, JournalError};
use crate::peer::{JournalPeer, PeerCall};
use crate::segment;
use crate::stamp::NamespaceStamp;

pub(crate) const JOURNAL_ID: &str = "ns1";

/// Virtual time on the boot clock: tokio's paused clock, from the start of
/// the run.
#[derive(Debug)]
pub(crate) struct SimClock {
    start: Instant,
}

impl SimClock {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

impl Clock for SimClock {
    fn now(&self) -> BootInstant {
        // Never zero, as a real boot clock is not.
        BootInstant::from_since_boot(Duration::from_secs(1000) + self.start.elapsed())
    }
}

pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) disk: SimDisk,
    /// `None` while the journalnode is down.
    pub(crate) journal: Option<Arc<Journal>>,
    /// Calls wait until then (SIGSTOP).
    pub(crate) paused_until: Option<Instant>,
}

impl Node {
    pub(crate) fn edits_dir(&self) -> PathBuf {
        PathBuf::from(format!("/{}", self.name))
    }

    pub(crate) fn current_dir(&self) -> PathBuf {
        self.edits_dir().join(JOURNAL_ID).join("current")
    }
}

/// How messages fare, changed by the fault injector.
#[derive(Debug, Clone)]
pub(crate) struct Weather {
    pub(crate) loss: f64,
    pub(crate) duplicate: f64,
    pub(crate) min_latency_ms: u64,
    pub(crate) max_latency_ms: u64,
    /// Chance that a message is held up far longer (a stalled connection).
    pub(crate) stall: f64,
    pub(crate) stall_ms: u64,
}

impl Weather {
    pub(crate) fn calm() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            min_latency_ms: 0,
            max_latency_ms: 3,
            stall: 0.0,
            stall_ms: 0,
        }
    }
}

pub(crate) struct Net {
    pub(crate) rng: Rng,
    pub(crate) nodes: Vec<Node>,
    /// (client, journalnode) pairs that cannot reach each other.
    pub(crate) cut: BTreeSet<(usize, usize)>,
    pub(crate) weather: Weather,
}

impl Net {
    fn latency(&mut self) -> Option<Duration> {
        let w = self.weather.clone();
        if self.rng.chance(w.loss) {
            return None;
        }
        let mut ms = self.rng.between(w.min_latency_ms, w.max_latency_ms);
        if self.rng.chance(w.stall) {
            ms += self.rng.between(w.stall_ms / 2, w.stall_ms);
        }
        Some(Duration::from_millis(ms))
    }
}

/// Everything a run shares: the network, what happened, the clock.
pub(crate) struct Sim {
    pub(crate) net: Mutex<Net>,
    pub(crate) history: Mutex<History>,
    pub(crate) clock: Arc<SimClock>,
    trace: Mutex<Trace>,
    pub(crate) stamp: NamespaceStamp,
}

/// The last events of a run, printed with a failure.
struct Trace {
    lines: std::collections::VecDeque<String>,
    keep: usize,
    echo: bool,
}

impl Sim {
    pub(crate) fn new(rng: Rng, journalnodes: usize, echo: bool) -> Arc<Self> {
        let clock = Arc::new(SimClock::new());
        let nodes = (0..journalnodes)
            .map(|i| Node {
                name: format!("jn{i}"),
                disk: SimDisk::default(),
                journal: None,
                paused_until: None,
            })
            .collect();
        let sim = Arc::new(Self {
            net: Mutex::new(Net {
                rng,
                nodes,
                cut: BTreeSet::new(),
                weather: Weather::calm(),
            }),
            history: Mutex::new(History::new(journalnodes)),
            clock,
            trace: Mutex::new(Trace {
                lines: std::collections::VecDeque::new(),
                keep: 300,
                echo,
            }),
            stamp: NamespaceStamp {
                cluster_id: "CID-sim".into(),
                namespace_id: 7,
                block_pool_id: "BP-7-sim".into(),
            },
        });
        for i in 0..journalnodes {
            sim.start_node(i);
        }
        sim
    }

    pub(crate) fn note(&self, what: impl AsRef<str>) {
        let line = format!("{:>7} ms  {}", self.clock.elapsed_ms(), what.as_ref());
        let mut trace = self.trace.lock();
        if trace.echo {
            eprintln!("{line}");
        }
        trace.lines.push_back(line);
        while trace.lines.len() > trace.keep {
            trace.lines.pop_front();
        }
    }

    pub(crate) fn trace_tail(&self) -> Vec<String> {
        self.trace.lock().lines.iter().cloned().collect()
    }

    /// Starts (or restarts) journalnode `i` from what its disk holds. A
    /// start cut short by an injected disk fault leaves it down (a crash
    /// while starting keeps only what was synced); any other failure to
    /// start is a finding.
    pub(crate) fn start_node(&self, i: usize) {
        let (disk, dir, name) = {
            let net = self.net.lock();
            let node = &net.nodes[i];
            if node.journal.is_some() {
                return;
            }
            (node.disk.clone(), node.edits_dir(), node.name.clone())
        };
        disk.take_injected();
        let clock: Arc<dyn Clock> = Arc::clone(&self.clock) as Arc<dyn Clock>;
        match Journal::open_on(Arc::new(disk.clone()), clock, &dir, JOURNAL_ID) {
            Ok(journal) => {
                self.net.lock().nodes[i].journal = Some(Arc::new(journal));
                self.note(format!("{name} up"));
            }
            Err(err) if disk.take_injected() => {
                if disk.has_crashed() {
                    let mut net = self.net.lock();
                    let net = &mut *net;
                    net.nodes[i].disk.crash(&mut net.rng);
                }
                self.note(format!("{name} failed to start (injected): {err}"));
            }
            Err(err) => {
                self.history
                    .lock()
                    .violation(format!("{name} cannot start after a crash: {err}"));
                self.note(format!("{name} cannot start: {err}"));
            }
        }
    }

    /// Kills journalnode `i`: its disk keeps what was synced.
    pub(crate) fn crash_node(&self, i: usize, why: &str) {
        let name = {
            let mut net = self.net.lock();
            let net = &mut *net;
            let node = &mut net.nodes[i];
            if node.journal.is_none() {
                return;
            }
            node.journal = None;
            node.paused_until = None;
            node.disk.crash(&mut net.rng);
            node.name.clone()
        };
        self.history.lock().faults += 1;
        self.note(format!("{name} crashed ({why})"));
    }

    pub(crate) fn is_up(&self, i: usize) -> bool {
        self.net.lock().nodes[i].journal.is_some()
    }

    /// Every client's peers for journalnode order, as client `client`.
    pub(crate) fn peers(self: &Arc<Self>, client: usize) -> Vec<Arc<dyn JournalPeer>> {
        let names: Vec<String> = self
            .net
            .lock()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect();
        names
            .into_iter()
            .enumerate()
            .map(|(node, name)| {
                Arc::new(SimPeer {
                    sim: Arc::clone(self),
                    node,
                    client,
                    name,
                }) as Arc<dyn JournalPeer>
            })
            .collect()
    }
}

pub(crate) struct SimPeer {
    sim: Arc<Sim>,
    node: usize,
    client: usize,
    name: String,
}

type Op<T> = dyn Fn(&Journal) -> Result<T, JournalError> + Send + Sync;

impl SimPeer {
    fn call<T: Send + 'static>(
        &self,
        what: &'static str,
        op: impl Fn(&Journal) -> Result<T, JournalError> + Send + Sync + 'static,
    ) -> PeerCall<T> {
        let op: Arc<Op<T>> = Arc::new(op);
        let (tx, rx) = oneshot::channel();
        let (there, again) = {
            let mut net = self.sim.net.lock();
            let there = net.latency();
            let dup = net.weather.duplicate;
            let again = if net.rng.chance(dup) {
                net.latency()
            } else {
                None
            };
            (there, again)
        };
        let route = Route {
            sim: Arc::clone(&self.sim),
            node: self.node,
            client: self.client,
            what,
        };
        if let Some(delay) = again {
            tokio::spawn(route.clone().deliver(Arc::clone(&op), delay, None));
        }
        match there {
            Some(delay) => {
                tokio::spawn(route.deliver(op, delay, Some(tx)));
            }
            None => {
                route
                    .sim
                    .note(format!("c{} -> {}: {what} lost", route.client, self.name));
            }
        }
        Box::pin(async move {
            match rx.await {
                Ok(result) => result,
                // Lost on the way there or back: the caller waits until its
                // own deadline, as it would for a real lost message.
                Err(_) => futures::future::pending().await,
            }
        })
    }
}

#[derive(Clone)]
struct Route {
    sim: Arc<Sim>,
    node: usize,
    client: usize,
    what: &'static str,
}

impl Route {
    async fn deliver<T: Send + 'static>(
        self,
        op: Arc<Op<T>>,
        delay: Duration,
        reply: Option<oneshot::Sender<Result<T, JnError>>>,
    ) {
        tokio::time::sleep(delay).await;
        loop {
            let paused = self.sim.net.lock().nodes[self.node].paused_until;
            match paused {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => break,
            }
        }
        let (journal, name) = {
            let net = self.sim.net.lock();
            if net.cut.contains(&(self.client, self.node)) {
                return;
            }
            let node = &net.nodes[self.node];
            (node.journal.clone(), node.name.clone())
        };
        let result = match journal {
            Some(journal) => {
                let result = op(&journal);
                let crashed = self.sim.net.lock().nodes[self.node].disk.has_crashed();
                if crashed {
                    self.sim
                        .crash_node(self.node, &format!("in the middle of {}", self.what));
                    return;
                }
                let outcome = match &result {
                    Ok(_) => "ok".to_string(),
                    Err(err) => format!("refused: {err}"),
                };
                self.sim.note(format!(
                    "c{} -> {name}: {} {outcome}{}",
                    self.client,
                    self.what,
                    if reply.is_none() { " (duplicate)" } else { "" }
                ));
                result.map_err(|err| JnError::from_status(&err.into_status()))
            }
            None => Err(JnError::Rpc("unreachable: connection refused".into())),
        };
        let back = self.sim.net.lock().latency();
        let Some(back) = back else {
            return;
        };
        tokio::time::sleep(back).await;
        if self.sim.net.lock().cut.contains(&(self.client, self.node)) {
            return;
        }
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

/// The edits of a framed batch, as bytes per txid.
fn batch_records(framed: &[u8]) -> Vec<(u64, Vec<u8>)> {
    segment::decode_records(framed)
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.txid, r.encode_to_vec()))
        .collect()
}

/// Notes the records of journalnode `node`'s in-progress segment at
/// `first` as held by it.
fn note_held_segment(sim: &Sim, node: usize, first: u64) {
    let name = segment::in_progress_name(first);
    let files = {
        let net = sim.net.lock();
        let n = &net.nodes[node];
        n.disk.files_in(&n.current_dir(), |file| file == name)
    };
    for (file, bytes) in files {
        if let Ok(contents) = segment::decode_segment(Path::new(&file), &bytes) {
            let records: Vec<(u64, Vec<u8>)> = contents
                .records
                .iter()
                .map(|r| (r.txid, r.encode_to_vec()))
                .collect();
            sim.history.lock().held(node, &records);
        }
    }
}

/// Checks every finalized segment journalnode `node` holds against what
/// any journalnode ever finalized.
pub(crate) fn check_finalized(sim: &Sim, node: usize) {
    let (files, name, dir) = {
        let net = sim.net.lock();
        let n = &net.nodes[node];
        let dir = n.current_dir();
        (
            n.disk.files_in(&dir, |name| {
                matches!(segment::parse_name(name), Some((_, Some(_))))
            }),
            n.name.clone(),
            dir,
        )
    };
    let mut history = sim.history.lock();
    for (file, bytes) in files {
        let path: PathBuf = dir.join(&file);
        match segment::decode_segment(Path::new(&path), &bytes) {
            Ok(contents) if contents.torn_tail.is_none() => {
                let records: Vec<(u64, Vec<u8>)> = contents
                    .records
                    .iter()
                    .map(|r| (r.txid, r.encode_to_vec()))
                    .collect();
                history.finalized(&name, &file, &bytes, &records);
            }
            Ok(contents) => history.violation(format!(
                "{name} holds finalized {file} with a torn tail: {:?}",
                contents.torn_tail
            )),
            Err(err) => history.violation(format!("{name} holds a corrupt {file}: {err}")),
        }
    }
}

impl JournalPeer for SimPeer {
    fn name(&self) -> &str {
        &self.name
    }

    fn get_journal_state(
        &self,
        _request: GetJournalStateRequest,
    ) -> PeerCall<GetJournalStateResponse> {
        self.call("getJournalState", |j| j.journal_state())
    }

    fn format_journal(&self, request: FormatJournalRequest) -> PeerCall<()> {
        let stamp = NamespaceStamp::from_proto(&request.stamp.unwrap_or_default());
        self.call("format", move |j| j.format(&stamp, request.force))
    }

    fn new_epoch(&self, request: NewEpochRequest) -> PeerCall<NewEpochResponse> {
        let stamp = NamespaceStamp::from_proto(&request.stamp.clone().unwrap_or_default());
        self.call("newEpoch", move |j| {
            j.new_epoch(
                &stamp,
                request.epoch,
                &request.writer_id,
                Duration::from_millis(request.lease_timeout_ms),
                request.take_over_held_lease,
            )
        })
    }

    fn heartbeat(&self, request: JournalHeartbeatRequest) -> PeerCall<()> {
        let info = request.info.unwrap_or_default();
        self.call("heartbeat", move |j| j.heartbeat(&info))
    }

    fn start_log_segment(&self, request: StartLogSegmentRequest) -> PeerCall<()> {
        let info = request.info.unwrap_or_default();
        self.call("startLogSegment", move |j| {
            j.start_segment(&info, request.txid)
        })
    }

    fn journal(&self, request: JournalRequest) -> PeerCall<()> {
        let info = request.info.clone().unwrap_or_default();
        let sim = Arc::clone(&self.sim);
        let node = self.node;
        self.call("journal", move |j| {
            j.journal(
                &info,
                request.segment_first_txid,
                request.first_txid,
                request.num_records,
                &request.records,
            )?;
            sim.history
                .lock()
                .held(node, &batch_records(&request.records));
            Ok(())
        })
    }

    fn finalize_log_segment(&self, request: FinalizeLogSegmentRequest) -> PeerCall<()> {
        let info = request.info.unwrap_or_default();
        let sim = Arc::clone(&self.sim);
        let node = self.node;
        self.call("finalizeLogSegment", move |j| {
            j.finalize(&info, request.first_txid, request.last_txid)?;
            check_finalized(&sim, node);
            Ok(())
        })
    }

    fn purge_logs(&self, request: PurgeLogsRequest) -> PeerCall<()> {
        let info = request.info.unwrap_or_default();
        self.call("purgeLogs", move |j| {
            j.purge(&info, request.min_txid_to_keep)
        })
    }

    fn prepare_recovery(
        &self,
        request: PrepareRecoveryRequest,
    ) -> PeerCall<PrepareRecoveryResponse> {
        let info = request.info.unwrap_or_default();
        self.call("prepareRecovery", move |j| {
            j.prepare_recovery(&info, request.segment_txid)
        })
    }

    fn accept_recovery(
        &self,
        head: AcceptRecoveryRequest,
        edits: Option<Arc<Vec<Bytes>>>,
    ) -> PeerCall<()> {
        let info = head.info.unwrap_or_default();
        let chosen = head.segment_state.unwrap_or_default();
        let mut framed = head.records;
        for chunk in edits.iter().flat_map(|chunks| chunks.iter()) {
            framed.extend_from_slice(chunk);
        }
        let sim = Arc::clone(&self.sim);
        let node = self.node;
        self.call("acceptRecovery", move |j| {
            j.accept_recovery(&info, &chosen, (!framed.is_empty()).then_some(&framed[..]))?;
            // The node holds the chosen copy now, sent along or its own
            // (which may have come from a torn write nothing acknowledged).
            note_held_segment(&sim, node, chosen.first_txid);
            Ok(())
        })
    }

    fn fetch_segment(&self, request: FetchSegmentRequest) -> PeerCall<Vec<EditsChunk>> {
        let info = request.info.unwrap_or_default();
        self.call("fetchSegment", move |j| {
            let plan = j.plan_segment_fetch(&info, request.first_txid, request.last_txid)?;
            read_all(&plan, u64::MAX)
        })
    }

    fn read_edits(&self, request: ReadEditsRequest) -> PeerCall<Vec<EditsChunk>> {
        self.call("readEdits", move |j| {
            let plan = j.plan_committed_read(request.from_txid)?;
            let max = if request.max_records == 0 {
                u64::MAX
            } else {
                request.max_records
            };
            read_all(&plan, max)
        })
    }
}

fn read_all(plan: &journal::ReadPlan, max: u64) -> Result<Vec<EditsChunk>, JournalError> {
    let mut chunks = Vec::new();
    // Small chunks, so answers of several chunks are common.
    journal::read_chunks(plan, max, 512, |chunk| {
        chunks.push(chunk);
        true
    })?;
    Ok(chunks)
}
