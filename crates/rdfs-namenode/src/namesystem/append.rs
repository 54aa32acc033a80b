//! Writing again and writing on: append, truncate, fsync, and the calls of
//! a writer's pipeline recovery (a new generation stamp, the rebuilt
//! pipeline, replacement datanodes).

use std::collections::HashSet;
use std::time::Instant;

use rdfs_common::path;
use rdfs_common::protocol::{ExtendedBlock, FileStatus, LocatedBlock};
use rdfs_common::time::now_ms;
use rdfs_proto::editlog::{self as edit, BlockRef};

use super::access::PathUse;
use super::write::{offset_of, writable_file};
use super::{Caller, Namesystem, file_status};
use crate::apply::FsState;
use crate::block_manager::{BlockSlot, BlockState};
use crate::datanode_manager::DatanodeIndex;
use crate::edit_log::Op;
use crate::error::{NamenodeError, Result};
use crate::namespace::InodeId;
use crate::permission::{FsAction, Required};
use crate::placement;
use crate::retry_cache::Outcome;

use super::retry::Attempt;

/// What an append answers: the partial last block to write on (none when
/// the file ends on a block boundary) and the file's status.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendResult {
    pub block: Option<LocatedBlock>,
    pub status: FileStatus,
}

impl Namesystem {
    /// Reopens a closed file for `client` to write on (HDFS's
    /// `appendFile`).
    pub async fn append(&self, caller: &Caller, src: &str, client: &str) -> Result<AppendResult> {
        let components = path::components(src)?;
        let ticket = match self.attempt(caller).await? {
            Attempt::Run(ticket) => ticket,
            Attempt::Answered(outcome) => return outcome.into_append(),
        };
        let (txid, result) = {
            let mut state = self.state.write();
            self.check_writable(&state, || format!("Cannot append to file{src}"))?;
            let fs = &mut state.fs;
            let id = self
                .resolve_checked(
                    &fs.namespace,
                    caller,
                    &components,
                    Required::access(FsAction::WRITE),
                    PathUse::Access,
                )?
                .last()
                .ok_or_else(|| {
                    NamenodeError::FileNotFound(format!(
                        "failed to append to non-existent file {src} for client {}",
                        caller.machine
                    ))
                })?;
            self.open_file_for(fs, "APPEND_FILE", id, src, client, &caller.machine)?;
            let file = fs
                .namespace
                .get(id)
                .ok_or_else(|| NamenodeError::Io("file vanished".into()))?;
            let slots = file.block_slots().to_vec();
            let block_size = file.block_size();
            let last = slots.last().copied();
            if let Some(last) = last
                && fs.blocks.info(last).state != BlockState::Complete
            {
                return Err(NamenodeError::Io(format!(
                    "append: lastBlock={} of src={src} is not sufficiently replicated yet.",
                    fs.blocks.name(last)
                )));
            }
            let reopened = last.filter(|s| fs.blocks.info(*s).num_bytes < block_size);
            let txid = self.log_call(
                fs,
                Op::ReopenFile(edit::ReopenFile {
                    inode_id: id,
                    client_name: client.to_string(),
                    last_block_reopened: reopened.is_some(),
                }),
                caller.rpc.as_ref(),
            )?;
            fs.leases.set_machine(id, &caller.machine);
            let block = reopened.map(|slot| {
                let offset = offset_of(fs, &slots, slots.len() - 1);
                fs.blocks.located(slot, offset, &fs.datanodes)
            });
            let inode = fs
                .namespace
                .get(id)
                .ok_or_else(|| NamenodeError::Io("file vanished".into()))?;
            tracing::info!(
                src,
                client,
                reopened_block = block.is_some(),
                "file reopened for append"
            );
            let status = file_status(fs, inode, Vec::new());
            let result = AppendResult { block, status };
            ticket.succeeded(&Outcome::Append(Box::new(result.clone())), txid);
            (txid, result)
        };
        self.sync(Some(txid)).await?;
        Ok(result)
    }

    /// Checks that `id` is a file another writer does not hold (taking it
    /// from one silent past the soft limit when its blocks allow).
    fn open_file_for(
        &self,
        fs: &mut FsState,
        operation: &str,
        id: InodeId,
        src: &str,
        client: &str,
        machine: &str,
    ) -> Result<()> {
        let file = fs
            .namespace
            .get(id)
            .ok_or_else(|| NamenodeError::Io("file vanished".into()))?;
        if file.is_dir() {
            return Err(match operation {
                "APPEND_FILE" => NamenodeError::FileAlreadyExists(format!(
                    "Cannot append to directory {src}; already exists as a directory."
                )),
                _ => NamenodeError::FileNotFound(format!("Path is not a file: {src}")),
            });
        }
        if file.writer().is_some() {
            self.recover_lease_for(fs, operation, id, src, client, machine)?;
        }
        Ok(())
    }

    /// Cuts a file to `new_length` (HDFS's `truncate`): true when done at
    /// once (on a block boundary), false when the block holding the cut is
    /// being cut on its datanodes; the file is open until that recovery
    /// commits.
    pub async fn truncate(
        &self,
        caller: &Caller,
        src: &str,
        new_length: u64,
        client: &str,
    ) -> Result<bool> {
        let components = path::components(src)?;
        let ticket = match self.attempt(caller).await? {
            Attempt::Run(ticket) => ticket,
            Attempt::Answered(outcome) => return outcome.into_bool(),
        };
        let (txid, done) = {
            let mut state = self.state.write();
            self.check_writable(&state, || format!("Cannot truncate for {src}"))?;
            let fs = &mut state.fs;
            let before = self.journal.last_txid();
            let id = self
                .resolve_checked(
                    &fs.namespace,
                    caller,
                    &components,
                    Required::access(FsAction::WRITE),
                    PathUse::Access,
                )?
                .last()
                .ok_or_else(|| {
                    NamenodeError::FileNotFound(format!("File does not exist: {src}"))
                })?;
            self.open_file_for(fs, "TRUNCATE_FILE", id, src, client, &caller.machine)?;
            let slots = fs
                .namespace
                .get(id)
                .map(|f| f.block_slots().to_vec())
                .unwrap_or_default();
            let old_length: u64 = slots.iter().map(|s| fs.blocks.info(*s).num_bytes).sum();
            if new_length > old_length {
                return Err(NamenodeError::IllegalArgument(format!(
                    "Cannot truncate to a larger file size. Current size: {old_length}, truncate size: {new_length}."
                )));
            }
            if new_length == old_length {
                let after = self.journal.last_txid();
                (after != before)
                    .then_some(after)
                    .map_or((None, true), |t| (Some(t), true))
            } else {
                if let Some(open) = slots
                    .iter()
                    .find(|s| fs.blocks.info(**s).state != BlockState::Complete)
                {
                    return Err(NamenodeError::Io(format!(
                        "truncate: block {} of {src} is not complete yet",
                        fs.blocks.name(*open)
                    )));
                }
                let mut offset = 0u64;
                let mut cut: Option<BlockSlot> = None;
                for &slot in &slots {
                    let length = fs.blocks.info(slot).num_bytes;
                    if offset < new_length && new_length < offset + length {
                        cut = Some(slot);
                    }
                    offset += length;
                }
                let recovery_generation_stamp = match cut {
                    Some(_) => fs.blocks.last_generation_stamp + 1,
                    None => 0,
                };
                let txid = self.log_call(
                    fs,
                    Op::Truncate(edit::Truncate {
                        inode_id: id,
                        new_length,
                        client_name: client.to_string(),
                        mtime: now_ms(),
                        recovery_generation_stamp,
                    }),
                    caller.rpc.as_ref(),
                )?;
                ticket.succeeded(&Outcome::Bool(cut.is_none()), txid);
                if let Some(slot) = cut {
                    fs.leases.set_machine(id, &caller.machine);
                    self.dispatch_recovery(fs, slot, src);
                }
                tracing::info!(
                    src,
                    old_length,
                    new_length,
                    on_boundary = cut.is_none(),
                    "file truncated"
                );
                (Some(txid), cut.is_none())
            }
        };
        self.sync(txid).await?;
        Ok(done)
    }

    /// Records the length the writer has flushed of its last block (hsync
    /// with an update of the length).
    pub async fn fsync(
        &self,
        src: &str,
        client: &str,
        last_block_length: u64,
        file_id: u64,
    ) -> Result<()> {
        let txid = {
            let mut state = self.state.write();
            self.check_writable(&state, || format!("Cannot fsync file {src}"))?;
            let fs = &mut state.fs;
            let id = writable_file(fs, src, file_id, client)?;
            fs.leases.renew(client, Instant::now());
            let file = fs
                .namespace
                .get(id)
                .ok_or_else(|| NamenodeError::Io("file vanished".into()))?;
            let block_size = file.block_size();
            let Some(last) = file.block_slots().last().copied() else {
                return Ok(());
            };
            let info = fs.blocks.info(last);
            if info.state != BlockState::UnderConstruction || last_block_length <= info.num_bytes {
                return Ok(());
            }
            if last_block_length > block_size {
                return Err(NamenodeError::IllegalArgument(format!(
                    "fsync of {src}: the last block cannot hold {last_block_length} bytes, more than the file's block size {block_size}"
                )));
            }
            Some(self.log(
                fs,
                Op::UpdateLastBlock(edit::UpdateLastBlock {
                    inode_id: id,
                    block: Some(BlockRef {
                        block_id: info.block_id,
                        generation_stamp: info.generation_stamp,
                        num_bytes: last_block_length,
                    }),
                }),
            )?)
        };
        self.sync(txid).await
    }

    /// The file and slot of `block`, which must be the last block, under
    /// construction, of a file `client` writes (HDFS's `checkUCBlock`).
    fn under_construction_block(
        fs: &FsState,
        block: &ExtendedBlock,
        client: &str,
    ) -> Result<(InodeId, BlockSlot)> {
        let slot = fs
            .blocks
            .slot_of(block.block_id)
            .ok_or_else(|| NamenodeError::Io(format!("{block} does not exist.")))?;
        let info = fs.blocks.info(slot);
        if info.state != BlockState::UnderConstruction {
            return Err(NamenodeError::Io(format!(
                "{block} has not been allocated to any file or is not UNDER_CONSTRUCTION (it is {:?})",
                info.state
            )));
        }
        let id = fs.namespace.inodes.id_of(info.inode);
        let file = fs
            .namespace
            .get(id)
            .filter(|f| f.writer().is_some())
            .ok_or_else(|| {
                NamenodeError::Io(format!(
                    "The file {block} belonged to does not exist or it is not under construction."
                ))
            })?;
        if file.writer() != Some(client) {
            return Err(NamenodeError::LeaseExpired(format!(
                "Lease mismatch: {block} is accessed by a non lease holder {client}"
            )));
        }
        if file.block_slots().last() != Some(&slot) {
            return Err(NamenodeError::Io(format!(
                "{block} is not the last block of {}",
                fs.namespace.path_of(id)
            )));
        }
        Ok((id, slot))
    }

    /// A new generation stamp for the block under construction, for a
    /// pipeline set up again (recovery) or reopened (append).
    pub async fn update_block_for_pipeline(
        &self,
        block: &ExtendedBlock,
        client: &str,
    ) -> Result<LocatedBlock> {
        let (txid, located) = {
            let mut state = self.state.write();
            self.check_writable(&state, || {
                format!("Cannot get a new generation stamp and an access token for block {block}")
            })?;
            let fs = &mut state.fs;
            let (id, slot) = Self::under_construction_block(fs, block, client)?;
            fs.leases.renew(client, Instant::now());
            let generation_stamp = fs.blocks.last_generation_stamp + 1;
            let txid = self.log(
                fs,
                Op::SetGenerationStamp(edit::SetGenerationStamp { generation_stamp }),
            )?;
            let slots = fs
                .namespace
                .get(id)
                .map(|f| f.block_slots().to_vec())
                .unwrap_or_default();
            let offset = offset_of(fs, &slots, slots.len() - 1);
            let mut located = fs.blocks.located(slot, offset, &fs.datanodes);
            located.block.generation_stamp = generation_stamp;
            tracing::info!(block = %block, generation_stamp, client, "new generation stamp for a pipeline");
            (txid, located)
        };
        self.sync(Some(txid)).await?;
        Ok(located)
    }

    /// The writer's pipeline was rebuilt: the block takes `new_block`'s
    /// generation stamp and length and these datanodes; replicas left at an
    /// older generation stamp are stale.
    pub async fn update_pipeline(
        &self,
        caller: &Caller,
        client: &str,
        old_block: &ExtendedBlock,
        new_block: &ExtendedBlock,
        new_nodes: &[String],
        new_storages: &[String],
    ) -> Result<()> {
        let ticket = match self.attempt(caller).await? {
            Attempt::Run(ticket) => ticket,
            Attempt::Answered(outcome) => return outcome.into_done(),
        };
        let txid = {
            let mut state = self.state.write();
            self.check_writable(&state, || "Pipeline not updated".to_string())?;
            let fs = &mut state.fs;
            let (id, slot) = Self::under_construction_block(fs, old_block, client)?;
            fs.leases.renew(client, Instant::now());
            let info = fs.blocks.info(slot);
            let current = fs.blocks.name(slot);
            if new_block.block_id != old_block.block_id {
                return Err(NamenodeError::IllegalArgument(format!(
                    "Update {old_block} to {new_block}: the block ids differ"
                )));
            }
            let nodes: Vec<(DatanodeIndex, Option<&String>)> = new_nodes
                .iter()
                .enumerate()
                .map(|(i, uuid)| {
                    fs.datanodes
                        .index_of(uuid)
                        .map(|index| (index, new_storages.get(i)))
                        .ok_or_else(|| {
                            NamenodeError::IllegalArgument(format!(
                                "Update {old_block}: datanode {uuid} is not registered"
                            ))
                        })
                })
                .collect::<Result<_>>()?;
            let txid = if info.generation_stamp == new_block.generation_stamp
                && info.num_bytes == new_block.num_bytes
            {
                // A retry whose answer was lost.
                self.journal.last_txid()
            } else {
                if old_block.generation_stamp != info.generation_stamp {
                    return Err(NamenodeError::Io(format!(
                        "Update {old_block} but the last block is {current}: the generation stamps differ"
                    )));
                }
                if new_block.generation_stamp <= info.generation_stamp {
                    return Err(NamenodeError::Io(format!(
                        "Update {old_block} but the new block {new_block} does not have a larger generation stamp than the last block {current}"
                    )));
                }
                if new_block.generation_stamp > fs.blocks.last_generation_stamp {
                    return Err(NamenodeError::Io(format!(
                        "Update {old_block} to {new_block}: generation stamp {} was never handed out (the newest is {})",
                        new_block.generation_stamp, fs.blocks.last_generation_stamp
                    )));
                }
                if new_block.num_bytes < info.num_bytes {
                    return Err(NamenodeError::Io(format!(
                        "Update {old_block} (size={}) to a smaller size block {new_block} (size={})",
                        info.num_bytes, new_block.num_bytes
                    )));
                }
                let block_size = fs.namespace.get(id).map_or(0, |f| f.block_size());
                if new_block.num_bytes > block_size {
                    return Err(NamenodeError::IllegalArgument(format!(
                        "Update {old_block} to {new_block}: {} bytes is more than the file's block size {block_size}",
                        new_block.num_bytes
                    )));
                }
                let txid = self.log_call(
                    fs,
                    Op::UpdateLastBlock(edit::UpdateLastBlock {
                        inode_id: id,
                        block: Some(BlockRef {
                            block_id: new_block.block_id,
                            generation_stamp: new_block.generation_stamp,
                            num_bytes: new_block.num_bytes,
                        }),
                    }),
                    caller.rpc.as_ref(),
                )?;
                tracing::info!(old = %old_block, new = %new_block, nodes = ?new_nodes, client, "pipeline updated");
                ticket.succeeded(&Outcome::Done, txid);
                txid
            };
            for (index, storage_id) in &nodes {
                if let Some(storage_id) = storage_id.filter(|s| !s.is_empty())
                    && let Some(node) = fs.datanodes.get_mut(*index)
                {
                    node.storage_index(storage_id);
                }
            }
            let pipeline: Vec<DatanodeIndex> = nodes.iter().map(|(dn, _)| *dn).collect();
            fs.blocks.set_expected_locations(slot, pipeline);
            Some(txid)
        };
        self.sync(txid).await
    }

    /// More datanodes for a pipeline that lost some
    /// (replace-datanode-on-failure): the existing ones in order, then the
    /// new ones.
    #[allow(clippy::too_many_arguments)]
    pub fn get_additional_datanode(
        &self,
        src: &str,
        block: &ExtendedBlock,
        existings: &[String],
        excludes: &[String],
        num_additional_nodes: u32,
        client: &str,
        file_id: u64,
    ) -> Result<LocatedBlock> {
        let mut state = self.state.write();
        let fs = &mut state.fs;
        let id = writable_file(fs, src, file_id, client)?;
        fs.leases.renew(client, Instant::now());
        let file = fs
            .namespace
            .get(id)
            .ok_or_else(|| NamenodeError::Io("file vanished".into()))?;
        let slots = file.block_slots().to_vec();
        let block_size = file.block_size();
        let index = slots
            .iter()
            .position(|s| fs.blocks.id_of(*s) == block.block_id)
            .ok_or_else(|| NamenodeError::Io(format!("{block} is not a block of {src}")))?;
        let existing: Vec<DatanodeIndex> = existings
            .iter()
            .map(|uuid| {
                fs.datanodes.index_of(uuid).ok_or_else(|| {
                    NamenodeError::IllegalArgument(format!(
                        "getAdditionalDatanode: datanode {uuid} is not registered"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let excluded: HashSet<DatanodeIndex> = excludes
            .iter()
            .filter_map(|uuid| fs.datanodes.index_of(uuid))
            .collect();
        let wanted = num_additional_nodes as usize;
        let writer = fs
            .leases
            .machine_of(id)
            .and_then(|host| fs.datanodes.on_host(host, &excluded))
            .filter(|dn| !existing.contains(dn));
        let chosen = placement::choose_targets(
            &fs.datanodes,
            placement::Placement {
                wanted,
                chosen: &existing,
                excluded: &excluded,
                writer,
                block_size,
            },
            Instant::now(),
        );
        let added: Vec<DatanodeIndex> = chosen
            .into_iter()
            .filter(|dn| !existing.contains(dn))
            .take(wanted)
            .collect();
        if wanted > 0 && added.is_empty() {
            return Err(NamenodeError::NotEnoughReplicas(format!(
                "Could not find {wanted} additional datanode(s) for {block} of {src}: there are {} datanode(s) running, {} in the pipeline and {} excluded",
                fs.datanodes.live_count(),
                existing.len(),
                excluded.len()
            )));
        }
        let offset = offset_of(fs, &slots, index);
        let mut located = LocatedBlock {
            block: block.clone(),
            offset,
            locations: Vec::new(),
            storage_ids: Vec::new(),
            corrupt: false,
            block_token: Default::default(),
        };
        for dn in existing.iter().chain(&added) {
            if let Some(node) = fs.datanodes.get(*dn) {
                located.locations.push(node.info());
                located.storage_ids.push(node.storage_id_for(0).to_string());
            }
        }
        Ok(located)
    }
}
