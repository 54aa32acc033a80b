//! [`DfsOutputStream`]: cuts what the caller writes into checksummed
//! packets, blocks into pipelines, and closes the file once the namenode
//! has its minimum replicas. `hflush` makes what was written visible to new
//! readers, `hsync` also durable on the datanodes; an append continues the
//! file's partial last block.
//!
//! Packets end on chunk boundaries, except a flushed partial chunk and the
//! block's last: the packet after one starts mid-chunk, its first checksum
//! covering only the rest of that chunk.

use std::collections::HashSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use rdfs_common::ExceptionKind;
use rdfs_common::protocol::{ExtendedBlock, LocatedBlock};
use rdfs_proto as pb;

use crate::block_writer::BlockWriter;
use crate::client::{DfsClient, LeaseGuard};
use crate::error::{ClientError, Result};

/// Attempts of addBlock while the block before last awaits its replicas.
const ADD_BLOCK_ATTEMPTS: u32 = 10;

pub struct DfsOutputStream {
    client: DfsClient,
    src: String,
    file_id: u64,
    block_size: u64,
    replication: u32,
    packet: BytesMut,
    block: Option<BlockWriter>,
    /// The partial last block of a file opened for append, reopened on the
    /// first write.
    reopen: Option<LocatedBlock>,
    previous: Option<ExtendedBlock>,
    written: u64,
    /// Set by the first failure: a stream that lost data must never close
    /// as if it had not (HDFS's `lastException`).
    failed: Option<String>,
    /// Keeps the client's leases renewed while the stream is open.
    _lease: LeaseGuard,
}

impl DfsOutputStream {
    pub(crate) fn new(
        client: DfsClient,
        src: String,
        file_id: u64,
        block_size: u64,
        replication: u32,
    ) -> Self {
        let capacity = client.settings().write_packet_size;
        let lease = client.lease_guard();
        Self {
            client,
            src,
            file_id,
            block_size,
            replication,
            packet: BytesMut::with_capacity(capacity),
            block: None,
            reopen: None,
            previous: None,
            written: 0,
            failed: None,
            _lease: lease,
        }
    }

    /// A stream appending to a file of `length` bytes whose last block is
    /// `reopen` when partial, `previous` when the file ends on a block
    /// boundary.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn for_append(
        client: DfsClient,
        src: String,
        file_id: u64,
        block_size: u64,
        replication: u32,
        length: u64,
        reopen: Option<LocatedBlock>,
        previous: Option<ExtendedBlock>,
    ) -> Self {
        let mut stream = Self::new(client, src, file_id, block_size, replication);
        stream.written = length;
        stream.reopen = reopen;
        stream.previous = previous;
        stream
    }

    fn check_open(&self) -> Result<()> {
        match &self.failed {
            Some(why) => Err(ClientError::Pipeline(format!(
                "{} cannot be written any more: {why}",
                self.src
            ))),
            None => Ok(()),
        }
    }

    /// Records the first failure, after which every call fails.
    fn sticky<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(err) = &result
            && self.failed.is_none()
        {
            self.failed = Some(err.to_string());
        }
        result
    }

    pub fn path(&self) -> &str {
        &self.src
    }

    pub fn replication(&self) -> u32 {
        self.replication
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.written
    }

    /// Where the buffered packet starts in the current block.
    fn packet_start(&self) -> u64 {
        match (&self.block, &self.reopen) {
            (Some(block), _) => block.bytes(),
            (None, Some(reopen)) => reopen.block.num_bytes,
            (None, None) => 0,
        }
    }

    fn bytes_in_block(&self) -> u64 {
        self.packet_start() + self.packet.len() as u64
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.check_open()?;
        let result = self.write_inner(data).await;
        self.sticky(result)
    }

    /// As [`Self::write`], for data the caller already holds in [`Bytes`]:
    /// whole packets of it go to the pipeline as they are, without being
    /// copied into the packet buffer.
    pub async fn write_bytes(&mut self, data: Bytes) -> Result<()> {
        self.check_open()?;
        let result = self.write_shared(data).await;
        self.sticky(result)
    }

    async fn write_shared(&mut self, mut data: Bytes) -> Result<()> {
        let settings = self.client.settings();
        let (packet_size, bpc) = (
            settings.write_packet_size,
            settings.checksum.bytes_per_checksum,
        );
        while !data.is_empty() {
            let block_room = (self.block_size - self.bytes_in_block()) as usize;
            let packet_limit = packet_size - (self.packet_start() % u64::from(bpc)) as usize;
            let whole = packet_limit.min(block_room);
            if self.packet.is_empty() && data.len() >= whole {
                let packet = data.split_to(whole);
                self.written += whole as u64;
                self.send_data(packet, false).await?;
                if self.bytes_in_block() == self.block_size {
                    self.end_block().await?;
                }
            } else {
                // Top up the partly filled packet (or buffer a short tail).
                let take = data
                    .len()
                    .min(packet_limit - self.packet.len())
                    .min(block_room);
                self.write_inner(&data[..take]).await?;
                bytes::Buf::advance(&mut data, take);
            }
        }
        Ok(())
    }

    async fn write_inner(&mut self, mut data: &[u8]) -> Result<()> {
        let settings = self.client.settings();
        let (packet_size, bpc) = (
            settings.write_packet_size,
            settings.checksum.bytes_per_checksum,
        );
        while !data.is_empty() {
            let block_room = (self.block_size - self.bytes_in_block()) as usize;
            // A packet starting mid-chunk is shorter, so the next one starts
            // on a chunk boundary again.
            let packet_limit = packet_size - (self.packet_start() % u64::from(bpc)) as usize;
            let take = data
                .len()
                .min(packet_limit - self.packet.len())
                .min(block_room);
            self.packet.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.written += take as u64;
            let block_full = self.bytes_in_block() == self.block_size;
            if self.packet.len() == packet_limit || block_full {
                self.send_packet(false).await?;
            }
            if block_full {
                self.end_block().await?;
            }
        }
        Ok(())
    }

    /// Sends the buffered bytes as a packet (an empty one only to sync).
    async fn send_packet(&mut self, sync: bool) -> Result<()> {
        if self.packet.is_empty() && (!sync || self.block.is_none()) {
            return Ok(());
        }
        let data: Bytes = self.packet.split().freeze();
        let sent = self.send_data(data, sync).await;
        let capacity = self.client.settings().write_packet_size;
        self.packet.reserve(capacity);
        sent
    }

    /// Sends `data` as the next packet of the current block (starting the
    /// block first if needed), with its checksums.
    async fn send_data(&mut self, data: Bytes, sync: bool) -> Result<()> {
        if self.block.is_none() {
            self.block = Some(match self.reopen.take() {
                Some(last) => {
                    BlockWriter::append(
                        &self.client,
                        &self.src,
                        self.file_id,
                        self.replication,
                        self.block_size,
                        last,
                    )
                    .await?
                }
                None => self.start_block().await?,
            });
        }
        let start = self.packet_start();
        let checksum = self.client.settings().checksum;
        let mut sums = BytesMut::with_capacity(checksum.checksums_len_at(start, data.len()));
        checksum.compute_at(&data, start, &mut sums);
        match self.block.as_mut() {
            Some(block) => block.send(data, sums.freeze(), false, sync).await,
            None => Err(ClientError::Pipeline("no block to write to".into())),
        }
    }

    /// Makes everything written so far visible to new readers: every
    /// datanode of the pipeline has it (HDFS's hflush).
    pub async fn hflush(&mut self) -> Result<()> {
        self.check_open()?;
        let result = self.flush(false).await;
        self.sticky(result)
    }

    /// As [`Self::hflush`], and the datanodes have synced it to disk; the
    /// namenode records the length (HDFS's hsync with UPDATE_LENGTH).
    pub async fn hsync(&mut self) -> Result<()> {
        self.check_open()?;
        let result = self.flush(true).await;
        self.sticky(result)
    }

    async fn flush(&mut self, sync: bool) -> Result<()> {
        self.send_packet(sync).await?;
        let Some(block) = self.block.as_mut() else {
            return Ok(());
        };
        block.mark_flushed();
        block.wait_acked().await?;
        if sync {
            let request = pb::FsyncRequest {
                src: self.src.clone(),
                client: self.client.inner.client_name.clone(),
                last_block_length: block.bytes(),
                file_id: self.file_id,
            };
            self.client
                .nn()
                .fsync(request)
                .await
                .map_err(|s| self.client.remote(s))?;
        }
        Ok(())
    }

    async fn end_block(&mut self) -> Result<()> {
        if let Some(block) = self.block.take() {
            let finished = block.finish().await?;
            tracing::debug!(block = %finished, bytes = finished.num_bytes, "block written");
            self.previous = Some(finished);
        }
        Ok(())
    }

    /// Allocates the next block and sets its pipeline up, leaving out a
    /// datanode that fails the setup and asking for another block.
    async fn start_block(&mut self) -> Result<BlockWriter> {
        let settings = self.client.settings().clone();
        let mut excluded: HashSet<String> = HashSet::new();
        let mut last_error = None;
        for _ in 0..settings.block_write_retries {
            let located = self.add_block(&excluded).await?;
            match BlockWriter::create(
                &self.client,
                &self.src,
                self.file_id,
                self.replication,
                self.block_size,
                located.clone(),
            )
            .await
            {
                Ok(writer) => return Ok(writer),
                Err(failure) => {
                    tracing::warn!(block = %located.block, error = %failure.error, "pipeline setup failed; abandoning the block");
                    self.abandon(&located).await;
                    let bad = failure
                        .bad_node
                        .as_deref()
                        .and_then(|addr| {
                            located.locations.iter().find(|d| d.id.xfer_addr() == addr)
                        })
                        .or_else(|| located.locations.first());
                    if let Some(node) = bad {
                        tracing::info!(datanode = %node.id.xfer_addr(), "excluding datanode from the next pipeline");
                        excluded.insert(node.id.datanode_uuid.clone());
                    }
                    last_error = Some(failure.error);
                }
            }
        }
        Err(ClientError::Pipeline(format!(
            "Unable to create new block for {}: {}",
            self.src,
            last_error.map_or_else(|| "no attempt made".to_string(), |e| e.to_string())
        )))
    }

    async fn add_block(&self, excluded: &HashSet<String>) -> Result<LocatedBlock> {
        let mut delay = Duration::from_millis(20);
        let mut attempt = 0;
        loop {
            let request = pb::AddBlockRequest {
                src: self.src.clone(),
                client_name: self.client.inner.client_name.clone(),
                previous: self.previous.as_ref().map(Into::into),
                exclude_nodes: excluded.iter().cloned().collect(),
                file_id: self.file_id,
            };
            match self.client.nn().add_block(request).await {
                Ok(response) => {
                    return response.into_inner().block.map(Into::into).ok_or_else(|| {
                        ClientError::Transport("addBlock returned no block".into())
                    });
                }
                Err(status) => {
                    let err = self.client.remote(status);
                    attempt += 1;
                    if !err.is(ExceptionKind::NotReplicatedYet) || attempt >= ADD_BLOCK_ATTEMPTS {
                        return Err(err);
                    }
                    tracing::debug!(src = %self.src, retry = attempt, "NotReplicatedYetException; retrying addBlock");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn abandon(&self, located: &LocatedBlock) {
        let request = pb::AbandonBlockRequest {
            block: Some((&located.block).into()),
            src: self.src.clone(),
            holder: self.client.inner.client_name.clone(),
            file_id: self.file_id,
        };
        if let Err(status) = self.client.nn().abandon_block(request).await {
            tracing::warn!(block = %located.block, error = %status.message(), "abandonBlock failed");
        }
    }

    /// Writes what is buffered, finishes the last block and closes the file.
    pub async fn close(mut self) -> Result<()> {
        self.check_open()?;
        let flushed = async {
            self.send_packet(false).await?;
            if self.block.is_none()
                && let Some(last) = self.reopen.take()
            {
                // Appended nothing: the reopened block closes as it was.
                self.previous = Some(last.block);
            }
            self.end_block().await
        }
        .await;
        self.sticky(flushed)?;
        let settings = self.client.settings().clone();
        let mut delay = Duration::from_millis(20);
        for _ in 0..=settings.complete_retries {
            let request = pb::CompleteRequest {
                src: self.src.clone(),
                client_name: self.client.inner.client_name.clone(),
                last: self.previous.as_ref().map(Into::into),
                file_id: self.file_id,
            };
            let done = self
                .client
                .nn()
                .complete(request)
                .await
                .map_err(|s| self.client.remote(s))?
                .into_inner()
                .result;
            if done {
                return Ok(());
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Err(ClientError::Pipeline(format!(
            "Unable to close file because the last block {} does not have enough number of replicas.",
            self.previous
                .map_or_else(|| "null".to_string(), |b| b.to_string())
        )))
    }
}
