//! The client protocol: the one way a client call reaches the namesystem.
//!
//! Every front door (gRPC today; Hadoop IPC and WebHDFS next) converts its
//! wire types into an [`Origin`] and one request struct per operation and
//! calls this. Here, for every operation and in one place: the origin
//! becomes a [`Caller`] (proxy-user rules, groups, superuser); the HA state
//! is checked for the operation's category; administrative operations
//! require the superuser; and the namesystem then checks permissions under
//! its lock and answers retries from its retry cache. A front door that
//! forgot a check would have to bypass this module, which it cannot reach
//! around: the namesystem's operations all take a `Caller`, which only
//! [`Identities`] makes from an origin.

use std::sync::Arc;

use rdfs_common::protocol::{
    ContentSummary, DatanodeInfo, ExtendedBlock, FileStatus, FsStats, LocatedBlock, LocatedBlocks,
    ServerDefaults,
};

use rdfs_common::block_token::AccessMode;

use crate::block_tokens::BlockTokens;
use crate::checkpoint::Checkpointer;
use crate::error::{NamenodeError, Result};
use crate::fsck::FsckReport;
use crate::groups::GroupList;
use crate::ha::{Category, NamenodeHandle};
use crate::identity::{Identities, Origin};
use crate::namesystem::{
    AclChange, AclStatus, AppendResult, Caller, DatanodeReportType, DirectoryListing, Namesystem,
    SafeModeAction,
};

/// `getListing`.
#[derive(Debug, Clone)]
pub struct ListingRequest {
    pub src: String,
    /// The name to list after (paging); empty for the first page.
    pub start_after: Vec<u8>,
    pub need_location: bool,
}

/// `getBlockLocations`.
#[derive(Debug, Clone)]
pub struct BlockLocationsRequest {
    pub src: String,
    pub offset: u64,
    pub length: u64,
}

/// `mkdirs`.
#[derive(Debug, Clone)]
pub struct MkdirsRequest {
    pub src: String,
    /// The mode after the client's umask.
    pub permission: u16,
    pub create_parent: bool,
}

/// `create`.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub src: String,
    pub permission: u16,
    pub client_name: String,
    pub overwrite: bool,
    pub create_parent: bool,
    pub replication: u32,
    pub block_size: u64,
}

/// `addBlock`.
#[derive(Debug, Clone)]
pub struct AddBlockRequest {
    pub src: String,
    pub client_name: String,
    pub previous: Option<ExtendedBlock>,
    pub exclude_nodes: Vec<String>,
    pub file_id: u64,
}

/// `abandonBlock`.
#[derive(Debug, Clone)]
pub struct AbandonBlockRequest {
    pub block: ExtendedBlock,
    pub src: String,
    pub holder: String,
    pub file_id: u64,
}

/// `complete`.
#[derive(Debug, Clone)]
pub struct CompleteRequest {
    pub src: String,
    pub client_name: String,
    pub last: Option<ExtendedBlock>,
    pub file_id: u64,
}

/// `rename` (HDFS's original: false rather than an error for most
/// failures).
#[derive(Debug, Clone)]
pub struct RenameRequest {
    pub src: String,
    pub dst: String,
}

/// `delete`.
#[derive(Debug, Clone)]
pub struct DeleteRequest {
    pub src: String,
    pub recursive: bool,
}

/// `setReplication`.
#[derive(Debug, Clone)]
pub struct SetReplicationRequest {
    pub src: String,
    pub replication: u32,
}

/// `setPermission`.
#[derive(Debug, Clone)]
pub struct SetPermissionRequest {
    pub src: String,
    pub permission: u16,
}

/// `setOwner`: either may be absent, not both.
#[derive(Debug, Clone)]
pub struct SetOwnerRequest {
    pub src: String,
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// `setTimes`: an absent time is left as it is.
#[derive(Debug, Clone)]
pub struct SetTimesRequest {
    pub src: String,
    pub mtime: Option<u64>,
    pub atime: Option<u64>,
}

/// `modifyAclEntries`, `removeAclEntries`, `removeDefaultAcl`, `removeAcl`
/// and `setAcl`, by the change each makes.
#[derive(Debug, Clone)]
pub struct ChangeAclRequest {
    pub src: String,
    pub change: AclChange,
}

/// `recoverLease`.
#[derive(Debug, Clone)]
pub struct RecoverLeaseRequest {
    pub src: String,
    pub client_name: String,
}

/// `append`.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub src: String,
    pub client_name: String,
}

/// `truncate`.
#[derive(Debug, Clone)]
pub struct TruncateRequest {
    pub src: String,
    pub new_length: u64,
    pub client_name: String,
}

/// `fsync` (hflush/hsync's length update).
#[derive(Debug, Clone)]
pub struct FsyncRequest {
    pub src: String,
    pub client_name: String,
    pub last_block_length: u64,
    pub file_id: u64,
}

/// `updateBlockForPipeline`.
#[derive(Debug, Clone)]
pub struct UpdateBlockForPipelineRequest {
    pub block: ExtendedBlock,
    pub client_name: String,
}

/// `updatePipeline`.
#[derive(Debug, Clone)]
pub struct UpdatePipelineRequest {
    pub client_name: String,
    pub old_block: ExtendedBlock,
    pub new_block: ExtendedBlock,
    pub new_nodes: Vec<String>,
    pub storage_ids: Vec<String>,
}

/// `getAdditionalDatanode`.
#[derive(Debug, Clone)]
pub struct AdditionalDatanodeRequest {
    pub src: String,
    pub block: ExtendedBlock,
    pub existings: Vec<String>,
    pub excludes: Vec<String>,
    pub num_additional_nodes: u32,
    pub client_name: String,
    pub file_id: u64,
}

/// `getBlocks` (the balancer's pick of a datanode's blocks).
#[derive(Debug, Clone)]
pub struct GetBlocksRequest {
    pub datanode_uuid: String,
    pub size: u64,
    pub min_block_size: u64,
}

/// The balancer's order to move one replica.
#[derive(Debug, Clone)]
pub struct ReplicaMoveRequest {
    pub block: ExtendedBlock,
    pub source_uuid: String,
    pub target_uuid: String,
}

/// Safe mode after a `setSafeMode`: whether on, and why.
#[derive(Debug, Clone)]
pub struct SafeModeState {
    pub on: bool,
    pub tip: String,
}

/// The client protocol over the namenode's current namesystem.
pub struct ClientProtocol {
    handle: Arc<NamenodeHandle>,
    /// `None` in an HA nameservice, where the standby checkpoints.
    checkpointer: Option<Arc<Checkpointer>>,
    identities: Arc<Identities>,
    /// Every block location that leaves through here carries a token.
    block_tokens: Arc<BlockTokens>,
}

impl ClientProtocol {
    pub fn new(
        handle: Arc<NamenodeHandle>,
        checkpointer: Option<Arc<Checkpointer>>,
        identities: Arc<Identities>,
        block_tokens: Arc<BlockTokens>,
    ) -> Self {
        Self {
            handle,
            checkpointer,
            identities,
            block_tokens,
        }
    }

    pub fn identities(&self) -> &Arc<Identities> {
        &self.identities
    }

    /// The caller and the namesystem for an operation of `category`.
    fn enter(&self, origin: Origin, category: Category) -> Result<(Caller, Arc<Namesystem>)> {
        let namesystem = self.handle.active(category)?;
        let caller = self.identities.caller(origin)?;
        Ok((caller, namesystem))
    }

    /// Like [`Self::enter`], for what only the superuser may do.
    fn enter_as_superuser(
        &self,
        origin: Origin,
        category: Category,
    ) -> Result<(Caller, Arc<Namesystem>)> {
        let (caller, namesystem) = self.enter(origin, category)?;
        caller.require_superuser()?;
        Ok((caller, namesystem))
    }

    /// The caller, for what any namenode answers whatever its HA state.
    fn caller(&self, origin: Origin) -> Result<Caller> {
        self.identities.caller(origin)
    }

    pub fn get_file_info(&self, origin: Origin, src: &str) -> Result<Option<FileStatus>> {
        let (caller, ns) = self.enter(origin, Category::Read)?;
        ns.get_file_info(&caller, src)
    }

    pub fn get_listing(
        &self,
        origin: Origin,
        request: &ListingRequest,
    ) -> Result<Option<DirectoryListing>> {
        let (caller, ns) = self.enter(origin, Category::Read)?;
        let mut listing = ns.get_listing(
            &caller,
            &request.src,
            &request.start_after,
            request.need_location,
        )?;
        if let Some(listing) = listing.as_mut() {
            for entry in &mut listing.entries {
                self.block_tokens.stamp_status(entry, &caller.user);
            }
        }
        Ok(listing)
    }

    pub fn get_content_summary(&self, origin: Origin, src: &str) -> Result<ContentSummary> {
        let (caller, ns) = self.enter(origin, Category::Read)?;
        ns.get_content_summary(&caller, src)
    }

    pub fn get_block_locations(
        &self,
        origin: Origin,
        request: &BlockLocationsRequest,
    ) -> Result<LocatedBlocks> {
        let (caller, ns) = self.enter(origin, Category::Read)?;
        let mut located =
            ns.get_block_locations(&caller, &request.src, request.offset, request.length)?;
        self.block_tokens.stamp_for_read(&mut located, &caller.user);
        Ok(located)
    }

    pub fn get_server_defaults(&self, origin: Origin) -> Result<ServerDefaults> {
        let (_, ns) = self.enter(origin, Category::Read)?;
        Ok(ns.server_defaults())
    }

    pub async fn mkdirs(&self, origin: Origin, request: &MkdirsRequest) -> Result<bool> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.mkdirs(
            &caller,
            &request.src,
            request.permission,
            request.create_parent,
        )
        .await
    }

    pub async fn create(&self, origin: Origin, request: &CreateRequest) -> Result<FileStatus> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.create(
            &caller,
            &request.src,
            request.permission,
            &request.client_name,
            request.overwrite,
            request.create_parent,
            request.replication,
            request.block_size,
        )
        .await
    }

    /// Lease-checked: only the file's writer gets here past the namesystem.
    pub async fn add_block(
        &self,
        origin: Origin,
        request: &AddBlockRequest,
    ) -> Result<LocatedBlock> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        let mut located = ns
            .add_block_from(
                &request.src,
                &request.client_name,
                request.previous.as_ref(),
                &request.exclude_nodes,
                request.file_id,
                Some(&caller.machine),
            )
            .await?;
        self.block_tokens
            .stamp(&mut located, &caller.user, &[AccessMode::Write]);
        Ok(located)
    }

    pub async fn abandon_block(&self, origin: Origin, request: &AbandonBlockRequest) -> Result<()> {
        let (_, ns) = self.enter(origin, Category::Write)?;
        ns.abandon_block(
            &request.block,
            &request.src,
            &request.holder,
            request.file_id,
        )
        .await
    }

    pub async fn complete(&self, origin: Origin, request: &CompleteRequest) -> Result<bool> {
        let (_, ns) = self.enter(origin, Category::Write)?;
        ns.complete(
            &request.src,
            &request.client_name,
            request.last.as_ref(),
            request.file_id,
        )
        .await
    }

    pub async fn rename(&self, origin: Origin, request: &RenameRequest) -> Result<bool> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.rename(&caller, &request.src, &request.dst).await
    }

    pub async fn delete(&self, origin: Origin, request: &DeleteRequest) -> Result<bool> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.delete(&caller, &request.src, request.recursive).await
    }

    pub async fn set_replication(
        &self,
        origin: Origin,
        request: &SetReplicationRequest,
    ) -> Result<bool> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.set_replication(&caller, &request.src, request.replication)
            .await
    }

    pub async fn set_permission(
        &self,
        origin: Origin,
        request: &SetPermissionRequest,
    ) -> Result<()> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.set_permission(&caller, &request.src, request.permission)
            .await
    }

    pub async fn set_owner(&self, origin: Origin, request: &SetOwnerRequest) -> Result<()> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.set_owner(
            &caller,
            &request.src,
            request.owner.as_deref(),
            request.group.as_deref(),
        )
        .await
    }

    pub async fn set_times(&self, origin: Origin, request: &SetTimesRequest) -> Result<()> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.set_times(&caller, &request.src, request.mtime, request.atime)
            .await
    }

    pub fn get_acl_status(&self, origin: Origin, src: &str) -> Result<AclStatus> {
        let (caller, ns) = self.enter(origin, Category::Read)?;
        ns.get_acl_status(&caller, src)
    }

    pub async fn change_acl(&self, origin: Origin, request: &ChangeAclRequest) -> Result<()> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.change_acl(&caller, &request.src, request.change.clone())
            .await
    }

    pub fn renew_lease(&self, origin: Origin, client_name: &str) -> Result<()> {
        let (_, ns) = self.enter(origin, Category::Write)?;
        ns.renew_lease(client_name)
    }

    pub async fn recover_lease(
        &self,
        origin: Origin,
        request: &RecoverLeaseRequest,
    ) -> Result<bool> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.recover_lease(&caller, &request.src, &request.client_name)
            .await
    }

    pub async fn append(&self, origin: Origin, request: &AppendRequest) -> Result<AppendResult> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        let mut result = ns
            .append(&caller, &request.src, &request.client_name)
            .await?;
        if let Some(block) = result.block.as_mut() {
            self.block_tokens
                .stamp(block, &caller.user, &[AccessMode::Write]);
        }
        Ok(result)
    }

    pub async fn truncate(&self, origin: Origin, request: &TruncateRequest) -> Result<bool> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.truncate(
            &caller,
            &request.src,
            request.new_length,
            &request.client_name,
        )
        .await
    }

    pub async fn fsync(&self, origin: Origin, request: &FsyncRequest) -> Result<()> {
        let (_, ns) = self.enter(origin, Category::Write)?;
        ns.fsync(
            &request.src,
            &request.client_name,
            request.last_block_length,
            request.file_id,
        )
        .await
    }

    pub async fn update_block_for_pipeline(
        &self,
        origin: Origin,
        request: &UpdateBlockForPipelineRequest,
    ) -> Result<LocatedBlock> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        let mut located = ns
            .update_block_for_pipeline(&request.block, &request.client_name)
            .await?;
        self.block_tokens
            .stamp(&mut located, &caller.user, &[AccessMode::Write]);
        Ok(located)
    }

    pub async fn update_pipeline(
        &self,
        origin: Origin,
        request: &UpdatePipelineRequest,
    ) -> Result<()> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.update_pipeline(
            &caller,
            &request.client_name,
            &request.old_block,
            &request.new_block,
            &request.new_nodes,
            &request.storage_ids,
        )
        .await
    }

    pub fn get_additional_datanode(
        &self,
        origin: Origin,
        request: &AdditionalDatanodeRequest,
    ) -> Result<LocatedBlock> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        let mut located = ns.get_additional_datanode(
            &request.src,
            &request.block,
            &request.existings,
            &request.excludes,
            request.num_additional_nodes,
            &request.client_name,
            request.file_id,
        )?;
        // The writer asks a datanode it has to copy the replica to the new
        // one (HDFS gives COPY here).
        self.block_tokens
            .stamp(&mut located, &caller.user, &[AccessMode::Copy]);
        Ok(located)
    }

    pub fn report_bad_blocks(&self, origin: Origin, blocks: &[LocatedBlock]) -> Result<()> {
        let (caller, ns) = self.enter(origin, Category::Write)?;
        ns.report_bad_blocks(blocks, &caller.machine)
    }

    /// `dfsadmin -report`: the superuser's, answered by any namenode.
    pub fn get_datanode_report(
        &self,
        origin: Origin,
        kind: DatanodeReportType,
    ) -> Result<Vec<DatanodeInfo>> {
        self.caller(origin)?.require_superuser()?;
        Ok(self.handle.get().datanode_report(kind))
    }

    pub fn get_fs_stats(&self, origin: Origin) -> Result<FsStats> {
        let (_, ns) = self.enter(origin, Category::Read)?;
        Ok(ns.fs_stats())
    }

    pub fn fsck(&self, origin: Origin, path: &str) -> Result<FsckReport> {
        let (caller, ns) = self.enter(origin, Category::Read)?;
        ns.fsck(&caller, path)
    }

    /// Reporting safe mode is anyone's; entering or leaving it the
    /// superuser's.
    pub fn set_safe_mode(&self, origin: Origin, action: SafeModeAction) -> Result<SafeModeState> {
        let caller = self.caller(origin)?;
        if action != SafeModeAction::Get {
            caller.require_superuser()?;
        }
        let ns = self.handle.get();
        let on = ns.safe_mode(action);
        Ok(SafeModeState {
            on,
            tip: ns.safe_mode_tip().unwrap_or_default(),
        })
    }

    /// `dfsadmin -saveNamespace`; the first txid the image does not cover.
    pub async fn save_namespace(&self, origin: Origin) -> Result<u64> {
        self.caller(origin)?.require_superuser()?;
        let Some(checkpointer) = &self.checkpointer else {
            return Err(NamenodeError::IllegalArgument(
                "saveNamespace is not available in an HA nameservice: the standby checkpoints (ha.standby_checkpoint_txns, namenode.checkpoint_period_ms) and ships each image to the active".into(),
            ));
        };
        checkpointer
            .save()
            .await
            .map_err(|e| NamenodeError::Io(e.to_string()))
    }

    /// `dfsadmin -rollEdits`; the first txid of the new segment.
    pub async fn roll_edits(&self, origin: Origin) -> Result<u64> {
        match &self.checkpointer {
            Some(checkpointer) => {
                self.caller(origin)?.require_superuser()?;
                checkpointer
                    .roll_edits()
                    .await
                    .map_err(|e| NamenodeError::Io(e.to_string()))
            }
            None => {
                let (_, ns) = self.enter_as_superuser(origin, Category::Write)?;
                ns.roll_edits().await
            }
        }
    }

    pub fn refresh_nodes(&self, origin: Origin) -> Result<String> {
        self.caller(origin)?.require_superuser()?;
        self.handle.get().refresh_nodes()
    }

    pub fn get_blocks(
        &self,
        origin: Origin,
        request: &GetBlocksRequest,
    ) -> Result<Vec<LocatedBlock>> {
        let (_, ns) = self.enter_as_superuser(origin, Category::Read)?;
        ns.get_blocks(&request.datanode_uuid, request.size, request.min_block_size)
    }

    pub fn schedule_replica_move(
        &self,
        origin: Origin,
        request: &ReplicaMoveRequest,
    ) -> Result<()> {
        let (_, ns) = self.enter_as_superuser(origin, Category::Write)?;
        ns.schedule_replica_move(&request.block, &request.source_uuid, &request.target_uuid)
    }

    /// `rdfs groups USER`: the groups the namenode resolves for a user.
    pub fn get_groups(&self, origin: Origin, user: &str) -> Result<GroupList> {
        self.caller(origin)?;
        Ok(self.identities.groups_of(user))
    }

    /// `dfsadmin -refreshUserToGroupsMappings`.
    pub fn refresh_user_to_groups(&self, origin: Origin) -> Result<()> {
        self.caller(origin)?.require_superuser()?;
        self.identities.refresh_groups();
        Ok(())
    }

    /// `dfsadmin -refreshSuperUserGroupsConfiguration`: the proxy-user
    /// rules from `config` (the daemon reads its file again).
    pub fn refresh_proxy_users(
        &self,
        origin: Origin,
        config: &rdfs_common::config::Config,
    ) -> Result<()> {
        self.caller(origin)?.require_superuser()?;
        let rules = crate::identity::ProxyUsers::from_config(&config.security.proxy_users)
            .map_err(NamenodeError::IllegalArgument)?;
        self.identities.set_proxy_users(rules);
        tracing::info!(
            users = config.security.proxy_users.len(),
            "proxy-user rules refreshed"
        );
        Ok(())
    }
}
