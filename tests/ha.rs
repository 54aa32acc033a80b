//! High availability: three journalnodes, two namenodes, automatic failover
//! through the journal quorum, fencing by epochs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdfs_client::{ClientSettings, CreateOptions, DfsClient};
use rdfs_common::config::Config;

use crate::harness::ha::HaCluster;
use crate::harness::{Rng, env_or, read_file, test_bytes};

/// Writes `bytes` to `path` through `client`; whether the close was
/// acknowledged.
async fn write_file(client: &DfsClient, path: &str, bytes: &[u8]) -> Result<(), String> {
    let mut out = client
        .create(
            path,
            CreateOptions {
                overwrite: true,
                ..CreateOptions::default()
            },
        )
        .await
        .map_err(|e| format!("create {path}: {e}"))?;
    out.write(bytes)
        .await
        .map_err(|e| format!("write {path}: {e}"))?;
    out.close().await.map_err(|e| format!("close {path}: {e}"))
}

/// A client that talks to one namenode only and gives up at once.
fn direct_client(cluster: &HaCluster, index: usize) -> DfsClient {
    let mut config = Config::default();
    config.client.failover_max_attempts = 1;
    config.client.socket_timeout_ms = 3_000;
    let addr = format!("127.0.0.1:{}", cluster.nn_ports[index]);
    let _guard = tokio::runtime::Handle::try_current();
    cluster.block_on(async {
        DfsClient::new_nameservice(&[addr], "tester", ClientSettings::from_config(&config))
            .expect("client")
    })
}

#[test]
fn killing_the_active_namenode_fails_over_without_losing_files() {
    let mut cluster = HaCluster::builder().start();
    let first = cluster.wait_active();
    let client = cluster.client();
    let data = test_bytes(300_000, 1);
    cluster
        .block_on(write_file(&client, "/before", &data))
        .expect("write before failover");
    cluster.kill_namenode(first);
    let second = 1 - first;
    cluster.wait_state(second, "active", Duration::from_secs(20));
    assert_eq!(
        cluster
            .block_on(read_file(&client, "/before"))
            .expect("read"),
        data,
        "a file closed before the failover reads back whole"
    );
    let after = test_bytes(200_000, 2);
    cluster
        .block_on(write_file(&client, "/after", &after))
        .expect("write after failover");
    // The old active comes back as a standby and catches up.
    cluster.start_namenode(first);
    cluster.wait_state(first, "standby", Duration::from_secs(20));
    let all = cluster.haadmin(&["-getAllServiceState"]);
    all.ok();
    let text = all.stdout();
    assert_eq!(text.matches("active").count(), 1, "{text}");
    assert_eq!(text.matches("standby").count(), 1, "{text}");
    // And it can take over again, with everything.
    cluster.kill_namenode(second);
    cluster.wait_state(first, "active", Duration::from_secs(20));
    assert_eq!(
        cluster
            .block_on(read_file(&client, "/before"))
            .expect("read"),
        data
    );
    assert_eq!(
        cluster
            .block_on(read_file(&client, "/after"))
            .expect("read"),
        after
    );
}

#[test]
fn a_paused_active_steps_down_and_never_completes_a_write() {
    let cluster = HaCluster::builder().start();
    let old = cluster.wait_active();
    let new = 1 - old;
    let client = cluster.client();
    cluster
        .block_on(write_file(&client, "/a", b"before the pause"))
        .expect("write");
    cluster.namenode(old).signal(libc::SIGSTOP);
    cluster.wait_state(new, "active", Duration::from_secs(20));
    cluster
        .block_on(write_file(&client, "/b", b"while the old active is paused"))
        .expect("write to the new active");
    cluster.namenode(old).signal(libc::SIGCONT);
    // The moment it runs again its lease has lapsed: it must refuse writes.
    let direct = direct_client(&cluster, old);
    let refused = cluster.block_on(direct.mkdirs("/written-by-the-old-active", 0o755, true));
    assert!(
        refused.is_err(),
        "the resumed old active accepted a write: {refused:?}"
    );
    cluster.wait_state(old, "standby", Duration::from_secs(20));
    assert!(
        cluster.namenode_log(old).contains("no longer active"),
        "the old active logs that it stepped down"
    );
    assert_eq!(
        cluster
            .block_on(client.get_file_info("/written-by-the-old-active"))
            .expect("stat"),
        None
    );
    assert_eq!(
        cluster.block_on(read_file(&client, "/b")).expect("read"),
        b"while the old active is paused"
    );
    // The resumed standby follows the new active's edits.
    cluster
        .block_on(write_file(&client, "/c", b"after"))
        .expect("write");
    cluster.wait_until("the standby to tail /c", Duration::from_secs(10), || {
        cluster
            .namenode_log(old)
            .contains("standby namespace reloaded")
    });
}

#[test]
fn haadmin_reports_roles_and_fails_over_on_request() {
    let cluster = HaCluster::builder()
        .datanodes(1)
        .conf("dfs.replication", "1")
        .start();
    let active = cluster.wait_active();
    let standby = 1 - active;
    let (a, s) = (format!("nn{active}"), format!("nn{standby}"));
    assert_eq!(
        cluster
            .haadmin(&["-getServiceState", &a])
            .ok()
            .stdout()
            .trim(),
        "active"
    );
    assert_eq!(
        cluster
            .haadmin(&["-getServiceState", &s])
            .ok()
            .stdout()
            .trim(),
        "standby"
    );
    // Two actives are refused.
    let refused = cluster.haadmin(&["-transitionToActive", &s]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("already active"),
        "{}",
        refused.stderr
    );
    assert_eq!(cluster.states(), {
        let mut expected = vec![String::new(), String::new()];
        expected[active] = "active".into();
        expected[standby] = "standby".into();
        expected
    });
    // A graceful failover swaps them.
    let failover = cluster.haadmin(&["-failover", &a, &s]);
    failover.ok();
    assert!(
        failover
            .stdout()
            .contains(&format!("Failover to {s} successful"))
    );
    cluster.wait_state(active, "standby", Duration::from_secs(10));
    assert_eq!(cluster.states()[standby], "active");
    cluster.dfs(&["-mkdir", "/after-failover"]).ok();

    // Transitions are the superuser's, as in HDFS; the state is anyone's.
    for args in [vec!["-transitionToStandby", &s], vec!["-failover", &s, &a]] {
        let refused = cluster.haadmin_as("alice", &args);
        assert_ne!(refused.code, 0, "{args:?}");
        assert!(
            refused
                .stderr
                .contains("Access denied for user alice. Superuser privilege is required"),
            "{args:?}: {}",
            refused.stderr
        );
    }
    assert_eq!(
        cluster
            .haadmin_as("alice", &["-getServiceState", &s])
            .ok()
            .stdout()
            .trim(),
        "active"
    );
    let unknown = cluster.haadmin(&["-getServiceState", "nn9"]);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("nn9 is not a namenode"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn a_namenode_of_another_cluster_refuses_the_journal() {
    let cluster = HaCluster::builder().datanodes(0).start();
    // A namenode formatted on its own (another cluster id) pointed at this
    // nameservice's journal.
    let stray = cluster.path("stray");
    let format = std::process::Command::new(crate::harness::rdfs_bin())
        .args(["namenode", "-format", "-D"])
        .arg(format!("namenode.name_dirs={}", stray.display()))
        .args(["-D", "namenode.rpc_address=127.0.0.1:0"])
        .output()
        .expect("format");
    assert!(format.status.success());
    let mut args = vec!["namenode".to_string()];
    for kv in [
        format!("namenode.name_dirs={}", stray.display()),
        format!("namenode.rpc_address=127.0.0.1:{}", cluster.nn_ports[1]),
        "ha.namenode_id=nn1".to_string(),
        "ha.nameservice=ns".to_string(),
        format!(
            "ha.namenodes=nn0=127.0.0.1:{},nn1=127.0.0.1:{}",
            cluster.nn_ports[0], cluster.nn_ports[1]
        ),
        format!(
            "ha.shared_edits_dir=qjournal://{}/ns",
            cluster
                .jn_ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(";")
        ),
    ] {
        args.push("-D".into());
        args.push(kv);
    }
    // nn1 of the cluster must not run for this: stop it first.
    let mut cluster = cluster;
    cluster.kill_namenode(1);
    let output = std::process::Command::new(crate::harness::rdfs_bin())
        .args(&args)
        .output()
        .expect("namenode");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is formatted for cluster") && stderr.contains("belongs to cluster"),
        "{stderr}"
    );
}

#[derive(Debug, Clone, Copy)]
enum Chaos {
    KillActive,
    PauseActive,
    KillJournalnode,
    PauseJournalnode,
}

/// Under a continuous load of writers, SIGKILL and SIGSTOP the active
/// namenode and kill or pause a minority of journalnodes. Every file whose
/// close was acknowledged must read back identical, and no epoch may have
/// had two writers. `RDFS_CHAOS_ROUNDS` and `RDFS_CHAOS_SEED` make it a
/// longer, randomized run.
#[test]
fn chaos_every_acknowledged_file_survives() {
    let rounds = env_or("RDFS_CHAOS_ROUNDS", 6);
    let seed = env_or("RDFS_CHAOS_SEED", 0x5eed_1234);
    eprintln!("chaos: {rounds} rounds, seed {seed}");
    let mut cluster = HaCluster::builder().start();
    cluster.wait_active();
    let addrs: Vec<String> = cluster
        .nn_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, usize, u64)>>> = Arc::default();
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writers: Vec<_> = (0..3)
        .map(|worker| {
            let (stop, acked, failed, addrs) = (
                Arc::clone(&stop),
                Arc::clone(&acked),
                Arc::clone(&failed),
                addrs.clone(),
            );
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let mut config = Config::default();
                config.client.socket_timeout_ms = 5_000;
                config.client.connect_timeout_ms = 2_000;
                config.client.failover_max_attempts = 60;
                let client = runtime.block_on(async {
                    DfsClient::new_nameservice(
                        &addrs,
                        "tester",
                        ClientSettings::from_config(&config),
                    )
                    .expect("client")
                });
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let file_seed = (worker as u64) << 32 | n;
                    let len = 1 + (file_seed.wrapping_mul(2654435761) % 150_000) as usize;
                    let path = format!("/chaos/w{worker}/f{n}");
                    let bytes = test_bytes(len, file_seed);
                    match runtime.block_on(write_file(&client, &path, &bytes)) {
                        Ok(()) => acked.lock().expect("lock").push((path, len, file_seed)),
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let mut rng = Rng(seed | 1);
    let schedule = [
        Chaos::KillActive,
        Chaos::PauseActive,
        Chaos::KillJournalnode,
        Chaos::PauseJournalnode,
    ];
    for round in 0..rounds {
        // The first four rounds cover every kind; later ones are random.
        let event = if round < 4 {
            schedule[round as usize]
        } else {
            schedule[rng.below(4) as usize]
        };
        std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
        let active = cluster.wait_active();
        eprintln!("chaos round {round}: {event:?} (active nn{active})");
        match event {
            Chaos::KillActive => {
                cluster.kill_namenode(active);
                cluster.wait_state(1 - active, "active", Duration::from_secs(30));
                cluster.start_namenode(active);
                cluster.wait_state(active, "standby", Duration::from_secs(30));
            }
            Chaos::PauseActive => {
                cluster.namenode(active).signal(libc::SIGSTOP);
                std::thread::sleep(Duration::from_millis(3_000 + rng.below(1_000)));
                cluster.namenode(active).signal(libc::SIGCONT);
                cluster.wait_state(active, "standby", Duration::from_secs(30));
            }
            Chaos::KillJournalnode => {
                let jn = rng.below(3) as usize;
                cluster.kill_journalnode(jn);
                std::thread::sleep(Duration::from_millis(1_000 + rng.below(2_000)));
                cluster.start_journalnode(jn);
            }
            Chaos::PauseJournalnode => {
                let jn = rng.below(3) as usize;
                cluster.journalnode(jn).signal(libc::SIGSTOP);
                std::thread::sleep(Duration::from_millis(1_000 + rng.below(2_000)));
                cluster.journalnode(jn).signal(libc::SIGCONT);
            }
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer thread");
    }
    // Quiescent: one active, one standby.
    let active = cluster.wait_active();
    cluster.wait_state(1 - active, "standby", Duration::from_secs(30));
    let acked = acked.lock().expect("lock").clone();
    eprintln!(
        "chaos: {} files acknowledged, {} attempts failed",
        acked.len(),
        failed.load(Ordering::Relaxed)
    );
    assert!(
        acked.len() >= 10,
        "the load made too little progress to mean anything"
    );
    let client = cluster.client();
    for (path, len, file_seed) in &acked {
        let got = cluster
            .block_on(read_file(&client, path))
            .unwrap_or_else(|e| panic!("acknowledged file {path} cannot be read: {e}"));
        assert!(
            got == test_bytes(*len, *file_seed),
            "acknowledged file {path} came back different ({} bytes, expected {len})",
            got.len()
        );
    }
    // A single writer per epoch: no epoch was won twice.
    let mut epochs = HashSet::new();
    for nn in 0..2 {
        for line in cluster.namenode_log(nn).lines() {
            if line.contains("this namenode is now active")
                && let Some(epoch) = line
                    .split("epoch=")
                    .nth(1)
                    .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            {
                assert!(
                    epochs.insert(epoch.to_string()),
                    "epoch {epoch} had two writers"
                );
            }
        }
    }
    assert!(
        epochs.len() >= 3,
        "expected several failovers, saw epochs {epochs:?}"
    );
    let _ = Instant::now();
}

/// The fsimages in a name directory, by txid.
fn image_txids(dir: &std::path::Path) -> Vec<u64> {
    let mut txids: Vec<u64> = std::fs::read_dir(dir.join("current"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix("fsimage_")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    txids.sort_unstable();
    txids
}

#[test]
fn the_standby_checkpoints_and_ships_the_image_to_the_active() {
    let cluster = HaCluster::builder()
        .datanodes(1)
        .conf("dfs.replication", "1")
        .conf("ha.standby_checkpoint_txns", "10")
        .conf("namenode.checkpoint_check_ms", "200")
        .start();
    let active = cluster.wait_active();
    let standby = 1 - active;
    for i in 0..15 {
        cluster.dfs(&["-mkdir", "-p", &format!("/ckpt/d{i}")]).ok();
    }
    let newest = |nn: usize| {
        image_txids(&cluster.path(&format!("nn{nn}")))
            .last()
            .copied()
            .unwrap_or(0)
    };
    cluster.wait_until(
        "a standby checkpoint in both namenodes' name dirs",
        Duration::from_secs(20),
        || newest(standby) >= 10 && newest(active) >= 10,
    );
    assert!(
        cluster
            .namenode_log(active)
            .contains("received a checkpoint from a standby")
    );
    // The active can restart from the shipped image plus the journal.
    let mut cluster = cluster;
    cluster.kill_namenode(standby);
    cluster.wait_state(active, "active", Duration::from_secs(5));
    cluster.kill_namenode(active);
    cluster.start_namenode(active);
    cluster.wait_state(active, "active", Duration::from_secs(30));
    cluster.dfs(&["-test", "-d", "/ckpt/d14"]).ok();
}

#[test]
fn initialize_shared_edits_turns_a_namenode_into_the_first_of_an_ha_pair() {
    use crate::harness::MiniCluster;
    let mut single = MiniCluster::builder().datanodes(1).replication(1).start();
    single.dfs(&["-mkdir", "-p", "/kept/dir"]).ok();
    single.dfs(&["-touchz", "/kept/file"]).ok();
    assert_eq!(single.stop_namenode_gracefully(), Some(0));
    let name_dir = single.name_dir();
    let jn_ports: Vec<u16> = (0..3).map(|_| crate::harness::ha::free_port()).collect();
    let nn_ports = [
        crate::harness::ha::free_port(),
        crate::harness::ha::free_port(),
    ];
    let ha_conf = vec![
        "ha.nameservice=ns".to_string(),
        format!(
            "ha.namenodes=nn0=127.0.0.1:{},nn1=127.0.0.1:{}",
            nn_ports[0], nn_ports[1]
        ),
        format!(
            "ha.shared_edits_dir=qjournal://{}/ns",
            jn_ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(";")
        ),
        "fs.default_fs=hdfs://ns".to_string(),
        "ha.namenode_id=nn0".to_string(),
        format!("namenode.name_dirs={}", name_dir.display()),
        format!("namenode.rpc_address=127.0.0.1:{}", nn_ports[0]),
        "namenode.safemode_extension_ms=0".to_string(),
        "client.failover_max_attempts=40".to_string(),
    ];
    let with_conf = |args: &[&str]| -> Vec<String> {
        let mut out: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        for kv in &ha_conf {
            out.push("-D".into());
            out.push(kv.clone());
        }
        out
    };
    let _journalnodes: Vec<_> = jn_ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let mut args = with_conf(&["journalnode"]);
            args.extend([
                "-D".to_string(),
                format!(
                    "journalnode.edits_dir={}",
                    single.path(&format!("jn{i}")).display()
                ),
                "-D".to_string(),
                format!("journalnode.rpc_address=127.0.0.1:{port}"),
            ]);
            crate::harness::spawn_daemon(single.dir.path(), &format!("jn{i}"), &args, "info")
        })
        .collect();
    for port in &jn_ports {
        single.wait_until("a journalnode listens", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok()
        });
    }
    let init = std::process::Command::new(crate::harness::rdfs_bin())
        .args(with_conf(&["namenode", "-initializeSharedEdits"]))
        .output()
        .expect("initializeSharedEdits");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let _namenode = crate::harness::spawn_daemon(
        single.dir.path(),
        "ha-nn0",
        &with_conf(&["namenode"]),
        "info",
    );
    // Generic options go right after the command name, as Hadoop wants.
    let rdfs = |args: &[&str]| {
        std::process::Command::new(crate::harness::rdfs_bin())
            .args(with_conf(&args[..1]))
            .args(&args[1..])
            .env("HADOOP_USER_NAME", "tester")
            .output()
            .expect("rdfs")
    };
    single.wait_until("nn0 to be active", Duration::from_secs(30), || {
        String::from_utf8_lossy(&rdfs(&["haadmin", "-getServiceState", "nn0"]).stdout).trim()
            == "active"
    });
    // Everything the namenode held before moved onto the journal with it.
    assert!(
        rdfs(&["dfs", "-test", "-d", "/kept/dir"]).status.success(),
        "initializeSharedEdits said: {}\nthe HA namenode logged:\n{}",
        String::from_utf8_lossy(&init.stdout),
        std::fs::read_to_string(single.path("ha-nn0.log")).unwrap_or_default()
    );
    assert!(rdfs(&["dfs", "-test", "-e", "/kept/file"]).status.success());
    let mkdir = rdfs(&["dfs", "-mkdir", "/written-in-ha"]);
    assert!(
        mkdir.status.success(),
        "{}",
        String::from_utf8_lossy(&mkdir.stderr)
    );
}

/// The recipe for divergent segments, on real processes: a segment
/// started everywhere; two journalnodes killed; an edit (`mkdir /a`) that
/// reaches only the third, which is then killed too; the first two back, a
/// new active, an acknowledged `mkdir /b` under the same txid; the third
/// back, and a roll. Before segments named their epoch, the third
/// journalnode finalized its own `/a` under that txid, and a namenode
/// reading through it applied it.
#[test]
fn an_edit_no_majority_took_is_never_finalized_or_applied() {
    let mut cluster = HaCluster::builder().datanodes(1).start();
    cluster.wait_active();
    let quick = |cluster: &HaCluster, args: &[&str]| {
        let mut all = vec!["-D", "client.failover_max_attempts=2"];
        all.extend_from_slice(args);
        cluster.dfs(&all)
    };
    assert_eq!(quick(&cluster, &["-mkdir", "/x"]).code, 0);
    let rolled = cluster.rdfs("dfsadmin", &["-rollEdits"]);
    assert_eq!(rolled.code, 0, "{}", rolled.stderr);
    cluster.kill_journalnode(0);
    cluster.kill_journalnode(1);
    let lost = quick(&cluster, &["-mkdir", "/a"]);
    assert_ne!(lost.code, 0, "one journalnode is not a majority");
    cluster.kill_journalnode(2);
    cluster.start_journalnode(0);
    cluster.start_journalnode(1);
    cluster.wait_active();
    let made = cluster.dfs(&["-mkdir", "/b"]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    cluster.start_journalnode(2);
    let rolled = cluster.rdfs("dfsadmin", &["-rollEdits"]);
    assert_eq!(rolled.code, 0, "{}", rolled.stderr);
    // A segment is finalized once all three are back with a roll.
    let rolled = cluster.rdfs("dfsadmin", &["-rollEdits"]);
    assert_eq!(rolled.code, 0, "{}", rolled.stderr);

    let mut copies: std::collections::BTreeMap<String, Vec<(usize, Vec<u8>)>> =
        std::collections::BTreeMap::new();
    for jn in 0..3 {
        for (name, bytes) in cluster.finalized_segments(jn) {
            copies.entry(name).or_default().push((jn, bytes));
        }
    }
    for (name, holders) in &copies {
        assert!(
            holders.windows(2).all(|w| w[0].1 == w[1].1),
            "finalized {name} differs between journalnodes {:?}",
            holders.iter().map(|(jn, _)| jn).collect::<Vec<_>>()
        );
    }
    // Whichever namenode serves next, after reading the journal from the
    // start, has /b and not /a.
    let active = cluster.wait_active();
    for serving in [active, 1 - active] {
        if serving != active {
            cluster.wait_state(serving, "standby", Duration::from_secs(30));
            cluster.kill_namenode(active);
            cluster.wait_state(serving, "active", Duration::from_secs(30));
        }
        let listing = cluster.dfs(&["-ls", "/"]);
        assert_eq!(listing.code, 0, "{}", listing.stderr);
        let out = listing.stdout();
        assert!(
            out.contains(" /b\n") && out.contains(" /x\n"),
            "nn{serving}: {out}"
        );
        assert!(
            !out.contains(" /a\n"),
            "nn{serving} applied the lost edit: {out}"
        );
    }
}
