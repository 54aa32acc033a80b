//! [`DfsOutputStream`]: cuts what the caller writes into checksummed
//! packets, blocks into pipelines, and closes the file once the namenode
//! has its minimum replicas.

use std::collections::HashSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use rdfs_common::ExceptionKind;
use rdfs_common::checksum;
use rdfs_common::protocol::{ExtendedBlock, LocatedBlock};
use rdfs_proto as pb;

use crate::block_writer::BlockWriter;
use crate::client::DfsClient;
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
    previous: Option<ExtendedBlock>,
    written: u64,
    /// Set by the first failure: a stream that lost data must never close
    /// as if it had not (HDFS's `lastException`).
    failed: Option<String>,
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
        Self {
            client,
            src,
            file_id,
            block_size,
            replication,
            packet: BytesMut::with_capacity(capacity),
            block: None,
            previous: None,
            written: 0,
            failed: None,
        }
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

    fn bytes_in_block(&self) -> u64 {
        self.block.as_ref().map_or(0, BlockWriter::bytes) + self.packet.len() as u64
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.check_open()?;
        let result = self.write_inner(data).await;
        self.sticky(result)
    }

    async fn write_inner(&mut self, mut data: &[u8]) -> Result<()> {
        let packet_size = self.client.settings().write_packet_size;
        while !data.is_empty() {
            let block_room = (self.block_size - self.bytes_in_block()) as usize;
            let take = data
                .len()
                .min(packet_size - self.packet.len())
                .min(block_room);
            self.packet.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.written += take as u64;
            let block_full = self.bytes_in_block() == self.block_size;
            if self.packet.len() == packet_size || block_full {
                self.send_packet().await?;
            }
            if block_full {
                self.end_block().await?;
            }
        }
        Ok(())
    }

    async fn send_packet(&mut self) -> Result<()> {
        if self.packet.is_empty() {
            return Ok(());
        }
        if self.block.is_none() {
            self.block = Some(self.start_block().await?);
        }
        let data: Bytes = self.packet.split().freeze();
        let mut sums = BytesMut::with_capacity(checksum::checksums_len(
            data.len(),
            self.client.settings().bytes_per_checksum,
        ));
        checksum::compute_into(&data, self.client.settings().bytes_per_checksum, &mut sums);
        let capacity = self.client.settings().write_packet_size;
        self.packet.reserve(capacity);
        match self.block.as_mut() {
            Some(block) => block.send(data, sums.freeze(), false).await,
            None => Err(ClientError::Pipeline("no block to write to".into())),
        }
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
            match BlockWriter::open(&self.client, located.clone(), self.block_size).await {
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
            self.send_packet().await?;
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
