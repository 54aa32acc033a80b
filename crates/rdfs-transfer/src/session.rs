//! What a datanode's write session needs from the transport that carries
//! it: packets from upstream, a way to answer upstream, and a mirror (the
//! next datanode). The gRPC service implements the first two over its
//! streams, Hadoop's DataTransferProtocol will over its socket, and tests
//! over channels; the mirror is a [`WriteStream`] in production.

use std::future::Future;
use std::sync::Arc;

use rdfs_common::grpc::ChannelCache;

use crate::error::{SetupFailure, StreamError};
use crate::packet::{Ack, Packet};
use crate::setup::{SetupReply, WriteSetup};
use crate::write_stream::{AckReceiver, PacketSender, StreamOptions, WriteStream};

/// Packets from the upstream writer, after the setup.
pub trait PacketSource: Send + 'static {
    /// The next packet; `Ok(None)` when the upstream closed its side
    /// cleanly (it may still be reading acks).
    fn next_packet(&mut self) -> impl Future<Output = Result<Option<Packet>, StreamError>> + Send;
}

/// Answers to the upstream writer: one setup reply, then one ack per
/// packet in order.
pub trait ReplySink: Send + 'static {
    fn send_setup(
        &mut self,
        reply: SetupReply,
    ) -> impl Future<Output = Result<(), StreamError>> + Send;
    fn send_ack(&mut self, ack: Ack) -> impl Future<Output = Result<(), StreamError>> + Send;
}

/// Opens the pipeline to the next datanode.
pub trait Mirror: Send + Sync + 'static {
    fn connect(
        &self,
        addr: &str,
        setup: &WriteSetup,
    ) -> impl Future<Output = Result<(PacketSender, AckReceiver), SetupFailure>> + Send;

    /// Drops what is cached for a datanode that failed.
    fn forget(&self, addr: &str);
}

/// Mirrors over gRPC, sharing one connection per datanode.
pub struct GrpcMirror {
    pub channels: Arc<ChannelCache>,
    pub options: StreamOptions,
}

impl Mirror for GrpcMirror {
    async fn connect(
        &self,
        addr: &str,
        setup: &WriteSetup,
    ) -> Result<(PacketSender, AckReceiver), SetupFailure> {
        WriteStream::open(&self.channels, addr, setup, self.options).await
    }

    fn forget(&self, addr: &str) {
        self.channels.forget(addr);
    }
}
