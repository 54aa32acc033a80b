//! Daemon life cycle: graceful shutdown on SIGTERM, addresses on port 0.

use std::time::Duration;

use crate::harness::MiniCluster;

#[test]
fn sigterm_stops_daemons_cleanly_and_finalizes_the_edit_log() {
    let mut cluster = MiniCluster::builder().datanodes(1).replication(1).start();
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", "/kept"], Some(b"survives"))
        .ok();

    let mut datanode = cluster.datanodes[0].take().expect("datanode");
    datanode.signal(libc::SIGTERM);
    assert_eq!(
        datanode.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        datanode.log_text()
    );

    let mut namenode = cluster.namenode.take().expect("namenode");
    namenode.signal(libc::SIGTERM);
    assert_eq!(
        namenode.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        namenode.log_text()
    );
    let current = cluster.name_dir().join("current");
    let names: Vec<String> = std::fs::read_dir(&current)
        .expect("current dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("edits_inprogress_")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("edits_")), "{names:?}");
    assert!(
        names.contains(&"fsimage_0000000000000000000".to_string()),
        "{names:?}"
    );

    // Everything comes back.
    cluster.start_namenode();
    cluster.start_datanode(0);
    cluster.wait_live_datanodes(1);
    cluster.wait_until(
        "the file to be readable again",
        Duration::from_secs(20),
        || cluster.dfs(&["-cat", "/kept"]).stdout == b"survives",
    );
}
