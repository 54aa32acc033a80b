//! One replica's write pipeline on this datanode: receive packets from
//! upstream, forward them to the next datanode (the mirror) before writing
//! them, write them on a dedicated thread, and send acks upstream in
//! sequence order, each carrying this datanode's status followed by every
//! downstream one.
//!
//! Three parts run at once so network and disk overlap: this task reads and
//! forwards packets; a blocking writer thread verifies checksums and writes;
//! a responder task pairs each written packet with the mirror's ack. They
//! share one cancellation token: any failure (a dead or stalled peer, a bad
//! packet, a recovery taking the replica) ends all three and closes both
//! streams, so nothing outlives a dead peer. Every wait has a deadline.
//!
//! A failed session never deletes what it wrote: the replica stays RBW at
//! the bytes written, for the writer's pipeline recovery or a block
//! recovery. Only a new replica whose setup failed is deleted.
//!
//! Stages (HDFS's BlockConstructionStage): SETUP_CREATE starts a new
//! replica; SETUP_APPEND reopens a finalized one; SETUP_STREAMING_RECOVERY
//! takes back the replica of a broken pipeline; TRANSFER_FINALIZED and
//! TRANSFER_RBW receive a copy from another datanode (the latter stays
//! unfinalized for the writer's recovery to continue).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use rdfs_common::checksum::DEFAULT_BYTES_PER_CHECKSUM;
use rdfs_common::protocol::ExtendedBlock;
use rdfs_proto as pb;
use rdfs_proto::data_transfer_client::DataTransferClient;
use rdfs_proto::write_block_frame::Frame;
use rdfs_proto::write_block_reply::Reply;

use crate::context::DatanodeContext;
use crate::error::DatanodeError;
use crate::receiver::{BlockReceiver, Packet, PacketError, Received};
use crate::replica::ReplicaWriter;
use crate::reports::ReplicaChange;

pub type ReplySender = mpsc::Sender<Result<pb::WriteBlockReply, Status>>;

/// Packets queued between the network reader and the writer thread.
const WRITE_QUEUE: usize = 16;
/// Packets queued towards the mirror.
const MIRROR_QUEUE: usize = 16;

pub(crate) fn setup_reply(
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
    // The mirror answers once its own mirror answered.
    let setup_timeout =
        rdfs_common::grpc::pipeline_ack_timeout(ctx.socket_timeout, header.targets.len());
    match timeout(setup_timeout, replies.message()).await {
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
        Err(_) => {
            ctx.channels.forget(&addr);
            Err(fail(format!(
                "mirror {addr} did not confirm the setup within {setup_timeout:?}"
            )))
        }
    }
}

/// What the writer thread reports for each packet, in order.
struct Written {
    seqno: i64,
    outcome: Result<Received, (pb::TransferStatus, String)>,
}

fn packet_status(err: &PacketError) -> pb::TransferStatus {
    match err {
        PacketError::Checksum { .. } => pb::TransferStatus::ErrorChecksum,
        PacketError::Storage(_) => pb::TransferStatus::Error,
        _ => pb::TransferStatus::ErrorInvalid,
    }
}

fn setup_status(err: &DatanodeError) -> pb::TransferStatus {
    match err {
        DatanodeError::ReplicaExists(..) => pb::TransferStatus::ErrorExists,
        DatanodeError::InvalidRequest(_)
        | DatanodeError::StaleGenerationStamp(_)
        | DatanodeError::RecoveryInProgress(_)
        | DatanodeError::WrongPool { .. } => pb::TransferStatus::ErrorInvalid,
        _ => pb::TransferStatus::Error,
    }
}

/// Sends a reply upstream unless the upstream stopped taking them.
async fn send_reply(
    ctx: &DatanodeContext,
    replies: &ReplySender,
    reply: pb::WriteBlockReply,
) -> bool {
    matches!(
        timeout(ctx.socket_timeout, replies.send(Ok(reply))).await,
        Ok(Ok(()))
    )
}

/// Opens the replica as the header's stage says. Blocking.
fn open_replica(
    ctx: &DatanodeContext,
    stage: pb::PipelineStage,
    header: &pb::WriteBlockHeader,
    block: &ExtendedBlock,
    bpc: u32,
    max_len: u64,
) -> Result<ReplicaWriter, DatanodeError> {
    let new_gs = if header.latest_generation_stamp == 0 {
        block.generation_stamp
    } else {
        header.latest_generation_stamp
    };
    let expected = if max_len == u64::MAX { 0 } else { max_len };
    let writer = match stage {
        pb::PipelineStage::SetupCreate => ctx.dataset.create_rbw(block, bpc, expected, false)?,
        pb::PipelineStage::TransferFinalized | pb::PipelineStage::TransferRbw => {
            let block = ExtendedBlock {
                generation_stamp: new_gs,
                ..block.clone()
            };
            ctx.dataset.create_rbw(&block, bpc, expected, true)?
        }
        pb::PipelineStage::SetupAppend => ctx.dataset.append(block, new_gs)?,
        pb::PipelineStage::SetupStreamingRecovery => {
            ctx.dataset
                .recover_rbw(block, new_gs, header.min_bytes_rcvd)?
        }
    };
    if writer.bytes_per_checksum() != bpc {
        let message = format!(
            "the replica of {block} has {} bytes per checksum, the writer uses {bpc}",
            writer.bytes_per_checksum()
        );
        ctx.dataset.release(writer, None);
        return Err(DatanodeError::InvalidRequest(message));
    }
    Ok(writer)
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
        send_reply(
            &ctx,
            &replies,
            setup_reply(pb::TransferStatus::ErrorInvalid, "", "header has no block"),
        )
        .await;
        return;
    };
    let bpc = if header.bytes_per_checksum == 0 {
        DEFAULT_BYTES_PER_CHECKSUM
    } else {
        header.bytes_per_checksum
    };
    let stage = pb::PipelineStage::try_from(header.stage);
    let invalid = if header.checksum_type != pb::ChecksumType::ChecksumCrc32c as i32 {
        Some(format!(
            "checksum type {} is not supported; rdfs uses CRC32C",
            header.checksum_type
        ))
    } else if bpc > 16 * 1024 * 1024 {
        Some(format!("bytes per checksum {bpc} is too large"))
    } else if stage.is_err() {
        Some(format!("unknown pipeline stage {}", header.stage))
    } else {
        ctx.dataset
            .check_pool(&block.pool_id)
            .err()
            .map(|e| e.to_string())
    };
    let (Ok(stage), None) = (stage, invalid.clone()) else {
        let message = invalid.unwrap_or_default();
        tracing::warn!(block = %block, error = %message, "refusing write");
        send_reply(
            &ctx,
            &replies,
            setup_reply(pb::TransferStatus::ErrorInvalid, "", message),
        )
        .await;
        return;
    };
    // The most the replica may grow to: the file's block size; a copy of
    // a finalized replica is exactly its length.
    let max_len = match (header.block_size, stage) {
        (0, pb::PipelineStage::SetupCreate | pb::PipelineStage::TransferFinalized)
            if block.num_bytes > 0 =>
        {
            block.num_bytes
        }
        (0, _) => u64::MAX,
        (size, _) => size,
    };
    let opened = {
        let ctx = Arc::clone(&ctx);
        let header = header.clone();
        let block = block.clone();
        tokio::task::spawn_blocking(move || {
            open_replica(&ctx, stage, &header, &block, bpc, max_len)
        })
        .await
        .unwrap_or_else(|e| {
            Err(DatanodeError::InvalidRequest(format!(
                "replica setup panicked: {e}"
            )))
        })
    };
    let writer = match opened {
        Ok(writer) => writer,
        Err(err) => {
            tracing::warn!(block = %block, stage = stage.as_str_name(), error = %err, "cannot set up the replica");
            send_reply(
                &ctx,
                &replies,
                setup_reply(setup_status(&err), "", err.to_string()),
            )
            .await;
            return;
        }
    };
    let Some((session_id, lease_token)) = writer
        .lease
        .as_ref()
        .map(|lease| (lease.session(), lease.cancelled()))
    else {
        // Unreachable: the dataset hands out writers with their lease.
        return;
    };
    // A new replica with nothing written is deleted when its setup fails;
    // anything else stays for recovery.
    let give_up = |ctx: Arc<DatanodeContext>, writer: ReplicaWriter| async move {
        let _ = tokio::task::spawn_blocking(move || {
            if stage == pb::PipelineStage::SetupCreate {
                ctx.dataset.abort(writer);
            } else {
                ctx.dataset.release(writer, None);
            }
        })
        .await;
    };
    let mirror = match connect_mirror(&ctx, &header).await {
        Ok(mirror) => mirror,
        Err(failure) => {
            tracing::warn!(block = %block, first_bad_link = %failure.first_bad_link, error = %failure.message, "pipeline setup failed downstream");
            give_up(Arc::clone(&ctx), writer).await;
            send_reply(
                &ctx,
                &replies,
                setup_reply(
                    pb::TransferStatus::Error,
                    &failure.first_bad_link,
                    failure.message,
                ),
            )
            .await;
            return;
        }
    };
    if !send_reply(
        &ctx,
        &replies,
        setup_reply(pb::TransferStatus::Success, "", ""),
    )
    .await
    {
        give_up(Arc::clone(&ctx), writer).await;
        return;
    }
    tracing::debug!(block = %block, stage = stage.as_str_name(), from = writer.written(),
        mirror = mirror.as_ref().map(|m| m.addr.as_str()), "pipeline established");

    // Every part of the session ends when this is cancelled: by any part
    // failing, or by a recovery or deletion taking the replica.
    let session = lease_token.child_token();
    let first_seqno = (stage == pb::PipelineStage::SetupCreate).then_some(0);
    let (packets_tx, packets_rx) = mpsc::channel::<Packet>(WRITE_QUEUE);
    let (written_tx, written_rx) = mpsc::channel::<Written>(WRITE_QUEUE * 4);
    let writer_thread = {
        let ctx = Arc::clone(&ctx);
        let session = session.clone();
        let receiver = BlockReceiver::new(writer, bpc, max_len, first_seqno);
        tokio::task::spawn_blocking(move || {
            write_packets(&ctx, stage, receiver, packets_rx, written_tx, &session);
        })
    };
    let (mut mirror_frames, mirror_replies, mirror_addr) = match mirror {
        Some(m) => (Some(m.frames), Some(m.replies), m.addr),
        None => (None, None, String::new()),
    };
    let responder = tokio::spawn(respond(
        Arc::clone(&ctx),
        Responder {
            block_id: block.block_id,
            session_id,
            downstream: header.targets.len(),
            mirror_addr,
        },
        written_rx,
        mirror_replies,
        replies,
        session.clone(),
    ));

    // Whether the packets already received still get written and
    // acknowledged: after the last packet, or when the upstream closed its
    // side cleanly (it may still be reading acks).
    let mut drain = false;
    loop {
        let next = tokio::select! {
            _ = session.cancelled() => break,
            next = timeout(ctx.socket_timeout, upstream.message()) => next,
        };
        let frame = match next {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => {
                tracing::info!(block = %block, "upstream closed the stream before the last packet; keeping the replica for recovery");
                drain = true;
                break;
            }
            Ok(Err(status)) => {
                tracing::info!(block = %block, error = %status.message(), "upstream failed; keeping the replica for recovery");
                break;
            }
            Err(_) => {
                tracing::warn!(block = %block, timeout = ?ctx.socket_timeout, "no packet from upstream in time; keeping the replica for recovery");
                break;
            }
        };
        let Some(Frame::Packet(packet)) = frame.frame.clone() else {
            tracing::warn!(block = %block, "a second header arrived in the middle of a block; ending the stream");
            break;
        };
        let last = packet.last_packet_in_block;
        if let Some(frames) = &mirror_frames {
            // Forward first, so the next datanode works while this one
            // writes. A mirror that does not take it is dropped: the
            // responder then reports it failed.
            let sent = tokio::select! {
                _ = session.cancelled() => break,
                sent = timeout(ctx.socket_timeout, frames.send(frame)) => sent,
            };
            if !matches!(sent, Ok(Ok(()))) {
                tracing::warn!(block = %block, "the mirror does not take packets; dropping it");
                mirror_frames = None;
            }
        }
        let packet = Packet {
            seqno: packet.seqno,
            offset_in_block: packet.offset_in_block,
            last_packet_in_block: last,
            sync_block: packet.sync_block,
            data: packet.data,
            checksums: packet.checksums,
        };
        let queued = tokio::select! {
            _ = session.cancelled() => false,
            queued = packets_tx.send(packet) => queued.is_ok(),
        };
        if !queued {
            break;
        }
        if last {
            drain = true;
            break;
        }
    }
    if !drain {
        session.cancel();
    }
    drop(packets_tx);
    drop(mirror_frames);
    let _ = writer_thread.await;
    let _ = responder.await;
    session.cancel();
}

/// The writer thread: checks and writes packets in order; after the last
/// one finalizes the replica (or, for a copy of a replica being written,
/// leaves it unfinalized); on a bad packet, a failure elsewhere or a
/// recovery taking the replica, leaves it as it is for recovery.
fn write_packets(
    ctx: &DatanodeContext,
    stage: pb::PipelineStage,
    mut receiver: BlockReceiver,
    mut packets: mpsc::Receiver<Packet>,
    written: mpsc::Sender<Written>,
    session: &CancellationToken,
) {
    loop {
        let packet = match packets.blocking_recv() {
            Some(packet) if !session.is_cancelled() => packet,
            _ => {
                let writer = receiver.into_writer();
                tracing::debug!(block = %writer.name, bytes = writer.written(), "write session ended; the replica stays unfinalized");
                ctx.dataset.release(writer, None);
                return;
            }
        };
        let seqno = packet.seqno;
        match receiver.receive(&packet) {
            Ok(Received::Last { end }) => {
                let writer = receiver.into_writer();
                let name = writer.name;
                let outcome = if stage == pb::PipelineStage::TransferRbw {
                    ctx.dataset.release(writer, Some(end));
                    tracing::info!(block = %name, bytes = end, "copy of a replica being written received");
                    Ok(Received::Last { end })
                } else {
                    match ctx.dataset.finalize(writer) {
                        Ok(info) => {
                            let finalized = ExtendedBlock {
                                pool_id: ctx.dataset.pool_id().unwrap_or_default().to_string(),
                                block_id: name.block_id,
                                generation_stamp: info.generation_stamp,
                                num_bytes: info.num_bytes,
                            };
                            tracing::info!(block = %finalized, bytes = info.num_bytes, "replica finalized");
                            ctx.reports.replica_changed(
                                finalized,
                                ctx.dataset.storage_id_of(&info),
                                ReplicaChange::Received,
                            );
                            Ok(Received::Last { end })
                        }
                        Err(err) => {
                            tracing::error!(block = %name, error = %err, "cannot finalize replica");
                            Err((pb::TransferStatus::Error, err.to_string()))
                        }
                    }
                };
                let _ = written.blocking_send(Written { seqno, outcome });
                return;
            }
            Ok(received) => {
                if written
                    .blocking_send(Written {
                        seqno,
                        outcome: Ok(received),
                    })
                    .is_err()
                {
                    ctx.dataset.release(receiver.into_writer(), None);
                    return;
                }
            }
            Err(err) => {
                let writer = receiver.into_writer();
                tracing::warn!(block = %writer.name, bytes = writer.written(), error = %err,
                    "rejecting the write stream; the replica keeps what was written before");
                let status = packet_status(&err);
                ctx.dataset.release(writer, None);
                let _ = written.blocking_send(Written {
                    seqno,
                    outcome: Err((status, err.to_string())),
                });
                return;
            }
        }
    }
}

/// What the responder needs to know of its session.
struct Responder {
    block_id: i64,
    session_id: u64,
    /// Datanodes after this one.
    downstream: usize,
    mirror_addr: String,
}

/// Sends one ack upstream per written packet, merged with the mirror's ack;
/// a packet acknowledged by every datanode from here on becomes visible.
async fn respond(
    ctx: Arc<DatanodeContext>,
    me: Responder,
    mut written: mpsc::Receiver<Written>,
    mut mirror: Option<Streaming<pb::WriteBlockReply>>,
    replies: ReplySender,
    session: CancellationToken,
) {
    let ack_timeout = rdfs_common::grpc::pipeline_ack_timeout(ctx.socket_timeout, me.downstream);
    let mirror_addr = &me.mirror_addr;
    loop {
        let event = tokio::select! {
            _ = session.cancelled() => break,
            event = written.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        let seqno = event.seqno;
        let received = match event.outcome {
            Ok(received) => received,
            Err((status, message)) => {
                send_reply(&ctx, &replies, ack(seqno, vec![status as i32], message)).await;
                break;
            }
        };
        let mut statuses = vec![pb::TransferStatus::Success as i32];
        let mut message = String::new();
        let mut failed = false;
        if let Some(downstream) = mirror.as_mut() {
            let reply = tokio::select! {
                _ = session.cancelled() => break,
                reply = timeout(ack_timeout, downstream.message()) => reply,
            };
            let mirror_failed = match reply {
                Ok(Ok(Some(pb::WriteBlockReply {
                    reply: Some(Reply::Ack(down)),
                }))) if down.seqno == seqno => {
                    failed = down
                        .replies
                        .iter()
                        .any(|s| *s != pb::TransferStatus::Success as i32);
                    statuses.extend(down.replies);
                    message = down.message;
                    None
                }
                Ok(Ok(Some(other))) => Some(format!(
                    "mirror {mirror_addr} sent an unexpected reply for packet {seqno}: {other:?}"
                )),
                Ok(Ok(None)) => Some(format!("mirror {mirror_addr} closed the pipeline")),
                Ok(Err(status)) => {
                    Some(format!("mirror {mirror_addr} failed: {}", status.message()))
                }
                Err(_) => Some(format!(
                    "mirror {mirror_addr} did not ack packet {seqno} within {ack_timeout:?}"
                )),
            };
            if let Some(reason) = mirror_failed {
                tracing::warn!(block_id = me.block_id, error = %reason, "mirror failed");
                ctx.channels.forget(mirror_addr);
                failed = true;
                statuses.push(pb::TransferStatus::Error as i32);
                message = reason;
            }
        }
        let last = matches!(received, Received::Last { .. });
        if !failed && let Received::Data { end } | Received::Last { end } = received {
            ctx.dataset.set_acked(me.block_id, me.session_id, end);
        }
        let sent = tokio::select! {
            _ = session.cancelled() => false,
            sent = send_reply(&ctx, &replies, ack(seqno, statuses, message)) => sent,
        };
        if failed || last || !sent {
            break;
        }
    }
    session.cancel();
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::dataset::ReplicaState;
    use crate::test_support;

    fn header(block_id: i64, targets: Vec<pb::DatanodeInfo>) -> pb::WriteBlockFrame {
        pb::WriteBlockFrame {
            frame: Some(Frame::Header(pb::WriteBlockHeader {
                block: Some((&test_support::block(block_id)).into()),
                targets,
                stage: pb::PipelineStage::SetupCreate as i32,
                checksum_type: pb::ChecksumType::ChecksumCrc32c as i32,
                bytes_per_checksum: 512,
                block_size: 1 << 20,
                ..Default::default()
            })),
        }
    }

    fn packet(seqno: i64, offset: u64, data: &[u8]) -> pb::WriteBlockFrame {
        pb::WriteBlockFrame {
            frame: Some(Frame::Packet(pb::Packet {
                seqno,
                offset_in_block: offset,
                last_packet_in_block: false,
                sync_block: false,
                data: Bytes::copy_from_slice(data),
                checksums: Bytes::from(crate::replica::packet_checksums(data, offset, 512)),
            })),
        }
    }

    async fn reply(replies: &mut Streaming<pb::WriteBlockReply>) -> Reply {
        tokio::time::timeout(Duration::from_secs(10), replies.message())
            .await
            .expect("a reply in time")
            .expect("stream")
            .expect("a reply")
            .reply
            .expect("reply")
    }

    async fn start(
        addr: std::net::SocketAddr,
        header: pb::WriteBlockFrame,
    ) -> (
        mpsc::Sender<pb::WriteBlockFrame>,
        Streaming<pb::WriteBlockReply>,
    ) {
        let channel =
            rdfs_common::grpc::channel(&addr.to_string(), Duration::from_secs(5)).expect("channel");
        let (frames, rx) = mpsc::channel(16);
        frames.send(header).await.expect("header");
        let replies = DataTransferClient::new(channel)
            .write_block(ReceiverStream::new(rx))
            .await
            .expect("call")
            .into_inner();
        (frames, replies)
    }

    async fn transfers_back_to_zero(ctx: &DatanodeContext) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while ctx.transfers.load(Ordering::Relaxed) != 0 {
            assert!(Instant::now() < deadline, "a session outlived its peers");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_whose_client_vanishes_keeps_the_replica_and_ends() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ctx =
            test_support::context(test_support::dataset(tmp.path(), 1), Duration::from_secs(2));
        let stop = CancellationToken::new();
        let addr = test_support::serve(Arc::clone(&ctx), stop.clone()).await;
        let data = test_support::data(1, 3000);

        let (frames, mut replies) = start(addr, header(1, Vec::new())).await;
        assert!(matches!(reply(&mut replies).await, Reply::Setup(s) if s.status == 0));
        frames
            .send(packet(0, 0, &data[..700]))
            .await
            .expect("packet");
        frames
            .send(packet(1, 700, &data[700..2000]))
            .await
            .expect("packet");
        for seqno in 0..2 {
            let Reply::Ack(ack) = reply(&mut replies).await else {
                panic!("an ack")
            };
            assert_eq!((ack.seqno, ack.replies), (seqno, vec![0]));
        }
        assert_eq!(ctx.transfers.load(Ordering::Relaxed), 1);
        drop(frames);
        drop(replies);
        transfers_back_to_zero(&ctx).await;
        let info = ctx.dataset.replica(1).expect("kept");
        assert_eq!(
            (info.state, info.num_bytes, info.acked),
            (ReplicaState::Rbw, 2000, 2000)
        );
        assert!(!ctx.dataset.has_writer(1));

        // The writer comes back through pipeline recovery and resends
        // from what was acknowledged; a bad packet is refused with a
        // clear ack and loses nothing before it.
        let pb::WriteBlockFrame {
            frame: Some(Frame::Header(mut recovery)),
        } = header(1, Vec::new())
        else {
            unreachable!()
        };
        recovery.stage = pb::PipelineStage::SetupStreamingRecovery as i32;
        recovery.latest_generation_stamp = 1002;
        recovery.min_bytes_rcvd = 2000;
        let (frames, mut replies) = start(
            addr,
            pb::WriteBlockFrame {
                frame: Some(Frame::Header(recovery)),
            },
        )
        .await;
        assert!(matches!(reply(&mut replies).await, Reply::Setup(s) if s.status == 0));
        frames
            .send(packet(7, 2000, &data[2000..2500]))
            .await
            .expect("packet");
        let mut bad = packet(8, 2500, &data[2500..3000]);
        if let Some(Frame::Packet(p)) = bad.frame.as_mut() {
            let mut sums = p.checksums.to_vec();
            sums[5] ^= 1;
            p.checksums = Bytes::from(sums);
        }
        frames.send(bad).await.expect("packet");
        let Reply::Ack(ack) = reply(&mut replies).await else {
            panic!("an ack")
        };
        assert_eq!((ack.seqno, ack.replies), (7, vec![0]));
        let Reply::Ack(ack) = reply(&mut replies).await else {
            panic!("an ack")
        };
        assert_eq!(ack.seqno, 8);
        assert_eq!(ack.replies, vec![pb::TransferStatus::ErrorChecksum as i32]);
        assert!(
            ack.message.contains("checksum error at offset 2560"),
            "{}",
            ack.message
        );
        transfers_back_to_zero(&ctx).await;
        let info = ctx.dataset.replica(1).expect("kept");
        assert_eq!(
            (
                info.state,
                info.generation_stamp,
                info.num_bytes,
                info.acked
            ),
            (ReplicaState::Rbw, 1002, 2500, 2500)
        );

        // A stale generation stamp is refused at setup.
        let (frames, mut replies) = start(addr, header(1, Vec::new())).await;
        let Reply::Setup(setup) = reply(&mut replies).await else {
            panic!("a setup reply")
        };
        assert_eq!(setup.status, pb::TransferStatus::ErrorExists as i32);
        drop(frames);
        transfers_back_to_zero(&ctx).await;
        stop.cancel();
    }

    /// A datanode that takes the setup and then stalls, as a SIGSTOPped
    /// one would: it never reads or acknowledges a packet.
    struct Stalled {
        held: Arc<parking_lot::Mutex<Vec<Box<dyn Send>>>>,
    }

    #[tonic::async_trait]
    impl pb::data_transfer_server::DataTransfer for Stalled {
        type WriteBlockStream = ReceiverStream<Result<pb::WriteBlockReply, Status>>;
        type ReadBlockStream = ReceiverStream<Result<pb::ReadPacket, Status>>;

        async fn write_block(
            &self,
            request: tonic::Request<Streaming<pb::WriteBlockFrame>>,
        ) -> Result<tonic::Response<Self::WriteBlockStream>, Status> {
            let mut upstream = request.into_inner();
            let _header = upstream.message().await;
            let (tx, rx) = mpsc::channel(4);
            let _ = tx
                .send(Ok(setup_reply(pb::TransferStatus::Success, "", "")))
                .await;
            self.held.lock().push(Box::new((upstream, tx)));
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        }

        async fn read_block(
            &self,
            _: tonic::Request<pb::ReadBlockRequest>,
        ) -> Result<tonic::Response<Self::ReadBlockStream>, Status> {
            Err(Status::unimplemented("stalled"))
        }

        async fn get_replica_visible_length(
            &self,
            _: tonic::Request<pb::GetReplicaVisibleLengthRequest>,
        ) -> Result<tonic::Response<pb::GetReplicaVisibleLengthResponse>, Status> {
            Err(Status::unimplemented("stalled"))
        }

        async fn transfer_block(
            &self,
            _: tonic::Request<pb::TransferBlockRequest>,
        ) -> Result<tonic::Response<pb::TransferBlockResponse>, Status> {
            Err(Status::unimplemented("stalled"))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_mirror_is_named_in_the_ack_and_the_session_ends() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ctx = test_support::context(
            test_support::dataset(tmp.path(), 1),
            Duration::from_millis(800),
        );
        let stop = CancellationToken::new();
        let addr = test_support::serve(Arc::clone(&ctx), stop.clone()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let stalled_addr = listener.local_addr().expect("addr");
        let held = Arc::new(parking_lot::Mutex::new(Vec::new()));
        {
            let stop = stop.clone();
            let service = Stalled {
                held: Arc::clone(&held),
            };
            tokio::spawn(
                rdfs_common::grpc::server()
                    .add_service(pb::data_transfer_server::DataTransferServer::new(service))
                    .serve_with_incoming_shutdown(
                        rdfs_common::grpc::incoming(listener),
                        async move { stop.cancelled().await },
                    ),
            );
        }
        let data = test_support::data(2, 1024);
        let (frames, mut replies) = start(
            addr,
            header(
                2,
                vec![test_support::datanode_info(stalled_addr, "stalled")],
            ),
        )
        .await;
        assert!(matches!(reply(&mut replies).await, Reply::Setup(s) if s.status == 0));
        let sent = Instant::now();
        frames.send(packet(0, 0, &data)).await.expect("packet");
        // An idle client keeps the pipeline alive with heartbeat packets.
        let heartbeats = {
            let frames = frames.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let heartbeat = pb::WriteBlockFrame {
                        frame: Some(Frame::Packet(pb::Packet {
                            seqno: crate::receiver::HEARTBEAT_SEQNO,
                            offset_in_block: 1024,
                            ..Default::default()
                        })),
                    };
                    if frames.send(heartbeat).await.is_err() {
                        return;
                    }
                }
            })
        };
        let Reply::Ack(ack) = reply(&mut replies).await else {
            panic!("an ack")
        };
        assert_eq!(ack.seqno, 0);
        assert_eq!(
            ack.replies,
            vec![
                pb::TransferStatus::Success as i32,
                pb::TransferStatus::Error as i32
            ]
        );
        assert!(
            ack.message.contains(&stalled_addr.to_string()),
            "{}",
            ack.message
        );
        assert!(sent.elapsed() >= Duration::from_millis(800));
        // The session ends without the client doing anything.
        transfers_back_to_zero(&ctx).await;
        let info = ctx.dataset.replica(2).expect("kept");
        assert_eq!(
            (info.state, info.num_bytes, info.acked),
            (ReplicaState::Rbw, 1024, 0)
        );
        assert!(!ctx.dataset.has_writer(2));
        heartbeats.abort();
        drop(frames);
        held.lock().clear();
        stop.cancel();
    }
}
