//! Applying an edit to the in-memory state. This is the only code that
//! changes the namespace and the block map's membership, and it runs both
//! for a live change (right after validation) and when the edit log is
//! replayed at start-up, so the two can never disagree.

use std::time::Instant;

use rdfs_proto::editlog::PermissionStatus;

use crate::block_manager::{BlockManager, BlockState};
use crate::datanode_manager::DatanodeManager;
use crate::edit_log::Op;
use crate::lease::{LeaseManager, NAMENODE_LEASE_HOLDER};
use crate::namespace::{InodeId, Namespace, NewInode, NewKind, Permission};

/// Everything the namesystem lock protects.
#[derive(Debug)]
pub struct FsState {
    pub namespace: Namespace,
    pub blocks: BlockManager,
    pub datanodes: DatanodeManager,
    /// Follows the writers of files under construction; rebuilt from them
    /// after loading (see [`LeaseManager::rebuild`]).
    pub leases: LeaseManager,
}

/// An edit that does not fit the state it is applied to: a bug in a live
/// change, or a damaged or foreign edit log on replay.
#[derive(Debug, thiserror::Error)]
#[error("cannot apply edit: {0}")]
pub struct ApplyError(pub String);

impl From<String> for ApplyError {
    fn from(message: String) -> Self {
        ApplyError(message)
    }
}

impl FsState {
    /// A new inode's ACL, inherited from its parent's default ACL.
    fn set_inherited_acl(
        &mut self,
        id: crate::namespace::InodeId,
        acl: &[rdfs_proto::editlog::AclEntry],
    ) -> Result<(), ApplyError> {
        if acl.is_empty() {
            return Ok(());
        }
        let entries = rdfs_common::acl::from_wire(acl)
            .and_then(rdfs_common::acl::validate)
            .map_err(|e| ApplyError(e.to_string()))?;
        Ok(self.namespace.set_acl(id, &entries)?)
    }

    pub fn apply(&mut self, op: &Op) -> Result<(), ApplyError> {
        match op {
            Op::Mkdir(mkdir) => {
                let permission = self.permission(mkdir.permission.as_ref());
                self.namespace.insert(NewInode {
                    id: mkdir.inode_id,
                    parent: mkdir.parent_id,
                    name: &mkdir.name,
                    permission,
                    mtime: mkdir.mtime,
                    atime: 0,
                    kind: NewKind::Directory,
                })?;
                self.set_inherited_acl(mkdir.inode_id, &mkdir.acl)?;
                self.namespace
                    .set_times(mkdir.parent_id, Some(mkdir.mtime), None)?;
            }
            Op::AddFile(add) => {
                let permission = self.permission(add.permission.as_ref());
                let replication = u16::try_from(add.replication)
                    .map_err(|_| ApplyError("replication out of range".into()))?;
                let kind = NewKind::File {
                    replication,
                    block_size: add.block_size,
                    writer: Some(add.client_name.clone()),
                };
                self.namespace.insert(NewInode {
                    id: add.inode_id,
                    parent: add.parent_id,
                    name: &add.name,
                    permission,
                    mtime: add.mtime,
                    atime: add.mtime,
                    kind,
                })?;
                self.set_inherited_acl(add.inode_id, &add.acl)?;
                self.namespace
                    .set_times(add.parent_id, Some(add.mtime), None)?;
                self.leases
                    .add(&add.client_name, add.inode_id, Instant::now());
            }
            Op::AddBlock(add) => {
                let block = add
                    .block
                    .as_ref()
                    .ok_or_else(|| ApplyError("AddBlock without a block".into()))?;
                let (inode_slot, replication) = self.file(add.inode_id)?;
                // Everything that can fail happens before the first change,
                // so a rejected edit leaves the state as it was.
                let previous = match &add.previous {
                    Some(previous) => Some((self.block_slot(previous.block_id)?, previous)),
                    None => None,
                };
                let slot = self.blocks.add_under_construction(
                    block.block_id,
                    block.generation_stamp,
                    inode_slot,
                    replication,
                )?;
                if let Some((previous_slot, previous)) = previous {
                    self.blocks
                        .commit(previous_slot, previous.num_bytes, &self.datanodes);
                }
                self.namespace.push_block(add.inode_id, slot)?;
            }
            Op::AbandonBlock(abandon) => {
                self.file(abandon.inode_id)?;
                if let Some(slot) = self.blocks.slot_of(abandon.block_id)
                    && self.namespace.pop_block(abandon.inode_id, slot)?
                {
                    self.blocks.remove(slot, &mut self.datanodes);
                }
            }
            Op::CloseFile(close) => {
                self.file(close.inode_id)?;
                let last = match close.last {
                    Some(last) => Some((self.block_slot(last.block_id)?, last)),
                    None => None,
                };
                self.namespace
                    .set_times(close.inode_id, Some(close.mtime), Some(close.atime))?;
                self.namespace.clear_writer(close.inode_id)?;
                self.leases.remove(close.inode_id);
                if let Some((slot, last)) = last {
                    let info = self.blocks.info(slot);
                    if last.generation_stamp != 0
                        && last.generation_stamp != info.generation_stamp
                        && info.state != BlockState::Complete
                    {
                        self.blocks.update_last(
                            slot,
                            last.generation_stamp,
                            last.num_bytes,
                            &self.datanodes,
                        );
                    }
                    self.blocks.commit(slot, last.num_bytes, &self.datanodes);
                }
                // A closed file's blocks are complete, whether or not any
                // datanode has reported them yet (replay).
                let slots = self
                    .namespace
                    .get(close.inode_id)
                    .map(|f| f.block_slots().to_vec())
                    .unwrap_or_default();
                for slot in slots {
                    let length = self.blocks.info(slot).num_bytes;
                    self.blocks.force_complete(slot, length, &self.datanodes);
                }
            }
            Op::Rename(rename) => {
                let old_parent = self.inode(rename.inode_id)?;
                self.check_rename(rename.inode_id, rename.new_parent_id, &rename.new_name)?;
                self.namespace.detach(rename.inode_id)?;
                self.namespace
                    .attach(rename.inode_id, rename.new_parent_id, &rename.new_name)?;
                self.namespace
                    .set_times(old_parent, Some(rename.mtime), None)?;
                self.namespace
                    .set_times(rename.new_parent_id, Some(rename.mtime), None)?;
            }
            Op::Delete(delete) => {
                let parent = self.inode(delete.inode_id)?;
                let mut open_files = Vec::new();
                self.namespace.walk(delete.inode_id, &mut |inode| {
                    if inode.writer().is_some() {
                        open_files.push(inode.id());
                    }
                });
                let removed = self.namespace.remove_subtree(delete.inode_id)?;
                for file in open_files {
                    self.leases.remove(file);
                }
                for slot in removed.block_slots {
                    self.blocks.remove(slot, &mut self.datanodes);
                }
                self.namespace.set_times(parent, Some(delete.mtime), None)?;
            }
            Op::SetReplication(set) => {
                let replication = u16::try_from(set.replication)
                    .map_err(|_| ApplyError("replication out of range".into()))?;
                self.namespace.set_replication(set.inode_id, replication)?;
                let slots = self
                    .namespace
                    .get(set.inode_id)
                    .map(|f| f.block_slots().to_vec())
                    .unwrap_or_default();
                for slot in slots {
                    self.blocks.set_replication(slot, replication);
                }
            }
            Op::SetPermission(set) => {
                let mut permission = self
                    .namespace
                    .get(set.inode_id)
                    .ok_or_else(|| missing("chmod", set.inode_id))?
                    .permission();
                // chmod of an inode with an ACL sets its mask through the
                // group bits; the ACL stays.
                permission.mode =
                    (set.mode & 0o7777) as u16 | (permission.mode & crate::namespace::ACL_BIT);
                self.namespace.set_permission(set.inode_id, permission)?;
            }
            Op::SetOwner(set) => {
                let mut permission = self
                    .namespace
                    .get(set.inode_id)
                    .ok_or_else(|| missing("chown", set.inode_id))?
                    .permission();
                if let Some(owner) = set.owner.as_deref() {
                    permission.owner = self.namespace.interner.intern(owner);
                }
                if let Some(group) = set.group.as_deref() {
                    permission.group = self.namespace.interner.intern(group);
                }
                self.namespace.set_permission(set.inode_id, permission)?;
            }
            Op::SetAcl(set) => {
                self.namespace
                    .get(set.inode_id)
                    .ok_or_else(|| missing("setfacl", set.inode_id))?;
                let entries = rdfs_common::acl::from_wire(&set.entries)
                    .map_err(|e| ApplyError(e.to_string()))?;
                if entries.is_empty() {
                    self.namespace.remove_acl(set.inode_id)?;
                } else {
                    let entries = rdfs_common::acl::validate(entries)
                        .map_err(|e| ApplyError(e.to_string()))?;
                    self.namespace.set_acl(set.inode_id, &entries)?;
                }
            }
            Op::SetTimes(set) => {
                self.namespace
                    .set_times(set.inode_id, set.mtime, set.atime)?;
            }
            Op::ReopenFile(reopen) => {
                self.file(reopen.inode_id)?;
                let file = self
                    .namespace
                    .get(reopen.inode_id)
                    .ok_or_else(|| missing("file", reopen.inode_id))?;
                if file.writer().is_some() {
                    return Err(ApplyError(format!(
                        "inode {} is already open for writing",
                        reopen.inode_id
                    )));
                }
                let last = file.block_slots().last().copied();
                if reopen.last_block_reopened {
                    let slot = last.ok_or_else(|| {
                        ApplyError(format!("inode {} has no block to reopen", reopen.inode_id))
                    })?;
                    self.blocks.reopen(slot, &self.datanodes);
                }
                self.namespace
                    .set_writer(reopen.inode_id, &reopen.client_name)?;
                self.leases
                    .add(&reopen.client_name, reopen.inode_id, Instant::now());
            }
            Op::UpdateLastBlock(update) => {
                let block = update
                    .block
                    .as_ref()
                    .ok_or_else(|| ApplyError("UpdateLastBlock without a block".into()))?;
                let slot = self.open_last_block(update.inode_id, block.block_id)?;
                self.blocks.update_last(
                    slot,
                    block.generation_stamp,
                    block.num_bytes,
                    &self.datanodes,
                );
            }
            Op::ReassignLease(reassign) => {
                self.file(reassign.inode_id)?;
                let file = self
                    .namespace
                    .get(reassign.inode_id)
                    .ok_or_else(|| missing("file", reassign.inode_id))?;
                if file.writer().is_none() {
                    return Err(ApplyError(format!(
                        "inode {} is not open for writing",
                        reassign.inode_id
                    )));
                }
                let last = file.block_slots().last().copied();
                self.namespace
                    .set_writer(reassign.inode_id, &reassign.new_holder)?;
                self.leases
                    .reassign(reassign.inode_id, &reassign.new_holder, Instant::now());
                // The namenode takes a file to recover it: its open last
                // block is under recovery, with the generation stamp handed
                // out just before (SetGenerationStamp) as recovery id.
                if reassign.new_holder == NAMENODE_LEASE_HOLDER
                    && let Some(slot) = last
                    && self.blocks.info(slot).state.is_open()
                {
                    let recovery_id = self.blocks.last_generation_stamp;
                    self.blocks
                        .start_recovery(slot, recovery_id, false, &self.datanodes);
                }
            }
            Op::SetGenerationStamp(set) => {
                self.blocks.observe_generation_stamp(set.generation_stamp);
            }
            Op::Truncate(truncate) => self.truncate(truncate)?,
        }
        Ok(())
    }

    /// The slot of a file's last block, which must be `block_id` and not
    /// complete.
    fn open_last_block(&self, id: InodeId, block_id: i64) -> Result<u32, ApplyError> {
        self.file(id)?;
        let slot = self
            .namespace
            .get(id)
            .and_then(|f| f.block_slots().last().copied())
            .ok_or_else(|| ApplyError(format!("inode {id} has no blocks")))?;
        if self.blocks.id_of(slot) != block_id {
            return Err(ApplyError(format!(
                "block {block_id} is not the last block of inode {id}"
            )));
        }
        if self.blocks.info(slot).state == BlockState::Complete {
            return Err(ApplyError(format!(
                "the last block {block_id} of inode {id} is complete"
            )));
        }
        Ok(slot)
    }

    fn truncate(&mut self, truncate: &rdfs_proto::editlog::Truncate) -> Result<(), ApplyError> {
        let id = truncate.inode_id;
        self.file(id)?;
        let slots = self
            .namespace
            .get(id)
            .map(|f| f.block_slots().to_vec())
            .unwrap_or_default();
        // Everything is checked before the first change.
        let mut offset = 0u64;
        let mut keep = 0;
        let mut cut = None;
        for &slot in &slots {
            if offset >= truncate.new_length {
                break;
            }
            let length = self.blocks.info(slot).num_bytes;
            keep += 1;
            if offset + length > truncate.new_length {
                cut = Some((slot, truncate.new_length - offset));
            }
            offset += length;
        }
        if offset < truncate.new_length {
            return Err(ApplyError(format!(
                "inode {id} is {offset} bytes long, shorter than {}",
                truncate.new_length
            )));
        }
        if let Some((slot, _)) = cut
            && truncate.recovery_generation_stamp <= self.blocks.info(slot).generation_stamp
        {
            return Err(ApplyError(format!(
                "truncating inode {id} in the middle of a block needs a new generation stamp, not {}",
                truncate.recovery_generation_stamp
            )));
        }
        for &slot in slots[keep..].iter().rev() {
            if self.namespace.pop_block(id, slot)? {
                self.blocks.remove(slot, &mut self.datanodes);
            }
        }
        if let Some((slot, length)) = cut {
            self.blocks.start_truncate(
                slot,
                length,
                truncate.recovery_generation_stamp,
                &self.datanodes,
            );
            self.namespace.set_writer(id, &truncate.client_name)?;
            self.leases.add(&truncate.client_name, id, Instant::now());
        }
        self.namespace.set_times(id, Some(truncate.mtime), None)?;
        Ok(())
    }

    fn permission(&mut self, status: Option<&PermissionStatus>) -> Permission {
        let status = status.cloned().unwrap_or_default();
        Permission {
            owner: self.namespace.interner.intern(&status.owner),
            group: self.namespace.interner.intern(&status.group),
            mode: (status.mode & 0o7777) as u16,
        }
    }

    /// An inode's parent, checking that it exists.
    fn inode(&self, id: InodeId) -> Result<InodeId, ApplyError> {
        Ok(self
            .namespace
            .get(id)
            .ok_or_else(|| missing("the", id))?
            .parent())
    }

    /// Checks that moving `id` under `new_parent` as `name` can succeed, so
    /// the inode is never detached and then left without a parent.
    fn check_rename(
        &self,
        id: InodeId,
        new_parent: InodeId,
        name: &[u8],
    ) -> Result<(), ApplyError> {
        if id == rdfs_common::ids::ROOT_INODE_ID {
            return Err(ApplyError("the root cannot be renamed".into()));
        }
        let parent = self
            .namespace
            .get(new_parent)
            .ok_or_else(|| missing("new parent", new_parent))?;
        if !parent.is_dir() {
            return Err(ApplyError(format!(
                "new parent inode {new_parent} is not a directory"
            )));
        }
        if self.namespace.child(new_parent, name).is_some() {
            return Err(ApplyError(format!(
                "{}/{} already exists",
                self.namespace.path_of(new_parent),
                String::from_utf8_lossy(name)
            )));
        }
        if self.namespace.is_ancestor_or_self(id, new_parent) {
            return Err(ApplyError(format!(
                "inode {id} cannot move under itself (inode {new_parent})"
            )));
        }
        Ok(())
    }

    /// A file's slot and replication.
    fn file(&self, id: InodeId) -> Result<(u32, u16), ApplyError> {
        let inode = self.namespace.get(id).ok_or_else(|| missing("file", id))?;
        if inode.is_dir() {
            return Err(ApplyError(format!("inode {id} is a directory, not a file")));
        }
        Ok((inode.slot(), inode.replication()))
    }

    fn block_slot(&self, block_id: i64) -> Result<u32, ApplyError> {
        self.blocks
            .slot_of(block_id)
            .ok_or_else(|| ApplyError(format!("block {block_id} does not exist")))
    }
}

fn missing(what: &str, id: InodeId) -> ApplyError {
    ApplyError(format!("{what} inode {id} does not exist"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdfs_common::ids::ROOT_INODE_ID;
    use rdfs_proto::editlog::{AddBlock, AddFile, BlockRef, Mkdir, Rename};

    use super::*;
    use crate::datanode_manager::Liveness;

    fn state() -> FsState {
        FsState {
            namespace: Namespace::new("hdfs", "supergroup", 0o755, 1),
            blocks: BlockManager::new("BP-test".into(), 1),
            datanodes: DatanodeManager::new(Liveness {
                stale_after: Duration::from_secs(30),
                dead_after: Duration::from_secs(600),
            }),
            leases: LeaseManager::default(),
        }
    }

    fn mkdir(state: &mut FsState, id: InodeId, parent: InodeId, name: &str) {
        state
            .apply(&Op::Mkdir(Mkdir {
                inode_id: id,
                parent_id: parent,
                name: name.as_bytes().to_vec(),
                permission: None,
                mtime: 2,
                acl: Vec::new(),
            }))
            .unwrap();
    }

    #[test]
    fn rejected_renames_leave_the_tree_intact() {
        let mut state = state();
        let a = ROOT_INODE_ID + 1;
        let b = ROOT_INODE_ID + 2;
        mkdir(&mut state, a, ROOT_INODE_ID, "a");
        mkdir(&mut state, b, a, "b");
        let rename = |inode_id, new_parent_id, name: &str| {
            Op::Rename(Rename {
                inode_id,
                new_parent_id,
                new_name: name.as_bytes().to_vec(),
                mtime: 3,
            })
        };
        // Into its own subtree, onto an existing name, under a missing parent.
        for op in [
            rename(a, b, "a"),
            rename(a, a, "x"),
            rename(b, ROOT_INODE_ID, "a"),
            rename(b, ROOT_INODE_ID + 99, "x"),
        ] {
            assert!(state.apply(&op).is_err(), "{op:?} should be rejected");
            assert_eq!(state.namespace.path_of(b), "/a/b");
            assert_eq!(state.namespace.child(ROOT_INODE_ID, b"a"), Some(a));
        }
        state.apply(&rename(b, ROOT_INODE_ID, "c")).unwrap();
        assert_eq!(state.namespace.path_of(b), "/c");
    }

    #[test]
    fn rejected_add_block_commits_nothing() {
        let mut state = state();
        let file = ROOT_INODE_ID + 1;
        state
            .apply(&Op::AddFile(AddFile {
                inode_id: file,
                parent_id: ROOT_INODE_ID,
                name: b"f".to_vec(),
                permission: None,
                mtime: 2,
                replication: 1,
                block_size: 1024,
                client_name: "c".into(),
                acl: Vec::new(),
            }))
            .unwrap();
        let (first, _) = state.blocks.next_block().unwrap();
        let block = |block_id, num_bytes| BlockRef {
            block_id,
            generation_stamp: 1001,
            num_bytes,
        };
        let add = |previous, new| {
            Op::AddBlock(AddBlock {
                inode_id: file,
                previous,
                block: Some(new),
            })
        };
        state.apply(&add(None, block(first, 0))).unwrap();
        // The new block reuses an id that is taken: the previous block must
        // stay under construction.
        let err = state.apply(&add(Some(block(first, 1024)), block(first, 0)));
        assert!(err.is_err());
        let slot = state.blocks.slot_of(first).unwrap();
        assert_eq!(state.blocks.info(slot).num_bytes, 0);
        assert_eq!(state.namespace.get(file).unwrap().block_slots(), &[slot]);
    }
}
