//! `rdfs dfs` commands as users see them: output formats and exit codes.

use crate::harness::{MiniCluster, test_bytes, write_local};

#[test]
fn listing_stat_du_count_and_friends() {
    let cluster = MiniCluster::builder().start();
    cluster.dfs(&["-mkdir", "-p", "/w/sub/deeper"]).ok();
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", "/w/a.txt"], Some(b"hello\n"))
        .ok();
    cluster
        .rdfs_with_stdin(
            "dfs",
            &["-put", "-", "/w/b.bin"],
            Some(&test_bytes(1536, 1)),
        )
        .ok();

    let ls = cluster.dfs(&["-ls", "/w"]).stdout();
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(lines[0], "Found 3 items");
    assert!(
        lines[1].starts_with("-rw-r--r--   3 tester supergroup          6 2"),
        "{ls}"
    );
    assert!(lines[1].ends_with(" /w/a.txt"), "{ls}");
    assert!(
        lines[2].starts_with("-rw-r--r--   3 tester supergroup       1536 "),
        "{ls}"
    );
    assert!(
        lines[3].starts_with("drwxr-xr-x   - tester supergroup          0 "),
        "{ls}"
    );
    assert!(lines[3].ends_with(" /w/sub"), "{ls}");
    let human = cluster.dfs(&["-ls", "-h", "/w/b.bin"]).stdout();
    assert!(human.contains("      1.5 K "), "{human}");
    let dir_only = cluster.dfs(&["-ls", "-d", "/w"]).stdout();
    assert_eq!(dir_only.lines().count(), 1, "{dir_only}");
    let recursive = cluster.dfs(&["-ls", "-R", "/w"]).stdout();
    let names: Vec<&str> = recursive
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(names, ["/w/a.txt", "/w/b.bin", "/w/sub", "/w/sub/deeper"]);
    assert!(
        cluster.dfs(&["-ls", "/w/sub/deeper"]).stdout.is_empty(),
        "empty dir lists nothing"
    );
    let uri = cluster
        .dfs(&["-ls", &format!("hdfs://{}/w/sub", cluster.nn_addr)])
        .stdout();
    assert!(
        uri.contains(&format!(" hdfs://{}/w/sub/deeper", cluster.nn_addr)),
        "{uri}"
    );
    let glob = cluster.dfs(&["-ls", "-d", "/w/*.txt", "/w/?.bin"]).stdout();
    assert!(
        glob.contains("/w/a.txt") && glob.contains("/w/b.bin"),
        "{glob}"
    );

    let stat = cluster
        .dfs(&[
            "-stat",
            "%a|%A|%b|%F|%g|%n|%o|%r|%u|%z|%%",
            "/w/a.txt",
            "/w/sub",
        ])
        .stdout();
    assert_eq!(
        stat,
        "644|rw-r--r--|6|regular file|supergroup|a.txt|1048576|3|tester|z|%\n755|rwxr-xr-x|0|directory|supergroup|sub|0|0|tester|z|%\n"
    );
    let default_stat = cluster.dfs(&["-stat", "/w/a.txt"]).stdout();
    assert_eq!(
        default_stat.len(),
        "2026-01-01 00:00:00\n".len(),
        "{default_stat}"
    );

    let du = cluster.dfs(&["-du", "/w"]).stdout();
    assert_eq!(
        du,
        "6     18    /w/a.txt\n1536  4608  /w/b.bin\n0     0     /w/sub\n"
    );
    let du_s = cluster.dfs(&["-du", "-s", "-h", "-v", "/w"]).stdout();
    let header = "DISK_SPACE_CONSUMED_WITH_ALL_REPLICAS";
    assert_eq!(
        du_s,
        format!(
            "{:<5}  {header}  FULL_PATH_NAME\n{:<5}  {:<37}  /w\n",
            "SIZE", "1.5 K", "4.5 K"
        )
    );
    let count = cluster.dfs(&["-count", "/w", "/w/a.txt"]).stdout();
    assert_eq!(
        count,
        format!(
            "{:>12} {:>12} {:>18} /w\n{:>12} {:>12} {:>18} /w/a.txt\n",
            3, 2, 1542, 0, 1, 6
        )
    );
    let quota = cluster.dfs(&["-count", "-q", "/w"]).stdout();
    assert!(
        quota.starts_with(
            "        none             inf            none             inf            3"
        ),
        "{quota}"
    );

    assert_eq!(cluster.dfs(&["-tail", "/w/a.txt"]).stdout(), "hello\n");
    let tail = cluster.dfs(&["-tail", "/w/b.bin"]);
    assert_eq!(tail.stdout.len(), 1024);
    assert!(tail.stdout == test_bytes(1536, 1)[512..]);

    for (flag, path, code) in [
        ("-e", "/w", 0),
        ("-d", "/w", 0),
        ("-f", "/w", 1),
        ("-f", "/w/a.txt", 0),
        ("-z", "/w/a.txt", 1),
        ("-s", "/w/a.txt", 0),
        ("-e", "/nope", 1),
    ] {
        assert_eq!(
            cluster.dfs(&["-test", flag, path]).code,
            code,
            "-test {flag} {path}"
        );
    }
}

#[test]
fn copy_move_remove_and_permissions() {
    let cluster = MiniCluster::builder().start();
    let local = tempfile::tempdir().expect("tmp");
    let data = test_bytes(250_000, 2);
    let src = write_local(local.path(), "local.bin", &data);
    cluster.dfs(&["-mkdir", "/d"]).ok();
    // Into an existing directory, keeping the name; then -f replaces it.
    cluster
        .dfs(&["-copyFromLocal", src.to_str().expect("p"), "/d"])
        .ok();
    cluster
        .dfs(&["-put", "-f", src.to_str().expect("p"), "/d/local.bin"])
        .ok();
    assert!(cluster.dfs(&["-cat", "/d/local.bin"]).stdout == data);
    assert_eq!(
        cluster.dfs(&["-ls", "/d"]).stdout().lines().count(),
        2,
        "no _COPYING_ file is left behind"
    );

    cluster.dfs(&["-cp", "/d/local.bin", "/d/copy.bin"]).ok();
    assert!(cluster.dfs(&["-cat", "/d/copy.bin"]).stdout == data);
    cluster.dfs(&["-mkdir", "/e"]).ok();
    cluster.dfs(&["-mv", "/d/copy.bin", "/e"]).ok();
    assert_eq!(cluster.dfs(&["-test", "-e", "/e/copy.bin"]).code, 0);
    cluster.dfs(&["-mv", "/e/copy.bin", "/e/renamed.bin"]).ok();
    cluster.dfs(&["-cp", "/d", "/e"]).ok();
    assert!(cluster.dfs(&["-cat", "/e/d/local.bin"]).stdout == data);

    let out_dir = tempfile::tempdir().expect("tmp");
    cluster
        .dfs(&["-get", "/e", out_dir.path().to_str().expect("p")])
        .ok();
    assert!(std::fs::read(out_dir.path().join("e/renamed.bin")).expect("got") == data);
    assert!(std::fs::read(out_dir.path().join("e/d/local.bin")).expect("got") == data);

    cluster.dfs(&["-chmod", "-R", "go-rx", "/e"]).ok();
    assert_eq!(cluster.dfs(&["-stat", "%a %a", "/e"]).stdout(), "700 700\n");
    assert_eq!(
        cluster.dfs(&["-stat", "%a", "/e/renamed.bin"]).stdout(),
        "600\n"
    );
    cluster
        .dfs(&["-chmod", "u=rwx,g=rx", "/e/renamed.bin"])
        .ok();
    assert_eq!(
        cluster.dfs(&["-stat", "%A", "/e/renamed.bin"]).stdout(),
        "rwxr-x---\n"
    );
    cluster.dfs(&["-chown", "-R", "alice:staff", "/e"]).ok();
    assert_eq!(
        cluster.dfs(&["-stat", "%u:%g", "/e/d/local.bin"]).stdout(),
        "alice:staff\n"
    );
    cluster.dfs(&["-chgrp", "ops", "/e"]).ok();
    assert_eq!(
        cluster.dfs(&["-stat", "%u:%g", "/e"]).stdout(),
        "alice:ops\n"
    );

    let setrep = cluster.dfs(&["-setrep", "2", "/e"]);
    setrep.ok();
    assert_eq!(
        setrep.stdout(),
        "Replication 2 set: /e/d/local.bin\nReplication 2 set: /e/renamed.bin\n"
    );
    assert_eq!(
        cluster.dfs(&["-stat", "%r", "/e/renamed.bin"]).stdout(),
        "2\n"
    );

    let rm = cluster.dfs(&["-rm", "/d/local.bin"]);
    rm.ok();
    assert_eq!(rm.stdout(), "Deleted /d/local.bin\n");
    cluster.dfs(&["-rmdir", "/d"]).ok();
    assert_eq!(cluster.dfs(&["-rm", "-r", "/e"]).stdout(), "Deleted /e\n");
    assert_eq!(cluster.dfs(&["-rm", "-f", "/gone", "/gone*"]).code, 0);
    assert!(cluster.dfs(&["-ls", "/"]).stdout.is_empty());
}

/// Progress bars are for terminals: a piped large transfer prints nothing.
#[test]
fn large_transfers_are_silent_when_piped() {
    let cluster = MiniCluster::builder().block_size(8 * 1024 * 1024).start();
    let local = tempfile::tempdir().expect("tmp");
    let src = write_local(local.path(), "big", &test_bytes(20 * 1024 * 1024, 3));
    let put = cluster.dfs(&["-put", src.to_str().expect("p"), "/big"]);
    put.ok();
    assert!(
        put.stdout.is_empty() && put.stderr.is_empty(),
        "stdout: {} stderr: {}",
        put.stdout(),
        put.stderr
    );
    let dst = local.path().join("back");
    let get = cluster.dfs(&["-get", "/big", dst.to_str().expect("p")]);
    get.ok();
    assert!(
        get.stdout.is_empty() && get.stderr.is_empty(),
        "{}",
        get.stderr
    );
    assert!(std::fs::read(&dst).expect("back") == std::fs::read(&src).expect("src"));
}
