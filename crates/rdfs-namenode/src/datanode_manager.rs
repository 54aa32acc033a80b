//! The datanodes the namenode knows: their registrations, the figures of
//! their last heartbeats, whether they are alive, which replicas they hold
//! and which replicas they have been told to delete.
//!
//! A datanode is its uuid: many may share an ip address (local clusters,
//! tests), so nothing here keys on addresses.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rdfs_common::protocol::{AdminState, DatanodeId, DatanodeInfo};
use rdfs_common::time::now_ms;
use roaring::RoaringBitmap;

use crate::deletions::{ReplicaDeletions, SENT_DELETION_TTL};
use crate::hosts::HostLists;
use crate::topology::Topology;

/// Index of a datanode in the manager; stable for the namenode's lifetime.
pub type DatanodeIndex = u32;

/// Replica records hold a datanode index in 16 bits.
pub const MAX_DATANODES: usize = 1 << 16;

/// One volume of a datanode as its last heartbeat described it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageState {
    pub storage_id: String,
    pub failed: bool,
    pub capacity: u64,
    pub dfs_used: u64,
    pub remaining: u64,
    pub non_dfs_used: u64,
}

/// A replica the datanode must delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingDeletion {
    pub block_id: i64,
    pub generation_stamp: u64,
    pub num_bytes: u64,
}

/// A block recovery the datanode must lead (its details are read from the
/// block map when the command is sent, so a recovery superseded meanwhile is
/// dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRecovery {
    pub block_id: i64,
    pub recovery_id: u64,
}

/// A replica the datanode must copy to others (re-replication or a
/// balancer move).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTransfer {
    pub block_id: i64,
    pub generation_stamp: u64,
    pub num_bytes: u64,
    pub targets: Vec<DatanodeIndex>,
    pub balancing: bool,
}

#[derive(Debug)]
pub struct DatanodeDescriptor {
    pub index: DatanodeIndex,
    pub id: DatanodeId,
    pub storages: Vec<StorageState>,
    pub last_heartbeat: Instant,
    pub last_heartbeat_ms: u64,
    pub last_block_report_ms: u64,
    /// Registered and not declared dead since.
    pub alive: bool,
    pub xceivers: u32,
    pub failed_volumes: u32,
    pub network_location: String,
    pub admin_state: AdminState,
    /// Blocks still waiting when decommissioning progress was last logged.
    pub decommission_logged: Option<u64>,
    /// Replica copies the datanode reported in progress.
    pub xmits: u32,
    /// Copies scheduled and not yet sent to the datanode.
    pub pending_transfers: VecDeque<PendingTransfer>,
    /// Block slots of the replicas this datanode holds: a compressed bitmap,
    /// about two bytes a replica.
    pub blocks: RoaringBitmap,
    pub deletions: ReplicaDeletions,
    /// What the block map says this datanode holds may be out of date: a
    /// standby learned it from reports that may have lagged, and the
    /// datanode may still carry out deletions the old active ordered. Set
    /// when this namenode becomes active (and at registration), cleared by
    /// a full report the datanode sent after hearing from the active one;
    /// until then, no excess replica of a block it holds is deleted (HDFS's
    /// blockContentsStale).
    pub content_stale: bool,
    /// Whether it has heartbeated since its content went stale, so a full
    /// report from now on was taken knowing this namenode is active.
    pub heartbeated_since_stale: bool,
    /// When it was last asked for a full report since its content went
    /// stale (`None`: not yet).
    pub report_requested_at: Option<Instant>,
    /// Block recoveries to lead, sent with the next heartbeat.
    pub pending_recoveries: VecDeque<PendingRecovery>,
}

impl DatanodeDescriptor {
    pub fn capacity(&self) -> u64 {
        self.live_storages().map(|s| s.capacity).sum()
    }

    pub fn dfs_used(&self) -> u64 {
        self.live_storages().map(|s| s.dfs_used).sum()
    }

    pub fn remaining(&self) -> u64 {
        self.live_storages().map(|s| s.remaining).sum()
    }

    pub fn non_dfs_used(&self) -> u64 {
        self.live_storages().map(|s| s.non_dfs_used).sum()
    }

    fn live_storages(&self) -> impl Iterator<Item = &StorageState> {
        self.storages.iter().filter(|s| !s.failed)
    }

    /// The storage to name for a replica on this datanode.
    pub fn storage_id_for(&self, storage: u16) -> &str {
        self.storages
            .get(storage as usize)
            .map_or("", |s| s.storage_id.as_str())
    }

    pub fn storage_index(&mut self, storage_id: &str) -> u16 {
        if let Some(idx) = self
            .storages
            .iter()
            .position(|s| s.storage_id == storage_id)
        {
            return idx as u16;
        }
        self.storages.push(StorageState {
            storage_id: storage_id.to_string(),
            ..Default::default()
        });
        (self.storages.len() - 1) as u16
    }

    /// Alive and neither decommissioning nor decommissioned: its replicas
    /// count towards a block's replication and it may receive new ones.
    pub fn in_service(&self) -> bool {
        self.alive && self.admin_state == AdminState::Normal
    }

    /// Copies this datanode is sending or has been told to send.
    pub fn transfer_load(&self) -> u32 {
        self.xmits + self.pending_transfers.len() as u32
    }

    /// Share of capacity used by blocks, in percent (HDFS's DFS Used%).
    pub fn utilization(&self) -> f64 {
        let capacity = self.capacity();
        if capacity == 0 {
            return 0.0;
        }
        self.dfs_used() as f64 * 100.0 / capacity as f64
    }

    pub fn is_stale(&self, now: Instant, stale_after: Duration) -> bool {
        now.duration_since(self.last_heartbeat) > stale_after
    }

    pub fn info(&self) -> DatanodeInfo {
        DatanodeInfo {
            id: self.id.clone(),
            capacity: self.capacity(),
            dfs_used: self.dfs_used(),
            remaining: self.remaining(),
            non_dfs_used: self.non_dfs_used(),
            last_update_ms: self.last_heartbeat_ms,
            xceiver_count: self.xceivers,
            network_location: self.network_location.clone(),
            admin_state: self.admin_state,
            num_blocks: self.blocks.len(),
            dead: !self.alive,
            last_block_report_ms: self.last_block_report_ms,
            failed_volumes: self.failed_volumes,
        }
    }
}

/// Liveness thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub stale_after: Duration,
    pub dead_after: Duration,
}

#[derive(Debug)]
pub struct DatanodeManager {
    nodes: Vec<DatanodeDescriptor>,
    by_uuid: HashMap<String, DatanodeIndex>,
    pub liveness: Liveness,
    pub topology: Topology,
    pub hosts: HostLists,
}

impl DatanodeManager {
    pub fn new(liveness: Liveness) -> Self {
        Self {
            nodes: Vec::new(),
            by_uuid: HashMap::new(),
            liveness,
            topology: Topology::default(),
            hosts: HostLists::default(),
        }
    }

    pub fn get(&self, index: DatanodeIndex) -> Option<&DatanodeDescriptor> {
        self.nodes.get(index as usize)
    }

    pub fn get_mut(&mut self, index: DatanodeIndex) -> Option<&mut DatanodeDescriptor> {
        self.nodes.get_mut(index as usize)
    }

    /// Datanodes ever registered.
    pub fn count(&self) -> usize {
        self.nodes.len()
    }

    pub fn index_of(&self, uuid: &str) -> Option<DatanodeIndex> {
        self.by_uuid.get(uuid).copied()
    }

    /// The datanode with this uuid if it is registered and alive.
    pub fn live_index(&self, uuid: &str) -> Option<DatanodeIndex> {
        self.index_of(uuid)
            .filter(|&idx| self.nodes[idx as usize].alive)
    }

    /// Forgets every deletion, copy and recovery not yet sent: work a
    /// standby computed from a view that lagged the active's.
    pub fn clear_pending_work(&mut self) -> usize {
        let mut cleared = 0;
        for node in &mut self.nodes {
            cleared += node.deletions.queued()
                + node.deletions.sent()
                + node.pending_transfers.len()
                + node.pending_recoveries.len();
            node.deletions.clear();
            node.pending_transfers.clear();
            node.pending_recoveries.clear();
        }
        cleared
    }

    pub fn all(&self) -> impl Iterator<Item = &DatanodeDescriptor> {
        self.nodes.iter()
    }

    pub fn live(&self) -> impl Iterator<Item = &DatanodeDescriptor> {
        self.nodes.iter().filter(|d| d.alive)
    }

    pub fn live_count(&self) -> usize {
        self.live().count()
    }

    /// Datanodes that may hold counted replicas and receive new ones.
    pub fn in_service(&self) -> impl Iterator<Item = &DatanodeDescriptor> {
        self.nodes.iter().filter(|d| d.in_service())
    }

    pub fn is_in_service(&self, index: DatanodeIndex) -> bool {
        self.get(index).is_some_and(DatanodeDescriptor::in_service)
    }

    /// An in-service datanode on `host` (by address or host name), chosen at
    /// random when several share it.
    pub fn on_host(
        &self,
        host: &str,
        excluded: &std::collections::HashSet<DatanodeIndex>,
    ) -> Option<DatanodeIndex> {
        use rand::seq::IndexedRandom;
        let local: Vec<DatanodeIndex> = self
            .in_service()
            .filter(|d| {
                (d.id.ip_addr == host || d.id.hostname == host) && !excluded.contains(&d.index)
            })
            .map(|d| d.index)
            .collect();
        local.choose(&mut rand::rng()).copied()
    }

    /// The rack of a datanode.
    pub fn rack(&self, index: DatanodeIndex) -> &str {
        self.get(index).map_or(crate::topology::DEFAULT_RACK, |d| {
            d.network_location.as_str()
        })
    }

    /// Distinct racks of the in-service datanodes.
    pub fn rack_count(&self) -> usize {
        let mut racks: Vec<&str> = self
            .in_service()
            .map(|d| d.network_location.as_str())
            .collect();
        racks.sort_unstable();
        racks.dedup();
        racks.len()
    }

    pub fn is_alive(&self, index: DatanodeIndex) -> bool {
        self.get(index).is_some_and(|d| d.alive)
    }

    /// Records a (re-)registration. Returns the node's index and the indexes
    /// of other live nodes that claimed the same transfer address and are
    /// now replaced by this one (a datanode restarted with a new identity).
    pub fn register(&mut self, id: DatanodeId) -> (DatanodeIndex, Vec<DatanodeIndex>) {
        let now = Instant::now();
        let replaced: Vec<DatanodeIndex> = self
            .nodes
            .iter()
            .filter(|d| {
                d.alive
                    && d.id.datanode_uuid != id.datanode_uuid
                    && d.id.xfer_addr() == id.xfer_addr()
            })
            .map(|d| d.index)
            .collect();
        let rack = self.topology.resolve(&id);
        let admin_state = if self.hosts.is_excluded(&id) {
            AdminState::DecommissionInProgress
        } else {
            AdminState::Normal
        };
        let index = match self.by_uuid.get(&id.datanode_uuid) {
            Some(&index) => {
                let node = &mut self.nodes[index as usize];
                node.id = id;
                node.alive = true;
                node.last_heartbeat = now;
                node.last_heartbeat_ms = now_ms();
                // Deletions are kept: the full report that follows may still
                // list replicas on their way out.
                node.pending_transfers.clear();
                node.pending_recoveries.clear();
                node.network_location = rack;
                node.admin_state = admin_state;
                // Registering is hearing from this namenode, and the full
                // report that follows is the one the content waits for.
                node.content_stale = true;
                node.heartbeated_since_stale = true;
                node.report_requested_at = Some(now);
                index
            }
            None => {
                let index = self.nodes.len() as DatanodeIndex;
                self.by_uuid.insert(id.datanode_uuid.clone(), index);
                self.nodes.push(DatanodeDescriptor {
                    index,
                    id,
                    storages: Vec::new(),
                    last_heartbeat: now,
                    last_heartbeat_ms: now_ms(),
                    last_block_report_ms: 0,
                    alive: true,
                    xceivers: 0,
                    failed_volumes: 0,
                    network_location: rack,
                    admin_state,
                    decommission_logged: None,
                    xmits: 0,
                    pending_transfers: VecDeque::new(),
                    blocks: RoaringBitmap::new(),
                    deletions: ReplicaDeletions::default(),
                    content_stale: true,
                    heartbeated_since_stale: true,
                    report_requested_at: Some(now),
                    pending_recoveries: VecDeque::new(),
                });
                index
            }
        };
        (index, replaced)
    }

    /// Records a heartbeat; false when the sender is not a live registered
    /// datanode and must register again.
    pub fn heartbeat(
        &mut self,
        uuid: &str,
        storages: Vec<StorageState>,
        xceivers: u32,
        xmits: u32,
        failed_volumes: u32,
    ) -> Option<DatanodeIndex> {
        let index = self.live_index(uuid)?;
        let node = &mut self.nodes[index as usize];
        node.last_heartbeat = Instant::now();
        node.last_heartbeat_ms = now_ms();
        node.xceivers = xceivers;
        node.xmits = xmits;
        node.failed_volumes = failed_volumes;
        for report in storages {
            match node
                .storages
                .iter_mut()
                .find(|s| s.storage_id == report.storage_id)
            {
                Some(existing) => *existing = report,
                None => node.storages.push(report),
            }
        }
        Some(index)
    }

    /// Asks a datanode to delete a replica at its next heartbeat.
    pub fn queue_deletion(&mut self, index: DatanodeIndex, deletion: PendingDeletion) {
        if let Some(node) = self.nodes.get_mut(index as usize)
            && node.alive
        {
            node.deletions.push(deletion);
        }
    }

    /// Whether a report from this datanode of this replica describes one
    /// it has been told to delete.
    pub fn is_being_deleted(
        &self,
        index: DatanodeIndex,
        block_id: i64,
        generation_stamp: u64,
    ) -> bool {
        self.get(index)
            .is_some_and(|n| n.deletions.covers(block_id, generation_stamp))
    }

    /// The datanode reported that it deleted a replica.
    pub fn deletion_done(&mut self, index: DatanodeIndex, block_id: i64) {
        if let Some(node) = self.get_mut(index) {
            node.deletions.confirm(block_id);
        }
    }

    /// Every datanode's content is stale from now on: this namenode has
    /// just become active (see [`DatanodeDescriptor::content_stale`]).
    pub fn mark_all_content_stale(&mut self) {
        for node in &mut self.nodes {
            node.content_stale = true;
            node.heartbeated_since_stale = false;
            node.report_requested_at = None;
        }
    }

    pub fn is_content_stale(&self, index: DatanodeIndex) -> bool {
        self.get(index).is_some_and(|n| n.content_stale)
    }

    /// Forgets that a datanode holds the replica in block slot `slot` and
    /// asks it to delete it.
    pub fn forget_and_delete(
        &mut self,
        index: DatanodeIndex,
        slot: u32,
        deletion: PendingDeletion,
    ) {
        if let Some(node) = self.nodes.get_mut(index as usize) {
            node.blocks.remove(slot);
        }
        self.queue_deletion(index, deletion);
    }

    /// Asks a datanode to copy a replica at its next heartbeat.
    pub fn queue_transfer(&mut self, index: DatanodeIndex, transfer: PendingTransfer) {
        if let Some(node) = self.nodes.get_mut(index as usize)
            && node.alive
        {
            node.pending_transfers.push_back(transfer);
        }
    }

    /// Takes the copies a datanode may start now: up to `limit` streams,
    /// counting those it reported in progress.
    pub fn take_transfers(&mut self, index: DatanodeIndex, limit: u32) -> Vec<PendingTransfer> {
        let Some(node) = self.nodes.get_mut(index as usize) else {
            return Vec::new();
        };
        let room = limit.saturating_sub(node.xmits) as usize;
        let count = room.min(node.pending_transfers.len());
        node.pending_transfers.drain(..count).collect()
    }

    /// Asks a datanode to lead a block recovery at its next heartbeat.
    pub fn queue_recovery(&mut self, index: DatanodeIndex, recovery: PendingRecovery) {
        if let Some(node) = self.nodes.get_mut(index as usize)
            && node.alive
        {
            node.pending_recoveries
                .retain(|r| r.block_id != recovery.block_id);
            node.pending_recoveries.push_back(recovery);
        }
    }

    /// Takes every block recovery a datanode is to lead.
    pub fn take_recoveries(&mut self, index: DatanodeIndex) -> Vec<PendingRecovery> {
        self.nodes
            .get_mut(index as usize)
            .map(|node| node.pending_recoveries.drain(..).collect())
            .unwrap_or_default()
    }

    /// Takes up to `limit` pending deletions of a datanode to send.
    pub fn take_deletions(&mut self, index: DatanodeIndex, limit: usize) -> Vec<PendingDeletion> {
        let Some(node) = self.nodes.get_mut(index as usize) else {
            return Vec::new();
        };
        let now = Instant::now();
        node.deletions.expire(now, SENT_DELETION_TTL);
        node.deletions.take(limit, now)
    }

    /// Datanodes whose last heartbeat is older than the dead interval.
    pub fn newly_dead(&self, now: Instant) -> Vec<DatanodeIndex> {
        self.nodes
            .iter()
            .filter(|d| d.alive && now.duration_since(d.last_heartbeat) > self.liveness.dead_after)
            .map(|d| d.index)
            .collect()
    }

    /// The block slots of the replicas a datanode holds.
    pub fn held(&self, index: DatanodeIndex) -> Vec<u32> {
        self.nodes
            .get(index as usize)
            .map(|n| n.blocks.iter().collect())
            .unwrap_or_default()
    }

    /// Marks a datanode dead; the caller has removed its replicas from the
    /// block map first.
    pub fn mark_dead(&mut self, index: DatanodeIndex) {
        if let Some(node) = self.nodes.get_mut(index as usize) {
            node.alive = false;
            node.deletions.clear();
            node.pending_transfers.clear();
            node.pending_recoveries.clear();
            node.blocks.clear();
        }
    }

    /// Bytes the per-datanode replica sets hold.
    pub fn replica_set_bytes(&self) -> usize {
        self.nodes.iter().map(|n| n.blocks.serialized_size()).sum()
    }
}
