//! Leases and lease recovery: renewing, taking a file from a writer that
//! went silent (HDFS's `recoverLeaseInternal` and `internalReleaseLease`),
//! the lease monitor, and the outcome of block recovery as the primary
//! datanode commits it (`commitBlockSynchronization`).

use std::time::Instant;

use rdfs_common::path;
use rdfs_common::protocol::ExtendedBlock;
use rdfs_common::time::now_ms;
use rdfs_proto::editlog::{self as edit, BlockRef};

use super::access::PathUse;
use super::{Caller, Namesystem};
use crate::apply::FsState;
use crate::block_manager::{BlockSlot, BlockState};
use crate::datanode_manager::PendingRecovery;
use crate::edit_log::{Op, TxId};
use crate::error::{NamenodeError, Result};
use crate::lease::NAMENODE_LEASE_HOLDER;
use crate::namespace::InodeId;
use crate::permission::{FsAction, Required};

/// A block's reference as the edit log records it.
pub(super) fn block_ref(fs: &FsState, slot: BlockSlot) -> BlockRef {
    let info = fs.blocks.info(slot);
    BlockRef {
        block_id: info.block_id,
        generation_stamp: info.generation_stamp,
        num_bytes: info.num_bytes,
    }
}

impl Namesystem {
    /// Renews every lease `client` holds; fine when it holds none.
    pub fn renew_lease(&self, client: &str) -> Result<()> {
        let mut state = self.state.write();
        self.check_writable(&state, || format!("Cannot renew lease for {client}"))?;
        state.fs.leases.renew(client, Instant::now());
        Ok(())
    }

    /// Takes the file from its writer now (`hdfs debug recoverLease`):
    /// true when it is closed. While a recovery is already under way, false
    /// without starting another, unless it has run past the soft limit.
    pub async fn recover_lease(&self, caller: &Caller, src: &str, client: &str) -> Result<bool> {
        let components = path::components(src)?;
        let (txid, closed) = 'recover: {
            let mut state = self.state.write();
            self.check_writable(&state, || format!("Cannot recover the lease of {src}"))?;
            let fs = &mut state.fs;
            let resolved = self.resolve_checked(
                &fs.namespace,
                caller,
                &components,
                Required::TRAVERSE,
                PathUse::Access,
            )?;
            let id = resolved.last().ok_or_else(|| {
                NamenodeError::FileNotFound(format!("File does not exist: {src}"))
            })?;
            let file = fs
                .namespace
                .get(id)
                .ok_or_else(|| NamenodeError::Io("file vanished".into()))?;
            if file.is_dir() {
                return Err(NamenodeError::FileNotFound(format!(
                    "Path is not a file: {src}"
                )));
            }
            let Some(holder) = file.writer().map(str::to_string) else {
                // Closed; a close may still be syncing.
                break 'recover (self.journal.last_txid(), true);
            };
            // Only taking a file from its writer needs write access.
            self.check_resolved(
                &fs.namespace,
                caller,
                &components,
                &resolved,
                Required::access(FsAction::WRITE),
            )?;
            let last = file.block_slots().last().copied();
            let recovering = last
                .and_then(|slot| fs.blocks.recovery(slot))
                .is_some_and(|r| r.started.elapsed() <= self.config.lease_soft_limit);
            if recovering {
                tracing::info!(
                    src,
                    client,
                    holder,
                    "recoverLease: a block recovery is already under way"
                );
                return Ok(false);
            }
            tracing::info!(
                src,
                client,
                holder,
                "recoverLease: taking the file from its writer"
            );
            let closed = self.internal_release_lease(fs, id)?;
            (self.journal.last_txid(), closed)
        };
        self.sync(Some(txid)).await?;
        Ok(closed)
    }

    /// Another client wants a file under construction (create, append,
    /// truncate): HDFS's `recoverLeaseInternal` without force. Ok(true)
    /// when the file got closed and may be taken; otherwise the error to
    /// answer (AlreadyBeingCreated, or RecoveryInProgress once lease
    /// recovery has started).
    pub(super) fn recover_lease_for(
        &self,
        fs: &mut FsState,
        operation: &str,
        id: InodeId,
        src: &str,
        client: &str,
        machine: &str,
    ) -> Result<bool> {
        let file = fs
            .namespace
            .get(id)
            .ok_or_else(|| NamenodeError::Io("file vanished".into()))?;
        let Some(holder) = file.writer().map(str::to_string) else {
            return Ok(true);
        };
        let last = file.block_slots().last().copied();
        let failed = |reason: String| {
            format!("Failed to {operation} {src} for {client} on {machine} because {reason}")
        };
        if holder == client {
            return Err(NamenodeError::AlreadyBeingCreated(failed(
                "current leaseholder is trying to recreate file.".to_string(),
            )));
        }
        let holder_at = match fs.leases.machine_of(id) {
            Some(at) => format!("{holder} on {at}"),
            None => holder.clone(),
        };
        let soft_expired = fs
            .leases
            .expired(&holder, Instant::now(), self.config.lease_soft_limit)
            || fs.leases.holder_of(id).is_none();
        if soft_expired {
            tracing::info!(
                src,
                holder,
                client,
                operation,
                "the writer's soft limit has passed: recovering its lease"
            );
            if self.internal_release_lease(fs, id)? {
                return Ok(true);
            }
            return Err(NamenodeError::RecoveryInProgress(failed(
                "lease recovery is in progress. Try again later.".to_string(),
            )));
        }
        if last.is_some_and(|slot| fs.blocks.info(slot).state == BlockState::UnderRecovery) {
            return Err(NamenodeError::RecoveryInProgress(failed(format!(
                "another recovery is in progress by {holder_at}"
            ))));
        }
        Err(NamenodeError::AlreadyBeingCreated(failed(format!(
            "this file lease is currently owned by {holder_at}"
        ))))
    }

    /// Takes a file from its writer (HDFS's `internalReleaseLease`): closes
    /// it when its blocks allow, else leaves it for a later attempt or
    /// starts recovering its last block. True when the file is closed now.
    /// The caller holds the lock and syncs the edits afterwards.
    pub(super) fn internal_release_lease(&self, fs: &mut FsState, id: InodeId) -> Result<bool> {
        let file = fs
            .namespace
            .get(id)
            .ok_or_else(|| NamenodeError::Io(format!("inode {id} vanished")))?;
        if file.writer().is_none() {
            return Ok(true);
        }
        let src = fs.namespace.path_of(id);
        let slots = file.block_slots().to_vec();
        let Some(&last) = slots.last() else {
            self.close_file(fs, id)?;
            tracing::info!(src, "lease recovery closed a file without blocks");
            return Ok(true);
        };
        if slots.len() >= 2 {
            let penultimate = slots[slots.len() - 2];
            if fs.blocks.info(penultimate).state != BlockState::Complete {
                tracing::info!(src, block = %fs.blocks.name(penultimate),
                    "lease recovery waits: the penultimate block does not have its minimum replicas yet");
                return Ok(false);
            }
        }
        let info = fs.blocks.info(last);
        match info.state {
            BlockState::Complete => {
                self.close_file(fs, id)?;
                tracing::info!(
                    src,
                    "lease recovery closed the file: every block is complete"
                );
                Ok(true)
            }
            BlockState::Committed => {
                let readable = fs.blocks.counts(last, &fs.datanodes).readable();
                if readable >= self.config.min_replication {
                    self.close_file(fs, id)?;
                    tracing::info!(
                        src,
                        "lease recovery closed the file: its committed last block has its minimum replicas"
                    );
                    Ok(true)
                } else {
                    tracing::info!(src, block = %fs.blocks.name(last), readable,
                        "lease recovery waits: the committed last block does not have its minimum replicas yet");
                    Ok(false)
                }
            }
            BlockState::UnderConstruction | BlockState::UnderRecovery => {
                let truncating = fs.blocks.recovery(last).is_some_and(|r| r.truncate);
                if info.num_bytes == 0
                    && !truncating
                    && fs.blocks.replicas(last).next().is_none()
                    && fs.blocks.expected_locations(last).is_empty()
                {
                    self.log(
                        fs,
                        Op::AbandonBlock(edit::AbandonBlock {
                            inode_id: id,
                            block_id: info.block_id,
                        }),
                    )?;
                    self.close_file(fs, id)?;
                    tracing::info!(src, block = %fs.blocks.name(last),
                        "lease recovery dropped an empty last block no datanode has and closed the file");
                    return Ok(true);
                }
                let recovery_id = fs.blocks.last_generation_stamp + 1;
                self.log(
                    fs,
                    Op::SetGenerationStamp(edit::SetGenerationStamp {
                        generation_stamp: recovery_id,
                    }),
                )?;
                self.log(
                    fs,
                    Op::ReassignLease(edit::ReassignLease {
                        inode_id: id,
                        new_holder: NAMENODE_LEASE_HOLDER.to_string(),
                    }),
                )?;
                self.dispatch_recovery(fs, last, &src);
                Ok(false)
            }
        }
    }

    /// Closes a file whose blocks are all complete or committed (a
    /// CloseFile edit completes them).
    fn close_file(&self, fs: &mut FsState, id: InodeId) -> Result<TxId> {
        let last = fs
            .namespace
            .get(id)
            .and_then(|f| f.block_slots().last().copied())
            .map(|slot| block_ref(fs, slot));
        let now = now_ms();
        self.log(
            fs,
            Op::CloseFile(edit::CloseFile {
                inode_id: id,
                last,
                mtime: now,
                atime: now,
            }),
        )
    }

    /// Asks the next primary datanode to lead the recovery of a block
    /// under recovery (sent with its next heartbeat).
    pub(super) fn dispatch_recovery(&self, fs: &mut FsState, slot: BlockSlot, src: &str) {
        let FsState {
            blocks, datanodes, ..
        } = fs;
        let Some(recovery_id) = blocks.recovery(slot).map(|r| r.recovery_id) else {
            return;
        };
        let block = blocks.name(slot);
        match blocks.choose_primary(slot, datanodes) {
            Some(primary) => {
                datanodes.queue_recovery(
                    primary,
                    PendingRecovery {
                        block_id: block.block_id,
                        recovery_id,
                    },
                );
                let primary = datanodes
                    .get(primary)
                    .map(|d| d.id.xfer_addr())
                    .unwrap_or_default();
                tracing::info!(src, block = %block, recovery_id, primary = %primary,
                    "block recovery started");
            }
            None => {
                tracing::warn!(src, block = %block, recovery_id,
                    "block recovery cannot start: no live datanode may hold a replica; retried after the soft limit");
            }
        }
    }

    /// One round of the lease monitor: files of writers silent past the
    /// hard limit are taken from them, and recoveries that did not finish
    /// within the soft limit are tried again with a new recovery id and the
    /// next primary. Nothing happens in safe mode.
    pub async fn check_leases(&self, now: Instant) -> Result<()> {
        let txid = {
            let mut state = self.state.write();
            if state.safe_mode.is_on() {
                return Ok(());
            }
            let fs = &mut state.fs;
            let before = self.journal.last_txid();
            for (holder, id) in fs.leases.past_hard_limit(now, self.config.lease_hard_limit) {
                if fs.leases.holder_of(id) != Some(holder.as_str()) {
                    continue;
                }
                let src = fs.namespace.path_of(id);
                tracing::info!(
                    holder,
                    src,
                    "lease expired (hard limit): recovering the file"
                );
                if let Err(err) = self.internal_release_lease(fs, id) {
                    tracing::warn!(holder, src, error = %err, "lease recovery failed");
                }
            }
            let soft = self.config.lease_soft_limit;
            let namenode_lease_due = fs.leases.expired(NAMENODE_LEASE_HOLDER, now, soft);
            let mut retried_namenode_files = false;
            let open_files: Vec<InodeId> = fs
                .leases
                .files_of(NAMENODE_LEASE_HOLDER)
                .into_iter()
                .chain(fs.blocks.recovering_files(&fs.namespace))
                .collect();
            let mut seen = std::collections::HashSet::new();
            for id in open_files {
                if !seen.insert(id) {
                    continue;
                }
                let Some(file) = fs.namespace.get(id) else {
                    continue;
                };
                if file.writer().is_none() {
                    continue;
                }
                let last = file.block_slots().last().copied();
                let due = match last.and_then(|slot| fs.blocks.recovery(slot)) {
                    Some(recovery) => now.saturating_duration_since(recovery.started) > soft,
                    None => {
                        fs.leases.holder_of(id) == Some(NAMENODE_LEASE_HOLDER) && namenode_lease_due
                    }
                };
                if !due {
                    continue;
                }
                retried_namenode_files = true;
                let src = fs.namespace.path_of(id);
                tracing::info!(
                    src,
                    "block recovery did not finish within the soft limit: trying again"
                );
                if let Err(err) = self.internal_release_lease(fs, id) {
                    tracing::warn!(src, error = %err, "lease recovery failed");
                }
            }
            if retried_namenode_files {
                fs.leases.renew(NAMENODE_LEASE_HOLDER, now);
            }
            let after = self.journal.last_txid();
            (after != before).then_some(after)
        };
        self.sync(txid).await
    }

    /// The outcome of a block recovery, from its primary datanode (HDFS's
    /// `commitBlockSynchronization`).
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_block_synchronization(
        &self,
        block: &ExtendedBlock,
        new_generation_stamp: u64,
        new_length: u64,
        close_file: bool,
        delete_block: bool,
        new_targets: &[String],
        new_target_storages: &[String],
    ) -> Result<()> {
        let txid = 'commit: {
            let mut state = self.state.write();
            self.check_writable(&state, || {
                format!("Cannot commitBlockSynchronization while in safe mode ({block})")
            })?;
            let fs = &mut state.fs;
            let Some(slot) = fs.blocks.slot_of(block.block_id) else {
                if delete_block {
                    // Already dropped (a retry).
                    return Ok(());
                }
                return Err(NamenodeError::Io(format!("Block (={block}) not found")));
            };
            let info = fs.blocks.info(slot);
            let id = fs.namespace.inodes.id_of(info.inode);
            let file = fs
                .namespace
                .get(id)
                .ok_or_else(|| NamenodeError::Io(format!("the file of block {block} vanished")))?;
            let src = fs.namespace.path_of(id);
            if file.writer().is_none() {
                // A retry of a commit that closed the file.
                if info.generation_stamp == new_generation_stamp && info.num_bytes == new_length {
                    break 'commit self.journal.last_txid();
                }
                return Err(NamenodeError::Io(format!(
                    "Unexpected block (={block}) since the file (={src}) is not under construction"
                )));
            }
            if file.block_slots().last() != Some(&slot) {
                return Err(NamenodeError::Io(format!(
                    "Block (={block}) is not the last block of {src}"
                )));
            }
            let recovery_id = match (info.state, fs.blocks.recovery(slot)) {
                (BlockState::UnderRecovery, Some(recovery)) => recovery.recovery_id,
                _ => {
                    return Err(NamenodeError::Io(format!(
                        "Block (={block}) of {src} is not under recovery (its state is {:?}); the recovery id {new_generation_stamp} is not current",
                        info.state
                    )));
                }
            };
            if recovery_id != new_generation_stamp {
                return Err(NamenodeError::Io(format!(
                    "The recovery id {new_generation_stamp} does not match current recovery id {recovery_id} for block {block}"
                )));
            }
            if new_length > file.block_size() {
                return Err(NamenodeError::IllegalArgument(format!(
                    "block {block} of {src} cannot be {new_length} bytes, more than the file's block size {}",
                    file.block_size()
                )));
            }
            if delete_block {
                self.log(
                    fs,
                    Op::AbandonBlock(edit::AbandonBlock {
                        inode_id: id,
                        block_id: info.block_id,
                    }),
                )?;
                if close_file {
                    self.close_file(fs, id)?;
                }
                tracing::info!(src, block = %block, "commitBlockSynchronization: no replica was found; the block is dropped");
            } else {
                let targets: Vec<(u32, u16)> = new_targets
                    .iter()
                    .enumerate()
                    .filter_map(|(i, uuid)| {
                        let index = fs.datanodes.index_of(uuid)?;
                        let storage = match new_target_storages.get(i) {
                            Some(storage_id) if !storage_id.is_empty() => fs
                                .datanodes
                                .get_mut(index)
                                .map_or(0, |n| n.storage_index(storage_id)),
                            _ => 0,
                        };
                        Some((index, storage))
                    })
                    .collect();
                self.log(
                    fs,
                    Op::UpdateLastBlock(edit::UpdateLastBlock {
                        inode_id: id,
                        block: Some(BlockRef {
                            block_id: info.block_id,
                            generation_stamp: new_generation_stamp,
                            num_bytes: new_length,
                        }),
                    }),
                )?;
                let FsState {
                    blocks, datanodes, ..
                } = &mut *fs;
                blocks.recovered(slot, &targets, datanodes);
                if close_file {
                    self.close_file(fs, id)?;
                } else {
                    fs.leases.renew(NAMENODE_LEASE_HOLDER, Instant::now());
                }
                tracing::info!(src, block = %block, new_generation_stamp, new_length, close_file,
                    targets = ?new_targets, "commitBlockSynchronization: block recovered");
            }
            self.journal.last_txid()
        };
        self.sync(Some(txid)).await
    }
}
