//! A minority of journalnodes down, silent or failing must not stop the
//! writer, and must be able to rejoin; a reader never sees an edit a
//! majority did not acknowledge.

use std::time::Instant;

use super::*;
use crate::QuorumError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_on_with_a_journalnode_down_and_it_rejoins_at_the_next_segment() {
    let (mut cluster, client) = Cluster::formatted(3).await;
    let writer = writer(&client, "nn1").await;
    write(&writer, 1, 3).await;
    // A majority acknowledged 1..3; journalnode 2 may still be writing them.
    eventually("journalnode 2 wrote 1..3", || {
        cluster.segment_txids_if_any(2, 1) == vec![1, 2, 3]
    })
    .await;
    cluster.stop(2).await;
    write(&writer, 4, 3).await;
    writer.heartbeat().await.expect("heartbeat with one down");
    eventually("the writer skips the stopped journalnode", || {
        !writer.out_of_sync().is_empty()
    })
    .await;
    let lagging = writer.out_of_sync();
    assert_eq!(lagging.len(), 1);
    assert_eq!(lagging[0].0, cluster.jns[2].addr);

    // Back, but it missed 4..6: it sits out the rest of this segment.
    cluster.restart(2).await;
    write(&writer, 7, 2).await;
    writer.finalize_segment(1, 8).await.expect("finalize");
    assert_eq!(cluster.segments(2), vec![(1, None)]);
    assert_eq!(cluster.segment_txids(2, 1), vec![1, 2, 3]);

    writer.start_segment(9).await.expect("start");
    write(&writer, 9, 4).await;
    eventually("the restarted journalnode caught the new segment", || {
        cluster.segments(2).contains(&(9, None))
            && cluster.segment_txids(2, 9) == vec![9, 10, 11, 12]
    })
    .await;
    assert!(writer.out_of_sync().is_empty());
    writer.heartbeat().await.expect("heartbeat");
    assert_eq!(
        txids(&client.read_committed(1, 100).await.expect("read")),
        (1..=12).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_journalnode_does_not_stall_writes() {
    let (cluster, _) = Cluster::formatted(3).await;
    // Accepts connections (the kernel does) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut uri = cluster.uri();
    uri.journalnodes[2] = silent.local_addr().expect("addr").to_string();
    let client = QuorumClient::new(&uri, TIMEOUT);
    let writer = writer(&client, "nn1").await;
    let started = Instant::now();
    for batch in 0..20 {
        write(&writer, 1 + batch * 5, 5).await;
    }
    writer.heartbeat().await.expect("heartbeat");
    assert!(
        started.elapsed() < TIMEOUT,
        "20 batches took {:?} with one journalnode silent",
        started.elapsed()
    );
    assert_eq!(
        client.read_committed(1, 1000).await.expect("read").len(),
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_is_undone_and_the_journalnode_stays_usable() {
    let (cluster, client) = Cluster::formatted(3).await;
    let writer = writer(&client, "nn1").await;
    write(&writer, 1, 3).await;
    // A majority acknowledged 1..3; this journalnode may still be writing
    // them, and the injected failure must hit the next batch, not this one.
    eventually("journalnode 0 holds 1..3", || {
        cluster.segments(0).contains(&(1, None)) && cluster.segment_txids(0, 1) == vec![1, 2, 3]
    })
    .await;
    let path = cluster.current_dir(0).join(segment::in_progress_name(1));
    let before = std::fs::metadata(&path).expect("segment").len();

    cluster.journal(0).fail_next_appends(1);
    write(&writer, 4, 3).await;
    eventually("the failed journalnode drops out of sync", || {
        !writer.out_of_sync().is_empty()
    })
    .await;
    assert_eq!(std::fs::metadata(&path).expect("segment").len(), before);
    let lagging = writer.out_of_sync();
    assert_eq!(lagging.len(), 1);
    assert!(
        lagging[0].1.contains("no space left on device (injected)")
            && lagging[0].1.contains(&path.display().to_string()),
        "{lagging:?}"
    );

    writer
        .finalize_segment(1, 6)
        .await
        .expect("finalize on the others");
    writer.start_segment(7).await.expect("start");
    write(&writer, 7, 3).await;
    eventually("the journalnode took the next segment", || {
        cluster.segments(0).contains(&(7, None)) && cluster.segment_txids(0, 7) == vec![7, 8, 9]
    })
    .await;
    assert_eq!(cluster.segment_txids(0, 1), vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_edits_a_majority_did_not_acknowledge() {
    let (mut cluster, client) = Cluster::formatted(3).await;
    let writer = writer(&client, "nn1").await;
    write(&writer, 1, 5).await;
    // The journalnodes learn that 1..5 are committed with the next call.
    assert!(
        client
            .read_committed(1, 100)
            .await
            .expect("read")
            .is_empty()
    );
    writer.heartbeat().await.expect("heartbeat");
    assert_eq!(client.read_committed(1, 100).await.expect("read").len(), 5);

    cluster.stop(1).await;
    cluster.stop(2).await;
    let err = writer
        .journal(6, 3, framed(6, 3))
        .await
        .expect_err("one of three");
    assert!(
        matches!(err, QuorumError::NoQuorum { needed: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&cluster.jns[1].addr), "{err}");
    assert!(matches!(
        writer.journal(9, 1, framed(9, 1)).await,
        Err(QuorumError::WriterFailed { .. })
    ));
    cluster.restart(1).await;
    cluster.restart(2).await;
    // Journalnode 0 holds 6..8 (the call failed as soon as the other two
    // refused, maybe before it wrote them), but only 1..5 were
    // acknowledged.
    eventually("journalnode 0 wrote 6..8", || {
        cluster.segment_txids_if_any(0, 1) == (1..=8).collect::<Vec<_>>()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            txids(&client.read_committed(1, 100).await.expect("read")),
            vec![1, 2, 3, 4, 5]
        );
    }
}
