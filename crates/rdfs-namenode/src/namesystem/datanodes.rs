//! What datanodes tell the namenode and what it tells them back:
//! registration, heartbeats with commands, full and incremental block
//! reports, damaged replicas, and liveness.

use std::time::Instant;

use roaring::RoaringBitmap;

use rdfs_common::protocol::{DatanodeId, ExtendedBlock, LocatedBlock};
use rdfs_common::time::now_ms;

use super::{Locked, Namesystem};
use crate::apply::FsState;
use crate::block_manager::ReportOutcome;
use crate::datanode_manager::{
    DatanodeIndex, DatanodeManager, MAX_DATANODES, PendingDeletion, StorageState,
};
use crate::error::{NamenodeError, Result};

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

fn deletion(block_id: i64, generation_stamp: u64, num_bytes: u64) -> PendingDeletion {
    PendingDeletion {
        block_id,
        generation_stamp,
        num_bytes,
    }
}

impl Namesystem {
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
        } = &mut state.fs;
        if datanodes.index_of(&registration.id.datanode_uuid).is_none()
            && datanodes.count() >= MAX_DATANODES
        {
            return Err(NamenodeError::Io(format!(
                "this namenode already knows {MAX_DATANODES} datanodes"
            )));
        }
        let (index, replaced) = datanodes.register(registration.id.clone());
        for old in replaced {
            let held = datanodes.held(old);
            blocks.remove_datanode_replicas(old, &held, datanodes);
            datanodes.mark_dead(old);
            tracing::info!(
                old,
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
        let Locked { fs, safe_mode } = &mut *state;
        let Some(index) = fs
            .datanodes
            .heartbeat(uuid, storages, xceivers, failed_volumes)
        else {
            return vec![DatanodeCommand::Reregister];
        };
        // Nothing is deleted in safe mode: the namespace may be older than
        // the replicas (an image restored from backup, say).
        if safe_mode.is_on() {
            return Vec::new();
        }
        let deletions = fs
            .datanodes
            .take_deletions(index, self.config.invalidate_limit);
        if deletions.is_empty() {
            return Vec::new();
        }
        let pool_id = &self.info.block_pool_id;
        let blocks = deletions
            .into_iter()
            .map(|d| ExtendedBlock {
                pool_id: pool_id.clone(),
                block_id: d.block_id,
                generation_stamp: d.generation_stamp,
                num_bytes: d.num_bytes,
            })
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
        } = &mut state.fs;
        let index = registered(datanodes, uuid)?;
        let mut reported = RoaringBitmap::new();
        let (mut added, mut unknown, mut corrupt) = (0u64, 0u64, 0u64);
        for (storage_id, replicas) in storages {
            let storage = datanodes
                .get_mut(index)
                .map_or(0, |n| n.storage_index(storage_id));
            for replica in replicas.iter().filter(|r| r.finalized) {
                let outcome = blocks.add_replica(
                    replica.block_id,
                    replica.generation_stamp,
                    replica.num_bytes,
                    index,
                    storage,
                    datanodes,
                );
                match outcome {
                    ReportOutcome::Added => added += 1,
                    ReportOutcome::AlreadyKnown => {}
                    ReportOutcome::Corrupt => corrupt += 1,
                    ReportOutcome::Unknown => {
                        unknown += 1;
                        datanodes.queue_deletion(
                            index,
                            deletion(
                                replica.block_id,
                                replica.generation_stamp,
                                replica.num_bytes,
                            ),
                        );
                    }
                }
                // Adding a good copy may have invalidated this node's copy
                // as corrupt; only a replica the block still lists counts
                // as held, or the node's bitmap would claim a stale copy.
                if outcome != ReportOutcome::Unknown
                    && let Some(slot) = blocks.slot_of(replica.block_id)
                    && blocks.replicas(slot).any(|r| r.datanode == index)
                {
                    reported.insert(slot);
                }
            }
        }
        let gone: Vec<u32> = datanodes
            .get(index)
            .map(|n| (&n.blocks - &reported).iter().collect())
            .unwrap_or_default();
        blocks.remove_datanode_replicas(index, &gone, datanodes);
        if let Some(node) = datanodes.get_mut(index) {
            node.blocks = reported;
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
        } = &mut state.fs;
        let index = registered(datanodes, uuid)?;
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
                            deletion(block.block_id, block.generation_stamp, block.num_bytes),
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
        reported: &[ExtendedBlock],
        reason: &str,
    ) -> Result<()> {
        let mut state = self.state.write();
        let FsState {
            blocks, datanodes, ..
        } = &mut state.fs;
        let index = registered(datanodes, uuid)?;
        for block in reported {
            if blocks.mark_corrupt(block.block_id, index, datanodes) {
                tracing::warn!(block = %block, datanode = uuid, reason, "replica marked corrupt: its datanode reported it");
            }
        }
        Ok(())
    }

    /// A client found replicas whose data does not match their checksums.
    pub fn report_bad_blocks(&self, located: &[LocatedBlock], reporter: &str) -> Result<()> {
        let mut state = self.state.write();
        let FsState {
            blocks, datanodes, ..
        } = &mut state.fs;
        for block in located {
            for location in &block.locations {
                let uuid = &location.id.datanode_uuid;
                let Some(index) = datanodes.index_of(uuid) else {
                    return Err(NamenodeError::Io(format!(
                        "Cannot mark {} as corrupt because datanode {} ({uuid}) does not exist",
                        block.block,
                        location.id.xfer_addr()
                    )));
                };
                if blocks.mark_corrupt(block.block.block_id, index, datanodes) {
                    tracing::warn!(block = %block.block, datanode = %location.id.xfer_addr(), reporter,
                        "replica marked corrupt: client machine reported it");
                }
            }
        }
        Ok(())
    }

    /// Periodic duties: declare silent datanodes dead, and leave start-up
    /// safe mode once enough blocks are reported.
    pub fn tick(&self) {
        let now = Instant::now();
        let (newly_dead, automatic) = {
            let state = self.state.read();
            (
                !state.fs.datanodes.newly_dead(now).is_empty(),
                state.safe_mode.is_automatic(),
            )
        };
        if !newly_dead && !automatic {
            return;
        }
        let mut state = self.state.write();
        let Locked { fs, safe_mode } = &mut *state;
        let FsState {
            blocks, datanodes, ..
        } = fs;
        for index in datanodes.newly_dead(now) {
            let addr = datanodes
                .get(index)
                .map(|d| d.id.xfer_addr())
                .unwrap_or_default();
            let held = datanodes.held(index);
            blocks.remove_datanode_replicas(index, &held, datanodes);
            datanodes.mark_dead(index);
            tracing::warn!(datanode = %addr, replicas = held.len(), "datanode declared dead: no heartbeat within the dead interval");
        }
        if safe_mode.is_automatic() {
            let safety = self.block_safety(fs);
            safe_mode.update(safety, now);
        }
    }
}

/// The index of a live, registered datanode; a node that is not (it was
/// declared dead, or the namenode restarted) must register again.
fn registered(datanodes: &DatanodeManager, uuid: &str) -> Result<DatanodeIndex> {
    datanodes.live_index(uuid).ok_or_else(|| {
        NamenodeError::UnregisteredNode(format!("datanode {uuid} is not registered"))
    })
}
