//! Copying a replica to other datanodes (HDFS's DataTransfer runnable):
//! a finalized one when the namenode says so (DNA_TRANSFER: re-replication,
//! decommissioning and balancer moves), or the first bytes of one being
//! written to a datanode joining its pipeline (the TransferBlock RPC,
//! stage TRANSFER_RBW). This datanode plays the client: it streams its
//! replica, with the checksums stored beside it (a trailing partial
//! chunk's recomputed), down a pipeline of the targets, which verify it as
//! they would a client's write, and waits for every packet's ack.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use rdfs_common::block_token::AccessMode;
use rdfs_common::grpc::pipeline_ack_timeout;
use rdfs_common::protocol::{DatanodeInfo, ExtendedBlock};
use rdfs_transfer::{Packet, Stage, StreamOptions, WriteSetup, WriteStream};

use crate::context::DatanodeContext;
use crate::error::DatanodeError;
use crate::sender::BlockSender;

/// Packets in flight towards the first target.
const FRAME_QUEUE: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Source(#[from] DatanodeError),
    #[error("the namenode asked for {requested}, but this datanode holds {held} bytes of it")]
    LengthMismatch { requested: String, held: u64 },
    #[error("no targets to copy to")]
    NoTargets,
    #[error("target {target}: {message}")]
    Target { target: String, message: String },
}

/// One copy to make.
#[derive(Debug, Clone)]
pub struct Order {
    /// For TRANSFER_RBW, `num_bytes` is how much of the replica to copy.
    pub block: ExtendedBlock,
    pub targets: Vec<DatanodeInfo>,
    pub target_storage_ids: Vec<String>,
    pub balancing: bool,
    /// TRANSFER_FINALIZED or TRANSFER_RBW.
    pub stage: Stage,
    pub client_name: String,
}

/// Copies the replica down the pipeline of targets; returns the bytes sent.
pub async fn transfer(ctx: Arc<DatanodeContext>, order: Order) -> Result<u64, TransferError> {
    let _xmit = ctx.xmit();
    let first = order.targets.first().ok_or(TransferError::NoTargets)?;
    let target = first.id.xfer_addr();
    let fail = |message: String| TransferError::Target {
        target: target.clone(),
        message,
    };
    let block = order.block.clone();
    let rbw = order.stage == Stage::TransferRbw;
    let sender = {
        let dataset = Arc::clone(&ctx.dataset);
        let block = block.clone();
        tokio::task::spawn_blocking(move || {
            let reader = if rbw {
                dataset.open_for_transfer(&block, block.num_bytes)?
            } else {
                dataset.open_for_read(&block)?
            };
            let length = reader.length;
            BlockSender::new(reader, 0, length).map(|sender| (sender, length))
        })
        .await
        .map_err(|e| DatanodeError::InvalidRequest(format!("replica open panicked: {e}")))?
    };
    let (mut sender, length) = match sender {
        Ok(opened) => opened,
        Err(err) => {
            crate::read_session::report_corrupt(&ctx, &block, &err);
            return Err(err.into());
        }
    };
    if length != block.num_bytes {
        return Err(TransferError::LengthMismatch {
            requested: block.to_string(),
            held: length,
        });
    }
    let setup = WriteSetup {
        block: block.clone(),
        targets: order.targets[1..].to_vec(),
        target_storage_ids: order
            .target_storage_ids
            .get(1..)
            .unwrap_or_default()
            .to_vec(),
        client_name: order.client_name.clone(),
        stage: order.stage,
        checksum: sender.checksum(),
        latest_generation_stamp: 0,
        min_bytes_rcvd: 0,
        max_bytes_rcvd: 0,
        block_size: 0,
        token: ctx.block_access.token_for(&block, &[AccessMode::Write])?,
    };
    let ack_timeout = pipeline_ack_timeout(ctx.socket_timeout, order.targets.len());
    let options = StreamOptions {
        socket_timeout: ctx.socket_timeout,
        queue: FRAME_QUEUE,
    };
    let (packets, mut acks) = WriteStream::open(&ctx.channels, &target, &setup, options)
        .await
        .map_err(|failure| {
            fail(if failure.refused {
                format!(
                    "refused the copy ({}): {}",
                    failure.first_bad_link, failure.message
                )
            } else {
                failure.message
            })
        })?;

    // A blocking thread reads the replica and feeds the stream, throttled
    // for balancer moves; this task counts the acks.
    // Set just before the last packet goes out, so its ack is recognized.
    let last_seqno = Arc::new(AtomicI64::new(-1));
    let producer = {
        let ctx = Arc::clone(&ctx);
        let balancing = order.balancing;
        let last_seqno = Arc::clone(&last_seqno);
        tokio::task::spawn_blocking(move || -> Result<i64, DatanodeError> {
            let runtime = tokio::runtime::Handle::current();
            let mut seqno = 0i64;
            let send = |packet: Packet| runtime.block_on(packets.send(packet)).is_ok();
            while let Some(chunk) = sender.next_chunk() {
                let chunk = chunk?;
                let bytes = chunk.data.len() as u64;
                if !send(Packet {
                    seqno,
                    offset_in_block: chunk.offset_in_block,
                    last_packet_in_block: false,
                    sync_block: false,
                    data: chunk.data,
                    checksums: chunk.checksums,
                }) {
                    return Ok(seqno);
                }
                seqno += 1;
                if balancing {
                    let wait = ctx.balance_throttle.lock().account(bytes, Instant::now());
                    std::thread::sleep(wait);
                }
            }
            last_seqno.store(seqno, Ordering::Release);
            send(Packet {
                seqno,
                offset_in_block: length,
                last_packet_in_block: true,
                ..Packet::default()
            });
            Ok(seqno)
        })
    };
    let mut acked: i64 = -1;
    let outcome = loop {
        match acks.next(tokio::time::Instant::now() + ack_timeout).await {
            Ok(ack) => {
                if ack.first_failure().is_some() {
                    break Err(fail(format!(
                        "packet {} failed: {}",
                        ack.seqno, ack.message
                    )));
                }
                acked = ack.seqno;
                let last = last_seqno.load(Ordering::Acquire);
                if last >= 0 && acked >= last {
                    break Ok(());
                }
            }
            Err(rdfs_transfer::StreamError::Closed { .. }) => {
                break Err(fail(format!("closed the stream after packet {acked}")));
            }
            Err(rdfs_transfer::StreamError::Timeout { .. }) => {
                break Err(fail(format!(
                    "no ack after packet {acked} within {ack_timeout:?}"
                )));
            }
            Err(err) => break Err(fail(err.to_string())),
        }
    };
    // Closing the stream ends a producer still waiting to send.
    drop(acks);
    producer.abort();
    let sent = producer.await;
    outcome?;
    if let Ok(Err(err)) = sent {
        crate::read_session::report_corrupt(&ctx, &block, &err);
        return Err(err.into());
    }
    Ok(length)
}
