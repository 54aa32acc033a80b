//! Nothing the namenode tells a datanode may rest on an edit that is not
//! durable, and nothing a datanode reports late may undo what the namenode
//! told it: in process, with an in-memory journal whose syncs a test holds
//! to see what happens while an edit is not durable yet, and what a crash
//! then keeps.

use std::sync::Arc;
use std::time::Duration;

use rdfs_common::protocol::ExtendedBlock;
use rdfs_namenode::edit_log::MemoryJournal;
use rdfs_namenode::namesystem::{DatanodeCommand, Namesystem};

mod common;

use common::{caller, closed_file, config, heartbeat, info, received, register};

fn namesystem(journal: Arc<MemoryJournal>) -> Arc<Namesystem> {
    Arc::new(common::namesystem_with(journal, config()))
}

/// The replicas a heartbeat of `dn-{dn}` is told to delete, or `None` when
/// no answer comes within a moment (it waits for the journal).
async fn deletions(ns: &Namesystem, dn: usize) -> Option<Vec<i64>> {
    let answer = tokio::time::timeout(Duration::from_millis(200), heartbeat(ns, dn))
        .await
        .ok()?;
    Some(
        answer
            .into_iter()
            .filter_map(|c| match c {
                DatanodeCommand::Invalidate(blocks) => Some(blocks),
                _ => None,
            })
            .flatten()
            .map(|b| b.block_id)
            .collect(),
    )
}

/// The datanodes that hold a live replica of `src`'s first block, as a
/// reader would be told.
fn holders(ns: &Namesystem, src: &str) -> Vec<String> {
    let located = ns
        .get_block_locations(&common::caller(), src, 0, u64::MAX)
        .expect("locations");
    let mut out: Vec<String> = located.blocks[0]
        .locations
        .iter()
        .map(|l| l.id.datanode_uuid.clone())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn replicas_of_a_deleted_file_are_deleted_only_once_the_delete_is_durable() {
    let journal = Arc::new(MemoryJournal::new());
    let ns = namesystem(Arc::clone(&journal));
    register(&ns, 3).await;
    let blocks = closed_file(&ns, "/f", &[100]).await;
    for dn in 0..3 {
        assert_eq!(deletions(&ns, dn).await, Some(Vec::new()));
    }

    // The delete is applied in memory, but its edit is not durable.
    journal.hold_syncs();
    let deleting = {
        let ns = Arc::clone(&ns);
        tokio::spawn(async move { ns.delete(&caller(), "/f", false).await })
    };
    while ns
        .get_file_info(&common::caller(), "/f")
        .expect("info")
        .is_some()
    {
        tokio::task::yield_now().await;
    }
    for dn in 0..3 {
        let sent = deletions(&ns, dn).await;
        assert!(
            sent.as_ref().is_none_or(|ids| ids.is_empty()),
            "dn-{dn} was told to delete {sent:?} before the delete was durable"
        );
    }
    // A crash now keeps the file, so its replicas must still be there.
    let mut state_after_crash =
        rdfs_namenode::namesystem::empty_state(&info(), &config(), "", "", 0);
    rdfs_namenode::namesystem::replay(&mut state_after_crash, &journal.durable_records())
        .expect("replay");
    assert!(
        state_after_crash
            .namespace
            .resolve(&["f"])
            .is_ok_and(|r| r.last().is_some()),
        "the delete was not durable, so a crash keeps /f"
    );

    journal.release_syncs();
    assert!(deleting.await.expect("task").expect("delete"));
    for dn in 0..3 {
        assert_eq!(
            deletions(&ns, dn).await,
            Some(vec![blocks[0].block_id]),
            "dn-{dn} deletes the replica once the delete is durable"
        );
    }
}

#[tokio::test]
async fn a_recovery_order_waits_for_its_generation_stamp_to_be_durable() {
    let journal = Arc::new(MemoryJournal::new());
    let ns = namesystem(Arc::clone(&journal));
    register(&ns, 3).await;
    let c = caller();
    ns.create(&c, "/open", 0o644, "writer", false, true, 3, common::BLOCK)
        .await
        .expect("create");
    let located = ns
        .add_block("/open", "writer", None, &[], 0)
        .await
        .expect("block");
    for dn in 0..3 {
        received(&ns, dn, &common::with_len(&located.block, 10));
    }
    // Another client takes the file over: a block recovery starts, with a
    // new generation stamp the replicas will take.
    journal.hold_syncs();
    let recovering = {
        let ns = Arc::clone(&ns);
        tokio::spawn(async move { ns.recover_lease(&common::caller(), "/open", "other").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    for dn in 0..3 {
        let answer = tokio::time::timeout(Duration::from_millis(200), heartbeat(&ns, dn)).await;
        if let Ok(commands) = answer {
            assert!(
                !commands
                    .iter()
                    .any(|c| matches!(c, DatanodeCommand::Recover(_))),
                "dn-{dn} got a recovery order before its stamp was durable: {commands:?}"
            );
        }
    }
    journal.release_syncs();
    let _ = recovering.await.expect("task");
    let mut orders = 0;
    for dn in 0..3 {
        orders += heartbeat(&ns, dn)
            .await
            .iter()
            .filter(|c| matches!(c, DatanodeCommand::Recover(_)))
            .count();
    }
    assert_eq!(orders, 1, "the primary gets its order once it is durable");
}

#[tokio::test]
async fn a_full_report_taken_before_a_deletion_does_not_make_the_replica_live_again() {
    let journal = Arc::new(MemoryJournal::new());
    let ns = namesystem(Arc::clone(&journal));
    register(&ns, 4).await;
    let blocks = closed_file(&ns, "/f", &[100]).await;
    let block: ExtendedBlock = blocks[0].clone();
    for dn in 0..3 {
        common::full_report(&ns, dn, &blocks);
    }
    // dn-0's copy is damaged; once a good copy replaces it, it is deleted.
    ns.datanode_bad_blocks("dn-0", std::slice::from_ref(&block), "checksum mismatch")
        .expect("bad block");
    received(&ns, 3, &block);
    assert_eq!(deletions(&ns, 0).await, Some(vec![block.block_id]));
    assert_eq!(holders(&ns, "/f"), vec!["dn-1", "dn-2", "dn-3"]);

    // A full report dn-0 took before it carried out the deletion.
    common::full_report(&ns, 0, std::slice::from_ref(&block));
    assert_eq!(
        holders(&ns, "/f"),
        vec!["dn-1", "dn-2", "dn-3"],
        "the damaged copy on its way out came back as a live one"
    );
    // So the block is not over-replicated, and no good copy goes.
    common::full_report(&ns, 3, &blocks);
    ns.replication_round(false);
    for dn in 1..4 {
        assert_eq!(
            deletions(&ns, dn).await,
            Some(Vec::new()),
            "dn-{dn}'s good copy was deleted as excess"
        );
    }
    // Once dn-0 says the copy is gone, its reports count again.
    ns.block_received_and_deleted(
        "dn-0",
        &info().block_pool_id,
        &[(
            block.clone(),
            "DS-0".into(),
            rdfs_namenode::namesystem::ReplicaEvent::Deleted,
        )],
    )
    .expect("deleted");
    common::full_report(&ns, 0, &[]);
    assert_eq!(holders(&ns, "/f"), vec!["dn-1", "dn-2", "dn-3"]);
}

#[tokio::test]
async fn excess_replicas_wait_for_fresh_reports_after_a_promotion() {
    let journal = Arc::new(MemoryJournal::new());
    let ns = namesystem(Arc::clone(&journal));
    register(&ns, 4).await;
    let blocks = closed_file(&ns, "/f", &[100]).await;
    for dn in 0..3 {
        common::full_report(&ns, dn, &blocks);
    }
    // A fourth copy, as a standby may believe from a late report.
    received(&ns, 3, &blocks[0]);
    ns.set_standby();
    ns.promote();
    ns.replication_round(false);
    for dn in 0..4 {
        let commands = heartbeat(&ns, dn).await;
        assert!(
            !commands
                .iter()
                .any(|c| matches!(c, DatanodeCommand::Invalidate(_))),
            "dn-{dn} was told to delete a copy before any datanode reported to the new active: {commands:?}"
        );
        assert!(
            commands.contains(&DatanodeCommand::ReportBlocks),
            "the new active asks dn-{dn} for a full report"
        );
    }
    // Three of the four report; the fourth copy's holder has not.
    for dn in 0..3 {
        common::full_report(&ns, dn, &blocks);
    }
    ns.replication_round(false);
    let mut deleted = 0;
    for dn in 0..4 {
        deleted += deletions(&ns, dn).await.map_or(0, |ids| ids.len());
    }
    assert_eq!(deleted, 0, "dn-3's view is still stale");
    common::full_report(&ns, 3, &blocks);
    ns.replication_round(false);
    let mut deleted = 0;
    for dn in 0..4 {
        deleted += deletions(&ns, dn).await.map_or(0, |ids| ids.len());
    }
    assert_eq!(
        deleted, 1,
        "one excess copy goes once every holder reported"
    );
}

#[tokio::test]
async fn an_active_promoted_in_start_up_safe_mode_asks_writers_to_retry() {
    let journal = Arc::new(MemoryJournal::new());
    let first = namesystem(Arc::clone(&journal));
    register(&first, 3).await;
    closed_file(&first, "/f", &[100]).await;
    let restarted = |promote: bool| {
        let ns = common::restarted(&journal, true);
        if promote {
            ns.set_standby();
            ns.promote();
        }
        ns
    };
    let create = |ns: Namesystem| async move {
        ns.create(&caller(), "/g", 0o644, "w", false, true, 3, common::BLOCK)
            .await
            .expect_err("its block is not reported yet")
    };
    let promoted = create(restarted(true)).await;
    assert_eq!(
        promoted.kind(),
        rdfs_common::ExceptionKind::Retriable,
        "{promoted}"
    );
    assert!(
        promoted.to_string().contains("Name node is in safe mode"),
        "{promoted}"
    );
    // A namenode without HA, starting up, refuses as HDFS's does.
    let single = create(restarted(false)).await;
    assert_eq!(
        single.kind(),
        rdfs_common::ExceptionKind::SafeMode,
        "{single}"
    );
}

#[tokio::test]
async fn safe_mode_names_the_blocks_it_waits_for() {
    let journal = Arc::new(MemoryJournal::new());
    let first = namesystem(Arc::clone(&journal));
    register(&first, 3).await;
    let blocks = closed_file(&first, "/data/f", &[100]).await;
    let restarted = common::restarted(&journal, true);
    restarted.tick();
    let tip = restarted.safe_mode_tip().expect("in safe mode");
    assert!(
        tip.contains(&format!(
            "blk_{}_{} of /data/f",
            blocks[0].block_id, blocks[0].generation_stamp
        )),
        "{tip}"
    );
}

#[tokio::test]
async fn a_namenode_that_may_not_give_orders_takes_none_from_the_queues() {
    let journal = Arc::new(MemoryJournal::new());
    let ns = namesystem(Arc::clone(&journal));
    register(&ns, 3).await;
    let blocks = closed_file(&ns, "/f", &[100]).await;
    assert!(ns.delete(&caller(), "/f", false).await.expect("delete"));
    let storage = |i: usize| rdfs_namenode::datanode_manager::StorageState {
        storage_id: format!("DS-{i}"),
        capacity: 1 << 40,
        remaining: 1 << 40,
        ..Default::default()
    };
    // Its lease has lapsed, say: the answer would claim standby and the
    // datanode would drop any order in it, so none may leave the queue.
    let answer = ns
        .heartbeat("dn-0", vec![storage(0)], 0, 0, 0, || false)
        .await
        .expect("heartbeat");
    assert!(answer.is_empty(), "{answer:?}");
    let answer = ns
        .heartbeat("dn-0", vec![storage(0)], 0, 0, 0, || true)
        .await
        .expect("heartbeat");
    assert!(
        answer.iter().any(
            |c| matches!(c, DatanodeCommand::Invalidate(b) if b[0].block_id == blocks[0].block_id)
        ),
        "the deletion waited for a namenode that may give orders: {answer:?}"
    );
}
