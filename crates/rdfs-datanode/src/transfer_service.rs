//! The `DataTransfer` gRPC service: an adapter that turns its streams into
//! the transport-free sessions of `pipeline` (writes) and `read_session`
//! (reads), and answers visible-length queries and copies of a replica
//! being written to a datanode joining its pipeline.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use prost::Message;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use rdfs_common::ExceptionKind;
use rdfs_common::block_token::AccessMode;
use rdfs_common::protocol::{ExtendedBlock, token_from_proto};
use rdfs_proto as pb;
use rdfs_proto::data_transfer_server::{DataTransfer, DataTransferServer};
use rdfs_transfer::grpc as codec;
use rdfs_transfer::read_stream::READ_BLOCK;
use rdfs_transfer::wire::{self, WireFrame};
use rdfs_transfer::wire_call::Messages;
use rdfs_transfer::write_stream::WRITE_BLOCK;
use rdfs_transfer::{Ack, Packet, PacketSource, ReplySink, SetupReply, Stage, StreamError};

use crate::context::DatanodeContext;
use crate::error::DatanodeError;
use crate::pipeline;
use crate::read_session::ReadSession;
use crate::replicate::{self, Order, TransferError};

pub struct TransferService {
    ctx: Arc<DatanodeContext>,
}

impl TransferService {
    pub fn new(ctx: Arc<DatanodeContext>) -> Self {
        Self { ctx }
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<pb::WriteBlockReply, Status>> + Send>>;
type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadPacket, Status>> + Send>>;

#[tonic::async_trait]
impl DataTransfer for TransferService {
    type WriteBlockStream = ReplyStream;
    type ReadBlockStream = ReadStream;

    /// Served by [`DataTransferService`] without tonic's codec.
    async fn write_block(
        &self,
        _: Request<Streaming<pb::WriteBlockFrame>>,
    ) -> Result<Response<ReplyStream>, Status> {
        Err(Status::internal(
            "WriteBlock is served by DataTransferService",
        ))
    }

    async fn get_replica_visible_length(
        &self,
        request: Request<pb::GetReplicaVisibleLengthRequest>,
    ) -> Result<Response<pb::GetReplicaVisibleLengthResponse>, Status> {
        let req = request.into_inner();
        let block = ExtendedBlock::from(req.block.ok_or_else(|| {
            ExceptionKind::IllegalArgument.status("GetReplicaVisibleLength without a block")
        })?);
        self.ctx.dataset.check_pool(&block.pool_id)?;
        self.ctx.block_access.check(
            &token_from_proto(req.block_token),
            &block,
            AccessMode::Read,
            "GET_REPLICA_VISIBLE_LENGTH",
        )?;
        let length = self.ctx.dataset.visible_length(&block)?;
        Ok(Response::new(pb::GetReplicaVisibleLengthResponse {
            length,
        }))
    }

    async fn transfer_block(
        &self,
        request: Request<pb::TransferBlockRequest>,
    ) -> Result<Response<pb::TransferBlockResponse>, Status> {
        let req = request.into_inner();
        let block = ExtendedBlock::from(req.block.ok_or_else(|| {
            ExceptionKind::IllegalArgument.status("TransferBlock without a block")
        })?);
        self.ctx.dataset.check_pool(&block.pool_id)?;
        self.ctx.block_access.check(
            &token_from_proto(req.block_token),
            &block,
            AccessMode::Copy,
            "TRANSFER_BLOCK",
        )?;
        if req.targets.is_empty() {
            return Err(ExceptionKind::IllegalArgument.status("TransferBlock without targets"));
        }
        let _transfer = self.ctx.transfer();
        let order = Order {
            block: block.clone(),
            targets: req.targets.into_iter().map(Into::into).collect(),
            target_storage_ids: req.target_storage_ids,
            balancing: false,
            stage: Stage::TransferRbw,
            client_name: req.client_name,
        };
        match replicate::transfer(Arc::clone(&self.ctx), order).await {
            Ok(bytes) => {
                tracing::info!(block = %block, bytes, "copied a replica being written to a new pipeline member");
                Ok(Response::new(pb::TransferBlockResponse {}))
            }
            Err(err) => {
                tracing::warn!(block = %block, error = %err, "copy of a replica being written failed");
                Err(match err {
                    TransferError::Source(err) => err.into(),
                    TransferError::LengthMismatch { .. } | TransferError::NoTargets => {
                        ExceptionKind::IllegalArgument.status(err.to_string())
                    }
                    TransferError::Target { .. } => ExceptionKind::Io.status(err.to_string()),
                })
            }
        }
    }

    /// Served by [`DataTransferService`] without tonic's codec.
    async fn read_block(
        &self,
        _: Request<pb::ReadBlockRequest>,
    ) -> Result<Response<ReadStream>, Status> {
        Err(Status::internal(
            "ReadBlock is served by DataTransferService",
        ))
    }
}

/// The `DataTransfer` service as servers register it: the two data
/// streams, WriteBlock and ReadBlock, framed by [`rdfs_transfer::wire`] so
/// packet data crosses this datanode without a copy; the other methods
/// through tonic's generated service.
#[derive(Clone)]
pub struct DataTransferService {
    ctx: Arc<DatanodeContext>,
    generated: DataTransferServer<TransferService>,
}

impl DataTransferService {
    pub fn new(ctx: Arc<DatanodeContext>) -> Self {
        Self {
            generated: DataTransferServer::new(TransferService::new(Arc::clone(&ctx)))
                .max_decoding_message_size(rdfs_common::grpc::MAX_MESSAGE_SIZE),
            ctx,
        }
    }
}

impl tonic::server::NamedService for DataTransferService {
    const NAME: &'static str = "rdfs.DataTransfer";
}

type HttpResponse = http::Response<tonic::body::Body>;

impl tower_service::Service<http::Request<tonic::body::Body>> for DataTransferService {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let ctx = Arc::clone(&self.ctx);
        match request.uri().path() {
            WRITE_BLOCK => Box::pin(async move { Ok(write_block(ctx, request).await) }),
            READ_BLOCK => Box::pin(async move { Ok(read_block(ctx, request).await) }),
            _ => {
                let mut generated = self.generated.clone();
                Box::pin(async move { generated.call(request).await })
            }
        }
    }
}

fn http_peer(request: &http::Request<tonic::body::Body>) -> String {
    request
        .extensions()
        .get::<rdfs_common::tls::PeerInfo>()
        .and_then(|peer| peer.remote_addr)
        .map_or_else(|| "upstream".to_string(), |addr| addr.to_string())
}

/// A gRPC response whose body is `frames`, ended by the sender.
fn grpc_response(
    frames: impl Stream<Item = Result<http_body::Frame<Bytes>, Status>> + Send + 'static,
) -> HttpResponse {
    let mut response = http::Response::new(tonic::body::Body::new(
        http_body_util::StreamBody::new(frames),
    ));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

fn trailers(status: Option<Status>) -> http_body::Frame<Bytes> {
    let mut trailers = http::HeaderMap::new();
    let status = status.unwrap_or_else(|| Status::ok(""));
    if status.add_header(&mut trailers).is_err() {
        trailers.insert("grpc-status", http::HeaderValue::from_static("13"));
    }
    http_body::Frame::trailers(trailers)
}

/// The upstream of a write session over [`rdfs_transfer::wire`].
struct WireUpstream {
    messages: Messages,
    peer: String,
}

impl PacketSource for WireUpstream {
    async fn next_packet(&mut self) -> Result<Option<Packet>, StreamError> {
        let malformed = |source: codec::Malformed| StreamError::Malformed {
            peer: self.peer.clone(),
            source,
        };
        match self.messages.next().await {
            None => Ok(None),
            Some(Err(status)) => Err(StreamError::Failed {
                peer: self.peer.clone(),
                kind: ExceptionKind::of_status(&status),
                message: status.message().to_string(),
            }),
            Some(Ok(message)) => match wire::decode_write_frame(message).map_err(malformed)? {
                WireFrame::Packet(packet) => Ok(Some(packet)),
                WireFrame::Header(_) => Err(malformed(codec::Malformed {
                    what: "write frame",
                    why: "a second header in the middle of a block".into(),
                })),
            },
        }
    }
}

/// The replies of a write session over [`rdfs_transfer::wire`].
struct WireReplies {
    tx: mpsc::Sender<Bytes>,
    peer: String,
}

impl WireReplies {
    async fn send(&mut self, reply: pb::WriteBlockReply) -> Result<(), StreamError> {
        self.tx
            .send(wire::encode_message(&reply))
            .await
            .map_err(|_| StreamError::Closed {
                peer: self.peer.clone(),
            })
    }
}

impl ReplySink for WireReplies {
    async fn send_setup(&mut self, reply: SetupReply) -> Result<(), StreamError> {
        self.send(codec::setup_reply_to_pb(reply)).await
    }

    async fn send_ack(&mut self, ack: Ack) -> Result<(), StreamError> {
        self.send(codec::ack_to_pb(ack)).await
    }
}

/// WriteBlock: reads the setup, checks its token and hands the streams to
/// a write session.
async fn write_block(
    ctx: Arc<DatanodeContext>,
    request: http::Request<tonic::body::Body>,
) -> HttpResponse {
    let peer = http_peer(&request);
    let mut messages = Messages::new(request.into_body());
    let header = match timeout(ctx.socket_timeout, messages.next()).await {
        Ok(Some(Ok(message))) => match wire::decode_write_frame(message) {
            Ok(WireFrame::Header(header)) => header,
            Ok(WireFrame::Packet(_)) => {
                return Status::invalid_argument(
                    "the first frame of WriteBlock must be its header",
                )
                .into_http();
            }
            Err(malformed) => return Status::invalid_argument(malformed.to_string()).into_http(),
        },
        Ok(Some(Err(status))) => return status.into_http(),
        Ok(None) => {
            return Status::invalid_argument("the first frame of WriteBlock must be its header")
                .into_http();
        }
        Err(_) => {
            return Status::deadline_exceeded("no WriteBlock header arrived in time").into_http();
        }
    };
    let (tx, rx) = mpsc::channel(64);
    let mut replies = WireReplies {
        tx,
        peer: peer.clone(),
    };
    let response = grpc_response(
        ReceiverStream::new(rx)
            .map(|reply| Ok(http_body::Frame::data(reply)))
            .chain(futures::stream::once(async { Ok(trailers(None)) })),
    );
    let setup = match codec::setup_from_pb(header) {
        Ok(setup) => setup,
        Err(malformed) => {
            tracing::warn!(%peer, error = %malformed, "refusing write");
            let _ = replies
                .send_setup(SetupReply::failed(
                    rdfs_transfer::Status::ErrorInvalid,
                    "",
                    malformed.to_string(),
                ))
                .await;
            return response;
        }
    };
    let setup = match pipeline::authorize(&ctx, setup) {
        Ok(setup) => setup,
        Err(err) => return Status::from(err).into_http(),
    };
    let mirror = Arc::clone(&ctx.mirror);
    tokio::spawn(pipeline::run(
        ctx,
        setup,
        WireUpstream { messages, peer },
        replies,
        mirror,
    ));
    response
}

/// ReadBlock: streams the range's packets, each as its small head and its
/// data as read from disk.
async fn read_block(
    ctx: Arc<DatanodeContext>,
    request: http::Request<tonic::body::Body>,
) -> HttpResponse {
    let mut messages = Messages::new(request.into_body());
    let request = match timeout(ctx.socket_timeout, messages.next()).await {
        Ok(Some(Ok(message))) => pb::ReadBlockRequest::decode(message.contiguous())
            .map_err(|e| {
                ExceptionKind::IllegalArgument.status(format!("malformed ReadBlock request: {e}"))
            })
            .and_then(|request| {
                codec::read_request_from_pb(request)
                    .map_err(|e| ExceptionKind::IllegalArgument.status(e.to_string()))
            }),
        Ok(Some(Err(status))) => Err(status),
        Ok(None) => Err(ExceptionKind::IllegalArgument.status("ReadBlock without a request")),
        Err(_) => Err(Status::deadline_exceeded(
            "no ReadBlock request arrived in time",
        )),
    };
    let request = match request {
        Ok(request) => request,
        Err(status) => return status.into_http(),
    };
    let session = match ReadSession::open(&ctx, request).await {
        Ok(session) => session,
        Err(err) => return Status::from(err).into_http(),
    };
    let mut packets = session.stream();
    let (frames, frames_rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Some(item) = packets.recv().await {
            let packet = match item {
                Ok(packet) => packet,
                Err(err) => {
                    let _ = frames.send(Ok(trailers(Some(Status::from(err))))).await;
                    return;
                }
            };
            let chunks = wire::encode_read_packet(&packet);
            for chunk in std::iter::once(chunks.head).chain(chunks.data) {
                if frames
                    .send(Ok(http_body::Frame::data(chunk)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        let _ = frames.send(Ok(trailers(None))).await;
    });
    grpc_response(ReceiverStream::new(frames_rx))
}

/// How the datanode's failures cross gRPC: the status code and exception
/// name of their kind.
impl From<DatanodeError> for Status {
    fn from(err: DatanodeError) -> Self {
        err.kind().status(err.to_string())
    }
}

/// The gRPC adapter end to end: real streams, real server.
#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use rdfs_proto::data_transfer_client::DataTransferClient;
    use rdfs_proto::write_block_frame::Frame;
    use rdfs_proto::write_block_reply::Reply;

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
        codec::packet_frame(test_support::packet(seqno, offset, data))
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
                .send(Ok(codec::setup_reply_to_pb(SetupReply::success())))
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
