//! The namespace-safety chaos test: a real HA cluster (3 journalnodes, 2
//! namenodes, 4 datanodes, replication 2) under writers that create,
//! append, rename, delete and change replication, readers that read while
//! they do, and combined faults — two journalnodes at once, a journalnode
//! and the active namenode together, the active paused past its lease, a
//! datanode killed.
//!
//! Every operation's outcome is recorded: an acknowledged one must show in
//! the final namespace exactly; a failed one may have happened or not, but
//! never in part (a rename leaves the file at one of its two names, an
//! append adds a prefix of its data). Readers must never get other bytes
//! than the file held, nor a file shorter than it was before an append
//! began. After healing, `fsck /` must find no missing or corrupt block,
//! the journalnodes' finalized segments must be byte-identical, and the two
//! namenodes' serving-as-active intervals (from their logs, on the shared
//! wall clock) must never overlap.
//!
//! CI runs a fixed seed for `RDFS_CHAOS_SECONDS` (75 by default);
//! `RDFS_CHAOS_SEED` picks another schedule.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdfs_client::{ClientSettings, CreateOptions, DfsClient};
use rdfs_common::config::Config;

use crate::harness::ha::HaCluster;
use crate::harness::{Rng, env_or, read_file, test_bytes};

const WRITERS: usize = 3;
const READERS: usize = 2;
const DATANODES: usize = 4;
const MAX_CREATE: u64 = 1_500_000;
const MAX_APPEND: u64 = 300_000;

/// What a file holds: its pieces, each the bytes of a seed and a length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Content(Vec<(u64, usize)>);

impl Content {
    fn len(&self) -> usize {
        self.0.iter().map(|(_, len)| len).sum()
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        for (seed, len) in &self.0 {
            out.extend(test_bytes(*len, *seed));
        }
        out
    }

    fn with(&self, piece: (u64, usize)) -> Self {
        let mut pieces = self.0.clone();
        pieces.push(piece);
        Self(pieces)
    }
}

/// One way a file may have ended up.
#[derive(Debug, Clone)]
enum Possible {
    Absent,
    /// `base`, then any prefix of `tail`'s bytes (all of them when the
    /// operation was acknowledged), at one of `replication`.
    File {
        base: Content,
        tail: Option<(u64, usize)>,
        replication: Vec<u32>,
    },
}

/// What the model knows of a path.
#[derive(Debug, Clone)]
enum Known {
    /// Acknowledged: exactly this. Further operations may use it.
    Exact { content: Content, replication: u32 },
    /// After a failed operation: any of these. Left alone from then on.
    OneOf(Vec<Possible>),
}

/// What readers may check a file against while it is being written.
#[derive(Debug, Clone)]
struct View {
    version: u64,
    content: Content,
    /// Being appended: readers may see any prefix of this on top.
    appending: Option<(u64, usize)>,
}

#[derive(Default)]
struct Shared {
    views: Mutex<BTreeMap<String, View>>,
    violations: Mutex<Vec<String>>,
    stop: AtomicBool,
    acked: AtomicU64,
    failed: AtomicU64,
    reads: AtomicU64,
    read_errors: AtomicU64,
}

impl Shared {
    fn violation(&self, what: String) {
        eprintln!("chaos VIOLATION: {what}");
        self.violations.lock().expect("lock").push(what);
    }

    fn publish(&self, path: &str, content: Content, appending: Option<(u64, usize)>) {
        let mut views = self.views.lock().expect("lock");
        let version = views.get(path).map_or(0, |v| v.version + 1);
        views.insert(
            path.to_string(),
            View {
                version,
                content,
                appending,
            },
        );
    }

    fn withdraw(&self, path: &str) {
        self.views.lock().expect("lock").remove(path);
    }
}

/// One writer's files and the group constraints of failed renames.
struct Writer {
    id: usize,
    files: BTreeMap<String, Known>,
    /// (from, to) of renames that failed: exactly one of the two exists.
    renames: Vec<(String, String)>,
    next: u64,
}

fn client_for(addrs: &[String]) -> DfsClient {
    let mut config = Config::default();
    config.client.socket_timeout_ms = 5_000;
    config.client.connect_timeout_ms = 2_000;
    config.client.failover_max_attempts = 60;
    config.client.last_block_length_retry_interval_ms = 500;
    DfsClient::new_nameservice(addrs, "tester", ClientSettings::from_config(&config))
        .expect("client")
}

async fn write_new(client: &DfsClient, path: &str, content: &Content) -> Result<(), String> {
    let mut out = client
        .create(
            path,
            CreateOptions {
                overwrite: false,
                replication: Some(2),
                ..CreateOptions::default()
            },
        )
        .await
        .map_err(|e| format!("create: {e}"))?;
    out.write(&content.bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    out.close().await.map_err(|e| format!("close: {e}"))
}

async fn append(client: &DfsClient, path: &str, piece: (u64, usize)) -> Result<(), String> {
    let bytes = test_bytes(piece.1, piece.0);
    let mut out = client
        .append(path)
        .await
        .map_err(|e| format!("append: {e}"))?;
    let half = bytes.len() / 2;
    out.write(&bytes[..half])
        .await
        .map_err(|e| format!("write: {e}"))?;
    // Readers see this much before the append ends.
    out.hflush().await.map_err(|e| format!("hflush: {e}"))?;
    out.write(&bytes[half..])
        .await
        .map_err(|e| format!("write: {e}"))?;
    out.close().await.map_err(|e| format!("close: {e}"))
}

impl Writer {
    fn stable(&self, rng: &mut Rng) -> Option<(String, Content, u32)> {
        let stable: Vec<(&String, &Content, u32)> = self
            .files
            .iter()
            .filter_map(|(path, known)| match known {
                Known::Exact {
                    content,
                    replication,
                } => Some((path, content, *replication)),
                Known::OneOf(_) => None,
            })
            .collect();
        if stable.is_empty() {
            return None;
        }
        let (path, content, replication) = stable[rng.below(stable.len() as u64) as usize];
        Some((path.clone(), content.clone(), replication))
    }

    /// One operation: the model follows its outcome.
    fn step(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        client: &DfsClient,
        shared: &Shared,
        rng: &mut Rng,
    ) {
        self.next += 1;
        let n = self.next;
        let dir = format!("/chaos/w{}", self.id);
        let seed = ((self.id as u64) << 40) | n;
        let choice = rng.below(100);
        let target = self.stable(rng);
        let ok = |shared: &Shared, ok: bool| {
            if ok {
                shared.acked.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
        };
        match (choice, target) {
            (0..=19, Some((path, old, replication))) => {
                let piece = (seed, 1 + rng.below(MAX_APPEND) as usize);
                shared.publish(&path, old.clone(), Some(piece));
                match runtime.block_on(append(client, &path, piece)) {
                    Ok(()) => {
                        let content = old.with(piece);
                        shared.publish(&path, content.clone(), None);
                        self.files.insert(
                            path,
                            Known::Exact {
                                content,
                                replication,
                            },
                        );
                        ok(shared, true);
                    }
                    Err(_) => {
                        self.files.insert(
                            path.clone(),
                            Known::OneOf(vec![Possible::File {
                                base: old,
                                tail: Some(piece),
                                replication: vec![replication],
                            }]),
                        );
                        shared.withdraw(&path);
                        ok(shared, false);
                    }
                }
            }
            (20..=31, Some((path, content, replication))) => {
                let to = format!("{dir}/r{n}");
                shared.withdraw(&path);
                match runtime.block_on(client.rename(&path, &to)) {
                    Ok(true) => {
                        self.files.remove(&path);
                        shared.publish(&to, content.clone(), None);
                        self.files.insert(
                            to,
                            Known::Exact {
                                content,
                                replication,
                            },
                        );
                        ok(shared, true);
                    }
                    outcome => {
                        if let Ok(false) = outcome {
                            shared.violation(format!(
                                "rename of existing {path} to new {to} answered false"
                            ));
                        }
                        let file = Possible::File {
                            base: content,
                            tail: None,
                            replication: vec![replication],
                        };
                        for p in [&path, &to] {
                            self.files.insert(
                                p.clone(),
                                Known::OneOf(vec![Possible::Absent, file.clone()]),
                            );
                        }
                        self.renames.push((path, to));
                        ok(shared, false);
                    }
                }
            }
            (32..=41, Some((path, content, replication))) => {
                shared.withdraw(&path);
                match runtime.block_on(client.delete(&path, false)) {
                    Ok(true) => {
                        self.files.remove(&path);
                        ok(shared, true);
                    }
                    outcome => {
                        if let Ok(false) = outcome {
                            // The file was acknowledged and nobody else
                            // touches it: `false` means a retried delete
                            // reported the first attempt's work as a miss.
                            shared.violation(format!("delete of existing {path} answered false"));
                        }
                        self.files.insert(
                            path,
                            Known::OneOf(vec![
                                Possible::Absent,
                                Possible::File {
                                    base: content,
                                    tail: None,
                                    replication: vec![replication],
                                },
                            ]),
                        );
                        ok(shared, false);
                    }
                }
            }
            (42..=51, Some((path, content, replication))) => {
                let new = 1 + (replication + rng.below(2) as u32) % 3;
                match runtime.block_on(client.set_replication(&path, new)) {
                    Ok(true) => {
                        self.files.insert(
                            path,
                            Known::Exact {
                                content,
                                replication: new,
                            },
                        );
                        ok(shared, true);
                    }
                    _ => {
                        shared.withdraw(&path);
                        self.files.insert(
                            path,
                            Known::OneOf(vec![Possible::File {
                                base: content,
                                tail: None,
                                replication: vec![replication, new],
                            }]),
                        );
                        ok(shared, false);
                    }
                }
            }
            _ => {
                let path = format!("{dir}/f{n}");
                let content = Content(vec![(seed, 1 + rng.below(MAX_CREATE) as usize)]);
                match runtime.block_on(write_new(client, &path, &content)) {
                    Ok(()) => {
                        shared.publish(&path, content.clone(), None);
                        self.files.insert(
                            path,
                            Known::Exact {
                                content,
                                replication: 2,
                            },
                        );
                        ok(shared, true);
                    }
                    Err(_) => {
                        self.files.insert(
                            path,
                            Known::OneOf(vec![
                                Possible::Absent,
                                Possible::File {
                                    base: Content::default(),
                                    tail: Some(content.0[0]),
                                    replication: vec![2],
                                },
                            ]),
                        );
                        ok(shared, false);
                    }
                }
            }
        }
    }
}

/// A reader: reads files writers published and checks what comes back.
fn reader(addrs: Vec<String>, shared: Arc<Shared>, seed: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = runtime.block_on(async { client_for(&addrs) });
    let mut rng = Rng(seed | 1);
    while !shared.stop.load(Ordering::Relaxed) {
        let pick = {
            let views = shared.views.lock().expect("lock");
            if views.is_empty() {
                None
            } else {
                let i = rng.below(views.len() as u64) as usize;
                views.iter().nth(i).map(|(p, v)| (p.clone(), v.clone()))
            }
        };
        let Some((path, before)) = pick else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let got = runtime.block_on(read_file(&client, &path));
        shared.reads.fetch_add(1, Ordering::Relaxed);
        let Ok(bytes) = got else {
            shared.read_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let after = shared.views.lock().expect("lock").get(&path).cloned();
        // Withdrawn meanwhile (renamed, deleted, or its operation failed):
        // nothing to judge against.
        let Some(after) = after else { continue };
        let unchanged = after.version == before.version;
        let mut possible = before.content.clone();
        if let Some(piece) = before.appending {
            possible = possible.with(piece);
        }
        let full = possible.bytes();
        let floor = before.content.len();
        // A path's content only grows while it stays published (appends),
        // and a read of a file being appended may span several appends:
        // any prefix of the latest state, no shorter than the first, is
        // right.
        let mut latest = after.content.clone();
        if let Some(piece) = after.appending {
            latest = latest.with(piece);
        }
        let fits = bytes.len() >= floor
            && (full.starts_with(&bytes) || latest.bytes().starts_with(&bytes));
        let exact = before.appending.is_none() && unchanged;
        if (exact && bytes != full) || (!exact && !fits) {
            shared.violation(format!(
                "reader got {} bytes of {path}, which held {} (up to {} while appended)",
                bytes.len(),
                floor,
                full.len()
            ));
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    TwoJournalnodes,
    JournalnodeAndFailover,
    PauseActivePastLease,
    KillDatanode,
    KillActive,
    PauseJournalnode,
}

const FAULTS: [Fault; 6] = [
    Fault::TwoJournalnodes,
    Fault::JournalnodeAndFailover,
    Fault::PauseActivePastLease,
    Fault::KillDatanode,
    Fault::KillActive,
    Fault::PauseJournalnode,
];

fn inject(cluster: &mut HaCluster, fault: Fault, rng: &mut Rng) {
    let active = cluster.wait_active();
    match fault {
        Fault::TwoJournalnodes => {
            let spared = rng.below(3) as usize;
            let victims: Vec<usize> = (0..3).filter(|j| *j != spared).collect();
            for &jn in &victims {
                cluster.kill_journalnode(jn);
            }
            std::thread::sleep(Duration::from_millis(1_000 + rng.below(2_000)));
            for &jn in &victims {
                cluster.start_journalnode(jn);
            }
        }
        Fault::JournalnodeAndFailover => {
            let jn = rng.below(3) as usize;
            cluster.kill_journalnode(jn);
            cluster.kill_namenode(active);
            cluster.wait_state(1 - active, "active", Duration::from_secs(30));
            cluster.start_journalnode(jn);
            cluster.start_namenode(active);
        }
        Fault::PauseActivePastLease => {
            cluster.namenode(active).signal(libc::SIGSTOP);
            // The lease is 2 s: another namenode takes over meanwhile.
            std::thread::sleep(Duration::from_millis(3_000 + rng.below(1_500)));
            cluster.namenode(active).signal(libc::SIGCONT);
        }
        Fault::KillDatanode => {
            let dn = rng.below(DATANODES as u64) as usize;
            cluster.kill_datanode(dn);
            std::thread::sleep(Duration::from_millis(1_000 + rng.below(4_000)));
            cluster.start_datanode(dn);
        }
        Fault::KillActive => {
            cluster.kill_namenode(active);
            cluster.wait_state(1 - active, "active", Duration::from_secs(30));
            cluster.start_namenode(active);
        }
        Fault::PauseJournalnode => {
            let jn = rng.below(3) as usize;
            cluster.journalnode(jn).signal(libc::SIGSTOP);
            std::thread::sleep(Duration::from_millis(1_000 + rng.below(2_000)));
            cluster.journalnode(jn).signal(libc::SIGCONT);
        }
    }
}

/// One namenode's spells as active: (namenode, epoch, since, until) in
/// wall-clock milliseconds, from its log.
fn active_spells(log: &str, nn: usize) -> Vec<(usize, u64, u64, u64)> {
    let field = |line: &str, key: &str| -> Option<u64> {
        line.split(&format!("{key}="))
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let mut spells: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for line in log.lines() {
        if line.contains("this namenode is now active")
            && let (Some(epoch), Some(since), Some(until)) = (
                field(line, "epoch"),
                field(line, "active_since_unix_ms"),
                field(line, "lease_until_unix_ms"),
            )
        {
            spells.insert(epoch, (since, until));
        } else if line.contains("leadership lease renewed")
            && let (Some(epoch), Some(until)) =
                (field(line, "epoch"), field(line, "lease_until_unix_ms"))
            && let Some(spell) = spells.get_mut(&epoch)
        {
            spell.1 = spell.1.max(until);
        }
    }
    spells
        .into_iter()
        .map(|(epoch, (since, until))| (nn, epoch, since, until))
        .collect()
}

#[test]
fn combined_faults_lose_no_acknowledged_change_and_apply_no_failed_one_in_part() {
    let seconds = env_or("RDFS_CHAOS_SECONDS", 75);
    let seed = env_or("RDFS_CHAOS_SEED", 0x00c0_ffee);
    eprintln!("chaos: {seconds} s, seed {seed}");
    let mut cluster = HaCluster::builder()
        .datanodes(DATANODES)
        .conf("dfs.replication", "2")
        .conf("namenode.replication_interval_ms", "500")
        .log_leases()
        .start();
    cluster.wait_active();
    let addrs: Vec<String> = cluster
        .nn_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let shared = Arc::new(Shared::default());

    let writers: Vec<_> = (0..WRITERS)
        .map(|id| {
            let (shared, addrs) = (Arc::clone(&shared), addrs.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let client = runtime.block_on(async { client_for(&addrs) });
                let mut rng = Rng((seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9)) | 1);
                let mut writer = Writer {
                    id,
                    files: BTreeMap::new(),
                    renames: Vec::new(),
                    next: 0,
                };
                while !shared.stop.load(Ordering::Relaxed) {
                    writer.step(&runtime, &client, &shared, &mut rng);
                }
                writer
            })
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (shared, addrs) = (Arc::clone(&shared), addrs.clone());
            std::thread::spawn(move || reader(addrs, shared, seed.wrapping_add(r as u64 + 7)))
        })
        .collect();

    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut faults = 0usize;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1_000 + rng.below(2_000)));
        // Every kind once, in order; then at random.
        let fault = if faults < FAULTS.len() {
            FAULTS[faults]
        } else {
            FAULTS[rng.below(FAULTS.len() as u64) as usize]
        };
        eprintln!("chaos fault {faults}: {fault:?}");
        inject(&mut cluster, fault, &mut rng);
        faults += 1;
    }
    shared.stop.store(true, Ordering::Relaxed);
    let writers: Vec<Writer> = writers
        .into_iter()
        .map(|w| w.join().expect("writer thread"))
        .collect();
    for r in readers {
        r.join().expect("reader thread");
    }

    // Heal: every daemon up, one active, one standby, every datanode live.
    for jn in 0..3 {
        if cluster.journalnodes[jn].is_none() {
            cluster.start_journalnode(jn);
        }
    }
    for nn in 0..2 {
        if cluster.namenodes[nn].is_none() {
            cluster.start_namenode(nn);
        }
    }
    for dn in 0..DATANODES {
        if cluster.datanodes[dn].is_none() {
            cluster.start_datanode(dn);
        }
    }
    let active = cluster.wait_active();
    cluster.wait_state(1 - active, "standby", Duration::from_secs(60));
    cluster.wait_live_datanodes(DATANODES);

    let client = cluster.client();
    // Files a failed operation left open are closed at what their
    // datanodes agree on.
    for writer in &writers {
        for (path, known) in &writer.files {
            if matches!(known, Known::OneOf(_)) {
                let deadline = Instant::now() + Duration::from_secs(90);
                loop {
                    let answer = cluster.block_on(client.recover_lease(path));
                    let gone = matches!(&answer, Err(e) if e.kind() == Some(rdfs_common::ExceptionKind::FileNotFound));
                    if matches!(answer, Ok(true)) || gone {
                        break;
                    }
                    if Instant::now() > deadline {
                        let fsck = cluster
                            .rdfs("fsck", &[path, "-files", "-blocks", "-locations"])
                            .stdout();
                        let mut logs = String::new();
                        for nn in 0..2 {
                            for line in cluster.namenode_log(nn).lines() {
                                if line.contains(path.as_str())
                                    || line.contains("recover")
                                    || line.contains("Recover")
                                {
                                    logs.push_str(&format!("nn{nn}: {line}\n"));
                                }
                            }
                        }
                        let tail: Vec<&str> = logs.lines().rev().take(60).collect();
                        panic!(
                            "{path} is still open 90 s after healing; last answer {answer:?}\nfsck: {fsck}\nnamenode log lines:\n{}",
                            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                        );
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }

    let mut violations = shared.violations.lock().expect("lock").clone();
    let mut checked = 0usize;
    for writer in &writers {
        let dir = format!("/chaos/w{}", writer.id);
        let listed: BTreeSet<String> = cluster
            .block_on(client.list(&dir))
            .expect("list")
            .unwrap_or_default()
            .into_iter()
            .map(|status| format!("{dir}/{}", String::from_utf8_lossy(&status.name)))
            .collect();
        for extra in listed.iter().filter(|p| !writer.files.contains_key(*p)) {
            violations.push(format!("{extra} exists but no operation made it"));
        }
        for (path, known) in &writer.files {
            checked += 1;
            let exists = listed.contains(path);
            let status = if exists {
                cluster.block_on(client.get_file_info(path)).expect("info")
            } else {
                None
            };
            let bytes = exists.then(|| {
                cluster
                    .block_on(read_file(&client, path))
                    .unwrap_or_else(|e| panic!("{path} cannot be read after healing: {e}"))
            });
            let replication = status.as_ref().map_or(0, |s| s.replication);
            let fits = |possible: &Possible| match (possible, &bytes) {
                (Possible::Absent, None) => true,
                (
                    Possible::File {
                        base,
                        tail,
                        replication: allowed,
                    },
                    Some(bytes),
                ) => {
                    let base_bytes = base.bytes();
                    let tail_bytes = tail.map(|(s, l)| test_bytes(l, s)).unwrap_or_default();
                    allowed.contains(&replication)
                        && bytes.starts_with(&base_bytes)
                        && tail_bytes.starts_with(&bytes[base_bytes.len()..])
                }
                _ => false,
            };
            match known {
                Known::Exact {
                    content,
                    replication: wanted,
                } => {
                    let ok = bytes.as_ref().is_some_and(|b| *b == content.bytes())
                        && replication == *wanted;
                    if !ok {
                        violations.push(format!(
                            "acknowledged {path} ({} bytes, replication {wanted}) is {}",
                            content.len(),
                            match &bytes {
                                None => "gone".to_string(),
                                Some(b) =>
                                    format!("{} bytes at replication {replication}", b.len()),
                            }
                        ));
                    }
                }
                Known::OneOf(possibles) => {
                    if !possibles.iter().any(fits) {
                        violations.push(format!(
                            "{path} after a failed operation is half-applied: {} bytes at replication {replication}, allowed {possibles:?}",
                            bytes.as_ref().map_or(0, Vec::len)
                        ));
                    }
                }
            }
        }
        for (from, to) in &writer.renames {
            let (a, b) = (listed.contains(from), listed.contains(to));
            if a == b {
                violations.push(format!(
                    "a failed rename of {from} to {to} left the file at {} of its names",
                    if a { "both" } else { "neither" }
                ));
            }
        }
    }

    // Every block readable again, at its replication.
    let mut fsck = String::new();
    cluster.wait_until("fsck / to be healthy", Duration::from_secs(120), || {
        fsck = cluster.rdfs("fsck", &["/"]).stdout();
        fsck.contains("Missing blocks:\t\t0") && fsck.contains("is HEALTHY")
    });

    // Finalized segments are the same bytes wherever they are.
    let mut segments: BTreeMap<String, Vec<(usize, Vec<u8>)>> = BTreeMap::new();
    for jn in 0..3 {
        for (name, bytes) in cluster.finalized_segments(jn) {
            segments.entry(name).or_default().push((jn, bytes));
        }
    }
    for (name, copies) in &segments {
        if copies.windows(2).any(|w| w[0].1 != w[1].1) {
            violations.push(format!(
                "finalized {name} differs between journalnodes {:?}",
                copies.iter().map(|(jn, _)| jn).collect::<Vec<_>>()
            ));
        }
    }

    // Never two actives at once, and one namenode per epoch.
    let spells: Vec<(usize, u64, u64, u64)> = (0..2)
        .flat_map(|nn| active_spells(&cluster.namenode_log(nn), nn))
        .collect();
    let mut epochs = BTreeSet::new();
    for spell in &spells {
        if !epochs.insert(spell.1) {
            violations.push(format!("epoch {} was active on both namenodes", spell.1));
        }
        for other in &spells {
            if other.0 != spell.0 && spell.2 < other.3 && other.2 < spell.3 {
                violations.push(format!(
                    "nn{} (epoch {}, {}..{}) and nn{} (epoch {}, {}..{}) served as active at once",
                    spell.0, spell.1, spell.2, spell.3, other.0, other.1, other.2, other.3
                ));
            }
        }
    }

    eprintln!(
        "chaos: {faults} faults; {} operations acknowledged, {} failed; {checked} paths checked; \
         {} reads ({} failed); {} finalized segments compared; {} active spells",
        shared.acked.load(Ordering::Relaxed),
        shared.failed.load(Ordering::Relaxed),
        shared.reads.load(Ordering::Relaxed),
        shared.read_errors.load(Ordering::Relaxed),
        segments.len(),
        spells.len()
    );
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    assert!(
        shared.acked.load(Ordering::Relaxed) >= 20,
        "the load made too little progress to mean anything"
    );
    assert!(spells.len() >= 3, "expected several failovers: {spells:?}");
}
