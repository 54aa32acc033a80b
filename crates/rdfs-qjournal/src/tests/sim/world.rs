//! One simulated run: journalnodes, namenodes that contend for the writer
//! role (taking epochs, recovering, writing, rolling segments, stepping
//! down when fenced), readers tailing committed edits, and a fault injector
//! that crashes, pauses, partitions and slows journalnodes, fails their
//! disks, and kills namenodes — then a quiet end where one last writer
//! recovers the journal and everything is checked against the history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

use rdfs_common::time::Clock;
use rdfs_proto::editlog::edit_record::Op;
use rdfs_proto::editlog::{EditRecord, SetReplication};

use super::net::{JOURNAL_ID, Sim, Weather, check_finalized};
use super::rng::Rng;
use crate::segment::{self, TxId};
use crate::{QuorumClient, QuorumError, QuorumWriter};

/// What a run is made of, drawn from its seed.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) journalnodes: usize,
    pub(crate) namenodes: usize,
    pub(crate) readers: usize,
    pub(crate) lease: Duration,
    pub(crate) timeout: Duration,
    /// How long faults are injected.
    pub(crate) chaos: Duration,
}

impl Setup {
    pub(crate) fn draw(rng: &mut Rng) -> Self {
        Self {
            journalnodes: if rng.chance(0.2) { 5 } else { 3 },
            namenodes: rng.between(2, 3) as usize,
            readers: rng.between(1, 2) as usize,
            lease: Duration::from_millis(rng.between(500, 3000)),
            timeout: Duration::from_millis(rng.between(200, 1500)),
            chaos: Duration::from_millis(rng.between(10_000, 40_000)),
        }
    }
}

/// What a run found.
pub(crate) struct Outcome {
    pub(crate) violations: Vec<String>,
    pub(crate) trace: Vec<String>,
    pub(crate) acked_txids: usize,
    pub(crate) faults: u64,
    pub(crate) epochs: u64,
    pub(crate) reads: u64,
}

fn client(sim: &Arc<Sim>, index: usize, setup: &Setup) -> QuorumClient {
    QuorumClient::with_peers(
        JOURNAL_ID,
        sim.peers(index),
        setup.timeout,
        Arc::clone(&sim.clock) as Arc<dyn Clock>,
    )
    .with_recovery_timeout(setup.timeout * 4)
}

/// Edits unique to their writer's epoch, so a txid written twice by
/// different writers never looks the same.
fn batch(epoch: u64, first: TxId, count: u64) -> (Bytes, Vec<(TxId, Vec<u8>)>) {
    let mut framed = Vec::new();
    let mut records = Vec::new();
    for txid in first..first + count {
        let record = EditRecord {
            txid,
            op: Some(Op::SetReplication(SetReplication {
                inode_id: (epoch << 32) | txid,
                replication: (epoch % 7) as u32 + 1,
            })),
            ..Default::default()
        };
        segment::encode_record(&record, &mut framed);
        records.push((txid, record.encode_to_vec()));
    }
    (Bytes::from(framed), records)
}

fn as_bytes(records: &[EditRecord]) -> Vec<(TxId, Vec<u8>)> {
    records
        .iter()
        .map(|r| (r.txid, r.encode_to_vec()))
        .collect()
}

/// A namenode: waits, tries to become the writer, and writes until it
/// fails or is fenced; then tries again.
async fn namenode(sim: Arc<Sim>, id: String, client: QuorumClient, mut rng: Rng, lease: Duration) {
    loop {
        sleep(Duration::from_millis(rng.between(20, 600))).await;
        let take_over = rng.chance(0.15);
        let writer = match client.new_epoch(&sim.stamp, &id, lease, take_over).await {
            Ok(writer) => writer,
            Err(err) => {
                sim.note(format!("{id}: no epoch: {err}"));
                continue;
            }
        };
        sim.history.lock().epochs += 1;
        sim.note(format!(
            "{id}: epoch {} (take over: {take_over})",
            writer.epoch()
        ));
        if let Err(err) = lead(&sim, &id, &writer, &mut rng).await {
            sim.note(format!(
                "{id}: steps down from epoch {}: {err}",
                writer.epoch()
            ));
        }
    }
}

async fn lead(
    sim: &Sim,
    id: &str,
    writer: &QuorumWriter,
    rng: &mut Rng,
) -> Result<(), QuorumError> {
    let epoch = writer.epoch();
    let last = writer.recover().await?;
    sim.note(format!(
        "{id}: epoch {epoch} recovered the journal up to txid {last}"
    ));
    let mut next = last + 1;
    writer.start_segment(next).await?;
    let mut segment_first = next;
    loop {
        match rng.below(100) {
            0..=64 => {
                let count = rng.between(1, 4);
                let (framed, records) = batch(epoch, next, count);
                if rng.chance(0.25) {
                    // Two batches in flight at once, as group commit sends
                    // them when syncs overlap.
                    let more = rng.between(1, 3);
                    let (framed2, records2) = batch(epoch, next + count, more);
                    let (a, b) = tokio::join!(
                        writer.journal(next, count, framed),
                        writer.journal(next + count, more, framed2)
                    );
                    if a.is_ok() {
                        sim.history.lock().acked(id, epoch, &records);
                    }
                    if b.is_ok() {
                        sim.history.lock().acked(id, epoch, &records2);
                    }
                    a?;
                    b?;
                    next += count + more;
                } else {
                    writer.journal(next, count, framed).await?;
                    sim.history.lock().acked(id, epoch, &records);
                    next += count;
                }
            }
            65..=74 => writer.heartbeat().await?,
            75..=86 if next > segment_first => {
                writer.finalize_segment(segment_first, next - 1).await?;
                writer.start_segment(next).await?;
                sim.note(format!("{id}: rolled to segment {next}"));
                segment_first = next;
            }
            87..=91 => sleep(Duration::from_millis(rng.between(10, 1500))).await,
            _ => {}
        }
        sleep(Duration::from_millis(rng.between(0, 20))).await;
    }
}

/// A standby tailing committed edits from where it is, or re-reading from
/// earlier.
async fn reader(sim: Arc<Sim>, id: String, client: QuorumClient, mut rng: Rng) {
    let mut applied: TxId = 0;
    loop {
        sleep(Duration::from_millis(rng.between(20, 400))).await;
        let from = if rng.chance(0.2) {
            rng.between(1, applied.max(1))
        } else {
            applied + 1
        };
        let max = rng.between(1, 40) as usize;
        match client.read_committed(from, max).await {
            Ok(records) => {
                if let Some(last) = records.last() {
                    if from <= applied + 1 {
                        applied = applied.max(last.txid);
                    }
                    sim.note(format!("{id}: read txids {from}..={} ", last.txid));
                }
                sim.history.lock().saw(&id, &as_bytes(&records));
            }
            Err(err) => sim.note(format!("{id}: read from {from} failed: {err}")),
        }
    }
}

/// Faults until the chaos ends: journalnode crashes (at once or in the
/// middle of a call), disk errors, pauses, partitions, bad weather, and
/// namenode crashes.
async fn inject_faults(
    sim: Arc<Sim>,
    setup: Setup,
    mut rng: Rng,
    namenodes: Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>>,
    spawn_namenode: Arc<dyn Fn(usize) -> JoinHandle<()> + Send + Sync>,
) {
    let end = Instant::now() + setup.chaos;
    let jns = setup.journalnodes;
    let clients = setup.namenodes + setup.readers;
    while Instant::now() < end {
        sleep(Duration::from_millis(rng.between(20, 500))).await;
        let jn = rng.below(jns as u64) as usize;
        match rng.below(100) {
            0..=14 if sim.is_up(jn) => {
                sim.crash_node(jn, "killed");
                let sim = Arc::clone(&sim);
                let down = Duration::from_millis(rng.between(50, 4000));
                tokio::spawn(async move {
                    sleep(down).await;
                    if !sim.is_up(jn) {
                        sim.start_node(jn);
                    }
                });
            }
            15..=27 if sim.is_up(jn) => {
                let after = rng.between(1, 8);
                sim.net.lock().nodes[jn].disk.arm(true, after);
                sim.note(format!(
                    "jn{jn}: will crash at its disk operation {after} from now"
                ));
                let sim = Arc::clone(&sim);
                let check = Duration::from_millis(rng.between(200, 4000));
                tokio::spawn(async move {
                    // Restart it some time after it went down.
                    loop {
                        sleep(check).await;
                        if !sim.is_up(jn) {
                            sim.start_node(jn);
                            return;
                        }
                        if !sim.net.lock().nodes[jn].disk.has_armed_fault() {
                            return;
                        }
                    }
                });
            }
            28..=34 if sim.is_up(jn) => {
                let after = rng.between(1, 6);
                sim.net.lock().nodes[jn].disk.arm(false, after);
                sim.history.lock().faults += 1;
                sim.note(format!("jn{jn}: disk operation {after} from now fails"));
            }
            35..=49 => {
                let pause = Duration::from_millis(rng.between(100, 4000));
                sim.net.lock().nodes[jn].paused_until = Some(Instant::now() + pause);
                sim.history.lock().faults += 1;
                sim.note(format!("jn{jn}: paused for {} ms", pause.as_millis()));
            }
            50..=64 => {
                let client = rng.below(clients as u64) as usize;
                let whole = rng.chance(0.5);
                let cut: Vec<(usize, usize)> = if whole {
                    (0..clients).map(|c| (c, jn)).collect()
                } else {
                    vec![(client, jn)]
                };
                let span = Duration::from_millis(rng.between(100, 4000));
                sim.net.lock().cut.extend(cut.iter().copied());
                sim.history.lock().faults += 1;
                sim.note(format!("partition {cut:?} for {} ms", span.as_millis()));
                let sim = Arc::clone(&sim);
                tokio::spawn(async move {
                    sleep(span).await;
                    let mut net = sim.net.lock();
                    for pair in &cut {
                        net.cut.remove(pair);
                    }
                });
            }
            65..=74 => {
                let weather = Weather {
                    loss: if rng.chance(0.5) {
                        rng.between(0, 20) as f64 / 100.0
                    } else {
                        0.0
                    },
                    duplicate: if rng.chance(0.5) {
                        rng.between(0, 20) as f64 / 100.0
                    } else {
                        0.0
                    },
                    min_latency_ms: rng.between(0, 5),
                    max_latency_ms: rng.between(5, 300),
                    stall: rng.between(0, 10) as f64 / 100.0,
                    stall_ms: rng.between(100, 3000),
                };
                sim.note(format!("weather: {weather:?}"));
                sim.history.lock().faults += 1;
                sim.net.lock().weather = weather;
            }
            75..=79 => {
                sim.net.lock().weather = Weather::calm();
                sim.note("weather: calm");
            }
            80..=85 => {
                let nn = rng.below(setup.namenodes as u64) as usize;
                let handle = namenodes.lock()[nn].abort_handle();
                handle.abort();
                sim.history.lock().faults += 1;
                sim.note(format!("nn{nn}: killed"));
                let down = Duration::from_millis(rng.between(10, 3000));
                let namenodes = Arc::clone(&namenodes);
                let spawn = Arc::clone(&spawn_namenode);
                tokio::spawn(async move {
                    sleep(down).await;
                    let mut namenodes = namenodes.lock();
                    // None once the run has gone quiet.
                    if let Some(slot) = namenodes.get_mut(nn) {
                        // A second kill may have come meanwhile: one
                        // namenode per slot, always.
                        std::mem::replace(slot, spawn(nn)).abort();
                    }
                });
            }
            _ => {}
        }
    }
}

pub(crate) async fn run(seed: u64, echo: bool) -> Outcome {
    let mut rng = Rng::new(seed);
    let setup = Setup::draw(&mut rng);
    let sim = Sim::new(rng.fork(), setup.journalnodes, echo);
    sim.note(format!("seed {seed}: {setup:?}"));

    let admin = client(&sim, usize::MAX, &setup);
    if let Err(err) = admin.format(&sim.stamp, false).await {
        sim.history
            .lock()
            .violation(format!("cannot format: {err}"));
    }

    let namenodes: Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>> =
        Arc::new(parking_lot::Mutex::new(Vec::new()));
    let spawn_namenode: Arc<dyn Fn(usize) -> JoinHandle<()> + Send + Sync> = {
        let sim = Arc::clone(&sim);
        let setup = setup.clone();
        let seeds: Vec<u64> = (0..setup.namenodes).map(|_| rng.next_u64()).collect();
        let restarts = Arc::new(std::sync::atomic::AtomicU64::new(0));
        Arc::new(move |nn: usize| {
            let restart = restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let rng = Rng::new(seeds[nn] ^ restart.wrapping_mul(0x51_7cc1_b727_220a));
            tokio::spawn(namenode(
                Arc::clone(&sim),
                format!("nn{nn}"),
                client(&sim, nn, &setup),
                rng,
                setup.lease,
            ))
        })
    };
    for nn in 0..setup.namenodes {
        let handle = spawn_namenode(nn);
        namenodes.lock().push(handle);
    }
    let mut readers = Vec::new();
    for r in 0..setup.readers {
        let index = setup.namenodes + r;
        readers.push(tokio::spawn(reader(
            Arc::clone(&sim),
            format!("reader{r}"),
            client(&sim, index, &setup),
            rng.fork(),
        )));
    }
    inject_faults(
        Arc::clone(&sim),
        setup.clone(),
        rng.fork(),
        Arc::clone(&namenodes),
        Arc::clone(&spawn_namenode),
    )
    .await;

    // The quiet end: stop everyone, heal everything, let what is in
    // flight land.
    sleep(Duration::from_secs(5)).await;
    for handle in namenodes.lock().drain(..) {
        handle.abort();
    }
    for handle in readers {
        handle.abort();
    }
    {
        let mut net = sim.net.lock();
        net.cut.clear();
        net.weather = Weather::calm();
        for node in &mut net.nodes {
            node.paused_until = None;
            node.disk.disarm();
        }
    }
    for jn in 0..setup.journalnodes {
        if !sim.is_up(jn) {
            sim.start_node(jn);
        }
    }
    sleep(setup.timeout * 8 + Duration::from_secs(5)).await;
    sim.note("quiet: checking");
    check_end(&sim, &setup).await;

    let trace = sim.trace_tail();
    let mut history = sim.history.lock();
    Outcome {
        violations: std::mem::take(&mut history.violations),
        trace,
        acked_txids: history.acked_count(),
        faults: history.faults,
        epochs: history.epochs,
        reads: history.reads,
    }
}

/// One last writer recovers the journal; it must hold every acknowledged
/// edit, agree with every read, and be readable to its end.
async fn check_end(sim: &Arc<Sim>, setup: &Setup) {
    let checker = client(sim, usize::MAX - 1, setup);
    // Healed, the journal must take a writer within a few tries: a try may
    // still meet a promise some candidate left on one journalnode.
    let mut recovered = None;
    let mut last_error = String::new();
    for _ in 0..10 {
        match checker
            .new_epoch(&sim.stamp, "checker", setup.lease, true)
            .await
        {
            Ok(writer) => match writer.recover().await {
                Ok(last) => {
                    recovered = Some(last);
                    break;
                }
                Err(err) => last_error = format!("recovery: {err}"),
            },
            Err(err) => last_error = format!("new epoch: {err}"),
        }
        sim.note(format!("checker: not yet: {last_error}"));
        sleep(setup.timeout).await;
    }
    let Some(last) = recovered else {
        sim.history.lock().violation(format!(
            "no writer could recover the journal once every fault had healed: {last_error}"
        ));
        return;
    };
    sim.note(format!("checker: recovered up to txid {last}"));
    // Read it all back as a standby would, from the start.
    let mut log: BTreeMap<TxId, Vec<u8>> = BTreeMap::new();
    let mut from = 1;
    while from <= last {
        match checker.read_committed(from, 10_000).await {
            Ok(records) if records.is_empty() => break,
            Ok(records) => {
                sim.history.lock().saw("checker", &as_bytes(&records));
                for (txid, bytes) in as_bytes(&records) {
                    log.insert(txid, bytes);
                }
                from = records.last().map_or(from, |r| r.txid + 1);
            }
            Err(err) => {
                sim.history
                    .lock()
                    .violation(format!("reading the recovered journal from {from}: {err}"));
                return;
            }
        }
    }
    if from <= last {
        sim.history.lock().violation(format!(
            "the recovered journal ends at txid {last}, but reads stop at txid {}",
            from - 1
        ));
    }
    sim.history.lock().check_final(last, &log);
    for jn in 0..setup.journalnodes {
        check_finalized(sim, jn);
    }
}
