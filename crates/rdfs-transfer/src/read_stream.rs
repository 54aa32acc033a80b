//! The receiving end of a block read: [`ReadStream`] asks a datanode for a
//! range of a replica and yields its bytes with every chunk verified, each
//! packet where the previous one ended and none past the block.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;

use rdfs_common::ExceptionKind;
use rdfs_common::grpc::ChannelCache;

use crate::error::StreamError;
use crate::grpc;
use crate::setup::ReadRequest;
use crate::wire;
use crate::wire_call::{self, Messages};

/// The gRPC method of block reads.
pub const READ_BLOCK: &str = "/rdfs.DataTransfer/ReadBlock";

/// Why a replica could not serve a read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadFailure {
    /// The datanode refused the block token: fresh tokens may do.
    #[error("{0}")]
    Token(String),
    /// Its bytes do not match their checksums, as this reader found: the
    /// reader should report the replica.
    #[error("{0}")]
    Corrupt(String),
    /// Unreachable, dead, stalled, or it found its replica damaged itself
    /// (and reports it): another replica may do.
    #[error("{0}")]
    Unavailable(String),
}

/// Verified bytes of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChunk {
    pub offset_in_block: u64,
    pub data: Bytes,
}

/// One open read of a range of one replica.
pub struct ReadStream {
    peer: String,
    messages: Messages,
    block_len: u64,
    requested_offset: u64,
    /// Where the next packet must start, once the first packet has told
    /// the replica's chunk size.
    expected_offset: Option<u64>,
    socket_timeout: Duration,
}

impl ReadStream {
    /// Asks the datanode at `addr` for the request's range.
    pub async fn open(
        channels: &ChannelCache,
        addr: &str,
        request: &ReadRequest,
        socket_timeout: Duration,
    ) -> Result<Self, ReadFailure> {
        let channel = channels
            .get(addr)
            .map_err(|e| ReadFailure::Unavailable(format!("bad address {addr}: {e}")))?;
        let body = wire::encode_message(&grpc::read_request_to_pb(request));
        let call = wire_call::start(channel, READ_BLOCK, tokio_stream::once(body));
        match timeout(socket_timeout, call).await {
            Ok(Ok(messages)) => Ok(Self {
                peer: addr.to_string(),
                messages,
                block_len: request.block.num_bytes,
                requested_offset: request.offset,
                expected_offset: None,
                socket_timeout,
            }),
            Ok(Err(status)) => {
                let err = StreamError::from_status(&status, addr);
                Err(match err.kind() {
                    Some(ExceptionKind::InvalidBlockToken) => ReadFailure::Token(err.to_string()),
                    // The datanode found its replica damaged; it reports it itself.
                    Some(ExceptionKind::CorruptReplica) => {
                        ReadFailure::Unavailable(format!("corrupt replica on {err}"))
                    }
                    _ => ReadFailure::Unavailable(err.to_string()),
                })
            }
            Err(_) => Err(ReadFailure::Unavailable(format!(
                "{addr} did not answer within {socket_timeout:?}"
            ))),
        }
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The next packet's bytes, verified; `None` once the datanode ended
    /// the stream.
    pub async fn next(&mut self) -> Result<Option<VerifiedChunk>, ReadFailure> {
        let addr = &self.peer;
        let packet = match timeout(self.socket_timeout, self.messages.next()).await {
            Ok(Some(Ok(message))) => wire::decode_read_packet(message)
                .map_err(|e| ReadFailure::Unavailable(format!("{addr} sent a {e}")))?,
            Ok(None) => return Ok(None),
            Ok(Some(Err(status))) => {
                let err = StreamError::from_status(&status, addr);
                return Err(ReadFailure::Unavailable(
                    if err.kind() == Some(ExceptionKind::CorruptReplica) {
                        format!("corrupt replica on {err}")
                    } else {
                        err.to_string()
                    },
                ));
            }
            Err(_) => {
                return Err(ReadFailure::Unavailable(format!(
                    "{addr} sent nothing for {:?}",
                    self.socket_timeout
                )));
            }
        };
        let packet = grpc::read_packet_from_pb(packet)
            .map_err(|e| ReadFailure::Unavailable(format!("{addr} sent a {e}")))?;
        let checksum = packet.checksum;
        // Checksums do not cover offsets: a packet out of place is refused,
        // as is one running past the block.
        let bpc = u64::from(checksum.bytes_per_checksum);
        let expected = self
            .expected_offset
            .unwrap_or(self.requested_offset - self.requested_offset % bpc);
        if packet.offset_in_block != expected
            || packet.offset_in_block + packet.data.len() as u64 > self.block_len
        {
            return Err(ReadFailure::Unavailable(format!(
                "{addr} sent {} bytes at offset {}, expected offset {expected} of a {}-byte block",
                packet.data.len(),
                packet.offset_in_block,
                self.block_len,
            )));
        }
        if packet.checksums.len() != checksum.checksums_len(packet.data.len()) {
            return Err(ReadFailure::Corrupt(format!(
                "{addr} sent {} checksum bytes for {} data bytes",
                packet.checksums.len(),
                packet.data.len()
            )));
        }
        checksum
            .verify_at(&packet.data, &packet.checksums, packet.offset_in_block)
            .map_err(|mismatch| ReadFailure::Corrupt(format!("{mismatch} from {addr}")))?;
        self.expected_offset = Some(expected + packet.data.len() as u64);
        Ok(Some(VerifiedChunk {
            offset_in_block: packet.offset_in_block,
            data: packet.data,
        }))
    }
}
