//! One replica's write pipeline on this datanode: receive packets from
//! upstream, forward them to the next datanode (the mirror) before writing
//! them, write them on a dedicated thread, and send acks upstream in
//! sequence order, each carrying this datanode's status followed by every
//! downstream one.
//!
//! Three parts run at once so network and disk overlap: this task reads and
//! forwards packets; a blocking writer thread verifies checksums and writes;
//! a responder task pairs each written packet with the mirror's ack. Any
//! failure ends all three, deletes the partial replica and closes both
//! streams, so nothing outlives a dead peer.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use rdfs_common::checksum::DEFAULT_BYTES_PER_CHECKSUM;
use rdfs_common::protocol::ExtendedBlock;
use rdfs_proto as pb;
use rdfs_proto::data_transfer_client::DataTransferClient;
use rdfs_proto::write_block_frame::Frame;
use rdfs_proto::write_block_reply::Reply;

use crate::context::DatanodeContext;
use crate::error::DatanodeError;
use crate::receiver::{BlockReceiver, Packet, PacketError};
use crate::reports::ReplicaChange;

pub type ReplySender = mpsc::Sender<Result<pb::WriteBlockReply, Status>>;

/// Packets queued between the network reader and the writer thread.
const WRITE_QUEUE: usize = 16;
/// Packets queued towards the mirror.
const MIRROR_QUEUE: usize = 16;

fn setup_reply(
    status: pb::TransferStatus,
    first_bad_link: &str,
    message: impl Into<String>,
) -> pb::WriteBlockReply {
    pb::WriteBlockReply {
        reply: Some(Reply::Setup(pb::SetupReply {
            status: status as i32,
            first_bad_link: first_bad_link.to_string(),
            message: message.into(),
        })),
    }
}

fn ack(seqno: i64, replies: Vec<i32>, message: String) -> pb::WriteBlockReply {
    pb::WriteBlockReply {
        reply: Some(Reply::Ack(pb::PipelineAck {
            seqno,
            replies,
            message,
        })),
    }
}

/// The next datanode in the pipeline.
struct Mirror {
    addr: String,
    frames: mpsc::Sender<pb::WriteBlockFrame>,
    replies: Streaming<pb::WriteBlockReply>,
}

/// Why the mirror could not join: the address of the first datanode that
/// failed (this mirror or one further down) and what happened.
struct MirrorFailure {
    first_bad_link: String,
    message: String,
}

async fn connect_mirror(
    ctx: &DatanodeContext,
    header: &pb::WriteBlockHeader,
) -> Result<Option<Mirror>, MirrorFailure> {
    let Some(next) = header.targets.first() else {
        return Ok(None);
    };
    let addr = next
        .id
        .as_ref()
        .map(|id| format!("{}:{}", id.ip_addr, id.xfer_port))
        .unwrap_or_default();
    let fail = |message: String| MirrorFailure {
        first_bad_link: addr.clone(),
        message,
    };
    let channel = ctx
        .channels
        .get(&addr)
        .map_err(|e| fail(format!("bad mirror address {addr}: {e}")))?;
    let mut downstream = header.clone();
    downstream.targets.remove(0);
    if !downstream.target_storage_ids.is_empty() {
        downstream.target_storage_ids.remove(0);
    }
    let (frames, frames_rx) = mpsc::channel(MIRROR_QUEUE);
    frames
        .send(pb::WriteBlockFrame {
            frame: Some(Frame::Header(downstream)),
        })
        .await
        .map_err(|_| fail("mirror stream closed".into()))?;
    let mut client = DataTransferClient::new(channel)
        .max_decoding_message_size(rdfs_common::grpc::MAX_MESSAGE_SIZE);
    let call = timeout(
        ctx.socket_timeout,
        client.write_block(ReceiverStream::new(frames_rx)),
    );
    let mut replies = match call.await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            ctx.channels.forget(&addr);
            return Err(fail(format!(
                "cannot reach mirror {addr}: {}",
                status.message()
            )));
        }
        Err(_) => {
            ctx.channels.forget(&addr);
            return Err(fail(format!(
                "mirror {addr} did not answer within {:?}",
                ctx.socket_timeout
            )));
        }
    };
    match timeout(ctx.socket_timeout, replies.message()).await {
        Ok(Ok(Some(pb::WriteBlockReply {
            reply: Some(Reply::Setup(setup)),
        }))) => {
            if setup.status == pb::TransferStatus::Success as i32 {
                Ok(Some(Mirror {
                    addr,
                    frames,
                    replies,
                }))
            } else {
                let first_bad_link = if setup.first_bad_link.is_empty() {
                    addr.clone()
                } else {
                    setup.first_bad_link
                };
                Err(MirrorFailure {
                    first_bad_link,
                    message: setup.message,
                })
            }
        }
        Ok(Ok(_)) => Err(fail(format!(
            "mirror {addr} answered the setup with something else"
        ))),
        Ok(Err(status)) => Err(fail(format!(
            "mirror {addr} failed during setup: {}",
            status.message()
        ))),
        Err(_) => Err(fail(format!(
            "mirror {addr} did not confirm the setup within {:?}",
            ctx.socket_timeout
        ))),
    }
}

/// What the writer thread reports for each packet.
struct Written {
    seqno: i64,
    last: bool,
    result: Result<(), String>,
    status: pb::TransferStatus,
}

fn packet_status(err: &PacketError) -> pb::TransferStatus {
    match err {
        PacketError::Checksum { .. } => pb::TransferStatus::ErrorChecksum,
        PacketError::Storage(_) => pb::TransferStatus::Error,
        _ => pb::TransferStatus::ErrorInvalid,
    }
}

/// Runs one WriteBlock session after its header has been read.
pub async fn run(
    ctx: Arc<DatanodeContext>,
    header: pb::WriteBlockHeader,
    mut upstream: Streaming<pb::WriteBlockFrame>,
    replies: ReplySender,
) {
    let _transfer = ctx.transfer();
    let Some(block) = header.block.clone().map(ExtendedBlock::from) else {
        let _ = replies
            .send(Ok(setup_reply(
                pb::TransferStatus::ErrorInvalid,
                "",
                "header has no block",
            )))
            .await;
        return;
    };
    let bpc = if header.bytes_per_checksum == 0 {
        DEFAULT_BYTES_PER_CHECKSUM
    } else {
        header.bytes_per_checksum
    };
    let invalid = if header.checksum_type != pb::ChecksumType::ChecksumCrc32c as i32 {
        Some(format!(
            "checksum type {} is not supported; rdfs uses CRC32C",
            header.checksum_type
        ))
    } else if bpc > 16 * 1024 * 1024 {
        Some(format!("bytes per checksum {bpc} is too large"))
    } else {
        ctx.dataset
            .check_pool(&block.pool_id)
            .err()
            .map(|e| e.to_string())
    };
    if let Some(message) = invalid {
        let _ = replies
            .send(Ok(setup_reply(
                pb::TransferStatus::ErrorInvalid,
                "",
                message,
            )))
            .await;
        return;
    }
    // The client sends the file's block size as the expected length.
    let max_len = if block.num_bytes == 0 {
        u64::MAX
    } else {
        block.num_bytes
    };
    let dataset = Arc::clone(&ctx.dataset);
    let created = {
        let block = block.clone();
        tokio::task::spawn_blocking(move || {
            dataset.create_rbw(&block, bpc, if max_len == u64::MAX { 0 } else { max_len })
        })
        .await
        .unwrap_or_else(|e| {
            Err(DatanodeError::InvalidRequest(format!(
                "replica creation panicked: {e}"
            )))
        })
    };
    let writer = match created {
        Ok(writer) => writer,
        Err(err) => {
            let status = if matches!(err, DatanodeError::ReplicaExists(..)) {
                pb::TransferStatus::ErrorExists
            } else {
                pb::TransferStatus::Error
            };
            tracing::warn!(block = %block, error = %err, "cannot start replica");
            let _ = replies
                .send(Ok(setup_reply(status, "", err.to_string())))
                .await;
            return;
        }
    };
    let mirror = match connect_mirror(&ctx, &header).await {
        Ok(mirror) => mirror,
        Err(failure) => {
            tracing::warn!(block = %block, first_bad_link = %failure.first_bad_link, error = %failure.message, "pipeline setup failed downstream");
            let dataset = Arc::clone(&ctx.dataset);
            let _ = tokio::task::spawn_blocking(move || dataset.abort(writer)).await;
            let _ = replies
                .send(Ok(setup_reply(
                    pb::TransferStatus::Error,
                    &failure.first_bad_link,
                    failure.message,
                )))
                .await;
            return;
        }
    };
    if replies
        .send(Ok(setup_reply(pb::TransferStatus::Success, "", "")))
        .await
        .is_err()
    {
        let dataset = Arc::clone(&ctx.dataset);
        let _ = tokio::task::spawn_blocking(move || dataset.abort(writer)).await;
        return;
    }
    tracing::debug!(block = %block, mirror = mirror.as_ref().map(|m| m.addr.as_str()), "pipeline established");

    let (packets_tx, packets_rx) = mpsc::channel::<Packet>(WRITE_QUEUE);
    let (written_tx, written_rx) = mpsc::channel::<Written>(WRITE_QUEUE * 4);
    let writer_thread = {
        let ctx = Arc::clone(&ctx);
        let block = block.clone();
        tokio::task::spawn_blocking(move || {
            write_packets(
                &ctx,
                block,
                BlockReceiver::new(writer, bpc, max_len),
                packets_rx,
                written_tx,
            )
        })
    };
    let (mirror_frames, mirror_replies, mirror_addr) = match mirror {
        Some(m) => (Some(m.frames), Some(m.replies), m.addr),
        None => (None, None, String::new()),
    };
    let responder = tokio::spawn(respond(
        Arc::clone(&ctx),
        written_rx,
        mirror_replies,
        mirror_addr,
        replies,
    ));

    loop {
        let frame = match timeout(ctx.socket_timeout, upstream.message()).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => {
                tracing::debug!(block = %block, "upstream closed the stream before the last packet");
                break;
            }
            Ok(Err(status)) => {
                tracing::info!(block = %block, error = %status.message(), "upstream failed");
                break;
            }
            Err(_) => {
                tracing::warn!(block = %block, timeout = ?ctx.socket_timeout, "no packet from upstream in time; abandoning the replica");
                break;
            }
        };
        let Some(Frame::Packet(packet)) = frame.frame.clone() else {
            tracing::warn!(block = %block, "a second header arrived in the middle of a block; ending the stream");
            break;
        };
        let last = packet.last_packet_in_block;
        if let Some(frames) = &mirror_frames {
            // Forward first, so the next datanode works while this one writes.
            // A dead mirror shows up as a failed ack in the responder.
            let _ = timeout(ctx.socket_timeout, frames.send(frame)).await;
        }
        let packet = Packet {
            seqno: packet.seqno,
            offset_in_block: packet.offset_in_block,
            last_packet_in_block: last,
            sync_block: packet.sync_block,
            data: packet.data,
            checksums: packet.checksums,
        };
        if packets_tx.send(packet).await.is_err() || last {
            break;
        }
    }
    drop(packets_tx);
    drop(mirror_frames);
    let _ = writer_thread.await;
    let _ = responder.await;
}

/// The writer thread: checks and writes packets in order, finalizes the
/// replica after the last one, deletes it on any failure.
fn write_packets(
    ctx: &DatanodeContext,
    block: ExtendedBlock,
    mut receiver: BlockReceiver,
    mut packets: mpsc::Receiver<Packet>,
    written: mpsc::Sender<Written>,
) {
    loop {
        let Some(packet) = packets.blocking_recv() else {
            ctx.dataset.abort(receiver.into_writer());
            return;
        };
        let seqno = packet.seqno;
        match receiver.receive(&packet) {
            Ok(false) => {
                let event = Written {
                    seqno,
                    last: false,
                    result: Ok(()),
                    status: pb::TransferStatus::Success,
                };
                if written.blocking_send(event).is_err() {
                    ctx.dataset.abort(receiver.into_writer());
                    return;
                }
            }
            Ok(true) => {
                let length = receiver.received();
                let (result, status) = match ctx.dataset.finalize(receiver.into_writer()) {
                    Ok(info) => {
                        let finalized = ExtendedBlock {
                            num_bytes: length,
                            ..block.clone()
                        };
                        tracing::info!(block = %finalized, bytes = length, "replica finalized");
                        ctx.reports.replica_changed(
                            finalized,
                            ctx.dataset.storage_id_of(&info),
                            ReplicaChange::Received,
                        );
                        (Ok(()), pb::TransferStatus::Success)
                    }
                    Err(err) => {
                        tracing::error!(block = %block, error = %err, "cannot finalize replica");
                        (Err(err.to_string()), pb::TransferStatus::Error)
                    }
                };
                let _ = written.blocking_send(Written {
                    seqno,
                    last: true,
                    result,
                    status,
                });
                return;
            }
            Err(err) => {
                tracing::warn!(block = %block, error = %err, "rejecting the write stream; the partial replica is deleted");
                let status = packet_status(&err);
                ctx.dataset.abort(receiver.into_writer());
                let _ = written.blocking_send(Written {
                    seqno,
                    last: false,
                    result: Err(err.to_string()),
                    status,
                });
                return;
            }
        }
    }
}

/// Sends one ack upstream per written packet, merged with the mirror's ack.
async fn respond(
    ctx: Arc<DatanodeContext>,
    mut written: mpsc::Receiver<Written>,
    mut mirror: Option<Streaming<pb::WriteBlockReply>>,
    mirror_addr: String,
    replies: ReplySender,
) {
    while let Some(event) = written.recv().await {
        let mut statuses = vec![event.status as i32];
        let mut message = event.result.as_ref().err().cloned().unwrap_or_default();
        let mut failed = event.result.is_err();
        if !failed && let Some(downstream) = mirror.as_mut() {
            match timeout(ctx.socket_timeout, downstream.message()).await {
                Ok(Ok(Some(pb::WriteBlockReply {
                    reply: Some(Reply::Ack(down)),
                }))) if down.seqno == event.seqno => {
                    failed = down
                        .replies
                        .iter()
                        .any(|s| *s != pb::TransferStatus::Success as i32);
                    statuses.extend(down.replies);
                    message = down.message;
                }
                Ok(Ok(Some(other))) => {
                    failed = true;
                    statuses.push(pb::TransferStatus::Error as i32);
                    message = format!(
                        "mirror {mirror_addr} sent an unexpected reply for packet {}: {other:?}",
                        event.seqno
                    );
                }
                Ok(Ok(None)) => {
                    failed = true;
                    statuses.push(pb::TransferStatus::Error as i32);
                    message = format!("mirror {mirror_addr} closed the pipeline");
                }
                Ok(Err(status)) => {
                    failed = true;
                    statuses.push(pb::TransferStatus::Error as i32);
                    message = format!("mirror {mirror_addr} failed: {}", status.message());
                }
                Err(_) => {
                    failed = true;
                    statuses.push(pb::TransferStatus::Error as i32);
                    message = format!(
                        "mirror {mirror_addr} did not ack packet {} within {:?}",
                        event.seqno, ctx.socket_timeout
                    );
                }
            }
        }
        let sent = timeout(
            ctx.socket_timeout,
            replies.send(Ok(ack(event.seqno, statuses, message))),
        )
        .await;
        if failed || event.last || !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
}
