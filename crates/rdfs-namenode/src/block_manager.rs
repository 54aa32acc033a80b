//! The block map: every block of every file, its state, and where its
//! replicas are. Replica locations are learnt only from datanode reports and
//! never persisted.
//!
//! A block is one 32-byte record in a generational slab ([`crate::slab`]):
//! its file's inode slot, three inline replicas (datanode, storage, flags in
//! a `u32` each), the generation stamp, and length, state and replication
//! packed into one `u64`. Blocks with more than three replicas keep the rest
//! in a side map.

use std::collections::HashMap;

use rand::seq::SliceRandom;

use rdfs_common::ids::{BlockName, LAST_RESERVED_BLOCK_ID, LAST_RESERVED_GENERATION_STAMP};
use rdfs_common::protocol::{ExtendedBlock, LocatedBlock};

use crate::datanode_manager::{DatanodeIndex, DatanodeManager, PendingDeletion};
use crate::namespace::Slot;
use crate::replication::ReplicationQueues;
use crate::slab::GenSlab;

/// A block's position in the slab.
pub type BlockSlot = u32;

/// The first block id, as in HDFS.
pub const BLOCK_ID_BASE: u64 = LAST_RESERVED_BLOCK_ID as u64 + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// Being written; its length is not known yet.
    UnderConstruction,
    /// The writer has reported its final length, but fewer than the minimum
    /// replicas have been reported finalized.
    Committed,
    /// Final length known and minimally replicated (or its file is closed).
    Complete,
}

impl BlockState {
    fn code(self) -> u64 {
        match self {
            Self::UnderConstruction => 0,
            Self::Committed => 1,
            Self::Complete => 2,
        }
    }

    fn from_code(code: u64) -> Self {
        match code {
            1 => Self::Committed,
            2 => Self::Complete,
            _ => Self::UnderConstruction,
        }
    }
}

/// Largest block length the record holds (1 TiB).
pub const MAX_BLOCK_LEN: u64 = (1 << 40) - 1;
const LEN_MASK: u64 = MAX_BLOCK_LEN;
const STATE_SHIFT: u32 = 40;
const REPLICATION_SHIFT: u32 = 42;
const REPLICATION_MASK: u64 = 0x3fff;

const REPLICA_PRESENT: u32 = 1;
const REPLICA_CORRUPT: u32 = 2;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BlockRecord {
    pub(crate) inode: Slot,
    pub(crate) replicas: [u32; 3],
    pub(crate) generation_stamp: u64,
    pub(crate) packed: u64,
}

impl BlockRecord {
    pub(crate) fn new(
        inode: Slot,
        generation_stamp: u64,
        num_bytes: u64,
        state: BlockState,
        replication: u16,
    ) -> Self {
        Self {
            inode,
            replicas: [0; 3],
            generation_stamp,
            packed: (num_bytes & LEN_MASK)
                | (state.code() << STATE_SHIFT)
                | ((u64::from(replication) & REPLICATION_MASK) << REPLICATION_SHIFT),
        }
    }

    fn num_bytes(&self) -> u64 {
        self.packed & LEN_MASK
    }

    fn state(&self) -> BlockState {
        BlockState::from_code((self.packed >> STATE_SHIFT) & 3)
    }

    fn replication(&self) -> u16 {
        ((self.packed >> REPLICATION_SHIFT) & REPLICATION_MASK) as u16
    }

    fn set(&mut self, num_bytes: u64, state: BlockState) {
        let replication = self.replication();
        *self = Self {
            packed: BlockRecord::new(
                self.inode,
                self.generation_stamp,
                num_bytes,
                state,
                replication,
            )
            .packed,
            ..*self
        };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    pub datanode: DatanodeIndex,
    pub storage: u16,
    pub corrupt: bool,
}

impl Replica {
    fn pack(self) -> u32 {
        ((self.datanode & 0xffff) << 16)
            | (u32::from(self.storage.min(0xff)) << 8)
            | REPLICA_PRESENT
            | if self.corrupt { REPLICA_CORRUPT } else { 0 }
    }

    fn unpack(packed: u32) -> Option<Self> {
        (packed & REPLICA_PRESENT != 0).then_some(Replica {
            datanode: packed >> 16,
            storage: ((packed >> 8) & 0xff) as u16,
            corrupt: packed & REPLICA_CORRUPT != 0,
        })
    }
}

/// A block as callers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    pub slot: BlockSlot,
    pub block_id: i64,
    pub generation_stamp: u64,
    pub num_bytes: u64,
    pub state: BlockState,
    pub replication: u16,
    /// The slot of the file the block belongs to.
    pub inode: Slot,
}

/// Replica counts of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaCounts {
    /// Not corrupt, on in-service datanodes: what counts towards the
    /// block's replication.
    pub live: u32,
    /// Not corrupt, on live decommissioning or decommissioned datanodes:
    /// still readable, but about to go.
    pub decommissioning: u32,
    pub corrupt: u32,
}

impl ReplicaCounts {
    /// Good replicas a reader can use.
    pub fn readable(&self) -> u32 {
        self.live + self.decommissioning
    }
}

/// What became of a reported replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    Added,
    AlreadyKnown,
    /// No file owns the block: the replica should be deleted.
    Unknown,
    /// The replica's length or generation stamp does not match the block.
    Corrupt,
}

#[derive(Debug)]
pub struct BlockManager {
    pub(crate) blocks: GenSlab<BlockRecord>,
    /// Replicas beyond the three a record holds.
    extra_replicas: HashMap<BlockSlot, Vec<u32>>,
    /// The pipeline targets of blocks under construction.
    expected: HashMap<BlockSlot, Vec<DatanodeIndex>>,
    /// Lengths of replicas finalized while their block was under
    /// construction, checked against the length the writer commits.
    early_lengths: HashMap<BlockSlot, Vec<(DatanodeIndex, u64)>>,
    pub(crate) last_generation_stamp: u64,
    pub pool_id: String,
    pub min_replication: u16,
    /// Complete blocks, and those of them with their minimum live replicas:
    /// kept as replicas come and go, so safe mode never rescans the map.
    complete_blocks: u64,
    safe_blocks: u64,
    /// Blocks with too few or too many replicas, and copies under way.
    pub queues: ReplicationQueues,
}

/// Whether a block is complete, and complete with its minimum replicas.
type Safety = (bool, bool);

impl BlockManager {
    pub fn new(pool_id: String, min_replication: u16) -> Self {
        Self {
            blocks: GenSlab::new(BLOCK_ID_BASE),
            extra_replicas: HashMap::new(),
            expected: HashMap::new(),
            early_lengths: HashMap::new(),
            last_generation_stamp: LAST_RESERVED_GENERATION_STAMP,
            pool_id,
            min_replication,
            complete_blocks: 0,
            safe_blocks: 0,
            queues: ReplicationQueues::default(),
        }
    }

    /// (blocks with their minimum live replicas, complete blocks).
    pub fn safety(&self) -> (u64, u64) {
        (self.safe_blocks, self.complete_blocks)
    }

    fn safety_of(&self, slot: BlockSlot, datanodes: &DatanodeManager) -> Safety {
        let complete = self.blocks.get(slot).state() == BlockState::Complete;
        (
            complete,
            complete && self.counts(slot, datanodes).readable() >= u32::from(self.min_replication),
        )
    }

    fn account(&mut self, before: Safety, after: Safety) {
        let step = |count: &mut u64, was: bool, is: bool| match (was, is) {
            (false, true) => *count += 1,
            (true, false) => *count = count.saturating_sub(1),
            _ => {}
        };
        step(&mut self.complete_blocks, before.0, after.0);
        step(&mut self.safe_blocks, before.1, after.1);
    }

    /// Counts complete and safe blocks from scratch (after loading an image).
    pub fn recount(&mut self, datanodes: &DatanodeManager) {
        let (mut complete, mut safe) = (0, 0);
        for slot in self.blocks.live_slots() {
            let (c, s) = self.safety_of(slot, datanodes);
            complete += u64::from(c);
            safe += u64::from(s);
        }
        self.complete_blocks = complete;
        self.safe_blocks = safe;
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// One past the highest slot in use.
    pub fn slot_count(&self) -> u32 {
        self.blocks.slots() as u32
    }

    pub fn is_live_slot(&self, slot: BlockSlot) -> bool {
        self.blocks.is_live(slot)
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn slot_of(&self, block_id: i64) -> Option<BlockSlot> {
        self.blocks.slot(block_id as u64)
    }

    pub fn id_of(&self, slot: BlockSlot) -> i64 {
        self.blocks.id_of(slot) as i64
    }

    pub fn info(&self, slot: BlockSlot) -> BlockInfo {
        let record = self.blocks.get(slot);
        BlockInfo {
            slot,
            block_id: self.id_of(slot),
            generation_stamp: record.generation_stamp,
            num_bytes: record.num_bytes(),
            state: record.state(),
            replication: record.replication(),
            inode: record.inode,
        }
    }

    pub fn get(&self, block_id: i64) -> Option<BlockInfo> {
        self.slot_of(block_id).map(|slot| self.info(slot))
    }

    /// Every live block slot.
    pub fn slots(&self) -> impl Iterator<Item = BlockSlot> + '_ {
        self.blocks.live_slots()
    }

    /// The id and generation stamp the next new block gets.
    pub fn next_block(&mut self) -> Result<(i64, u64), String> {
        let id = self.blocks.peek_next().map_err(|e| e.to_string())?;
        Ok((id as i64, self.last_generation_stamp + 1))
    }

    pub fn extended(&self, slot: BlockSlot) -> ExtendedBlock {
        let info = self.info(slot);
        ExtendedBlock {
            pool_id: self.pool_id.clone(),
            block_id: info.block_id,
            generation_stamp: info.generation_stamp,
            num_bytes: info.num_bytes,
        }
    }

    pub fn name(&self, slot: BlockSlot) -> BlockName {
        BlockName {
            block_id: self.id_of(slot),
            generation_stamp: self.blocks.get(slot).generation_stamp,
        }
    }

    /// Adds a new block under construction for the file in `inode`.
    pub fn add_under_construction(
        &mut self,
        block_id: i64,
        generation_stamp: u64,
        inode: Slot,
        replication: u16,
    ) -> Result<BlockSlot, String> {
        let record = BlockRecord::new(
            inode,
            generation_stamp,
            0,
            BlockState::UnderConstruction,
            replication,
        );
        let slot = self
            .blocks
            .insert(block_id as u64, record)
            .map_err(|e| format!("block {block_id}: {e}"))?;
        self.last_generation_stamp = self.last_generation_stamp.max(generation_stamp);
        Ok(slot)
    }

    pub fn set_expected_locations(&mut self, slot: BlockSlot, targets: Vec<DatanodeIndex>) {
        self.expected.insert(slot, targets);
    }

    pub fn expected_locations(&self, slot: BlockSlot) -> &[DatanodeIndex] {
        self.expected.get(&slot).map_or(&[], Vec::as_slice)
    }

    /// The replicas of a block, inline ones first.
    pub fn replicas(&self, slot: BlockSlot) -> impl Iterator<Item = Replica> + '_ {
        let inline = self.blocks.get(slot).replicas.into_iter();
        let extra = self
            .extra_replicas
            .get(&slot)
            .into_iter()
            .flatten()
            .copied();
        inline.chain(extra).filter_map(Replica::unpack)
    }

    fn find_replica_mut(&mut self, slot: BlockSlot, datanode: DatanodeIndex) -> Option<&mut u32> {
        let matches =
            |packed: &&mut u32| Replica::unpack(**packed).is_some_and(|r| r.datanode == datanode);
        if let Some(found) = self.blocks.get_mut(slot).replicas.iter_mut().find(matches) {
            return Some(found);
        }
        self.extra_replicas.get_mut(&slot)?.iter_mut().find(matches)
    }

    fn push_replica(&mut self, slot: BlockSlot, replica: Replica) {
        let packed = replica.pack();
        if let Some(free) = self
            .blocks
            .get_mut(slot)
            .replicas
            .iter_mut()
            .find(|r| **r & REPLICA_PRESENT == 0)
        {
            *free = packed;
        } else {
            self.extra_replicas.entry(slot).or_default().push(packed);
        }
    }

    fn retain_replicas(&mut self, slot: BlockSlot, mut keep: impl FnMut(Replica) -> bool) {
        for packed in self.blocks.get_mut(slot).replicas.iter_mut() {
            if Replica::unpack(*packed).is_some_and(|r| !keep(r)) {
                *packed = 0;
            }
        }
        if let Some(extra) = self.extra_replicas.get_mut(&slot) {
            extra.retain(|packed| Replica::unpack(*packed).is_some_and(&mut keep));
            if extra.is_empty() {
                self.extra_replicas.remove(&slot);
            }
        }
    }

    /// Records a block's final length as its writer reports it; the block
    /// becomes complete at once if enough replicas are already reported.
    pub fn commit(&mut self, slot: BlockSlot, num_bytes: u64, datanodes: &DatanodeManager) {
        if self.blocks.get(slot).state() == BlockState::Complete {
            return;
        }
        let before = self.safety_of(slot, datanodes);
        self.blocks
            .get_mut(slot)
            .set(num_bytes, BlockState::Committed);
        // Replicas finalized before the writer committed were reported with
        // their own length; one that disagrees is not a good copy.
        if let Some(early) = self.early_lengths.remove(&slot) {
            for (datanode, length) in early {
                if length != num_bytes
                    && let Some(packed) = self.find_replica_mut(slot, datanode)
                {
                    *packed |= REPLICA_CORRUPT;
                }
            }
        }
        self.try_complete(slot, datanodes);
        let after = self.safety_of(slot, datanodes);
        self.account(before, after);
        self.queues.mark(slot);
    }

    fn try_complete(&mut self, slot: BlockSlot, datanodes: &DatanodeManager) {
        let record = *self.blocks.get(slot);
        if record.state() == BlockState::Committed
            && self.counts(slot, datanodes).readable() >= u32::from(self.min_replication)
        {
            self.blocks
                .get_mut(slot)
                .set(record.num_bytes(), BlockState::Complete);
            self.expected.remove(&slot);
        }
    }

    /// Marks a block complete regardless of replicas: its file was closed
    /// (used when replaying the edit log, before any datanode reported).
    pub fn force_complete(&mut self, slot: BlockSlot, num_bytes: u64, datanodes: &DatanodeManager) {
        let before = self.safety_of(slot, datanodes);
        self.blocks
            .get_mut(slot)
            .set(num_bytes, BlockState::Complete);
        let after = self.safety_of(slot, datanodes);
        self.account(before, after);
        self.expected.remove(&slot);
        self.early_lengths.remove(&slot);
        self.queues.mark(slot);
    }

    pub fn set_replication(&mut self, slot: BlockSlot, replication: u16) {
        let record = self.blocks.get_mut(slot);
        record.packed = (record.packed & !(REPLICATION_MASK << REPLICATION_SHIFT))
            | ((u64::from(replication) & REPLICATION_MASK) << REPLICATION_SHIFT);
        self.queues.mark(slot);
    }

    /// Forgets a block (its file was deleted or the block abandoned) and
    /// queues the deletion of every replica.
    pub fn remove(&mut self, slot: BlockSlot, datanodes: &mut DatanodeManager) {
        let before = self.safety_of(slot, datanodes);
        self.account(before, (false, false));
        let info = self.info(slot);
        let deletion = PendingDeletion {
            block_id: info.block_id,
            generation_stamp: info.generation_stamp,
            num_bytes: info.num_bytes,
        };
        let replicas: Vec<Replica> = self.replicas(slot).collect();
        for replica in replicas {
            datanodes.forget_and_delete(replica.datanode, slot, deletion);
        }
        self.expected.remove(&slot);
        self.early_lengths.remove(&slot);
        self.extra_replicas.remove(&slot);
        self.queues.forget(slot);
        self.blocks.remove(slot);
    }

    /// Deletes one good replica the block no longer needs.
    pub fn delete_replica(
        &mut self,
        slot: BlockSlot,
        datanode: DatanodeIndex,
        datanodes: &mut DatanodeManager,
    ) {
        let before = self.safety_of(slot, datanodes);
        let info = self.info(slot);
        self.retain_replicas(slot, |r| r.datanode != datanode);
        datanodes.forget_and_delete(
            datanode,
            slot,
            PendingDeletion {
                block_id: info.block_id,
                generation_stamp: info.generation_stamp,
                num_bytes: info.num_bytes,
            },
        );
        let after = self.safety_of(slot, datanodes);
        self.account(before, after);
        self.queues.mark(slot);
    }

    /// Counts the replicas of a block.
    pub fn counts(&self, slot: BlockSlot, datanodes: &DatanodeManager) -> ReplicaCounts {
        let mut counts = ReplicaCounts::default();
        for replica in self.replicas(slot) {
            if replica.corrupt {
                counts.corrupt += 1;
            } else if datanodes.is_in_service(replica.datanode) {
                counts.live += 1;
            } else if datanodes.is_alive(replica.datanode) {
                counts.decommissioning += 1;
            }
        }
        counts
    }

    /// Records a finalized replica a datanode reported.
    pub fn add_replica(
        &mut self,
        block_id: i64,
        generation_stamp: u64,
        num_bytes: u64,
        datanode: DatanodeIndex,
        storage: u16,
        datanodes: &mut DatanodeManager,
    ) -> ReportOutcome {
        let Some(slot) = self.slot_of(block_id) else {
            return ReportOutcome::Unknown;
        };
        let before = self.safety_of(slot, datanodes);
        let record = *self.blocks.get(slot);
        let length_known = record.state() != BlockState::UnderConstruction;
        let bad = generation_stamp < record.generation_stamp
            || (length_known && num_bytes != record.num_bytes());
        if !length_known {
            let early = self.early_lengths.entry(slot).or_default();
            early.retain(|(dn, _)| *dn != datanode);
            early.push((datanode, num_bytes));
        }
        let outcome = match self.find_replica_mut(slot, datanode) {
            Some(packed) => {
                let was_corrupt = *packed & REPLICA_CORRUPT != 0;
                *packed = Replica {
                    datanode,
                    storage,
                    corrupt: was_corrupt || bad,
                }
                .pack();
                if bad || was_corrupt {
                    ReportOutcome::Corrupt
                } else {
                    ReportOutcome::AlreadyKnown
                }
            }
            None => {
                self.push_replica(
                    slot,
                    Replica {
                        datanode,
                        storage,
                        corrupt: bad,
                    },
                );
                if bad {
                    ReportOutcome::Corrupt
                } else {
                    ReportOutcome::Added
                }
            }
        };
        if let Some(node) = datanodes.get_mut(datanode) {
            node.blocks.insert(slot);
        }
        if outcome != ReportOutcome::Corrupt {
            self.try_complete(slot, datanodes);
        }
        // A new good copy may be the one that makes the corrupt ones redundant.
        self.invalidate_corrupt_if_safe(slot, datanodes);
        let after = self.safety_of(slot, datanodes);
        self.account(before, after);
        self.queues.mark(slot);
        outcome
    }

    /// Forgets one replica (the datanode deleted it).
    pub fn remove_replica(
        &mut self,
        block_id: i64,
        datanode: DatanodeIndex,
        datanodes: &mut DatanodeManager,
    ) {
        let Some(slot) = self.slot_of(block_id) else {
            return;
        };
        let before = self.safety_of(slot, datanodes);
        self.retain_replicas(slot, |r| r.datanode != datanode);
        if let Some(node) = datanodes.get_mut(datanode) {
            node.blocks.remove(slot);
        }
        let after = self.safety_of(slot, datanodes);
        self.account(before, after);
        self.queues.mark(slot);
    }

    /// Forgets replicas a datanode held (it is dying, or its report no
    /// longer lists them). Called while the datanode still counts as alive,
    /// so the safe-block count follows.
    pub fn remove_datanode_replicas(
        &mut self,
        datanode: DatanodeIndex,
        slots: &[BlockSlot],
        datanodes: &DatanodeManager,
    ) {
        for &slot in slots {
            if self.blocks.is_live(slot) {
                let before = self.safety_of(slot, datanodes);
                self.retain_replicas(slot, |r| r.datanode != datanode);
                let after = self.safety_of(slot, datanodes);
                self.account(before, after);
                self.queues.mark(slot);
            }
        }
    }

    /// Marks the replica on `datanode` corrupt. Returns false when the block
    /// or the replica is unknown.
    pub fn mark_corrupt(
        &mut self,
        block_id: i64,
        datanode: DatanodeIndex,
        datanodes: &mut DatanodeManager,
    ) -> bool {
        let Some(slot) = self.slot_of(block_id) else {
            return false;
        };
        let before = self.safety_of(slot, datanodes);
        let Some(packed) = self.find_replica_mut(slot, datanode) else {
            return false;
        };
        *packed |= REPLICA_CORRUPT;
        self.invalidate_corrupt_if_safe(slot, datanodes);
        let after = self.safety_of(slot, datanodes);
        self.account(before, after);
        self.queues.mark(slot);
        true
    }

    /// Deletes corrupt replicas of a block once enough good ones exist, as
    /// HDFS does; otherwise they stay listed (and never served) until
    /// re-replication has made good copies.
    fn invalidate_corrupt_if_safe(&mut self, slot: BlockSlot, datanodes: &mut DatanodeManager) {
        let counts = self.counts(slot, datanodes);
        if counts.corrupt == 0 || counts.live < u32::from(self.blocks.get(slot).replication()) {
            return;
        }
        let info = self.info(slot);
        let deletion = PendingDeletion {
            block_id: info.block_id,
            generation_stamp: info.generation_stamp,
            num_bytes: info.num_bytes,
        };
        let corrupt: Vec<Replica> = self.replicas(slot).filter(|r| r.corrupt).collect();
        self.retain_replicas(slot, |r| !r.corrupt);
        for replica in corrupt {
            datanodes.forget_and_delete(replica.datanode, slot, deletion);
        }
    }

    /// The block with the replicas a reader should use: live, uncorrupted
    /// ones in random order, or every replica flagged corrupt when no good one
    /// is left. Blocks under construction list their pipeline.
    pub fn located(
        &self,
        slot: BlockSlot,
        offset: u64,
        datanodes: &DatanodeManager,
    ) -> LocatedBlock {
        let info = self.info(slot);
        let mut chosen: Vec<(DatanodeIndex, u16)> = Vec::new();
        let mut corrupt = false;
        let replicas: Vec<Replica> = self.replicas(slot).collect();
        if info.state == BlockState::UnderConstruction && replicas.is_empty() {
            chosen.extend(self.expected_locations(slot).iter().map(|&dn| (dn, 0)));
        } else {
            chosen.extend(
                replicas
                    .iter()
                    .filter(|r| !r.corrupt && datanodes.is_in_service(r.datanode))
                    .map(|r| (r.datanode, r.storage)),
            );
            chosen.shuffle(&mut rand::rng());
            // Replicas on decommissioning datanodes are read last, as HDFS
            // sorts them.
            chosen.extend(
                replicas
                    .iter()
                    .filter(|r| {
                        !r.corrupt
                            && datanodes.is_alive(r.datanode)
                            && !datanodes.is_in_service(r.datanode)
                    })
                    .map(|r| (r.datanode, r.storage)),
            );
            if chosen.is_empty() && replicas.iter().any(|r| r.corrupt) {
                corrupt = true;
                chosen.extend(
                    replicas
                        .iter()
                        .filter(|r| datanodes.is_alive(r.datanode))
                        .map(|r| (r.datanode, r.storage)),
                );
                chosen.shuffle(&mut rand::rng());
            }
        }
        if info.state == BlockState::UnderConstruction {
            chosen.shuffle(&mut rand::rng());
        }
        let mut located = LocatedBlock {
            block: self.extended(slot),
            offset,
            locations: Vec::new(),
            storage_ids: Vec::new(),
            corrupt,
        };
        for (dn, storage) in chosen {
            if let Some(node) = datanodes.get(dn) {
                located.locations.push(node.info());
                located
                    .storage_ids
                    .push(node.storage_id_for(storage).to_string());
            }
        }
        located
    }

    /// Bytes the block map holds (records, generations, side tables).
    pub fn memory(&self) -> usize {
        self.blocks.heap_bytes()
            + self.extra_replicas.capacity() * (4 + std::mem::size_of::<Vec<u32>>())
            + self.expected.capacity() * (4 + std::mem::size_of::<Vec<u32>>())
            + self.queues.memory()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datanode_manager::Liveness;
    use rdfs_common::protocol::DatanodeId;
    use std::time::Duration;

    fn manager_with(n: usize) -> (DatanodeManager, Vec<DatanodeIndex>) {
        let mut dns = DatanodeManager::new(Liveness {
            stale_after: Duration::from_secs(30),
            dead_after: Duration::from_secs(600),
        });
        let ids = (0..n)
            .map(|i| {
                dns.register(DatanodeId {
                    ip_addr: "127.0.0.1".into(),
                    datanode_uuid: format!("dn-{i}"),
                    xfer_port: 1000 + i as u16,
                    ..Default::default()
                })
                .0
            })
            .collect();
        (dns, ids)
    }

    #[test]
    fn records_are_compact() {
        assert_eq!(std::mem::size_of::<BlockRecord>(), 32);
    }

    #[test]
    fn block_completes_once_minimally_replicated() {
        let (mut dns, ids) = manager_with(3);
        let mut bm = BlockManager::new("BP-1".into(), 1);
        let (id, gs) = bm.next_block().expect("next");
        assert_eq!((id, gs), (1073741825, 1001));
        let slot = bm.add_under_construction(id, gs, 1, 3).expect("add");
        bm.commit(slot, 100, &dns);
        assert_eq!(bm.info(slot).state, BlockState::Committed);
        assert_eq!(
            bm.add_replica(id, gs, 100, ids[0], 0, &mut dns),
            ReportOutcome::Added
        );
        assert_eq!(bm.info(slot).state, BlockState::Complete);
        assert_eq!(
            bm.add_replica(id, gs, 99, ids[1], 0, &mut dns),
            ReportOutcome::Corrupt
        );
        assert_eq!(
            bm.counts(slot, &dns),
            ReplicaCounts {
                live: 1,
                decommissioning: 0,
                corrupt: 1
            }
        );
        let located = bm.located(slot, 0, &dns);
        assert_eq!(located.locations.len(), 1, "corrupt replica hidden");
        assert!(!located.corrupt);
        assert_eq!(
            bm.add_replica(id + 7, gs, 1, ids[2], 0, &mut dns),
            ReportOutcome::Unknown
        );
        assert_eq!(bm.next_block().expect("next"), (1073741826, 1002));
    }

    #[test]
    fn corrupt_replica_is_deleted_once_enough_good_ones_exist() {
        let (mut dns, ids) = manager_with(3);
        let mut bm = BlockManager::new("BP-1".into(), 1);
        let (id, gs) = bm.next_block().expect("next");
        let slot = bm.add_under_construction(id, gs, 1, 2).expect("add");
        bm.commit(slot, 10, &dns);
        bm.add_replica(id, gs, 10, ids[0], 0, &mut dns);
        assert!(bm.mark_corrupt(id, ids[0], &mut dns));
        assert!(
            bm.located(slot, 0, &dns).corrupt,
            "only corrupt replicas left: flagged"
        );
        bm.add_replica(id, gs, 10, ids[1], 0, &mut dns);
        bm.add_replica(id, gs, 10, ids[2], 0, &mut dns);
        assert_eq!(
            bm.counts(slot, &dns),
            ReplicaCounts {
                live: 2,
                decommissioning: 0,
                corrupt: 0
            }
        );
        assert_eq!(dns.take_deletions(ids[0], 10).len(), 1);
        bm.remove(slot, &mut dns);
        assert_eq!(dns.take_deletions(ids[1], 10).len(), 1);
        assert!(bm.get(id).is_none());
    }

    #[test]
    fn safe_block_counts_follow_every_change() {
        let (mut dns, ids) = manager_with(3);
        let mut bm = BlockManager::new("BP-1".into(), 1);
        let check = |bm: &mut BlockManager, dns: &DatanodeManager, expected: (u64, u64)| {
            assert_eq!(bm.safety(), expected);
            let tracked = bm.safety();
            bm.recount(dns);
            assert_eq!(
                bm.safety(),
                tracked,
                "incremental counts agree with a recount"
            );
        };
        let mut slots = Vec::new();
        for _ in 0..3 {
            let (id, gs) = bm.next_block().expect("next");
            let slot = bm.add_under_construction(id, gs, 1, 3).expect("add");
            slots.push((id, gs, slot));
        }
        check(&mut bm, &dns, (0, 0));
        bm.force_complete(slots[0].2, 10, &dns);
        bm.commit(slots[1].2, 10, &dns);
        check(&mut bm, &dns, (0, 1));
        bm.add_replica(slots[0].0, slots[0].1, 10, ids[0], 0, &mut dns);
        bm.add_replica(slots[1].0, slots[1].1, 10, ids[0], 0, &mut dns);
        check(&mut bm, &dns, (2, 2));
        bm.mark_corrupt(slots[0].0, ids[0], &mut dns);
        check(&mut bm, &dns, (1, 2));
        let held = dns.held(ids[0]);
        bm.remove_datanode_replicas(ids[0], &held, &dns);
        dns.mark_dead(ids[0]);
        check(&mut bm, &dns, (0, 2));
        bm.add_replica(slots[1].0, slots[1].1, 10, ids[1], 0, &mut dns);
        check(&mut bm, &dns, (1, 2));
        bm.remove(slots[1].2, &mut dns);
        check(&mut bm, &dns, (0, 1));
    }

    #[test]
    fn more_than_three_replicas_spill_over() {
        let (mut dns, ids) = manager_with(5);
        let mut bm = BlockManager::new("BP-1".into(), 1);
        let (id, gs) = bm.next_block().expect("next");
        let slot = bm.add_under_construction(id, gs, 1, 5).expect("add");
        bm.commit(slot, 10, &dns);
        for dn in &ids {
            assert_eq!(
                bm.add_replica(id, gs, 10, *dn, 1, &mut dns),
                ReportOutcome::Added
            );
        }
        assert_eq!(bm.counts(slot, &dns).live, 5);
        bm.remove_replica(id, ids[4], &mut dns);
        bm.remove_replica(id, ids[0], &mut dns);
        let left: Vec<DatanodeIndex> = bm.replicas(slot).map(|r| r.datanode).collect();
        assert_eq!(left.len(), 3);
        assert!(!left.contains(&ids[0]) && !left.contains(&ids[4]));
    }
}
