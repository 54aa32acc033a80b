//! The leadership lease: no new epoch while the writer keeps in touch.

use std::sync::Arc;

use super::*;
use crate::QuorumError;

const LEASE: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_epoch_waits_for_the_lease_unless_taken_over() {
    let (_cluster, client) = Cluster::formatted(3).await;
    let active = client
        .new_epoch(&stamp(), "nn1", LEASE, false)
        .await
        .expect("first epoch: no lease to wait for");
    active.recover().await.expect("recover");
    active.start_segment(1).await.expect("start");
    let active = Arc::new(active);
    let renewing = Arc::clone(&active);
    let renewer = tokio::spawn(async move {
        loop {
            renewing.heartbeat().await.expect("renew");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    tokio::time::sleep(LEASE + Duration::from_millis(100)).await;

    let view = client.lease_view(LEASE).await.expect("view");
    assert!(view.held, "{view:?}");
    assert_eq!((view.epoch, view.writer.as_str()), (1, "nn1"));
    assert!(
        view.remaining_ms > 0 && view.remaining_ms <= 300,
        "{view:?}"
    );
    let standby = client.clone();
    let err = standby
        .new_epoch(&stamp(), "nn2", LEASE, false)
        .await
        .expect_err("lease held");
    assert!(
        matches!(&err, QuorumError::LeaseHeld { writer, remaining_ms } if writer == "nn1" && *remaining_ms > 0),
        "{err}"
    );
    assert!(active.expires_soon_after_now());

    renewer.abort();
    let _ = renewer.await;
    tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
    let view = client.lease_view(LEASE).await.expect("view");
    assert!(!view.held, "{view:?}");
    let taken = standby
        .new_epoch(&stamp(), "nn2", LEASE, false)
        .await
        .expect("lease lapsed");
    assert_eq!(taken.epoch(), 2);
    assert!(matches!(
        active.heartbeat().await,
        Err(QuorumError::Fenced {
            ours: 1,
            promised: 2,
            ..
        })
    ));
    // An operator's forced failover does not wait.
    let forced = client
        .new_epoch(&stamp(), "nn1", LEASE, true)
        .await
        .expect("take over");
    assert_eq!(forced.epoch(), 3);
}

trait LeaseCheck {
    fn expires_soon_after_now(&self) -> bool;
}

impl LeaseCheck for QuorumWriter {
    /// The writer's own view of its lease runs about one lease from its
    /// last acknowledged call.
    fn expires_soon_after_now(&self) -> bool {
        let left = self
            .lease_expires_at()
            .saturating_duration_since(rdfs_common::time::BootInstant::now());
        left > Duration::ZERO && left <= LEASE
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_with_a_shorter_lease_still_waits_out_the_holders() {
    let (_cluster, client) = Cluster::formatted(3).await;
    let holder_lease = Duration::from_millis(1_500);
    let holder = client
        .new_epoch(&stamp(), "nn1", holder_lease, false)
        .await
        .expect("first epoch");
    holder.recover().await.expect("recover");
    // The holder goes silent; a candidate configured with a much shorter
    // lease must not take over before the holder's own lease is over.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = client
        .new_epoch(&stamp(), "nn2", Duration::from_millis(100), false)
        .await
        .expect_err("the holder's lease still runs");
    assert!(err.to_string().contains("nn1"), "{err}");
    tokio::time::sleep(holder_lease).await;
    let taken = client
        .new_epoch(&stamp(), "nn2", Duration::from_millis(100), false)
        .await
        .expect("the holder's lease is over");
    assert!(taken.epoch() > holder.epoch());
}
