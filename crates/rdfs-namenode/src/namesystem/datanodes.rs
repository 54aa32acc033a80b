//! What datanodes tell the namenode and what it tells them back:
//! registration, heartbeats with commands, full and incremental block
//! reports, damaged replicas, and liveness.

use std::time::Instant;

use roaring::RoaringBitmap;

use rdfs_common::protocol::{AdminState, DatanodeId, DatanodeInfo, ExtendedBlock, LocatedBlock};
use rdfs_common::time::now_ms;

use super::standby::{PendingKind, PendingReport};
use super::{Locked, Namesystem};
use crate::apply::FsState;
use crate::block_manager::{BlockState, ReportOutcome, ReportedState};
use crate::datanode_manager::{
    DatanodeIndex, DatanodeManager, MAX_DATANODES, PendingDeletion, StorageState,
};
use crate::error::{NamenodeError, Result};
use crate::hosts::HostLists;
use crate::replication;
use crate::topology::Topology;

/// How long a datanode asked for a full report (after a promotion) has to
/// send it before it is asked again.
const REPORT_REQUEST_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// How often start-up safe mode, short of blocks, looks up which ones it
/// waits for (a scan of the block map).
const SAFE_MODE_LOOKUP_PERIOD: std::time::Duration = std::time::Duration::from_secs(30);

/// A datanode's registration request.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: DatanodeId,
    pub cluster_id: String,
    pub block_pool_id: String,
    pub storage_ids: Vec<String>,
}

/// What a datanode must do, returned on heartbeats.
#[derive(Debug, Clone, PartialEq)]
pub enum DatanodeCommand {
    /// Delete these replicas.
    Invalidate(Vec<ExtendedBlock>),
    /// Register again and send a full block report.
    Reregister,
    /// Copy replicas to other datanodes.
    Transfer(Vec<TransferOrder>),
    /// Lead the recovery of these blocks.
    Recover(Vec<RecoverOrder>),
    /// Send a full block report now: this namenode has just become active
    /// and waits for one before it deletes excess replicas there.
    ReportBlocks,
}

/// One block recovery a datanode leads as primary.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoverOrder {
    /// The block as the namenode knows it; its locations are the datanodes
    /// that may hold a replica, the primary among them.
    pub block: LocatedBlock,
    /// The recovery id: the generation stamp the recovered replicas take.
    pub new_generation_stamp: u64,
    /// A truncate: the length to cut the replicas to.
    pub new_length: Option<u64>,
}

/// One replica a datanode must copy down a pipeline of targets.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferOrder {
    pub block: ExtendedBlock,
    pub targets: Vec<DatanodeInfo>,
    pub balancing: bool,
}

/// A replica as a datanode reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedReplica {
    pub block_id: i64,
    pub generation_stamp: u64,
    pub num_bytes: u64,
    pub state: ReportedState,
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
        if !self
            .state
            .read()
            .fs
            .datanodes
            .hosts
            .is_allowed(&registration.id)
        {
            return Err(NamenodeError::DisallowedDatanode(format!(
                "Datanode denied communication with namenode because the host is not in the include-list: {} ({})",
                registration.id.xfer_addr(),
                registration.id.datanode_uuid
            )));
        }
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
        let (rack, admin) = datanodes
            .get(index)
            .map(|n| (n.network_location.clone(), n.admin_state))
            .unwrap_or_default();
        tracing::info!(datanode = %registration.id.xfer_addr(), uuid = %registration.id.datanode_uuid,
            storages = registration.storage_ids.len(), rack, admin_state = ?admin, "datanode registered");
        Ok(())
    }

    /// A datanode's heartbeat; the commands it gets back.
    ///
    /// A command may carry state whose edit is not durable yet (a deletion
    /// of a file just removed, a recovery with a generation stamp just
    /// allocated): should that edit never become durable, the datanode
    /// would have acted on a change that never happened — replicas of a
    /// file that survives deleted, replicas moved to a stamp the next
    /// namenode never heard of. So commands are taken only once every edit
    /// made before them is durable, and sent only then; if that fails, the
    /// namenode is failing and they are never sent. (Waiting first, rather
    /// than after taking them, means a heartbeat given up on while it
    /// waits loses no command.)
    ///
    /// `commanding` says whether this namenode may give orders now (it is
    /// the active one and its lease holds): when not, no command is taken
    /// from the queues, so none is lost with an answer the datanode would
    /// drop.
    pub async fn heartbeat(
        &self,
        uuid: &str,
        storages: Vec<StorageState>,
        xceivers: u32,
        xmits: u32,
        failed_volumes: u32,
        commanding: impl Fn() -> bool,
    ) -> Result<Vec<DatanodeCommand>> {
        let appended = {
            let mut state = self.state.write();
            // Liveness and usage are recorded at once, whatever the journal
            // is doing.
            if state
                .fs
                .datanodes
                .heartbeat(uuid, storages, xceivers, xmits, failed_volumes)
                .is_none()
            {
                return Ok(vec![DatanodeCommand::Reregister]);
            }
            self.journal.last_txid()
        };
        self.sync(Some(appended)).await?;
        let (commands, depends_on) = {
            let mut state = self.state.write();
            let commands = self.take_commands(&mut state, uuid, commanding());
            (commands, self.journal.last_txid())
        };
        if depends_on > appended
            && commands.iter().any(|c| {
                !matches!(
                    c,
                    DatanodeCommand::Reregister | DatanodeCommand::ReportBlocks
                )
            })
        {
            self.sync(Some(depends_on)).await?;
        }
        Ok(commands)
    }

    fn take_commands(
        &self,
        state: &mut Locked,
        uuid: &str,
        commanding: bool,
    ) -> Vec<DatanodeCommand> {
        let Locked { fs, safe_mode, .. } = state;
        let Some(index) = fs.datanodes.live_index(uuid) else {
            return vec![DatanodeCommand::Reregister];
        };
        if !commanding || self.is_standby() {
            return Vec::new();
        }
        let mut commands = Vec::new();
        if let Some(node) = fs.datanodes.get_mut(index) {
            node.heartbeated_since_stale = true;
            // Asked again now and then: an answer can be lost.
            let now = Instant::now();
            if node.content_stale
                && node
                    .report_requested_at
                    .is_none_or(|at| now.duration_since(at) >= REPORT_REQUEST_RETRY)
            {
                node.report_requested_at = Some(now);
                commands.push(DatanodeCommand::ReportBlocks);
            }
        }
        // Nothing is deleted or copied in safe mode: the namespace may be
        // older than the replicas (an image restored from backup, say).
        if safe_mode.is_on() {
            return commands;
        }
        let pool_id = &self.info.block_pool_id;
        let transfers = fs
            .datanodes
            .take_transfers(index, self.config.replication.streams_hard_limit);
        if !transfers.is_empty() {
            let orders = transfers
                .into_iter()
                .map(|t| TransferOrder {
                    block: ExtendedBlock {
                        pool_id: pool_id.clone(),
                        block_id: t.block_id,
                        generation_stamp: t.generation_stamp,
                        num_bytes: t.num_bytes,
                    },
                    targets: t
                        .targets
                        .iter()
                        .filter_map(|&dn| fs.datanodes.get(dn).map(|n| n.info()))
                        .collect(),
                    balancing: t.balancing,
                })
                .filter(|order| !order.targets.is_empty())
                .collect();
            commands.push(DatanodeCommand::Transfer(orders));
        }
        let recoveries: Vec<RecoverOrder> = fs
            .datanodes
            .take_recoveries(index)
            .into_iter()
            .filter_map(|pending| {
                let slot = fs.blocks.slot_of(pending.block_id)?;
                let info = fs.blocks.info(slot);
                let recovery = fs.blocks.recovery(slot)?;
                if info.state != BlockState::UnderRecovery
                    || recovery.recovery_id != pending.recovery_id
                {
                    return None;
                }
                let new_length = recovery.truncate.then_some(info.num_bytes);
                let mut block = LocatedBlock {
                    block: fs.blocks.extended(slot),
                    offset: 0,
                    locations: Vec::new(),
                    storage_ids: Vec::new(),
                    corrupt: false,
                    block_token: Default::default(),
                };
                for dn in fs.blocks.recovery_candidates(slot, &fs.datanodes) {
                    if let Some(node) = fs.datanodes.get(dn) {
                        let storage = fs
                            .blocks
                            .replicas(slot)
                            .find(|r| r.datanode == dn)
                            .map_or(0, |r| r.storage);
                        block.locations.push(node.info());
                        block
                            .storage_ids
                            .push(node.storage_id_for(storage).to_string());
                    }
                }
                Some(RecoverOrder {
                    block,
                    new_generation_stamp: pending.recovery_id,
                    new_length,
                })
            })
            .collect();
        if !recoveries.is_empty() {
            commands.push(DatanodeCommand::Recover(recoveries));
        }
        let deletions = fs
            .datanodes
            .take_deletions(index, self.config.invalidate_limit);
        if !deletions.is_empty() {
            let blocks = deletions
                .into_iter()
                .map(|d| ExtendedBlock {
                    pool_id: pool_id.clone(),
                    block_id: d.block_id,
                    generation_stamp: d.generation_stamp,
                    num_bytes: d.num_bytes,
                })
                .collect();
            commands.push(DatanodeCommand::Invalidate(blocks));
        }
        commands
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
        let standby = self.is_standby();
        let mut state = self.state.write();
        let super::Locked { fs, pending, .. } = &mut *state;
        let FsState {
            blocks, datanodes, ..
        } = fs;
        let index = registered(datanodes, uuid)?;
        if standby {
            // A full report supersedes what this datanode said before.
            pending.retain(|r| r.datanode() != index);
        }
        let mut reported = RoaringBitmap::new();
        // The listed replicas this datanode is being told to delete, to
        // confirm the deletions of the others.
        let tracking = datanodes
            .get(index)
            .is_some_and(|n| !n.deletions.is_empty());
        let mut listed = std::collections::HashSet::new();
        let (mut added, mut unknown, mut corrupt, mut being_deleted) = (0u64, 0u64, 0u64, 0u64);
        for (storage_id, replicas) in storages {
            let storage = datanodes
                .get_mut(index)
                .map_or(0, |n| n.storage_index(storage_id));
            for replica in replicas {
                if tracking
                    && datanodes
                        .get(index)
                        .is_some_and(|n| n.deletions.tracks(replica.block_id))
                {
                    listed.insert(replica.block_id);
                }
                // A copy on its way out (the report was taken before the
                // datanode carried out the deletion): never a live copy
                // again, whatever mark it had.
                if datanodes.is_being_deleted(index, replica.block_id, replica.generation_stamp) {
                    being_deleted += 1;
                    continue;
                }
                if standby
                    && super::standby::must_wait_fs(
                        blocks,
                        replica.block_id,
                        replica.generation_stamp,
                    )
                {
                    Self::hold_back(
                        pending,
                        PendingReport::new(
                            index,
                            storage_id,
                            replica.block_id,
                            replica.generation_stamp,
                            replica.num_bytes,
                            PendingKind::Reported(replica.state),
                        ),
                    );
                    continue;
                }
                let outcome = blocks.report_replica(
                    replica.block_id,
                    replica.generation_stamp,
                    replica.num_bytes,
                    replica.state,
                    index,
                    storage,
                    datanodes,
                );
                match outcome {
                    ReportOutcome::Added => added += 1,
                    ReportOutcome::AlreadyKnown
                    | ReportOutcome::Candidate
                    | ReportOutcome::Ignored => {}
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
        let mut now_fresh = false;
        if let Some(node) = datanodes.get_mut(index) {
            node.blocks = reported;
            node.last_block_report_ms = now_ms();
            // Deletions of replicas the datanode no longer lists are done.
            node.deletions
                .confirm_absent(|block_id| listed.contains(&block_id));
            if !standby && node.content_stale && node.heartbeated_since_stale {
                node.content_stale = false;
                now_fresh = true;
            }
        }
        if now_fresh {
            // Excess deletions held back for this datanode's view may go
            // ahead now (each waits for the rest of its holders too).
            blocks.queues.recheck_postponed();
        }
        tracing::info!(
            datanode = uuid,
            added,
            unknown,
            corrupt,
            being_deleted,
            removed = gone.len(),
            content_fresh = now_fresh,
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
        let standby = self.is_standby();
        let mut state = self.state.write();
        let super::Locked { fs, pending, .. } = &mut *state;
        let FsState {
            blocks, datanodes, ..
        } = fs;
        let index = registered(datanodes, uuid)?;
        for (block, storage_id, event) in events {
            let kind = match event {
                ReplicaEvent::Receiving => Some(PendingKind::Reported(ReportedState::Rbw)),
                ReplicaEvent::Received => Some(PendingKind::Received),
                ReplicaEvent::Deleted => {
                    if standby {
                        // The replica is gone: reports of it still held
                        // back must not bring it back later.
                        pending
                            .retain(|r| !(r.datanode() == index && r.block_id() == block.block_id));
                    }
                    None
                }
            };
            if let Some(kind) = kind
                && standby
                && super::standby::must_wait_fs(blocks, block.block_id, block.generation_stamp)
            {
                Self::hold_back(
                    pending,
                    PendingReport::new(
                        index,
                        storage_id,
                        block.block_id,
                        block.generation_stamp,
                        block.num_bytes,
                        kind,
                    ),
                );
                continue;
            }
            if !matches!(event, ReplicaEvent::Deleted)
                && datanodes.is_being_deleted(index, block.block_id, block.generation_stamp)
            {
                // The datanode was told to delete this copy; a report sent
                // before it did so does not make it live again.
                continue;
            }
            match event {
                ReplicaEvent::Receiving => {
                    // A replica being written: a candidate location of its
                    // block, should the writer go silent.
                    let storage = datanodes
                        .get_mut(index)
                        .map_or(0, |n| n.storage_index(storage_id));
                    let outcome = blocks.report_replica(
                        block.block_id,
                        block.generation_stamp,
                        block.num_bytes,
                        ReportedState::Rbw,
                        index,
                        storage,
                        datanodes,
                    );
                    if outcome == ReportOutcome::Unknown {
                        datanodes.queue_deletion(
                            index,
                            deletion(block.block_id, block.generation_stamp, block.num_bytes),
                        );
                    }
                }
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
                    if let Some(slot) = blocks.slot_of(block.block_id) {
                        blocks.queues.replica_arrived(slot, index);
                    }
                }
                ReplicaEvent::Deleted => {
                    datanodes.deletion_done(index, block.block_id);
                    blocks.remove_replica(block.block_id, index, datanodes);
                }
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
        let Locked { fs, safe_mode, .. } = &mut *state;
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
            // Name what it waits for, now and then: a namenode that cannot
            // leave safe mode must say which blocks keep it there.
            let due = self
                .safe_mode_looked_up
                .lock()
                .is_none_or(|at| now.duration_since(at) >= SAFE_MODE_LOOKUP_PERIOD);
            if safe_mode.is_short_of_blocks() && due {
                *self.safe_mode_looked_up.lock() = Some(now);
                let waiting: Vec<String> = fs
                    .blocks
                    .unsafe_blocks(&fs.namespace, &fs.datanodes, crate::safe_mode::TIP_BLOCKS)
                    .into_iter()
                    .map(|(block, file)| format!("{block} of {file}"))
                    .collect();
                if !waiting.is_empty() {
                    tracing::warn!(safe = safety.safe, total = safety.total, waiting = ?waiting,
                        "safe mode waits for blocks no datanode has reported");
                }
                safe_mode.set_waiting_for(waiting);
            }
        }
    }
}

impl Namesystem {
    /// Reads the topology table again; datanodes keep the rack they
    /// registered with until they register again.
    pub fn load_topology(&self) -> Result<()> {
        let topology = Topology::load(&self.config.topology_file).map_err(NamenodeError::Io)?;
        self.state.write().fs.datanodes.topology = topology;
        Ok(())
    }

    /// Re-reads the include and exclude host files (`dfsadmin
    /// -refreshNodes`): excluded datanodes start decommissioning, datanodes
    /// no longer excluded return to service, and datanodes no longer
    /// included are disconnected. Returns a summary for the operator.
    pub fn refresh_nodes(&self) -> Result<String> {
        let lists = HostLists::load(&self.config.hosts_file, &self.config.hosts_exclude_file)
            .map_err(NamenodeError::Io)?;
        let mut state = self.state.write();
        let FsState {
            blocks, datanodes, ..
        } = &mut state.fs;
        datanodes.hosts = lists;
        let (mut started, mut stopped, mut disallowed) = (0, 0, 0);
        let indexes: Vec<DatanodeIndex> = datanodes.all().map(|d| d.index).collect();
        for index in indexes {
            let Some(node) = datanodes.get(index) else {
                continue;
            };
            let (id, alive, admin) = (node.id.clone(), node.alive, node.admin_state);
            if !datanodes.hosts.is_allowed(&id) {
                if alive {
                    let held = datanodes.held(index);
                    blocks.remove_datanode_replicas(index, &held, datanodes);
                    datanodes.mark_dead(index);
                    disallowed += 1;
                    tracing::warn!(datanode = %id.xfer_addr(), "datanode is no longer in the include list; disconnected");
                }
                continue;
            }
            let excluded = datanodes.hosts.is_excluded(&id);
            let new_state = match (excluded, admin) {
                (true, AdminState::Normal) => AdminState::DecommissionInProgress,
                (false, AdminState::DecommissionInProgress | AdminState::Decommissioned) => {
                    AdminState::Normal
                }
                _ => continue,
            };
            if let Some(node) = datanodes.get_mut(index) {
                node.admin_state = new_state;
                node.decommission_logged = None;
            }
            if new_state == AdminState::Normal {
                stopped += 1;
                tracing::info!(datanode = %id.xfer_addr(), "datanode returned to service");
            } else {
                started += 1;
                tracing::info!(datanode = %id.xfer_addr(), blocks = datanodes.held(index).len(), "decommissioning datanode: copying its replicas elsewhere");
            }
            replication::recheck_datanode(blocks, datanodes, index);
        }
        let (include, exclude) = datanodes.hosts.summary();
        Ok(format!(
            "Refresh nodes successful: {include} included, {exclude} excluded host entries; \
             {started} datanodes started decommissioning, {stopped} returned to service, {disallowed} disconnected"
        ))
    }

    /// One round of the replication monitor, and, when due, the check of
    /// decommissioning datanodes. Nothing happens in safe mode.
    pub fn replication_round(&self, check_decommissioning: bool) {
        let now = Instant::now();
        let mut state = self.state.write();
        let Locked { fs, safe_mode, .. } = &mut *state;
        if safe_mode.is_on() {
            return;
        }
        let FsState {
            blocks, datanodes, ..
        } = fs;
        let stats = replication::run_round(blocks, datanodes, &self.config.replication, now);
        if stats != replication::RoundStats::default() {
            tracing::debug!(?stats, "replication round");
        }
        if stats.copies_scheduled > 0 || stats.excess_deleted > 0 || stats.timed_out > 0 {
            tracing::info!(
                copies = stats.copies_scheduled,
                excess_deleted = stats.excess_deleted,
                timed_out = stats.timed_out,
                "replication monitor scheduled work"
            );
        }
        if !check_decommissioning {
            return;
        }
        let retiring: Vec<DatanodeIndex> = datanodes
            .live()
            .filter(|d| d.admin_state == AdminState::DecommissionInProgress)
            .map(|d| d.index)
            .collect();
        for index in retiring {
            let waiting = replication::blocks_waiting_for_decommission(blocks, datanodes, index);
            let in_service = datanodes.in_service().count();
            let Some(node) = datanodes.get_mut(index) else {
                continue;
            };
            let addr = node.id.xfer_addr();
            if waiting == 0 {
                node.admin_state = AdminState::Decommissioned;
                tracing::info!(datanode = %addr, "Decommissioning complete for node {addr}: every replica it held has its replication elsewhere");
            } else if node.decommission_logged != Some(waiting) {
                node.decommission_logged = Some(waiting);
                tracing::info!(datanode = %addr, waiting, in_service,
                    "decommissioning waits: {waiting} blocks on {addr} do not have their replication on other in-service datanodes yet ({in_service} in service)");
            }
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
