//! Leases, lease and block recovery, append, truncate and pipeline updates,
//! in process with an in-memory journal; and that replaying the journal (or
//! an fsimage of the result) rebuilds the same state.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdfs_common::ExceptionKind;
use rdfs_common::protocol::{ExtendedBlock, LocatedBlocks};
use rdfs_namenode::edit_log::{Journal, MemoryJournal};
use rdfs_namenode::fsck::FsckEntry;
use rdfs_namenode::namesystem::{
    DatanodeCommand, NAMENODE_LEASE_HOLDER, Namesystem, RecoverOrder, empty_state, replay,
};
use tokio_util::sync::CancellationToken;

mod common;

use common::{BLOCK, caller, closed_file, config, heartbeat, info, received, register, with_len};

fn namesystem(journal: Arc<MemoryJournal>) -> Namesystem {
    common::namesystem_with(journal, config())
}

/// The recovery orders every datanode gets with its next heartbeat.
async fn recover_orders(ns: &Namesystem, n: usize) -> Vec<(usize, RecoverOrder)> {
    let mut orders = Vec::new();
    for i in 0..n {
        for command in heartbeat(ns, i).await {
            if let DatanodeCommand::Recover(list) = command {
                orders.extend(list.into_iter().map(|o| (i, o)));
            }
        }
    }
    orders
}

fn locations(ns: &Namesystem, src: &str) -> LocatedBlocks {
    ns.get_block_locations(&common::caller(), src, 0, u64::MAX)
        .expect("locations")
}

fn corrupt_replicas(ns: &Namesystem, src: &str) -> Vec<(String, bool)> {
    let report = ns.fsck(&common::caller(), src).expect("fsck");
    let mut out = Vec::new();
    for entry in report.entries {
        if let FsckEntry::File(file) = entry {
            for block in file.blocks {
                for replica in block.replicas {
                    out.push((replica.datanode.id.datanode_uuid.clone(), replica.corrupt));
                }
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn hard_limit_expiry_recovers_the_block_and_the_commit_closes_the_file() {
    let journal = Arc::new(MemoryJournal::new());
    let ns = namesystem(Arc::clone(&journal));
    register(&ns, 3).await;
    let c = caller();
    ns.create(&c, "/f", 0o644, "dead-writer", false, false, 3, BLOCK)
        .await
        .expect("create");
    let located = ns
        .add_block("/f", "dead-writer", None, &[], 0)
        .await
        .expect("add block");
    ns.fsync("/f", "dead-writer", 100, 0).await.expect("fsync");
    assert_eq!(locations(&ns, "/f").blocks[0].block.num_bytes, 100);

    // Nothing happens before the hard limit.
    ns.check_leases(Instant::now()).await.expect("check");
    assert!(recover_orders(&ns, 3).await.is_empty());

    ns.check_leases(Instant::now() + Duration::from_secs(1201))
        .await
        .expect("check");
    let orders = recover_orders(&ns, 3).await;
    assert_eq!(orders.len(), 1, "one primary: {orders:?}");
    let (primary, order) = &orders[0];
    assert!(order.new_generation_stamp > located.block.generation_stamp);
    assert_eq!(order.new_length, None);
    assert_eq!(order.block.block.block_id, located.block.block_id);
    assert_eq!(
        order.block.locations.len(),
        3,
        "every pipeline node is a candidate"
    );
    // The writer lost its lease.
    assert_eq!(
        ns.add_block(
            "/f",
            "dead-writer",
            Some(&with_len(&located.block, 100)),
            &[],
            0
        )
        .await
        .expect_err("lease gone")
        .kind(),
        ExceptionKind::LeaseExpired
    );
    // A recovery already under way is not restarted by recoverLease.
    assert!(
        !ns.recover_lease(&common::caller(), "/f", "other")
            .await
            .expect("recover")
    );
    assert!(recover_orders(&ns, 3).await.is_empty());

    // A commit with another recovery id is refused, naming both.
    let err = ns
        .commit_block_synchronization(
            &located.block,
            order.new_generation_stamp + 7,
            80,
            true,
            false,
            &["dn-0".into()],
            &["DS-0".into()],
        )
        .await
        .expect_err("wrong id");
    assert!(
        err.to_string().contains(&format!(
            "The recovery id {} does not match current recovery id {}",
            order.new_generation_stamp + 7,
            order.new_generation_stamp
        )),
        "{err}"
    );

    let targets: Vec<String> = (0..3)
        .filter(|i| i != primary)
        .map(|i| format!("dn-{i}"))
        .collect();
    let storages: Vec<String> = targets.iter().map(|t| t.replace("dn", "DS")).collect();
    ns.commit_block_synchronization(
        &located.block,
        order.new_generation_stamp,
        80,
        true,
        false,
        &targets,
        &storages,
    )
    .await
    .expect("commit");
    // A retry of the same commit is fine.
    ns.commit_block_synchronization(
        &located.block,
        order.new_generation_stamp,
        80,
        true,
        false,
        &targets,
        &storages,
    )
    .await
    .expect("retried commit");
    let closed = locations(&ns, "/f");
    assert!(!closed.under_construction);
    assert!(closed.is_last_block_complete);
    assert_eq!(closed.file_length, 80);
    assert_eq!(
        closed.blocks[0].block.generation_stamp,
        order.new_generation_stamp
    );
    assert_eq!(closed.blocks[0].locations.len(), 2);
    assert!(
        ns.recover_lease(&common::caller(), "/f", "other")
            .await
            .expect("closed")
    );

    // The replayed journal agrees.
    let replayed = namesystem(journal);
    let again = locations(&replayed, "/f");
    assert_eq!(
        (
            again.file_length,
            again.blocks[0].block.clone(),
            again.under_construction
        ),
        (80, closed.blocks[0].block.clone(), false)
    );
}

#[tokio::test]
async fn recover_lease_closes_what_it_can_at_once() {
    let journal = Arc::new(MemoryJournal::new());
    let ns = namesystem(Arc::clone(&journal));
    register(&ns, 3).await;
    let c = caller();
    closed_file(&ns, "/closed", &[10]).await;
    assert!(
        ns.recover_lease(&common::caller(), "/closed", "r")
            .await
            .expect("closed file")
    );
    assert_eq!(
        ns.recover_lease(&common::caller(), "/missing", "r")
            .await
            .expect_err("missing")
            .kind(),
        ExceptionKind::FileNotFound
    );
    ns.mkdirs(&c, "/dir", 0o755, false).await.expect("mkdir");
    assert_eq!(
        ns.recover_lease(&common::caller(), "/dir", "r")
            .await
            .expect_err("dir")
            .kind(),
        ExceptionKind::FileNotFound
    );
    // No blocks: closed at once.
    ns.create(&c, "/empty", 0o644, "w", false, false, 3, BLOCK)
        .await
        .expect("create");
    assert!(
        ns.recover_lease(&common::caller(), "/empty", "r")
            .await
            .expect("recover")
    );
    // An empty last block no datanode ever had (the namenode restarted,
    // so its pipeline is forgotten): dropped, and the file closed.
    ns.create(&c, "/g", 0o644, "w", false, false, 3, BLOCK)
        .await
        .expect("create");
    ns.add_block("/g", "w", None, &[], 0).await.expect("block");
    let restarted = namesystem(journal);
    register(&restarted, 3).await;
    assert!(
        restarted
            .recover_lease(&common::caller(), "/g", "r")
            .await
            .expect("recover")
    );
    let g = locations(&restarted, "/g");
    assert!(g.blocks.is_empty() && !g.under_construction);
    assert!(recover_orders(&restarted, 3).await.is_empty());
}

#[tokio::test]
async fn append_reopens_a_partial_last_block_and_one_writer_only() {
    let journal = Arc::new(MemoryJournal::new());
    let ns = namesystem(Arc::clone(&journal));
    register(&ns, 3).await;
    let c = caller();
    let blocks = closed_file(&ns, "/partial", &[BLOCK, 300]).await;
    closed_file(&ns, "/full", &[BLOCK]).await;

    let appended = ns.append(&c, "/partial", "appender").await.expect("append");
    let block = appended.block.expect("partial last block reopened");
    assert_eq!(block.block, blocks[1]);
    assert_eq!(block.offset, BLOCK);
    assert_eq!(block.locations.len(), 3, "its replicas are the pipeline");
    assert_eq!(appended.status.length, BLOCK + 300);
    let open = locations(&ns, "/partial");
    assert!(open.under_construction && !open.is_last_block_complete);
    assert_eq!(
        open.file_length, BLOCK,
        "the open block's length is asked of datanodes"
    );
    assert_eq!(open.blocks.len(), 2);

    let err = ns
        .append(&c, "/partial", "second")
        .await
        .expect_err("second appender");
    assert_eq!(err.kind(), ExceptionKind::AlreadyBeingCreated);
    assert_eq!(
        err.to_string(),
        "Failed to APPEND_FILE /partial for second on 10.0.0.1 because this file lease is currently owned by appender on 10.0.0.1"
    );
    let err = ns
        .append(&c, "/partial", "appender")
        .await
        .expect_err("same holder");
    assert_eq!(err.kind(), ExceptionKind::AlreadyBeingCreated);
    assert!(
        err.to_string()
            .contains("current leaseholder is trying to recreate file"),
        "{err}"
    );
    assert_eq!(
        ns.create(&c, "/partial", 0o644, "third", true, false, 3, BLOCK)
            .await
            .expect_err("create over it")
            .kind(),
        ExceptionKind::AlreadyBeingCreated
    );

    let full = ns.append(&c, "/full", "appender").await.expect("append");
    assert!(full.block.is_none(), "a full last block is not reopened");
    assert_eq!(full.status.length, BLOCK);

    let err = ns.append(&c, "/nope", "x").await.expect_err("missing");
    assert_eq!(err.kind(), ExceptionKind::FileNotFound);
    assert_eq!(
        err.to_string(),
        "failed to append to non-existent file /nope for client 10.0.0.1"
    );
    ns.mkdirs(&c, "/d", 0o755, false).await.expect("mkdir");
    assert_eq!(
        ns.append(&c, "/d", "x").await.expect_err("dir").kind(),
        ExceptionKind::FileAlreadyExists
    );

    // The appender writes on under a new generation stamp and closes.
    let fresh = ns
        .update_block_for_pipeline(&blocks[1], "appender")
        .await
        .expect("new gs");
    assert!(fresh.block.generation_stamp > blocks[1].generation_stamp);
    assert_eq!(
        ns.update_block_for_pipeline(&blocks[1], "intruder")
            .await
            .expect_err("not the writer")
            .kind(),
        ExceptionKind::LeaseExpired
    );
    let uuids: Vec<String> = (0..3).map(|i| format!("dn-{i}")).collect();
    ns.update_pipeline(
        &caller(),
        "appender",
        &blocks[1],
        &with_len(&fresh.block, 300),
        &uuids,
        &[],
    )
    .await
    .expect("update pipeline");
    let done = with_len(&fresh.block, 500);
    for dn in 0..3 {
        received(&ns, dn, &done);
    }
    assert!(
        ns.complete("/partial", "appender", Some(&done), 0)
            .await
            .expect("complete")
    );
    assert_eq!(
        ns.get_file_info(&common::caller(), "/partial")
            .expect("info")
            .expect("exists")
            .length,
        BLOCK + 500
    );
    assert!(corrupt_replicas(&ns, "/partial").iter().all(|(_, c)| !c));

    // A writer silent past the soft limit loses the file to the next
    // appender: here its blocks are all complete, so it closes at once.
    let replayed = namesystem(Arc::clone(&journal));
    assert_eq!(
        replayed
            .get_file_info(&common::caller(), "/partial")
            .expect("info")
            .expect("exists")
            .length,
        BLOCK + 500
    );
}

#[tokio::test]
async fn soft_limit_lets_another_client_start_recovery() {
    let mut config = config();
    config.lease_soft_limit = Duration::from_millis(1);
    let journal = Arc::new(MemoryJournal::new());
    let ns = Namesystem::new(
        info(),
        config,
        empty_state(&info(), &self::config(), "", "", 0),
        journal,
        CancellationToken::new(),
        false,
    );
    register(&ns, 3).await;
    let c = caller();
    ns.create(&c, "/f", 0o644, "w1", false, false, 3, BLOCK)
        .await
        .expect("create");
    ns.add_block("/f", "w1", None, &[], 0).await.expect("block");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let err = ns.append(&c, "/f", "w2").await.expect_err("recovering");
    assert_eq!(err.kind(), ExceptionKind::RecoveryInProgress);
    assert_eq!(
        err.to_string(),
        "Failed to APPEND_FILE /f for w2 on 10.0.0.1 because lease recovery is in progress. Try again later."
    );
    assert_eq!(recover_orders(&ns, 3).await.len(), 1);
    let err = ns
        .create(&c, "/f", 0o644, "w3", true, false, 3, BLOCK)
        .await
        .expect_err("still recovering");
    assert_eq!(err.kind(), ExceptionKind::RecoveryInProgress);
    let _ = NAMENODE_LEASE_HOLDER;
}

#[tokio::test]
async fn truncate_on_a_boundary_and_in_the_middle_of_a_block() {
    let journal = Arc::new(MemoryJournal::new());
    let ns = namesystem(Arc::clone(&journal));
    register(&ns, 3).await;
    let c = caller();
    let blocks = closed_file(&ns, "/t", &[BLOCK, BLOCK, 100]).await;
    let err = ns
        .truncate(&c, "/t", 3 * BLOCK, "tr")
        .await
        .expect_err("longer");
    assert_eq!(err.kind(), ExceptionKind::IllegalArgument);
    assert_eq!(
        err.to_string(),
        format!(
            "Cannot truncate to a larger file size. Current size: {}, truncate size: {}.",
            2 * BLOCK + 100,
            3 * BLOCK
        )
    );
    let txid = journal.last_txid();
    assert!(
        ns.truncate(&c, "/t", 2 * BLOCK + 100, "tr")
            .await
            .expect("same")
    );
    assert_eq!(journal.last_txid(), txid, "nothing logged");

    // On a block boundary: done at once, the file stays closed, the
    // dropped block's replicas are deleted.
    assert!(
        ns.truncate(&c, "/t", 2 * BLOCK, "tr")
            .await
            .expect("boundary")
    );
    let t = locations(&ns, "/t");
    assert_eq!(
        (t.file_length, t.blocks.len(), t.under_construction),
        (2 * BLOCK, 2, false)
    );
    let mut commands = Vec::new();
    for i in 0..3 {
        commands.extend(heartbeat(&ns, i).await);
    }
    let deletes: usize = commands
        .into_iter()
        .filter_map(|c| match c {
            DatanodeCommand::Invalidate(blocks) => Some(blocks),
            _ => None,
        })
        .flatten()
        .filter(|b| b.block_id == blocks[2].block_id)
        .count();
    assert_eq!(deletes, 3);

    // In the middle of a block: the length is reported at once; a recovery
    // cuts the replicas and its commit closes the file.
    let new_length = BLOCK + 4000;
    assert!(
        !ns.truncate(&c, "/t", new_length, "tr")
            .await
            .expect("mid-block")
    );
    let status = ns
        .get_file_info(&common::caller(), "/t")
        .expect("info")
        .expect("exists");
    assert_eq!(status.length, new_length);
    let orders = recover_orders(&ns, 3).await;
    assert_eq!(orders.len(), 1);
    let order = &orders[0].1;
    assert_eq!(order.new_length, Some(4000));
    assert_eq!(order.block.block.block_id, blocks[1].block_id);
    assert!(order.new_generation_stamp > blocks[1].generation_stamp);
    assert_eq!(
        ns.append(&c, "/t", "x")
            .await
            .expect_err("being truncated")
            .kind(),
        ExceptionKind::RecoveryInProgress
    );
    let uuids: Vec<String> = (0..3).map(|i| format!("dn-{i}")).collect();
    ns.commit_block_synchronization(
        &blocks[1],
        order.new_generation_stamp,
        4000,
        true,
        false,
        &uuids,
        &[],
    )
    .await
    .expect("commit");
    let t = locations(&ns, "/t");
    assert_eq!((t.file_length, t.under_construction), (new_length, false));
    assert_eq!(
        t.blocks[1].block.generation_stamp,
        order.new_generation_stamp
    );
    assert_eq!(t.blocks[1].locations.len(), 3);

    let replayed = namesystem(journal);
    let again = locations(&replayed, "/t");
    assert_eq!(again.file_length, new_length);
    assert_eq!(again.blocks[1].block, t.blocks[1].block);
}

#[tokio::test]
async fn update_pipeline_makes_old_replicas_stale_until_reported_current() {
    let ns = namesystem(Arc::new(MemoryJournal::new()));
    register(&ns, 3).await;
    let c = caller();
    ns.create(&c, "/p", 0o644, "w", false, false, 3, BLOCK)
        .await
        .expect("create");
    let first = ns.add_block("/p", "w", None, &[], 0).await.expect("block");
    let old = first.block.clone();
    let fresh = ns
        .update_block_for_pipeline(&old, "w")
        .await
        .expect("new gs");
    let new_gs = fresh.block.generation_stamp;
    // The new stamp must be larger and handed out.
    let too_new = ExtendedBlock {
        generation_stamp: new_gs + 5,
        ..old.clone()
    };
    assert_eq!(
        ns.update_pipeline(&caller(), "w", &old, &too_new, &["dn-1".into()], &[])
            .await
            .expect_err("never handed out")
            .kind(),
        ExceptionKind::Io
    );
    let nodes: Vec<String> = vec!["dn-1".into(), "dn-2".into()];
    ns.update_pipeline(
        &caller(),
        "w",
        &old,
        &with_len(&fresh.block, 0),
        &nodes,
        &[],
    )
    .await
    .expect("update");
    let open = locations(&ns, "/p");
    assert_eq!(open.blocks[0].block.generation_stamp, new_gs);
    assert_eq!(open.blocks[0].locations.len(), 2, "the new pipeline");

    // dn-0 left the pipeline with a replica at the old stamp: stale.
    received(&ns, 0, &with_len(&old, 10));
    assert_eq!(
        corrupt_replicas(&ns, "/p"),
        vec![("dn-0".to_string(), true)]
    );
    let done = with_len(&fresh.block, 10);
    received(&ns, 1, &done);
    received(&ns, 2, &done);
    assert!(
        ns.complete("/p", "w", Some(&done), 0)
            .await
            .expect("complete")
    );
    // Later dn-0 reports the current stamp: the stale mark goes.
    received(&ns, 0, &done);
    assert!(
        corrupt_replicas(&ns, "/p")
            .iter()
            .all(|(_, corrupt)| !corrupt),
        "{:?}",
        corrupt_replicas(&ns, "/p")
    );
    // Replication 3 with 3 good replicas: nothing was deleted.
    assert_eq!(corrupt_replicas(&ns, "/p").len(), 3);
}

#[tokio::test]
async fn additional_datanodes_extend_the_pipeline() {
    let ns = namesystem(Arc::new(MemoryJournal::new()));
    register(&ns, 4).await;
    let c = caller();
    let status = ns
        .create(&c, "/a", 0o644, "w", false, false, 3, BLOCK)
        .await
        .expect("create");
    let located = ns.add_block("/a", "w", None, &[], 0).await.expect("block");
    let existing: Vec<String> = located.locations[..2]
        .iter()
        .map(|l| l.id.datanode_uuid.clone())
        .collect();
    let excluded = vec![located.locations[2].id.datanode_uuid.clone()];
    let more = ns
        .get_additional_datanode(
            "/a",
            &located.block,
            &existing,
            &excluded,
            1,
            "w",
            status.file_id,
        )
        .expect("one more");
    let uuids: Vec<String> = more
        .locations
        .iter()
        .map(|l| l.id.datanode_uuid.clone())
        .collect();
    assert_eq!(uuids.len(), 3);
    assert_eq!(&uuids[..2], &existing[..]);
    assert!(!excluded.contains(&uuids[2]) && !existing.contains(&uuids[2]));
    let all_but: Vec<String> = vec![uuids[2].clone(), excluded[0].clone()];
    assert_eq!(
        ns.get_additional_datanode("/a", &located.block, &existing, &all_but, 1, "w", 0)
            .expect_err("none left")
            .kind(),
        ExceptionKind::NotEnoughReplicas
    );
    assert_eq!(
        ns.get_additional_datanode("/a", &located.block, &existing, &[], 1, "other", 0)
            .expect_err("not the writer")
            .kind(),
        ExceptionKind::LeaseExpired
    );
}

#[tokio::test]
async fn replay_and_fsimage_of_the_new_edits_rebuild_the_same_state() {
    let journal = Arc::new(MemoryJournal::new());
    let ns = namesystem(Arc::clone(&journal));
    register(&ns, 3).await;
    let c = caller();
    let blocks = closed_file(&ns, "/a", &[BLOCK, 200]).await;
    closed_file(&ns, "/t", &[BLOCK, 100]).await;
    // Appended and written on under a new stamp, left open.
    ns.append(&c, "/a", "ap").await.expect("append");
    let fresh = ns
        .update_block_for_pipeline(&blocks[1], "ap")
        .await
        .expect("gs");
    ns.update_pipeline(
        &caller(),
        "ap",
        &blocks[1],
        &with_len(&fresh.block, 200),
        &["dn-0".into()],
        &[],
    )
    .await
    .expect("pipeline");
    ns.fsync("/a", "ap", 250, 0).await.expect("fsync");
    // Truncated mid-block, recovery pending.
    assert!(!ns.truncate(&c, "/t", 500, "tr").await.expect("truncate"));
    // A writer past the hard limit: its file is under recovery by the
    // namenode.
    ns.create(&c, "/h", 0o644, "gone", false, false, 3, BLOCK)
        .await
        .expect("create");
    ns.add_block("/h", "gone", None, &[], 0)
        .await
        .expect("block");
    ns.check_leases(Instant::now() + Duration::from_secs(3600))
        .await
        .expect("leases");

    let mut replayed = empty_state(&info(), &config(), "", "", 0);
    replay(&mut replayed, &journal.records()).expect("replay");
    let image = rdfs_namenode::fsimage::encode(&replayed, journal.last_txid(), &info());
    let loaded = rdfs_namenode::fsimage::decode(Path::new("img"), &image, &info(), &config())
        .expect("decode");
    assert_eq!(
        rdfs_namenode::fsimage::encode(&loaded.state, journal.last_txid(), &info()),
        image,
        "the image round-trips"
    );
    let from_replay = namesystem(Arc::clone(&journal));
    let from_image = Namesystem::new(
        info(),
        config(),
        loaded.state,
        Arc::new(MemoryJournal::new()),
        CancellationToken::new(),
        false,
    );
    for src in ["/a", "/t", "/h"] {
        let live = ns
            .get_file_info(&common::caller(), src)
            .expect("info")
            .expect("exists");
        for other in [&from_replay, &from_image] {
            let rebuilt = other
                .get_file_info(&common::caller(), src)
                .expect("info")
                .expect("exists");
            assert_eq!(
                (rebuilt.length, rebuilt.modification_time),
                (live.length, live.modification_time),
                "{src}"
            );
            let (a, b) = (locations(&ns, src), locations(other, src));
            let blocks_of = |l: &LocatedBlocks| -> Vec<ExtendedBlock> {
                l.blocks.iter().map(|b| b.block.clone()).collect()
            };
            assert_eq!(blocks_of(&a), blocks_of(&b), "{src}");
            assert_eq!(
                (
                    a.under_construction,
                    a.is_last_block_complete,
                    a.file_length
                ),
                (
                    b.under_construction,
                    b.is_last_block_complete,
                    b.file_length
                ),
                "{src}"
            );
        }
    }
    // Who holds what survives too: every writer was past the hard limit,
    // so the namenode holds all three files, wherever they were rebuilt.
    for other in [&ns, &from_replay, &from_image] {
        for (src, client) in [("/a", "ap"), ("/t", "tr"), ("/h", "gone")] {
            assert_eq!(
                other
                    .fsync(src, client, 260, 0)
                    .await
                    .expect_err("taken")
                    .kind(),
                ExceptionKind::LeaseExpired,
                "{src}"
            );
        }
    }
}
