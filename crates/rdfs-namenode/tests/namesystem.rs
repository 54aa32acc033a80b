//! The namesystem's HDFS semantics, in process, with an in-memory journal:
//! what each operation returns or refuses, and that replaying the journal
//! rebuilds exactly the same namespace.

use std::sync::Arc;

use rdfs_common::ExceptionKind;
use rdfs_common::protocol::{DatanodeId, ExtendedBlock};
use rdfs_namenode::edit_log::{Journal, MemoryJournal};
use rdfs_namenode::namesystem::{
    Namesystem, NamesystemConfig, Registration, ReplicaEvent, SafeModeAction,
};

mod common;

use common::{caller, register};

/// The common set-up, with two entries per listing (so paging shows) and
/// at most 100 deletions per heartbeat.
fn config() -> NamesystemConfig {
    NamesystemConfig {
        listing_limit: 2,
        invalidate_limit: 100,
        ..common::config()
    }
}

fn namesystem(journal: Arc<MemoryJournal>) -> Namesystem {
    common::namesystem_with(journal, config())
}

fn kind<T: std::fmt::Debug>(result: rdfs_namenode::error::Result<T>) -> ExceptionKind {
    result.expect_err("should fail").kind()
}

#[tokio::test]
async fn mkdirs_create_and_their_refusals() {
    let ns = namesystem(Arc::new(MemoryJournal::new()));
    let c = caller();
    assert!(ns.mkdirs(&c, "/a/b", 0o755, true).await.expect("mkdirs -p"));
    assert!(
        ns.mkdirs(&c, "/a/b", 0o755, false)
            .await
            .expect("existing dir is fine")
    );
    assert_eq!(
        kind(ns.mkdirs(&c, "/x/y", 0o755, false).await),
        ExceptionKind::FileNotFound
    );
    ns.create(&c, "/a/f", 0o644, "client-1", false, false, 3, 1 << 20)
        .await
        .expect("create");
    assert_eq!(
        kind(ns.mkdirs(&c, "/a/f", 0o755, true).await),
        ExceptionKind::FileAlreadyExists
    );
    let err = ns
        .mkdirs(&c, "/a/f/g", 0o755, true)
        .await
        .expect_err("through a file");
    assert_eq!(err.kind(), ExceptionKind::ParentNotDirectory);
    assert_eq!(err.to_string(), "/a/f (is not a directory)");
    assert_eq!(
        kind(ns.mkdirs(&c, "relative", 0o755, true).await),
        ExceptionKind::InvalidPath
    );
    assert_eq!(
        kind(ns.mkdirs(&c, "/a/../b", 0o755, true).await),
        ExceptionKind::InvalidPath
    );

    // A second writer of an open file, and overwriting without overwrite.
    let err = ns
        .create(&c, "/a/f", 0o644, "client-2", true, false, 3, 1 << 20)
        .await
        .expect_err("open by another");
    assert_eq!(err.kind(), ExceptionKind::AlreadyBeingCreated);
    assert!(
        err.to_string().contains("currently owned by client-1"),
        "{err}"
    );
    assert!(
        ns.complete("/a/f", "client-1", None, 0)
            .await
            .expect("complete empty file")
    );
    let err = ns
        .create(&c, "/a/f", 0o644, "client-2", false, false, 3, 1 << 20)
        .await
        .expect_err("exists");
    assert_eq!(err.to_string(), "/a/f for client 10.0.0.1 already exists");
    ns.create(&c, "/a/f", 0o644, "client-2", true, false, 3, 1 << 20)
        .await
        .expect("overwrite");
    assert_eq!(
        kind(
            ns.create(&c, "/a", 0o644, "c", true, false, 3, 1 << 20)
                .await
        ),
        ExceptionKind::FileAlreadyExists
    );
    assert_eq!(
        kind(
            ns.create(&c, "/new/f", 0o644, "c", false, false, 3, 1 << 20)
                .await
        ),
        ExceptionKind::FileNotFound
    );
    assert_eq!(
        kind(
            ns.create(&c, "/g", 0o644, "c", false, false, 600, 1 << 20)
                .await
        ),
        ExceptionKind::IllegalArgument
    );
    assert_eq!(
        kind(ns.create(&c, "/g", 0o644, "c", false, false, 3, 1000).await),
        ExceptionKind::IllegalArgument
    );

    let status = ns
        .get_file_info(&common::caller(), "/a/f")
        .expect("info")
        .expect("exists");
    assert_eq!(
        (
            status.owner.as_str(),
            status.group.as_str(),
            status.permission
        ),
        ("alice", "", 0o644)
    );
    assert!(
        ns.get_file_info(&common::caller(), "/a/f/g")
            .expect("through a file")
            .is_none()
    );
}

#[tokio::test]
async fn rename_and_delete_follow_the_old_hdfs_api() {
    let ns = namesystem(Arc::new(MemoryJournal::new()));
    let c = caller();
    ns.mkdirs(&c, "/src/inner", 0o755, true)
        .await
        .expect("mkdirs");
    ns.mkdirs(&c, "/dst", 0o755, true).await.expect("mkdirs");
    ns.create(&c, "/file", 0o644, "c", false, false, 3, 1 << 20)
        .await
        .expect("create");
    assert!(ns.complete("/file", "c", None, 0).await.expect("complete"));

    assert!(
        !ns.rename(&caller(), "/missing", "/x")
            .await
            .expect("missing source")
    );
    assert!(
        !ns.rename(&caller(), "/src", "/src/inner/x")
            .await
            .expect("into own subtree")
    );
    assert!(
        !ns.rename(&caller(), "/src", "/file")
            .await
            .expect("onto a file")
    );
    assert!(
        !ns.rename(&caller(), "/src", "/nope/x")
            .await
            .expect("missing destination parent")
    );
    assert!(
        ns.rename(&caller(), "/src", "/dst")
            .await
            .expect("into a directory")
    );
    assert!(
        ns.get_file_info(&common::caller(), "/dst/src/inner")
            .expect("info")
            .is_some()
    );
    assert!(
        ns.rename(&caller(), "/dst/src", "/moved")
            .await
            .expect("to a new name")
    );
    assert_eq!(
        kind(ns.rename(&caller(), "/file/x", "/y").await),
        ExceptionKind::AccessControl
    );
    assert_eq!(
        kind(ns.rename(&caller(), "/moved", "/file/y").await),
        ExceptionKind::ParentNotDirectory
    );

    let err = ns
        .delete(&caller(), "/moved", false)
        .await
        .expect_err("non-empty");
    assert_eq!(err.to_string(), "/moved is non empty");
    assert!(
        !ns.delete(&caller(), "/missing", true)
            .await
            .expect("missing")
    );
    assert!(!ns.delete(&caller(), "/", true).await.expect("root"));
    assert!(
        ns.delete(&caller(), "/moved", true)
            .await
            .expect("recursive")
    );
    assert!(
        ns.get_file_info(&common::caller(), "/moved/inner")
            .expect("info")
            .is_none()
    );

    let listing = ns
        .get_listing(&common::caller(), "/", b"", false)
        .expect("list")
        .expect("exists");
    let names: Vec<String> = listing
        .entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect();
    assert_eq!(names, ["dst", "file"]);
    assert_eq!(listing.remaining, 0);
    assert!(
        !ns.set_replication(&common::caller(), "/dst", 2)
            .await
            .expect("directory")
    );
    assert!(
        ns.set_replication(&common::caller(), "/file", 2)
            .await
            .expect("file")
    );
}

#[tokio::test]
async fn blocks_commit_complete_and_survive_replay() {
    let journal = Arc::new(MemoryJournal::new());
    let ns = namesystem(Arc::clone(&journal));
    register(&ns, 3).await;
    let c = caller();
    let status = ns
        .create(&c, "/f", 0o644, "w", false, true, 3, 1 << 20)
        .await
        .expect("create");
    let first = ns
        .add_block("/f", "w", None, &[], status.file_id)
        .await
        .expect("first block");
    assert_eq!(first.block.block_id, 1073741825);
    assert_eq!(first.block.generation_stamp, 1001);
    assert_eq!(first.locations.len(), 3);
    let mut uuids: Vec<&str> = first
        .locations
        .iter()
        .map(|d| d.id.datanode_uuid.as_str())
        .collect();
    uuids.sort_unstable();
    uuids.dedup();
    assert_eq!(uuids.len(), 3, "three distinct datanodes");
    // Excluding a datanode leaves it out.
    let excluded = ns
        .add_block("/f", "w", None, &["dn-0".to_string()], status.file_id)
        .await
        .expect("retry of first");
    assert_eq!(
        excluded.block.block_id, first.block.block_id,
        "a retried addBlock returns the same empty block"
    );

    let written = ExtendedBlock {
        num_bytes: 1 << 20,
        ..first.block.clone()
    };
    let second = ns
        .add_block("/f", "w", Some(&written), &[], status.file_id)
        .await
        .expect("second block");
    assert_eq!(second.offset, 1 << 20);
    // The first block has no finalized replica yet: a third block must wait.
    let second_written = ExtendedBlock {
        num_bytes: 5,
        ..second.block.clone()
    };
    assert_eq!(
        kind(
            ns.add_block("/f", "w", Some(&second_written), &[], status.file_id)
                .await
        ),
        ExceptionKind::NotReplicatedYet
    );
    assert!(
        !ns.complete("/f", "w", Some(&second_written), status.file_id)
            .await
            .expect("not yet")
    );
    for (block, len) in [(&written, 1u64 << 20), (&second_written, 5)] {
        let received = ExtendedBlock {
            num_bytes: len,
            ..block.clone()
        };
        ns.block_received_and_deleted(
            "dn-1",
            "BP-1-127.0.0.1-1",
            &[(received, "DS-1".into(), ReplicaEvent::Received)],
        )
        .expect("ibr");
    }
    assert!(
        ns.complete("/f", "w", Some(&second_written), status.file_id)
            .await
            .expect("complete")
    );
    assert_eq!(
        ns.get_file_info(&common::caller(), "/f")
            .expect("info")
            .expect("exists")
            .length,
        (1 << 20) + 5
    );
    assert_eq!(
        kind(ns.add_block("/f", "w", None, &[], status.file_id).await),
        ExceptionKind::LeaseExpired
    );

    // Replaying the journal rebuilds the same namespace.
    let replayed = namesystem(Arc::clone(&journal));
    let original = ns
        .get_file_info(&common::caller(), "/f")
        .expect("info")
        .expect("exists");
    let rebuilt = replayed
        .get_file_info(&common::caller(), "/f")
        .expect("info")
        .expect("exists");
    assert_eq!(original, rebuilt);
    assert_eq!(journal.last_txid(), journal.records().len() as u64);
}

#[tokio::test]
async fn no_datanodes_means_a_clear_refusal() {
    let ns = namesystem(Arc::new(MemoryJournal::new()));
    let status = ns
        .create(&caller(), "/f", 0o644, "w", false, true, 3, 1 << 20)
        .await
        .expect("create");
    let err = ns
        .add_block("/f", "w", None, &[], status.file_id)
        .await
        .expect_err("no datanodes");
    assert_eq!(
        err.to_string(),
        "File /f could only be written to 0 of the 1 minReplication nodes. There are 0 datanode(s) running and no node(s) are excluded in this operation."
    );
}

#[tokio::test]
async fn datanodes_of_another_cluster_are_refused_and_strangers_reregister() {
    let ns = namesystem(Arc::new(MemoryJournal::new()));
    let err = ns
        .register_datanode(Registration {
            id: DatanodeId {
                datanode_uuid: "x".into(),
                ..Default::default()
            },
            cluster_id: "CID-other".into(),
            block_pool_id: "BP-1-127.0.0.1-1".into(),
            storage_ids: Vec::new(),
        })
        .expect_err("other cluster");
    assert_eq!(err.kind(), ExceptionKind::IncorrectVersion);
    assert!(err.to_string().contains("CID-other"), "{err}");
    let commands = ns
        .heartbeat("stranger", Vec::new(), 0, 0, 0, || true)
        .await
        .expect("heartbeat");
    assert_eq!(
        commands,
        vec![rdfs_namenode::namesystem::DatanodeCommand::Reregister]
    );
}

#[tokio::test]
async fn commits_must_match_the_block_and_paths_have_limits() {
    let ns = namesystem(Arc::new(MemoryJournal::new()));
    register(&ns, 1).await;
    let status = ns
        .create(&caller(), "/f", 0o644, "w", false, true, 1, 1 << 20)
        .await
        .expect("create");
    let block = ns
        .add_block("/f", "w", None, &[], status.file_id)
        .await
        .expect("block")
        .block;
    let stale = ExtendedBlock {
        generation_stamp: block.generation_stamp - 1,
        num_bytes: 10,
        ..block.clone()
    };
    let err = ns
        .complete("/f", "w", Some(&stale), status.file_id)
        .await
        .expect_err("stale genstamp");
    assert!(err.to_string().contains("mismatching GS"), "{err}");
    let huge = ExtendedBlock {
        num_bytes: u64::MAX,
        ..block.clone()
    };
    assert_eq!(
        kind(ns.complete("/f", "w", Some(&huge), status.file_id).await),
        ExceptionKind::IllegalArgument
    );
    assert_eq!(
        kind(
            ns.add_block("/f", "w", Some(&huge), &[], status.file_id)
                .await
        ),
        ExceptionKind::IllegalArgument
    );

    let deep = "/d".repeat(1001);
    let err = ns
        .mkdirs(&caller(), &deep, 0o755, true)
        .await
        .expect_err("too deep");
    assert_eq!(
        err.to_string(),
        "Pathname too long.  Limit 8000 characters, 1000 levels."
    );
    let deep_ok = "/d".repeat(999);
    assert!(
        ns.mkdirs(&caller(), &deep_ok, 0o755, true)
            .await
            .expect("999 levels")
    );
    assert_eq!(
        ns.get_content_summary(&common::caller(), "/")
            .expect("summary")
            .directory_count,
        1000
    );
}

#[tokio::test]
async fn safe_mode_refuses_writes_with_hdfs_words_and_allows_reads() {
    let ns = namesystem(Arc::new(MemoryJournal::new()));
    ns.mkdirs(&caller(), "/d", 0o755, false)
        .await
        .expect("mkdirs");
    assert!(ns.safe_mode(SafeModeAction::Enter));
    assert!(ns.safe_mode(SafeModeAction::Get));
    let err = ns
        .mkdirs(&caller(), "/x", 0o755, false)
        .await
        .expect_err("read-only");
    assert_eq!(err.kind(), ExceptionKind::SafeMode);
    let first_line = err
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        first_line,
        "Cannot create directory /x. Name node is in safe mode."
    );
    assert!(err.to_string().contains("turned on manually"), "{err}");
    assert_eq!(
        kind(ns.delete(&caller(), "/d", true).await),
        ExceptionKind::SafeMode
    );
    assert!(
        ns.get_file_info(&common::caller(), "/d")
            .expect("reads work")
            .is_some()
    );
    assert!(!ns.safe_mode(SafeModeAction::Leave));
    assert!(
        ns.delete(&caller(), "/d", true)
            .await
            .expect("writable again")
    );
}
