//! Namenode durability: whatever kills the namenode, every acknowledged
//! change survives and none is half-applied; restarts, safe mode, and
//! damaged edit logs, images and name directories.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rdfs_client::{CreateOptions, DfsClient};

use crate::harness::{MiniCluster, Rng, Tmpfs, test_bytes};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Dir,
    File { replication: u32 },
}

#[derive(Debug, Clone)]
enum Change {
    Mkdir(String),
    Create(String, u32),
    Rename(String, String),
    Delete(String),
    SetReplication(String, u32, u32),
}

/// What one worker believes its subtree holds.
struct Model {
    root: String,
    entries: BTreeMap<String, Entry>,
    counter: u64,
}

impl Model {
    fn dirs(&self) -> Vec<String> {
        let mut dirs: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| **e == Entry::Dir)
            .map(|(p, _)| p.clone())
            .collect();
        dirs.push(self.root.clone());
        dirs
    }

    fn pick(&self, rng: &mut Rng, files_only: bool) -> Option<String> {
        let candidates: Vec<&String> = self
            .entries
            .iter()
            .filter(|(_, e)| !files_only || matches!(e, Entry::File { .. }))
            .map(|(p, _)| p)
            .collect();
        (!candidates.is_empty())
            .then(|| candidates[rng.below(candidates.len() as u64) as usize].clone())
    }

    fn next_change(&mut self, rng: &mut Rng) -> Change {
        self.counter += 1;
        let n = self.counter;
        let dirs = self.dirs();
        let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
        match rng.below(10) {
            0..=2 => Change::Mkdir(format!("{parent}/d{n}")),
            3..=5 => Change::Create(format!("{parent}/f{n}"), 1 + rng.below(3) as u32),
            6 | 7 => match self.pick(rng, false) {
                Some(src) if !parent.starts_with(&format!("{src}/")) && parent != src => {
                    Change::Rename(src, format!("{parent}/r{n}"))
                }
                _ => Change::Mkdir(format!("{parent}/d{n}")),
            },
            8 => match self.pick(rng, false) {
                Some(victim) => Change::Delete(victim),
                None => Change::Mkdir(format!("{parent}/d{n}")),
            },
            _ => match self.pick(rng, true) {
                Some(file) => {
                    let Some(Entry::File { replication }) = self.entries.get(&file) else {
                        unreachable!()
                    };
                    Change::SetReplication(file, *replication, 1 + (*replication % 3))
                }
                None => Change::Create(format!("{parent}/f{n}"), 2),
            },
        }
    }

    fn apply(&mut self, change: &Change) {
        match change {
            Change::Mkdir(path) => {
                self.entries.insert(path.clone(), Entry::Dir);
            }
            Change::Create(path, replication) => {
                self.entries.insert(
                    path.clone(),
                    Entry::File {
                        replication: *replication,
                    },
                );
            }
            Change::Rename(src, dst) => {
                let moved: Vec<(String, Entry)> = self
                    .entries
                    .iter()
                    .filter(|(p, _)| *p == src || p.starts_with(&format!("{src}/")))
                    .map(|(p, e)| (p.clone(), *e))
                    .collect();
                for (path, entry) in moved {
                    self.entries.remove(&path);
                    self.entries
                        .insert(format!("{dst}{}", &path[src.len()..]), entry);
                }
            }
            Change::Delete(victim) => {
                self.entries
                    .retain(|p, _| p != victim && !p.starts_with(&format!("{victim}/")));
            }
            Change::SetReplication(path, _, new) => {
                self.entries
                    .insert(path.clone(), Entry::File { replication: *new });
            }
        }
    }
}

async fn perform(client: &DfsClient, change: &Change) -> Result<(), String> {
    let err = |e: rdfs_client::ClientError| e.to_string();
    match change {
        Change::Mkdir(path) => client
            .mkdirs(path, 0o755, false)
            .await
            .map_err(err)
            .and_then(|ok| ok.then_some(()).ok_or("mkdirs false".into())),
        Change::Create(path, replication) => {
            let options = CreateOptions {
                replication: Some(*replication),
                create_parent: false,
                ..Default::default()
            };
            client
                .create(path, options)
                .await
                .map_err(err)?
                .close()
                .await
                .map_err(err)
        }
        Change::Rename(src, dst) => client
            .rename(src, dst)
            .await
            .map_err(err)
            .and_then(|ok| ok.then_some(()).ok_or("rename false".into())),
        Change::Delete(victim) => client
            .delete(victim, true)
            .await
            .map_err(err)
            .and_then(|ok| ok.then_some(()).ok_or("delete false".into())),
        Change::SetReplication(path, _, new) => client
            .set_replication(path, *new)
            .await
            .map_err(err)
            .and_then(|ok| ok.then_some(()).ok_or("setrep false".into())),
    }
}

/// After a change's answer was lost: whether it happened, which must be all
/// or nothing.
async fn resolve(client: &DfsClient, change: &Change) -> Result<bool, String> {
    let stat =
        |path: String| async move { client.get_file_info(&path).await.map_err(|e| e.to_string()) };
    Ok(match change {
        Change::Mkdir(path) | Change::Create(path, _) => stat(path.clone()).await?.is_some(),
        Change::Delete(victim) => stat(victim.clone()).await?.is_none(),
        Change::Rename(src, dst) => {
            let (src_exists, dst_exists) = (
                stat(src.clone()).await?.is_some(),
                stat(dst.clone()).await?.is_some(),
            );
            if src_exists == dst_exists {
                return Err(format!(
                    "rename {src} -> {dst} half-applied: source exists {src_exists}, destination exists {dst_exists}"
                ));
            }
            dst_exists
        }
        Change::SetReplication(path, old, new) => {
            let replication = stat(path.clone())
                .await?
                .map(|s| s.replication)
                .ok_or(format!("{path} vanished"))?;
            if replication != *old && replication != *new {
                return Err(format!(
                    "setrep of {path} to {new} left replication {replication} (was {old})"
                ));
            }
            replication == *new
        }
    })
}

/// What the namenode holds under a worker's root.
async fn actual(client: &DfsClient, root: &str) -> BTreeMap<String, Entry> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_string()];
    while let Some(dir) = stack.pop() {
        for entry in client.list(&dir).await.expect("list").unwrap_or_default() {
            let path = format!("{dir}/{}", String::from_utf8_lossy(&entry.name));
            if entry.is_dir() {
                stack.push(path.clone());
                found.insert(path, Entry::Dir);
            } else {
                found.insert(
                    path,
                    Entry::File {
                        replication: entry.replication,
                    },
                );
            }
        }
    }
    found
}

/// The issue's first done-when: thousands of mixed operations, the namenode
/// SIGKILLed at random moments and restarted, and at the end exactly the
/// acknowledged operations are present.
#[test]
fn namenode_killed_at_random_moments_keeps_every_acknowledged_change() {
    const WORKERS: usize = 4;
    const OPS_PER_WORKER: u64 = 1500;
    let mut cluster = MiniCluster::builder()
        .datanodes(0)
        .conf("client.socket_timeout_ms", "3000")
        .start();
    let client = cluster.client();
    for w in 0..WORKERS {
        cluster
            .block_on(client.mkdirs(&format!("/w{w}"), 0o755, false))
            .expect("worker root");
    }
    let down = Arc::new(AtomicBool::new(false));
    let epoch = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (down, epoch, finished) =
            (Arc::clone(&down), Arc::clone(&epoch), Arc::clone(&finished));
        let client = {
            let _guard = runtime.enter();
            cluster.client()
        };
        workers.push(runtime.spawn(async move {
            let mut rng = Rng(0x5eed + w as u64 * 7919);
            let mut model = Model {
                root: format!("/w{w}"),
                entries: BTreeMap::new(),
                counter: 0,
            };
            let (mut acknowledged, mut uncertain) = (0u64, 0u64);
            for _ in 0..OPS_PER_WORKER {
                let change = model.next_change(&mut rng);
                match perform(&client, &change).await {
                    Ok(()) => {
                        acknowledged += 1;
                        model.apply(&change);
                    }
                    Err(_) => {
                        uncertain += 1;
                        // Wait for the namenode to come back, then learn
                        // whether the change happened: wholly or not at all.
                        let seen = epoch.load(Ordering::SeqCst);
                        while down.load(Ordering::SeqCst) || epoch.load(Ordering::SeqCst) == seen {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            if !down.load(Ordering::SeqCst)
                                && resolve(&client, &change).await.is_ok()
                            {
                                break;
                            }
                        }
                        let happened = loop {
                            match resolve(&client, &change).await {
                                Ok(happened) => break happened,
                                Err(why)
                                    if why.contains("half-applied")
                                        || why.contains("left replication")
                                        || why.contains("vanished") =>
                                {
                                    return Err(why);
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                            }
                        };
                        if happened {
                            model.apply(&change);
                        }
                    }
                }
            }
            finished.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>((model, acknowledged, uncertain))
        }));
    }
    let mut rng = Rng(42);
    let mut kills = 0;
    while finished.load(Ordering::SeqCst) < WORKERS as u64 {
        std::thread::sleep(Duration::from_millis(100 + rng.below(300)));
        if finished.load(Ordering::SeqCst) >= WORKERS as u64 {
            break;
        }
        down.store(true, Ordering::SeqCst);
        cluster.stop_namenode();
        kills += 1;
        cluster.start_namenode();
        down.store(false, Ordering::SeqCst);
        epoch.fetch_add(1, Ordering::SeqCst);
    }
    let mut totals = (0, 0);
    for worker in workers {
        let (model, acknowledged, uncertain) = runtime
            .block_on(worker)
            .expect("worker")
            .expect("no change half-applied");
        totals = (totals.0 + acknowledged, totals.1 + uncertain);
        let found = runtime.block_on(actual(&client, &model.root));
        assert_eq!(
            found, model.entries,
            "{}: the namenode's state differs from the acknowledged changes",
            model.root
        );
    }
    // And once more after a clean restart.
    cluster.stop_namenode();
    cluster.start_namenode();
    eprintln!(
        "{kills} kills, {} acknowledged changes, {} with lost answers",
        totals.0, totals.1
    );
    assert!(
        kills >= 3,
        "the namenode should have been killed several times"
    );
    assert!(totals.0 > 2000, "{totals:?}");
    for w in 0..WORKERS {
        let found = runtime.block_on(actual(&client, &format!("/w{w}")));
        assert!(!found.is_empty() || totals.0 == 0);
    }
}

fn safemode(cluster: &MiniCluster) -> String {
    cluster
        .rdfs("dfsadmin", &["-safemode", "get"])
        .stdout()
        .trim()
        .to_string()
}

/// The issue's second done-when: a full restart brings every file back,
/// with safe mode ON until the datanodes have reported and OFF after.
#[test]
fn full_restart_brings_every_file_back_through_safe_mode() {
    let mut cluster = MiniCluster::builder().start();
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("/r/f{i}"), test_bytes(300_000 * (i + 1), i as u64)))
        .collect();
    // Some files reach the restarted namenode through a checkpoint, the
    // rest through the edit log; both must hold it in safe mode.
    for (i, (path, data)) in files.iter().enumerate() {
        if i == 3 {
            cluster.rdfs("dfsadmin", &["-safemode", "enter"]).ok();
            cluster.rdfs("dfsadmin", &["-saveNamespace"]).ok();
            cluster.rdfs("dfsadmin", &["-safemode", "leave"]).ok();
        }
        cluster
            .rdfs_with_stdin("dfs", &["-put", "-", path], Some(data))
            .ok();
    }
    assert_eq!(safemode(&cluster), "Safe mode is OFF");
    for i in 0..3 {
        cluster.kill_datanode(i);
    }
    assert_eq!(cluster.stop_namenode_gracefully(), Some(0));
    cluster.start_namenode();
    assert_eq!(safemode(&cluster), "Safe mode is ON");
    let refused = cluster.dfs(&["-mkdir", "/new"]);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr.trim(),
        "mkdir: Cannot create directory /new. Name node is in safe mode."
    );
    assert!(
        cluster
            .rdfs("dfsadmin", &["-report"])
            .stdout()
            .starts_with("Safe mode is ON\n")
    );
    // Listing works in safe mode.
    assert_eq!(cluster.dfs(&["-ls", "/r"]).stdout().lines().count(), 6);
    for i in 0..3 {
        cluster.start_datanode(i);
    }
    let wait = cluster.rdfs("dfsadmin", &["-safemode", "wait"]);
    assert_eq!(wait.stdout().trim(), "Safe mode is OFF");
    // It waited for every block, the checkpointed ones as well as those
    // replayed: 1 + 1 + 1 + 2 + 2 blocks of 1 MiB.
    let log = cluster.namenode_log();
    let left = log
        .lines()
        .rfind(|l| l.contains("leaving safe mode: enough blocks are reported"))
        .expect("the namenode logs why it left safe mode");
    assert!(
        left.contains("safe=7") && left.contains("total=7"),
        "{left}"
    );
    for (path, data) in &files {
        assert!(
            cluster.dfs(&["-cat", path]).stdout == *data,
            "{path} differs after a full restart"
        );
    }
    cluster.dfs(&["-mkdir", "/new"]).ok();
    // An operator can hold it on, and let it go.
    assert_eq!(
        cluster
            .rdfs("dfsadmin", &["-safemode", "enter"])
            .stdout()
            .trim(),
        "Safe mode is ON"
    );
    assert_eq!(cluster.dfs(&["-rm", "/r/f0"]).code, 1);
    assert_eq!(
        cluster
            .rdfs("dfsadmin", &["-safemode", "leave"])
            .stdout()
            .trim(),
        "Safe mode is OFF"
    );
    cluster.dfs(&["-rm", "/r/f0"]).ok();
}

/// A power cut in the middle of an edit: the torn record is cut off, with a
/// log line that says so, and every acknowledged change is there.
#[test]
fn torn_edit_log_tail_is_truncated_and_logged() {
    let mut cluster = MiniCluster::builder().datanodes(0).start();
    for i in 0..20 {
        cluster.dfs(&["-mkdir", "-p", &format!("/t/d{i}")]).ok();
    }
    cluster.stop_namenode();
    let current = cluster.name_dir().join("current");
    let segment = std::fs::read_dir(&current)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("edits_inprogress_"))
        })
        .expect("an in-progress segment");
    // Half a record: a length and checksum, then fewer payload bytes.
    let mut torn = vec![0, 0, 0, 40, 1, 2, 3, 4];
    torn.extend_from_slice(&[7u8; 13]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &torn))
        .expect("tear");
    cluster.start_namenode();
    assert!(
        cluster
            .namenode_log()
            .contains("edit log ends in a torn record (an interrupted write); truncating it"),
        "{}",
        cluster.namenode_log()
    );
    assert_eq!(cluster.dfs(&["-ls", "/t"]).stdout().lines().count(), 21);
    cluster.dfs(&["-mkdir", "/t/after"]).ok();
}

fn newest_image(dir: &std::path::Path) -> std::path::PathBuf {
    let mut images: Vec<_> = std::fs::read_dir(dir.join("current"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with("fsimage_") && !n.to_string_lossy().contains('.')
            })
        })
        .collect();
    images.sort();
    images.pop().expect("an image")
}

/// A zeroed or truncated newest fsimage: the namenode says so, falls back to
/// the previous image and a longer replay, and loses nothing.
#[test]
fn damaged_fsimage_falls_back_to_the_previous_one() {
    for damage in ["zeroed", "truncated"] {
        let mut cluster = MiniCluster::builder().datanodes(0).start();
        cluster.dfs(&["-mkdir", "/before"]).ok();
        assert_eq!(
            cluster
                .rdfs("dfsadmin", &["-saveNamespace"])
                .stdout()
                .trim(),
            "Save namespace successful"
        );
        cluster.dfs(&["-mkdir", "/between"]).ok();
        cluster.rdfs("dfsadmin", &["-saveNamespace"]).ok();
        cluster.dfs(&["-mkdir", "/after"]).ok();
        assert_eq!(cluster.stop_namenode_gracefully(), Some(0));
        let image = newest_image(&cluster.name_dir());
        let len = std::fs::metadata(&image).expect("image").len();
        match damage {
            "zeroed" => std::fs::write(&image, vec![0u8; len as usize]).expect("zero"),
            _ => std::fs::OpenOptions::new()
                .write(true)
                .open(&image)
                .and_then(|f| f.set_len(len / 2))
                .expect("truncate"),
        }
        cluster.start_namenode();
        let log = cluster.namenode_log();
        assert!(
            log.contains(
                "fsimage is damaged; it is set aside as *.corrupt and an older one is tried"
            ),
            "{damage}: {log}"
        );
        for dir in ["/before", "/between", "/after"] {
            assert_eq!(
                cluster.dfs(&["-test", "-d", dir]).code,
                0,
                "{damage}: {dir} lost"
            );
        }
    }
}

/// The edit segment holding the newest edits in a name directory.
fn newest_segment(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir.join("current"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let range = name
                .strip_prefix("edits_inprogress_")
                .or_else(|| name.strip_prefix("edits_"))?;
            let first: u64 = range.split('-').next()?.parse().ok()?;
            Some((first, p))
        })
        .max()
        .map(|(_, p)| p)
        .expect("an edit segment")
}

/// One of two name directories damaged (a garbled VERSION, an edit log
/// damaged in the middle, a zeroed fsimage) is reported and left out of
/// service; the namenode starts from the other and loses nothing, and goes
/// on working. With both damaged it refuses to start.
#[test]
fn damaged_name_dir_is_left_out_while_a_good_copy_remains() {
    for damage in ["version", "edits", "image"] {
        let scratch = tempfile::tempdir().expect("tmp");
        let (good, bad) = (scratch.path().join("good"), scratch.path().join("bad"));
        let mut cluster = MiniCluster::builder()
            .datanodes(0)
            // The damaged one first, so it is the copy the namenode reads.
            .name_dirs(vec![bad.clone(), good.clone()])
            .start();
        cluster.dfs(&["-mkdir", "/imaged"]).ok();
        cluster.rdfs("dfsadmin", &["-saveNamespace"]).ok();
        for i in 0..20 {
            cluster.dfs(&["-mkdir", &format!("/edited{i}")]).ok();
        }
        assert_eq!(cluster.stop_namenode_gracefully(), Some(0));
        let expected = match damage {
            "version" => {
                std::fs::write(bad.join("current/VERSION"), "garbage\n").expect("garble");
                "this name directory cannot be used; it is left out of service"
            }
            "edits" => {
                let segment = newest_segment(&bad);
                let bytes = std::fs::read(&segment).expect("segment");
                let mut damaged = bytes.clone();
                let middle = bytes.len() / 2;
                damaged[middle..middle + 8].fill(0xa5);
                std::fs::write(&segment, damaged).expect("damage");
                "this name directory's edit log cannot be read; the directory is left out of service"
            }
            _ => {
                let image = newest_image(&bad);
                let len = std::fs::metadata(&image).expect("image").len();
                std::fs::write(&image, vec![0u8; len as usize]).expect("zero");
                "fsimage is damaged; it is set aside as *.corrupt and an older one is tried"
            }
        };
        cluster.start_namenode();
        let log = cluster.namenode_log();
        assert!(log.contains(expected), "{damage}: {log}");
        let listing = cluster.dfs(&["-ls", "/"]).stdout();
        assert!(
            listing.starts_with("Found 21 items\n"),
            "{damage}: {listing}"
        );
        cluster.dfs(&["-mkdir", "/later"]).ok();
        assert_eq!(cluster.stop_namenode_gracefully(), Some(0));
        cluster.start_namenode();
        assert_eq!(cluster.dfs(&["-test", "-d", "/later"]).code, 0, "{damage}");

        if damage == "version" {
            assert_eq!(cluster.stop_namenode_gracefully(), Some(0));
            std::fs::write(good.join("current/VERSION"), "garbage\n").expect("garble");
            let mut namenode = cluster.spawn_namenode();
            assert_eq!(namenode.wait_exit(Duration::from_secs(20)), Some(1));
            let log = namenode.log_text();
            assert!(log.contains("current/VERSION is invalid"), "{log}");
        }
    }
}

/// With every image damaged the namenode refuses to start, and says why.
#[test]
fn namenode_refuses_to_start_with_nothing_valid() {
    let mut cluster = MiniCluster::builder().datanodes(0).start();
    cluster.dfs(&["-mkdir", "/x"]).ok();
    assert_eq!(cluster.stop_namenode_gracefully(), Some(0));
    let image = newest_image(&cluster.name_dir());
    std::fs::write(&image, b"not an image").expect("damage");
    let mut namenode = cluster.spawn_namenode();
    assert_eq!(namenode.wait_exit(Duration::from_secs(20)), Some(1));
    let log = namenode.log_text();
    assert!(
        log.contains("refuses to start with a partial namespace: no valid fsimage"),
        "{log}"
    );
}

/// Checkpoints happen by themselves after enough edits, and old images and
/// edit segments are purged.
#[test]
fn checkpoints_by_edit_count_and_purges_old_files() {
    let mut cluster = MiniCluster::builder()
        .datanodes(0)
        .conf("namenode.checkpoint_txns", "40")
        .conf("namenode.checkpoint_check_ms", "100")
        .start();
    for i in 0..150 {
        cluster.dfs(&["-mkdir", &format!("/c{i}")]).ok();
    }
    cluster.wait_until(
        "a checkpoint past txid 100",
        Duration::from_secs(20),
        || {
            let image = newest_image(&cluster.name_dir());
            image
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("fsimage_"))
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0)
                >= 120
        },
    );
    let names: Vec<String> = std::fs::read_dir(cluster.name_dir().join("current"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("fsimage_")).count(),
        2,
        "{names:?}"
    );
    assert!(
        !names.contains(&"fsimage_0000000000000000000".to_string()),
        "{names:?}"
    );
    let rolled = cluster.rdfs("dfsadmin", &["-rollEdits"]);
    assert!(
        rolled
            .stdout()
            .starts_with("Successfully rolled edit logs.\nNew segment starts at txid "),
        "{}",
        rolled.stdout()
    );
    cluster.stop_namenode();
    cluster.start_namenode();
    assert_eq!(cluster.dfs(&["-ls", "/"]).stdout().lines().count(), 151);
}

/// A name directory on a full disk: edits go on in the other directory; with
/// no directory left, changes fail with a clear error and are never
/// acknowledged, and the namenode stops.
#[test]
fn name_dir_on_a_full_disk() {
    let scratch = tempfile::tempdir().expect("tmp");
    let full = Tmpfs::mount(scratch.path().join("small"), "2m");
    let good = scratch.path().join("good");
    let mut cluster = MiniCluster::builder()
        .datanodes(0)
        .name_dirs(vec![good.clone(), full.0.join("name")])
        .start();
    cluster.dfs(&["-mkdir", "/one"]).ok();
    full.fill();
    // Enough edits to need new pages on the full filesystem.
    let client = cluster.client();
    for i in 0..300 {
        cluster
            .block_on(client.mkdirs(&format!("/after{i}"), 0o755, false))
            .expect("mkdirs goes on in the good directory");
    }
    assert!(
        cluster
            .namenode_log()
            .contains("edit log write failed; this name directory is dropped from service"),
        "{}",
        cluster.namenode_log()
    );
    cluster.stop_namenode();
    cluster.start_namenode();
    assert_eq!(cluster.dfs(&["-test", "-d", "/after299"]).code, 0);
    cluster.stop_namenode();
    full.free();
    drop(cluster);

    // The only name directory fills up.
    let only = Tmpfs::mount(scratch.path().join("only"), "2m");
    let mut cluster = MiniCluster::builder()
        .datanodes(0)
        .name_dirs(vec![only.0.join("name")])
        .start();
    cluster.dfs(&["-mkdir", "/kept"]).ok();
    only.fill();
    let client = cluster.client();
    let mut refused = None;
    for i in 0..300 {
        if let Err(err) = cluster.block_on(client.mkdirs(&format!("/lost{i}"), 0o755, false)) {
            refused = Some((i, err.to_string()));
            break;
        }
    }
    let (first_refused, message) = refused.expect("a full disk refuses edits");
    assert!(message.contains("No space left on device"), "{message}");
    let namenode = cluster.namenode.as_mut().expect("namenode");
    assert_eq!(
        namenode.wait_exit(Duration::from_secs(20)),
        Some(1),
        "the namenode stops when its edit log fails"
    );
    assert!(
        cluster
            .namenode_log()
            .contains("the namenode stopped because its edit log failed"),
        "{}",
        cluster.namenode_log()
    );
    only.free();
    cluster.namenode = None;
    cluster.start_namenode();
    assert_eq!(
        cluster.dfs(&["-test", "-d", "/kept"]).code,
        0,
        "acknowledged changes survive"
    );
    let lost = format!("/lost{first_refused}");
    assert_eq!(
        cluster.dfs(&["-test", "-e", &lost]).code,
        1,
        "the refused change was never applied"
    );
    for i in 0..first_refused {
        assert_eq!(
            cluster.dfs(&["-test", "-d", &format!("/lost{i}")]).code,
            0,
            "acknowledged /lost{i} survives"
        );
    }
}
