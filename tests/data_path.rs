//! Files in and out through the real pipeline: block layout, replica
//! placement, byte-exact reads.

use std::time::Duration;

use crate::harness::{MiniCluster, test_bytes, write_local};

const MIB: u64 = 1024 * 1024;

/// The issue's first done-when, scaled down: a multi-block file lands as
/// full-size blocks with 3 replicas each on 3 different datanodes, and
/// comes back byte for byte; -ls and -stat report its shape.
#[test]
fn multi_block_put_get_with_three_replicas_on_distinct_datanodes() {
    let cluster = MiniCluster::builder().block_size(MIB).start();
    let local = tempfile::tempdir().expect("tmp");
    let data = test_bytes((3 * MIB + 12345) as usize, 1);
    let src = write_local(local.path(), "data.bin", &data);

    cluster
        .dfs(&["-put", src.to_str().expect("path"), "/data.bin"])
        .ok();

    let fsck = cluster.rdfs("fsck", &["/", "-files", "-blocks", "-locations"]);
    fsck.ok();
    let report = fsck.stdout();
    assert!(
        report.contains("/data.bin 3158073 bytes, replicated: replication=3, 4 block(s):  OK"),
        "{report}"
    );
    let block_lines: Vec<&str> = report.lines().filter(|l| l.contains(":blk_")).collect();
    assert_eq!(block_lines.len(), 4, "{report}");
    for (i, line) in block_lines.iter().enumerate() {
        let expected_len = if i < 3 { MIB } else { 12345 };
        assert!(
            line.contains(&format!("len={expected_len} Live_repl=3")),
            "{line}"
        );
        let mut nodes: Vec<&str> = line
            .split("DatanodeInfoWithStorage[")
            .skip(1)
            .map(|s| s.split(',').next().unwrap_or(""))
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        assert_eq!(
            nodes.len(),
            3,
            "replicas must be on three different datanodes: {line}"
        );
    }
    assert!(
        report.contains("The filesystem under path '/' is HEALTHY"),
        "{report}"
    );

    let out = local.path().join("back.bin");
    cluster
        .dfs(&["-get", "/data.bin", out.to_str().expect("path")])
        .ok();
    assert!(
        std::fs::read(&out).expect("read back") == data,
        "bytes read back differ"
    );
    let cat = cluster.dfs(&["-cat", "/data.bin"]);
    cat.ok();
    assert!(cat.stdout == data, "-cat bytes differ");

    let ls = cluster.dfs(&["-ls", "/"]).stdout();
    assert!(ls.starts_with("Found 1 items\n"), "{ls}");
    let line = ls.lines().nth(1).expect("entry");
    assert!(
        line.starts_with("-rw-r--r--   3 tester supergroup    3158073 "),
        "{line}"
    );
    assert!(line.ends_with(" /data.bin"), "{line}");
    let stat = cluster
        .dfs(&["-stat", "%b %n %o %r %F %u %g", "/data.bin"])
        .stdout();
    assert_eq!(
        stat,
        format!("3158073 data.bin {MIB} 3 regular file tester supergroup\n")
    );

    // Each block's replicas are whole files on disk with checksums beside them.
    for block_id in cluster.block_ids("/data.bin") {
        let replicas = cluster.replica_files(block_id);
        assert_eq!(replicas.len(), 3, "block {block_id}");
        for (_, block, meta) in replicas {
            let len = std::fs::metadata(&block).expect("block file").len();
            let meta_len = std::fs::metadata(&meta).expect("meta file").len();
            assert_eq!(meta_len, 7 + 4 * len.div_ceil(512), "{}", meta.display());
        }
    }
}

#[test]
fn stdin_put_empty_files_and_per_file_block_size() {
    let cluster = MiniCluster::builder().start();
    let data = test_bytes(300_000, 2);
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", "/from-stdin"], Some(&data))
        .ok();
    assert!(cluster.dfs(&["-cat", "/from-stdin"]).stdout == data);

    cluster.dfs(&["-touchz", "/empty"]).ok();
    assert_eq!(cluster.dfs(&["-stat", "%b %r", "/empty"]).stdout(), "0 3\n");
    assert!(cluster.dfs(&["-cat", "/empty"]).stdout.is_empty());

    // A block size of its own, through Hadoop's key name.
    let local = tempfile::tempdir().expect("tmp");
    let src = write_local(local.path(), "f", &test_bytes(200_000, 3));
    cluster
        .dfs(&[
            "-D",
            "dfs.blocksize=65536",
            "-put",
            src.to_str().expect("path"),
            "/small-blocks",
        ])
        .ok();
    assert_eq!(cluster.block_ids("/small-blocks").len(), 4);
    assert_eq!(
        cluster.dfs(&["-stat", "%o", "/small-blocks"]).stdout(),
        "65536\n"
    );
}

/// More replicas than live datanodes: the write succeeds with what exists
/// and the block is reported under-replicated, not refused.
#[test]
fn replication_above_live_datanodes_is_served_and_reported() {
    let cluster = MiniCluster::builder().datanodes(2).start();
    let data = test_bytes(100_000, 4);
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", "/three"], Some(&data))
        .ok();
    assert!(cluster.dfs(&["-cat", "/three"]).stdout == data);
    let fsck = cluster.rdfs("fsck", &["/three", "-files"]).stdout();
    assert!(
        fsck.contains("Target Replicas is 3 but found 2 live replica(s)"),
        "{fsck}"
    );
    assert!(
        fsck.contains("The filesystem under path '/three' is HEALTHY"),
        "{fsck}"
    );
    assert_eq!(cluster.report_value("Under replicated blocks"), 1);
}

/// The namespace survives a namenode restart (the edit log is replayed) and
/// the datanodes find the new namenode by themselves.
#[test]
fn namenode_restart_keeps_files_readable() {
    let mut cluster = MiniCluster::builder().start();
    let data = test_bytes(2_500_000, 5);
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", "/dir/kept"], Some(&data))
        .ok();
    cluster.dfs(&["-mkdir", "-p", "/x/y"]).ok();
    cluster.dfs(&["-mv", "/x", "/dir"]).ok();
    cluster.dfs(&["-chmod", "700", "/dir/kept"]).ok();
    cluster.stop_namenode();
    cluster.start_namenode();
    cluster.wait_live_datanodes(3);
    cluster.wait_until("blocks reported again", Duration::from_secs(20), || {
        cluster.dfs(&["-cat", "/dir/kept"]).stdout == data
    });
    let ls = cluster.dfs(&["-ls", "-R", "/dir"]).stdout();
    assert!(
        ls.contains("-rwx------   3 tester supergroup    2500000 "),
        "{ls}"
    );
    assert!(ls.contains(" /dir/x/y\n"), "{ls}");
}
