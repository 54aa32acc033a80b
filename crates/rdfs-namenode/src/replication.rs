//! The replication monitor (HDFS's RedundancyMonitor with its
//! LowRedundancyBlocks and PendingReconstructionBlocks): which blocks have
//! too few replicas, too many, or all on one rack, and the copies and
//! deletions that fix them.
//!
//! Blocks are not rescanned each round. Whatever changes a block's replicas
//! or replication marks it to be checked; a round classifies the marked
//! blocks into priority queues (fewest live replicas first), deletes excess
//! replicas, and then hands out copies from the queues, a bounded number
//! per live datanode, each to a source datanode under its stream limit. A
//! copy is pending until its target reports the new replica, or times out
//! and is scheduled again. After start-up, once safe mode is over, one
//! pass over the whole block map (in chunks, so writers are not held up)
//! finds the blocks that were under- or over-replicated while the namenode
//! was down.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;

use crate::block_manager::{BlockManager, BlockSlot, BlockState};
use crate::datanode_manager::{DatanodeIndex, DatanodeManager, PendingTransfer};
use crate::placement::{self, Placement};

/// Priority levels, most urgent first (HDFS's LowRedundancyBlocks queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// One live replica left (or only replicas on decommissioning nodes).
    Highest = 0,
    /// Fewer than a third of the wanted replicas.
    VeryLow = 1,
    /// Otherwise under-replicated.
    Low = 2,
    /// Enough replicas, but all on one rack of a multi-rack cluster.
    BadlyDistributed = 3,
    /// No good replica left: corrupt or missing; nothing to copy from.
    Corrupt = 4,
}

const LEVELS: usize = 5;
const PRIORITIES: [Priority; LEVELS] = [
    Priority::Highest,
    Priority::VeryLow,
    Priority::Low,
    Priority::BadlyDistributed,
    Priority::Corrupt,
];

/// Blocks examined per round of the start-up pass.
const INITIAL_SCAN_CHUNK: u32 = 1 << 18;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitialScan {
    /// Safe mode: replicas are still being reported; nothing is judged yet.
    Waiting,
    /// The next slot to look at.
    Running(BlockSlot),
    Done,
}

#[derive(Debug, Clone)]
struct PendingCopy {
    targets: Vec<DatanodeIndex>,
    deadline: Instant,
}

/// Limits of the monitor, from the namenode config.
#[derive(Debug, Clone, Copy)]
pub struct ReplicationSettings {
    pub work_multiplier: u32,
    pub max_streams: u32,
    pub streams_hard_limit: u32,
    pub pending_timeout: Duration,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        Self {
            work_multiplier: 2,
            max_streams: 2,
            streams_hard_limit: 4,
            pending_timeout: Duration::from_secs(300),
        }
    }
}

/// What one round did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundStats {
    pub checked: usize,
    pub copies_scheduled: usize,
    pub excess_deleted: usize,
    pub timed_out: usize,
}

/// Counts the operator views show (dfsadmin -report, fsck, metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub under_replicated: u64,
    pub highest_priority: u64,
    pub badly_distributed: u64,
    pub corrupt_or_missing: u64,
    pub pending_copies: u64,
}

#[derive(Debug)]
pub struct ReplicationQueues {
    levels: [BTreeSet<BlockSlot>; LEVELS],
    level_of: HashMap<BlockSlot, Priority>,
    /// Where each level's next round of scheduling resumes, so a block that
    /// cannot be copied now does not starve the ones behind it.
    cursors: [BlockSlot; LEVELS],
    pending: HashMap<BlockSlot, PendingCopy>,
    to_check: HashSet<BlockSlot>,
    scan: InitialScan,
    /// The replica to delete first when a block turns out over-replicated
    /// (the source of a balancer move).
    delete_hints: HashMap<BlockSlot, DatanodeIndex>,
    /// Over-replicated blocks whose excess deletion waits until every
    /// datanode holding them has a fresh full report in (HDFS's
    /// postponedMisreplicatedBlocks).
    postponed: HashSet<BlockSlot>,
    /// Copies completed since start, for the operators' view.
    pub copies_done: u64,
}

impl Default for ReplicationQueues {
    fn default() -> Self {
        Self {
            levels: Default::default(),
            level_of: HashMap::new(),
            cursors: [0; LEVELS],
            pending: HashMap::new(),
            to_check: HashSet::new(),
            scan: InitialScan::Waiting,
            delete_hints: HashMap::new(),
            postponed: HashSet::new(),
            copies_done: 0,
        }
    }
}

impl ReplicationQueues {
    /// Marks a block to be looked at in the next round.
    pub fn mark(&mut self, slot: BlockSlot) {
        if self.scan != InitialScan::Waiting {
            self.to_check.insert(slot);
        }
    }

    /// The block is gone.
    pub fn forget(&mut self, slot: BlockSlot) {
        self.set_level(slot, None);
        self.pending.remove(&slot);
        self.to_check.remove(&slot);
        self.delete_hints.remove(&slot);
        self.postponed.remove(&slot);
    }

    /// Looks at every postponed block again in the next round: a datanode's
    /// content became fresh.
    pub fn recheck_postponed(&mut self) {
        let postponed = std::mem::take(&mut self.postponed);
        for slot in postponed {
            self.mark(slot);
        }
    }

    /// Over-replicated blocks waiting for fresh reports.
    pub fn postponed(&self) -> usize {
        self.postponed.len()
    }

    /// Starts judging blocks (safe mode is over).
    pub fn start(&mut self) {
        if self.scan == InitialScan::Waiting {
            self.scan = InitialScan::Running(0);
        }
    }

    pub fn is_started(&self) -> bool {
        self.scan != InitialScan::Waiting
    }

    /// A datanode reported a replica: a pending copy to it is done.
    pub fn replica_arrived(&mut self, slot: BlockSlot, datanode: DatanodeIndex) {
        if let Some(pending) = self.pending.get_mut(&slot)
            && let Some(pos) = pending.targets.iter().position(|&t| t == datanode)
        {
            pending.targets.swap_remove(pos);
            self.copies_done += 1;
            if pending.targets.is_empty() {
                self.pending.remove(&slot);
            }
        }
        self.mark(slot);
    }

    pub fn set_delete_hint(&mut self, slot: BlockSlot, datanode: DatanodeIndex) {
        self.delete_hints.insert(slot, datanode);
    }

    /// Records a copy scheduled outside the monitor (a balancer move).
    pub fn add_pending(&mut self, slot: BlockSlot, target: DatanodeIndex, deadline: Instant) {
        let entry = self.pending.entry(slot).or_insert_with(|| PendingCopy {
            targets: Vec::new(),
            deadline,
        });
        entry.targets.push(target);
        entry.deadline = deadline;
    }

    pub fn has_pending(&self, slot: BlockSlot) -> bool {
        self.pending.contains_key(&slot)
    }

    fn pending_targets(&self, slot: BlockSlot) -> &[DatanodeIndex] {
        self.pending
            .get(&slot)
            .map_or(&[], |p| p.targets.as_slice())
    }

    pub fn priority(&self, slot: BlockSlot) -> Option<Priority> {
        self.level_of.get(&slot).copied()
    }

    fn set_level(&mut self, slot: BlockSlot, level: Option<Priority>) {
        let old = match level {
            Some(level) => self.level_of.insert(slot, level),
            None => self.level_of.remove(&slot),
        };
        if old == level {
            return;
        }
        if let Some(old) = old {
            self.levels[old as usize].remove(&slot);
        }
        if let Some(level) = level {
            self.levels[level as usize].insert(slot);
        }
    }

    pub fn counts(&self) -> QueueCounts {
        let len = |p: Priority| self.levels[p as usize].len() as u64;
        QueueCounts {
            under_replicated: len(Priority::Highest) + len(Priority::VeryLow) + len(Priority::Low),
            highest_priority: len(Priority::Highest),
            badly_distributed: len(Priority::BadlyDistributed),
            corrupt_or_missing: len(Priority::Corrupt),
            pending_copies: self.pending.values().map(|p| p.targets.len() as u64).sum(),
        }
    }

    /// Bytes the queues hold.
    pub fn memory(&self) -> usize {
        let set = |n: usize| n * 40;
        self.levels.iter().map(|l| set(l.len())).sum::<usize>()
            + self.level_of.capacity() * 8
            + self.pending.capacity() * 48
            + self.to_check.capacity() * 8
            + self.delete_hints.capacity() * 8
    }
}

/// Where a block's replicas are, sorted by what they count for.
struct Holders {
    /// Good replicas on in-service datanodes.
    live: Vec<DatanodeIndex>,
    /// Good replicas on live decommissioning or decommissioned datanodes.
    retiring: Vec<DatanodeIndex>,
    /// Every datanode listed for the block, good or not.
    all: Vec<DatanodeIndex>,
}

fn holders(blocks: &BlockManager, datanodes: &DatanodeManager, slot: BlockSlot) -> Holders {
    let mut holders = Holders {
        live: Vec::new(),
        retiring: Vec::new(),
        all: Vec::new(),
    };
    for replica in blocks.replicas(slot) {
        holders.all.push(replica.datanode);
        if replica.corrupt || !datanodes.is_alive(replica.datanode) {
            continue;
        }
        if datanodes.is_in_service(replica.datanode) {
            holders.live.push(replica.datanode);
        } else {
            holders.retiring.push(replica.datanode);
        }
    }
    holders
}

/// Which queue a block belongs in, if any.
fn classify(
    blocks: &BlockManager,
    datanodes: &DatanodeManager,
    slot: BlockSlot,
    holders: &Holders,
) -> Option<Priority> {
    let info = blocks.info(slot);
    if info.state != BlockState::Complete {
        return None;
    }
    let expected = usize::from(info.replication);
    let live = holders.live.len();
    if live == 0 && holders.retiring.is_empty() {
        return Some(Priority::Corrupt);
    }
    if live < expected {
        return Some(if live == 0 || (live == 1 && expected > 1) {
            Priority::Highest
        } else if live * 3 < expected {
            Priority::VeryLow
        } else {
            Priority::Low
        });
    }
    if !placement::is_well_placed(datanodes, &holders.live) {
        return Some(Priority::BadlyDistributed);
    }
    None
}

/// One round of the monitor. Runs under the namesystem write lock, outside
/// safe mode.
pub fn run_round(
    blocks: &mut BlockManager,
    datanodes: &mut DatanodeManager,
    settings: &ReplicationSettings,
    now: Instant,
) -> RoundStats {
    let mut stats = RoundStats::default();
    blocks.queues.start();

    let expired: Vec<BlockSlot> = blocks
        .queues
        .pending
        .iter()
        .filter(|(_, p)| p.deadline <= now)
        .map(|(slot, _)| *slot)
        .collect();
    for slot in expired {
        blocks.queues.pending.remove(&slot);
        blocks.queues.mark(slot);
        stats.timed_out += 1;
    }

    if let InitialScan::Running(from) = blocks.queues.scan {
        let end = from.saturating_add(INITIAL_SCAN_CHUNK);
        let limit = blocks.slot_count();
        for slot in from..end.min(limit) {
            if blocks.is_live_slot(slot) {
                blocks.queues.to_check.insert(slot);
            }
        }
        blocks.queues.scan = if end >= limit {
            tracing::info!(
                blocks = blocks.len(),
                "replication monitor: start-up pass over the block map done"
            );
            InitialScan::Done
        } else {
            InitialScan::Running(end)
        };
    }

    let to_check: Vec<BlockSlot> = blocks.queues.to_check.drain().collect();
    stats.checked = to_check.len();
    for slot in to_check {
        if !blocks.is_live_slot(slot) {
            blocks.queues.forget(slot);
            continue;
        }
        let found = holders(blocks, datanodes, slot);
        let level = classify(blocks, datanodes, slot, &found);
        blocks.queues.set_level(slot, level);
        if level.is_none() {
            stats.excess_deleted += delete_excess(blocks, datanodes, slot, found);
        }
    }

    let in_service = datanodes.in_service().count() as u32;
    let mut budget = (in_service * settings.work_multiplier.max(1)) as usize;
    for priority in &PRIORITIES[..Priority::Corrupt as usize] {
        if budget == 0 {
            break;
        }
        let level = *priority as usize;
        let cursor = blocks.queues.cursors[level];
        let queued = &blocks.queues.levels[level];
        let batch: Vec<BlockSlot> = queued
            .range(cursor..)
            .chain(queued.range(..cursor))
            .take(budget)
            .copied()
            .collect();
        budget -= batch.len();
        if let Some(&last) = batch.last() {
            blocks.queues.cursors[level] = last.saturating_add(1);
        }
        for slot in batch {
            if schedule_copy(blocks, datanodes, settings, slot, *priority, now) {
                stats.copies_scheduled += 1;
            }
        }
    }
    stats
}

/// Schedules copies of one queued block; false when none could be (no
/// source under its stream limit, or no datanode to take a copy).
fn schedule_copy(
    blocks: &mut BlockManager,
    datanodes: &mut DatanodeManager,
    settings: &ReplicationSettings,
    slot: BlockSlot,
    priority: Priority,
    now: Instant,
) -> bool {
    let info = blocks.info(slot);
    let found = holders(blocks, datanodes, slot);
    let pending = blocks.queues.pending_targets(slot).to_vec();
    let expected = usize::from(info.replication);
    let needed = if priority == Priority::BadlyDistributed {
        usize::from(pending.is_empty())
    } else {
        expected.saturating_sub(found.live.len() + pending.len())
    };
    if needed == 0 {
        return false;
    }
    let limit = if priority == Priority::Highest {
        settings.streams_hard_limit
    } else {
        settings.max_streams
    };
    // Decommissioning datanodes take no new writes, so they make the best
    // sources; otherwise any good replica under its stream limit.
    let under_limit = |dn: &&DatanodeIndex| {
        datanodes
            .get(**dn)
            .is_some_and(|n| n.transfer_load() < limit)
    };
    let retiring: Vec<DatanodeIndex> = found.retiring.iter().filter(under_limit).copied().collect();
    let live: Vec<DatanodeIndex> = found.live.iter().filter(under_limit).copied().collect();
    let mut rng = rand::rng();
    let Some(&source) = retiring.choose(&mut rng).or_else(|| live.choose(&mut rng)) else {
        return false;
    };
    let mut chosen = found.live.clone();
    chosen.extend(&pending);
    let mut excluded: HashSet<DatanodeIndex> = found.all.iter().copied().collect();
    // A datanode still deleting its old copy could delete the new one too
    // (and its report of the new one would be taken for the old).
    excluded.extend(
        datanodes
            .all()
            .filter(|n| n.deletions.covers(info.block_id, info.generation_stamp))
            .map(|n| n.index),
    );
    let mut targets = placement::choose_targets(
        datanodes,
        Placement {
            wanted: needed,
            chosen: &chosen,
            excluded: &excluded,
            writer: None,
            block_size: info.num_bytes,
        },
        now,
    );
    if priority == Priority::BadlyDistributed {
        let rack = found.live.first().map(|&dn| datanodes.rack(dn).to_string());
        targets.retain(|&t| Some(datanodes.rack(t)) != rack.as_deref());
    }
    if targets.is_empty() {
        // In a small cluster every datanode may already list the block, some
        // with a corrupt copy. While good copies exist, the corrupt ones
        // only block the way: delete them so their datanodes can take a
        // good copy next round.
        let corrupt: Vec<DatanodeIndex> = blocks
            .replicas(slot)
            .filter(|r| r.corrupt && datanodes.is_in_service(r.datanode))
            .map(|r| r.datanode)
            .collect();
        if !found.live.is_empty() && !corrupt.is_empty() {
            for dn in corrupt {
                blocks.delete_replica(slot, dn, datanodes);
            }
            tracing::info!(
                block = info.block_id,
                "deleted corrupt replicas to make room for good copies"
            );
        } else {
            tracing::debug!(
                block = info.block_id,
                "no datanode can take another replica now"
            );
        }
        return false;
    }
    tracing::debug!(
        block = info.block_id,
        source,
        ?targets,
        ?priority,
        "scheduling a copy"
    );
    datanodes.queue_transfer(
        source,
        PendingTransfer {
            block_id: info.block_id,
            generation_stamp: info.generation_stamp,
            num_bytes: info.num_bytes,
            targets: targets.clone(),
            balancing: false,
        },
    );
    let entry = blocks
        .queues
        .pending
        .entry(slot)
        .or_insert_with(|| PendingCopy {
            targets: Vec::new(),
            deadline: now,
        });
    entry.targets.extend(targets);
    entry.deadline = now + settings.pending_timeout;
    true
}

/// Deletes replicas beyond the block's replication, keeping the rack
/// spread: first from racks holding more than one replica, preferring the
/// delete hint, then the datanode with the least space left (HDFS's
/// chooseReplicasToDelete). Returns how many were deleted.
fn delete_excess(
    blocks: &mut BlockManager,
    datanodes: &mut DatanodeManager,
    slot: BlockSlot,
    found: Holders,
) -> usize {
    let expected = usize::from(blocks.info(slot).replication);
    if !blocks.queues.pending_targets(slot).is_empty() {
        return 0;
    }
    if found.live.len() <= expected {
        blocks.queues.delete_hints.remove(&slot);
        return 0;
    }
    // What the block map says a datanode holds may predate deletions the
    // last active ordered or reports a standby missed: deciding which copy
    // is excess from that view could delete the last good one.
    if found.all.iter().any(|&dn| datanodes.is_content_stale(dn)) {
        blocks.queues.postponed.insert(slot);
        return 0;
    }
    let hint = blocks.queues.delete_hints.remove(&slot);
    let mut keep = found.live;
    let mut deleted = 0;
    while keep.len() > expected {
        let mut per_rack: HashMap<&str, usize> = HashMap::new();
        for &dn in &keep {
            *per_rack.entry(datanodes.rack(dn)).or_default() += 1;
        }
        let crowded: Vec<DatanodeIndex> = keep
            .iter()
            .copied()
            .filter(|&dn| per_rack[datanodes.rack(dn)] > 1)
            .collect();
        let pool = if crowded.is_empty() { &keep } else { &crowded };
        let victim = match hint.filter(|h| pool.contains(h)) {
            Some(hinted) => hinted,
            None => match pool
                .iter()
                .copied()
                .min_by_key(|&dn| datanodes.get(dn).map_or(0, |n| n.remaining()))
            {
                Some(dn) => dn,
                None => break,
            },
        };
        keep.retain(|&dn| dn != victim);
        blocks.delete_replica(slot, victim, datanodes);
        deleted += 1;
    }
    deleted
}

/// Marks every block a datanode holds for a check: its admin state changed.
pub fn recheck_datanode(
    blocks: &mut BlockManager,
    datanodes: &DatanodeManager,
    index: DatanodeIndex,
) {
    for slot in datanodes.held(index) {
        blocks.queues.mark(slot);
    }
}

/// Whether every block on a decommissioning datanode has its replication
/// elsewhere; else how many do not.
pub fn blocks_waiting_for_decommission(
    blocks: &BlockManager,
    datanodes: &DatanodeManager,
    index: DatanodeIndex,
) -> u64 {
    let mut waiting = 0;
    for slot in datanodes.held(index) {
        if !blocks.is_live_slot(slot) {
            continue;
        }
        let info = blocks.info(slot);
        let found = holders(blocks, datanodes, slot);
        let enough = found.live.len() >= usize::from(info.replication)
            // A block still being written needs only its minimum.
            || (info.state != BlockState::Complete
                && found.live.len() >= usize::from(blocks.min_replication));
        if !enough {
            waiting += 1;
        }
    }
    waiting
}
