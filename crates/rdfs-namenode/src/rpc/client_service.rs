//! `ClientNamenode` over gRPC: converts wire types into the client
//! protocol's ([`crate::protocol`]) and back, and nothing else.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use rdfs_common::config::Config;
use rdfs_common::protocol::{ExtendedBlock, LocatedBlock};
use rdfs_proto as pb;
use rdfs_proto::client_namenode_server::ClientNamenode;

use super::{mode, origin, required};
use crate::fsck::FsckEntry;
use crate::namesystem::{AclChange, DatanodeReportType, SafeModeAction};
use crate::protocol::{self as p, ClientProtocol};

pub struct ClientService {
    protocol: Arc<ClientProtocol>,
    /// Reads the daemon's config again, for
    /// `-refreshSuperUserGroupsConfiguration`.
    reload: Arc<dyn Fn() -> Result<Config, String> + Send + Sync>,
}

impl ClientService {
    pub fn new(
        protocol: Arc<ClientProtocol>,
        reload: Arc<dyn Fn() -> Result<Config, String> + Send + Sync>,
    ) -> Self {
        Self { protocol, reload }
    }
}

type FsckStream = Pin<Box<dyn Stream<Item = Result<pb::FsckResponse, Status>> + Send>>;

fn block(field: Option<pb::ExtendedBlock>, name: &str) -> Result<ExtendedBlock, Status> {
    Ok(ExtendedBlock::from(required(field, name)?))
}

#[tonic::async_trait]
impl ClientNamenode for ClientService {
    async fn get_file_info(
        &self,
        request: Request<pb::GetFileInfoRequest>,
    ) -> Result<Response<pb::GetFileInfoResponse>, Status> {
        let status = self
            .protocol
            .get_file_info(origin(&request), &request.get_ref().src)?;
        Ok(Response::new(pb::GetFileInfoResponse {
            fs: status.as_ref().map(Into::into),
        }))
    }

    async fn get_listing(
        &self,
        request: Request<pb::GetListingRequest>,
    ) -> Result<Response<pb::GetListingResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let listing = self.protocol.get_listing(
            origin,
            &p::ListingRequest {
                src: req.src,
                start_after: req.start_after,
                need_location: req.need_location,
            },
        )?;
        Ok(Response::new(pb::GetListingResponse {
            dir_list: listing.map(|l| pb::DirectoryListing {
                partial_listing: l.entries.iter().map(Into::into).collect(),
                remaining_entries: l.remaining,
            }),
        }))
    }

    async fn get_content_summary(
        &self,
        request: Request<pb::GetContentSummaryRequest>,
    ) -> Result<Response<pb::GetContentSummaryResponse>, Status> {
        let summary = self
            .protocol
            .get_content_summary(origin(&request), &request.get_ref().path)?;
        Ok(Response::new(pb::GetContentSummaryResponse {
            summary: Some((&summary).into()),
        }))
    }

    async fn get_block_locations(
        &self,
        request: Request<pb::GetBlockLocationsRequest>,
    ) -> Result<Response<pb::GetBlockLocationsResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let located = self.protocol.get_block_locations(
            origin,
            &p::BlockLocationsRequest {
                src: req.src,
                offset: req.offset,
                length: req.length,
            },
        )?;
        Ok(Response::new(pb::GetBlockLocationsResponse {
            locations: Some((&located).into()),
        }))
    }

    async fn get_server_defaults(
        &self,
        request: Request<pb::GetServerDefaultsRequest>,
    ) -> Result<Response<pb::GetServerDefaultsResponse>, Status> {
        let defaults = self.protocol.get_server_defaults(origin(&request))?;
        Ok(Response::new(pb::GetServerDefaultsResponse {
            server_defaults: Some((&defaults).into()),
        }))
    }

    async fn mkdirs(
        &self,
        request: Request<pb::MkdirsRequest>,
    ) -> Result<Response<pb::MkdirsResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let result = self
            .protocol
            .mkdirs(
                origin,
                &p::MkdirsRequest {
                    src: req.src,
                    permission: mode(req.permission)?,
                    create_parent: req.create_parent,
                },
            )
            .await?;
        Ok(Response::new(pb::MkdirsResponse { result }))
    }

    async fn create(
        &self,
        request: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let status = self
            .protocol
            .create(
                origin,
                &p::CreateRequest {
                    src: req.src,
                    permission: mode(req.permission)?,
                    client_name: req.client_name,
                    overwrite: req.overwrite,
                    create_parent: req.create_parent,
                    replication: req.replication,
                    block_size: req.block_size,
                },
            )
            .await?;
        Ok(Response::new(pb::CreateResponse {
            fs: Some((&status).into()),
        }))
    }

    async fn add_block(
        &self,
        request: Request<pb::AddBlockRequest>,
    ) -> Result<Response<pb::AddBlockResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let located = self
            .protocol
            .add_block(
                origin,
                &p::AddBlockRequest {
                    src: req.src,
                    client_name: req.client_name,
                    previous: req.previous.map(ExtendedBlock::from),
                    exclude_nodes: req.exclude_nodes,
                    file_id: req.file_id,
                },
            )
            .await?;
        Ok(Response::new(pb::AddBlockResponse {
            block: Some((&located).into()),
        }))
    }

    async fn abandon_block(
        &self,
        request: Request<pb::AbandonBlockRequest>,
    ) -> Result<Response<pb::AbandonBlockResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        self.protocol
            .abandon_block(
                origin,
                &p::AbandonBlockRequest {
                    block: block(req.block, "block")?,
                    src: req.src,
                    holder: req.holder,
                    file_id: req.file_id,
                },
            )
            .await?;
        Ok(Response::new(pb::AbandonBlockResponse {}))
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let result = self
            .protocol
            .complete(
                origin,
                &p::CompleteRequest {
                    src: req.src,
                    client_name: req.client_name,
                    last: req.last.map(ExtendedBlock::from),
                    file_id: req.file_id,
                },
            )
            .await?;
        Ok(Response::new(pb::CompleteResponse { result }))
    }

    async fn rename(
        &self,
        request: Request<pb::RenameRequest>,
    ) -> Result<Response<pb::RenameResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let result = self
            .protocol
            .rename(
                origin,
                &p::RenameRequest {
                    src: req.src,
                    dst: req.dst,
                },
            )
            .await?;
        Ok(Response::new(pb::RenameResponse { result }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let result = self
            .protocol
            .delete(
                origin,
                &p::DeleteRequest {
                    src: req.src,
                    recursive: req.recursive,
                },
            )
            .await?;
        Ok(Response::new(pb::DeleteResponse { result }))
    }

    async fn set_replication(
        &self,
        request: Request<pb::SetReplicationRequest>,
    ) -> Result<Response<pb::SetReplicationResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let result = self
            .protocol
            .set_replication(
                origin,
                &p::SetReplicationRequest {
                    src: req.src,
                    replication: req.replication,
                },
            )
            .await?;
        Ok(Response::new(pb::SetReplicationResponse { result }))
    }

    async fn set_permission(
        &self,
        request: Request<pb::SetPermissionRequest>,
    ) -> Result<Response<pb::SetPermissionResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        self.protocol
            .set_permission(
                origin,
                &p::SetPermissionRequest {
                    src: req.src,
                    permission: mode(req.permission)?,
                },
            )
            .await?;
        Ok(Response::new(pb::SetPermissionResponse {}))
    }

    async fn set_owner(
        &self,
        request: Request<pb::SetOwnerRequest>,
    ) -> Result<Response<pb::SetOwnerResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let present = |s: String| Some(s).filter(|s| !s.is_empty());
        self.protocol
            .set_owner(
                origin,
                &p::SetOwnerRequest {
                    src: req.src,
                    owner: present(req.username),
                    group: present(req.groupname),
                },
            )
            .await?;
        Ok(Response::new(pb::SetOwnerResponse {}))
    }

    async fn set_times(
        &self,
        request: Request<pb::SetTimesRequest>,
    ) -> Result<Response<pb::SetTimesResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let time = |t: i64| u64::try_from(t).ok();
        self.protocol
            .set_times(
                origin,
                &p::SetTimesRequest {
                    src: req.src,
                    mtime: time(req.mtime),
                    atime: time(req.atime),
                },
            )
            .await?;
        Ok(Response::new(pb::SetTimesResponse {}))
    }

    async fn renew_lease(
        &self,
        request: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        self.protocol
            .renew_lease(origin(&request), &request.get_ref().client_name)?;
        Ok(Response::new(pb::RenewLeaseResponse {}))
    }

    async fn recover_lease(
        &self,
        request: Request<pb::RecoverLeaseRequest>,
    ) -> Result<Response<pb::RecoverLeaseResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let result = self
            .protocol
            .recover_lease(
                origin,
                &p::RecoverLeaseRequest {
                    src: req.src,
                    client_name: req.client_name,
                },
            )
            .await?;
        Ok(Response::new(pb::RecoverLeaseResponse { result }))
    }

    async fn append(
        &self,
        request: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let result = self
            .protocol
            .append(
                origin,
                &p::AppendRequest {
                    src: req.src,
                    client_name: req.client_name,
                },
            )
            .await?;
        Ok(Response::new(pb::AppendResponse {
            block: result.block.as_ref().map(Into::into),
            stat: Some((&result.status).into()),
        }))
    }

    async fn truncate(
        &self,
        request: Request<pb::TruncateRequest>,
    ) -> Result<Response<pb::TruncateResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let result = self
            .protocol
            .truncate(
                origin,
                &p::TruncateRequest {
                    src: req.src,
                    new_length: req.new_length,
                    client_name: req.client_name,
                },
            )
            .await?;
        Ok(Response::new(pb::TruncateResponse { result }))
    }

    async fn fsync(
        &self,
        request: Request<pb::FsyncRequest>,
    ) -> Result<Response<pb::FsyncResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        self.protocol
            .fsync(
                origin,
                &p::FsyncRequest {
                    src: req.src,
                    client_name: req.client,
                    last_block_length: req.last_block_length,
                    file_id: req.file_id,
                },
            )
            .await?;
        Ok(Response::new(pb::FsyncResponse {}))
    }

    async fn update_block_for_pipeline(
        &self,
        request: Request<pb::UpdateBlockForPipelineRequest>,
    ) -> Result<Response<pb::UpdateBlockForPipelineResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let located = self
            .protocol
            .update_block_for_pipeline(
                origin,
                &p::UpdateBlockForPipelineRequest {
                    block: block(req.block, "block")?,
                    client_name: req.client_name,
                },
            )
            .await?;
        Ok(Response::new(pb::UpdateBlockForPipelineResponse {
            block: Some((&located).into()),
        }))
    }

    async fn update_pipeline(
        &self,
        request: Request<pb::UpdatePipelineRequest>,
    ) -> Result<Response<pb::UpdatePipelineResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        self.protocol
            .update_pipeline(
                origin,
                &p::UpdatePipelineRequest {
                    client_name: req.client_name,
                    old_block: block(req.old_block, "old block")?,
                    new_block: block(req.new_block, "new block")?,
                    new_nodes: req.new_nodes,
                    storage_ids: req.storage_ids,
                },
            )
            .await?;
        Ok(Response::new(pb::UpdatePipelineResponse {}))
    }

    async fn get_additional_datanode(
        &self,
        request: Request<pb::GetAdditionalDatanodeRequest>,
    ) -> Result<Response<pb::GetAdditionalDatanodeResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let located = self.protocol.get_additional_datanode(
            origin,
            &p::AdditionalDatanodeRequest {
                src: req.src,
                block: block(req.block, "block")?,
                existings: req.existings,
                excludes: req.excludes,
                num_additional_nodes: req.num_additional_nodes,
                client_name: req.client_name,
                file_id: req.file_id,
            },
        )?;
        Ok(Response::new(pb::GetAdditionalDatanodeResponse {
            block: Some((&located).into()),
        }))
    }

    async fn report_bad_blocks(
        &self,
        request: Request<pb::ReportBadBlocksRequest>,
    ) -> Result<Response<pb::ReportBadBlocksResponse>, Status> {
        let origin = origin(&request);
        let blocks: Vec<LocatedBlock> = request
            .into_inner()
            .blocks
            .into_iter()
            .map(Into::into)
            .collect();
        self.protocol.report_bad_blocks(origin, &blocks)?;
        Ok(Response::new(pb::ReportBadBlocksResponse {}))
    }

    async fn get_datanode_report(
        &self,
        request: Request<pb::GetDatanodeReportRequest>,
    ) -> Result<Response<pb::GetDatanodeReportResponse>, Status> {
        let kind = match pb::DatanodeReportType::try_from(request.get_ref().r#type) {
            Ok(pb::DatanodeReportType::DatanodeReportLive) => DatanodeReportType::Live,
            Ok(pb::DatanodeReportType::DatanodeReportDead) => DatanodeReportType::Dead,
            Ok(pb::DatanodeReportType::DatanodeReportDecommissioning) => {
                DatanodeReportType::Decommissioning
            }
            _ => DatanodeReportType::All,
        };
        let datanodes = self
            .protocol
            .get_datanode_report(origin(&request), kind)?
            .iter()
            .map(Into::into)
            .collect();
        Ok(Response::new(pb::GetDatanodeReportResponse { datanodes }))
    }

    async fn get_fs_stats(
        &self,
        request: Request<pb::GetFsStatsRequest>,
    ) -> Result<Response<pb::GetFsStatsResponse>, Status> {
        Ok(Response::new(
            (&self.protocol.get_fs_stats(origin(&request))?).into(),
        ))
    }

    type FsckStream = FsckStream;

    async fn fsck(
        &self,
        request: Request<pb::FsckRequest>,
    ) -> Result<Response<Self::FsckStream>, Status> {
        let origin = origin(&request);
        let remote_address = origin.address.clone();
        let report = self.protocol.fsck(origin, &request.get_ref().path)?;
        let summary = pb::FsckResponse {
            entry: Some(pb::fsck_response::Entry::Summary(pb::FsckSummary {
                live_datanodes: report.live_datanodes,
                racks: report.racks,
                default_replication: report.default_replication,
                remote_address,
                min_replication: report.min_replication,
                pending_replications: report.pending_replications,
            })),
        };
        let entries = report.entries.into_iter().map(|entry| {
            let entry = match entry {
                FsckEntry::Directory(path) => pb::fsck_response::Entry::Directory(path),
                FsckEntry::File(file) => pb::fsck_response::Entry::File(pb::FsckFile {
                    path: file.path,
                    status: Some((&file.status).into()),
                    under_construction: file.under_construction,
                    blocks: file
                        .blocks
                        .iter()
                        .map(|b| pb::FsckBlock {
                            block: Some((&b.block).into()),
                            live_replicas: b.live_replicas,
                            complete: b.complete,
                            mis_replicated: b.mis_replicated,
                            replicas: b
                                .replicas
                                .iter()
                                .map(|r| pb::FsckReplica {
                                    datanode: Some((&r.datanode).into()),
                                    storage_id: r.storage_id.clone(),
                                    corrupt: r.corrupt,
                                })
                                .collect(),
                        })
                        .collect(),
                }),
            };
            Ok(pb::FsckResponse { entry: Some(entry) })
        });
        let stream = tokio_stream::iter(
            entries
                .chain(std::iter::once(Ok(summary)))
                .collect::<Vec<_>>(),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn set_safe_mode(
        &self,
        request: Request<pb::SetSafeModeRequest>,
    ) -> Result<Response<pb::SetSafeModeResponse>, Status> {
        let action = match pb::SafeModeAction::try_from(request.get_ref().action) {
            Ok(pb::SafeModeAction::Enter) => SafeModeAction::Enter,
            Ok(pb::SafeModeAction::Leave) => SafeModeAction::Leave,
            _ => SafeModeAction::Get,
        };
        let state = self.protocol.set_safe_mode(origin(&request), action)?;
        Ok(Response::new(pb::SetSafeModeResponse {
            on: state.on,
            tip: state.tip,
        }))
    }

    async fn save_namespace(
        &self,
        request: Request<pb::SaveNamespaceRequest>,
    ) -> Result<Response<pb::SaveNamespaceResponse>, Status> {
        let txid = self.protocol.save_namespace(origin(&request)).await?;
        Ok(Response::new(pb::SaveNamespaceResponse { txid }))
    }

    async fn roll_edits(
        &self,
        request: Request<pb::RollEditsRequest>,
    ) -> Result<Response<pb::RollEditsResponse>, Status> {
        let first = self.protocol.roll_edits(origin(&request)).await?;
        Ok(Response::new(pb::RollEditsResponse {
            new_segment_txid: first,
        }))
    }

    async fn refresh_nodes(
        &self,
        request: Request<pb::RefreshNodesRequest>,
    ) -> Result<Response<pb::RefreshNodesResponse>, Status> {
        let summary = self.protocol.refresh_nodes(origin(&request))?;
        Ok(Response::new(pb::RefreshNodesResponse { summary }))
    }

    async fn change_acl(
        &self,
        request: Request<pb::ChangeAclRequest>,
    ) -> Result<Response<pb::ChangeAclResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let entries = rdfs_common::acl::from_wire(&req.entries)
            .map_err(|e| rdfs_common::ExceptionKind::Acl.status(e.0))?;
        let change = match pb::AclChange::try_from(req.change) {
            Ok(pb::AclChange::AclModify) => AclChange::Modify(entries),
            Ok(pb::AclChange::AclRemoveEntries) => AclChange::RemoveEntries(entries),
            Ok(pb::AclChange::AclRemoveDefault) => AclChange::RemoveDefault,
            Ok(pb::AclChange::AclRemoveAll) => AclChange::RemoveAll,
            Ok(pb::AclChange::AclSet) => AclChange::Set(entries),
            Err(_) => {
                return Err(rdfs_common::ExceptionKind::IllegalArgument
                    .status(format!("unknown ACL change {}", req.change)));
            }
        };
        self.protocol
            .change_acl(
                origin,
                &p::ChangeAclRequest {
                    src: req.src,
                    change,
                },
            )
            .await?;
        Ok(Response::new(pb::ChangeAclResponse {}))
    }

    async fn get_acl_status(
        &self,
        request: Request<pb::GetAclStatusRequest>,
    ) -> Result<Response<pb::GetAclStatusResponse>, Status> {
        let status = self
            .protocol
            .get_acl_status(origin(&request), &request.get_ref().src)?;
        Ok(Response::new(pb::GetAclStatusResponse {
            owner: status.owner,
            group: status.group,
            sticky: status.sticky,
            permission: u32::from(status.permission),
            entries: rdfs_common::acl::to_wire(&status.entries),
        }))
    }

    async fn get_groups(
        &self,
        request: Request<pb::GetGroupsRequest>,
    ) -> Result<Response<pb::GetGroupsResponse>, Status> {
        let groups = self
            .protocol
            .get_groups(origin(&request), &request.get_ref().user)?;
        Ok(Response::new(pb::GetGroupsResponse {
            groups: groups.to_vec(),
        }))
    }

    async fn refresh_user_to_groups_mappings(
        &self,
        request: Request<pb::RefreshUserToGroupsMappingsRequest>,
    ) -> Result<Response<pb::RefreshUserToGroupsMappingsResponse>, Status> {
        self.protocol.refresh_user_to_groups(origin(&request))?;
        Ok(Response::new(pb::RefreshUserToGroupsMappingsResponse {}))
    }

    async fn refresh_super_user_groups_configuration(
        &self,
        request: Request<pb::RefreshSuperUserGroupsConfigurationRequest>,
    ) -> Result<Response<pb::RefreshSuperUserGroupsConfigurationResponse>, Status> {
        let config = (self.reload)().map_err(|why| {
            rdfs_common::ExceptionKind::Io.status(format!("cannot read the configuration: {why}"))
        })?;
        self.protocol
            .refresh_proxy_users(origin(&request), &config)?;
        Ok(Response::new(
            pb::RefreshSuperUserGroupsConfigurationResponse {},
        ))
    }

    async fn get_blocks(
        &self,
        request: Request<pb::GetBlocksRequest>,
    ) -> Result<Response<pb::GetBlocksResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        let blocks = self.protocol.get_blocks(
            origin,
            &p::GetBlocksRequest {
                datanode_uuid: req.datanode_uuid,
                size: req.size,
                min_block_size: req.min_block_size,
            },
        )?;
        Ok(Response::new(pb::GetBlocksResponse {
            blocks: blocks.iter().map(Into::into).collect(),
        }))
    }

    async fn schedule_replica_move(
        &self,
        request: Request<pb::ScheduleReplicaMoveRequest>,
    ) -> Result<Response<pb::ScheduleReplicaMoveResponse>, Status> {
        let origin = origin(&request);
        let req = request.into_inner();
        self.protocol.schedule_replica_move(
            origin,
            &p::ReplicaMoveRequest {
                block: block(req.block, "block")?,
                source_uuid: req.source_uuid,
                target_uuid: req.target_uuid,
            },
        )?;
        Ok(Response::new(pb::ScheduleReplicaMoveResponse {}))
    }
}
