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

use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;

use rdfs_common::block_token::AccessMode;
use rdfs_common::protocol::ExtendedBlock;
use rdfs_proto as pb;
use rdfs_proto::data_transfer_client::DataTransferClient;
use rdfs_proto::write_block_frame::Frame;
use rdfs_proto::write_block_reply::Reply;

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
    pub targets: Vec<pb::DatanodeInfo>,
    pub target_storage_ids: Vec<String>,
    pub balancing: bool,
    /// TRANSFER_FINALIZED or TRANSFER_RBW.
    pub stage: pb::PipelineStage,
    pub client_name: String,
}

fn xfer_addr(info: &pb::DatanodeInfo) -> String {
    info.id
        .as_ref()
        .map(|id| format!("{}:{}", id.ip_addr, id.xfer_port))
        .unwrap_or_default()
}

/// Copies the replica down the pipeline of targets; returns the bytes sent.
pub async fn transfer(ctx: Arc<DatanodeContext>, order: Order) -> Result<u64, TransferError> {
    let _xmit = ctx.xmit();
    let first = order.targets.first().ok_or(TransferError::NoTargets)?;
    let target = xfer_addr(first);
    let fail = |message: String| TransferError::Target {
        target: target.clone(),
        message,
    };
    let block = order.block.clone();
    let rbw = order.stage == pb::PipelineStage::TransferRbw;
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
            crate::transfer_service::report_corrupt(&ctx, &block, &err);
            return Err(err.into());
        }
    };
    if length != block.num_bytes {
        return Err(TransferError::LengthMismatch {
            requested: block.to_string(),
            held: length,
        });
    }
    let header = pb::WriteBlockHeader {
        block: Some((&block).into()),
        targets: order.targets[1..].to_vec(),
        target_storage_ids: order
            .target_storage_ids
            .get(1..)
            .unwrap_or_default()
            .to_vec(),
        client_name: order.client_name.clone(),
        stage: order.stage as i32,
        checksum_type: pb::ChecksumType::ChecksumCrc32c as i32,
        bytes_per_checksum: sender.bytes_per_checksum(),
        latest_generation_stamp: 0,
        min_bytes_rcvd: 0,
        max_bytes_rcvd: 0,
        block_size: 0,
        block_token: ctx.block_access.token_for(&block, &[AccessMode::Write])?,
    };
    let ack_timeout =
        rdfs_common::grpc::pipeline_ack_timeout(ctx.socket_timeout, order.targets.len());
    let channel = ctx
        .channels
        .get(&target)
        .map_err(|e| fail(format!("bad address: {e}")))?;
    let (frames, frames_rx) = mpsc::channel(FRAME_QUEUE);
    frames
        .send(pb::WriteBlockFrame {
            frame: Some(Frame::Header(header)),
        })
        .await
        .map_err(|_| fail("stream closed before the header".into()))?;
    let mut client = DataTransferClient::new(channel)
        .max_decoding_message_size(rdfs_common::grpc::MAX_MESSAGE_SIZE);
    let mut replies = match timeout(
        ctx.socket_timeout,
        client.write_block(ReceiverStream::new(frames_rx)),
    )
    .await
    {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            ctx.channels.forget(&target);
            return Err(fail(format!("cannot start the copy: {}", status.message())));
        }
        Err(_) => {
            ctx.channels.forget(&target);
            return Err(fail(format!("no answer within {:?}", ctx.socket_timeout)));
        }
    };
    match timeout(ack_timeout, replies.message()).await {
        Ok(Ok(Some(pb::WriteBlockReply {
            reply: Some(Reply::Setup(setup)),
        }))) if setup.status == pb::TransferStatus::Success as i32 => {}
        Ok(Ok(Some(pb::WriteBlockReply {
            reply: Some(Reply::Setup(setup)),
        }))) => {
            return Err(fail(format!(
                "refused the copy ({}): {}",
                if setup.first_bad_link.is_empty() {
                    target.clone()
                } else {
                    setup.first_bad_link
                },
                setup.message
            )));
        }
        Ok(Ok(_)) => return Err(fail("answered the setup with something else".into())),
        Ok(Err(status)) => return Err(fail(format!("setup failed: {}", status.message()))),
        Err(_) => {
            return Err(fail(format!(
                "did not confirm the setup within {ack_timeout:?}"
            )));
        }
    }

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
            let send = |packet: pb::Packet| {
                let frame = pb::WriteBlockFrame {
                    frame: Some(Frame::Packet(packet)),
                };
                matches!(
                    runtime.block_on(timeout(ctx.socket_timeout, frames.send(frame))),
                    Ok(Ok(()))
                )
            };
            while let Some(chunk) = sender.next_chunk() {
                let chunk = chunk?;
                let bytes = chunk.data.len() as u64;
                if !send(pb::Packet {
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
            send(pb::Packet {
                seqno,
                offset_in_block: length,
                last_packet_in_block: true,
                sync_block: false,
                data: Default::default(),
                checksums: Default::default(),
            });
            Ok(seqno)
        })
    };
    let mut acked: i64 = -1;
    let outcome = loop {
        match timeout(ack_timeout, replies.message()).await {
            Ok(Ok(Some(pb::WriteBlockReply {
                reply: Some(Reply::Ack(ack)),
            }))) => {
                if ack
                    .replies
                    .iter()
                    .any(|s| *s != pb::TransferStatus::Success as i32)
                {
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
            Ok(Ok(Some(_))) => break Err(fail("sent something other than an ack".into())),
            Ok(Ok(None)) => break Err(fail(format!("closed the stream after packet {acked}"))),
            Ok(Err(status)) => break Err(fail(status.message().to_string())),
            Err(_) => {
                break Err(fail(format!(
                    "no ack after packet {acked} within {ack_timeout:?}"
                )));
            }
        }
    };
    // Closing the stream ends a producer still waiting to send.
    drop(replies);
    drop(client);
    producer.abort();
    let sent = producer.await;
    outcome?;
    if let Ok(Err(err)) = sent {
        crate::transfer_service::report_corrupt(&ctx, &block, &err);
        return Err(err.into());
    }
    Ok(length)
}
