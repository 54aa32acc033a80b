//! One replica's write session on this datanode, whatever transport
//! carries it: receive packets from upstream, forward them to the next
//! datanode (the mirror) before writing them, write them on a dedicated
//! thread, and send acks upstream in sequence order, each carrying this
//! datanode's status followed by every downstream one.
//!
//! The session runs over the traits of [`rdfs_transfer::session`]: the
//! gRPC service is one adapter (`transfer_service`), Hadoop's
//! DataTransferProtocol another, and tests drive it over channels.
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
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use rdfs_common::block_token::AccessMode;
use rdfs_common::protocol::ExtendedBlock;
use rdfs_transfer::{
    Ack, AckReceiver, Mirror, Packet, PacketSource, ReplySink, SetupReply, Stage, Status,
    StreamError, WriteSetup,
};

use crate::context::DatanodeContext;
use crate::error::DatanodeError;
use crate::receiver::{BlockReceiver, PacketError, Received};
use crate::replica::ReplicaWriter;
use crate::reports::ReplicaChange;

/// Packets queued between the network reader and the writer thread.
const WRITE_QUEUE: usize = 16;

/// A setup whose block token was checked: the only way into [`run`].
pub struct Authorized(WriteSetup);

/// Checks the setup's block token. A refusal is the adapter's to answer,
/// as its transport answers refused operations.
pub fn authorize(ctx: &DatanodeContext, setup: WriteSetup) -> Result<Authorized, DatanodeError> {
    ctx.block_access
        .check(&setup.token, &setup.block, AccessMode::Write, "WRITE_BLOCK")?;
    Ok(Authorized(setup))
}

/// What the writer thread reports for each packet, in order.
struct Written {
    seqno: i64,
    outcome: Result<Received, (Status, String)>,
}

fn packet_status(err: &PacketError) -> Status {
    match err {
        PacketError::Checksum { .. } => Status::ErrorChecksum,
        PacketError::Storage(_) => Status::Error,
        _ => Status::ErrorInvalid,
    }
}

fn setup_status(err: &DatanodeError) -> Status {
    match err {
        DatanodeError::ReplicaExists(..) => Status::ErrorExists,
        DatanodeError::InvalidRequest(_)
        | DatanodeError::StaleGenerationStamp(_)
        | DatanodeError::RecoveryInProgress(_)
        | DatanodeError::WrongPool { .. } => Status::ErrorInvalid,
        _ => Status::Error,
    }
}

/// Opens the replica as the setup's stage says. Blocking.
fn open_replica(
    ctx: &DatanodeContext,
    setup: &WriteSetup,
    max_len: u64,
) -> Result<ReplicaWriter, DatanodeError> {
    let block = &setup.block;
    let new_gs = setup.new_generation_stamp();
    let expected = if max_len == u64::MAX { 0 } else { max_len };
    let writer = match setup.stage {
        Stage::SetupCreate => ctx
            .dataset
            .create_rbw(block, setup.checksum, expected, false)?,
        Stage::TransferFinalized | Stage::TransferRbw => {
            let block = ExtendedBlock {
                generation_stamp: new_gs,
                ..block.clone()
            };
            ctx.dataset
                .create_rbw(&block, setup.checksum, expected, true)?
        }
        Stage::SetupAppend => ctx.dataset.append(block, new_gs)?,
        Stage::SetupStreamingRecovery => {
            ctx.dataset
                .recover_rbw(block, new_gs, setup.min_bytes_rcvd)?
        }
    };
    if writer.checksum() != setup.checksum {
        let message = format!(
            "the replica of {block} is checksummed {}, the writer uses {}",
            writer.checksum(),
            setup.checksum
        );
        ctx.dataset.release(writer, None);
        return Err(DatanodeError::InvalidRequest(message));
    }
    Ok(writer)
}

/// Sends the setup reply upstream; false when the upstream is gone.
async fn answer_setup<R: ReplySink>(
    ctx: &DatanodeContext,
    replies: &mut R,
    reply: SetupReply,
) -> bool {
    matches!(
        timeout(ctx.socket_timeout, replies.send_setup(reply)).await,
        Ok(Ok(()))
    )
}

/// Runs one write session after its setup has been read and authorized.
pub async fn run<U, R, M>(
    ctx: Arc<DatanodeContext>,
    setup: Authorized,
    mut upstream: U,
    mut replies: R,
    mirror: Arc<M>,
) where
    U: PacketSource,
    R: ReplySink,
    M: Mirror,
{
    let Authorized(setup) = setup;
    let _transfer = ctx.transfer();
    let block = setup.block.clone();
    let stage = setup.stage;
    if let Err(err) = ctx.dataset.check_pool(&block.pool_id) {
        tracing::warn!(block = %block, error = %err, "refusing write");
        answer_setup(
            &ctx,
            &mut replies,
            SetupReply::failed(Status::ErrorInvalid, "", err.to_string()),
        )
        .await;
        return;
    }
    // The most the replica may grow to: the file's block size; a copy of
    // a finalized replica is exactly its length.
    let max_len = match (setup.block_size, stage) {
        (0, Stage::SetupCreate | Stage::TransferFinalized) if block.num_bytes > 0 => {
            block.num_bytes
        }
        (0, _) => u64::MAX,
        (size, _) => size,
    };
    let opened = {
        let ctx = Arc::clone(&ctx);
        let setup = setup.clone();
        tokio::task::spawn_blocking(move || open_replica(&ctx, &setup, max_len))
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
            tracing::warn!(block = %block, stage = stage.name(), error = %err, "cannot set up the replica");
            answer_setup(
                &ctx,
                &mut replies,
                SetupReply::failed(setup_status(&err), "", err.to_string()),
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
            if stage == Stage::SetupCreate {
                ctx.dataset.abort(writer);
            } else {
                ctx.dataset.release(writer, None);
            }
        })
        .await;
    };
    let mirror_addr = setup.targets.first().map(|next| next.id.xfer_addr());
    let downstream = match &mirror_addr {
        None => None,
        Some(addr) => match mirror.connect(addr, &setup.for_next()).await {
            Ok(streams) => Some(streams),
            Err(failure) => {
                tracing::warn!(block = %block, first_bad_link = %failure.first_bad_link, error = %failure.message, "pipeline setup failed downstream");
                give_up(Arc::clone(&ctx), writer).await;
                answer_setup(
                    &ctx,
                    &mut replies,
                    SetupReply::failed(Status::Error, &failure.first_bad_link, failure.message),
                )
                .await;
                return;
            }
        },
    };
    if !answer_setup(&ctx, &mut replies, SetupReply::success()).await {
        give_up(Arc::clone(&ctx), writer).await;
        return;
    }
    tracing::debug!(block = %block, stage = stage.name(), from = writer.written(),
        mirror = mirror_addr.as_deref(), "pipeline established");

    // Every part of the session ends when this is cancelled: by any part
    // failing, or by a recovery or deletion taking the replica.
    let session = lease_token.child_token();
    let first_seqno = (stage == Stage::SetupCreate).then_some(0);
    let (packets_tx, packets_rx) = mpsc::channel::<Packet>(WRITE_QUEUE);
    let (written_tx, written_rx) = mpsc::channel::<Written>(WRITE_QUEUE * 4);
    let writer_thread = {
        let ctx = Arc::clone(&ctx);
        let session = session.clone();
        let receiver = BlockReceiver::new(writer, setup.checksum, max_len, first_seqno);
        tokio::task::spawn_blocking(move || {
            write_packets(&ctx, stage, receiver, packets_rx, written_tx, &session);
        })
    };
    let (mut mirror_packets, mirror_acks) = match downstream {
        Some((packets, acks)) => (Some(packets), Some(acks)),
        None => (None, None),
    };
    let responder = tokio::spawn(respond(
        Arc::clone(&ctx),
        Responder {
            block_id: block.block_id,
            session_id,
            downstream: setup.targets.len(),
            mirror_addr: mirror_addr.unwrap_or_default(),
        },
        written_rx,
        mirror_acks,
        replies,
        session.clone(),
        mirror,
    ));

    // Whether the packets already received still get written and
    // acknowledged: after the last packet, or when the upstream closed its
    // side cleanly (it may still be reading acks).
    let mut drain = false;
    loop {
        let next = tokio::select! {
            _ = session.cancelled() => break,
            next = timeout(ctx.socket_timeout, upstream.next_packet()) => next,
        };
        let packet = match next {
            Ok(Ok(Some(packet))) => packet,
            Ok(Ok(None)) => {
                tracing::info!(block = %block, "upstream closed the stream before the last packet; keeping the replica for recovery");
                drain = true;
                break;
            }
            Ok(Err(err)) => {
                tracing::info!(block = %block, error = %err, "upstream failed; keeping the replica for recovery");
                break;
            }
            Err(_) => {
                tracing::warn!(block = %block, timeout = ?ctx.socket_timeout, "no packet from upstream in time; keeping the replica for recovery");
                break;
            }
        };
        let last = packet.last_packet_in_block;
        if let Some(sink) = &mirror_packets {
            // Forward first, so the next datanode works while this one
            // writes. A mirror that does not take it is dropped: the
            // responder then reports it failed.
            let sent = tokio::select! {
                _ = session.cancelled() => break,
                sent = sink.send(packet.clone()) => sent,
            };
            if let Err(err) = sent {
                tracing::warn!(block = %block, error = %err, "the mirror does not take packets; dropping it");
                mirror_packets = None;
            }
        }
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
    drop(mirror_packets);
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
    stage: Stage,
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
                let outcome = if stage == Stage::TransferRbw {
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
                            Err((Status::Error, err.to_string()))
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

/// Sends an ack upstream unless the upstream stopped taking them.
async fn send_ack<R: ReplySink>(ctx: &DatanodeContext, replies: &mut R, ack: Ack) -> bool {
    matches!(
        timeout(ctx.socket_timeout, replies.send_ack(ack)).await,
        Ok(Ok(()))
    )
}

/// Sends one ack upstream per written packet, merged with the mirror's ack;
/// a packet acknowledged by every datanode from here on becomes visible.
async fn respond<R: ReplySink, M: Mirror>(
    ctx: Arc<DatanodeContext>,
    me: Responder,
    mut written: mpsc::Receiver<Written>,
    mut mirror_acks: Option<AckReceiver>,
    mut replies: R,
    session: CancellationToken,
    mirror: Arc<M>,
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
                send_ack(
                    &ctx,
                    &mut replies,
                    Ack {
                        seqno,
                        replies: vec![status],
                        message,
                    },
                )
                .await;
                break;
            }
        };
        let mut ack = Ack {
            seqno,
            replies: vec![Status::Success],
            message: String::new(),
        };
        let mut failed = false;
        if let Some(downstream) = mirror_acks.as_mut() {
            let reply = tokio::select! {
                _ = session.cancelled() => break,
                reply = downstream.next(Instant::now() + ack_timeout) => reply,
            };
            let mirror_failed = match reply {
                Ok(down) if down.seqno == seqno => {
                    failed = down.first_failure().is_some();
                    ack.replies.extend(down.replies);
                    ack.message = down.message;
                    None
                }
                Ok(down) => Some(format!(
                    "mirror {mirror_addr} acknowledged packet {} while {seqno} was expected",
                    down.seqno
                )),
                Err(StreamError::Closed { .. }) => {
                    Some(format!("mirror {mirror_addr} closed the pipeline"))
                }
                Err(StreamError::Timeout { .. }) => Some(format!(
                    "mirror {mirror_addr} did not ack packet {seqno} within {ack_timeout:?}"
                )),
                Err(err) => Some(format!("mirror {mirror_addr} failed: {err}")),
            };
            if let Some(reason) = mirror_failed {
                tracing::warn!(block_id = me.block_id, error = %reason, "mirror failed");
                mirror.forget(mirror_addr);
                failed = true;
                ack.replies.push(Status::Error);
                ack.message = reason;
            }
        }
        let last = matches!(received, Received::Last { .. });
        if !failed && let Received::Data { end } | Received::Last { end } = received {
            ctx.dataset.set_acked(me.block_id, me.session_id, end);
        }
        let sent = tokio::select! {
            _ = session.cancelled() => false,
            sent = send_ack(&ctx, &mut replies, ack) => sent,
        };
        if failed || last || !sent {
            break;
        }
    }
    session.cancel();
}

/// The session over in-memory adapters: the test plays the upstream
/// writer and the mirror, and injects their failures.
#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use bytes::Bytes;
    use parking_lot::Mutex;
    use tokio::task::JoinHandle;
    use tokio_stream::wrappers::ReceiverStream;

    use rdfs_common::checksum::DataChecksum;
    use rdfs_common::protocol::DatanodeInfo;
    use rdfs_transfer::grpc::WriteReply;
    use rdfs_transfer::{PacketSender, SetupFailure};

    use super::*;
    use crate::dataset::ReplicaState;
    use crate::test_support;

    const MIRROR: &str = "10.0.0.9:9866";

    #[derive(Debug)]
    enum Reply {
        Setup(SetupReply),
        Ack(Ack),
    }

    struct Upstream(mpsc::Receiver<Result<Packet, StreamError>>);

    impl PacketSource for Upstream {
        async fn next_packet(&mut self) -> Result<Option<Packet>, StreamError> {
            self.0.recv().await.transpose()
        }
    }

    struct Replies(mpsc::UnboundedSender<Reply>);

    impl Replies {
        fn send(&self, reply: Reply) -> Result<(), StreamError> {
            self.0.send(reply).map_err(|_| StreamError::Closed {
                peer: "upstream".into(),
            })
        }
    }

    impl ReplySink for Replies {
        async fn send_setup(&mut self, reply: SetupReply) -> Result<(), StreamError> {
            self.send(Reply::Setup(reply))
        }

        async fn send_ack(&mut self, ack: Ack) -> Result<(), StreamError> {
            self.send(Reply::Ack(ack))
        }
    }

    /// The next datanode, as the test plays it.
    struct Downstream {
        packets: mpsc::Receiver<Packet>,
        acks: mpsc::Sender<Result<WriteReply, StreamError>>,
    }

    struct SimMirror {
        refuse: Option<SetupFailure>,
        connected: mpsc::UnboundedSender<Downstream>,
        forgotten: Mutex<Vec<String>>,
        socket_timeout: Duration,
    }

    impl Mirror for SimMirror {
        async fn connect(
            &self,
            addr: &str,
            _setup: &WriteSetup,
        ) -> Result<(PacketSender, AckReceiver), rdfs_transfer::SetupFailure> {
            if let Some(failure) = &self.refuse {
                return Err(failure.clone());
            }
            let (packets_tx, packets) = mpsc::channel(16);
            let (acks, acks_rx) = mpsc::channel(16);
            let _ = self.connected.send(Downstream { packets, acks });
            Ok((
                PacketSender::new(packets_tx, addr, self.socket_timeout),
                AckReceiver::from_stream(ReceiverStream::new(acks_rx), addr),
            ))
        }

        fn forget(&self, addr: &str) {
            self.forgotten.lock().push(addr.to_string());
        }
    }

    struct Session {
        ctx: Arc<DatanodeContext>,
        packets: mpsc::Sender<Result<Packet, StreamError>>,
        replies: mpsc::UnboundedReceiver<Reply>,
        downstreams: mpsc::UnboundedReceiver<Downstream>,
        mirror: Arc<SimMirror>,
        task: JoinHandle<()>,
        _tmp: tempfile::TempDir,
    }

    fn mirror_target() -> DatanodeInfo {
        let addr: std::net::SocketAddr = MIRROR.parse().expect("addr");
        test_support::datanode_info(addr, "mirror").into()
    }

    fn setup(block_id: i64, with_mirror: bool) -> WriteSetup {
        WriteSetup {
            block: test_support::block(block_id),
            targets: if with_mirror {
                vec![mirror_target()]
            } else {
                Vec::new()
            },
            target_storage_ids: Vec::new(),
            client_name: "sim".into(),
            stage: Stage::SetupCreate,
            checksum: DataChecksum::crc32c(512),
            latest_generation_stamp: 0,
            min_bytes_rcvd: 0,
            max_bytes_rcvd: 0,
            block_size: 1 << 20,
            token: Default::default(),
        }
    }

    fn start(setup: WriteSetup, refuse: Option<SetupFailure>, socket_timeout: Duration) -> Session {
        let tmp = tempfile::tempdir().expect("tmp");
        let ctx = test_support::context(test_support::dataset(tmp.path(), 1), socket_timeout);
        let (packets, packets_rx) = mpsc::channel(16);
        let (replies_tx, replies) = mpsc::unbounded_channel();
        let (connected, downstreams) = mpsc::unbounded_channel();
        let mirror = Arc::new(SimMirror {
            refuse,
            connected,
            forgotten: Mutex::new(Vec::new()),
            socket_timeout,
        });
        let authorized = authorize(&ctx, setup).expect("tokens are off");
        let task = tokio::spawn(run(
            Arc::clone(&ctx),
            authorized,
            Upstream(packets_rx),
            Replies(replies_tx),
            Arc::clone(&mirror),
        ));
        Session {
            ctx,
            packets,
            replies,
            downstreams,
            mirror,
            task,
            _tmp: tmp,
        }
    }

    use test_support::packet;

    fn last(seqno: i64, offset: u64) -> Packet {
        Packet {
            last_packet_in_block: true,
            ..packet(seqno, offset, &[])
        }
    }

    impl Session {
        async fn send(&self, packet: Packet) {
            self.packets
                .send(Ok(packet))
                .await
                .expect("session takes packets");
        }

        async fn reply(&mut self) -> Reply {
            tokio::time::timeout(Duration::from_secs(10), self.replies.recv())
                .await
                .expect("a reply in time")
                .expect("the session answers")
        }

        async fn setup_ok(&mut self) {
            let reply = self.reply().await;
            assert!(
                matches!(&reply, Reply::Setup(s) if s.status.is_success()),
                "{reply:?}"
            );
        }

        async fn ack(&mut self) -> Ack {
            match self.reply().await {
                Reply::Ack(ack) => ack,
                other => panic!("an ack, not {other:?}"),
            }
        }

        async fn downstream(&mut self) -> Downstream {
            tokio::time::timeout(Duration::from_secs(10), self.downstreams.recv())
                .await
                .expect("the mirror is connected in time")
                .expect("a mirror")
        }

        /// Waits for the session to end by itself and for every part of it
        /// to let go of the replica.
        async fn ended(self) -> Arc<DatanodeContext> {
            tokio::time::timeout(Duration::from_secs(10), self.task)
                .await
                .expect("the session ends by itself")
                .expect("no panic");
            assert_eq!(self.ctx.transfers.load(Ordering::Relaxed), 0);
            self.ctx
        }
    }

    fn replica(ctx: &DatanodeContext, block_id: i64) -> (ReplicaState, u64, u64) {
        let info = ctx.dataset.replica(block_id).expect("replica kept");
        assert!(!ctx.dataset.has_writer(block_id));
        (info.state, info.num_bytes, info.acked)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn packets_are_forwarded_unchanged_and_acks_merged() {
        let mut s = start(setup(1, true), None, Duration::from_secs(2));
        let mut down = s.downstream().await;
        s.setup_ok().await;
        let data = test_support::data(1, 1500);
        let sent = [
            packet(0, 0, &data[..1024]),
            packet(1, 1024, &data[1024..]),
            last(2, 1500),
        ];
        for p in &sent {
            s.send(p.clone()).await;
            let forwarded = down.packets.recv().await.expect("forwarded");
            assert_eq!(&forwarded, p);
            // The mirror gets the very bytes received, not a copy.
            assert_eq!(forwarded.data.as_ptr(), p.data.as_ptr());
            down.acks
                .send(Ok(WriteReply::Ack(Ack {
                    seqno: p.seqno,
                    replies: vec![Status::Success],
                    message: String::new(),
                })))
                .await
                .expect("ack");
            let ack = s.ack().await;
            assert_eq!(
                (ack.seqno, ack.replies),
                (p.seqno, vec![Status::Success, Status::Success])
            );
        }
        let ctx = s.ended().await;
        assert_eq!(replica(&ctx, 1), (ReplicaState::Finalized, 1500, 1500));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_checksum_mid_packet_is_refused_and_what_came_before_kept() {
        let mut s = start(setup(2, false), None, Duration::from_secs(2));
        s.setup_ok().await;
        let data = test_support::data(2, 2560);
        s.send(packet(0, 0, &data[..1024])).await;
        let mut bad = packet(1, 1024, &data[1024..]);
        let mut sums = bad.checksums.to_vec();
        sums[5] ^= 0x40; // the second of three chunks
        bad.checksums = Bytes::from(sums);
        s.send(bad).await;
        let ack = s.ack().await;
        assert_eq!((ack.seqno, ack.replies), (0, vec![Status::Success]));
        let ack = s.ack().await;
        assert_eq!((ack.seqno, ack.replies), (1, vec![Status::ErrorChecksum]));
        assert!(
            ack.message.contains("checksum error at offset 1536"),
            "{}",
            ack.message
        );
        let ctx = s.ended().await;
        assert_eq!(replica(&ctx, 2), (ReplicaState::Rbw, 1024, 1024));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mirror_that_dies_between_setup_and_the_first_packet_is_named() {
        let mut s = start(setup(3, true), None, Duration::from_secs(2));
        let down = s.downstream().await;
        s.setup_ok().await;
        drop(down);
        s.send(packet(0, 0, &test_support::data(3, 1024))).await;
        let ack = s.ack().await;
        assert_eq!(
            (ack.seqno, ack.replies.clone()),
            (0, vec![Status::Success, Status::Error])
        );
        assert!(
            ack.message.contains(MIRROR) && ack.message.contains("closed"),
            "{}",
            ack.message
        );
        let mirror = Arc::clone(&s.mirror);
        let ctx = s.ended().await;
        assert_eq!(mirror.forgotten.lock().as_slice(), [MIRROR]);
        // Written here, but not acknowledged by the whole pipeline.
        assert_eq!(replica(&ctx, 3), (ReplicaState::Rbw, 1024, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_mirror_is_named_once_its_ack_is_overdue() {
        let timeout = Duration::from_millis(400);
        let mut s = start(setup(4, true), None, timeout);
        let _down = s.downstream().await;
        s.setup_ok().await;
        let sent = std::time::Instant::now();
        s.send(packet(0, 0, &test_support::data(4, 700))).await;
        // An idle writer keeps the pipeline alive with heartbeats.
        let heartbeats = {
            let packets = s.packets.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if packets.send(Ok(Packet::heartbeat())).await.is_err() {
                        return;
                    }
                }
            })
        };
        let ack = s.ack().await;
        assert_eq!(ack.replies, vec![Status::Success, Status::Error]);
        assert!(
            ack.message.contains("did not ack packet 0"),
            "{}",
            ack.message
        );
        assert!(sent.elapsed() >= timeout);
        let ctx = s.ended().await;
        heartbeats.abort();
        assert_eq!(replica(&ctx, 4), (ReplicaState::Rbw, 700, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_or_failed_upstream_ends_the_session_and_keeps_the_replica() {
        // Silent: it sends one packet and then nothing, holding the stream open.
        let mut s = start(setup(5, false), None, Duration::from_millis(400));
        s.setup_ok().await;
        s.send(packet(0, 0, &test_support::data(5, 1024))).await;
        assert_eq!(s.ack().await.replies, vec![Status::Success]);
        let packets = s.packets.clone();
        let ctx = s.ended().await;
        drop(packets);
        assert_eq!(replica(&ctx, 5), (ReplicaState::Rbw, 1024, 1024));

        // Failed: its transport breaks after a packet.
        let mut s = start(setup(6, false), None, Duration::from_secs(2));
        s.setup_ok().await;
        s.send(packet(0, 0, &test_support::data(6, 600))).await;
        assert_eq!(s.ack().await.replies, vec![Status::Success]);
        s.packets
            .send(Err(StreamError::Closed {
                peer: "client".into(),
            }))
            .await
            .expect("sent");
        let ctx = s.ended().await;
        assert_eq!(replica(&ctx, 6), (ReplicaState::Rbw, 600, 600));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_mirror_setup_names_the_first_bad_link_and_deletes_the_new_replica() {
        let refusal = SetupFailure {
            first_bad_link: "10.0.0.10:9866".into(),
            refused: true,
            message: "no volume has room".into(),
        };
        let mut s = start(setup(7, true), Some(refusal), Duration::from_secs(2));
        match s.reply().await {
            Reply::Setup(reply) => {
                assert_eq!(reply.status, Status::Error);
                assert_eq!(reply.first_bad_link, "10.0.0.10:9866");
                assert!(reply.message.contains("no volume has room"));
            }
            other => panic!("a setup reply, not {other:?}"),
        }
        let ctx = s.ended().await;
        assert!(ctx.dataset.replica(7).is_none());
    }
}
