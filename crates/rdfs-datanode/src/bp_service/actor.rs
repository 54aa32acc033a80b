//! The conversation with one namenode (HDFS's `BPServiceActor`):
//! handshake, registration, a full block report, then heartbeats that carry
//! back commands, incremental reports sent as soon as replicas change, and
//! periodic full reports. A namenode that restarts or forgets this datanode
//! gets a fresh registration and full report. Each namenode has its own
//! actor, registration, schedule and report queue, so one that is slow or
//! down holds up nothing but itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tonic::transport::Channel;
use tracing::Instrument;

use rdfs_common::ExceptionKind;
use rdfs_common::block_token::ExportedBlockKeys;
use rdfs_common::config::NamenodeAddress;
use rdfs_common::ids::SOFTWARE_VERSION;
use rdfs_common::protocol::ExtendedBlock;
use rdfs_proto as pb;
use rdfs_proto::datanode_command::Command;
use rdfs_proto::datanode_protocol_client::DatanodeProtocolClient;

use super::active::Claim;
use super::{Agreement, LinkError, NamenodeLink, Shared, Timing};
use crate::block_recovery::{self, RecoveryError};
use crate::context::DatanodeContext;
use crate::dataset::ReplicaState;
use crate::replicate::{self, Order};
use crate::reports::{Pending, ReplicaChange, ReportQueue};

/// Outcome of one round of talking to the namenode.
enum Next {
    Continue,
    Reregister,
}

fn is_unregistered(status: &tonic::Status) -> bool {
    ExceptionKind::of_status(status) == Some(ExceptionKind::UnregisteredNode)
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Invalidate(_) => "invalidate",
        Command::Reregister(_) => "reregister",
        Command::Transfer(_) => "transfer",
        Command::Recover(_) => "recover",
        Command::ReportBlocks(_) => "report blocks",
    }
}

/// Retry delays: from 100 ms, doubling, up to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(100))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

pub(super) struct BpServiceActor {
    /// This namenode's place among the nameservice's.
    index: usize,
    namenode: NamenodeAddress,
    client: DatanodeProtocolClient<Channel>,
    queue: Arc<ReportQueue>,
    shared: Arc<Shared>,
    timing: Timing,
    /// Heartbeats have failed since then: one warning when they start
    /// failing, not one per heartbeat for as long as a namenode is down.
    failing_since: Option<std::time::Instant>,
    /// The version of this namenode's block keys held; 0 for none.
    block_keys_version: u64,
}

impl BpServiceActor {
    pub(super) fn new(
        index: usize,
        link: NamenodeLink,
        queue: Arc<ReportQueue>,
        shared: Arc<Shared>,
        timing: Timing,
    ) -> Self {
        Self {
            index,
            namenode: link.namenode,
            client: link.client,
            queue,
            shared,
            timing,
            failing_since: None,
            block_keys_version: 0,
        }
    }

    pub(super) fn namenode(&self) -> &NamenodeAddress {
        &self.namenode
    }

    fn ctx(&self) -> &Arc<DatanodeContext> {
        &self.shared.ctx
    }

    /// Serves this namenode until an error it cannot get past; the owner
    /// stops it on shutdown by dropping it.
    pub(super) async fn run(mut self) -> Result<(), LinkError> {
        let info = self.connect().await?;
        loop {
            self.register(&info).await?;
            self.serve(&info.block_pool_id).await;
            tracing::info!("the namenode asked this datanode to register again");
        }
    }

    /// Handshakes until the namenode answers with the namespace the other
    /// namenodes serve.
    async fn connect(&mut self) -> Result<pb::NamespaceInfo, LinkError> {
        let mut backoff = Backoff::new();
        loop {
            let info = self.handshake().await;
            match self.shared.agree(&self.namenode, &info).await? {
                Agreement::Agreed => return Ok(info),
                Agreement::Mismatch(why) => {
                    // An operator's mistake (a namenode of another
                    // nameservice in the list, say): keep serving the
                    // others, and look again in case it gets fixed.
                    tracing::error!(error = %why,
                        "namenode serves another namespace than this datanode; not registering with it, retrying");
                }
            }
            backoff.wait().await;
        }
    }

    /// Asks the namenode what it serves, retrying until it answers.
    async fn handshake(&mut self) -> pb::NamespaceInfo {
        let mut backoff = Backoff::new();
        let mut warned = false;
        loop {
            match self
                .client
                .version_request(pb::VersionRequestRequest {})
                .await
            {
                Ok(response) => {
                    if let Some(info) = response.into_inner().info {
                        tracing::info!(cluster_id = %info.cluster_id, block_pool_id = %info.block_pool_id,
                            "connected to namenode");
                        return info;
                    }
                    tracing::warn!("namenode answered the handshake without a namespace; retrying");
                }
                Err(status) => {
                    if !warned {
                        let error =
                            rdfs_common::grpc::status_detail(&status, &self.namenode.address);
                        tracing::warn!(%error, "namenode not reachable yet; retrying");
                        warned = true;
                    }
                }
            }
            backoff.wait().await;
        }
    }

    /// Registers and sends a full block report.
    async fn register(&mut self, info: &pb::NamespaceInfo) -> Result<(), LinkError> {
        let storages = self
            .ctx()
            .dataset
            .volumes()
            .iter()
            // A volume that failed before it was ever formatted has no id.
            .filter(|v| !v.storage_id().is_empty())
            .map(|v| pb::DatanodeStorage {
                storage_id: v.storage_id(),
                storage_type: pb::StorageType::Disk as i32,
            })
            .collect();
        let registration = pb::DatanodeRegistration {
            id: Some((&self.shared.id).into()),
            cluster_id: info.cluster_id.clone(),
            block_pool_id: info.block_pool_id.clone(),
            software_version: SOFTWARE_VERSION.to_string(),
            storages,
        };
        let mut backoff = Backoff::new();
        loop {
            match self
                .client
                .register_datanode(pb::RegisterDatanodeRequest {
                    registration: Some(registration.clone()),
                })
                .await
            {
                Ok(response) => {
                    let response = response.into_inner();
                    self.block_keys_version = 0;
                    self.take_block_keys(response.block_keys, response.block_keys_version);
                    if self.block_keys_version == 0 && self.ctx().block_access.required() {
                        tracing::error!(namenode = %self.namenode.id,
                            "this datanode requires block tokens, but the namenode issues none \
                             (set security.block_access_token_enable alike on every daemon)");
                    }
                    break;
                }
                Err(status)
                    if matches!(
                        ExceptionKind::of_status(&status),
                        Some(ExceptionKind::IncorrectVersion | ExceptionKind::DisallowedDatanode)
                    ) =>
                {
                    return Err(LinkError::Refused(status.message().to_string()));
                }
                Err(status) => {
                    let error = rdfs_common::grpc::status_detail(&status, &self.namenode.address);
                    tracing::warn!(%error, "registration failed; retrying");
                }
            }
            backoff.wait().await;
        }
        tracing::info!(uuid = %self.shared.id.datanode_uuid, xfer = %self.shared.id.xfer_addr(),
            "registered with namenode");
        self.heartbeat().await;
        let _ = self.send_block_report(&info.block_pool_id).await;
        let _ = self.send_reports(&info.block_pool_id).await;
        Ok(())
    }

    /// Heartbeats and reports until the namenode wants a new registration.
    async fn serve(&mut self, pool_id: &str) {
        let mut heartbeat = tokio::time::interval(self.timing.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Registration has just sent a full report: the next is due a
        // period from now.
        let period = self.timing.block_report_interval;
        // An interval set beyond what a clock can count means "never".
        let first = Instant::now()
            .checked_add(period)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
        let mut block_report = tokio::time::interval_at(first, period);
        block_report.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let queue = Arc::clone(&self.queue);
        loop {
            let next = tokio::select! {
                _ = block_report.tick() => self.send_block_report(pool_id).await,
                _ = heartbeat.tick() => match self.heartbeat().await {
                    // Also retries reports an earlier attempt could not deliver.
                    Next::Continue => self.catch_up(pool_id).await,
                    reregister => reregister,
                },
                _ = queue.notified() => self.catch_up(pool_id).await,
            };
            if matches!(next, Next::Reregister) {
                return;
            }
        }
    }

    /// Keys a namenode sent (at registration, or when they rolled).
    fn take_block_keys(&mut self, keys: Option<pb::ExportedBlockKeys>, version: u64) {
        let Some(keys) = keys else { return };
        match ExportedBlockKeys::try_from(keys) {
            Ok(keys) => {
                self.ctx().block_access.add_keys(&keys);
                self.block_keys_version = version;
            }
            Err(error) => {
                tracing::warn!(namenode = %self.namenode.id, %error, "malformed block keys ignored");
            }
        }
    }

    async fn heartbeat(&mut self) -> Next {
        let ctx = Arc::clone(self.ctx());
        let volumes = ctx.dataset.volumes();
        let reports = volumes
            .iter()
            .filter(|v| !v.storage_id().is_empty())
            .map(|v| {
                let (capacity, dfs_used, remaining, non_dfs_used) = v.usage();
                pb::StorageReport {
                    storage_id: v.storage_id(),
                    failed: v.is_failed(),
                    capacity,
                    dfs_used,
                    remaining,
                    non_dfs_used,
                }
            })
            .collect();
        let request = pb::HeartbeatRequest {
            datanode_uuid: self.shared.id.datanode_uuid.clone(),
            reports,
            xceiver_count: ctx.transfers.load(Ordering::Relaxed),
            xmits_in_progress: ctx.xmits.load(Ordering::Relaxed),
            // Includes dirs that could not even be opened at start-up.
            failed_volumes: ctx.dataset.failed_volume_count() as u32,
            block_keys_version: self.block_keys_version,
        };
        let response = match self.client.send_heartbeat(request).await {
            Ok(response) => response.into_inner(),
            // How a standby that does not know this datanode says so,
            // since it knows its commands would be dropped.
            Err(status) if is_unregistered(&status) => return Next::Reregister,
            Err(status) => {
                if self.failing_since.is_none() {
                    let error = rdfs_common::grpc::status_detail(&status, &self.namenode.address);
                    tracing::warn!(%error, "heartbeat failed; retrying every heartbeat");
                    self.failing_since = Some(std::time::Instant::now());
                } else {
                    tracing::debug!(error = %status.message(), "heartbeat failed");
                }
                return Next::Continue;
            }
        };
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                failing_ms = since.elapsed().as_millis() as u64,
                "namenode answers heartbeats again"
            );
        }
        self.take_block_keys(response.block_keys, response.block_keys_version);
        let active = self
            .shared
            .active
            .lock()
            .update(self.index, Claim::of(response.ha_status.as_ref()));
        let mut next = Next::Continue;
        for command in response.commands.into_iter().filter_map(|c| c.command) {
            match command {
                // A namenode that forgot this datanode (a standby that
                // restarted, say) must hear from it again whatever its
                // role: the registration and reports are its own.
                Command::Reregister(_) => next = Next::Reregister,
                command if active => self.execute(command).await,
                command => {
                    tracing::debug!(
                        command = command_name(&command),
                        "command from a namenode that is not the active one; dropped"
                    );
                }
            }
        }
        next
    }

    /// Carries out a command of the active namenode.
    async fn execute(&self, command: Command) {
        match command {
            Command::Invalidate(list) => {
                let blocks: Vec<ExtendedBlock> = list.blocks.into_iter().map(Into::into).collect();
                let ctx = Arc::clone(self.ctx());
                let deleted = tokio::task::spawn_blocking(move || ctx.dataset.invalidate(&blocks))
                    .await
                    .unwrap_or_default();
                // Every namenode hears of the deletions, not only this one.
                for (block, storage_id) in deleted {
                    self.ctx()
                        .reports
                        .replica_changed(block, storage_id, ReplicaChange::Deleted);
                }
            }
            Command::Transfer(command) => {
                for transfer in command.transfers {
                    self.start_transfer(transfer);
                }
            }
            Command::Recover(command) => {
                for block in command.blocks {
                    self.start_recovery(&command.pool_id, block);
                }
            }
            Command::ReportBlocks(_) => {
                // Sent right after this heartbeat round (catch_up).
                self.queue.request_full_report();
            }
            Command::Reregister(_) => {}
        }
    }

    /// Starts the recovery of one block this datanode was made primary
    /// for, unless it already runs; it reports its outcome to this
    /// namenode, which ordered it (the active one sends the command again
    /// if it never hears).
    fn start_recovery(&self, pool_id: &str, block: pb::RecoveringBlock) {
        let Some(block_id) = block
            .block
            .as_ref()
            .and_then(|b| b.block.as_ref())
            .map(|b| b.block_id)
        else {
            tracing::warn!("recovery command without a block; ignored");
            return;
        };
        if !self.ctx().recovering.lock().insert(block_id) {
            tracing::debug!(
                block_id,
                "recovery of this block already runs; command ignored"
            );
            return;
        }
        let worker = block_recovery::Worker {
            ctx: Arc::clone(self.ctx()),
            namenode: self.client.clone(),
            datanode_uuid: self.shared.id.datanode_uuid.clone(),
            pool_id: pool_id.to_string(),
        };
        /// Forgets the block once its recovery ends, however it ends.
        struct Recovering(Arc<DatanodeContext>, i64);
        impl Drop for Recovering {
            fn drop(&mut self) {
                self.0.recovering.lock().remove(&self.1);
            }
        }
        let recovering = Recovering(Arc::clone(self.ctx()), block_id);
        tokio::spawn(
            async move {
                let _recovering = recovering;
                match worker.recover(block).await {
                    Ok(()) => {}
                    Err(err @ RecoveryError::NamenodeNotActive { .. }) => {
                        tracing::info!(block_id, error = %err, "block recovery not committed; the active namenode will order it again");
                    }
                    Err(err) => {
                        tracing::warn!(block_id, error = %err, "block recovery failed; the namenode will try again");
                    }
                }
            }
            .in_current_span(),
        );
    }

    /// Starts one copy the namenode ordered; it runs on its own and only
    /// logs its outcome: the target's report tells the namenode it is done.
    fn start_transfer(&self, transfer: pb::BlockTransfer) {
        let Some(block) = transfer.block.map(ExtendedBlock::from) else {
            tracing::warn!("transfer command without a block; ignored");
            return;
        };
        let order = Order {
            block,
            targets: transfer.targets.into_iter().map(Into::into).collect(),
            target_storage_ids: Vec::new(),
            balancing: transfer.balancing,
            stage: rdfs_transfer::Stage::TransferFinalized,
            client_name: String::new(),
        };
        let ctx = Arc::clone(self.ctx());
        tokio::spawn(
            async move {
                let started = std::time::Instant::now();
                let targets: Vec<String> =
                    order.targets.iter().map(|t| t.id.xfer_addr()).collect();
                let block = order.block.clone();
                match replicate::transfer(ctx, order).await {
                    Ok(bytes) => {
                        tracing::info!(block = %block, ?targets, bytes, elapsed_ms = started.elapsed().as_millis() as u64,
                            "copied replica to other datanodes");
                    }
                    Err(err) => {
                        tracing::warn!(block = %block, ?targets, error = %err, "replica copy failed; the namenode will schedule it again");
                    }
                }
            }
            .in_current_span(),
        );
    }

    /// A full report first if one is due, then the pending incremental ones.
    async fn catch_up(&mut self, pool_id: &str) -> Next {
        if self.queue.full_report_due()
            && let Next::Reregister = self.send_block_report(pool_id).await
        {
            return Next::Reregister;
        }
        self.send_reports(pool_id).await
    }

    async fn send_block_report(&mut self, pool_id: &str) -> Next {
        // The full report covers every change made before it is taken;
        // changes after it stay queued.
        self.queue.start_full_report();
        let reports = self
            .ctx()
            .dataset
            .block_report()
            .into_iter()
            .map(|storage| pb::StorageBlockReport {
                storage_id: storage.storage_id,
                replicas: storage
                    .replicas
                    .into_iter()
                    .map(|(block_id, info)| pb::ReportedReplica {
                        block_id,
                        generation_stamp: info.generation_stamp,
                        num_bytes: match info.state {
                            ReplicaState::Rbw => info.acked.max(info.num_bytes),
                            _ => info.num_bytes,
                        },
                        state: match info.state {
                            ReplicaState::Finalized => pb::ReplicaState::Finalized,
                            ReplicaState::Rbw | ReplicaState::Rur => pb::ReplicaState::Rbw,
                            ReplicaState::Rwr => pb::ReplicaState::Rwr,
                        } as i32,
                    })
                    .collect(),
            })
            .collect::<Vec<_>>();
        let count: usize = reports.iter().map(|r| r.replicas.len()).sum();
        let request = pb::BlockReportRequest {
            datanode_uuid: self.shared.id.datanode_uuid.clone(),
            pool_id: pool_id.to_string(),
            reports,
        };
        match self.client.block_report(request).await {
            Ok(_) => {
                tracing::info!(replicas = count, "sent full block report");
                Next::Continue
            }
            // Registration sends a new full report.
            Err(status) if is_unregistered(&status) => Next::Reregister,
            Err(status) => {
                tracing::warn!(error = %status.message(), "full block report failed; will retry");
                // The changes it covered were dropped: only another full
                // report can tell the namenode about them.
                self.queue.request_full_report();
                Next::Continue
            }
        }
    }

    /// Sends pending incremental changes and bad replicas; keeps them for a
    /// later attempt when the namenode cannot take them now.
    async fn send_reports(&mut self, pool_id: &str) -> Next {
        let pending = self.queue.take();
        if pending.is_empty() {
            return Next::Continue;
        }
        let mut unsent = Pending::default();
        let mut next = Next::Continue;
        if !pending.changes.is_empty() {
            let request = pb::BlockReceivedAndDeletedRequest {
                datanode_uuid: self.shared.id.datanode_uuid.clone(),
                pool_id: pool_id.to_string(),
                blocks: pending
                    .changes
                    .iter()
                    .map(|(block, storage_id, change)| pb::ReceivedDeletedBlock {
                        block: Some(block.into()),
                        status: match change {
                            ReplicaChange::Received => pb::ReceivedDeletedStatus::Received,
                            ReplicaChange::Deleted => pb::ReceivedDeletedStatus::Deleted,
                        } as i32,
                        storage_id: storage_id.clone(),
                    })
                    .collect(),
            };
            match self.client.block_received_and_deleted(request).await {
                Ok(_) => {}
                Err(status) if is_unregistered(&status) => next = Next::Reregister,
                Err(status) => {
                    tracing::warn!(error = %status.message(), "incremental block report failed; will retry");
                    unsent.changes = pending.changes;
                }
            }
        }
        for (block, storage_id, reason) in pending.bad {
            let request = pb::DatanodeReportBadBlocksRequest {
                datanode_uuid: self.shared.id.datanode_uuid.clone(),
                blocks: vec![(&block).into()],
                storage_ids: vec![storage_id.clone()],
                reason: reason.clone(),
            };
            if let Err(status) = self.client.report_bad_blocks(request).await {
                if is_unregistered(&status) {
                    next = Next::Reregister;
                }
                unsent.bad.push((block, storage_id, reason));
            }
        }
        if !unsent.is_empty() {
            self.queue.restore(unsent);
        }
        next
    }
}
