//! Damage and death: corrupted and truncated replicas, killed and paused
//! datanodes, a datanode of another cluster, and packets that do not match
//! their checksums.

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use bytes::Bytes;
use rdfs_proto as pb;
use rdfs_proto::data_transfer_client::DataTransferClient;
use rdfs_proto::write_block_frame::Frame;
use rdfs_proto::write_block_reply::Reply;

use crate::harness::{MiniCluster, test_bytes};

fn overwrite(path: &std::path::Path, offset: u64, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open replica");
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.write_all(bytes).expect("write");
    file.sync_all().expect("sync");
}

/// A replica whose bytes were altered on disk: every read still returns
/// the right bytes, and the namenode learns which replica is corrupt.
#[test]
fn altered_replica_is_skipped_and_reported() {
    let cluster = MiniCluster::builder().start();
    let data = test_bytes(1_500_000, 10);
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", "/f"], Some(&data))
        .ok();
    let block = cluster.block_ids("/f")[0];
    let (_, victim, _) = cluster
        .replica_files(block)
        .into_iter()
        .next()
        .expect("a replica");
    overwrite(&victim, 700_000, b"garbage!");

    // Readers pick replicas at random; read until one meets the damaged copy.
    let mut reads = 0;
    cluster.wait_until(
        "the namenode to learn of the corrupt replica",
        Duration::from_secs(60),
        || {
            let cat = cluster.dfs(&["-cat", "/f"]);
            cat.ok();
            assert!(cat.stdout == data, "a read returned wrong bytes");
            assert!(
                !cat.stderr.contains("ERROR"),
                "the reader saw an error: {}",
                cat.stderr
            );
            reads += 1;
            cluster.report_value("Blocks with corrupt replicas") == 1
        },
    );
    let fsck = cluster
        .rdfs("fsck", &["/", "-files", "-blocks", "-replicaDetails"])
        .stdout();
    assert!(fsck.contains("(CORRUPT)"), "{fsck}");
    assert!(fsck.contains("Live_repl=2"), "{fsck}");
}

/// A block file cut short, and a meta file cut short, are corrupt replicas:
/// reads go to good copies and the datanodes report the damage.
#[test]
fn truncated_block_and_meta_files_are_corrupt_replicas() {
    let mut cluster = MiniCluster::builder().start();
    let data = test_bytes(900_000, 11);
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", "/t"], Some(&data))
        .ok();
    let block = cluster.block_ids("/t")[0];
    let replicas = cluster.replica_files(block);
    assert_eq!(replicas.len(), 3);
    // Truncate one block file while its datanode runs.
    let (_, block_file, _) = &replicas[0];
    std::fs::OpenOptions::new()
        .write(true)
        .open(block_file)
        .and_then(|f| f.set_len(1000))
        .expect("truncate");
    // Truncate another replica's meta file, then restart that datanode so
    // its start-up scan finds it.
    let (meta_index, _, meta_file) = replicas[1].clone();
    cluster.kill_datanode(meta_index);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&meta_file)
        .and_then(|f| f.set_len(10))
        .expect("truncate meta");
    cluster.start_datanode(meta_index);
    cluster.wait_live_datanodes(3);

    cluster.wait_until(
        "both damaged replicas to be reported",
        Duration::from_secs(60),
        || {
            let cat = cluster.dfs(&["-cat", "/t"]);
            cat.ok();
            assert!(cat.stdout == data, "a read returned wrong bytes");
            let fsck = cluster
                .rdfs("fsck", &["/t", "-files", "-blocks", "-replicaDetails"])
                .stdout();
            fsck.matches("(CORRUPT)").count() == 2
        },
    );
    for daemon in cluster.datanodes.iter().flatten() {
        let log = daemon.log_text();
        assert!(
            !log.contains("panicked"),
            "{} panicked:\n{log}",
            daemon.name
        );
    }
}

/// With one datanode killed, every file is still readable.
#[test]
fn every_file_readable_after_a_datanode_is_killed() {
    let mut cluster = MiniCluster::builder().start();
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            (
                format!("/k/{i}"),
                test_bytes(600_000 + i * 333_333, 20 + i as u64),
            )
        })
        .collect();
    for (path, data) in &files {
        cluster
            .rdfs_with_stdin("dfs", &["-put", "-", path], Some(data))
            .ok();
    }
    cluster.kill_datanode(1);
    for (path, data) in &files {
        let cat = cluster.dfs(&["-cat", path]);
        cat.ok();
        assert!(
            cat.stdout == *data,
            "{path} read back wrong after a datanode died"
        );
    }
    // The namenode declares it dead and new writes avoid it.
    cluster.wait_live_datanodes(2);
    let data = test_bytes(50_000, 30);
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", "/after"], Some(&data))
        .ok();
    assert!(cluster.dfs(&["-cat", "/after"]).stdout == data);
}

/// A paused (SIGSTOPped) datanode costs a timeout and a switch to another
/// replica, never a hang or wrong bytes.
#[test]
fn reads_get_past_a_paused_datanode() {
    let cluster = MiniCluster::builder()
        .conf("client.socket_timeout_ms", "2000")
        .start();
    let data = test_bytes(400_000, 40);
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", "/p"], Some(&data))
        .ok();
    cluster.datanode(0).signal(libc::SIGSTOP);
    for _ in 0..3 {
        let cat = cluster.dfs(&["-D", "client.socket_timeout_ms=2000", "-cat", "/p"]);
        cat.ok();
        assert!(cat.stdout == data);
    }
    cluster.datanode(0).signal(libc::SIGCONT);
}

/// A datanode whose volumes belong to another cluster is refused with a
/// message that says so, and exits.
#[test]
fn datanode_of_another_cluster_is_refused() {
    let mut cluster = MiniCluster::builder().datanodes(1).start();
    let mut other = MiniCluster::builder().datanodes(1).start();
    // Give a new datanode of this cluster the (formatted) volumes of the other's.
    let index = cluster.datanodes.len();
    cluster.datanodes.push(None);
    other.kill_datanode(0);
    for (from, to) in other.data_dirs(0).iter().zip(cluster.data_dirs(index)) {
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::rename(from, &to).expect("move volume");
        let _ = std::fs::remove_file(to.join("in_use.lock"));
    }
    let mut daemon = cluster.spawn_datanode(index);
    let code = daemon.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(1), "the datanode should exit with an error");
    let log = daemon.log_text();
    assert!(log.contains("Incompatible clusterIDs"), "{log}");
    assert_eq!(cluster.live_datanodes(), 1);
}

/// Talks to a datanode directly: a packet whose checksum does not match is
/// rejected with ERROR_CHECKSUM, as is a packet out of order, and neither
/// leaves a finalized replica behind.
#[test]
fn datanode_rejects_bad_packets() {
    // Hand-made pipeline frames, for the pipeline's own checks: block
    // tokens (tested in `block_tokens`) would refuse them first.
    let cluster = MiniCluster::builder()
        .datanodes(1)
        .replication(1)
        .conf("security.block_access_token_enable", "false")
        .start();
    cluster
        .rdfs_with_stdin("dfs", &["-put", "-", "/seed"], Some(b"seed"))
        .ok();
    let client = cluster.client();
    let located = cluster
        .block_on(client.get_block_locations("/seed", 0, u64::MAX))
        .expect("locations");
    let pool_id = located.blocks[0].block.pool_id.clone();
    let xfer = located.blocks[0].locations[0].id.xfer_addr();

    let attempt = |block_id: i64, packets: Vec<pb::Packet>| -> Vec<pb::WriteBlockReply> {
        cluster.block_on(async {
            let channel = rdfs_common::grpc::endpoint(&xfer, Duration::from_secs(3))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect");
            let mut dn = DataTransferClient::new(channel);
            let header = pb::WriteBlockHeader {
                block: Some(pb::ExtendedBlock {
                    pool_id: pool_id.clone(),
                    block_id,
                    generation_stamp: 1,
                    num_bytes: 1 << 20,
                }),
                checksum_type: pb::ChecksumType::ChecksumCrc32c as i32,
                bytes_per_checksum: 512,
                ..Default::default()
            };
            let mut frames = vec![pb::WriteBlockFrame {
                frame: Some(Frame::Header(header)),
            }];
            frames.extend(packets.into_iter().map(|p| pb::WriteBlockFrame {
                frame: Some(Frame::Packet(p)),
            }));
            let mut replies = dn
                .write_block(tokio_stream::iter(frames))
                .await
                .expect("write_block")
                .into_inner();
            let mut out = Vec::new();
            while let Ok(Some(reply)) =
                tokio::time::timeout(Duration::from_secs(10), replies.message())
                    .await
                    .expect("reply in time")
            {
                out.push(reply);
            }
            out
        })
    };
    let data = Bytes::from(test_bytes(4096, 50));
    let good_sums = Bytes::from(rdfs_common::checksum::DataChecksum::crc32c(512).compute(&data));
    let mut bad_sums = good_sums.to_vec();
    bad_sums[9] ^= 0xff;

    let replies = attempt(
        7_000_001,
        vec![pb::Packet {
            seqno: 0,
            offset_in_block: 0,
            data: data.clone(),
            checksums: Bytes::from(bad_sums),
            ..Default::default()
        }],
    );
    let statuses: Vec<Vec<i32>> = replies
        .iter()
        .filter_map(|r| match &r.reply {
            Some(Reply::Ack(ack)) => Some(ack.replies.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![vec![pb::TransferStatus::ErrorChecksum as i32]],
        "{replies:?}"
    );

    let replies = attempt(
        7_000_002,
        vec![
            pb::Packet {
                seqno: 0,
                offset_in_block: 0,
                data: data.clone(),
                checksums: good_sums.clone(),
                ..Default::default()
            },
            pb::Packet {
                seqno: 5,
                offset_in_block: 4096,
                data: data.clone(),
                checksums: good_sums.clone(),
                ..Default::default()
            },
        ],
    );
    let acks: Vec<(i64, Vec<i32>, String)> = replies
        .iter()
        .filter_map(|r| match &r.reply {
            Some(Reply::Ack(ack)) => Some((ack.seqno, ack.replies.clone(), ack.message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert_eq!(acks[0].1, vec![pb::TransferStatus::Success as i32]);
    assert_eq!(acks[1].1, vec![pb::TransferStatus::ErrorInvalid as i32]);
    assert!(acks[1].2.contains("out of order"), "{:?}", acks[1]);

    for block_id in [7_000_001, 7_000_002] {
        assert!(
            cluster.replica_files(block_id).is_empty(),
            "block {block_id} must not be finalized"
        );
    }
    // The datanode is still healthy and serving.
    let data = test_bytes(10_000, 51);
    cluster
        .rdfs_with_stdin(
            "dfs",
            &["-D", "dfs.replication=1", "-put", "-", "/after"],
            Some(&data),
        )
        .ok();
    assert!(cluster.dfs(&["-cat", "/after"]).stdout == data);
}

/// Files written with CRC32 (what the Go client asks for) and with 1024
/// bytes per checksum: each replica records its checksum in its meta
/// header, reads verify against it, and a byte altered on disk is caught.
#[test]
fn crc32_and_1024_byte_chunks_are_verified_end_to_end() {
    let cluster = MiniCluster::builder().datanodes(1).replication(1).start();
    let cases = [
        ("/crc32", "CRC32", "512", 1u8, 512u32),
        ("/crc32c-1k", "CRC32C", "1024", 2, 1024),
        ("/crc32-1k", "crc32", "1024", 1, 1024),
    ];
    for (i, (path, kind, bpc, type_id, chunk)) in cases.into_iter().enumerate() {
        let data = test_bytes(300_001, 40 + i as u64);
        let checksum_type = format!("dfs.checksum.type={kind}");
        let bytes_per_checksum = format!("dfs.bytes-per-checksum={bpc}");
        cluster
            .rdfs_with_stdin(
                "dfs",
                &[
                    "-D",
                    &checksum_type,
                    "-D",
                    &bytes_per_checksum,
                    "-put",
                    "-",
                    path,
                ],
                Some(&data),
            )
            .ok();
        assert!(
            cluster.dfs(&["-cat", path]).stdout == data,
            "{path} reads back"
        );
        let block = cluster.block_ids(path)[0];
        let (_, block_file, meta_file) = cluster
            .replica_files(block)
            .into_iter()
            .next()
            .expect("the replica");
        let meta = std::fs::read(&meta_file).expect("meta file");
        assert_eq!(meta[2], type_id, "{path}: checksum type in the meta header");
        assert_eq!(
            u32::from_be_bytes([meta[3], meta[4], meta[5], meta[6]]),
            chunk,
            "{path}: bytes per checksum in the meta header"
        );
        assert_eq!(
            meta.len(),
            7 + 300_001usize.div_ceil(chunk as usize) * 4,
            "{path}: one checksum per chunk"
        );

        // The only replica, damaged: the read fails rather than return
        // wrong bytes, and the namenode hears of it.
        overwrite(&block_file, 123_456, b"garbage!");
        let cat = cluster.dfs(&["-cat", path]);
        assert_ne!(cat.code, 0, "{path}: a damaged replica must not be served");
        assert!(
            cat.stdout.len() < 123_456 + chunk as usize,
            "{path}: bytes past the damage were returned"
        );
        cluster.wait_until(
            "the namenode to learn of the corrupt replica",
            Duration::from_secs(30),
            || cluster.report_value("Blocks with corrupt replicas") == i as u64 + 1,
        );
    }
}
