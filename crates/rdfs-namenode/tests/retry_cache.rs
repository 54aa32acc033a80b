//! At-most-once calls retried with the same call ids get the first
//! attempt's answer — from the namenode that ran them, and from a standby
//! that tailed their edits and took over — rather than running again.

use std::sync::Arc;

use rdfs_namenode::edit_log::{MemoryJournal, RpcId};
use rdfs_namenode::namesystem::{Caller, Namesystem, empty_state};
use tokio_util::sync::CancellationToken;

mod common;

use common::{BLOCK, closed_file, config, info, register};

fn namesystem(journal: Arc<MemoryJournal>) -> Namesystem {
    common::namesystem_with(journal, config())
}

/// A caller making call `call_id` of one client.
fn call(call_id: i32) -> Caller {
    Caller {
        rpc: Some(RpcId {
            client_id: [9; 16],
            call_id,
        }),
        ..common::caller()
    }
}

#[tokio::test]
async fn retried_calls_get_the_first_answer_instead_of_running_again() {
    let ns = namesystem(Arc::new(MemoryJournal::new()));
    register(&ns, 3).await;
    closed_file(&ns, "/gone", &[10]).await;
    closed_file(&ns, "/moved", &[10]).await;
    closed_file(&ns, "/log", &[10]).await;

    assert!(ns.delete(&call(1), "/gone", false).await.expect("delete"));
    assert!(
        ns.delete(&call(1), "/gone", false).await.expect("retried"),
        "a retried delete reports the deletion it made"
    );
    assert!(
        !ns.delete(&call(2), "/gone", false).await.expect("new call"),
        "a new call runs"
    );

    assert!(
        ns.rename(&call(3), "/moved", "/there")
            .await
            .expect("rename")
    );
    assert!(
        ns.rename(&call(3), "/moved", "/there")
            .await
            .expect("retried")
    );

    let first = ns
        .append(&call(4), "/log", "writer-2")
        .await
        .expect("append");
    let again = ns
        .append(&call(4), "/log", "writer-2")
        .await
        .expect("a retried append answers as the first did, not 'already being created'");
    assert_eq!(first, again);

    let created = ns
        .create(&call(5), "/new", 0o644, "writer-3", false, true, 3, BLOCK)
        .await
        .expect("create");
    let retried = ns
        .create(&call(5), "/new", 0o644, "writer-3", false, true, 3, BLOCK)
        .await
        .expect("retried create");
    assert_eq!(created, retried);
    let (entries, bytes) = ns.retry_cache_usage();
    assert_eq!(entries, 4);
    assert!(bytes > 0);
}

#[tokio::test]
async fn a_standby_that_tailed_the_edits_answers_retries_once_active() {
    let journal = Arc::new(MemoryJournal::new());
    let active = namesystem(Arc::clone(&journal));
    register(&active, 3).await;
    closed_file(&active, "/gone", &[10]).await;
    closed_file(&active, "/log", &[10]).await;
    assert!(
        active
            .delete(&call(1), "/gone", true)
            .await
            .expect("delete")
    );
    let appended = active
        .append(&call(2), "/log", "writer-2")
        .await
        .expect("append");

    // The standby applies the active's edits, then takes over; the client
    // never got its answers and retries there.
    let standby_journal = Arc::new(MemoryJournal::new());
    let standby = Namesystem::new(
        info(),
        config(),
        empty_state(&info(), &config(), "", "", 0),
        standby_journal,
        CancellationToken::new(),
        false,
    );
    standby.set_standby();
    standby.apply_tailed(&journal.records()).expect("tail");
    standby.promote();
    register(&standby, 3).await;
    assert!(
        standby
            .delete(&call(1), "/gone", true)
            .await
            .expect("retried delete"),
        "the retry must report the deletion the old active made"
    );
    let retried = standby
        .append(&call(2), "/log", "writer-2")
        .await
        .expect("the retried append is answered, not refused");
    assert_eq!(retried.status, appended.status);
}
