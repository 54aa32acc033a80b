//! Writing one block through its pipeline of datanodes, and keeping it
//! going when datanodes fail.
//!
//! Packets go to the first datanode; acks come back from it, each carrying
//! every datanode's status. Packets sent but not yet acknowledged wait in
//! the ack queue, and a bounded window of them keeps memory flat.
//!
//! When the pipeline breaks (a datanode dies, stalls or reports an error),
//! [`BlockWriter`] recovers as HDFS's DataStreamer does: it drops the
//! datanode that failed, adds a replacement when the policy asks for one
//! (copying the acknowledged bytes to it from a survivor), takes a new
//! generation stamp from the namenode, sets the pipeline up again with the
//! survivors cut back to the acknowledged length, tells the namenode, and
//! resends every unacknowledged packet. Replicas left behind at the old
//! generation stamp are stale and the namenode deletes them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use rdfs_common::block_token::Token;
use rdfs_common::grpc::pipeline_ack_timeout;
use rdfs_common::protocol::{DatanodeInfo, ExtendedBlock, LocatedBlock};
use rdfs_proto as pb;
use rdfs_transfer::{
    AckReceiver, Packet, PacketSender, Stage, StreamError, StreamOptions, WriteSetup, WriteStream,
};

use crate::client::{DfsClient, ReplacePolicy};
use crate::error::ClientError;

/// A packet sent down the pipeline and not acknowledged yet; kept whole so
/// pipeline recovery can resend it.
#[derive(Clone)]
struct Unacked {
    seqno: i64,
    /// When it was last sent: the pipeline owes its ack from then on.
    sent_at: tokio::time::Instant,
    offset_in_block: u64,
    data: Bytes,
    checksums: Bytes,
    last: bool,
    sync: bool,
}

impl Unacked {
    fn packet(&self) -> Packet {
        Packet {
            seqno: self.seqno,
            offset_in_block: self.offset_in_block,
            last_packet_in_block: self.last,
            sync_block: self.sync,
            data: self.data.clone(),
            checksums: self.checksums.clone(),
        }
    }

    fn end(&self) -> u64 {
        self.offset_in_block + self.data.len() as u64
    }
}

/// Why a pipeline broke, and which datanode to blame.
#[derive(Debug, Clone)]
pub(crate) struct PipelineError {
    /// Position in the pipeline of the datanode that failed, when known.
    pub bad_index: Option<usize>,
    pub message: String,
}

impl PipelineError {
    fn at(index: usize, message: String) -> Self {
        Self {
            bad_index: Some(index),
            message,
        }
    }
}

/// Why a new block's pipeline could not be set up at all.
pub(crate) struct SetupFailure {
    /// The xfer address of the datanode that failed, when known.
    pub bad_node: Option<String>,
    pub error: ClientError,
}

/// One live pipeline session.
struct Connection {
    packets: PacketSender,
    window: Arc<Semaphore>,
    acks: JoinHandle<Result<(), PipelineError>>,
    heartbeat: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.acks.abort();
        self.heartbeat.abort();
    }
}

/// How far every datanode of the pipeline has acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AckPoint {
    /// Bytes of the block.
    bytes: u64,
    /// The last packet, by sequence number: empty packets (a sync, the
    /// block's last) move only this.
    seqno: i64,
}

/// What the ack reader and the writer share.
struct Shared {
    queue: Mutex<VecDeque<Unacked>>,
    acked: watch::Sender<AckPoint>,
    /// Milliseconds since `epoch` when the last packet was sent, so the
    /// heartbeat task knows when the pipeline is idle.
    last_sent_ms: AtomicU64,
    epoch: Instant,
}

impl Shared {
    fn touch(&self) {
        self.last_sent_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

pub(crate) struct BlockWriter {
    client: DfsClient,
    src: String,
    file_id: u64,
    replication: u32,
    block_size: u64,
    /// The block at the generation stamp the namenode has recorded.
    block: ExtendedBlock,
    nodes: Vec<DatanodeInfo>,
    storage_ids: Vec<String>,
    /// WRITE access to the block at its datanodes (block tokens).
    token: Token,
    /// Datanodes dropped from this block's pipeline, never asked again.
    failed: Vec<DatanodeInfo>,
    shared: Arc<Shared>,
    conn: Option<Connection>,
    next_seqno: i64,
    /// End of the last packet sent, as an offset in the block.
    sent: u64,
    /// hflushed or appended: losing a datanode then warrants a replacement
    /// under the DEFAULT policy, since readers may already rely on the data.
    flushed: bool,
    /// The last packet has been sent.
    closing: bool,
    /// Recoveries since the pipeline last made progress.
    recoveries: u32,
    /// The acknowledged packet when the last recovery began.
    acked_at_recovery: i64,
}

fn addr_of(node: &DatanodeInfo) -> String {
    node.id.xfer_addr()
}

fn names(nodes: &[DatanodeInfo]) -> String {
    let addrs: Vec<String> = nodes.iter().map(addr_of).collect();
    format!("[{}]", addrs.join(", "))
}

impl BlockWriter {
    fn new(
        client: &DfsClient,
        src: &str,
        file_id: u64,
        replication: u32,
        block_size: u64,
        located: LocatedBlock,
    ) -> Self {
        let start = located.block.num_bytes;
        Self {
            client: client.clone(),
            src: src.to_string(),
            file_id,
            replication,
            block_size,
            block: located.block,
            nodes: located.locations,
            storage_ids: located.storage_ids,
            token: located.block_token,
            failed: Vec::new(),
            shared: Arc::new(Shared {
                queue: Mutex::new(VecDeque::new()),
                acked: watch::Sender::new(AckPoint {
                    bytes: start,
                    seqno: -1,
                }),
                last_sent_ms: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
            conn: None,
            next_seqno: 0,
            sent: start,
            flushed: false,
            closing: false,
            recoveries: 0,
            acked_at_recovery: -1,
        }
    }

    /// Sets up the pipeline of a newly allocated (empty) block.
    pub async fn create(
        client: &DfsClient,
        src: &str,
        file_id: u64,
        replication: u32,
        block_size: u64,
        located: LocatedBlock,
    ) -> Result<Self, SetupFailure> {
        let mut writer = Self::new(client, src, file_id, replication, block_size, located);
        if writer.nodes.is_empty() {
            return Err(SetupFailure {
                bad_node: None,
                error: ClientError::Pipeline(format!(
                    "block {} was allocated no datanodes",
                    writer.block
                )),
            });
        }
        match writer.connect(Stage::SetupCreate, 0).await {
            Ok(conn) => {
                writer.conn = Some(conn);
                Ok(writer)
            }
            Err(err) => Err(SetupFailure {
                bad_node: err.bad_index.and_then(|i| writer.nodes.get(i)).map(addr_of),
                error: ClientError::Pipeline(err.message),
            }),
        }
    }

    /// Reopens the partial last block of a file being appended to: the
    /// replicas take a new generation stamp and the writes continue at the
    /// block's length.
    pub async fn append(
        client: &DfsClient,
        src: &str,
        file_id: u64,
        replication: u32,
        block_size: u64,
        located: LocatedBlock,
    ) -> Result<Self, ClientError> {
        let mut writer = Self::new(client, src, file_id, replication, block_size, located);
        writer.flushed = true;
        if writer.nodes.is_empty() {
            return Err(ClientError::Pipeline(format!(
                "no datanode holds a replica of {} to append to",
                writer.block
            )));
        }
        let new_gs = writer.new_generation_stamp().await?;
        match writer.connect(Stage::SetupAppend, new_gs).await {
            Ok(conn) => {
                writer.conn = Some(conn);
                writer.commit_pipeline(new_gs).await?;
            }
            Err(err) => writer.recover(err).await?,
        }
        Ok(writer)
    }

    /// Bytes of the block written so far (sent, acknowledged or not).
    pub fn bytes(&self) -> u64 {
        self.sent
    }

    pub fn mark_flushed(&mut self) {
        self.flushed = true;
    }

    fn settings(&self) -> &crate::client::ClientSettings {
        self.client.settings()
    }

    /// Opens a WriteBlock session on the current pipeline; the replicas
    /// take `new_gs` (0 for a new block).
    async fn connect(&self, stage: Stage, new_gs: u64) -> Result<Connection, PipelineError> {
        let settings = self.settings().clone();
        let first_addr = self
            .nodes
            .first()
            .map(addr_of)
            .ok_or_else(|| PipelineError {
                bad_index: None,
                message: format!("no datanode left for {}", self.block),
            })?;
        let acked = self.shared.acked.borrow().bytes;
        let setup = WriteSetup {
            block: ExtendedBlock {
                num_bytes: if stage == Stage::SetupCreate {
                    0
                } else {
                    acked
                },
                ..self.block.clone()
            },
            targets: self.nodes[1..].to_vec(),
            target_storage_ids: self.storage_ids.iter().skip(1).cloned().collect(),
            client_name: self.client.inner.client_name.clone(),
            stage,
            checksum: settings.checksum,
            latest_generation_stamp: new_gs,
            min_bytes_rcvd: acked,
            max_bytes_rcvd: self.sent,
            block_size: self.block_size,
            token: self.token.clone(),
        };
        let options = StreamOptions {
            socket_timeout: settings.socket_timeout,
            queue: settings.max_packets_in_flight.min(32),
        };
        let (packets, acks) =
            WriteStream::open(&self.client.inner.datanodes, &first_addr, &setup, options)
                .await
                .map_err(|failure| {
                    let bad = self
                        .nodes
                        .iter()
                        .position(|n| addr_of(n) == failure.first_bad_link)
                        .unwrap_or(0);
                    let message = if failure.refused {
                        format!(
                            "Bad connect ack with firstBadLink as {} for {}: {}",
                            failure.first_bad_link, self.block, failure.message
                        )
                    } else {
                        failure.message
                    };
                    PipelineError::at(bad, message)
                })?;
        let in_flight = self.shared.queue.lock().len();
        let window = Arc::new(Semaphore::new(
            settings.max_packets_in_flight.saturating_sub(in_flight),
        ));
        let acks = tokio::spawn(read_acks(
            acks,
            Arc::clone(&window),
            Arc::clone(&self.shared),
            self.nodes.iter().map(addr_of).collect(),
            self.block.clone(),
            pipeline_ack_timeout(settings.socket_timeout, self.nodes.len()),
        ));
        self.shared.touch();
        let heartbeat = tokio::spawn(send_heartbeats(
            packets.clone(),
            Arc::clone(&self.shared),
            settings.socket_timeout / 2,
        ));
        Ok(Connection {
            packets,
            window,
            acks,
            heartbeat,
        })
    }

    /// Sends one packet; waits while the window of unacknowledged packets is
    /// full, and recovers the pipeline if it breaks.
    pub async fn send(
        &mut self,
        data: Bytes,
        checksums: Bytes,
        last: bool,
        sync: bool,
    ) -> Result<(), ClientError> {
        loop {
            let Some(conn) = self.conn.as_ref() else {
                return Err(ClientError::Pipeline(format!(
                    "the pipeline of {} is gone",
                    self.block
                )));
            };
            let window = Arc::clone(&conn.window);
            match window.acquire().await {
                Ok(permit) => {
                    permit.forget();
                    break;
                }
                Err(_) => {
                    let err = self.broken().await;
                    self.recover(err).await?;
                }
            }
        }
        let packet = Unacked {
            seqno: self.next_seqno,
            sent_at: tokio::time::Instant::now(),
            offset_in_block: self.sent,
            data,
            checksums,
            last,
            sync,
        };
        self.next_seqno += 1;
        self.sent = packet.end();
        self.closing |= last;
        let frame = packet.packet();
        self.shared.queue.lock().push_back(packet);
        let sent = match self.conn.as_ref() {
            Some(conn) => conn.packets.send(frame).await.is_ok(),
            None => false,
        };
        self.shared.touch();
        if !sent {
            // The packet is queued: recovery resends it.
            let err = self.broken().await;
            self.recover(err).await?;
        }
        Ok(())
    }

    /// Waits until every datanode has acknowledged every packet sent,
    /// empty ones (an hsync, the block's last) included.
    pub async fn wait_acked(&mut self) -> Result<(), ClientError> {
        let target = self.next_seqno - 1;
        let mut acked = self.shared.acked.subscribe();
        loop {
            if acked.borrow_and_update().seqno >= target {
                return Ok(());
            }
            let Some(conn) = self.conn.as_mut() else {
                return Err(ClientError::Pipeline(format!(
                    "the pipeline of {} is gone",
                    self.block
                )));
            };
            let ended = tokio::select! {
                changed = acked.changed() => {
                    if changed.is_err() {
                        return Err(ClientError::Pipeline("ack state dropped".into()));
                    }
                    None
                }
                outcome = &mut conn.acks => Some(ack_outcome(outcome, &self.block)),
            };
            if let Some(outcome) = ended {
                // The ack reader is done; its handle must not be polled again.
                self.conn = None;
                match outcome {
                    Ok(()) if acked.borrow().seqno >= target => return Ok(()),
                    Ok(()) => {
                        let err = PipelineError::at(
                            0,
                            format!(
                                "the pipeline of {} ended before every packet was acknowledged",
                                self.block
                            ),
                        );
                        self.recover(err).await?;
                    }
                    Err(err) => self.recover(err).await?,
                }
            }
        }
    }

    /// Sends the empty last packet and waits for every ack; returns the
    /// block with its final generation stamp and length.
    pub async fn finish(mut self) -> Result<ExtendedBlock, ClientError> {
        self.send(Bytes::new(), Bytes::new(), true, false).await?;
        self.wait_acked().await?;
        // The ack reader ends after the last packet's ack.
        self.conn = None;
        Ok(ExtendedBlock {
            num_bytes: self.sent,
            ..self.block
        })
    }

    /// The error that broke the current connection.
    async fn broken(&mut self) -> PipelineError {
        let Some(conn) = self.conn.take() else {
            return PipelineError {
                bad_index: None,
                message: format!("the pipeline of {} is gone", self.block),
            };
        };
        conn.window.close();
        conn.heartbeat.abort();
        // Sending failed or the window closed: the ack reader has ended, or
        // will within its own timeout.
        let mut conn = conn;
        ack_outcome((&mut conn.acks).await, &self.block)
            .err()
            .unwrap_or_else(|| {
                PipelineError::at(
                    0,
                    format!(
                        "datanode {} closed the pipeline of {} early",
                        self.first(),
                        self.block
                    ),
                )
            })
    }

    fn first(&self) -> String {
        self.nodes.first().map(addr_of).unwrap_or_default()
    }

    /// Rebuilds the pipeline after `err` until it works again or no
    /// datanode is left.
    async fn recover(&mut self, mut err: PipelineError) -> Result<(), ClientError> {
        let limit = 2 * self.replication.max(1) + 2;
        // Only recoveries in a row without progress count toward the limit,
        // so a long-lived writer is not failed by unrelated failures.
        let acked = self.shared.acked.borrow().seqno;
        if acked > self.acked_at_recovery {
            self.recoveries = 0;
        }
        self.acked_at_recovery = acked;
        loop {
            self.conn = None;
            self.recoveries += 1;
            if self.recoveries > limit {
                return Err(ClientError::Pipeline(format!(
                    "giving up on {} of {} after {} pipeline recoveries; last error: {}",
                    self.block, self.src, limit, err.message
                )));
            }
            let index = err
                .bad_index
                .unwrap_or(0)
                .min(self.nodes.len().saturating_sub(1));
            if !self.nodes.is_empty() {
                let bad = self.nodes.remove(index);
                if index < self.storage_ids.len() {
                    self.storage_ids.remove(index);
                }
                tracing::warn!(block = %self.block, src = %self.src, bad = %addr_of(&bad),
                    remaining = %names(&self.nodes), error = %err.message,
                    "write pipeline failed; recovering without the failed datanode");
                self.client.inner.datanodes.forget(&addr_of(&bad));
                self.failed.push(bad);
            }
            if self.nodes.is_empty() {
                return Err(ClientError::Pipeline(format!(
                    "All datanodes {} are bad. Aborting... (block {} of {}; last error: {})",
                    names(&self.failed),
                    self.block,
                    self.src,
                    err.message
                )));
            }
            if self.should_replace()
                && let Err(replace_err) = self.add_replacement().await
            {
                if !self.settings().replace_best_effort {
                    return Err(replace_err);
                }
                tracing::warn!(block = %self.block, error = %replace_err,
                    "no replacement datanode; writing on with the survivors (best effort)");
            }
            let new_gs = self.new_generation_stamp().await?;
            match self.connect(Stage::SetupStreamingRecovery, new_gs).await {
                Ok(conn) => {
                    self.conn = Some(conn);
                    self.commit_pipeline(new_gs).await?;
                    match self.resend().await {
                        Ok(()) => {
                            tracing::info!(block = %self.block, pipeline = %names(&self.nodes),
                                acked = self.shared.acked.borrow().bytes, resent = self.shared.queue.lock().len(),
                                "write pipeline recovered");
                            return Ok(());
                        }
                        Err(()) => err = self.broken().await,
                    }
                }
                Err(setup) => err = setup,
            }
        }
    }

    /// Whether losing datanodes calls for a replacement (HDFS's
    /// ReplaceDatanodeOnFailure).
    fn should_replace(&self) -> bool {
        let settings = self.settings();
        let (r, n) = (self.replication as usize, self.nodes.len());
        // Nothing acknowledged yet: nothing to copy, and the namenode will
        // re-replicate whatever is written.
        if self.closing || n >= r || self.shared.acked.borrow().bytes == 0 {
            return false;
        }
        match settings.replace_policy {
            ReplacePolicy::Never => false,
            ReplacePolicy::Always => true,
            ReplacePolicy::Default => r >= 3 && (n <= r / 2 || self.flushed),
        }
    }

    /// Adds one datanode to the pipeline, holding the acknowledged bytes.
    async fn add_replacement(&mut self) -> Result<(), ClientError> {
        let acked = self.shared.acked.borrow().bytes;
        let mut last_error = String::new();
        for _ in 0..2 {
            let request = pb::GetAdditionalDatanodeRequest {
                src: self.src.clone(),
                block: Some((&self.block).into()),
                existings: self
                    .nodes
                    .iter()
                    .map(|n| n.id.datanode_uuid.clone())
                    .collect(),
                excludes: self
                    .failed
                    .iter()
                    .map(|n| n.id.datanode_uuid.clone())
                    .collect(),
                num_additional_nodes: 1,
                client_name: self.client.inner.client_name.clone(),
                file_id: self.file_id,
            };
            let located: LocatedBlock = self
                .client
                .nn()
                .get_additional_datanode(request)
                .await
                .map_err(|s| self.client.remote(s))?
                .into_inner()
                .block
                .map(Into::into)
                .ok_or_else(|| {
                    ClientError::Transport("getAdditionalDatanode returned no block".into())
                })?;
            let Some(position) = located.locations.iter().position(|n| {
                !self
                    .nodes
                    .iter()
                    .any(|m| m.id.datanode_uuid == n.id.datanode_uuid)
            }) else {
                return Err(ClientError::Pipeline(format!(
                    "the namenode offered no new datanode for {}",
                    self.block
                )));
            };
            let new_node = located.locations[position].clone();
            let storage = located
                .storage_ids
                .get(position)
                .cloned()
                .unwrap_or_default();
            let block = ExtendedBlock {
                num_bytes: acked,
                ..self.block.clone()
            };
            let mut copied = false;
            for source in self.nodes.clone() {
                match self
                    .transfer(&source, &block, &located.block_token, &new_node, &storage)
                    .await
                {
                    Ok(()) => {
                        copied = true;
                        break;
                    }
                    Err(why) => {
                        tracing::warn!(block = %block, source = %addr_of(&source), target = %addr_of(&new_node), error = %why,
                            "copying the acknowledged bytes to the replacement failed");
                        last_error = why;
                    }
                }
            }
            if copied {
                tracing::info!(block = %block, added = %addr_of(&new_node), "replacement datanode joins the pipeline");
                self.nodes.push(new_node);
                self.storage_ids.push(storage);
                return Ok(());
            }
            self.failed.push(new_node);
        }
        Err(ClientError::Pipeline(format!(
            "Failed to replace a bad datanode on the existing pipeline {} of {} due to no more good datanodes being available to try: {last_error}",
            names(&self.nodes),
            self.block
        )))
    }

    async fn transfer(
        &self,
        source: &DatanodeInfo,
        block: &ExtendedBlock,
        copy_token: &Token,
        target: &DatanodeInfo,
        storage: &str,
    ) -> Result<(), String> {
        // The copy moves at most a block; allow for it on top of the usual wait.
        let wait = pipeline_ack_timeout(self.settings().socket_timeout, 2) * 2;
        let copy = rdfs_transfer::calls::ReplicaCopy {
            block,
            token: copy_token,
            target,
            target_storage_id: storage,
            client_name: &self.client.inner.client_name,
        };
        rdfs_transfer::calls::transfer_replica(
            &self.client.inner.datanodes,
            &addr_of(source),
            copy,
            wait,
        )
        .await
    }

    /// A new generation stamp for the block, and a token for it.
    async fn new_generation_stamp(&mut self) -> Result<u64, ClientError> {
        let request = pb::UpdateBlockForPipelineRequest {
            block: Some((&self.block).into()),
            client_name: self.client.inner.client_name.clone(),
        };
        let located: LocatedBlock = self
            .client
            .nn()
            .update_block_for_pipeline(request)
            .await
            .map_err(|s| self.client.remote(s))?
            .into_inner()
            .block
            .map(Into::into)
            .ok_or_else(|| {
                ClientError::Transport("updateBlockForPipeline returned no block".into())
            })?;
        self.token = located.block_token;
        Ok(located.block.generation_stamp)
    }

    /// Tells the namenode the block's new generation stamp and datanodes.
    async fn commit_pipeline(&mut self, new_gs: u64) -> Result<(), ClientError> {
        let new_block = ExtendedBlock {
            generation_stamp: new_gs,
            num_bytes: self.shared.acked.borrow().bytes,
            ..self.block.clone()
        };
        let request = pb::UpdatePipelineRequest {
            client_name: self.client.inner.client_name.clone(),
            old_block: Some((&self.block).into()),
            new_block: Some((&new_block).into()),
            new_nodes: self
                .nodes
                .iter()
                .map(|n| n.id.datanode_uuid.clone())
                .collect(),
            storage_ids: self.storage_ids.clone(),
        };
        self.client
            .nn()
            .update_pipeline(request)
            .await
            .map_err(|s| self.client.remote(s))?;
        self.block.generation_stamp = new_gs;
        Ok(())
    }

    /// Sends every unacknowledged packet again on the new connection.
    async fn resend(&mut self) -> Result<(), ()> {
        let packets: Vec<Unacked> = {
            let mut queue = self.shared.queue.lock();
            let now = tokio::time::Instant::now();
            for packet in queue.iter_mut() {
                packet.sent_at = now;
            }
            queue.iter().cloned().collect()
        };
        let Some(conn) = self.conn.as_ref() else {
            return Err(());
        };
        for packet in packets {
            if conn.packets.send(packet.packet()).await.is_err() {
                return Err(());
            }
        }
        self.shared.touch();
        Ok(())
    }
}

fn ack_outcome(
    joined: Result<Result<(), PipelineError>, tokio::task::JoinError>,
    block: &ExtendedBlock,
) -> Result<(), PipelineError> {
    match joined {
        Ok(result) => result,
        Err(join) => Err(PipelineError::at(
            0,
            format!("the ack reader of {block} failed: {join}"),
        )),
    }
}

/// Keeps an idle pipeline alive: a heartbeat packet whenever nothing was
/// sent for `interval`, so no datanode times out waiting for a slow writer.
async fn send_heartbeats(packets: PacketSender, shared: Arc<Shared>, interval: Duration) {
    let interval = interval.max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(interval / 2).await;
        let idle_ms = (shared.epoch.elapsed().as_millis() as u64)
            .saturating_sub(shared.last_sent_ms.load(Ordering::Relaxed));
        if idle_ms < interval.as_millis() as u64 {
            continue;
        }
        if packets.send_heartbeat().is_err() {
            return;
        }
        shared.touch();
    }
}

/// Reads acks in order, releasing window slots and moving the acknowledged
/// length; any non-success status, silence while packets are outstanding,
/// or a closed stream ends the session with the datanode to blame.
async fn read_acks(
    mut acks: AckReceiver,
    window: Arc<Semaphore>,
    shared: Arc<Shared>,
    nodes: Vec<String>,
    block: ExtendedBlock,
    ack_timeout: Duration,
) -> Result<(), PipelineError> {
    let first = nodes.first().cloned().unwrap_or_default();
    let mut last_reply = tokio::time::Instant::now();
    let result = loop {
        // The pipeline owes an ack from when the oldest outstanding packet
        // was sent (or from its last reply, if later), as each datanode
        // counts from when it forwarded that packet; silence with nothing
        // outstanding is just a slow writer.
        let oldest = shared.queue.lock().front().map(|p| p.sent_at);
        let deadline = match oldest {
            Some(sent_at) => sent_at.max(last_reply) + ack_timeout,
            None => tokio::time::Instant::now() + ack_timeout,
        };
        let ack = match acks.next(deadline).await {
            Ok(ack) => ack,
            Err(StreamError::Timeout { .. }) if oldest.is_none() => continue,
            Err(StreamError::Timeout { .. }) => {
                break Err(PipelineError::at(
                    0,
                    format!(
                        "no ack from the pipeline of {block} (first datanode {first}) within {ack_timeout:?}"
                    ),
                ));
            }
            Err(StreamError::Closed { .. }) => {
                break Err(PipelineError::at(
                    0,
                    format!(
                        "datanode {first} closed the pipeline of {block} before acknowledging every packet"
                    ),
                ));
            }
            Err(err) => break Err(PipelineError::at(0, err.to_string())),
        };
        last_reply = tokio::time::Instant::now();
        if let Some((index, status)) = ack.first_failure() {
            let node = nodes
                .get(index)
                .cloned()
                .unwrap_or_else(|| format!("#{index}"));
            break Err(PipelineError::at(
                index.min(nodes.len().saturating_sub(1)),
                format!(
                    "Bad response {status} for block {block} from datanode {node}: {}",
                    ack.message
                ),
            ));
        }
        if ack.seqno == rdfs_transfer::HEARTBEAT_SEQNO {
            continue;
        }
        let front = shared.queue.lock().pop_front();
        match front {
            Some(packet) if packet.seqno == ack.seqno => {
                shared.acked.send_replace(AckPoint {
                    bytes: packet.end(),
                    seqno: packet.seqno,
                });
                window.add_permits(1);
                if packet.last {
                    break Ok(());
                }
            }
            Some(packet) => {
                let seqno = packet.seqno;
                shared.queue.lock().push_front(packet);
                break Err(PipelineError::at(
                    0,
                    format!(
                        "datanode {first} acknowledged packet {} while {seqno} was expected",
                        ack.seqno
                    ),
                ));
            }
            None => {
                break Err(PipelineError::at(
                    0,
                    format!(
                        "datanode {first} acknowledged packet {} that was never sent",
                        ack.seqno
                    ),
                ));
            }
        }
    };
    if result.is_err() {
        window.close();
    }
    result
}
