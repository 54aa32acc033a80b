//! rdfs's data-transfer layer, below both the client and the datanode.
//!
//! - [`packet`] and [`setup`]: what a transfer carries, as plain types
//!   (HDFS's packet header, pipeline ack, `BlockConstructionStage`, read
//!   request), whatever transport carries them.
//! - [`WriteStream`]: opens a write pipeline to a datanode and hands back
//!   its packet sender and ack receiver. The client's block writer, a
//!   datanode's mirror and its replica copies all start pipelines here.
//! - [`ReadStream`]: reads a range of a replica with every chunk verified.
//! - [`session`]: the transport-facing traits a datanode's write session
//!   runs over, so gRPC and Hadoop's DataTransferProtocol are two adapters
//!   of one session.
//! - [`calls`]: the one-shot calls beside the streams (visible length, a
//!   copy to a datanode joining a pipeline, block recovery's two steps).
//! - [`grpc`]: the codec between the plain types and `rdfs.DataTransfer`'s
//!   messages.
//! - [`wire`] and [`wire_call`]: the data streams' gRPC framing without
//!   tonic's codec, so packet data crosses a datanode without a copy.

pub mod calls;
pub mod error;
pub mod grpc;
pub mod packet;
pub mod read_stream;
pub mod session;
pub mod setup;
pub mod wire;
pub mod wire_call;
pub mod write_stream;

pub use error::{SetupFailure, StreamError};
pub use packet::{Ack, HEARTBEAT_SEQNO, Packet, Status};
pub use read_stream::{ReadFailure, ReadStream, VerifiedChunk};
pub use session::{GrpcMirror, Mirror, PacketSource, ReplySink};
pub use setup::{ReadPacket, ReadRequest, SetupReply, Stage, WriteSetup};
pub use write_stream::{AckReceiver, PacketSender, StreamOptions, WriteStream};
