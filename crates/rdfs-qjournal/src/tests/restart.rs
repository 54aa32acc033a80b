//! What survives a journalnode restart.

use std::io::Write;

use proptest::prelude::*;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_epoch_and_segments_and_cuts_a_torn_tail() {
    let (mut cluster, client) = Cluster::formatted(3).await;
    let writer = writer(&client, "nn1").await;
    write(&writer, 1, 4).await;
    writer.finalize_segment(1, 4).await.expect("finalize");
    writer.start_segment(5).await.expect("start");
    write(&writer, 5, 3).await;
    eventually("every journalnode wrote 5..7", || {
        (0..3).all(|i| cluster.segment_txids(i, 5) == vec![5, 6, 7])
    })
    .await;
    drop(writer);

    cluster.stop(0).await;
    let path = cluster.current_dir(0).join(segment::in_progress_name(5));
    let whole = std::fs::metadata(&path).expect("segment").len();
    // Half a record, as a crash in the middle of an append leaves.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    let torn = framed(8, 1);
    file.write_all(&torn[..torn.len() / 2]).expect("torn write");
    drop(file);
    cluster.restart(0).await;
    assert_eq!(std::fs::metadata(&path).expect("segment").len(), whole);

    let state = cluster.journal(0).journal_state().expect("state");
    assert_eq!(state.last_promised_epoch, 1);
    assert_eq!(state.writer_id, "nn1");
    assert_eq!(state.last_writer_epoch, 1);
    assert_eq!(state.highest_txid, 7);
    assert_eq!(state.last_segment_txid, 5);
    assert!(state.writer_silent_ms.is_some_and(|ms| ms < 5_000));
    assert_eq!(cluster.segments(0), vec![(1, Some(4)), (5, None)]);

    let writer = client
        .new_epoch(&stamp(), "nn2", LONG_LEASE, true)
        .await
        .expect("new epoch");
    assert_eq!(writer.epoch(), 2);
    assert_eq!(writer.recover().await.expect("recover"), 7);
    assert_eq!(
        txids(&client.read_committed(1, 100).await.expect("read")),
        (1..=7).collect::<Vec<_>>()
    );
}

/// Writes `batches` (sizes), rolling a segment after each batch in `rolls`,
/// restarts the journalnode, and reads everything back through a new writer.
async fn survive_restart(batches: Vec<u64>, rolls: Vec<bool>) {
    let (mut cluster, client) = Cluster::formatted(1).await;
    let writer = writer(&client, "nn1").await;
    let mut next = 1;
    let mut segment_first = 1;
    for (size, roll) in batches
        .iter()
        .zip(rolls.iter().chain(std::iter::repeat(&false)))
    {
        write(&writer, next, *size).await;
        next += size;
        if *roll {
            writer
                .finalize_segment(segment_first, next - 1)
                .await
                .expect("finalize");
            writer.start_segment(next).await.expect("start");
            segment_first = next;
        }
    }
    drop(writer);
    cluster.restart(0).await;
    let writer = client
        .new_epoch(&stamp(), "nn2", LONG_LEASE, true)
        .await
        .expect("new epoch");
    assert_eq!(writer.recover().await.expect("recover"), next - 1);
    let read = client.read_committed(1, 10_000).await.expect("read");
    assert_eq!(read, (1..next).map(record).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn random_batches_survive_a_restart(
        batches in proptest::collection::vec(1u64..40, 1..12),
        rolls in proptest::collection::vec(any::<bool>(), 0..12),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(survive_restart(batches, rolls));
    }
}
