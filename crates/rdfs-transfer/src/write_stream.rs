//! The sending end of a write pipeline: [`WriteStream::open`] connects to
//! the first datanode, sends the setup, waits for the pipeline's answer
//! and hands back a [`PacketSender`] and an [`AckReceiver`]. The client's
//! block writer, a datanode's mirror and its replica copies all start
//! their pipelines here.

use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use prost::Message;

use rdfs_common::grpc::{ChannelCache, pipeline_ack_timeout};
use rdfs_proto as pb;

use crate::error::{SetupFailure, StreamError};
use crate::grpc::{self, WriteReply};
use crate::packet::{Ack, Packet};
use crate::setup::{SetupReply, WriteSetup};
use crate::{wire, wire_call};

/// The gRPC method of write pipelines.
pub const WRITE_BLOCK: &str = "/rdfs.DataTransfer/WriteBlock";

/// How long a stream may wait, and how many packets it queues.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Bound on any single wait for the peer.
    pub socket_timeout: Duration,
    /// Packets queued towards the peer before a send waits.
    pub queue: usize,
}

/// Packets towards the first datanode of a pipeline. Clones share the
/// stream (the heartbeat task holds one).
#[derive(Clone)]
pub struct PacketSender {
    tx: mpsc::Sender<Packet>,
    peer: String,
    socket_timeout: Duration,
}

impl PacketSender {
    /// A sender over a channel whose other end is a transport (or, in
    /// tests, a simulated datanode).
    pub fn new(tx: mpsc::Sender<Packet>, peer: &str, socket_timeout: Duration) -> Self {
        Self {
            tx,
            peer: peer.to_string(),
            socket_timeout,
        }
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Queues a packet; fails when the stream has closed or the peer takes
    /// nothing for the socket timeout.
    pub async fn send(&self, packet: Packet) -> Result<(), StreamError> {
        match timeout(self.socket_timeout, self.tx.send(packet)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StreamError::Closed {
                peer: self.peer.clone(),
            }),
            Err(_) => Err(StreamError::Timeout {
                peer: self.peer.clone(),
                waited: self.socket_timeout,
            }),
        }
    }

    /// Queues a heartbeat unless the queue is full (then packets are
    /// flowing and none is needed). Fails only once the stream has closed.
    pub fn send_heartbeat(&self) -> Result<(), StreamError> {
        match self.tx.try_send(Packet::heartbeat()) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StreamError::Closed {
                peer: self.peer.clone(),
            }),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<WriteReply, StreamError>> + Send>>;

/// Acks from the first datanode of a pipeline, in packet order.
pub struct AckReceiver {
    replies: ReplyStream,
    peer: String,
}

impl AckReceiver {
    /// Acks from any stream of replies (a transport, or a simulated
    /// datanode in tests).
    pub fn from_stream(
        replies: impl Stream<Item = Result<WriteReply, StreamError>> + Send + 'static,
        peer: &str,
    ) -> Self {
        Self {
            replies: Box::pin(replies),
            peer: peer.to_string(),
        }
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    async fn next_reply(&mut self, deadline: Instant) -> Result<WriteReply, StreamError> {
        match timeout_at(deadline, self.replies.next()).await {
            Ok(Some(reply)) => reply,
            Ok(None) => Err(StreamError::Closed {
                peer: self.peer.clone(),
            }),
            Err(_) => Err(StreamError::Timeout {
                peer: self.peer.clone(),
                waited: deadline.saturating_duration_since(Instant::now()),
            }),
        }
    }

    /// The next ack, by `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> Result<Ack, StreamError> {
        let started = Instant::now();
        match self.next_reply(deadline).await {
            Ok(WriteReply::Ack(ack)) => Ok(ack),
            Ok(WriteReply::Setup(_)) => Err(StreamError::Malformed {
                peer: self.peer.clone(),
                source: grpc::Malformed {
                    what: "pipeline ack",
                    why: "a second setup reply".into(),
                },
            }),
            Err(StreamError::Timeout { peer, .. }) => Err(StreamError::Timeout {
                peer,
                waited: deadline.saturating_duration_since(started),
            }),
            Err(err) => Err(err),
        }
    }
}

/// Opens write pipelines over gRPC.
pub struct WriteStream;

impl WriteStream {
    /// Connects to the datanode at `addr`, sends `setup` and waits for the
    /// whole pipeline's answer (each datanode answers once the next one
    /// has). A datanode that cannot be reached or does not answer in time
    /// is forgotten in `channels`, so the next attempt connects afresh.
    pub async fn open(
        channels: &ChannelCache,
        addr: &str,
        setup: &WriteSetup,
        options: StreamOptions,
    ) -> Result<(PacketSender, AckReceiver), SetupFailure> {
        let fail = |message: String| SetupFailure {
            first_bad_link: addr.to_string(),
            refused: false,
            message,
        };
        let channel = channels
            .get(addr)
            .map_err(|e| fail(format!("bad datanode address {addr}: {e}")))?;
        let (tx, rx) = mpsc::channel::<Packet>(options.queue.max(1));
        // Each packet goes out as its small head and its data, untouched.
        let chunks = tokio_stream::once(wire::encode_message(&grpc::header_frame(setup))).chain(
            futures::StreamExt::flat_map(ReceiverStream::new(rx), |packet| {
                let chunks = wire::encode_packet(&packet);
                futures::stream::iter(std::iter::once(chunks.head).chain(chunks.data))
            }),
        );
        let call = wire_call::start(channel, WRITE_BLOCK, chunks);
        let replies = match timeout(options.socket_timeout, call).await {
            Ok(Ok(messages)) => messages,
            Ok(Err(status)) => {
                channels.forget(addr);
                return Err(fail(StreamError::from_status(&status, addr).to_string()));
            }
            Err(_) => {
                channels.forget(addr);
                return Err(fail(format!(
                    "datanode {addr} did not answer within {:?}",
                    options.socket_timeout
                )));
            }
        };
        let peer = addr.to_string();
        let replies = futures::stream::unfold(replies, |mut messages| async move {
            messages.next().await.map(|message| (message, messages))
        });
        let mut acks = AckReceiver::from_stream(
            replies.map(move |message| match message {
                Ok(message) => pb::WriteBlockReply::decode(message.contiguous())
                    .map_err(|e| grpc::Malformed {
                        what: "write reply",
                        why: e.to_string(),
                    })
                    .and_then(grpc::reply_from_pb)
                    .map_err(|source| StreamError::Malformed {
                        peer: peer.clone(),
                        source,
                    }),
                Err(status) => Err(StreamError::from_status(&status, &peer)),
            }),
            addr,
        );
        let setup_timeout = pipeline_ack_timeout(options.socket_timeout, 1 + setup.targets.len());
        match acks.next_reply(Instant::now() + setup_timeout).await {
            Ok(WriteReply::Setup(SetupReply {
                status,
                first_bad_link,
                message,
            })) => {
                if status.is_success() {
                    Ok((PacketSender::new(tx, addr, options.socket_timeout), acks))
                } else {
                    Err(SetupFailure {
                        first_bad_link: if first_bad_link.is_empty() {
                            addr.to_string()
                        } else {
                            first_bad_link
                        },
                        refused: true,
                        message,
                    })
                }
            }
            Ok(WriteReply::Ack(ack)) => Err(fail(format!(
                "datanode {addr} sent the ack of packet {} instead of a setup reply",
                ack.seqno
            ))),
            Err(StreamError::Timeout { .. }) => {
                channels.forget(addr);
                Err(fail(format!(
                    "datanode {addr} did not confirm the pipeline of {} within {setup_timeout:?}",
                    setup.block
                )))
            }
            Err(err) => Err(fail(format!("pipeline setup failed: {err}"))),
        }
    }
}
