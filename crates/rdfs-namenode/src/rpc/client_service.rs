//! `ClientNamenode` over gRPC.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use rdfs_common::protocol::{ExtendedBlock, LocatedBlock};
use rdfs_proto as pb;
use rdfs_proto::client_namenode_server::ClientNamenode;

use super::{caller, mode, required};
use crate::checkpoint::Checkpointer;
use crate::fsck::FsckEntry;
use crate::ha::{Category, NamenodeHandle};
use crate::namesystem::{DatanodeReportType, Namesystem, SafeModeAction};

pub struct ClientService {
    handle: Arc<NamenodeHandle>,
    /// `None` in an HA nameservice, where the standby checkpoints.
    checkpointer: Option<Arc<Checkpointer>>,
}

impl ClientService {
    pub fn new(handle: Arc<NamenodeHandle>, checkpointer: Option<Arc<Checkpointer>>) -> Self {
        Self {
            handle,
            checkpointer,
        }
    }

    /// The namesystem for an operation only the active namenode serves.
    fn ns(&self, category: Category) -> Result<Arc<Namesystem>, Status> {
        Ok(self.handle.active(category)?)
    }
}

type FsckStream = Pin<Box<dyn Stream<Item = Result<pb::FsckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ClientNamenode for ClientService {
    async fn get_file_info(
        &self,
        request: Request<pb::GetFileInfoRequest>,
    ) -> Result<Response<pb::GetFileInfoResponse>, Status> {
        let status = self
            .ns(Category::Read)?
            .get_file_info(&request.get_ref().src)?;
        Ok(Response::new(pb::GetFileInfoResponse {
            fs: status.as_ref().map(Into::into),
        }))
    }

    async fn get_listing(
        &self,
        request: Request<pb::GetListingRequest>,
    ) -> Result<Response<pb::GetListingResponse>, Status> {
        let req = request.get_ref();
        let listing =
            self.ns(Category::Read)?
                .get_listing(&req.src, &req.start_after, req.need_location)?;
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
            .ns(Category::Read)?
            .get_content_summary(&request.get_ref().path)?;
        Ok(Response::new(pb::GetContentSummaryResponse {
            summary: Some((&summary).into()),
        }))
    }

    async fn get_block_locations(
        &self,
        request: Request<pb::GetBlockLocationsRequest>,
    ) -> Result<Response<pb::GetBlockLocationsResponse>, Status> {
        let req = request.get_ref();
        let located = self
            .ns(Category::Read)?
            .get_block_locations(&req.src, req.offset, req.length)?;
        Ok(Response::new(pb::GetBlockLocationsResponse {
            locations: Some((&located).into()),
        }))
    }

    async fn get_server_defaults(
        &self,
        _request: Request<pb::GetServerDefaultsRequest>,
    ) -> Result<Response<pb::GetServerDefaultsResponse>, Status> {
        let defaults = self.ns(Category::Read)?.server_defaults();
        Ok(Response::new(pb::GetServerDefaultsResponse {
            server_defaults: Some((&defaults).into()),
        }))
    }

    async fn mkdirs(
        &self,
        request: Request<pb::MkdirsRequest>,
    ) -> Result<Response<pb::MkdirsResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let result = self
            .ns(Category::Write)?
            .mkdirs(&caller, &req.src, mode(req.permission)?, req.create_parent)
            .await?;
        Ok(Response::new(pb::MkdirsResponse { result }))
    }

    async fn create(
        &self,
        request: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let status = self
            .ns(Category::Write)?
            .create(
                &caller,
                &req.src,
                mode(req.permission)?,
                &req.client_name,
                req.overwrite,
                req.create_parent,
                req.replication,
                req.block_size,
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
        let writer_host = caller(&request).machine;
        let req = request.into_inner();
        let previous = req.previous.map(ExtendedBlock::from);
        let located = self
            .ns(Category::Write)?
            .add_block_from(
                &req.src,
                &req.client_name,
                previous.as_ref(),
                &req.exclude_nodes,
                req.file_id,
                Some(&writer_host),
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
        let req = request.into_inner();
        let block = ExtendedBlock::from(required(req.block, "block")?);
        self.ns(Category::Write)?
            .abandon_block(&block, &req.src, &req.holder, req.file_id)
            .await?;
        Ok(Response::new(pb::AbandonBlockResponse {}))
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let req = request.into_inner();
        let last = req.last.map(ExtendedBlock::from);
        let result = self
            .ns(Category::Write)?
            .complete(&req.src, &req.client_name, last.as_ref(), req.file_id)
            .await?;
        Ok(Response::new(pb::CompleteResponse { result }))
    }

    async fn rename(
        &self,
        request: Request<pb::RenameRequest>,
    ) -> Result<Response<pb::RenameResponse>, Status> {
        let caller = caller(&request);
        let req = request.get_ref();
        let result = self
            .ns(Category::Write)?
            .rename(&caller, &req.src, &req.dst)
            .await?;
        Ok(Response::new(pb::RenameResponse { result }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let caller = caller(&request);
        let req = request.get_ref();
        let result = self
            .ns(Category::Write)?
            .delete(&caller, &req.src, req.recursive)
            .await?;
        Ok(Response::new(pb::DeleteResponse { result }))
    }

    async fn set_replication(
        &self,
        request: Request<pb::SetReplicationRequest>,
    ) -> Result<Response<pb::SetReplicationResponse>, Status> {
        let req = request.get_ref();
        let result = self
            .ns(Category::Write)?
            .set_replication(&req.src, req.replication)
            .await?;
        Ok(Response::new(pb::SetReplicationResponse { result }))
    }

    async fn set_permission(
        &self,
        request: Request<pb::SetPermissionRequest>,
    ) -> Result<Response<pb::SetPermissionResponse>, Status> {
        let req = request.get_ref();
        self.ns(Category::Write)?
            .set_permission(&req.src, mode(req.permission)?)
            .await?;
        Ok(Response::new(pb::SetPermissionResponse {}))
    }

    async fn set_owner(
        &self,
        request: Request<pb::SetOwnerRequest>,
    ) -> Result<Response<pb::SetOwnerResponse>, Status> {
        let req = request.get_ref();
        let owner = Some(req.username.as_str()).filter(|s| !s.is_empty());
        let group = Some(req.groupname.as_str()).filter(|s| !s.is_empty());
        self.ns(Category::Write)?
            .set_owner(&req.src, owner, group)
            .await?;
        Ok(Response::new(pb::SetOwnerResponse {}))
    }

    async fn set_times(
        &self,
        request: Request<pb::SetTimesRequest>,
    ) -> Result<Response<pb::SetTimesResponse>, Status> {
        let req = request.get_ref();
        let time = |t: i64| u64::try_from(t).ok();
        self.ns(Category::Write)?
            .set_times(&req.src, time(req.mtime), time(req.atime))
            .await?;
        Ok(Response::new(pb::SetTimesResponse {}))
    }

    async fn renew_lease(
        &self,
        request: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        self.ns(Category::Write)?
            .renew_lease(&request.get_ref().client_name)?;
        Ok(Response::new(pb::RenewLeaseResponse {}))
    }

    async fn recover_lease(
        &self,
        request: Request<pb::RecoverLeaseRequest>,
    ) -> Result<Response<pb::RecoverLeaseResponse>, Status> {
        let req = request.get_ref();
        let result = self
            .ns(Category::Write)?
            .recover_lease(&req.src, &req.client_name)
            .await?;
        Ok(Response::new(pb::RecoverLeaseResponse { result }))
    }

    async fn append(
        &self,
        request: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let caller = caller(&request);
        let req = request.get_ref();
        let result = self
            .ns(Category::Write)?
            .append(&caller, &req.src, &req.client_name)
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
        let caller = caller(&request);
        let req = request.get_ref();
        let result = self
            .ns(Category::Write)?
            .truncate(&caller, &req.src, req.new_length, &req.client_name)
            .await?;
        Ok(Response::new(pb::TruncateResponse { result }))
    }

    async fn fsync(
        &self,
        request: Request<pb::FsyncRequest>,
    ) -> Result<Response<pb::FsyncResponse>, Status> {
        let req = request.get_ref();
        self.ns(Category::Write)?
            .fsync(&req.src, &req.client, req.last_block_length, req.file_id)
            .await?;
        Ok(Response::new(pb::FsyncResponse {}))
    }

    async fn update_block_for_pipeline(
        &self,
        request: Request<pb::UpdateBlockForPipelineRequest>,
    ) -> Result<Response<pb::UpdateBlockForPipelineResponse>, Status> {
        let req = request.into_inner();
        let block = ExtendedBlock::from(required(req.block, "block")?);
        let located = self
            .ns(Category::Write)?
            .update_block_for_pipeline(&block, &req.client_name)
            .await?;
        Ok(Response::new(pb::UpdateBlockForPipelineResponse {
            block: Some((&located).into()),
        }))
    }

    async fn update_pipeline(
        &self,
        request: Request<pb::UpdatePipelineRequest>,
    ) -> Result<Response<pb::UpdatePipelineResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let old_block = ExtendedBlock::from(required(req.old_block, "old block")?);
        let new_block = ExtendedBlock::from(required(req.new_block, "new block")?);
        self.ns(Category::Write)?
            .update_pipeline(
                &caller,
                &req.client_name,
                &old_block,
                &new_block,
                &req.new_nodes,
                &req.storage_ids,
            )
            .await?;
        Ok(Response::new(pb::UpdatePipelineResponse {}))
    }

    async fn get_additional_datanode(
        &self,
        request: Request<pb::GetAdditionalDatanodeRequest>,
    ) -> Result<Response<pb::GetAdditionalDatanodeResponse>, Status> {
        let req = request.into_inner();
        let block = ExtendedBlock::from(required(req.block, "block")?);
        let located = self.ns(Category::Write)?.get_additional_datanode(
            &req.src,
            &block,
            &req.existings,
            &req.excludes,
            req.num_additional_nodes,
            &req.client_name,
            req.file_id,
        )?;
        Ok(Response::new(pb::GetAdditionalDatanodeResponse {
            block: Some((&located).into()),
        }))
    }

    async fn report_bad_blocks(
        &self,
        request: Request<pb::ReportBadBlocksRequest>,
    ) -> Result<Response<pb::ReportBadBlocksResponse>, Status> {
        let reporter = caller(&request).machine;
        let blocks: Vec<LocatedBlock> = request
            .into_inner()
            .blocks
            .into_iter()
            .map(Into::into)
            .collect();
        self.ns(Category::Write)?
            .report_bad_blocks(&blocks, &reporter)?;
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
            .handle
            .get()
            .datanode_report(kind)
            .iter()
            .map(Into::into)
            .collect();
        Ok(Response::new(pb::GetDatanodeReportResponse { datanodes }))
    }

    async fn get_fs_stats(
        &self,
        _request: Request<pb::GetFsStatsRequest>,
    ) -> Result<Response<pb::GetFsStatsResponse>, Status> {
        Ok(Response::new((&self.ns(Category::Read)?.fs_stats()).into()))
    }

    type FsckStream = FsckStream;

    async fn fsck(
        &self,
        request: Request<pb::FsckRequest>,
    ) -> Result<Response<Self::FsckStream>, Status> {
        let remote_address = caller(&request).machine;
        let report = self.ns(Category::Read)?.fsck(&request.get_ref().path)?;
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
        let on = self.handle.get().safe_mode(action);
        let tip = self.handle.get().safe_mode_tip().unwrap_or_default();
        Ok(Response::new(pb::SetSafeModeResponse { on, tip }))
    }

    async fn save_namespace(
        &self,
        _request: Request<pb::SaveNamespaceRequest>,
    ) -> Result<Response<pb::SaveNamespaceResponse>, Status> {
        let Some(checkpointer) = &self.checkpointer else {
            return Err(rdfs_common::ExceptionKind::IllegalArgument.status(
                "saveNamespace is not available in an HA nameservice: the standby checkpoints (ha.standby_checkpoint_txns, namenode.checkpoint_period_ms) and ships each image to the active",
            ));
        };
        let txid = checkpointer
            .save()
            .await
            .map_err(|e| rdfs_common::ExceptionKind::Io.status(e.to_string()))?;
        Ok(Response::new(pb::SaveNamespaceResponse { txid }))
    }

    async fn roll_edits(
        &self,
        _request: Request<pb::RollEditsRequest>,
    ) -> Result<Response<pb::RollEditsResponse>, Status> {
        let first = match &self.checkpointer {
            Some(checkpointer) => checkpointer
                .roll_edits()
                .await
                .map_err(|e| rdfs_common::ExceptionKind::Io.status(e.to_string()))?,
            None => self.ns(Category::Write)?.roll_edits().await?,
        };
        Ok(Response::new(pb::RollEditsResponse {
            new_segment_txid: first,
        }))
    }

    async fn refresh_nodes(
        &self,
        _request: Request<pb::RefreshNodesRequest>,
    ) -> Result<Response<pb::RefreshNodesResponse>, Status> {
        let summary = self.handle.get().refresh_nodes()?;
        Ok(Response::new(pb::RefreshNodesResponse { summary }))
    }

    async fn get_blocks(
        &self,
        request: Request<pb::GetBlocksRequest>,
    ) -> Result<Response<pb::GetBlocksResponse>, Status> {
        let req = request.into_inner();
        let blocks = self.ns(Category::Read)?.get_blocks(
            &req.datanode_uuid,
            req.size,
            req.min_block_size,
        )?;
        Ok(Response::new(pb::GetBlocksResponse {
            blocks: blocks.iter().map(Into::into).collect(),
        }))
    }

    async fn schedule_replica_move(
        &self,
        request: Request<pb::ScheduleReplicaMoveRequest>,
    ) -> Result<Response<pb::ScheduleReplicaMoveResponse>, Status> {
        let req = request.into_inner();
        let block = ExtendedBlock::from(super::required(req.block, "block")?);
        self.ns(Category::Write)?.schedule_replica_move(
            &block,
            &req.source_uuid,
            &req.target_uuid,
        )?;
        Ok(Response::new(pb::ScheduleReplicaMoveResponse {}))
    }
}
