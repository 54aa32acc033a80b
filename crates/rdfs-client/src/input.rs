//! [`DfsInputStream`]: reads a file block by block from its replicas,
//! verifying every chunk. A replica that fails a checksum is reported to
//! the namenode and the read goes on from the next replica, as does a read
//! from a datanode that is dead or stalls; the caller sees an error only
//! when no replica of a block can be read.

use std::collections::HashSet;

use bytes::Bytes;
use tokio::time::timeout;
use tonic::Streaming;

use rdfs_common::ExceptionKind;
use rdfs_common::checksum;
use rdfs_common::protocol::{DatanodeInfo, LocatedBlock, LocatedBlocks, token_to_proto};
use rdfs_proto as pb;
use rdfs_proto::data_transfer_client::DataTransferClient;

use crate::client::DfsClient;
use crate::error::{ClientError, Result};

/// Times the block locations are fetched again before giving up on a block
/// (HDFS's `dfs.client.max.block.acquire.failures`).
const LOCATION_REFETCHES: u32 = 3;

/// An open read of one block from one datanode.
struct BlockRead {
    block: LocatedBlock,
    node: DatanodeInfo,
    stream: Streaming<pb::ReadPacket>,
    /// End of the range being read, as a file offset.
    end: u64,
    /// Offset in the block the read was asked to start at.
    requested_offset: u64,
    /// Offset in the block where the next packet must start, once the
    /// first packet has told the replica's chunk size.
    expected_offset: Option<u64>,
}

pub struct DfsInputStream {
    client: DfsClient,
    path: String,
    located: LocatedBlocks,
    position: u64,
    current: Option<BlockRead>,
    /// Verified bytes at `position` not handed out yet.
    pending: Bytes,
    /// Datanodes that failed this stream (by uuid), tried only as a last resort.
    dead: HashSet<String>,
    /// Location refetches for the block being read.
    refetches: u32,
    /// Refetches for the block being read because a datanode refused its
    /// access token (it expired, or its key rolled away).
    token_refetches: u32,
}

/// Why one replica could not serve a read.
enum ReplicaFailure {
    /// Its data does not match its checksums: report it.
    Corrupt(String),
    /// Unreachable, dead or stalled.
    Unavailable(String),
}

impl DfsInputStream {
    pub(crate) fn new(client: DfsClient, path: String, located: LocatedBlocks) -> Self {
        Self {
            client,
            path,
            located,
            position: 0,
            current: None,
            pending: Bytes::new(),
            dead: HashSet::new(),
            refetches: 0,
            token_refetches: 0,
        }
    }

    /// The file's length (of its complete blocks, for a file being written).
    pub fn len(&self) -> u64 {
        self.located.file_length
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn seek(&mut self, position: u64) {
        if position != self.position {
            self.position = position;
            self.current = None;
            self.pending = Bytes::new();
        }
    }

    /// The next verified bytes from the current position; `None` at the end.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>> {
        if !self.pending.is_empty() {
            let chunk = std::mem::take(&mut self.pending);
            self.position += chunk.len() as u64;
            return Ok(Some(chunk));
        }
        loop {
            if self.position >= self.len() {
                return Ok(None);
            }
            if self.current.as_ref().is_none_or(|c| self.position >= c.end) {
                let moving_on = self.current.is_some();
                self.current = Some(self.open_block(moving_on).await?);
            }
            let Some(current) = self.current.as_mut() else {
                continue;
            };
            match next_verified(current, self.client.settings().socket_timeout).await {
                Ok(Some((offset_in_block, data))) => {
                    let file_offset = current.block.offset + offset_in_block;
                    let skip = self.position.saturating_sub(file_offset) as usize;
                    if skip >= data.len() {
                        continue;
                    }
                    let slice = data.slice(skip..);
                    self.position += slice.len() as u64;
                    return Ok(Some(slice));
                }
                Ok(None) => {
                    let node = current.node.clone();
                    self.mark_failed(&node, "the datanode ended the read early");
                }
                Err(ReplicaFailure::Corrupt(why)) => {
                    let (block, node) = (current.block.block.clone(), current.node.clone());
                    tracing::info!(block = %block, datanode = %node.id.xfer_addr(), reason = %why,
                        "corrupt replica; reporting it and reading another");
                    if let Err(err) = self.client.report_bad_block(&block, &node).await {
                        tracing::warn!(error = %err, "could not report the corrupt replica");
                    }
                    self.mark_failed(&node, &why);
                }
                Err(ReplicaFailure::Unavailable(why)) => {
                    let node = current.node.clone();
                    self.mark_failed(&node, &why);
                }
            }
        }
    }

    /// Reads up to `buf.len()` bytes.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let Some(chunk) = self.read_chunk().await? else {
                break;
            };
            let take = chunk.len().min(buf.len() - filled);
            buf[filled..filled + take].copy_from_slice(&chunk[..take]);
            filled += take;
            if take < chunk.len() {
                // Keep what did not fit for the next call.
                self.position -= (chunk.len() - take) as u64;
                self.pending = chunk.slice(take..);
            }
        }
        Ok(filled)
    }

    fn mark_failed(&mut self, node: &DatanodeInfo, why: &str) {
        tracing::info!(datanode = %node.id.xfer_addr(), path = %self.path, reason = why, "switching to another replica");
        self.dead.insert(node.id.datanode_uuid.clone());
        self.client.inner.datanodes.forget(&node.id.xfer_addr());
        self.current = None;
    }

    fn block_at(&self, position: u64) -> Option<LocatedBlock> {
        self.located
            .blocks
            .iter()
            .find(|b| position >= b.offset && position < b.offset + b.block.num_bytes)
            .cloned()
    }

    /// Opens a read of the block holding the current position on the first
    /// replica that answers.
    async fn open_block(&mut self, next_block: bool) -> Result<BlockRead> {
        if next_block {
            self.refetches = 0;
            self.token_refetches = 0;
        }
        loop {
            let block = self.block_at(self.position).ok_or_else(|| {
                ClientError::Transport(format!(
                    "no block of {} covers offset {}",
                    self.path, self.position
                ))
            })?;
            let mut candidates: Vec<&DatanodeInfo> = block
                .locations
                .iter()
                .filter(|d| !self.dead.contains(&d.id.datanode_uuid))
                .collect();
            if candidates.is_empty() && self.refetches >= LOCATION_REFETCHES {
                // Last resort: nodes that failed before may have recovered.
                candidates = block.locations.iter().collect();
            }
            let mut failures = Vec::new();
            let mut token_refused = None;
            for node in candidates {
                match self.open_on(&block, node).await {
                    Ok(read) => return Ok(read),
                    Err(OpenFailure::Token(why)) => {
                        token_refused = Some(why);
                        break;
                    }
                    Err(OpenFailure::Replica(why)) => failures.push((node.clone(), why)),
                }
            }
            if let Some(why) = token_refused {
                // The token is what failed, not the datanode: fetch the
                // locations with fresh tokens and try again, as HDFS's
                // reader does, once per block.
                if self.token_refetches >= 1 {
                    return Err(ClientError::Transport(format!(
                        "reading {} of {}: {why}",
                        block.block, self.path
                    )));
                }
                self.token_refetches += 1;
                tracing::info!(block = %block.block, path = %self.path, reason = %why,
                    "block token refused; fetching new tokens");
                self.located = self.client.readable_locations(&self.path).await?;
                continue;
            }
            for (node, why) in failures {
                self.mark_failed(&node, &why);
            }
            if self.refetches >= LOCATION_REFETCHES {
                return Err(ClientError::BlockMissing {
                    block: block.block.to_string(),
                    path: self.path.clone(),
                });
            }
            self.refetches += 1;
            tracing::info!(block = %block.block, path = %self.path, attempt = self.refetches,
                "no replica could be read; fetching the block's locations again");
            tokio::time::sleep(std::time::Duration::from_millis(
                200 * u64::from(self.refetches),
            ))
            .await;
            self.located = self.client.readable_locations(&self.path).await?;
            self.dead.clear();
        }
    }

    async fn open_on(
        &self,
        block: &LocatedBlock,
        node: &DatanodeInfo,
    ) -> std::result::Result<BlockRead, OpenFailure> {
        let settings = self.client.settings();
        let addr = node.id.xfer_addr();
        let channel = self
            .client
            .inner
            .datanodes
            .get(&addr)
            .map_err(|e| OpenFailure::Replica(format!("bad address {addr}: {e}")))?;
        let offset_in_block = self.position - block.offset;
        let request = pb::ReadBlockRequest {
            block: Some((&block.block).into()),
            offset: offset_in_block,
            length: block.block.num_bytes - offset_in_block,
            client_name: self.client.inner.client_name.clone(),
            block_token: token_to_proto(&block.block_token),
        };
        let mut dn = DataTransferClient::new(channel)
            .max_decoding_message_size(rdfs_common::grpc::MAX_MESSAGE_SIZE);
        match timeout(settings.socket_timeout, dn.read_block(request)).await {
            Ok(Ok(response)) => Ok(BlockRead {
                block: block.clone(),
                node: node.clone(),
                stream: response.into_inner(),
                end: block.offset + block.block.num_bytes,
                requested_offset: offset_in_block,
                expected_offset: None,
            }),
            Ok(Err(status)) => {
                let kind = ExceptionKind::of_status(&status);
                if kind == Some(ExceptionKind::CorruptReplica) {
                    // The datanode found its replica damaged; it reports it itself.
                    return Err(OpenFailure::Replica(format!(
                        "corrupt replica on {addr}: {}",
                        status.message()
                    )));
                }
                if kind == Some(ExceptionKind::InvalidBlockToken) {
                    return Err(OpenFailure::Token(format!("{addr}: {}", status.message())));
                }
                Err(OpenFailure::Replica(format!(
                    "{addr}: {}",
                    status.message()
                )))
            }
            Err(_) => Err(OpenFailure::Replica(format!(
                "{addr} did not answer within {:?}",
                settings.socket_timeout
            ))),
        }
    }
}

/// Why a replica could not be opened for reading.
enum OpenFailure {
    /// The datanode refused the block token: new tokens may do.
    Token(String),
    /// The replica or its datanode failed: another replica may do.
    Replica(String),
}

/// The next packet of a block read, with its chunks verified.
async fn next_verified(
    read: &mut BlockRead,
    socket_timeout: std::time::Duration,
) -> std::result::Result<Option<(u64, Bytes)>, ReplicaFailure> {
    let addr = read.node.id.xfer_addr();
    let packet = match timeout(socket_timeout, read.stream.message()).await {
        Ok(Ok(Some(packet))) => packet,
        Ok(Ok(None)) => return Ok(None),
        Ok(Err(status)) => {
            if ExceptionKind::of_status(&status) == Some(ExceptionKind::CorruptReplica) {
                return Err(ReplicaFailure::Unavailable(format!(
                    "corrupt replica on {addr}: {}",
                    status.message()
                )));
            }
            return Err(ReplicaFailure::Unavailable(format!(
                "{addr}: {}",
                status.message()
            )));
        }
        Err(_) => {
            return Err(ReplicaFailure::Unavailable(format!(
                "{addr} sent nothing for {socket_timeout:?}"
            )));
        }
    };
    let bpc = if packet.bytes_per_checksum == 0 {
        checksum::DEFAULT_BYTES_PER_CHECKSUM
    } else {
        packet.bytes_per_checksum
    };
    if packet.checksums.len() != checksum::checksums_len(packet.data.len(), bpc) {
        return Err(ReplicaFailure::Corrupt(format!(
            "{addr} sent {} checksum bytes for {} data bytes",
            packet.checksums.len(),
            packet.data.len()
        )));
    }
    // Checksums do not cover offsets: a packet out of place is refused, as
    // is one running past the block.
    let block_len = read.block.block.num_bytes;
    let expected = read
        .expected_offset
        .unwrap_or(read.requested_offset - read.requested_offset % u64::from(bpc));
    if packet.offset_in_block != expected
        || packet.offset_in_block + packet.data.len() as u64 > block_len
    {
        return Err(ReplicaFailure::Unavailable(format!(
            "{addr} sent {} bytes at offset {} of {}, expected offset {}",
            packet.data.len(),
            packet.offset_in_block,
            read.block.block,
            expected
        )));
    }
    checksum::verify(&packet.data, &packet.checksums, bpc, packet.offset_in_block)
        .map_err(|mismatch| ReplicaFailure::Corrupt(format!("{} from {addr}", mismatch)))?;
    read.expected_offset = Some(expected + packet.data.len() as u64);
    Ok(Some((packet.offset_in_block, packet.data)))
}
