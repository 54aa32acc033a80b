//! The cluster heals itself: dead datanodes, replication changes,
//! decommissioning, racks and the balancer, with short intervals.

use std::time::{Duration, Instant};

use crate::harness::{MiniCluster, Tmpfs, test_bytes};

/// Intervals short enough for tests: the monitor runs every 200 ms, a
/// silent datanode is dead after 4 s.
fn healing_cluster(datanodes: usize) -> crate::harness::Builder {
    MiniCluster::builder()
        .datanodes(datanodes)
        .conf("namenode.replication_interval_ms", "200")
        .conf("namenode.dead_interval_ms", "4000")
        .conf("namenode.decommission_interval_ms", "300")
        .conf("namenode.pending_replication_timeout_ms", "15000")
}

fn put(cluster: &MiniCluster, path: &str, bytes: &[u8]) {
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", path], Some(bytes))
        .ok();
}

fn cat_equals(cluster: &MiniCluster, path: &str, bytes: &[u8]) {
    let cat = cluster.dfs(&["-cat", path]);
    cat.ok();
    assert!(cat.stdout == bytes, "{path} read back different bytes");
}

/// Done-when 1 and 6: a datanode holding replicas is SIGKILLed; within the
/// dead interval plus a few seconds every block has 3 live replicas again
/// and fsck says HEALTHY. Prints `dfsadmin -report` and fsck for the record.
#[test]
fn dead_datanode_replicas_are_restored() {
    let mut cluster = healing_cluster(4).start();
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("/data/f{i}"),
                test_bytes(2_500_000 + i * 700_000, 40 + i as u64),
            )
        })
        .collect();
    cluster.dfs(&["-mkdir", "/data"]).ok();
    for (path, bytes) in &files {
        put(&cluster, path, bytes);
    }
    cluster.wait_until(
        "3 replicas of every block on disk",
        Duration::from_secs(30),
        || {
            files
                .iter()
                .all(|(p, _)| cluster.replica_holders(p).iter().all(|h| h.len() == 3))
        },
    );
    // The datanode with the most replicas dies.
    let mut held = [0usize; 4];
    let mut lost_bytes = 0u64;
    for (path, _) in &files {
        for id in cluster.block_ids(path) {
            for (dn, block, _) in cluster.replica_files(id) {
                held[dn] += 1;
                let _ = block;
            }
        }
    }
    let victim = (0..4).max_by_key(|&i| held[i]).expect("a datanode");
    for (path, _) in &files {
        for id in cluster.block_ids(path) {
            for (dn, block, _) in cluster.replica_files(id) {
                if dn == victim {
                    lost_bytes += std::fs::metadata(&block).map(|m| m.len()).unwrap_or(0);
                }
            }
        }
    }
    let killed = Instant::now();
    cluster.kill_datanode(victim);
    cluster.wait_until(
        "the datanode to be declared dead",
        Duration::from_secs(20),
        || {
            cluster
                .rdfs("dfsadmin", &["-report"])
                .stdout()
                .contains("Dead datanodes (1):")
        },
    );
    let dead = Instant::now();
    let fsck = {
        let mut found = None;
        cluster.wait_until(
            "fsck HEALTHY with 3 live replicas per block",
            Duration::from_secs(30),
            || {
                found = cluster.fsck_all_blocks_have("/", 3);
                found.is_some()
            },
        );
        found.unwrap_or_default()
    };
    let healed = Instant::now();
    for (path, bytes) in &files {
        cat_equals(&cluster, path, bytes);
        // The dead datanode's files are still on its disk; count the others.
        assert!(
            cluster.replica_holders(path).iter().all(|h| h
                .iter()
                .filter(|&&dn| dn != victim)
                .count()
                == 3),
            "every block of {path} has 3 replicas on the survivors"
        );
    }
    let report = cluster.rdfs("dfsadmin", &["-report"]);
    let report = report.stdout();
    assert!(report.contains("Under replicated blocks: 0"), "{report}");
    assert!(report.contains("Missing blocks: 0"), "{report}");
    assert!(report.contains("Live datanodes (3):"), "{report}");
    assert!(report.contains("Dead datanodes (1):"), "{report}");
    let rate = lost_bytes as f64 / 1e6 / healed.duration_since(dead).as_secs_f64();
    eprintln!(
        "re-replicated {lost_bytes} bytes: dead after {:.1} s, healthy {:.1} s later ({rate:.1} MB/s, debug build)",
        dead.duration_since(killed).as_secs_f64(),
        healed.duration_since(dead).as_secs_f64()
    );
    eprintln!("--- rdfs dfsadmin -report ---\n{report}");
    eprintln!("--- rdfs fsck / -files -blocks -locations ---\n{fsck}");
}

/// Done-when 3: -setrep 2 then 4 converges both ways, and -w waits for it.
#[test]
fn setrep_converges_both_ways() {
    let cluster = healing_cluster(4).start();
    let data = test_bytes(2_600_000, 7);
    put(&cluster, "/f", &data);
    cluster.wait_until("3 replicas on disk", Duration::from_secs(30), || {
        cluster.replica_holders("/f").iter().all(|h| h.len() == 3)
    });

    let down = cluster.dfs(&["-setrep", "-w", "2", "/f"]);
    down.ok();
    let out = down.stdout();
    assert!(out.contains("Replication 2 set: /f"), "{out}");
    assert!(
        out.contains("Waiting for /f ...") && out.trim_end().ends_with("done"),
        "{out}"
    );
    let located = cluster.block_on(cluster.client().get_block_locations("/f", 0, u64::MAX));
    let located = located.expect("locations");
    assert!(
        located.blocks.iter().all(|b| b.locations.len() == 2),
        "-w returned early"
    );
    cluster.wait_until(
        "excess replica files deleted",
        Duration::from_secs(20),
        || cluster.replica_holders("/f").iter().all(|h| h.len() == 2),
    );
    cat_equals(&cluster, "/f", &data);

    let up = cluster.dfs(&["-setrep", "-w", "4", "/f"]);
    up.ok();
    assert!(up.stdout().trim_end().ends_with("done"), "{}", up.stdout());
    assert!(cluster.replica_holders("/f").iter().all(|h| h.len() == 4));
    assert!(cluster.fsck_all_blocks_have("/f", 4).is_some());
    cat_equals(&cluster, "/f", &data);

    // Out-of-range factors are refused and change nothing.
    let zero = cluster.dfs(&["-setrep", "0", "/f"]);
    assert_ne!(zero.code, 0);
    assert!(
        zero.stderr.contains("replication must be >= 1"),
        "{}",
        zero.stderr
    );
    let huge = cluster.dfs(&["-setrep", "600", "/f"]);
    assert_ne!(huge.code, 0);
    assert!(
        huge.stderr.contains("600") && huge.stderr.contains("512"),
        "{}",
        huge.stderr
    );
    assert!(cluster.fsck_all_blocks_have("/f", 4).is_some());
}

/// Done-when 4: a decommissioning datanode keeps serving while its
/// replicas are copied elsewhere, is reported Decommissioned only then, and
/// can be stopped with nothing under-replicated. Decommissioning so many
/// that replication cannot be met waits and says so.
#[test]
fn decommissioning_rehomes_every_replica_first() {
    let scratch = tempfile::tempdir().expect("tmp");
    let exclude = scratch.path().join("exclude");
    std::fs::write(&exclude, "").expect("exclude file");
    let mut cluster = healing_cluster(4)
        .conf(
            "namenode.hosts_exclude_file",
            &exclude.display().to_string(),
        )
        .start();
    let data = test_bytes(4_200_000, 11);
    put(&cluster, "/d", &data);
    cluster.wait_until("3 replicas on disk", Duration::from_secs(30), || {
        cluster.replica_holders("/d").iter().all(|h| h.len() == 3)
    });
    let holders = cluster.replica_holders("/d");
    let victim = (0..4)
        .max_by_key(|dn| holders.iter().filter(|h| h.contains(dn)).count())
        .expect("victim");
    let addr = cluster.datanode_addr(victim);
    std::fs::write(&exclude, format!("{addr}\n")).expect("exclude");
    let refresh = cluster.rdfs("dfsadmin", &["-refreshNodes"]);
    refresh.ok();
    assert!(
        refresh.stdout().contains("Refresh nodes successful"),
        "{}",
        refresh.stdout()
    );

    // While decommissioning, reads go on.
    cat_equals(&cluster, "/d", &data);
    cluster.wait_until(
        "the datanode to be Decommissioned",
        Duration::from_secs(30),
        || {
            let report = cluster.rdfs("dfsadmin", &["-report"]).stdout();
            report.split("\n\n").any(|section| {
                section.contains(&addr) && section.contains("Decommission Status : Decommissioned")
            })
        },
    );
    // Reported Decommissioned only once every block has 3 replicas elsewhere.
    for holders in cluster.replica_holders("/d") {
        let elsewhere = holders.iter().filter(|&&dn| dn != victim).count();
        assert!(
            elsewhere >= 3,
            "a block has {elsewhere} replicas off the decommissioned node"
        );
    }
    cluster.kill_datanode(victim);
    cat_equals(&cluster, "/d", &data);
    assert!(cluster.fsck_all_blocks_have("/d", 3).is_some());

    // Three datanodes left for replication 3: decommissioning another one
    // cannot finish; it waits and says why, and can be cancelled.
    let second = (0..4).find(|&dn| dn != victim).expect("another");
    let second_addr = cluster.datanode_addr(second);
    std::fs::write(&exclude, format!("{addr}\n{second_addr}\n")).expect("exclude");
    cluster.rdfs("dfsadmin", &["-refreshNodes"]).ok();
    cluster.wait_until(
        "the namenode to say decommissioning waits",
        Duration::from_secs(20),
        || cluster.namenode_log().contains("decommissioning waits"),
    );
    std::thread::sleep(Duration::from_secs(1));
    let report = cluster
        .rdfs("dfsadmin", &["-report", "-decommissioning"])
        .stdout();
    assert!(
        report.contains("Decommissioning datanodes (1):"),
        "{report}"
    );
    assert!(
        report.contains("Decommission Status : Decommission in progress"),
        "{report}"
    );
    std::fs::write(&exclude, format!("{addr}\n")).expect("exclude");
    cluster.rdfs("dfsadmin", &["-refreshNodes"]).ok();
    let report = cluster
        .rdfs("dfsadmin", &["-report", "-decommissioning"])
        .stdout();
    assert!(
        report.contains("Decommissioning datanodes (0):"),
        "{report}"
    );
    cat_equals(&cluster, "/d", &data);
}

/// Racks from a topology table: after the namenode learns that the
/// replicas of some blocks share a rack, fsck reports them mis-replicated
/// and the monitor spreads them over both racks.
#[test]
fn mis_replicated_blocks_are_spread_over_racks() {
    let scratch = tempfile::tempdir().expect("tmp");
    let topology = scratch.path().join("topology");
    std::fs::write(&topology, "").expect("topology");
    let mut cluster = healing_cluster(4)
        .replication(2)
        .conf("namenode.topology_file", &topology.display().to_string())
        .start();
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("/r{i}"), test_bytes(1_800_000, 90 + i)))
        .collect();
    for (path, bytes) in &files {
        put(&cluster, path, bytes);
    }
    let mut holders = Vec::new();
    cluster.wait_until("2 replicas on disk", Duration::from_secs(30), || {
        holders = files
            .iter()
            .flat_map(|(p, _)| cluster.replica_holders(p))
            .collect();
        holders.iter().all(|h| h.len() == 2)
    });
    // Put the two datanodes of the first block on one rack: that block
    // (at least) now violates the policy.
    let (a, b) = (holders[0][0], holders[0][1]);
    let table: String = (0..4)
        .map(|dn| {
            let rack = if dn == a || dn == b {
                "/rack1"
            } else {
                "/rack2"
            };
            format!("{} {rack}\n", cluster.datanode_addr(dn))
        })
        .collect();
    std::fs::write(&topology, table).expect("topology");
    cluster.stop_namenode();
    cluster.start_namenode();
    cluster.wait_live_datanodes(4);
    cluster.wait_until(
        "blocks spread over both racks",
        Duration::from_secs(30),
        || cluster.fsck_all_blocks_have("/", 2).is_some(),
    );
    let fsck = cluster
        .rdfs("fsck", &["/", "-files", "-blocks", "-racks"])
        .stdout();
    assert!(fsck.contains("Number of racks:\t\t2"), "{fsck}");
    for line in fsck.lines().filter(|l| l.contains(" len=")) {
        assert!(
            line.contains("/rack1/") && line.contains("/rack2/"),
            "a block is not on both racks: {line}"
        );
    }
    for (path, bytes) in &files {
        cat_equals(&cluster, path, bytes);
    }
}

/// Done-when 5: after an empty datanode joins, the balancer brings every
/// datanode within the threshold of the average utilization. Each datanode
/// gets its own small tmpfs so utilization differs visibly.
#[test]
fn balancer_evens_out_a_new_datanode() {
    let mut cluster = healing_cluster(0).start();
    let mut mounts = Vec::new();
    for dn in 0..3 {
        mounts.push(Tmpfs::mount(cluster.path(&format!("datanode{dn}")), "64m"));
        cluster.add_datanode();
    }
    cluster.wait_live_datanodes(3);
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("/b{i}"), test_bytes(7_000_000, 300 + i)))
        .collect();
    for (path, bytes) in &files {
        put(&cluster, path, bytes);
    }
    mounts.push(Tmpfs::mount(cluster.path("datanode3"), "64m"));
    cluster.add_datanode();
    cluster.wait_live_datanodes(4);
    // Wait for the heartbeats to carry every node's usage.
    std::thread::sleep(Duration::from_secs(1));

    let run = cluster.rdfs("balancer", &["-threshold", "5"]);
    run.ok();
    let out = run.stdout();
    assert!(out.contains("The cluster is balanced. Exiting..."), "{out}");
    let client = cluster.client();
    let nodes = cluster
        .block_on(client.datanode_report(rdfs_proto::DatanodeReportType::DatanodeReportLive))
        .expect("report");
    let used: u64 = nodes.iter().map(|n| n.dfs_used).sum();
    let capacity: u64 = nodes.iter().map(|n| n.capacity).sum();
    let average = used as f64 * 100.0 / capacity as f64;
    for node in &nodes {
        let util = node.dfs_used as f64 * 100.0 / node.capacity as f64;
        assert!(
            (util - average).abs() <= 5.0,
            "{} is at {util:.1}%, the average is {average:.1}%\n{out}",
            node.id.xfer_addr()
        );
    }
    let newcomer = cluster.datanode_addr(3);
    assert!(
        nodes
            .iter()
            .any(|n| n.id.xfer_addr() == newcomer && n.dfs_used > 0),
        "the new datanode received replicas"
    );
    for (path, bytes) in &files {
        cat_equals(&cluster, path, bytes);
    }
    assert!(cluster.fsck_all_blocks_have("/", 3).is_some());
    drop(cluster);
    drop(mounts);
}

/// The replica files of every block of `path` hold exactly the file's bytes.
fn replicas_match(cluster: &MiniCluster, path: &str, data: &[u8], block_size: usize) -> bool {
    cluster
        .block_ids(path)
        .into_iter()
        .enumerate()
        .all(|(i, id)| {
            let start = i * block_size;
            let expected = &data[start..(start + block_size).min(data.len())];
            let files = cluster.replica_files(id);
            files.len() == 3
                && files
                    .iter()
                    .all(|(_, block, _)| std::fs::read(block).is_ok_and(|b| b == expected))
        })
}

/// Done-when 2: a block file deleted by hand (directory scanner) and one
/// with flipped bytes (block scanner) are both found and replaced from good
/// copies, in a 3-datanode cluster where the damaged nodes must take the
/// new copies themselves, and no read fails meanwhile.
#[test]
fn scanners_find_and_repair_damaged_replicas() {
    let cluster = healing_cluster(3)
        .conf("datanode.scan_period_ms", "1000")
        .conf("datanode.scan_bandwidth_per_volume", "1g")
        .conf("datanode.directory_scan_interval_ms", "1000")
        .start();
    let data = test_bytes(2_500_000, 77);
    put(&cluster, "/s", &data);
    cluster.wait_until("3 good replicas on disk", Duration::from_secs(30), || {
        replicas_match(&cluster, "/s", &data, 1 << 20)
    });
    let ids = cluster.block_ids("/s");
    let (_, flipped, _) = cluster.replica_files(ids[0]).remove(0);
    let mut bytes = std::fs::read(&flipped).expect("read replica");
    bytes[1000] ^= 0xff;
    bytes[500_000] ^= 0x55;
    std::fs::write(&flipped, &bytes).expect("flip bytes");
    let (_, deleted, _) = cluster.replica_files(ids[1]).remove(1);
    std::fs::remove_file(&deleted).expect("delete block file");

    let mut reads = 0;
    cluster.wait_until("both replicas repaired", Duration::from_secs(60), || {
        cat_equals(&cluster, "/s", &data);
        reads += 1;
        replicas_match(&cluster, "/s", &data, 1 << 20)
    });
    assert!(reads > 0);
    assert!(cluster.fsck_all_blocks_have("/s", 3).is_some());
    let nn = cluster.namenode_log();
    assert!(
        nn.contains("replica marked corrupt"),
        "the scanner's report reached the namenode"
    );
}

/// A volume that fails is taken out of service while the datanode goes on
/// with its other one, and the replicas it held are copied elsewhere; a
/// second failure, beyond `failed_volumes_tolerated`, stops the datanode
/// with an error naming the volumes.
#[test]
fn failed_volume_is_dropped_and_its_replicas_restored() {
    let mut cluster = healing_cluster(3)
        .conf("datanode.failed_volumes_tolerated", "1")
        .conf("datanode.directory_scan_interval_ms", "500")
        .start();
    let data = test_bytes(4_000_000, 5);
    put(&cluster, "/v", &data);
    cluster.wait_until("3 good replicas on disk", Duration::from_secs(30), || {
        replicas_match(&cluster, "/v", &data, 1 << 20)
    });
    // Break datanode 0's second volume: its block tree and its rbw dir
    // become plain files, as after a disk fell out from under the mount.
    let break_volume = |root: &std::path::Path| {
        let pool = std::fs::read_dir(root.join("current"))
            .expect("current")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with("BP-"))
            .expect("block pool dir")
            .path()
            .join("current");
        std::fs::rename(pool.join("finalized"), pool.join("finalized.gone")).expect("move");
        std::fs::write(pool.join("finalized"), b"not a directory").expect("file");
        std::fs::remove_dir_all(pool.join("rbw")).expect("rbw");
        std::fs::write(pool.join("rbw"), b"not a directory").expect("file");
    };
    let volumes = cluster.data_dirs(0);
    break_volume(&volumes[1]);
    cluster.wait_until(
        "the namenode to see the failed volume",
        Duration::from_secs(30),
        || cluster.datanode(0).log_text().contains("volume failed"),
    );
    cluster.wait_until(
        "every block back at 3 replicas",
        Duration::from_secs(60),
        || cluster.fsck_all_blocks_have("/v", 3).is_some(),
    );
    cat_equals(&cluster, "/v", &data);
    assert!(
        cluster.datanodes[0]
            .as_mut()
            .expect("running")
            .wait_exit(Duration::from_millis(100))
            .is_none(),
        "one failed volume is tolerated"
    );

    break_volume(&volumes[0]);
    let code = cluster.datanodes[0]
        .as_mut()
        .expect("running")
        .wait_exit(Duration::from_secs(30));
    assert!(
        code.is_some_and(|c| c != 0),
        "the datanode stops with an error"
    );
    let log = cluster.datanode(0).log_text();
    assert!(
        log.contains("too many failed volumes") || log.contains("no volume"),
        "{log}"
    );
}
