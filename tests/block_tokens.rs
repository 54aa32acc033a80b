//! Block access tokens on a real cluster: datanodes refuse block
//! operations without a valid token from the namenode, and readers whose
//! tokens expire fetch new ones. (Every mini-cluster test runs with tokens
//! on, so the write path, recovery and re-replication prove they carry
//! them; these tests go at the datanode directly.)

use std::time::Duration;

use rdfs_common::ExceptionKind;
use rdfs_common::block_token::{BlockTokenIdentifier, Token};
use rdfs_common::protocol::{LocatedBlock, token_to_proto};
use rdfs_proto as pb;
use rdfs_proto::data_transfer_client::DataTransferClient;
use rdfs_proto::write_block_frame::Frame;

use crate::harness::{MiniCluster, write_local};

const BLOCK: u64 = 1 << 20;

fn file_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn blocks_of(cluster: &MiniCluster, path: &str) -> Vec<LocatedBlock> {
    cluster
        .block_on(cluster.client().get_block_locations(path, 0, u64::MAX))
        .expect("locations")
        .blocks
}

fn datanode(
    cluster: &MiniCluster,
    block: &LocatedBlock,
) -> DataTransferClient<tonic::transport::Channel> {
    let addr = block.locations[0].id.xfer_addr();
    cluster.block_on(async {
        let channel = rdfs_common::grpc::endpoint(&addr, Duration::from_secs(3))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        DataTransferClient::new(channel)
    })
}

/// Reads a whole block with `token`; the refusal's kind and message, or the
/// bytes read.
fn read_with(
    cluster: &MiniCluster,
    block: &LocatedBlock,
    token: &Token,
) -> Result<usize, (Option<ExceptionKind>, String)> {
    let mut dn = datanode(cluster, block);
    cluster.block_on(async {
        let request = pb::ReadBlockRequest {
            block: Some((&block.block).into()),
            offset: 0,
            length: block.block.num_bytes,
            client_name: "token-test".into(),
            block_token: token_to_proto(token),
        };
        let refused = |status: tonic::Status| {
            (
                ExceptionKind::of_status(&status),
                status.message().to_string(),
            )
        };
        let mut stream = dn.read_block(request).await.map_err(refused)?.into_inner();
        let mut bytes = 0;
        while let Some(packet) = stream.message().await.map_err(refused)? {
            bytes += packet.data.len();
        }
        Ok(bytes)
    })
}

#[track_caller]
fn refused_with(result: Result<usize, (Option<ExceptionKind>, String)>, reason: &str) {
    match result {
        Ok(bytes) => panic!("read of {bytes} bytes was allowed; expected a refusal for {reason}"),
        Err((kind, message)) => {
            assert_eq!(kind, Some(ExceptionKind::InvalidBlockToken), "{message}");
            assert!(
                message.contains(reason),
                "expected {reason:?} in the refusal: {message}"
            );
        }
    }
}

#[test]
fn datanodes_refuse_block_operations_without_a_valid_token() {
    let cluster = MiniCluster::builder()
        .datanodes(2)
        .replication(1)
        .block_size(BLOCK)
        .start();
    let data = file_bytes(2 * BLOCK as usize);
    let local = write_local(cluster.dir.path(), "two-blocks", &data);
    cluster
        .dfs(&["-put", local.to_str().expect("utf-8"), "/f"])
        .ok();
    let blocks = blocks_of(&cluster, "/f");
    assert_eq!(blocks.len(), 2);
    let (first, second) = (&blocks[0], &blocks[1]);
    let id = BlockTokenIdentifier::decode(&first.block_token.identifier)
        .expect("the namenode hands out a decodable token");
    assert_eq!(id.block_id, first.block.block_id);
    assert_eq!(id.user, crate::harness::SUPERUSER);

    // The token the namenode gave reads the block.
    assert_eq!(
        read_with(&cluster, first, &first.block_token),
        Ok(BLOCK as usize)
    );

    refused_with(
        read_with(&cluster, first, &Token::default()),
        "no block token was sent",
    );
    let mut forged = first.block_token.clone();
    let last = forged.password.len() - 1;
    forged.password[last] ^= 1;
    refused_with(read_with(&cluster, first, &forged), "bad password");
    // A valid token, but for the other block.
    let other_block = LocatedBlock {
        locations: first.locations.clone(),
        ..second.clone()
    };
    if first.locations[0].id == second.locations[0].id {
        refused_with(
            read_with(&cluster, &other_block, &first.block_token),
            &format!("not block {}", second.block.block_id),
        );
    } else {
        refused_with(
            read_with(&cluster, first, &second.block_token),
            &format!("not block {}", first.block.block_id),
        );
    }

    // A READ token does not let its holder write, copy or probe the block.
    let mut dn = datanode(&cluster, first);
    let write = cluster.block_on(async {
        let (frames, rx) = tokio::sync::mpsc::channel(1);
        frames
            .send(pb::WriteBlockFrame {
                frame: Some(Frame::Header(pb::WriteBlockHeader {
                    block: Some((&first.block).into()),
                    stage: pb::PipelineStage::SetupStreamingRecovery as i32,
                    checksum_type: pb::ChecksumType::ChecksumCrc32c as i32,
                    bytes_per_checksum: 512,
                    latest_generation_stamp: first.block.generation_stamp + 1,
                    block_token: token_to_proto(&first.block_token),
                    ..Default::default()
                })),
            })
            .await
            .expect("queue header");
        dn.write_block(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let status = write.expect_err("a write with a READ token");
    assert_eq!(
        ExceptionKind::of_status(&status),
        Some(ExceptionKind::InvalidBlockToken)
    );
    assert!(
        status.message().contains("not WRITE"),
        "{}",
        status.message()
    );

    let transfer = cluster.block_on(dn.transfer_block(pb::TransferBlockRequest {
        block: Some((&first.block).into()),
        targets: vec![(&first.locations[0]).into()],
        client_name: "token-test".into(),
        ..Default::default()
    }));
    let status = transfer.expect_err("a transfer without a token");
    assert_eq!(
        ExceptionKind::of_status(&status),
        Some(ExceptionKind::InvalidBlockToken)
    );
    let probe = cluster.block_on(dn.get_replica_visible_length(
        pb::GetReplicaVisibleLengthRequest {
            block: Some((&first.block).into()),
            block_token: None,
        },
    ));
    assert_eq!(
        ExceptionKind::of_status(&probe.expect_err("a probe without a token")),
        Some(ExceptionKind::InvalidBlockToken)
    );

    // Every refusal is logged with the key id of the token it refused.
    let log: String = (0..2).map(|i| cluster.datanode(i).log_text()).collect();
    assert!(
        log.contains("block token refused") && log.contains(&format!("key_id={}", id.key_id)),
        "datanode logs lack the refusals: {log}"
    );

    // The replica is untouched, and the datanodes' own copies carry tokens
    // they sign themselves: raising the replication copies both blocks.
    cluster.dfs(&["-setrep", "-w", "2", "/f"]).ok();
    assert_eq!(
        cluster.dfs(&["-cat", "/f"]).stdout.as_slice(),
        data.as_slice()
    );
}

#[test]
fn a_read_spanning_a_key_roll_and_token_expiry_completes() {
    // Keys roll every second and tokens live two: a reader that pauses for
    // longer holds tokens no datanode accepts.
    let cluster = MiniCluster::builder()
        .datanodes(1)
        .replication(1)
        .block_size(BLOCK)
        .conf("security.block_access_key_update_interval_ms", "1000")
        .conf("security.block_access_token_lifetime_ms", "2000")
        .start();
    let data = file_bytes(3 * BLOCK as usize + 1000);
    let local = write_local(cluster.dir.path(), "slow-read", &data);
    cluster
        .dfs(&["-put", local.to_str().expect("utf-8"), "/slow"])
        .ok();

    let client = cluster.client();
    let read = cluster.block_on(async {
        let mut input = client.open("/slow").await.expect("open");
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut paused = false;
        loop {
            let n = input.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if !paused && out.len() >= BLOCK as usize / 2 {
                // Past every token's lifetime and two key rolls.
                tokio::time::sleep(Duration::from_millis(3500)).await;
                paused = true;
            }
        }
        out
    });
    assert!(read == data, "the read returned different bytes");
    let log = cluster.datanode(0).log_text();
    // By then the token has expired and the key that signed it may have
    // been dropped too; either way the datanode refused it.
    assert!(
        log.contains("block token refused op=\"READ_BLOCK\""),
        "the reader never presented a stale token, so the test proved nothing: {log}"
    );
}
