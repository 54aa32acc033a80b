//! [`DfsInputStream`]: reads a file block by block from its replicas,
//! verifying every chunk. A replica that fails a checksum is reported to
//! the namenode and the read goes on from the next replica, as does a read
//! from a datanode that is dead or stalls; the caller sees an error only
//! when no replica of a block can be read.
//!
//! A sequential read never waits at a block boundary: each block's packets
//! are pulled and verified by a task of their own, ahead of the caller,
//! and the next block's stream is opened while the current one's last
//! bytes are still being read.

use std::collections::HashSet;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use rdfs_common::protocol::{DatanodeInfo, LocatedBlock, LocatedBlocks};
use rdfs_transfer::{ReadFailure, ReadRequest, ReadStream, VerifiedChunk};

use crate::client::DfsClient;
use crate::error::{ClientError, Result};

/// Times the block locations are fetched again before giving up on a block
/// (HDFS's `dfs.client.max.block.acquire.failures`).
const LOCATION_REFETCHES: u32 = 3;

/// Verified packets held ahead of the caller, per block.
const READ_AHEAD_PACKETS: usize = 16;

/// How close to the end of a block the next block's stream is opened: far
/// enough to hide the round trip, near enough that the opened stream does
/// not sit idle long enough for its datanode to give up on it.
const PREFETCH_DISTANCE: u64 = 8 * 1024 * 1024;

/// An open read of one block from one datanode, its packets pulled and
/// verified ahead by a task of its own.
struct BlockRead {
    block: LocatedBlock,
    node: DatanodeInfo,
    chunks: mpsc::Receiver<std::result::Result<VerifiedChunk, ReadFailure>>,
    puller: JoinHandle<()>,
    /// End of the range being read, as a file offset.
    end: u64,
}

impl Drop for BlockRead {
    fn drop(&mut self) {
        self.puller.abort();
    }
}

impl BlockRead {
    fn start(block: LocatedBlock, node: DatanodeInfo, mut stream: ReadStream) -> Self {
        let (tx, chunks) = mpsc::channel(READ_AHEAD_PACKETS);
        let puller = tokio::spawn(async move {
            loop {
                let next = stream.next().await;
                let done = !matches!(next, Ok(Some(_)));
                let Some(item) = next.transpose() else {
                    return;
                };
                if tx.send(item).await.is_err() || done {
                    return;
                }
            }
        });
        let end = block.offset + block.block.num_bytes;
        Self {
            block,
            node,
            chunks,
            puller,
            end,
        }
    }
}

/// A read of the next block opened ahead of need.
struct Prefetch {
    /// The file offset it starts at (the block's first byte).
    offset: u64,
    opening: JoinHandle<std::result::Result<BlockRead, ReadFailure>>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.opening.abort();
    }
}

pub struct DfsInputStream {
    client: DfsClient,
    path: String,
    located: LocatedBlocks,
    position: u64,
    current: Option<BlockRead>,
    prefetch: Option<Prefetch>,
    /// Verified bytes at `position` not handed out yet.
    pending: Bytes,
    /// Datanodes that failed this stream (by uuid), tried only as a last resort.
    dead: HashSet<String>,
    /// Location refetches for the block being read.
    refetches: u32,
    /// Refetches for the block being read because a datanode refused its
    /// access token (it expired, or its key rolled away).
    token_refetches: u32,
    /// Every replica of the block being read failed, locations were fetched
    /// again as often as allowed, and the failed ones were tried once more.
    last_resort_tried: bool,
}

impl DfsInputStream {
    pub(crate) fn new(client: DfsClient, path: String, located: LocatedBlocks) -> Self {
        Self {
            client,
            path,
            located,
            position: 0,
            current: None,
            prefetch: None,
            pending: Bytes::new(),
            dead: HashSet::new(),
            refetches: 0,
            token_refetches: 0,
            last_resort_tried: false,
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
            self.prefetch = None;
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
                self.current = None;
                self.current = Some(match self.take_prefetch().await {
                    Some(read) => read,
                    None => self.open_block(moving_on).await?,
                });
            }
            self.maybe_prefetch();
            let Some(current) = self.current.as_mut() else {
                continue;
            };
            match current.chunks.recv().await {
                Some(Ok(chunk)) => {
                    let file_offset = current.block.offset + chunk.offset_in_block;
                    let skip = self.position.saturating_sub(file_offset) as usize;
                    if skip >= chunk.data.len() {
                        continue;
                    }
                    let slice = chunk.data.slice(skip..);
                    self.position += slice.len() as u64;
                    return Ok(Some(slice));
                }
                None => {
                    let node = current.node.clone();
                    self.mark_failed(&node, "the datanode ended the read early");
                }
                Some(Err(ReadFailure::Corrupt(why))) => {
                    let (block, node) = (current.block.block.clone(), current.node.clone());
                    tracing::info!(block = %block, datanode = %node.id.xfer_addr(), reason = %why,
                        "corrupt replica; reporting it and reading another");
                    if let Err(err) = self.client.report_bad_block(&block, &node).await {
                        tracing::warn!(error = %err, "could not report the corrupt replica");
                    }
                    self.mark_failed(&node, &why);
                }
                Some(Err(ReadFailure::Unavailable(why) | ReadFailure::Token(why))) => {
                    let node = current.node.clone();
                    self.mark_failed(&node, &why);
                }
            }
        }
    }

    /// The prefetched read of the block at the current position, if one
    /// was opened and worked.
    async fn take_prefetch(&mut self) -> Option<BlockRead> {
        let prefetch = self.prefetch.take()?;
        if prefetch.offset != self.position {
            return None;
        }
        let mut prefetch = prefetch;
        match (&mut prefetch.opening).await {
            Ok(Ok(read)) => {
                self.refetches = 0;
                self.token_refetches = 0;
                self.last_resort_tried = false;
                Some(read)
            }
            Ok(Err(why)) => {
                tracing::debug!(path = %self.path, reason = %why, "prefetched read failed; opening again");
                None
            }
            Err(_) => None,
        }
    }

    /// Opens the next block's stream when the current block is nearly read.
    fn maybe_prefetch(&mut self) {
        let Some(current) = self.current.as_ref() else {
            return;
        };
        if self.prefetch.is_some() || current.end.saturating_sub(self.position) > PREFETCH_DISTANCE
        {
            return;
        }
        let Some(next) = self.block_at(current.end) else {
            return;
        };
        let Some(node) = next
            .locations
            .iter()
            .find(|d| !self.dead.contains(&d.id.datanode_uuid))
            .cloned()
        else {
            return;
        };
        let client = self.client.clone();
        let offset = next.offset;
        self.prefetch = Some(Prefetch {
            offset,
            opening: tokio::spawn(async move { open_read(&client, &next, &node, 0).await }),
        });
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
        self.prefetch = None;
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
            self.last_resort_tried = false;
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
                // Last resort, once: nodes that failed before may have
                // recovered. A replica that opens but fails again (every
                // replica corrupt) must not be retried forever.
                if self.last_resort_tried {
                    return Err(ClientError::BlockMissing {
                        block: block.block.to_string(),
                        path: self.path.clone(),
                    });
                }
                self.last_resort_tried = true;
                candidates = block.locations.iter().collect();
            }
            let mut failures = Vec::new();
            let mut token_refused = None;
            for node in candidates {
                let offset_in_block = self.position - block.offset;
                match open_read(&self.client, &block, node, offset_in_block).await {
                    Ok(read) => return Ok(read),
                    Err(ReadFailure::Token(why)) => {
                        token_refused = Some(why);
                        break;
                    }
                    Err(ReadFailure::Corrupt(why) | ReadFailure::Unavailable(why)) => {
                        failures.push((node.clone(), why));
                    }
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
}

/// Opens a read of `block` from `offset_in_block` to its end on `node`.
async fn open_read(
    client: &DfsClient,
    block: &LocatedBlock,
    node: &DatanodeInfo,
    offset_in_block: u64,
) -> std::result::Result<BlockRead, ReadFailure> {
    let request = ReadRequest {
        block: block.block.clone(),
        offset: offset_in_block,
        length: block.block.num_bytes - offset_in_block,
        client_name: client.inner.client_name.clone(),
        token: block.block_token.clone(),
    };
    let stream = ReadStream::open(
        &client.inner.datanodes,
        &node.id.xfer_addr(),
        &request,
        client.settings().socket_timeout,
    )
    .await?;
    Ok(BlockRead::start(block.clone(), node.clone(), stream))
}
