//! Applying an edit to the in-memory state. This is the only code that
//! changes the namespace and the block map's membership, and it runs both
//! for a live change (right after validation) and when the edit log is
//! replayed at start-up, so the two can never disagree.

use rdfs_proto::editlog::{BlockRef, PermissionStatus};

use crate::block_manager::BlockManager;
use crate::datanode_manager::DatanodeManager;
use crate::edit_log::Op;
use crate::namespace::{InodeId, Namespace, NewInode, NewKind, Permission};

/// Everything the namesystem lock protects.
#[derive(Debug)]
pub struct FsState {
    pub namespace: Namespace,
    pub blocks: BlockManager,
    pub datanodes: DatanodeManager,
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
                self.namespace
                    .set_times(add.parent_id, Some(add.mtime), None)?;
            }
            Op::AddBlock(add) => {
                let block = add
                    .block
                    .as_ref()
                    .ok_or_else(|| ApplyError("AddBlock without a block".into()))?;
                let (inode_slot, replication) = self.file(add.inode_id)?;
                if let Some(previous) = &add.previous {
                    let slot = self.block_slot(previous.block_id)?;
                    self.blocks
                        .commit(slot, previous.num_bytes, &self.datanodes);
                }
                let slot = self.blocks.add_under_construction(
                    block.block_id,
                    block.generation_stamp,
                    inode_slot,
                    replication,
                )?;
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
                self.namespace
                    .set_times(close.inode_id, Some(close.mtime), Some(close.atime))?;
                self.namespace.clear_writer(close.inode_id)?;
                if let Some(BlockRef {
                    block_id,
                    num_bytes,
                    ..
                }) = close.last
                {
                    let slot = self.block_slot(block_id)?;
                    self.blocks.commit(slot, num_bytes, &self.datanodes);
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
                let removed = self.namespace.remove_subtree(delete.inode_id)?;
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
                permission.mode = (set.mode & 0o7777) as u16;
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
            Op::SetTimes(set) => {
                self.namespace
                    .set_times(set.inode_id, set.mtime, set.atime)?;
            }
        }
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
