//! Bad input of every kind gets a clear error naming what was wrong, the
//! exit code HDFS uses, and loses nothing.

use crate::harness::{MiniCluster, test_bytes, write_local};

#[track_caller]
fn fails_with(run: crate::harness::Run, code: i32, stderr: &str) {
    assert_eq!(run.code, code, "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains(stderr),
        "expected {stderr:?} in stderr:\n{}",
        run.stderr
    );
}

#[test]
fn path_errors_read_like_hdfs() {
    let cluster = MiniCluster::builder().start();
    let local = tempfile::tempdir().expect("tmp");
    let original = test_bytes(70_000, 1);
    let src = write_local(local.path(), "f", &original);
    let src = src.to_str().expect("p");
    cluster.dfs(&["-put", src, "/file"]).ok();
    cluster.dfs(&["-mkdir", "-p", "/dir/sub"]).ok();

    // Put onto an existing file without -f: refused, the file untouched.
    let other = write_local(local.path(), "g", b"other");
    fails_with(
        cluster.dfs(&["-put", other.to_str().expect("p"), "/file"]),
        1,
        "put: `/file': File exists",
    );
    assert!(cluster.dfs(&["-cat", "/file"]).stdout == original);
    fails_with(
        cluster.rdfs_with_stdin("dfs", &["-put", "-", "/file"], Some(b"x")),
        1,
        "put: `/file': File exists",
    );
    assert!(cluster.dfs(&["-cat", "/file"]).stdout == original);

    // Missing paths.
    fails_with(
        cluster.dfs(&["-ls", "/nope"]),
        1,
        "ls: `/nope': No such file or directory",
    );
    fails_with(
        cluster.dfs(&["-cat", "/nope"]),
        1,
        "cat: `/nope': No such file or directory",
    );
    fails_with(
        cluster.dfs(&["-get", "/nope", local.path().join("x").to_str().expect("p")]),
        1,
        "get: `/nope': No such file or directory",
    );
    fails_with(
        cluster.dfs(&["-rm", "/nope"]),
        1,
        "rm: `/nope': No such file or directory",
    );
    fails_with(
        cluster.dfs(&["-stat", "/nope"]),
        1,
        "stat: `/nope': No such file or directory",
    );
    fails_with(
        cluster.dfs(&["-ls", "/nope*"]),
        1,
        "ls: `/nope*': No such file or directory",
    );
    // Errors do not stop the other arguments.
    let mixed = cluster.dfs(&["-cat", "/nope", "/file"]);
    fails_with(cluster.dfs(&["-cat", "/nope", "/file"]), 1, "cat: `/nope'");
    assert!(mixed.stdout == original);

    // mkdir where a file exists, and -p through a file.
    fails_with(
        cluster.dfs(&["-mkdir", "/file"]),
        1,
        "mkdir: `/file': Is not a directory",
    );
    fails_with(
        cluster.dfs(&["-mkdir", "-p", "/file/sub"]),
        1,
        "mkdir: /file (is not a directory)",
    );
    fails_with(
        cluster.dfs(&["-mkdir", "/dir"]),
        1,
        "mkdir: `/dir': File exists",
    );
    fails_with(
        cluster.dfs(&["-mkdir", "/a/b"]),
        1,
        &format!(
            "mkdir: `hdfs://{}/a': No such file or directory",
            cluster.nn_addr
        ),
    );
    fails_with(
        cluster.dfs(&["-put", src, "/file/under"]),
        1,
        "put: /file (is not a directory)",
    );

    // Rename into its own subtree.
    fails_with(
        cluster.dfs(&["-mv", "/dir", "/dir/sub"]),
        1,
        "mv: `/dir' to `/dir/sub/dir': is a subdirectory of itself",
    );
    fails_with(
        cluster.dfs(&["-mv", "/dir", "/dir/sub/new"]),
        1,
        "is a subdirectory of itself",
    );
    fails_with(
        cluster.dfs(&["-cp", "/dir", "/dir/sub"]),
        1,
        "cp: `/dir' to `/dir/sub/dir': is a subdirectory of itself",
    );
    assert_eq!(
        cluster.dfs(&["-test", "-d", "/dir/sub"]).code,
        0,
        "the tree is intact"
    );

    // Directories where files are expected, and the reverse.
    fails_with(
        cluster.dfs(&["-rm", "/dir"]),
        1,
        "rm: `/dir': Is a directory",
    );
    fails_with(
        cluster.dfs(&["-rmdir", "/dir"]),
        1,
        "rmdir: `/dir': Directory is not empty",
    );
    fails_with(
        cluster.dfs(&["-rmdir", "/file"]),
        1,
        "rmdir: `/file': Is not a directory",
    );
    fails_with(
        cluster.dfs(&["-cat", "/dir"]),
        1,
        "cat: `/dir': Is a directory",
    );
    fails_with(
        cluster.dfs(&["-touchz", "/file"]),
        1,
        "touchz: `/file': Not a zero-length file",
    );

    // Relative paths resolve under /user/<name>, which does not exist yet.
    fails_with(
        cluster.dfs(&["-ls"]),
        1,
        "ls: `.': No such file or directory",
    );
    fails_with(
        cluster.dfs(&["-cat", "relative/file"]),
        1,
        "cat: `relative/file': No such file or directory",
    );
    cluster.dfs(&["-mkdir", "-p", "/user/tester"]).ok();
    cluster.dfs(&["-put", src, "rel"]).ok();
    assert!(cluster.dfs(&["-cat", "/user/tester/rel"]).stdout == original);
    assert!(cluster.dfs(&["-ls"]).stdout().trim_end().ends_with(" rel"));

    // Malformed URIs and paths.
    fails_with(
        cluster.dfs(&["-ls", "s3://bucket/key"]),
        1,
        "ls: No FileSystem for scheme \"s3\"",
    );
    fails_with(
        cluster.dfs(&["-ls", "hdfs://127.0.0.1:notaport/x"]),
        1,
        "Invalid port",
    );
    fails_with(
        cluster.dfs(&["-ls", "hdfs://:8020/x"]),
        1,
        "Incomplete HDFS URI, no host",
    );
    fails_with(
        cluster.dfs(&["-mkdir", "/bad:name"]),
        1,
        "Invalid path name",
    );

    // Usage errors: dash-prefixed, usage printed, exit 255.
    fails_with(
        cluster.dfs(&["-rm", "-rf", "/dir"]),
        255,
        "-rm: Illegal option -rf",
    );
    fails_with(
        cluster.dfs(&["-mkdir"]),
        255,
        "-mkdir: Not enough arguments: expected 1 but got 0",
    );
    fails_with(
        cluster.dfs(&["-frobnicate"]),
        255,
        "-frobnicate: Unknown command",
    );
    fails_with(
        cluster.dfs(&["-chmod", "999", "/file"]),
        255,
        "-chmod: chmod : mode '999' does not match the expected pattern.",
    );
    fails_with(
        cluster.dfs(&["-setrep", "x", "/file"]),
        255,
        "-setrep: For input string: \"x\"",
    );
    fails_with(
        cluster.dfs(&["-test", "/file"]),
        255,
        "-test: No test flag given",
    );
    fails_with(
        cluster.dfs(&["-test", "-x", "/file"]),
        255,
        "-test: Illegal option -x",
    );
    let usage = cluster.dfs(&["-mkdir"]);
    assert!(
        usage
            .stderr
            .contains("Usage: rdfs dfs [generic options] -mkdir [-p] <path> ..."),
        "{}",
        usage.stderr
    );
    assert!(
        cluster.dfs(&["-cat", "/file"]).stdout == original,
        "nothing was lost along the way"
    );
}

#[test]
fn unreachable_namenode_and_bad_config_are_named() {
    let cluster = MiniCluster::builder().datanodes(1).start();
    let run = cluster.rdfs(
        "dfs",
        &[
            "-fs",
            "hdfs://127.0.0.1:1",
            "-D",
            "client.failover_max_attempts=3",
            "-ls",
            "/",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("ls: Call to 127.0.0.1:1 failed"),
        "{}",
        run.stderr
    );
    let run = cluster.rdfs("dfs", &["-D", "dfs.block_size=12q", "-ls", "/"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("12q"), "{}", run.stderr);
    let run = cluster.rdfs("dfs", &["-conf", "/no/such/file.toml", "-ls", "/"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("/no/such/file.toml not found"),
        "{}",
        run.stderr
    );
}

/// Runs `rdfs namenode <args>` to completion: (exit code, stderr).
fn namenode(args: &[&str]) -> (Option<i32>, String) {
    let run = std::process::Command::new(crate::harness::rdfs_bin())
        .arg("namenode")
        .args(args)
        .output()
        .expect("run");
    (
        run.status.code(),
        String::from_utf8_lossy(&run.stderr).into_owned(),
    )
}

#[test]
fn namenode_refuses_to_start_unformatted_or_twice_and_to_reformat() {
    let cluster = MiniCluster::builder().datanodes(0).start();
    let empty = tempfile::tempdir().expect("tmp");
    let empty_dirs = format!("namenode.name_dirs={}", empty.path().display());
    let (code, stderr) = namenode(&["-D", &empty_dirs, "-D", "namenode.rpc_address=127.0.0.1:0"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("not formatted") && stderr.contains("rdfs namenode -format"),
        "{stderr}"
    );

    let live_dirs = format!("namenode.name_dirs={}", cluster.name_dir().display());
    let (code, stderr) = namenode(&["-format", "-D", &live_dirs]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("is not empty") && stderr.contains("-force"),
        "{stderr}"
    );

    let (code, stderr) = namenode(&["-D", &live_dirs, "-D", "namenode.rpc_address=127.0.0.1:0"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("another namenode is using it"), "{stderr}");
}
