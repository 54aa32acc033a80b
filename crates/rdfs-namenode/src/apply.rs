//! Applying an edit to the in-memory state. This is the only code that
//! changes the namespace and the block map's membership, and it runs both
//! for a live change (right after validation) and when the edit log is
//! replayed at start-up, so the two can never disagree.

use rdfs_proto::editlog::{BlockRef, PermissionStatus};

use crate::block_manager::BlockManager;
use crate::datanode_manager::DatanodeManager;
use crate::edit_log::Op;
use crate::namespace::{Directory, FileInode, Inode, InodeId, InodeKind, Namespace, Permission};

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

fn missing(what: &str, id: InodeId) -> ApplyError {
    ApplyError(format!("{what} inode {id} does not exist"))
}

impl FsState {
    pub fn apply(&mut self, op: &Op) -> Result<(), ApplyError> {
        match op {
            Op::Mkdir(mkdir) => {
                let permission = self.permission(mkdir.permission.as_ref());
                self.namespace
                    .insert(Inode {
                        id: mkdir.inode_id,
                        parent: mkdir.parent_id,
                        name: mkdir.name.clone().into_boxed_slice(),
                        mtime: mkdir.mtime,
                        atime: 0,
                        permission,
                        kind: InodeKind::Directory(Directory::default()),
                    })
                    .map_err(ApplyError)?;
                self.touch(mkdir.parent_id, mkdir.mtime);
            }
            Op::AddFile(add) => {
                let permission = self.permission(add.permission.as_ref());
                let replication = u16::try_from(add.replication)
                    .map_err(|_| ApplyError("replication out of range".into()))?;
                self.namespace
                    .insert(Inode {
                        id: add.inode_id,
                        parent: add.parent_id,
                        name: add.name.clone().into_boxed_slice(),
                        mtime: add.mtime,
                        atime: add.mtime,
                        permission,
                        kind: InodeKind::File(FileInode {
                            replication,
                            block_size: add.block_size,
                            blocks: Vec::new(),
                            writer: Some(add.client_name.as_str().into()),
                        }),
                    })
                    .map_err(ApplyError)?;
                self.touch(add.parent_id, add.mtime);
            }
            Op::AddBlock(add) => {
                let block = add
                    .block
                    .as_ref()
                    .ok_or_else(|| ApplyError("AddBlock without a block".into()))?;
                let replication = {
                    let file = self.file_mut(add.inode_id)?;
                    file.blocks.push(block.block_id);
                    file.replication
                };
                if let Some(previous) = &add.previous {
                    self.blocks
                        .commit(previous.block_id, previous.num_bytes, &self.datanodes);
                }
                self.blocks.add_under_construction(
                    block.block_id,
                    block.generation_stamp,
                    add.inode_id,
                    replication,
                );
            }
            Op::AbandonBlock(abandon) => {
                let file = self.file_mut(abandon.inode_id)?;
                if file.blocks.last() == Some(&abandon.block_id) {
                    file.blocks.pop();
                    self.blocks.remove(abandon.block_id, &mut self.datanodes);
                }
            }
            Op::CloseFile(close) => {
                let inode = self
                    .namespace
                    .get_mut(close.inode_id)
                    .ok_or_else(|| missing("closed file", close.inode_id))?;
                inode.mtime = close.mtime;
                inode.atime = close.atime;
                let InodeKind::File(file) = &mut inode.kind else {
                    return Err(ApplyError(format!(
                        "inode {} is not a file",
                        close.inode_id
                    )));
                };
                file.writer = None;
                let blocks = file.blocks.clone();
                if let Some(BlockRef {
                    block_id,
                    num_bytes,
                    ..
                }) = close.last
                {
                    self.blocks.commit(block_id, num_bytes, &self.datanodes);
                }
                // A closed file's blocks are complete, whether or not any
                // datanode has reported them yet (replay).
                for block_id in blocks {
                    let length = self.blocks.get(block_id).map_or(0, |b| b.num_bytes);
                    self.blocks.force_complete(block_id, length);
                }
            }
            Op::Rename(rename) => {
                let old_parent = self
                    .namespace
                    .get(rename.inode_id)
                    .map(|i| i.parent)
                    .ok_or_else(|| missing("renamed", rename.inode_id))?;
                self.namespace.detach(rename.inode_id).map_err(ApplyError)?;
                self.namespace
                    .attach(
                        rename.inode_id,
                        rename.new_parent_id,
                        rename.new_name.clone().into_boxed_slice(),
                    )
                    .map_err(ApplyError)?;
                self.touch(old_parent, rename.mtime);
                self.touch(rename.new_parent_id, rename.mtime);
            }
            Op::Delete(delete) => {
                let parent = self
                    .namespace
                    .get(delete.inode_id)
                    .map(|i| i.parent)
                    .ok_or_else(|| missing("deleted", delete.inode_id))?;
                let removed = self
                    .namespace
                    .remove_subtree(delete.inode_id)
                    .map_err(ApplyError)?;
                for block_id in removed.blocks {
                    self.blocks.remove(block_id, &mut self.datanodes);
                }
                self.touch(parent, delete.mtime);
            }
            Op::SetReplication(set) => {
                let replication = u16::try_from(set.replication)
                    .map_err(|_| ApplyError("replication out of range".into()))?;
                let file = self.file_mut(set.inode_id)?;
                file.replication = replication;
                let blocks = file.blocks.clone();
                for block_id in blocks {
                    self.blocks.set_replication(block_id, replication);
                }
            }
            Op::SetPermission(set) => {
                let inode = self
                    .namespace
                    .get_mut(set.inode_id)
                    .ok_or_else(|| missing("chmod", set.inode_id))?;
                inode.permission.mode = (set.mode & 0o7777) as u16;
            }
            Op::SetOwner(set) => {
                let owner = set
                    .owner
                    .as_deref()
                    .map(|o| self.namespace.interner.intern(o));
                let group = set
                    .group
                    .as_deref()
                    .map(|g| self.namespace.interner.intern(g));
                let inode = self
                    .namespace
                    .get_mut(set.inode_id)
                    .ok_or_else(|| missing("chown", set.inode_id))?;
                if let Some(owner) = owner {
                    inode.permission.owner = owner;
                }
                if let Some(group) = group {
                    inode.permission.group = group;
                }
            }
            Op::SetTimes(set) => {
                let inode = self
                    .namespace
                    .get_mut(set.inode_id)
                    .ok_or_else(|| missing("touch", set.inode_id))?;
                if let Some(mtime) = set.mtime {
                    inode.mtime = mtime;
                }
                if let Some(atime) = set.atime {
                    inode.atime = atime;
                }
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

    fn touch(&mut self, id: InodeId, mtime: u64) {
        if let Some(inode) = self.namespace.get_mut(id) {
            inode.mtime = mtime;
        }
    }

    fn file_mut(&mut self, id: InodeId) -> Result<&mut FileInode, ApplyError> {
        match self.namespace.get_mut(id).map(|inode| &mut inode.kind) {
            Some(InodeKind::File(file)) => Ok(file),
            Some(InodeKind::Directory(_)) => {
                Err(ApplyError(format!("inode {id} is a directory, not a file")))
            }
            None => Err(missing("file", id)),
        }
    }
}
