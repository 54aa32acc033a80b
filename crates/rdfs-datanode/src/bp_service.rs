//! The datanode's side of its conversation with the namenode (HDFS's
//! `BPServiceActor`): handshake, registration, a full block report, then
//! heartbeats that carry back commands, incremental reports sent as soon as
//! replicas change, and periodic full reports. A namenode that restarts or
//! forgets this datanode gets a fresh registration and full report.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use rdfs_common::ExceptionKind;
use rdfs_common::ids::SOFTWARE_VERSION;
use rdfs_common::protocol::{DatanodeId, ExtendedBlock};
use rdfs_proto as pb;
use rdfs_proto::datanode_protocol_client::DatanodeProtocolClient;

use crate::block_recovery;
use crate::context::DatanodeContext;
use crate::dataset::ReplicaState;
use crate::error::DatanodeError;
use crate::replicate::{self, Order};
use crate::reports::{Pending, ReplicaChange};

/// Why the datanode cannot go on serving this namenode.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Storage(#[from] DatanodeError),
    #[error("the namenode refused this datanode: {0}")]
    Refused(String),
}

pub struct BpService {
    pub ctx: Arc<DatanodeContext>,
    pub namenode: DatanodeProtocolClient<Channel>,
    pub namenode_addr: String,
    pub id: DatanodeId,
    pub heartbeat_interval: Duration,
    pub block_report_interval: Duration,
}

/// Outcome of one round of talking to the namenode.
enum Next {
    Continue,
    Reregister,
}

fn is_unregistered(status: &tonic::Status) -> bool {
    ExceptionKind::of_status(status) == Some(ExceptionKind::UnregisteredNode)
}

impl BpService {
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), LinkError> {
        let Some(info) = self.handshake(&shutdown).await else {
            return Ok(());
        };
        let suspects = {
            let ctx = Arc::clone(&self.ctx);
            let uuid = self.id.datanode_uuid.clone();
            let info = info.clone();
            tokio::task::spawn_blocking(move || {
                ctx.dataset.attach_pool(
                    &info.cluster_id,
                    &info.block_pool_id,
                    info.namespace_id,
                    &uuid,
                )
            })
            .await
            .map_err(|e| LinkError::Refused(format!("volume setup panicked: {e}")))??
        };
        for suspect in suspects {
            self.ctx
                .reports
                .bad_replica(suspect.block, suspect.storage_id, suspect.reason);
        }
        loop {
            if !self.register(&info, &shutdown).await? {
                return Ok(());
            }
            let mut heartbeat = tokio::time::interval(self.heartbeat_interval);
            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut block_report = tokio::time::interval(self.block_report_interval);
            block_report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = block_report.tick() => self.send_block_report(&info.block_pool_id).await,
                    _ = heartbeat.tick() => match self.heartbeat().await {
                        // Also retries reports an earlier attempt could not deliver.
                        Next::Continue => self.send_reports(&info.block_pool_id).await,
                        reregister => reregister,
                    },
                    _ = self.ctx.reports.notified() => self.send_reports(&info.block_pool_id).await,
                };
                if matches!(next, Next::Reregister) {
                    tracing::info!(namenode = %self.namenode_addr, "the namenode asked this datanode to register again");
                    break;
                }
            }
        }
    }

    /// Asks the namenode what it serves, retrying until it answers.
    async fn handshake(&mut self, shutdown: &CancellationToken) -> Option<pb::NamespaceInfo> {
        let mut delay = Duration::from_millis(100);
        let mut warned = false;
        loop {
            match self
                .namenode
                .version_request(pb::VersionRequestRequest {})
                .await
            {
                Ok(response) => {
                    if let Some(info) = response.into_inner().info {
                        tracing::info!(namenode = %self.namenode_addr, cluster_id = %info.cluster_id,
                            block_pool_id = %info.block_pool_id, "connected to namenode");
                        return Some(info);
                    }
                }
                Err(status) => {
                    if !warned {
                        tracing::warn!(namenode = %self.namenode_addr, error = %status.message(), "namenode not reachable yet; retrying");
                        warned = true;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Registers and sends a full block report; false on shutdown.
    async fn register(
        &mut self,
        info: &pb::NamespaceInfo,
        shutdown: &CancellationToken,
    ) -> Result<bool, LinkError> {
        let storages = self
            .ctx
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
            id: Some((&self.id).into()),
            cluster_id: info.cluster_id.clone(),
            block_pool_id: info.block_pool_id.clone(),
            software_version: SOFTWARE_VERSION.to_string(),
            storages,
        };
        let mut delay = Duration::from_millis(100);
        loop {
            match self
                .namenode
                .register_datanode(pb::RegisterDatanodeRequest {
                    registration: Some(registration.clone()),
                })
                .await
            {
                Ok(_) => break,
                Err(status)
                    if ExceptionKind::of_status(&status)
                        == Some(ExceptionKind::IncorrectVersion)
                        || ExceptionKind::of_status(&status)
                            == Some(ExceptionKind::DisallowedDatanode) =>
                {
                    return Err(LinkError::Refused(status.message().to_string()));
                }
                Err(status) => {
                    tracing::warn!(namenode = %self.namenode_addr, error = %status.message(), "registration failed; retrying");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(false),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        tracing::info!(namenode = %self.namenode_addr, uuid = %self.id.datanode_uuid, xfer = %self.id.xfer_addr(), "registered with namenode");
        self.heartbeat().await;
        // The full report covers every change made before it is taken;
        // changes after it stay queued.
        self.ctx.reports.clear_changes();
        let _ = self.send_block_report(&info.block_pool_id).await;
        let _ = self.send_reports(&info.block_pool_id).await;
        Ok(true)
    }

    async fn heartbeat(&mut self) -> Next {
        let volumes = self.ctx.dataset.volumes();
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
            datanode_uuid: self.id.datanode_uuid.clone(),
            reports,
            xceiver_count: self.ctx.transfers.load(Ordering::Relaxed),
            xmits_in_progress: self.ctx.xmits.load(Ordering::Relaxed),
            // Includes dirs that could not even be opened at start-up.
            failed_volumes: self.ctx.dataset.failed_volume_count() as u32,
        };
        let commands = match self.namenode.send_heartbeat(request).await {
            Ok(response) => response.into_inner().commands,
            Err(status) => {
                tracing::warn!(namenode = %self.namenode_addr, error = %status.message(), "heartbeat failed");
                return Next::Continue;
            }
        };
        let mut next = Next::Continue;
        for command in commands {
            match command.command {
                Some(pb::datanode_command::Command::Reregister(_)) => next = Next::Reregister,
                Some(pb::datanode_command::Command::Invalidate(list)) => {
                    let blocks: Vec<ExtendedBlock> =
                        list.blocks.into_iter().map(Into::into).collect();
                    let ctx = Arc::clone(&self.ctx);
                    let deleted =
                        tokio::task::spawn_blocking(move || ctx.dataset.invalidate(&blocks))
                            .await
                            .unwrap_or_default();
                    for (block, storage_id) in deleted {
                        self.ctx
                            .reports
                            .replica_changed(block, storage_id, ReplicaChange::Deleted);
                    }
                }
                Some(pb::datanode_command::Command::Transfer(command)) => {
                    for transfer in command.transfers {
                        self.start_transfer(transfer);
                    }
                }
                Some(pb::datanode_command::Command::Recover(command)) => {
                    for block in command.blocks {
                        self.start_recovery(&command.pool_id, block);
                    }
                }
                None => {}
            }
        }
        next
    }

    /// Starts the recovery of one block this datanode was made primary
    /// for, unless it already runs; it reports its outcome to the namenode
    /// itself (the namenode sends the command again if it never hears).
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
        if !self.ctx.recovering.lock().insert(block_id) {
            tracing::debug!(
                block_id,
                "recovery of this block already runs; command ignored"
            );
            return;
        }
        let worker = block_recovery::Worker {
            ctx: Arc::clone(&self.ctx),
            namenode: self.namenode.clone(),
            datanode_uuid: self.id.datanode_uuid.clone(),
            pool_id: pool_id.to_string(),
        };
        /// Forgets the block once its recovery ends, however it ends.
        struct Recovering(Arc<DatanodeContext>, i64);
        impl Drop for Recovering {
            fn drop(&mut self) {
                self.0.recovering.lock().remove(&self.1);
            }
        }
        let recovering = Recovering(Arc::clone(&self.ctx), block_id);
        tokio::spawn(async move {
            let _recovering = recovering;
            if let Err(err) = worker.recover(block).await {
                tracing::warn!(block_id, error = %err, "block recovery failed; the namenode will try again");
            }
        });
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
            targets: transfer.targets,
            target_storage_ids: Vec::new(),
            balancing: transfer.balancing,
            stage: pb::PipelineStage::TransferFinalized,
            client_name: String::new(),
        };
        let ctx = Arc::clone(&self.ctx);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let targets: Vec<String> = order
                .targets
                .iter()
                .filter_map(|t| {
                    t.id.as_ref()
                        .map(|id| format!("{}:{}", id.ip_addr, id.xfer_port))
                })
                .collect();
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
        });
    }

    async fn send_block_report(&mut self, pool_id: &str) -> Next {
        let reports = self
            .ctx
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
            datanode_uuid: self.id.datanode_uuid.clone(),
            pool_id: pool_id.to_string(),
            reports,
        };
        match self.namenode.block_report(request).await {
            Ok(_) => {
                tracing::info!(replicas = count, "sent full block report");
                Next::Continue
            }
            Err(status) if is_unregistered(&status) => Next::Reregister,
            Err(status) => {
                tracing::warn!(error = %status.message(), "full block report failed");
                Next::Continue
            }
        }
    }

    /// Sends pending incremental changes and bad replicas; keeps them for a
    /// later attempt when the namenode cannot take them now.
    async fn send_reports(&mut self, pool_id: &str) -> Next {
        let pending = self.ctx.reports.take();
        if pending.is_empty() {
            return Next::Continue;
        }
        let mut unsent = Pending::default();
        let mut next = Next::Continue;
        if !pending.changes.is_empty() {
            let request = pb::BlockReceivedAndDeletedRequest {
                datanode_uuid: self.id.datanode_uuid.clone(),
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
            match self.namenode.block_received_and_deleted(request).await {
                Ok(_) => {}
                Err(status) if is_unregistered(&status) => next = Next::Reregister,
                Err(status) => {
                    tracing::warn!(error = %status.message(), "incremental block report failed; will retry");
                    unsent.changes = pending.changes;
                }
            }
        }
        if !pending.bad.is_empty() {
            for (block, storage_id, reason) in pending.bad {
                let request = pb::DatanodeReportBadBlocksRequest {
                    datanode_uuid: self.id.datanode_uuid.clone(),
                    blocks: vec![(&block).into()],
                    storage_ids: vec![storage_id.clone()],
                    reason: reason.clone(),
                };
                if let Err(status) = self.namenode.report_bad_blocks(request).await {
                    if is_unregistered(&status) {
                        next = Next::Reregister;
                    }
                    unsent.bad.push((block, storage_id, reason));
                }
            }
        }
        if !unsent.is_empty() {
            self.ctx.reports.restore(unsent);
        }
        next
    }
}
