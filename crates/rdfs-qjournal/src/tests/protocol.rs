//! The protocol on a healthy quorum: format, epochs, writing and reading,
//! fencing, refusals.

use rdfs_common::config::Config;
use rdfs_proto::{GetJournalStateRequest, JournalRequest, JournalRequestInfo, NewEpochRequest};

use super::*;
use crate::{ADDRESS_FILE, QuorumError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_new_epoch_write_and_read_back() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    assert_eq!(client.formatted_stamp().await.expect("stamp"), None);
    client.format(&stamp(), false).await.expect("format");
    assert_eq!(
        client.formatted_stamp().await.expect("stamp"),
        Some(stamp())
    );

    let writer = client
        .new_epoch(&stamp(), "nn1", LONG_LEASE, false)
        .await
        .expect("new epoch");
    assert_eq!(writer.epoch(), 1);
    assert_eq!(writer.recover().await.expect("recover"), 0);
    writer.start_segment(1).await.expect("start");
    write(&writer, 1, 5).await;
    write(&writer, 6, 5).await;
    writer.heartbeat().await.expect("heartbeat");
    assert_eq!(
        txids(&client.read_committed(1, 100).await.expect("read")),
        (1..=10).collect::<Vec<_>>()
    );
    let read = client.read_committed(4, 3).await.expect("read");
    assert_eq!(read, vec![record(4), record(5), record(6)]);

    writer.finalize_segment(1, 10).await.expect("finalize");
    writer.start_segment(11).await.expect("start");
    write(&writer, 11, 2).await;
    writer.heartbeat().await.expect("heartbeat");
    assert_eq!(
        txids(&client.read_committed(5, 100).await.expect("read")),
        (5..=12).collect::<Vec<_>>()
    );
    assert!(
        client
            .read_committed(13, 100)
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(client.last_committed_txid().await.expect("committed"), 12);

    for i in 0..3 {
        let current = cluster.current_dir(i);
        assert_eq!(cluster.segments(i), vec![(1, Some(10)), (11, None)]);
        assert!(current.join("VERSION").exists());
        let promised = std::fs::read_to_string(current.join("last-promised-epoch")).expect("epoch");
        assert_eq!(promised, "1\nwriter=nn1\n");
        let writer_epoch =
            std::fs::read_to_string(current.join("last-writer-epoch")).expect("epoch");
        assert_eq!(writer_epoch.trim(), "1");
        let addresses =
            std::fs::read_to_string(cluster.jns[i].dir.join(ADDRESS_FILE)).expect("addresses");
        assert_eq!(addresses, format!("rpc={}\n", cluster.jns[i].addr));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_epoch_fences_the_old_writer() {
    let (cluster, client) = Cluster::formatted(3).await;
    let old = writer(&client, "nn1").await;
    write(&old, 1, 3).await;

    let new = client
        .new_epoch(&stamp(), "nn2", LONG_LEASE, true)
        .await
        .expect("take over");
    assert_eq!(new.epoch(), 2);
    let err = old.journal(4, 1, framed(4, 1)).await.expect_err("fenced");
    assert!(
        matches!(
            err,
            QuorumError::Fenced {
                ours: 1,
                promised: 2,
                ..
            }
        ),
        "{err}"
    );
    // Once fenced, always fenced.
    assert!(matches!(
        old.heartbeat().await,
        Err(QuorumError::Fenced { .. })
    ));
    assert!(matches!(
        old.finalize_segment(1, 3).await,
        Err(QuorumError::Fenced { .. })
    ));

    assert_eq!(new.recover().await.expect("recover"), 3);
    new.start_segment(4).await.expect("start");
    write(&new, 4, 2).await;
    new.heartbeat().await.expect("heartbeat");
    assert_eq!(
        txids(&client.read_committed(1, 100).await.expect("read")),
        vec![1, 2, 3, 4, 5]
    );

    // A journalnode offered an epoch that is not newer says so.
    let mut raw = cluster.raw(0).await;
    let status = raw
        .new_epoch(NewEpochRequest {
            journal_id: JOURNAL.into(),
            stamp: Some(stamp().to_proto()),
            epoch: 1,
            writer_id: "nn3".into(),
            lease_timeout_ms: 100,
            take_over_held_lease: true,
        })
        .await
        .expect_err("older epoch");
    assert_eq!(
        status.message(),
        "epoch 1 is not newer than the promised epoch 2"
    );
    // And a writer call from an older epoch is told another namenode won.
    let status = raw
        .journal_heartbeat(rdfs_proto::JournalHeartbeatRequest {
            info: Some(JournalRequestInfo {
                journal_id: JOURNAL.into(),
                epoch: 1,
                writer_id: "nn1".into(),
                committed_txid: 3,
            }),
        })
        .await
        .expect_err("fenced");
    assert_eq!(
        status.message(),
        "epoch 1 is older than promised epoch 2; another namenode has taken over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_and_bad_batches_are_refused() {
    let (cluster, client) = Cluster::formatted(3).await;
    let writer = writer(&client, "nn1").await;
    write(&writer, 1, 3).await;
    let err = writer
        .journal(5, 1, framed(5, 1))
        .await
        .expect_err("out of order");
    assert!(matches!(err, QuorumError::Usage(_)), "{err}");
    // The writer returned once a majority held 1..3; journalnode 0 may be
    // the one still catching up, and the refusals below name its next txid.
    eventually("journalnode 0 holds 1..3", || {
        cluster.segment_txids_if_any(0, 1) == vec![1, 2, 3]
    })
    .await;

    let mut raw = cluster.raw(0).await;
    let info = JournalRequestInfo {
        journal_id: JOURNAL.into(),
        epoch: writer.epoch(),
        writer_id: "nn1".into(),
        committed_txid: 3,
    };
    let status = raw
        .journal(JournalRequest {
            info: Some(info.clone()),
            segment_first_txid: 1,
            first_txid: 6,
            num_records: 1,
            records: framed(6, 1).to_vec(),
        })
        .await
        .expect_err("gap");
    assert_eq!(
        status.message(),
        "journal 'ns1' would get a gap: expected txid 4, got 6"
    );
    // Records that do not match what the call announces.
    let mut records = framed(4, 2).to_vec();
    let last = records.len() - 1;
    records[last] ^= 0xff;
    let status = raw
        .journal(JournalRequest {
            info: Some(info.clone()),
            segment_first_txid: 1,
            first_txid: 4,
            num_records: 2,
            records,
        })
        .await
        .expect_err("corrupt batch");
    assert!(
        status.message().contains("checksum"),
        "{}",
        status.message()
    );
    let status = raw
        .journal(JournalRequest {
            info: Some(info),
            segment_first_txid: 1,
            first_txid: 4,
            num_records: 2,
            records: framed(5, 2).to_vec(),
        })
        .await
        .expect_err("txids not as announced");
    assert!(
        status.message().contains("expected txid 4, got 5"),
        "{}",
        status.message()
    );
    // The journalnode is still usable.
    write(&writer, 4, 2).await;
    eventually("journalnode 0 holds 1..5", || {
        cluster.segment_txids_if_any(0, 1) == vec![1, 2, 3, 4, 5]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_what_was_wrong() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let err = client
        .new_epoch(&stamp(), "nn1", LONG_LEASE, false)
        .await
        .expect_err("unformatted");
    assert!(matches!(err, QuorumError::NotFormatted(_)), "{err}");

    client.format(&stamp(), false).await.expect("format");
    // Formatting again before anyone wrote is harmless.
    client.format(&stamp(), false).await.expect("format again");
    let other = NamespaceStamp {
        cluster_id: "CID-b".into(),
        ..stamp()
    };
    let err = client
        .new_epoch(&other, "nn1", LONG_LEASE, false)
        .await
        .expect_err("other cluster");
    assert!(
        err.to_string()
            .contains("journal formatted for cluster CID-a, the namenode belongs to CID-b"),
        "{err}"
    );

    let writer = writer(&client, "nn1").await;
    write(&writer, 1, 2).await;
    let err = client.format(&stamp(), false).await.expect_err("has data");
    assert!(matches!(err, QuorumError::AlreadyFormatted(_)), "{err}");
    client.format(&other, true).await.expect("forced format");
    assert_eq!(client.formatted_stamp().await.expect("stamp"), Some(other));
    assert_eq!(cluster.segments(0), vec![]);

    let mut raw = cluster.raw(0).await;
    for bad in ["", "..", "../etc", "a/b", ".hidden"] {
        let status = raw
            .get_journal_state(GetJournalStateRequest {
                journal_id: bad.into(),
            })
            .await
            .expect_err("bad journal id");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad}");
    }

    // A second journalnode on the same edits dir.
    let mut config = Config::default();
    config.journalnode.edits_dir = cluster.jns[0].dir.clone();
    config.journalnode.rpc_address = "127.0.0.1:0".into();
    let Err(err) = Journalnode::start(&config).await else {
        panic!("two journalnodes share an edits dir");
    };
    assert!(
        err.to_string().contains("in use by another journalnode"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_segments_are_gone_and_readers_are_told() {
    let (cluster, client) = Cluster::formatted(3).await;
    let writer = writer(&client, "nn1").await;
    write(&writer, 1, 5).await;
    writer.finalize_segment(1, 5).await.expect("finalize");
    writer.start_segment(6).await.expect("start");
    write(&writer, 6, 5).await;
    writer.finalize_segment(6, 10).await.expect("finalize");
    writer.start_segment(11).await.expect("start");
    writer.purge_older_than(6).await.expect("purge");
    eventually("every journalnode purged", || {
        (0..3).all(|i| cluster.segments(i) == vec![(6, Some(10)), (11, None)])
    })
    .await;
    let err = client.read_committed(1, 10).await.expect_err("purged");
    assert!(
        matches!(
            err,
            QuorumError::Purged {
                from_txid: 1,
                oldest: 6
            }
        ),
        "{err}"
    );
    assert_eq!(
        txids(&client.read_committed(6, 10).await.expect("read")),
        (6..=10).collect::<Vec<_>>()
    );
}
