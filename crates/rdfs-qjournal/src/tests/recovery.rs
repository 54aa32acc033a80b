//! Recovering a segment the journalnodes hold different lengths of.

use rdfs_proto::{
    AcceptRecoveryRequest, FetchSegmentRequest, JournalRequestInfo, NewEpochRequest,
    PrepareRecoveryRequest, ReadEditsRequest, SegmentStateProto,
};

use super::*;

/// Journalnode 0 holds 1..10, 1 holds 1..7, 2 holds 1..3 of an in-progress
/// segment; only 1..7 were acknowledged by a majority; the writer is gone.
async fn diverged() -> (Cluster, QuorumClient) {
    let (mut cluster, client) = Cluster::formatted(3).await;
    let old = writer(&client, "nn1").await;
    write(&old, 1, 3).await;
    // A majority acknowledged 1..3; journalnode 2 may still be writing them.
    eventually("journalnode 2 wrote 1..3", || {
        cluster.segment_txids_if_any(2, 1) == vec![1, 2, 3]
    })
    .await;
    cluster.stop(2).await;
    write(&old, 4, 4).await;
    cluster.stop(1).await;
    old.journal(8, 3, framed(8, 3))
        .await
        .expect_err("only one journalnode is up");
    eventually("journalnode 0 wrote 8..10", || {
        cluster.segment_txids(0, 1).len() == 10
    })
    .await;
    drop(old);
    cluster.restart(1).await;
    cluster.restart(2).await;
    assert_eq!(cluster.segment_txids(1, 1), (1..=7).collect::<Vec<_>>());
    assert_eq!(cluster.segment_txids(2, 1), vec![1, 2, 3]);
    (cluster, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_edits_survive_and_a_majority_agrees_after_recovery() {
    let (cluster, client) = diverged().await;
    let writer = client
        .new_epoch(&stamp(), "nn2", LONG_LEASE, true)
        .await
        .expect("new epoch");
    let last = writer.recover().await.expect("recover");
    // 8..10 were never acknowledged: whether they survive depends on which
    // majority answered, but 1..7 always do.
    assert!(last == 7 || last == 10, "recovered up to {last}");
    let expected: Vec<TxId> = (1..=last).collect();
    eventually("a majority holds the finalized segment", || {
        (0..3)
            .filter(|i| {
                cluster.segments(*i).contains(&(1, Some(last)))
                    && cluster.segment_txids(*i, 1) == expected
            })
            .count()
            >= 2
    })
    .await;
    let read = client.read_committed(1, 100).await.expect("read");
    assert_eq!(read, (1..=last).map(record).collect::<Vec<_>>());

    writer.start_segment(last + 1).await.expect("start");
    write(&writer, last + 1, 2).await;
    writer.heartbeat().await.expect("heartbeat");
    assert_eq!(
        client.read_committed(1, 100).await.expect("read").len() as u64,
        last + 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_writer_finishes_an_interrupted_recovery_the_same_way() {
    let (cluster, client) = diverged().await;
    // Writer 2 by hand: epoch 2 everywhere, prepare on journalnodes 1 and
    // 2 (a majority without the longest copy), choose 1..7, accept it on
    // both, and die before finalizing.
    let info = JournalRequestInfo {
        journal_id: JOURNAL.into(),
        epoch: 2,
        writer_id: "nn2".into(),
        committed_txid: 0,
    };
    for i in 0..3 {
        cluster
            .raw(i)
            .await
            .new_epoch(NewEpochRequest {
                journal_id: JOURNAL.into(),
                stamp: Some(stamp().to_proto()),
                epoch: 2,
                writer_id: "nn2".into(),
                lease_timeout_ms: 100,
                take_over_held_lease: true,
            })
            .await
            .expect("epoch 2");
    }
    let mut states = Vec::new();
    for i in [1, 2] {
        let prepared = cluster
            .raw(i)
            .await
            .prepare_recovery(PrepareRecoveryRequest {
                info: Some(info.clone()),
                segment_txid: 1,
            })
            .await
            .expect("prepare")
            .into_inner();
        states.push(prepared.segment_state.expect("has edits").last_txid);
    }
    assert_eq!(states, vec![7, 3]);
    let mut fetched = cluster
        .raw(1)
        .await
        .fetch_segment(FetchSegmentRequest {
            info: Some(info.clone()),
            first_txid: 1,
            last_txid: 7,
        })
        .await
        .expect("fetch")
        .into_inner();
    let mut edits = Vec::new();
    while let Some(chunk) = fetched.message().await.expect("chunk") {
        edits.extend(chunk.records);
    }
    let chosen = SegmentStateProto {
        first_txid: 1,
        last_txid: 7,
        in_progress: true,
        // Writer 1's edits.
        epoch: 1,
    };
    for (i, records) in [(1, Vec::new()), (2, edits)] {
        let head = AcceptRecoveryRequest {
            info: Some(info.clone()),
            segment_state: Some(chosen),
            records: Vec::new(),
        };
        let data = AcceptRecoveryRequest {
            info: None,
            segment_state: None,
            records,
        };
        cluster
            .raw(i)
            .await
            .accept_recovery(tokio_stream::iter(vec![head, data]))
            .await
            .expect("accept");
    }
    assert_eq!(cluster.segment_txids(2, 1), (1..=7).collect::<Vec<_>>());

    // Whichever majority answers writer 3, the decision of epoch 2 stands.
    let writer = client
        .new_epoch(&stamp(), "nn3", LONG_LEASE, true)
        .await
        .expect("epoch 3");
    assert_eq!(writer.epoch(), 3);
    assert_eq!(writer.recover().await.expect("recover"), 7);
    // Finalizing also removes the accepted decisions: the finalized
    // segment is the decision from then on.
    let paxos_empty = |i: usize| {
        std::fs::read_dir(cluster.current_dir(i).join("paxos"))
            .expect("paxos dir")
            .next()
            .is_none()
    };
    eventually("every journalnode holds 1..7 finalized", || {
        (0..3).all(|i| {
            cluster.segments(i).contains(&(1, Some(7)))
                && cluster.segment_txids(i, 1) == (1..=7).collect::<Vec<_>>()
                && paxos_empty(i)
        })
    })
    .await;
    assert_eq!(
        client.read_committed(1, 100).await.expect("read"),
        (1..=7).map(record).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_cut_short_by_a_crash_is_finished_at_start_up() {
    let (mut cluster, client) = Cluster::formatted(1).await;
    let writer = writer(&client, "nn1").await;
    write(&writer, 1, 2).await;
    drop(writer);
    cluster.stop(0).await;
    // The state a crash leaves between persisting the decision and moving
    // the downloaded edits into place.
    let current = cluster.current_dir(0);
    let mut staged = segment::header(1).to_vec();
    staged.extend_from_slice(&framed(1, 5));
    std::fs::write(current.join("paxos").join("1.epoch-1.edits"), staged).expect("staged");
    std::fs::write(
        current.join("paxos").join("1"),
        "acceptedInEpoch=1\nfirstTxid=1\nlastTxid=5\ninProgress=true\nsegmentEpoch=1\n",
    )
    .expect("decision");
    cluster.restart(0).await;
    assert_eq!(cluster.segment_txids(0, 1), vec![1, 2, 3, 4, 5]);
    let writer = client
        .new_epoch(&stamp(), "nn2", LONG_LEASE, true)
        .await
        .expect("new epoch");
    assert_eq!(writer.recover().await.expect("recover"), 5);
}

/// One edit at `txid`, marked so that what two writers put under the same
/// txid differs.
fn marked(txid: TxId, mark: u32) -> Bytes {
    let record = EditRecord {
        txid,
        op: Some(Op::SetReplication(SetReplication {
            inode_id: 20_000 + u64::from(mark),
            replication: mark,
        })),
        ..Default::default()
    };
    let mut out = Vec::new();
    segment::encode_record(&record, &mut out);
    Bytes::from(out)
}

/// The recipe: a segment started on every journalnode, an edit
/// that reached only journalnode 2 before it went away too, a new writer
/// that recovered without it (the segment empty on the others) and wrote
/// other edits under the same txid, then journalnode 2 back for the roll.
/// Before segments named their epoch, journalnode 2 finalized its own edit
/// and served it to readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_no_majority_took_are_never_finalized_or_served_after_a_recovery_without_them() {
    let (mut cluster, client) = Cluster::formatted(3).await;
    let old = writer(&client, "nn1").await;
    write(&old, 1, 2).await;
    old.finalize_segment(1, 2).await.expect("roll");
    old.start_segment(3).await.expect("segment 3");
    eventually("every journalnode opened segment 3", || {
        (0..3).all(|i| cluster.segments(i).contains(&(3, None)))
    })
    .await;
    cluster.stop(0).await;
    cluster.stop(1).await;
    old.journal(3, 1, marked(3, 1))
        .await
        .expect_err("one journalnode is not a majority");
    eventually("journalnode 2 holds the unacknowledged edit", || {
        cluster.segment_txids_if_any(2, 3) == vec![3]
    })
    .await;
    drop(old);
    cluster.stop(2).await;
    cluster.restart(0).await;
    cluster.restart(1).await;

    let new = client
        .new_epoch(&stamp(), "nn2", LONG_LEASE, true)
        .await
        .expect("epoch 2");
    assert_eq!(
        new.recover().await.expect("recover"),
        2,
        "segment 3 is empty on 0 and 1"
    );
    new.start_segment(3).await.expect("segment 3 again");
    new.journal(3, 1, marked(3, 2)).await.expect("acknowledged");
    cluster.restart(2).await;
    new.finalize_segment(3, 3).await.expect("roll");
    new.start_segment(4).await.expect("segment 4");
    new.journal(4, 1, marked(4, 2)).await.expect("acknowledged");
    new.heartbeat().await.expect("heartbeat");

    let finalized = |i: usize| -> Option<Vec<u8>> {
        let path = cluster.current_dir(i).join(segment::finalized_name(3, 3));
        std::fs::read(path).ok()
    };
    let reference = finalized(0).expect("journalnode 0 finalized segment 3");
    for i in 1..3 {
        if let Some(bytes) = finalized(i) {
            assert_eq!(
                bytes, reference,
                "journalnode {i}'s copy of segment 3 differs"
            );
        }
    }
    // A standby that reaches only journalnode 2 never reads the old edit.
    let mut raw = cluster.raw(2).await;
    let mut stream = raw
        .read_edits(ReadEditsRequest {
            journal_id: JOURNAL.into(),
            from_txid: 3,
            max_records: 10,
        })
        .await
        .expect("read")
        .into_inner();
    let mut served = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        served.extend(segment::decode_records(&chunk.records).expect("records"));
    }
    let acknowledged = segment::decode_records(&marked(3, 2)).expect("record");
    assert!(
        served.is_empty() || served[0] == acknowledged[0],
        "journalnode 2 served {served:?}"
    );
    // And every reader gets the acknowledged edits.
    let read = client.read_committed(3, 10).await.expect("read");
    assert_eq!(read[0], acknowledged[0]);
}
