//! Changing the namespace: mkdirs, create, block allocation and completion,
//! rename, delete, and attribute changes. Each is refused in safe mode.

use std::collections::HashSet;
use std::time::Instant;

use rdfs_common::path;
use rdfs_common::protocol::{ExtendedBlock, FileStatus, LocatedBlock};
use rdfs_common::time::now_ms;
use rdfs_proto::editlog::{self as edit, BlockRef, PermissionStatus};

use super::access::PathUse;
use super::{Caller, Locked, Namesystem, file_status, through_file_access};
use crate::apply::FsState;
use crate::block_manager::{BlockState, MAX_BLOCK_LEN};
use crate::datanode_manager::DatanodeIndex;
use crate::edit_log::{Op, TxId};
use crate::error::{NamenodeError, Result};
use crate::namespace::{InodeId, Resolved};
use crate::permission::{FsAction, Required};
use crate::placement;
use crate::retry_cache::Outcome;

use super::retry::Attempt;

impl Namesystem {
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
            self.check_writable(&state, || format!("Cannot create directory {src}"))?;
            let fs = &mut state.fs;
            let resolved = self.resolve_checked(
                &fs.namespace,
                caller,
                &components,
                Required::TRAVERSE,
                PathUse::Create,
            )?;
            match resolved.last().and_then(|id| fs.namespace.get(id)) {
                Some(existing) if !existing.is_dir() => {
                    return Err(NamenodeError::FileAlreadyExists(format!(
                        "Path is not a directory: {src}"
                    )));
                }
                // Another call may have created it and still be syncing.
                Some(_) => Some(self.journal.last_txid()),
                None => {
                    self.check_resolved(
                        &fs.namespace,
                        caller,
                        &components,
                        &resolved,
                        Required::ancestor(FsAction::WRITE),
                    )?;
                    if !create_parent && resolved.inodes.len() < components.len() {
                        return Err(NamenodeError::FileNotFound(format!(
                            "Parent directory doesn't exist: {}",
                            path::parent(&path::join_components(&components))
                        )));
                    }
                    self.create_directories(
                        fs,
                        caller,
                        &components,
                        &resolved,
                        mode,
                        components.len(),
                    )?
                }
            }
        };
        self.sync(txid).await?;
        Ok(true)
    }

    /// Creates the missing directories of `components[..upto]`; ancestors
    /// created on the way get `mode` plus owner write and execute, as in HDFS.
    fn create_directories(
        &self,
        fs: &mut FsState,
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
            let group = inherited_group(fs, parent);
            let id = fs.namespace.next_inode_id().map_err(NamenodeError::Io)?;
            let dir_mode = if depth + 1 == components.len() {
                mode
            } else {
                mode | 0o300
            };
            let acl = inherited_acl(fs, parent, dir_mode, true);
            txid = Some(self.log(
                fs,
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
                    acl,
                }),
            )?);
            parent = id;
        }
        Ok(txid)
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
        if block_size == 0 || !block_size.is_multiple_of(bpc) || block_size > MAX_BLOCK_LEN {
            return Err(NamenodeError::IllegalArgument(format!(
                "Invalid values: dfs.bytes-per-checksum (={bpc}) must divide block size (={block_size}), at most {MAX_BLOCK_LEN}."
            )));
        }
        let ticket = match self.attempt(caller).await? {
            Attempt::Run(ticket) => ticket,
            Attempt::Answered(outcome) => return outcome.into_status(),
        };
        let (txid, status) = 'created: {
            let mut state = self.state.write();
            self.check_writable(&state, || format!("Cannot create file{src}"))?;
            let fs = &mut state.fs;
            let resolved = self.resolve_checked(
                &fs.namespace,
                caller,
                &components,
                Required::ancestor(FsAction::WRITE),
                PathUse::Create,
            )?;
            // Every edit below is covered by the sync of the last one, AddFile.
            if let Some(existing) = resolved.last().and_then(|id| fs.namespace.get(id)) {
                if existing.is_dir() {
                    return Err(NamenodeError::FileAlreadyExists(format!(
                        "{src} already exists as a directory"
                    )));
                }
                if overwrite {
                    self.check_resolved(
                        &fs.namespace,
                        caller,
                        &components,
                        &resolved,
                        Required::access(FsAction::WRITE),
                    )?;
                }
                if existing.writer() == Some(client) && existing.block_slots().is_empty() {
                    // A retry of this client's own create whose answer was
                    // lost (a failover in between): hand back the file it
                    // created, as HDFS's retry cache would.
                    let status = file_status(fs, existing, Vec::new());
                    break 'created (self.journal.last_txid(), status);
                }
                if existing.writer().is_some() {
                    let id = existing.id();
                    // Taken from a writer silent past the soft limit when
                    // its blocks allow closing it at once; otherwise the
                    // refusal (being created, or recovery in progress).
                    self.recover_lease_for(fs, "CREATE_FILE", id, src, client, &caller.machine)?;
                }
                let Some(existing) = fs.namespace.get(resolved.last().unwrap_or_default()) else {
                    return Err(NamenodeError::Io("file vanished".into()));
                };
                if !overwrite {
                    return Err(NamenodeError::FileAlreadyExists(format!(
                        "{src} for client {} already exists",
                        caller.machine
                    )));
                }
                let id = existing.id();
                self.log(
                    fs,
                    Op::Delete(edit::Delete {
                        inode_id: id,
                        mtime: now_ms(),
                    }),
                )?;
            }
            let resolved = fs
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
                // As HDFS: the nearest existing parent's mode, plus owner
                // write and execute.
                let mode = fs
                    .namespace
                    .get(resolved.deepest())
                    .map_or(0o755, |p| p.permission().mode & 0o777);
                self.create_directories(
                    fs,
                    caller,
                    &components,
                    &resolved,
                    mode,
                    components.len() - 1,
                )?;
            }
            let resolved = fs
                .namespace
                .resolve(&components)
                .map_err(|t| NamenodeError::Io(t.path))?;
            let parent = resolved.deepest();
            let id = fs.namespace.next_inode_id().map_err(NamenodeError::Io)?;
            let group = inherited_group(fs, parent);
            let acl = inherited_acl(fs, parent, mode, false);
            let txid = self.log_call(
                fs,
                Op::AddFile(edit::AddFile {
                    inode_id: id,
                    parent_id: parent,
                    name: components[components.len() - 1].as_bytes().to_vec(),
                    permission: Some(PermissionStatus {
                        owner: caller.user.clone(),
                        group,
                        mode: mode.into(),
                    }),
                    mtime: now_ms(),
                    replication,
                    block_size,
                    client_name: client.to_string(),
                    acl,
                }),
                caller.rpc.as_ref(),
            )?;
            fs.leases.set_machine(id, &caller.machine);
            let inode = fs
                .namespace
                .get(id)
                .ok_or_else(|| NamenodeError::Io("created file vanished".into()))?;
            let status = file_status(fs, inode, Vec::new());
            ticket.succeeded(&Outcome::Status(Box::new(status.clone())), txid);
            (txid, status)
        };
        self.sync(Some(txid)).await?;
        Ok(status)
    }

    pub async fn add_block(
        &self,
        src: &str,
        client: &str,
        previous: Option<&ExtendedBlock>,
        exclude: &[String],
        file_id: u64,
    ) -> Result<LocatedBlock> {
        self.add_block_from(src, client, previous, exclude, file_id, None)
            .await
    }

    /// [`Self::add_block`] for a writer at `writer_host`: when a datanode
    /// runs there, it gets the first replica (HDFS's writer-local placement).
    pub async fn add_block_from(
        &self,
        src: &str,
        client: &str,
        previous: Option<&ExtendedBlock>,
        exclude: &[String],
        file_id: u64,
        writer_host: Option<&str>,
    ) -> Result<LocatedBlock> {
        let (txid, located) = 'allocate: {
            let mut state = self.state.write();
            self.check_writable(&state, || format!("Cannot add block to {src}"))?;
            let fs = &mut state.fs;
            let id = writable_file(fs, src, file_id, client)?;
            fs.leases.renew(client, Instant::now());
            let (slots, replication, block_size) = match fs.namespace.get(id) {
                Some(file) => (
                    file.block_slots().to_vec(),
                    file.replication(),
                    file.block_size(),
                ),
                None => return Err(NamenodeError::Io("file vanished".into())),
            };
            let last = slots.last().copied();
            match (previous, last) {
                (None, None) => {}
                (Some(prev), Some(_)) if prev.num_bytes > block_size => {
                    return Err(NamenodeError::IllegalArgument(format!(
                        "block {prev} of {src} claims {} bytes, more than the file's block size {block_size}",
                        prev.num_bytes
                    )));
                }
                (Some(prev), Some(last)) if fs.blocks.id_of(last) == prev.block_id => {
                    let stored_gs = fs.blocks.info(last).generation_stamp;
                    if prev.generation_stamp != stored_gs {
                        return Err(NamenodeError::Io(format!(
                            "Commit block with mismatching GS. NN has {}, client submits {}",
                            fs.blocks.name(last),
                            prev.name()
                        )));
                    }
                }
                (prev, Some(last)) => {
                    // A retry of an addBlock whose answer was lost: hand back
                    // the same, still empty, block.
                    let penultimate = slots
                        .len()
                        .checked_sub(2)
                        .map(|i| fs.blocks.id_of(slots[i]));
                    let last_info = fs.blocks.info(last);
                    if prev.map(|p| p.block_id) == penultimate
                        && last_info.state == BlockState::UnderConstruction
                        && last_info.num_bytes == 0
                    {
                        let offset = offset_of(fs, &slots, slots.len() - 1);
                        let located = fs.blocks.located(last, offset, &fs.datanodes);
                        // The original call may still be syncing its edit.
                        break 'allocate (self.journal.last_txid(), located);
                    }
                    return Err(NamenodeError::Io(format!(
                        "Cannot allocate block in {src}: passed 'previous' block {} does not match actual last block in file {}",
                        prev.map_or("null".to_string(), |p| p.to_string()),
                        fs.blocks.extended(last)
                    )));
                }
                (Some(prev), None) => {
                    return Err(NamenodeError::Io(format!(
                        "Cannot allocate block in {src}: passed 'previous' block {prev} does not match actual last block in file null"
                    )));
                }
            }
            if slots.len() >= 2
                && fs.blocks.info(slots[slots.len() - 2]).state != BlockState::Complete
            {
                return Err(NamenodeError::NotReplicatedYet(format!(
                    "Not replicated yet: {src}"
                )));
            }
            let excluded: HashSet<DatanodeIndex> = exclude
                .iter()
                .filter_map(|uuid| fs.datanodes.index_of(uuid))
                .collect();
            let targets = placement::choose_targets(
                &fs.datanodes,
                placement::Placement {
                    wanted: usize::from(replication),
                    chosen: &[],
                    excluded: &excluded,
                    writer: writer_host.and_then(|host| fs.datanodes.on_host(host, &excluded)),
                    block_size,
                },
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
                    fs.datanodes.live_count()
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
            let (block_id, generation_stamp) = fs.blocks.next_block().map_err(NamenodeError::Io)?;
            let previous_ref = previous.map(|p| BlockRef {
                block_id: p.block_id,
                generation_stamp: p.generation_stamp,
                num_bytes: p.num_bytes,
            });
            let txid = self.log(
                fs,
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
            let slot = fs
                .blocks
                .slot_of(block_id)
                .ok_or_else(|| NamenodeError::Io("new block vanished".into()))?;
            fs.blocks.set_expected_locations(slot, targets);
            let offset = offset_of(fs, &slots, slots.len());
            (txid, fs.blocks.located(slot, offset, &fs.datanodes))
        };
        self.sync(Some(txid)).await?;
        Ok(located)
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
            self.check_writable(&state, || {
                format!("Cannot abandon block {block} for file{src}")
            })?;
            let fs = &mut state.fs;
            let id = writable_file(fs, src, file_id, client)?;
            fs.leases.renew(client, Instant::now());
            let is_last = fs
                .namespace
                .get(id)
                .and_then(|f| f.block_slots().last().copied())
                .is_some_and(|last| fs.blocks.id_of(last) == block.block_id);
            if !is_last {
                return Ok(());
            }
            tracing::info!(block = %block, src, "block abandoned by its writer");
            Some(self.log(
                fs,
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
            self.check_writable(&state, || format!("Cannot complete file {src}"))?;
            let fs = &mut state.fs;
            let id = match writable_file(fs, src, file_id, client) {
                Ok(id) => id,
                Err(NamenodeError::LeaseExpired(msg)) => {
                    // A retry of a complete whose answer was lost.
                    let closed_with_same_last = fs.namespace.get(file_id).is_some_and(|f| {
                        f.writer().is_none()
                            && f.block_slots().last().map(|s| fs.blocks.id_of(*s))
                                == last.map(|b| b.block_id)
                    });
                    if file_id != 0 && closed_with_same_last {
                        // The original call may still be syncing its edit.
                        break 'close Some(self.journal.last_txid());
                    }
                    return Err(NamenodeError::LeaseExpired(msg));
                }
                Err(err) => return Err(err),
            };
            fs.leases.renew(client, Instant::now());
            let (slots, block_size) = match fs.namespace.get(id) {
                Some(file) => (file.block_slots().to_vec(), file.block_size()),
                None => return Err(NamenodeError::Io("file vanished".into())),
            };
            match (last, slots.last()) {
                (Some(last), Some(&stored)) if fs.blocks.id_of(stored) == last.block_id => {
                    let stored_gs = fs.blocks.info(stored).generation_stamp;
                    if last.generation_stamp != stored_gs {
                        return Err(NamenodeError::Io(format!(
                            "Commit block with mismatching GS. NN has {}, client submits {}",
                            fs.blocks.name(stored),
                            last.name()
                        )));
                    }
                    if last.num_bytes > block_size {
                        return Err(NamenodeError::IllegalArgument(format!(
                            "block {last} of {src} claims {} bytes, more than the file's block size {block_size}",
                            last.num_bytes
                        )));
                    }
                    fs.blocks.commit(stored, last.num_bytes, &fs.datanodes);
                }
                (None, None) => {}
                (last, stored) => {
                    return Err(NamenodeError::Io(format!(
                        "Cannot complete {src}: last block {} is not the file's last block {}",
                        last.map_or("null".to_string(), |b| b.to_string()),
                        stored.map_or("null".to_string(), |s| fs.blocks.name(*s).to_string())
                    )));
                }
            }
            if let Some(waiting) = slots
                .iter()
                .find(|s| fs.blocks.info(**s).state != BlockState::Complete)
            {
                let counts = fs.blocks.counts(*waiting, &fs.datanodes);
                tracing::debug!(src, block = %fs.blocks.name(*waiting), live = counts.live,
                    min = self.config.min_replication, "file cannot close yet: block lacks its minimum replicas");
                return Ok(false);
            }
            let now = now_ms();
            let last_ref = slots.last().map(|s| {
                let info = fs.blocks.info(*s);
                BlockRef {
                    block_id: info.block_id,
                    generation_stamp: info.generation_stamp,
                    num_bytes: info.num_bytes,
                }
            });
            Some(self.log(
                fs,
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
    pub async fn rename(&self, caller: &Caller, src: &str, dst: &str) -> Result<bool> {
        let src_components = path::components(src)?;
        let dst_components = path::components(dst)?;
        let ticket = match self.attempt(caller).await? {
            Attempt::Run(ticket) => ticket,
            Attempt::Answered(outcome) => return outcome.into_bool(),
        };
        let txid = {
            let mut state = self.state.write();
            self.check_writable(&state, || format!("Cannot rename {src}"))?;
            let fs = &mut state.fs;
            let src_resolved = self.resolve_checked(
                &fs.namespace,
                caller,
                &src_components,
                Required::parent(FsAction::WRITE),
                PathUse::Access,
            )?;
            let dst_resolved = self.resolve_checked(
                &fs.namespace,
                caller,
                &dst_components,
                Required::TRAVERSE,
                PathUse::Create,
            )?;
            // Write on the destination's nearest existing ancestor, once a
            // directory destination is taken to mean the source's name in it.
            let into_dir = dst_resolved
                .last()
                .and_then(|id| fs.namespace.get(id))
                .is_some_and(|d| d.is_dir());
            match (into_dir, src_components.last()) {
                (true, Some(&name)) => {
                    let mut adjusted = dst_components.clone();
                    adjusted.push(name);
                    self.resolve_checked(
                        &fs.namespace,
                        caller,
                        &adjusted,
                        Required::ancestor(FsAction::WRITE),
                        PathUse::Create,
                    )?;
                }
                _ => self.check_resolved(
                    &fs.namespace,
                    caller,
                    &dst_components,
                    &dst_resolved,
                    Required::ancestor(FsAction::WRITE),
                )?,
            }
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
                match dst_resolved.last().and_then(|id| fs.namespace.get(id)) {
                    Some(existing) if existing.is_dir() => {
                        let existing_id = existing.id();
                        if existing_id == src_id
                            || fs
                                .namespace
                                .get(src_id)
                                .is_some_and(|s| s.parent() == existing_id)
                        {
                            // Moving into the directory it is already in.
                            return Ok(existing_id != src_id);
                        }
                        if fs
                            .namespace
                            .child(existing_id, src_name.as_bytes())
                            .is_some()
                        {
                            tracing::warn!(src, dst, "rename failed: destination exists");
                            return Ok(false);
                        }
                        (existing_id, src_name)
                    }
                    Some(_) => {
                        tracing::warn!(src, dst, "rename failed: destination exists");
                        return Ok(false);
                    }
                    None => match dst_resolved.parent() {
                        Some(parent) if fs.namespace.get(parent).is_some_and(|p| p.is_dir()) => {
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
            if fs.namespace.is_ancestor_or_self(src_id, new_parent) {
                tracing::warn!(
                    src,
                    dst,
                    "rename failed: destination is a directory or file under the source"
                );
                return Ok(false);
            }
            let txid = self.log_call(
                fs,
                Op::Rename(edit::Rename {
                    inode_id: src_id,
                    new_parent_id: new_parent,
                    new_name: new_name.as_bytes().to_vec(),
                    mtime: now_ms(),
                }),
                caller.rpc.as_ref(),
            )?;
            ticket.succeeded(&Outcome::Bool(true), txid);
            Some(txid)
        };
        self.sync(txid).await?;
        Ok(true)
    }

    pub async fn delete(&self, caller: &Caller, src: &str, recursive: bool) -> Result<bool> {
        let components = path::components(src)?;
        let ticket = match self.attempt(caller).await? {
            Attempt::Run(ticket) => ticket,
            Attempt::Answered(outcome) => return outcome.into_bool(),
        };
        let txid = {
            let mut state = self.state.write();
            self.check_writable(&state, || format!("Cannot delete {src}"))?;
            let fs = &mut state.fs;
            let resolved = self.resolve_checked(
                &fs.namespace,
                caller,
                &components,
                Required::removal(),
                PathUse::Access,
            )?;
            let Some(inode) = resolved.last().and_then(|id| fs.namespace.get(id)) else {
                return Ok(false);
            };
            if !inode.children().is_empty() && !recursive {
                return Err(NamenodeError::NotEmptyDirectory(format!(
                    "{src} is non empty"
                )));
            }
            if components.is_empty() {
                tracing::warn!("failed to remove / because the root is not allowed to be deleted");
                return Ok(false);
            }
            let id = inode.id();
            let txid = self.log_call(
                fs,
                Op::Delete(edit::Delete {
                    inode_id: id,
                    mtime: now_ms(),
                }),
                caller.rpc.as_ref(),
            )?;
            ticket.succeeded(&Outcome::Bool(true), txid);
            Some(txid)
        };
        self.sync(txid).await?;
        Ok(true)
    }

    /// Records a new replication for a file (`false` for directories and
    /// missing paths, as in HDFS).
    pub async fn set_replication(
        &self,
        caller: &Caller,
        src: &str,
        replication: u32,
    ) -> Result<bool> {
        self.check_replication(replication, src, None)?;
        let components = path::components(src)?;
        let txid = {
            let mut state = self.state.write();
            self.check_writable(&state, || format!("Cannot set replication for {src}"))?;
            let fs = &mut state.fs;
            let resolved = self.resolve_checked(
                &fs.namespace,
                caller,
                &components,
                Required::access(FsAction::WRITE),
                PathUse::Access,
            )?;
            let Some(inode) = resolved.last().and_then(|id| fs.namespace.get(id)) else {
                return Ok(false);
            };
            if inode.is_dir() {
                return Ok(false);
            }
            let id = inode.id();
            Some(self.log(
                fs,
                Op::SetReplication(edit::SetReplication {
                    inode_id: id,
                    replication,
                }),
            )?)
        };
        self.sync(txid).await?;
        Ok(true)
    }

    /// Applies one attribute change to an existing path.
    async fn change(
        &self,
        caller: &Caller,
        src: &str,
        operation: &str,
        required: Required,
        op: impl FnOnce(InodeId) -> Op,
    ) -> Result<()> {
        let components = path::components(src)?;
        let txid = {
            let mut state = self.state.write();
            self.check_writable(&state, || format!("{operation} {src}"))?;
            let Locked { fs, .. } = &mut *state;
            let id = self
                .resolve_checked(
                    &fs.namespace,
                    caller,
                    &components,
                    required,
                    PathUse::Access,
                )?
                .last()
                .ok_or_else(|| {
                    NamenodeError::FileNotFound(format!("File does not exist: {src}"))
                })?;
            self.log(fs, op(id))?
        };
        self.sync(Some(txid)).await
    }

    /// chmod: the owner's (or the superuser's) to make.
    pub async fn set_permission(&self, caller: &Caller, src: &str, mode: u16) -> Result<()> {
        let required = Required::owner();
        self.change(
            caller,
            src,
            "Cannot set permission for",
            required,
            |inode_id| {
                Op::SetPermission(edit::SetPermission {
                    inode_id,
                    mode: u32::from(mode & 0o7777),
                })
            },
        )
        .await
    }

    /// chown and chgrp: only the superuser gives a file away; an owner may
    /// change its group to one they are in.
    pub async fn set_owner(
        &self,
        caller: &Caller,
        src: &str,
        owner: Option<&str>,
        group: Option<&str>,
    ) -> Result<()> {
        if owner.is_none() && group.is_none() {
            return Err(NamenodeError::IllegalArgument(format!(
                "setOwner {src}: username and groupname are both empty"
            )));
        }
        if !caller.superuser {
            if owner.is_some_and(|o| o != caller.user) {
                return Err(NamenodeError::AccessControl(format!(
                    "User {} is not a super user (non-super user cannot change owner).",
                    caller.user
                )));
            }
            if let Some(group) = group
                && !caller.groups.iter().any(|g| g == group)
            {
                return Err(NamenodeError::AccessControl(format!(
                    "User {} does not belong to {group}",
                    caller.user
                )));
            }
        }
        let required = Required::owner();
        self.change(caller, src, "Cannot set owner for", required, |inode_id| {
            Op::SetOwner(edit::SetOwner {
                inode_id,
                owner: owner.map(str::to_string),
                group: group.map(str::to_string),
            })
        })
        .await
    }

    /// Write access sets a path's times, as in HDFS.
    pub async fn set_times(
        &self,
        caller: &Caller,
        src: &str,
        mtime: Option<u64>,
        atime: Option<u64>,
    ) -> Result<()> {
        let required = Required::access(FsAction::WRITE);
        self.change(caller, src, "Cannot set times", required, |inode_id| {
            Op::SetTimes(edit::SetTimes {
                inode_id,
                mtime,
                atime,
            })
        })
        .await
    }
}

/// The ACL a new child of `parent` inherits from the parent's default ACL,
/// limited by the mode it is created with (the mode after the client's
/// umask); none when the parent has no default ACL.
fn inherited_acl(fs: &FsState, parent: InodeId, mode: u16, is_dir: bool) -> Vec<edit::AclEntry> {
    let Some(parent) = fs.namespace.get(parent) else {
        return Vec::new();
    };
    let default = fs.namespace.default_acl(parent);
    rdfs_common::acl::inherited(&default, mode, is_dir)
        .map(|entries| rdfs_common::acl::to_wire(&entries))
        .unwrap_or_default()
}

/// New inodes take their parent directory's group, as in HDFS.
fn inherited_group(fs: &FsState, parent: InodeId) -> String {
    fs.namespace
        .get(parent)
        .map(|p| p.group().to_string())
        .unwrap_or_default()
}

/// The file under construction that `client` writes, by id when given (an
/// open file may have been renamed), else by path.
pub(super) fn writable_file(
    fs: &FsState,
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
        through_file_access(fs.namespace.resolve(&components))?
            .last()
            .ok_or_else(not_open)?
    };
    let inode = fs.namespace.get(id).ok_or_else(not_open)?;
    if inode.is_dir() {
        return Err(NamenodeError::LeaseExpired(format!(
            "INode is not a regular file: {src} (inode {id})"
        )));
    }
    match inode.writer() {
        None => Err(NamenodeError::LeaseExpired(format!(
            "File is not open for writing: {src} (inode {id}) Holder {client} does not have any open files."
        ))),
        Some(writer) if writer != client => Err(NamenodeError::LeaseExpired(format!(
            "Client (={client}) is not the lease owner (={writer}: {src} (inode {id})"
        ))),
        Some(_) => Ok(id),
    }
}

/// The offset of the file's block number `index`.
pub(super) fn offset_of(fs: &FsState, slots: &[u32], index: usize) -> u64 {
    slots[..index]
        .iter()
        .map(|s| fs.blocks.info(*s).num_bytes)
        .sum()
}
