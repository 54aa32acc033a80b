//! `DatanodeProtocol` over gRPC.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use rdfs_common::ids::SOFTWARE_VERSION;
use rdfs_common::protocol::{DatanodeId, ExtendedBlock};
use rdfs_proto as pb;
use rdfs_proto::datanode_protocol_server::DatanodeProtocol;

use super::required;
use crate::block_tokens::BlockTokens;
use crate::datanode_manager::StorageState;
use crate::ha::NamenodeHandle;
use crate::namesystem::{
    DatanodeCommand, Registration, ReplicaEvent, ReportedReplica, ReportedState,
};

pub struct DatanodeService {
    handle: Arc<NamenodeHandle>,
    block_tokens: Arc<BlockTokens>,
}

impl DatanodeService {
    pub fn new(handle: Arc<NamenodeHandle>, block_tokens: Arc<BlockTokens>) -> Self {
        Self {
            handle,
            block_tokens,
        }
    }

    /// The block keys for a datanode holding `held_version`, if it needs
    /// them, with their version.
    fn block_keys(&self, held_version: u64) -> (Option<pb::ExportedBlockKeys>, u64) {
        match self.block_tokens.keys_for(held_version) {
            Some((version, keys)) => (Some((&keys).into()), version),
            None => (None, held_version),
        }
    }
}

fn commands(commands: Vec<DatanodeCommand>, pool_id: &str) -> Vec<pb::DatanodeCommand> {
    commands
        .into_iter()
        .map(|command| pb::DatanodeCommand {
            command: Some(match command {
                DatanodeCommand::Invalidate(blocks) => {
                    pb::datanode_command::Command::Invalidate(pb::BlockList {
                        pool_id: pool_id.to_string(),
                        blocks: blocks.iter().map(Into::into).collect(),
                    })
                }
                DatanodeCommand::Reregister => {
                    pb::datanode_command::Command::Reregister(pb::Reregister {})
                }
                DatanodeCommand::ReportBlocks => {
                    pb::datanode_command::Command::ReportBlocks(pb::ReportBlocks {})
                }
                DatanodeCommand::Transfer(orders) => {
                    pb::datanode_command::Command::Transfer(pb::TransferCommand {
                        pool_id: pool_id.to_string(),
                        transfers: orders
                            .iter()
                            .map(|order| pb::BlockTransfer {
                                block: Some((&order.block).into()),
                                targets: order.targets.iter().map(Into::into).collect(),
                                target_storage_ids: Vec::new(),
                                balancing: order.balancing,
                            })
                            .collect(),
                    })
                }
                DatanodeCommand::Recover(orders) => {
                    pb::datanode_command::Command::Recover(pb::RecoverCommand {
                        pool_id: pool_id.to_string(),
                        blocks: orders
                            .iter()
                            .map(|order| pb::RecoveringBlock {
                                block: Some((&order.block).into()),
                                new_generation_stamp: order.new_generation_stamp,
                                new_length: order.new_length,
                            })
                            .collect(),
                    })
                }
            }),
        })
        .collect()
}

#[tonic::async_trait]
impl DatanodeProtocol for DatanodeService {
    async fn version_request(
        &self,
        _request: Request<pb::VersionRequestRequest>,
    ) -> Result<Response<pb::VersionRequestResponse>, Status> {
        let namesystem = self.handle.get();
        let info = namesystem.namespace_info();
        Ok(Response::new(pb::VersionRequestResponse {
            info: Some(pb::NamespaceInfo {
                cluster_id: info.cluster_id.clone(),
                block_pool_id: info.block_pool_id.clone(),
                namespace_id: info.namespace_id,
                layout_version: info.layout_version,
                ctime: info.ctime,
                software_version: SOFTWARE_VERSION.to_string(),
            }),
        }))
    }

    async fn register_datanode(
        &self,
        request: Request<pb::RegisterDatanodeRequest>,
    ) -> Result<Response<pb::RegisterDatanodeResponse>, Status> {
        let registration = required(request.into_inner().registration, "registration")?;
        let id: DatanodeId = required(registration.id.clone(), "datanode id")?.into();
        if id.datanode_uuid.is_empty() {
            return Err(rdfs_common::ExceptionKind::IllegalArgument
                .status("registration has an empty datanode uuid"));
        }
        self.handle.get().register_datanode(Registration {
            id,
            cluster_id: registration.cluster_id.clone(),
            block_pool_id: registration.block_pool_id.clone(),
            storage_ids: registration
                .storages
                .iter()
                .map(|s| s.storage_id.clone())
                .collect(),
        })?;
        let (block_keys, block_keys_version) = self.block_keys(0);
        Ok(Response::new(pb::RegisterDatanodeResponse {
            registration: Some(registration),
            block_keys,
            block_keys_version,
        }))
    }

    async fn send_heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let storages = req
            .reports
            .into_iter()
            .map(|r| StorageState {
                storage_id: r.storage_id,
                failed: r.failed,
                capacity: r.capacity,
                dfs_used: r.dfs_used,
                remaining: r.remaining,
                non_dfs_used: r.non_dfs_used,
            })
            .collect();
        let namesystem = self.handle.get();
        let result = namesystem
            .heartbeat(
                &req.datanode_uuid,
                storages,
                req.xceiver_count,
                req.xmits_in_progress,
                req.failed_volumes,
                || self.handle.is_serving_active(),
            )
            .await?;
        let pool_id = &namesystem.namespace_info().block_pool_id;
        // Datanodes take commands only from the active; a standby's would
        // come from a view that lags the active's.
        let commands = if self.handle.is_serving_active() {
            commands(result, pool_id)
        } else if result
            .iter()
            .any(|c| matches!(c, DatanodeCommand::Reregister))
        {
            // Datanodes drop a standby's commands, so a standby that does
            // not know the datanode (it restarted or reloaded) says so as
            // an error, which every datanode answers by registering.
            return Err(rdfs_common::ExceptionKind::UnregisteredNode.status(format!(
                "datanode {} is not registered with namenode {}",
                req.datanode_uuid,
                self.handle.id()
            )));
        } else {
            Vec::new()
        };
        let (block_keys, block_keys_version) = self.block_keys(req.block_keys_version);
        Ok(Response::new(pb::HeartbeatResponse {
            commands,
            ha_status: self.handle.ha_status_pb(),
            block_keys,
            block_keys_version,
        }))
    }

    async fn block_report(
        &self,
        request: Request<pb::BlockReportRequest>,
    ) -> Result<Response<pb::BlockReportResponse>, Status> {
        let req = request.into_inner();
        let storages: Vec<(String, Vec<ReportedReplica>)> = req
            .reports
            .into_iter()
            .map(|report| {
                let replicas = report
                    .replicas
                    .into_iter()
                    .map(|r| {
                        let state = match pb::ReplicaState::try_from(r.state) {
                            Ok(pb::ReplicaState::Finalized) => ReportedState::Finalized,
                            Ok(pb::ReplicaState::Rbw) => ReportedState::Rbw,
                            Ok(pb::ReplicaState::Rwr) => ReportedState::Rwr,
                            Err(_) => {
                                return Err(rdfs_common::ExceptionKind::IllegalArgument
                                    .status(format!("unknown replica state {}", r.state)));
                            }
                        };
                        Ok(ReportedReplica {
                            block_id: r.block_id,
                            generation_stamp: r.generation_stamp,
                            num_bytes: r.num_bytes,
                            state,
                        })
                    })
                    .collect::<Result<Vec<_>, Status>>()?;
                Ok((report.storage_id, replicas))
            })
            .collect::<Result<_, Status>>()?;
        self.handle
            .get()
            .block_report(&req.datanode_uuid, &req.pool_id, &storages)?;
        Ok(Response::new(pb::BlockReportResponse {
            commands: Vec::new(),
        }))
    }

    async fn block_received_and_deleted(
        &self,
        request: Request<pb::BlockReceivedAndDeletedRequest>,
    ) -> Result<Response<pb::BlockReceivedAndDeletedResponse>, Status> {
        let req = request.into_inner();
        let mut events = Vec::with_capacity(req.blocks.len());
        for item in req.blocks {
            let block = ExtendedBlock::from(required(item.block, "block")?);
            let event = match pb::ReceivedDeletedStatus::try_from(item.status) {
                Ok(pb::ReceivedDeletedStatus::Receiving) => ReplicaEvent::Receiving,
                Ok(pb::ReceivedDeletedStatus::Received) => ReplicaEvent::Received,
                Ok(pb::ReceivedDeletedStatus::Deleted) => ReplicaEvent::Deleted,
                Err(_) => {
                    return Err(rdfs_common::ExceptionKind::IllegalArgument
                        .status(format!("unknown replica status {}", item.status)));
                }
            };
            events.push((block, item.storage_id, event));
        }
        self.handle
            .get()
            .block_received_and_deleted(&req.datanode_uuid, &req.pool_id, &events)?;
        Ok(Response::new(pb::BlockReceivedAndDeletedResponse {}))
    }

    async fn report_bad_blocks(
        &self,
        request: Request<pb::DatanodeReportBadBlocksRequest>,
    ) -> Result<Response<pb::DatanodeReportBadBlocksResponse>, Status> {
        let req = request.into_inner();
        let blocks: Vec<ExtendedBlock> = req.blocks.into_iter().map(Into::into).collect();
        self.handle
            .get()
            .datanode_bad_blocks(&req.datanode_uuid, &blocks, &req.reason)?;
        Ok(Response::new(pb::DatanodeReportBadBlocksResponse {}))
    }

    async fn commit_block_synchronization(
        &self,
        request: Request<pb::CommitBlockSynchronizationRequest>,
    ) -> Result<Response<pb::CommitBlockSynchronizationResponse>, Status> {
        let req = request.into_inner();
        let block = ExtendedBlock::from(required(req.block, "block")?);
        self.handle
            .active(crate::ha::Category::Write)?
            .commit_block_synchronization(
                &block,
                req.new_generation_stamp,
                req.new_length,
                req.close_file,
                req.delete_block,
                &req.new_targets,
                &req.new_target_storages,
            )
            .await?;
        Ok(Response::new(pb::CommitBlockSynchronizationResponse {}))
    }
}
