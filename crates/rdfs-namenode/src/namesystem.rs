//! The namenode's operations as a plain Rust API: what a client or datanode
//! may ask, with HDFS's semantics and error texts. Transports (gRPC now,
//! Hadoop IPC later) are thin adapters over this.
//!
//! Locking: one reader-writer lock over the namespace, block map and
//! datanode table, never held across I/O. A change is validated and applied
//! under the write lock and its edit appended to the journal there (so txids
//! follow the order of changes); the lock is released before waiting for the
//! edit to be durable, which lets concurrent changes share one sync.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use rdfs_common::path;
use rdfs_common::protocol::{
    ContentSummary, DatanodeId, DatanodeInfo, ExtendedBlock, FileStatus, FileType, FsStats,
    LocatedBlock, LocatedBlocks, ServerDefaults,
};
use rdfs_common::time::now_ms;
use rdfs_proto::editlog::{self as edit, BlockRef, PermissionStatus};

use crate::apply::FsState;
use crate::block_manager::{BlockManager, BlockState, ReportOutcome};
use crate::datanode_manager::{
    DatanodeIndex, DatanodeManager, Liveness, PendingDeletion, StorageState,
};
use crate::edit_log::{EditRecord, Journal, Op, TxId};
use crate::error::{NamenodeError, Result};
use crate::fsck::{self, FsckReport};
use crate::namespace::{Inode, InodeId, InodeKind, Namespace, Resolved};
use crate::placement;
use crate::storage::NamespaceInfo;

/// Settings the namesystem enforces.
#[derive(Debug, Clone)]
pub struct NamesystemConfig {
    pub default_replication: u32,
    pub min_replication: u32,
    pub max_replication: u32,
    pub default_block_size: u64,
    pub bytes_per_checksum: u32,
    pub write_packet_size: u32,
    pub listing_limit: usize,
    pub invalidate_limit: usize,
    pub liveness: Liveness,
}

impl NamesystemConfig {
    pub fn from_config(config: &rdfs_common::config::Config) -> Self {
        let nn = &config.namenode;
        Self {
            default_replication: config.dfs.replication,
            min_replication: nn.min_replication,
            max_replication: nn.max_replication,
            default_block_size: config.dfs.block_size.0,
            bytes_per_checksum: config.dfs.bytes_per_checksum,
            write_packet_size: u32::try_from(config.client.write_packet_size.0)
                .unwrap_or(64 * 1024),
            listing_limit: nn.listing_limit.max(1) as usize,
            invalidate_limit: nn.invalidate_limit_per_heartbeat.max(1) as usize,
            liveness: Liveness {
                stale_after: std::time::Duration::from_millis(nn.stale_interval_ms),
                dead_after: std::time::Duration::from_millis(nn.dead_interval_ms),
            },
        }
    }
}

/// Who is asking: the user name the client sent and its address.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub machine: String,
}

/// One page of a directory listing.
#[derive(Debug, Clone)]
pub struct DirectoryListing {
    pub entries: Vec<FileStatus>,
    pub remaining: u32,
}

/// Which datanodes a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatanodeReportType {
    All,
    Live,
    Dead,
    Decommissioning,
}

/// A datanode's registration request.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: DatanodeId,
    pub cluster_id: String,
    pub block_pool_id: String,
    pub storage_ids: Vec<String>,
}

/// What a datanode must do, returned on heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatanodeCommand {
    /// Delete these replicas.
    Invalidate(Vec<ExtendedBlock>),
    /// Register again and send a full block report.
    Reregister,
}

/// A replica as a datanode reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedReplica {
    pub block_id: i64,
    pub generation_stamp: u64,
    pub num_bytes: u64,
    pub finalized: bool,
}

/// A change to one replica, from an incremental block report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaEvent {
    Receiving,
    Received,
    Deleted,
}

pub struct Namesystem {
    state: RwLock<FsState>,
    journal: Arc<dyn Journal>,
    info: NamespaceInfo,
    config: NamesystemConfig,
    /// Cancelled when the edit log fails: the namenode must stop, since its
    /// memory may hold changes that are not durable.
    fatal: CancellationToken,
}

/// Replays `records` onto a fresh namespace.
pub fn replay(
    info: &NamespaceInfo,
    config: &NamesystemConfig,
    records: &[EditRecord],
) -> Result<FsState> {
    let mut state = FsState {
        namespace: Namespace::new("", "", 0o755, 0),
        blocks: BlockManager::new(
            info.block_pool_id.clone(),
            config.min_replication.min(u16::MAX.into()) as u16,
        ),
        datanodes: DatanodeManager::new(config.liveness),
    };
    for record in records {
        let Some(op) = &record.op else {
            return Err(NamenodeError::Io(format!(
                "edit log record {} holds no operation this rdfs knows",
                record.txid
            )));
        };
        state.apply(op).map_err(|err| {
            NamenodeError::Io(format!(
                "edit log record {} cannot be replayed: {err}",
                record.txid
            ))
        })?;
    }
    Ok(state)
}

/// The status of an inode as clients see it (HDFS's `HdfsFileStatus`).
pub(crate) fn file_status(state: &FsState, inode: &Inode, name: Vec<u8>) -> FileStatus {
    let ns = &state.namespace;
    let (file_type, length, replication, block_size, children) = match &inode.kind {
        InodeKind::Directory(dir) => (FileType::Directory, 0, 0, 0, dir.children.len() as i32),
        InodeKind::File(file) => {
            let length = file
                .blocks
                .iter()
                .filter_map(|b| state.blocks.get(*b))
                .map(|b| b.num_bytes)
                .sum();
            (
                FileType::File,
                length,
                u32::from(file.replication),
                file.block_size,
                0,
            )
        }
    };
    FileStatus {
        file_type,
        name,
        length,
        permission: inode.permission.mode,
        owner: ns.interner.name(inode.permission.owner).to_string(),
        group: ns.interner.name(inode.permission.group).to_string(),
        modification_time: inode.mtime,
        access_time: inode.atime,
        replication,
        block_size,
        file_id: inode.id,
        children_num: children,
        locations: None,
    }
}

fn through_file_create(
    resolved: std::result::Result<Resolved, crate::namespace::ThroughFile>,
) -> Result<Resolved> {
    resolved
        .map_err(|t| NamenodeError::ParentNotDirectory(format!("{} (is not a directory)", t.path)))
}

fn through_file_access(
    resolved: std::result::Result<Resolved, crate::namespace::ThroughFile>,
) -> Result<Resolved> {
    resolved.map_err(|t| NamenodeError::AccessControl(format!("{} (is not a directory)", t.path)))
}

impl Namesystem {
    pub fn new(
        info: NamespaceInfo,
        config: NamesystemConfig,
        state: FsState,
        journal: Arc<dyn Journal>,
        fatal: CancellationToken,
    ) -> Self {
        Self {
            state: RwLock::new(state),
            journal,
            info,
            config,
            fatal,
        }
    }

    pub fn namespace_info(&self) -> &NamespaceInfo {
        &self.info
    }

    pub fn last_txid(&self) -> TxId {
        self.journal.last_txid()
    }

    /// Applies `op` and appends it to the journal; the caller holds the lock.
    fn log(&self, state: &mut FsState, op: Op) -> Result<TxId> {
        state
            .apply(&op)
            .map_err(|err| NamenodeError::Io(format!("internal error: {err}")))?;
        match self.journal.append(op) {
            Ok(txid) => Ok(txid),
            Err(err) => {
                self.fail(&err.to_string());
                Err(err.into())
            }
        }
    }

    /// Waits until the edit `txid` is durable.
    async fn sync(&self, txid: Option<TxId>) -> Result<()> {
        let Some(txid) = txid else { return Ok(()) };
        if let Err(err) = self.journal.sync(txid).await {
            self.fail(&err.to_string());
            return Err(err.into());
        }
        Ok(())
    }

    fn fail(&self, why: &str) {
        if !self.fatal.is_cancelled() {
            tracing::error!(
                error = why,
                "edit log failed; the namenode stops rather than acknowledge non-durable changes"
            );
            self.fatal.cancel();
        }
    }

    // ---------------------------------------------------------------------
    // Reads

    pub fn get_file_info(&self, src: &str) -> Result<Option<FileStatus>> {
        let components = path::components(src)?;
        let state = self.state.read();
        let Ok(resolved) = state.namespace.resolve(&components) else {
            return Ok(None);
        };
        Ok(resolved
            .last()
            .and_then(|id| state.namespace.get(id))
            .map(|inode| file_status(&state, inode, Vec::new())))
    }

    /// A page of the listing of `src` after `start_after`; `None` when `src`
    /// does not exist. A file lists as itself, with an empty name.
    pub fn get_listing(
        &self,
        src: &str,
        start_after: &[u8],
        need_location: bool,
    ) -> Result<Option<DirectoryListing>> {
        let components = path::components(src)?;
        let state = self.state.read();
        let Ok(resolved) = state.namespace.resolve(&components) else {
            return Ok(None);
        };
        let Some(inode) = resolved.last().and_then(|id| state.namespace.get(id)) else {
            return Ok(None);
        };
        let located = |inode: &Inode, status: &mut FileStatus| {
            if need_location && let InodeKind::File(_) = inode.kind {
                status.locations = Some(self.located_blocks(&state, inode, 0, u64::MAX));
            }
        };
        let Some(dir) = inode.as_dir() else {
            let mut status = file_status(&state, inode, Vec::new());
            located(inode, &mut status);
            return Ok(Some(DirectoryListing {
                entries: vec![status],
                remaining: 0,
            }));
        };
        let start = if start_after.is_empty() {
            0
        } else {
            dir.children.partition_point(|child| {
                state.namespace.get(*child).is_some_and(|c| {
                    crate::namespace::compare_names(&c.name, start_after)
                        != std::cmp::Ordering::Greater
                })
            })
        };
        let end = (start + self.config.listing_limit).min(dir.children.len());
        let mut entries = Vec::with_capacity(end - start);
        for child in &dir.children[start..end] {
            if let Some(child) = state.namespace.get(*child) {
                let mut status = file_status(&state, child, child.name.to_vec());
                located(child, &mut status);
                entries.push(status);
            }
        }
        Ok(Some(DirectoryListing {
            entries,
            remaining: (dir.children.len() - end) as u32,
        }))
    }

    fn located_blocks(
        &self,
        state: &FsState,
        inode: &Inode,
        offset: u64,
        length: u64,
    ) -> LocatedBlocks {
        let Some(file) = inode.as_file() else {
            return LocatedBlocks::default();
        };
        let end = offset.saturating_add(length);
        let mut located = LocatedBlocks {
            under_construction: file.writer.is_some(),
            ..Default::default()
        };
        let mut position = 0u64;
        let mut complete_length = 0u64;
        for (idx, block_id) in file.blocks.iter().enumerate() {
            let Some(info) = state.blocks.get(*block_id) else {
                continue;
            };
            let is_last = idx + 1 == file.blocks.len();
            let block_len = info.num_bytes;
            if info.state != BlockState::UnderConstruction {
                complete_length += block_len;
            }
            let overlaps = position < end
                && (position + block_len > offset || (block_len == 0 && position >= offset));
            if overlaps
                && let Some(block) = state.blocks.located(*block_id, position, &state.datanodes)
            {
                located.blocks.push(block);
            }
            if is_last {
                located.is_last_block_complete = info.state == BlockState::Complete;
                located.last_block = state.blocks.located(*block_id, position, &state.datanodes);
            }
            position += block_len;
        }
        located.file_length = complete_length;
        located
    }

    pub fn get_block_locations(
        &self,
        src: &str,
        offset: u64,
        length: u64,
    ) -> Result<LocatedBlocks> {
        let components = path::components(src)?;
        let state = self.state.read();
        let resolved = through_file_access(state.namespace.resolve(&components))?;
        let inode = resolved
            .last()
            .and_then(|id| state.namespace.get(id))
            .ok_or_else(|| NamenodeError::FileNotFound(format!("File does not exist: {src}")))?;
        if inode.is_dir() {
            return Err(NamenodeError::FileNotFound(format!(
                "Path is not a file: {src}"
            )));
        }
        Ok(self.located_blocks(&state, inode, offset, length))
    }

    pub fn get_content_summary(&self, src: &str) -> Result<ContentSummary> {
        let components = path::components(src)?;
        let state = self.state.read();
        let resolved = through_file_access(state.namespace.resolve(&components))?;
        let id = resolved
            .last()
            .ok_or_else(|| NamenodeError::FileNotFound(format!("File does not exist: {src}")))?;
        let mut summary = ContentSummary {
            quota: -1,
            space_quota: -1,
            ..Default::default()
        };
        state.namespace.walk(id, &mut |inode| match &inode.kind {
            InodeKind::Directory(_) => summary.directory_count += 1,
            InodeKind::File(file) => {
                summary.file_count += 1;
                let length: u64 = file
                    .blocks
                    .iter()
                    .filter_map(|b| state.blocks.get(*b))
                    .map(|b| b.num_bytes)
                    .sum();
                summary.length += length;
                summary.space_consumed += length * u64::from(file.replication);
            }
        });
        Ok(summary)
    }

    pub fn server_defaults(&self) -> ServerDefaults {
        ServerDefaults {
            block_size: self.config.default_block_size,
            bytes_per_checksum: self.config.bytes_per_checksum,
            write_packet_size: self.config.write_packet_size,
            replication: self.config.default_replication,
            trash_interval_minutes: 0,
        }
    }

    // ---------------------------------------------------------------------
    // Namespace changes

    pub async fn mkdirs(
        &self,
        caller: &Caller,
        src: &str,
        mode: u16,
        create_parent: bool,
    ) -> Result<bool> {
        let components = path::components(src)?;
        let txid = {
            let mut state = self.state.write();
            let resolved = through_file_create(state.namespace.resolve(&components))?;
            if let Some(existing) = resolved.last().and_then(|id| state.namespace.get(id)) {
                if !existing.is_dir() {
                    return Err(NamenodeError::FileAlreadyExists(format!(
                        "Path is not a directory: {src}"
                    )));
                }
                // Another call may have created it and still be syncing.
                Some(self.journal.last_txid())
            } else {
                let missing_from = resolved.inodes.len();
                if !create_parent && missing_from < components.len() {
                    return Err(NamenodeError::FileNotFound(format!(
                        "Parent directory doesn't exist: {}",
                        path::parent(&path::join_components(&components))
                    )));
                }
                self.create_directories(
                    &mut state,
                    caller,
                    &components,
                    &resolved,
                    mode,
                    components.len(),
                )?
            }
        };
        self.sync(txid).await?;
        Ok(true)
    }

    /// Creates the missing directories of `components[..upto]`; ancestors
    /// created on the way get `mode` plus owner write and execute, as in HDFS.
    fn create_directories(
        &self,
        state: &mut FsState,
        caller: &Caller,
        components: &[&str],
        resolved: &Resolved,
        mode: u16,
        upto: usize,
    ) -> Result<Option<TxId>> {
        let mut parent = resolved.deepest();
        let mut txid = None;
        let now = now_ms();
        for (depth, component) in components
            .iter()
            .enumerate()
            .take(upto)
            .skip(resolved.inodes.len() - 1)
        {
            let group = self.inherited_group(state, parent);
            let id = state.namespace.next_inode_id();
            let dir_mode = if depth + 1 == components.len() {
                mode
            } else {
                mode | 0o300
            };
            txid = Some(self.log(
                state,
                Op::Mkdir(edit::Mkdir {
                    inode_id: id,
                    parent_id: parent,
                    name: component.as_bytes().to_vec(),
                    permission: Some(PermissionStatus {
                        owner: caller.user.clone(),
                        group,
                        mode: dir_mode.into(),
                    }),
                    mtime: now,
                }),
            )?);
            parent = id;
        }
        Ok(txid)
    }

    /// New inodes take their parent directory's group, as in HDFS.
    fn inherited_group(&self, state: &FsState, parent: InodeId) -> String {
        state
            .namespace
            .get(parent)
            .map(|p| {
                state
                    .namespace
                    .interner
                    .name(p.permission.group)
                    .to_string()
            })
            .unwrap_or_default()
    }

    fn check_replication(&self, replication: u32, src: &str, client: Option<&str>) -> Result<()> {
        let suffix = client
            .map(|c| format!(", clientName={c}"))
            .unwrap_or_default();
        if replication > self.config.max_replication {
            return Err(NamenodeError::IllegalArgument(format!(
                "Requested replication factor of {replication} exceeds maximum of {} for {src}{suffix}",
                self.config.max_replication
            )));
        }
        if replication < self.config.min_replication {
            return Err(NamenodeError::IllegalArgument(format!(
                "Requested replication factor of {replication} is less than the required minimum of {} for {src}{suffix}",
                self.config.min_replication
            )));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        &self,
        caller: &Caller,
        src: &str,
        mode: u16,
        client: &str,
        overwrite: bool,
        create_parent: bool,
        replication: u32,
        block_size: u64,
    ) -> Result<FileStatus> {
        let components = path::components(src)?;
        if components.is_empty() {
            return Err(NamenodeError::FileAlreadyExists(format!(
                "{src} already exists as a directory"
            )));
        }
        self.check_replication(replication, src, Some(client))?;
        let bpc = u64::from(self.config.bytes_per_checksum);
        if block_size == 0 || !block_size.is_multiple_of(bpc) {
            return Err(NamenodeError::IllegalArgument(format!(
                "Invalid values: dfs.bytes-per-checksum (={bpc}) must divide block size (={block_size})."
            )));
        }
        let (txid, status) = {
            let mut state = self.state.write();
            let resolved = through_file_create(state.namespace.resolve(&components))?;
            // Every edit below is covered by the sync of the last one, AddFile.
            if let Some(existing) = resolved.last().and_then(|id| state.namespace.get(id)) {
                let Some(file) = existing.as_file() else {
                    return Err(NamenodeError::FileAlreadyExists(format!(
                        "{src} already exists as a directory"
                    )));
                };
                if let Some(writer) = &file.writer {
                    return Err(NamenodeError::AlreadyBeingCreated(format!(
                        "Failed to CREATE_FILE {src} for {client} on {} because this file lease is currently owned by {writer}",
                        caller.machine
                    )));
                }
                if !overwrite {
                    return Err(NamenodeError::FileAlreadyExists(format!(
                        "{src} for client {} already exists",
                        caller.machine
                    )));
                }
                let id = existing.id;
                self.log(
                    &mut state,
                    Op::Delete(edit::Delete {
                        inode_id: id,
                        mtime: now_ms(),
                    }),
                )?;
            }
            let resolved = state
                .namespace
                .resolve(&components)
                .map_err(|t| NamenodeError::Io(t.path))?;
            let parent_missing = resolved.inodes.len() < components.len();
            if parent_missing && !create_parent {
                return Err(NamenodeError::FileNotFound(format!(
                    "Parent directory doesn't exist: {}",
                    path::parent(&path::join_components(&components))
                )));
            }
            if parent_missing {
                self.create_directories(
                    &mut state,
                    caller,
                    &components,
                    &resolved,
                    0o777 & !0o022,
                    components.len() - 1,
                )?;
            }
            let resolved = state
                .namespace
                .resolve(&components)
                .map_err(|t| NamenodeError::Io(t.path))?;
            let parent = resolved.deepest();
            let id = state.namespace.next_inode_id();
            let group = self.inherited_group(&state, parent);
            let name = components[components.len() - 1];
            let txid = Some(self.log(
                &mut state,
                Op::AddFile(edit::AddFile {
                    inode_id: id,
                    parent_id: parent,
                    name: name.as_bytes().to_vec(),
                    permission: Some(PermissionStatus {
                        owner: caller.user.clone(),
                        group,
                        mode: mode.into(),
                    }),
                    mtime: now_ms(),
                    replication,
                    block_size,
                    client_name: client.to_string(),
                }),
            )?);
            let inode = state
                .namespace
                .get(id)
                .ok_or_else(|| NamenodeError::Io("created file vanished".into()))?;
            (txid, file_status(&state, inode, Vec::new()))
        };
        self.sync(txid).await?;
        Ok(status)
    }

    /// The file under construction that `client` writes, by id when given
    /// (an open file may have been renamed), else by path.
    fn writable_file(
        &self,
        state: &FsState,
        src: &str,
        file_id: u64,
        client: &str,
    ) -> Result<InodeId> {
        let not_open = || {
            NamenodeError::FileNotFound(format!(
                "File does not exist: {src} (inode {file_id}) Holder {client} does not have any open files."
            ))
        };
        let id = if file_id != 0 {
            file_id
        } else {
            let components = path::components(src)?;
            through_file_access(state.namespace.resolve(&components))?
                .last()
                .ok_or_else(not_open)?
        };
        let inode = state.namespace.get(id).ok_or_else(not_open)?;
        let file = inode.as_file().ok_or_else(|| {
            NamenodeError::LeaseExpired(format!("INode is not a regular file: {src} (inode {id})"))
        })?;
        match &file.writer {
            None => Err(NamenodeError::LeaseExpired(format!(
                "File is not open for writing: {src} (inode {id}) Holder {client} does not have any open files."
            ))),
            Some(writer) if &**writer != client => Err(NamenodeError::LeaseExpired(format!(
                "Client (={client}) is not the lease owner (={writer}: {src} (inode {id})"
            ))),
            Some(_) => Ok(id),
        }
    }

    pub async fn add_block(
        &self,
        src: &str,
        client: &str,
        previous: Option<&ExtendedBlock>,
        exclude: &[String],
        file_id: u64,
    ) -> Result<LocatedBlock> {
        let (txid, located) = 'allocate: {
            let mut state = self.state.write();
            let id = self.writable_file(&state, src, file_id, client)?;
            let (blocks, replication, block_size) =
                match state.namespace.get(id).and_then(Inode::as_file) {
                    Some(file) => (file.blocks.clone(), file.replication, file.block_size),
                    None => return Err(NamenodeError::Io("file vanished".into())),
                };
            let last = blocks.last().copied();
            match (previous, last) {
                (None, None) => {}
                (Some(prev), Some(_)) if prev.num_bytes > block_size => {
                    return Err(NamenodeError::IllegalArgument(format!(
                        "block {prev} of {src} claims {} bytes, more than the file's block size {block_size}",
                        prev.num_bytes
                    )));
                }
                (Some(prev), Some(last)) if prev.block_id == last => {
                    let stored_gs = state.blocks.get(last).map_or(0, |b| b.generation_stamp);
                    if prev.generation_stamp != stored_gs {
                        return Err(NamenodeError::Io(format!(
                            "Commit block with mismatching GS. NN has {}, client submits {}",
                            state.blocks.name(last),
                            prev.name()
                        )));
                    }
                }
                (prev, Some(last)) => {
                    // A retry of an addBlock whose answer was lost: hand back
                    // the same, still empty, block.
                    let penultimate = blocks.len().checked_sub(2).map(|i| blocks[i]);
                    let last_info = state.blocks.get(last);
                    if prev.map(|p| p.block_id) == penultimate
                        && last_info.is_some_and(|b| {
                            b.state == BlockState::UnderConstruction && b.num_bytes == 0
                        })
                    {
                        let offset = self.offset_of(&state, &blocks, blocks.len() - 1);
                        let located = state
                            .blocks
                            .located(last, offset, &state.datanodes)
                            .ok_or_else(|| NamenodeError::Io("block vanished".into()))?;
                        // The original call may still be syncing its edit.
                        break 'allocate (self.journal.last_txid(), located);
                    }
                    return Err(NamenodeError::Io(format!(
                        "Cannot allocate block in {src}: passed 'previous' block {} does not match actual last block in file {}",
                        prev.map_or("null".to_string(), |p| p.to_string()),
                        state
                            .blocks
                            .extended(last)
                            .map_or_else(String::new, |b| b.to_string())
                    )));
                }
                (Some(prev), None) => {
                    return Err(NamenodeError::Io(format!(
                        "Cannot allocate block in {src}: passed 'previous' block {prev} does not match actual last block in file null"
                    )));
                }
            }
            if blocks.len() >= 2 {
                let before_previous = blocks[blocks.len() - 2];
                if state
                    .blocks
                    .get(before_previous)
                    .is_some_and(|b| b.state != BlockState::Complete)
                {
                    return Err(NamenodeError::NotReplicatedYet(format!(
                        "Not replicated yet: {src}"
                    )));
                }
            }
            let excluded: HashSet<DatanodeIndex> = exclude
                .iter()
                .filter_map(|uuid| state.datanodes.index_of(uuid))
                .collect();
            let targets = placement::choose_targets(
                &state.datanodes,
                usize::from(replication),
                &excluded,
                block_size,
                Instant::now(),
            );
            if targets.len() < self.config.min_replication as usize {
                let excluded_text = if excluded.is_empty() {
                    "no".to_string()
                } else {
                    excluded.len().to_string()
                };
                return Err(NamenodeError::NotEnoughReplicas(format!(
                    "File {src} could only be written to {} of the {} minReplication nodes. There are {} datanode(s) running and {excluded_text} node(s) are excluded in this operation.",
                    targets.len(),
                    self.config.min_replication,
                    state.datanodes.live_count()
                )));
            }
            if targets.len() < usize::from(replication) {
                tracing::info!(
                    src,
                    wanted = replication,
                    got = targets.len(),
                    "fewer live datanodes than the file's replication; the block starts under-replicated"
                );
            }
            let (block_id, generation_stamp) = state.blocks.next_block();
            let previous_ref = previous.map(|p| BlockRef {
                block_id: p.block_id,
                generation_stamp: p.generation_stamp,
                num_bytes: p.num_bytes,
            });
            let txid = self.log(
                &mut state,
                Op::AddBlock(edit::AddBlock {
                    inode_id: id,
                    previous: previous_ref,
                    block: Some(BlockRef {
                        block_id,
                        generation_stamp,
                        num_bytes: 0,
                    }),
                }),
            )?;
            state.blocks.set_expected_locations(block_id, targets);
            let offset = self.offset_of(&state, &blocks, blocks.len());
            let located = state
                .blocks
                .located(block_id, offset, &state.datanodes)
                .ok_or_else(|| NamenodeError::Io("new block vanished".into()))?;
            (txid, located)
        };
        self.sync(Some(txid)).await?;
        Ok(located)
    }

    fn offset_of(&self, state: &FsState, blocks: &[i64], index: usize) -> u64 {
        blocks[..index]
            .iter()
            .filter_map(|b| state.blocks.get(*b))
            .map(|b| b.num_bytes)
            .sum()
    }

    pub async fn abandon_block(
        &self,
        block: &ExtendedBlock,
        src: &str,
        client: &str,
        file_id: u64,
    ) -> Result<()> {
        let txid = {
            let mut state = self.state.write();
            let id = self.writable_file(&state, src, file_id, client)?;
            let is_last = state
                .namespace
                .get(id)
                .and_then(Inode::as_file)
                .is_some_and(|f| f.blocks.last() == Some(&block.block_id));
            if !is_last {
                return Ok(());
            }
            tracing::info!(block = %block, src, "block abandoned by its writer");
            Some(self.log(
                &mut state,
                Op::AbandonBlock(edit::AbandonBlock {
                    inode_id: id,
                    block_id: block.block_id,
                }),
            )?)
        };
        self.sync(txid).await
    }

    /// Closes the file once every block has its minimum replicas reported;
    /// `false` until then (the client retries).
    pub async fn complete(
        &self,
        src: &str,
        client: &str,
        last: Option<&ExtendedBlock>,
        file_id: u64,
    ) -> Result<bool> {
        let txid = 'close: {
            let mut state = self.state.write();
            let id = match self.writable_file(&state, src, file_id, client) {
                Ok(id) => id,
                Err(NamenodeError::LeaseExpired(msg)) => {
                    // A retry of a complete whose answer was lost.
                    let closed_with_same_last = state
                        .namespace
                        .get(file_id)
                        .and_then(Inode::as_file)
                        .is_some_and(|f| {
                            f.writer.is_none()
                                && f.blocks.last().copied() == last.map(|b| b.block_id)
                        });
                    if file_id != 0 && closed_with_same_last {
                        // The original call may still be syncing its edit.
                        break 'close Some(self.journal.last_txid());
                    }
                    return Err(NamenodeError::LeaseExpired(msg));
                }
                Err(err) => return Err(err),
            };
            let blocks = state
                .namespace
                .get(id)
                .and_then(Inode::as_file)
                .map(|f| f.blocks.clone())
                .unwrap_or_default();
            match (last, blocks.last()) {
                (Some(last), Some(&stored)) if last.block_id == stored => {
                    let stored_gs = state.blocks.get(stored).map_or(0, |b| b.generation_stamp);
                    let block_size = state
                        .namespace
                        .get(id)
                        .and_then(Inode::as_file)
                        .map_or(0, |f| f.block_size);
                    if last.generation_stamp != stored_gs {
                        return Err(NamenodeError::Io(format!(
                            "Commit block with mismatching GS. NN has {}, client submits {}",
                            state.blocks.name(stored),
                            last.name()
                        )));
                    }
                    if last.num_bytes > block_size {
                        return Err(NamenodeError::IllegalArgument(format!(
                            "block {last} of {src} claims {} bytes, more than the file's block size {block_size}",
                            last.num_bytes
                        )));
                    }
                    let FsState {
                        blocks: bm,
                        datanodes,
                        ..
                    } = &mut *state;
                    bm.commit(stored, last.num_bytes, datanodes);
                }
                (None, None) => {}
                (last, stored) => {
                    return Err(NamenodeError::Io(format!(
                        "Cannot complete {src}: last block {} is not the file's last block {}",
                        last.map_or("null".to_string(), |b| b.to_string()),
                        stored.map_or("null".to_string(), |b| state.blocks.name(*b).to_string())
                    )));
                }
            }
            if let Some(waiting) = blocks.iter().find(|b| {
                state
                    .blocks
                    .get(**b)
                    .is_some_and(|i| i.state != BlockState::Complete)
            }) {
                let counts = state.blocks.counts(*waiting, &state.datanodes);
                tracing::debug!(src, block = %state.blocks.name(*waiting), live = counts.live,
                    min = self.config.min_replication, "file cannot close yet: block lacks its minimum replicas");
                return Ok(false);
            }
            let now = now_ms();
            let last_ref = blocks
                .last()
                .and_then(|b| state.blocks.get(*b).map(|info| (b, info)))
                .map(|(b, info)| BlockRef {
                    block_id: *b,
                    generation_stamp: info.generation_stamp,
                    num_bytes: info.num_bytes,
                });
            Some(self.log(
                &mut state,
                Op::CloseFile(edit::CloseFile {
                    inode_id: id,
                    last: last_ref,
                    mtime: now,
                    atime: now,
                }),
            )?)
        };
        self.sync(txid).await?;
        Ok(true)
    }

    /// HDFS's original rename: `false` rather than an error for most failures;
    /// a destination that is a directory receives the source inside it.
    pub async fn rename(&self, src: &str, dst: &str) -> Result<bool> {
        let src_components = path::components(src)?;
        let dst_components = path::components(dst)?;
        let txid = {
            let mut state = self.state.write();
            let src_resolved = through_file_access(state.namespace.resolve(&src_components))?;
            let dst_resolved = through_file_create(state.namespace.resolve(&dst_components))?;
            let Some(src_id) = src_resolved.last() else {
                tracing::warn!(src, dst, "rename failed: source does not exist");
                return Ok(false);
            };
            if src_components.is_empty() {
                tracing::warn!(src, dst, "rename failed: the root cannot be renamed");
                return Ok(false);
            }
            if src_components == dst_components {
                return Ok(true);
            }
            let src_name = src_components[src_components.len() - 1];
            let (new_parent, new_name) =
                match dst_resolved.last().and_then(|id| state.namespace.get(id)) {
                    Some(existing) if existing.is_dir() => {
                        if existing.id == src_id
                            || state
                                .namespace
                                .get(src_id)
                                .is_some_and(|s| s.parent == existing.id)
                        {
                            // Moving into the directory it is already in.
                            return Ok(existing.id != src_id);
                        }
                        if state
                            .namespace
                            .child(existing.id, src_name.as_bytes())
                            .is_some()
                        {
                            tracing::warn!(src, dst, "rename failed: destination exists");
                            return Ok(false);
                        }
                        (existing.id, src_name)
                    }
                    Some(_) => {
                        tracing::warn!(src, dst, "rename failed: destination exists");
                        return Ok(false);
                    }
                    None => match dst_resolved.parent() {
                        Some(parent) if state.namespace.get(parent).is_some_and(Inode::is_dir) => {
                            (parent, dst_components[dst_components.len() - 1])
                        }
                        _ => {
                            tracing::warn!(
                                src,
                                dst,
                                "rename failed: destination's parent does not exist"
                            );
                            return Ok(false);
                        }
                    },
                };
            if state.namespace.is_ancestor_or_self(src_id, new_parent) {
                tracing::warn!(
                    src,
                    dst,
                    "rename failed: destination is a directory or file under the source"
                );
                return Ok(false);
            }
            Some(self.log(
                &mut state,
                Op::Rename(edit::Rename {
                    inode_id: src_id,
                    new_parent_id: new_parent,
                    new_name: new_name.as_bytes().to_vec(),
                    mtime: now_ms(),
                }),
            )?)
        };
        self.sync(txid).await?;
        Ok(true)
    }

    pub async fn delete(&self, src: &str, recursive: bool) -> Result<bool> {
        let components = path::components(src)?;
        let txid = {
            let mut state = self.state.write();
            let resolved = through_file_access(state.namespace.resolve(&components))?;
            let Some(inode) = resolved.last().and_then(|id| state.namespace.get(id)) else {
                return Ok(false);
            };
            let non_empty = inode.as_dir().is_some_and(|d| !d.children.is_empty());
            if non_empty && !recursive {
                return Err(NamenodeError::NotEmptyDirectory(format!(
                    "{src} is non empty"
                )));
            }
            if components.is_empty() {
                tracing::warn!("failed to remove / because the root is not allowed to be deleted");
                return Ok(false);
            }
            let id = inode.id;
            Some(self.log(
                &mut state,
                Op::Delete(edit::Delete {
                    inode_id: id,
                    mtime: now_ms(),
                }),
            )?)
        };
        self.sync(txid).await?;
        Ok(true)
    }

    /// Records a new replication for a file (`false` for directories and
    /// missing paths, as in HDFS).
    pub async fn set_replication(&self, src: &str, replication: u32) -> Result<bool> {
        self.check_replication(replication, src, None)?;
        let components = path::components(src)?;
        let txid = {
            let mut state = self.state.write();
            let resolved = through_file_access(state.namespace.resolve(&components))?;
            let Some(inode) = resolved.last().and_then(|id| state.namespace.get(id)) else {
                return Ok(false);
            };
            if inode.is_dir() {
                return Ok(false);
            }
            let id = inode.id;
            Some(self.log(
                &mut state,
                Op::SetReplication(edit::SetReplication {
                    inode_id: id,
                    replication,
                }),
            )?)
        };
        self.sync(txid).await?;
        Ok(true)
    }

    fn existing(&self, state: &FsState, src: &str) -> Result<InodeId> {
        let components = path::components(src)?;
        through_file_access(state.namespace.resolve(&components))?
            .last()
            .ok_or_else(|| NamenodeError::FileNotFound(format!("File does not exist: {src}")))
    }

    pub async fn set_permission(&self, src: &str, mode: u16) -> Result<()> {
        let txid = {
            let mut state = self.state.write();
            let id = self.existing(&state, src)?;
            self.log(
                &mut state,
                Op::SetPermission(edit::SetPermission {
                    inode_id: id,
                    mode: u32::from(mode & 0o7777),
                }),
            )?
        };
        self.sync(Some(txid)).await
    }

    pub async fn set_owner(
        &self,
        src: &str,
        owner: Option<&str>,
        group: Option<&str>,
    ) -> Result<()> {
        if owner.is_none() && group.is_none() {
            return Err(NamenodeError::IllegalArgument(format!(
                "setOwner {src}: username and groupname are both empty"
            )));
        }
        let txid = {
            let mut state = self.state.write();
            let id = self.existing(&state, src)?;
            self.log(
                &mut state,
                Op::SetOwner(edit::SetOwner {
                    inode_id: id,
                    owner: owner.map(str::to_string),
                    group: group.map(str::to_string),
                }),
            )?
        };
        self.sync(Some(txid)).await
    }

    pub async fn set_times(&self, src: &str, mtime: Option<u64>, atime: Option<u64>) -> Result<()> {
        let txid = {
            let mut state = self.state.write();
            let id = self.existing(&state, src)?;
            self.log(
                &mut state,
                Op::SetTimes(edit::SetTimes {
                    inode_id: id,
                    mtime,
                    atime,
                }),
            )?
        };
        self.sync(Some(txid)).await
    }

    // ---------------------------------------------------------------------
    // Bad replicas and operators' views

    /// A client found replicas whose data does not match their checksums.
    pub fn report_bad_blocks(&self, blocks: &[LocatedBlock], reporter: &str) -> Result<()> {
        let mut state = self.state.write();
        let FsState {
            blocks: bm,
            datanodes,
            ..
        } = &mut *state;
        for located in blocks {
            for location in &located.locations {
                let uuid = &location.id.datanode_uuid;
                let Some(index) = datanodes.index_of(uuid) else {
                    return Err(NamenodeError::Io(format!(
                        "Cannot mark {} as corrupt because datanode {} ({uuid}) does not exist",
                        located.block,
                        location.id.xfer_addr()
                    )));
                };
                if bm.mark_corrupt(located.block.block_id, index, datanodes) {
                    tracing::warn!(block = %located.block, datanode = %location.id.xfer_addr(), reporter,
                        "replica marked corrupt: client machine reported it");
                }
            }
        }
        Ok(())
    }

    pub fn datanode_report(&self, kind: DatanodeReportType) -> Vec<DatanodeInfo> {
        let state = self.state.read();
        let mut nodes: Vec<DatanodeInfo> = state
            .datanodes
            .all()
            .filter(|d| match kind {
                DatanodeReportType::All => true,
                DatanodeReportType::Live => d.alive,
                DatanodeReportType::Dead => !d.alive,
                DatanodeReportType::Decommissioning => false,
            })
            .map(|d| d.info())
            .collect();
        nodes.sort_by_key(|n| n.id.xfer_addr());
        nodes
    }

    pub fn fs_stats(&self) -> FsStats {
        let state = self.state.read();
        let mut stats = FsStats::default();
        for node in state.datanodes.live() {
            stats.capacity += node.capacity();
            stats.used += node.dfs_used();
            stats.remaining += node.remaining();
            stats.non_dfs_used += node.non_dfs_used();
        }
        for (id, info) in state.blocks.iter() {
            stats.total_blocks += 1;
            if info.state == BlockState::UnderConstruction {
                continue;
            }
            let counts = state.blocks.counts(*id, &state.datanodes);
            if counts.corrupt > 0 {
                stats.corrupt_blocks += 1;
            }
            if counts.live == 0 {
                stats.missing_blocks += 1;
            } else if counts.live < u32::from(info.replication) {
                stats.under_replicated += 1;
            }
        }
        state
            .namespace
            .walk(rdfs_common::ids::ROOT_INODE_ID, &mut |inode| {
                if !inode.is_dir() {
                    stats.total_files += 1;
                }
            });
        stats
    }

    pub fn fsck(&self, src: &str) -> Result<FsckReport> {
        let components = path::components(src)?;
        let state = self.state.read();
        let resolved = through_file_access(state.namespace.resolve(&components))?;
        let id = resolved
            .last()
            .ok_or_else(|| NamenodeError::FileNotFound(format!("{src} does not exist")))?;
        Ok(fsck::collect(
            &state,
            id,
            self.config.default_replication,
            self.config.min_replication,
        ))
    }

    // ---------------------------------------------------------------------
    // Datanodes

    pub fn register_datanode(&self, registration: Registration) -> Result<()> {
        if registration.cluster_id != self.info.cluster_id {
            return Err(NamenodeError::IncorrectVersion(format!(
                "datanode {} ({}) belongs to cluster {}, but this namenode serves cluster {}; \
                 its data dirs were formatted for another cluster (or this namenode was re-formatted)",
                registration.id.xfer_addr(),
                registration.id.datanode_uuid,
                registration.cluster_id,
                self.info.cluster_id
            )));
        }
        if registration.block_pool_id != self.info.block_pool_id {
            return Err(NamenodeError::IncorrectVersion(format!(
                "datanode {} serves block pool {}, but this namenode's block pool is {}",
                registration.id.xfer_addr(),
                registration.block_pool_id,
                self.info.block_pool_id
            )));
        }
        let mut state = self.state.write();
        let FsState {
            blocks, datanodes, ..
        } = &mut *state;
        let (index, replaced) = datanodes.register(registration.id.clone());
        for old in replaced {
            let held = datanodes.mark_dead(old);
            blocks.remove_datanode_replicas(old, &held);
            tracing::info!(
                old = old,
                "a datanode re-registered at the address of another; the old one is declared dead"
            );
        }
        if let Some(node) = datanodes.get_mut(index) {
            for storage_id in &registration.storage_ids {
                node.storage_index(storage_id);
            }
        }
        tracing::info!(datanode = %registration.id.xfer_addr(), uuid = %registration.id.datanode_uuid,
            storages = registration.storage_ids.len(), "datanode registered");
        Ok(())
    }

    pub fn heartbeat(
        &self,
        uuid: &str,
        storages: Vec<StorageState>,
        xceivers: u32,
        failed_volumes: u32,
    ) -> Vec<DatanodeCommand> {
        let mut state = self.state.write();
        let Some(index) = state
            .datanodes
            .heartbeat(uuid, storages, xceivers, failed_volumes)
        else {
            return vec![DatanodeCommand::Reregister];
        };
        let deletions = state
            .datanodes
            .take_deletions(index, self.config.invalidate_limit);
        if deletions.is_empty() {
            return Vec::new();
        }
        let pool_id = &self.info.block_pool_id;
        let blocks = deletions
            .into_iter()
            .map(
                |PendingDeletion {
                     block_id,
                     generation_stamp,
                     num_bytes,
                 }| ExtendedBlock {
                    pool_id: pool_id.clone(),
                    block_id,
                    generation_stamp,
                    num_bytes,
                },
            )
            .collect();
        vec![DatanodeCommand::Invalidate(blocks)]
    }

    fn check_pool(&self, pool_id: &str) -> Result<()> {
        if pool_id != self.info.block_pool_id {
            return Err(NamenodeError::IncorrectVersion(format!(
                "block pool {pool_id} is not this namenode's ({})",
                self.info.block_pool_id
            )));
        }
        Ok(())
    }

    /// A full report of one datanode's replicas, per storage: replicas the
    /// namenode did not know are added, those no file owns are scheduled for
    /// deletion, those it thought the datanode had are forgotten.
    pub fn block_report(
        &self,
        uuid: &str,
        pool_id: &str,
        storages: &[(String, Vec<ReportedReplica>)],
    ) -> Result<()> {
        self.check_pool(pool_id)?;
        let mut state = self.state.write();
        let FsState {
            blocks, datanodes, ..
        } = &mut *state;
        let index = datanodes.live_index(uuid).ok_or_else(|| {
            NamenodeError::UnregisteredNode(format!("datanode {uuid} is not registered"))
        })?;
        let mut reported = HashSet::new();
        let (mut added, mut unknown, mut corrupt) = (0u64, 0u64, 0u64);
        for (storage_id, replicas) in storages {
            let storage = datanodes
                .get_mut(index)
                .map_or(0, |n| n.storage_index(storage_id));
            for replica in replicas.iter().filter(|r| r.finalized) {
                reported.insert(replica.block_id);
                match blocks.add_replica(
                    replica.block_id,
                    replica.generation_stamp,
                    replica.num_bytes,
                    index,
                    storage,
                    datanodes,
                ) {
                    ReportOutcome::Added => added += 1,
                    ReportOutcome::AlreadyKnown => {}
                    ReportOutcome::Corrupt => corrupt += 1,
                    ReportOutcome::Unknown => {
                        unknown += 1;
                        datanodes.queue_deletion(
                            index,
                            PendingDeletion {
                                block_id: replica.block_id,
                                generation_stamp: replica.generation_stamp,
                                num_bytes: replica.num_bytes,
                            },
                        );
                    }
                }
            }
        }
        let gone: Vec<i64> = datanodes
            .get(index)
            .map(|n| {
                n.blocks
                    .iter()
                    .copied()
                    .filter(|b| !reported.contains(b))
                    .collect()
            })
            .unwrap_or_default();
        for block_id in &gone {
            blocks.remove_replica(*block_id, index, datanodes);
        }
        if let Some(node) = datanodes.get_mut(index) {
            node.last_block_report_ms = now_ms();
        }
        tracing::info!(
            datanode = uuid,
            added,
            unknown,
            corrupt,
            removed = gone.len(),
            "processed full block report"
        );
        Ok(())
    }

    pub fn block_received_and_deleted(
        &self,
        uuid: &str,
        pool_id: &str,
        events: &[(ExtendedBlock, String, ReplicaEvent)],
    ) -> Result<()> {
        self.check_pool(pool_id)?;
        let mut state = self.state.write();
        let FsState {
            blocks, datanodes, ..
        } = &mut *state;
        let index = datanodes.live_index(uuid).ok_or_else(|| {
            NamenodeError::UnregisteredNode(format!("datanode {uuid} is not registered"))
        })?;
        for (block, storage_id, event) in events {
            match event {
                ReplicaEvent::Receiving => {}
                ReplicaEvent::Received => {
                    let storage = datanodes
                        .get_mut(index)
                        .map_or(0, |n| n.storage_index(storage_id));
                    let outcome = blocks.add_replica(
                        block.block_id,
                        block.generation_stamp,
                        block.num_bytes,
                        index,
                        storage,
                        datanodes,
                    );
                    if outcome == ReportOutcome::Unknown {
                        // The file was deleted or the block abandoned meanwhile.
                        datanodes.queue_deletion(
                            index,
                            PendingDeletion {
                                block_id: block.block_id,
                                generation_stamp: block.generation_stamp,
                                num_bytes: block.num_bytes,
                            },
                        );
                    }
                    if outcome == ReportOutcome::Corrupt {
                        tracing::warn!(block = %block, datanode = uuid, "received replica does not match the block: marked corrupt");
                    }
                }
                ReplicaEvent::Deleted => blocks.remove_replica(block.block_id, index, datanodes),
            }
        }
        Ok(())
    }

    /// A datanode found replicas it holds to be damaged.
    pub fn datanode_bad_blocks(
        &self,
        uuid: &str,
        blocks: &[ExtendedBlock],
        reason: &str,
    ) -> Result<()> {
        let mut state = self.state.write();
        let FsState {
            blocks: bm,
            datanodes,
            ..
        } = &mut *state;
        let index = datanodes.live_index(uuid).ok_or_else(|| {
            NamenodeError::UnregisteredNode(format!("datanode {uuid} is not registered"))
        })?;
        for block in blocks {
            if bm.mark_corrupt(block.block_id, index, datanodes) {
                tracing::warn!(block = %block, datanode = uuid, reason, "replica marked corrupt: its datanode reported it");
            }
        }
        Ok(())
    }

    /// Declares datanodes dead that have been silent too long.
    pub fn check_liveness(&self) {
        let now = Instant::now();
        if self.state.read().datanodes.newly_dead(now).is_empty() {
            return;
        }
        let mut state = self.state.write();
        let FsState {
            blocks, datanodes, ..
        } = &mut *state;
        for index in datanodes.newly_dead(now) {
            let addr = datanodes
                .get(index)
                .map(|d| d.id.xfer_addr())
                .unwrap_or_default();
            let held = datanodes.mark_dead(index);
            blocks.remove_datanode_replicas(index, &held);
            tracing::warn!(datanode = %addr, replicas = held.len(), "datanode declared dead: no heartbeat within the dead interval");
        }
    }
}
