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
use std::time::Instant;

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
    /// The last block of a file whose writer is gone (lease recovery) or
    /// which is being cut (truncate): a primary datanode settles its
    /// replicas and commits the outcome.
    UnderRecovery,
}

impl BlockState {
    fn code(self) -> u64 {
        match self {
            Self::UnderConstruction => 0,
            Self::Committed => 1,
            Self::Complete => 2,
            Self::UnderRecovery => 3,
        }
    }

    fn from_code(code: u64) -> Self {
        match code {
            1 => Self::Committed,
            2 => Self::Complete,
            3 => Self::UnderRecovery,
            _ => Self::UnderConstruction,
        }
    }

    /// Being written or recovered: its length is not final.
    pub fn is_open(self) -> bool {
        matches!(self, Self::UnderConstruction | Self::UnderRecovery)
    }
}

/// Largest block length the record holds (1 TiB).
pub const MAX_BLOCK_LEN: u64 = (1 << 40) - 1;
const LEN_MASK: u64 = MAX_BLOCK_LEN;
const STATE_SHIFT: u32 = 40;
const REPLICATION_SHIFT: u32 = 42;
const REPLICATION_MASK: u64 = 0x3fff;

const REPLICA_PRESENT: u32 = 1;
/// Damaged: bad checksums, a wrong length or a wrong state.
const REPLICA_CORRUPT: u32 = 2;
/// Older than the block (a generation stamp the block has moved past). A
/// later report of the current generation stamp from the same datanode
/// clears it; it never clears [`REPLICA_CORRUPT`].
const REPLICA_STALE: u32 = 4;

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
    /// Not a good copy: damaged or stale.
    pub corrupt: bool,
    /// Not a good copy because its generation stamp is older than the
    /// block's.
    pub stale: bool,
}

impl Replica {
    fn pack(self) -> u32 {
        ((self.datanode & 0xffff) << 16)
            | (u32::from(self.storage.min(0xff)) << 8)
            | REPLICA_PRESENT
            | if self.corrupt && !self.stale {
                REPLICA_CORRUPT
            } else {
                0
            }
            | if self.stale { REPLICA_STALE } else { 0 }
    }

    fn unpack(packed: u32) -> Option<Self> {
        (packed & REPLICA_PRESENT != 0).then_some(Replica {
            datanode: packed >> 16,
            storage: ((packed >> 8) & 0xff) as u16,
            corrupt: packed & (REPLICA_CORRUPT | REPLICA_STALE) != 0,
            stale: packed & REPLICA_STALE != 0,
        })
    }
}

fn with_storage(packed: u32, storage: u16) -> u32 {
    (packed & !0xff00) | (u32::from(storage.min(0xff)) << 8)
}

/// The state of a replica as its datanode reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedState {
    Finalized,
    /// Being written.
    Rbw,
    /// Found unfinalized at datanode start-up, waiting for recovery.
    Rwr,
}

/// A block recovery under way (in memory; the block's state and, for a
/// truncate, its target length are what the image keeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The generation stamp the recovered replicas take; the primary's
    /// commit must name it.
    pub recovery_id: u64,
    /// A truncate: the replicas are cut to the block's recorded length.
    pub truncate: bool,
    pub primary: Option<DatanodeIndex>,
    /// Datanodes already tried as primary, so retries rotate.
    pub tried: Vec<DatanodeIndex>,
    pub started: Instant,
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
    /// A replica being written or waiting for recovery of a block that is
    /// not complete: a candidate for its recovery, not a counted replica.
    Candidate,
    /// A replica being written of a complete block (it is finalizing).
    Ignored,
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
    /// The generation stamps of listed replicas that differ from their
    /// block's (stale ones, or newer ones finalized before the commit that
    /// catches the block up); deletion orders must name them.
    replica_stamps: HashMap<BlockSlot, Vec<(DatanodeIndex, u64)>>,
    /// Blocks under recovery.
    recoveries: HashMap<BlockSlot, Recovery>,
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
            replica_stamps: HashMap::new(),
            recoveries: HashMap::new(),
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

    /// Up to `limit` complete blocks without their minimum live replicas,
    /// each with the path of its file: what safe mode waits for. A full
    /// scan of the block map; callers do it now and then, not per call.
    pub fn unsafe_blocks(
        &self,
        namespace: &crate::namespace::Namespace,
        datanodes: &DatanodeManager,
        limit: usize,
    ) -> Vec<(BlockName, String)> {
        let mut found = Vec::new();
        for slot in self.blocks.live_slots() {
            if found.len() >= limit {
                break;
            }
            if let (true, false) = self.safety_of(slot, datanodes) {
                let file = namespace.at(self.blocks.get(slot).inode).id();
                found.push((self.name(slot), namespace.path_of(file)));
            }
        }
        found
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
                    && *packed & REPLICA_STALE == 0
                {
                    *packed |= REPLICA_CORRUPT;
                }
            }
        }
        self.recoveries.remove(&slot);
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
        self.recoveries.remove(&slot);
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
        let replicas: Vec<Replica> = self.replicas(slot).collect();
        for replica in replicas {
            let deletion = self.deletion_for(slot, replica.datanode);
            datanodes.forget_and_delete(replica.datanode, slot, deletion);
        }
        self.expected.remove(&slot);
        self.early_lengths.remove(&slot);
        self.replica_stamps.remove(&slot);
        self.recoveries.remove(&slot);
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
        let deletion = self.deletion_for(slot, datanode);
        self.retain_replicas(slot, |r| r.datanode != datanode);
        self.forget_stamp(slot, datanode);
        datanodes.forget_and_delete(datanode, slot, deletion);
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
        self.report_replica(
            block_id,
            generation_stamp,
            num_bytes,
            ReportedState::Finalized,
            datanode,
            storage,
            datanodes,
        )
    }

    /// Records a replica a datanode reported, in any state (HDFS's
    /// `BlockManager.processReportedBlock` and `checkReplicaCorrupt`):
    /// - a generation stamp older than the block's: a stale replica,
    ///   corrupt until the same datanode reports the current one;
    /// - being written or waiting for recovery, of a block not complete: a
    ///   candidate location for its recovery, not a counted replica;
    /// - being written, of a complete block at its generation stamp:
    ///   ignored (it is finalizing); waiting for recovery, or another
    ///   generation stamp: corrupt;
    /// - finalized: a replica, corrupt when its length contradicts the
    ///   block's final length. A newer generation stamp is accepted (a
    ///   recovery finished before its commit arrived).
    #[allow(clippy::too_many_arguments)]
    pub fn report_replica(
        &mut self,
        block_id: i64,
        generation_stamp: u64,
        num_bytes: u64,
        state: ReportedState,
        datanode: DatanodeIndex,
        storage: u16,
        datanodes: &mut DatanodeManager,
    ) -> ReportOutcome {
        let Some(slot) = self.slot_of(block_id) else {
            return ReportOutcome::Unknown;
        };
        let record = *self.blocks.get(slot);
        let block_state = record.state();
        let stale = generation_stamp < record.generation_stamp;
        if state != ReportedState::Finalized && !stale {
            if block_state != BlockState::Complete {
                self.add_expected(slot, datanode);
                return ReportOutcome::Candidate;
            }
            if state == ReportedState::Rbw && generation_stamp == record.generation_stamp {
                return ReportOutcome::Ignored;
            }
        }
        let before = self.safety_of(slot, datanodes);
        let length_known = matches!(block_state, BlockState::Committed | BlockState::Complete);
        // Damaged rather than stale: the wrong state for a complete block,
        // or a length that contradicts the final one.
        let bad = !stale
            && (state != ReportedState::Finalized
                || (length_known && num_bytes != record.num_bytes()));
        if state == ReportedState::Finalized && !stale && !length_known {
            let early = self.early_lengths.entry(slot).or_default();
            early.retain(|(dn, _)| *dn != datanode);
            early.push((datanode, num_bytes));
        }
        let mut flags = match self.find_replica_mut(slot, datanode) {
            Some(packed) => {
                let known = *packed;
                // Only a stale mark is cleared by a current report.
                *packed = with_storage(known & !REPLICA_STALE, storage);
                known & !REPLICA_STALE
            }
            None => {
                self.push_replica(
                    slot,
                    Replica {
                        datanode,
                        storage,
                        corrupt: false,
                        stale: false,
                    },
                );
                0
            }
        };
        if stale {
            flags |= REPLICA_STALE;
        }
        if bad {
            flags |= REPLICA_CORRUPT;
        }
        if let Some(packed) = self.find_replica_mut(slot, datanode) {
            *packed |= flags & (REPLICA_STALE | REPLICA_CORRUPT);
        }
        self.set_stamp(slot, datanode, generation_stamp);
        let was_present = flags & REPLICA_PRESENT != 0;
        let outcome = if flags & (REPLICA_STALE | REPLICA_CORRUPT) != 0 {
            ReportOutcome::Corrupt
        } else if was_present {
            ReportOutcome::AlreadyKnown
        } else {
            ReportOutcome::Added
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

    /// Remembers the generation stamp of `datanode`'s replica when it
    /// differs from the block's.
    fn set_stamp(&mut self, slot: BlockSlot, datanode: DatanodeIndex, generation_stamp: u64) {
        let block_stamp = self.blocks.get(slot).generation_stamp;
        let stamps = self.replica_stamps.entry(slot).or_default();
        stamps.retain(|(dn, _)| *dn != datanode);
        if generation_stamp != block_stamp {
            stamps.push((datanode, generation_stamp));
        }
        if stamps.is_empty() {
            self.replica_stamps.remove(&slot);
        }
    }

    fn forget_stamp(&mut self, slot: BlockSlot, datanode: DatanodeIndex) {
        if let Some(stamps) = self.replica_stamps.get_mut(&slot) {
            stamps.retain(|(dn, _)| *dn != datanode);
            if stamps.is_empty() {
                self.replica_stamps.remove(&slot);
            }
        }
    }

    /// The generation stamp of `datanode`'s replica of the block.
    pub fn replica_stamp(&self, slot: BlockSlot, datanode: DatanodeIndex) -> u64 {
        self.replica_stamps
            .get(&slot)
            .and_then(|stamps| stamps.iter().find(|(dn, _)| *dn == datanode))
            .map_or(self.blocks.get(slot).generation_stamp, |(_, gs)| *gs)
    }

    /// The order that deletes `datanode`'s replica: datanodes delete only a
    /// replica of exactly this generation stamp.
    fn deletion_for(&self, slot: BlockSlot, datanode: DatanodeIndex) -> PendingDeletion {
        let info = self.info(slot);
        PendingDeletion {
            block_id: info.block_id,
            generation_stamp: self.replica_stamp(slot, datanode),
            num_bytes: info.num_bytes,
        }
    }

    /// Adds a datanode that may hold a replica of a block not complete.
    pub fn add_expected(&mut self, slot: BlockSlot, datanode: DatanodeIndex) {
        let expected = self.expected.entry(slot).or_default();
        if !expected.contains(&datanode) {
            expected.push(datanode);
        }
    }

    /// The recovery under way of a block, if any.
    pub fn recovery(&self, slot: BlockSlot) -> Option<&Recovery> {
        self.recoveries.get(&slot)
    }

    fn set_state(
        &mut self,
        slot: BlockSlot,
        num_bytes: u64,
        state: BlockState,
        datanodes: &DatanodeManager,
    ) {
        let before = self.safety_of(slot, datanodes);
        self.blocks.get_mut(slot).set(num_bytes, state);
        let after = self.safety_of(slot, datanodes);
        self.account(before, after);
        self.queues.mark(slot);
    }

    /// A generation stamp handed out without a new block.
    pub fn observe_generation_stamp(&mut self, generation_stamp: u64) {
        self.last_generation_stamp = self.last_generation_stamp.max(generation_stamp);
    }

    /// Puts a complete last block back under construction for an append,
    /// its good replicas as the pipeline.
    pub fn reopen(&mut self, slot: BlockSlot, datanodes: &DatanodeManager) {
        let num_bytes = self.blocks.get(slot).num_bytes();
        let pipeline: Vec<DatanodeIndex> = self
            .replicas(slot)
            .filter(|r| !r.corrupt && datanodes.is_alive(r.datanode))
            .map(|r| r.datanode)
            .collect();
        self.set_state(slot, num_bytes, BlockState::UnderConstruction, datanodes);
        self.expected.insert(slot, pipeline);
        self.early_lengths.remove(&slot);
    }

    /// The last block of a file under construction takes a new generation
    /// stamp and length (pipeline recovery, fsync, a recovery's outcome).
    /// Listed replicas older than the new stamp become stale. A recovery
    /// whose id is the new stamp is over: the block is under construction
    /// again (its commit closes the file next, or the writer goes on).
    pub fn update_last(
        &mut self,
        slot: BlockSlot,
        generation_stamp: u64,
        num_bytes: u64,
        datanodes: &DatanodeManager,
    ) {
        let record = *self.blocks.get(slot);
        let old_stamp = record.generation_stamp;
        let before = self.safety_of(slot, datanodes);
        if generation_stamp != old_stamp {
            let listed: Vec<DatanodeIndex> = self.replicas(slot).map(|r| r.datanode).collect();
            let stamps: Vec<(DatanodeIndex, u64)> = listed
                .iter()
                .map(|&dn| (dn, self.replica_stamp(slot, dn)))
                .collect();
            self.blocks.get_mut(slot).generation_stamp = generation_stamp;
            for (dn, stamp) in stamps {
                if stamp < generation_stamp
                    && let Some(packed) = self.find_replica_mut(slot, dn)
                {
                    *packed |= REPLICA_STALE;
                }
                self.set_stamp(slot, dn, stamp);
            }
            self.observe_generation_stamp(generation_stamp);
        }
        let mut state = record.state();
        if state == BlockState::UnderRecovery
            && self
                .recoveries
                .get(&slot)
                .is_some_and(|r| r.recovery_id == generation_stamp)
        {
            self.recoveries.remove(&slot);
            state = BlockState::UnderConstruction;
        }
        self.blocks.get_mut(slot).set(num_bytes, state);
        let after = self.safety_of(slot, datanodes);
        self.account(before, after);
        self.queues.mark(slot);
    }

    /// The outcome of a block recovery: `targets` hold the recovered
    /// replica (the primary vouches for them), whatever they were before.
    pub fn recovered(
        &mut self,
        slot: BlockSlot,
        targets: &[(DatanodeIndex, u16)],
        datanodes: &mut DatanodeManager,
    ) {
        let before = self.safety_of(slot, datanodes);
        for &(datanode, storage) in targets {
            match self.find_replica_mut(slot, datanode) {
                Some(packed) => {
                    *packed = with_storage(*packed & !(REPLICA_STALE | REPLICA_CORRUPT), storage);
                }
                None => self.push_replica(
                    slot,
                    Replica {
                        datanode,
                        storage,
                        corrupt: false,
                        stale: false,
                    },
                ),
            }
            self.forget_stamp(slot, datanode);
            if let Some(node) = datanodes.get_mut(datanode) {
                node.blocks.insert(slot);
            }
            if let Some(early) = self.early_lengths.get_mut(&slot) {
                early.retain(|(dn, _)| *dn != datanode);
            }
        }
        self.expected
            .insert(slot, targets.iter().map(|(dn, _)| *dn).collect());
        let after = self.safety_of(slot, datanodes);
        self.account(before, after);
        self.queues.mark(slot);
    }

    /// Starts (or restarts, with a new id) the recovery of an open last
    /// block. A truncate's recovery stays one.
    pub fn start_recovery(
        &mut self,
        slot: BlockSlot,
        recovery_id: u64,
        truncate: bool,
        datanodes: &DatanodeManager,
    ) {
        let num_bytes = self.blocks.get(slot).num_bytes();
        self.set_state(slot, num_bytes, BlockState::UnderRecovery, datanodes);
        self.observe_generation_stamp(recovery_id);
        let recovery = self.recoveries.entry(slot).or_insert_with(|| Recovery {
            recovery_id,
            truncate,
            primary: None,
            tried: Vec::new(),
            started: Instant::now(),
        });
        recovery.recovery_id = recovery_id;
        recovery.truncate |= truncate;
        recovery.primary = None;
        recovery.started = Instant::now();
    }

    /// The files whose last block is under recovery.
    pub fn recovering_files(&self, namespace: &crate::namespace::Namespace) -> Vec<u64> {
        self.recoveries
            .keys()
            .filter(|slot| self.blocks.is_live(**slot))
            .map(|slot| namespace.at(self.blocks.get(*slot).inode).id())
            .collect()
    }

    /// Restores a recovery from an image (its primary and retries are
    /// forgotten; it is retried once the soft limit passes).
    pub(crate) fn restore_recovery(&mut self, slot: BlockSlot, recovery_id: u64, truncate: bool) {
        self.recoveries.insert(
            slot,
            Recovery {
                recovery_id,
                truncate,
                primary: None,
                tried: Vec::new(),
                started: Instant::now(),
            },
        );
    }

    /// Cuts a complete block to `num_bytes` and puts it under recovery so
    /// its replicas are cut too; its good replicas are the candidates.
    pub fn start_truncate(
        &mut self,
        slot: BlockSlot,
        num_bytes: u64,
        recovery_id: u64,
        datanodes: &DatanodeManager,
    ) {
        let candidates: Vec<DatanodeIndex> = self
            .replicas(slot)
            .filter(|r| !r.corrupt)
            .map(|r| r.datanode)
            .collect();
        self.set_state(slot, num_bytes, BlockState::UnderRecovery, datanodes);
        self.expected.insert(slot, candidates);
        self.early_lengths.remove(&slot);
        self.recoveries.remove(&slot);
        self.start_recovery(slot, recovery_id, true, datanodes);
    }

    /// The datanodes that may lead the recovery of a block: its pipeline
    /// and the holders of its good replicas, alive, the most recently heard
    /// from first.
    pub fn recovery_candidates(
        &self,
        slot: BlockSlot,
        datanodes: &DatanodeManager,
    ) -> Vec<DatanodeIndex> {
        let mut candidates: Vec<DatanodeIndex> = self.expected_locations(slot).to_vec();
        for replica in self.replicas(slot).filter(|r| !r.corrupt) {
            if !candidates.contains(&replica.datanode) {
                candidates.push(replica.datanode);
            }
        }
        candidates.retain(|&dn| datanodes.is_alive(dn));
        candidates
            .sort_by_key(|&dn| std::cmp::Reverse(datanodes.get(dn).map(|d| d.last_heartbeat)));
        candidates
    }

    /// Picks the primary datanode of a recovery: the most recently heard
    /// from candidate not yet tried (all again once every one was).
    pub fn choose_primary(
        &mut self,
        slot: BlockSlot,
        datanodes: &DatanodeManager,
    ) -> Option<DatanodeIndex> {
        let candidates = self.recovery_candidates(slot, datanodes);
        let recovery = self.recoveries.get_mut(&slot)?;
        let primary = match candidates.iter().find(|dn| !recovery.tried.contains(dn)) {
            Some(&dn) => dn,
            None => {
                recovery.tried.clear();
                *candidates.first()?
            }
        };
        recovery.tried.push(primary);
        recovery.primary = Some(primary);
        Some(primary)
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
        self.forget_stamp(slot, datanode);
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
                self.forget_stamp(slot, datanode);
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
        if counts.corrupt == 0
            || counts.live == 0
            || counts.live < u32::from(self.blocks.get(slot).replication())
        {
            return;
        }
        let corrupt: Vec<Replica> = self.replicas(slot).filter(|r| r.corrupt).collect();
        let deletions: Vec<PendingDeletion> = corrupt
            .iter()
            .map(|r| self.deletion_for(slot, r.datanode))
            .collect();
        self.retain_replicas(slot, |r| !r.corrupt);
        for (replica, deletion) in corrupt.into_iter().zip(deletions) {
            self.forget_stamp(slot, replica.datanode);
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
        // A block being written or recovered lists its pipeline (or the
        // candidates of its recovery).
        let pipeline = info.state.is_open()
            && (!self.expected_locations(slot).is_empty() || replicas.is_empty());
        if pipeline {
            chosen.extend(self.expected_locations(slot).iter().map(|&dn| {
                let storage = replicas
                    .iter()
                    .find(|r| r.datanode == dn)
                    .map_or(0, |r| r.storage);
                (dn, storage)
            }));
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
        if info.state == BlockState::UnderConstruction && !pipeline {
            chosen.shuffle(&mut rand::rng());
        }
        let mut located = LocatedBlock {
            block: self.extended(slot),
            offset,
            locations: Vec::new(),
            storage_ids: Vec::new(),
            corrupt,
            block_token: Default::default(),
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
            + self.replica_stamps.capacity() * (4 + std::mem::size_of::<Vec<(u32, u64)>>())
            + self.recoveries.capacity() * (4 + std::mem::size_of::<Recovery>())
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
