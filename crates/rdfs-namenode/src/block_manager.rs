//! The block map: every block of every file, its state, and where its
//! replicas are. Replica locations are learnt only from datanode reports and
//! never persisted.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use smallvec::SmallVec;

use rdfs_common::ids::{BlockName, LAST_RESERVED_BLOCK_ID, LAST_RESERVED_GENERATION_STAMP};
use rdfs_common::protocol::{ExtendedBlock, LocatedBlock};

use crate::datanode_manager::{DatanodeIndex, DatanodeManager, PendingDeletion};
use crate::namespace::InodeId;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    pub datanode: DatanodeIndex,
    pub storage: u16,
    pub corrupt: bool,
}

#[derive(Debug)]
pub struct BlockInfo {
    pub inode: InodeId,
    pub generation_stamp: u64,
    pub num_bytes: u64,
    pub state: BlockState,
    /// The replication its file asks for.
    pub replication: u16,
    pub replicas: SmallVec<[Replica; 3]>,
    /// Lengths of replicas finalized while the block was under construction,
    /// checked against the length the writer commits.
    replica_lengths: SmallVec<[(DatanodeIndex, u64); 1]>,
}

/// Replica counts of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaCounts {
    /// On live datanodes and not corrupt.
    pub live: u32,
    pub corrupt: u32,
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
    blocks: HashMap<i64, BlockInfo>,
    /// The pipeline targets of blocks under construction.
    expected: HashMap<i64, Vec<DatanodeIndex>>,
    last_block_id: i64,
    last_generation_stamp: u64,
    pub pool_id: String,
    pub min_replication: u16,
}

impl BlockManager {
    pub fn new(pool_id: String, min_replication: u16) -> Self {
        Self {
            blocks: HashMap::new(),
            expected: HashMap::new(),
            last_block_id: LAST_RESERVED_BLOCK_ID,
            last_generation_stamp: LAST_RESERVED_GENERATION_STAMP,
            pool_id,
            min_replication,
        }
    }

    pub fn get(&self, block_id: i64) -> Option<&BlockInfo> {
        self.blocks.get(&block_id)
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&i64, &BlockInfo)> {
        self.blocks.iter()
    }

    /// The id and generation stamp the next new block gets.
    pub fn next_block(&self) -> (i64, u64) {
        (self.last_block_id + 1, self.last_generation_stamp + 1)
    }

    pub fn extended(&self, block_id: i64) -> Option<ExtendedBlock> {
        let info = self.blocks.get(&block_id)?;
        Some(ExtendedBlock {
            pool_id: self.pool_id.clone(),
            block_id,
            generation_stamp: info.generation_stamp,
            num_bytes: info.num_bytes,
        })
    }

    pub fn name(&self, block_id: i64) -> BlockName {
        BlockName {
            block_id,
            generation_stamp: self.blocks.get(&block_id).map_or(0, |b| b.generation_stamp),
        }
    }

    /// Adds a new block under construction.
    pub fn add_under_construction(
        &mut self,
        block_id: i64,
        generation_stamp: u64,
        inode: InodeId,
        replication: u16,
    ) {
        self.last_block_id = self.last_block_id.max(block_id);
        self.last_generation_stamp = self.last_generation_stamp.max(generation_stamp);
        self.blocks.insert(
            block_id,
            BlockInfo {
                inode,
                generation_stamp,
                num_bytes: 0,
                state: BlockState::UnderConstruction,
                replication,
                replicas: SmallVec::new(),
                replica_lengths: SmallVec::new(),
            },
        );
    }

    pub fn set_expected_locations(&mut self, block_id: i64, targets: Vec<DatanodeIndex>) {
        self.expected.insert(block_id, targets);
    }

    pub fn expected_locations(&self, block_id: i64) -> &[DatanodeIndex] {
        self.expected.get(&block_id).map_or(&[], Vec::as_slice)
    }

    /// Records a block's final length as its writer reports it; the block
    /// becomes complete at once if enough replicas are already reported.
    pub fn commit(&mut self, block_id: i64, num_bytes: u64, datanodes: &DatanodeManager) {
        let min = self.min_replication;
        let Some(info) = self.blocks.get_mut(&block_id) else {
            return;
        };
        if info.state == BlockState::Complete {
            return;
        }
        info.num_bytes = num_bytes;
        info.state = BlockState::Committed;
        // Replicas finalized before the writer committed were reported with
        // their own length; one that disagrees with the committed length is
        // not a good copy.
        let lengths_agree = std::mem::take(&mut info.replica_lengths);
        for replica in info.replicas.iter_mut() {
            let reported = lengths_agree
                .iter()
                .find(|(dn, _)| *dn == replica.datanode)
                .map(|(_, len)| *len);
            if reported.is_some_and(|len| len != num_bytes) {
                replica.corrupt = true;
            }
        }
        self.try_complete(block_id, min, datanodes);
    }

    fn try_complete(&mut self, block_id: i64, min: u16, datanodes: &DatanodeManager) {
        let live = self.counts(block_id, datanodes).live;
        if let Some(info) = self.blocks.get_mut(&block_id)
            && info.state == BlockState::Committed
            && live >= u32::from(min)
        {
            info.state = BlockState::Complete;
            self.expected.remove(&block_id);
        }
    }

    /// Marks a block complete regardless of replicas: its file was closed
    /// (used when replaying the edit log, before any datanode reported).
    pub fn force_complete(&mut self, block_id: i64, num_bytes: u64) {
        if let Some(info) = self.blocks.get_mut(&block_id) {
            info.num_bytes = num_bytes;
            info.state = BlockState::Complete;
        }
        self.expected.remove(&block_id);
    }

    pub fn set_replication(&mut self, block_id: i64, replication: u16) {
        if let Some(info) = self.blocks.get_mut(&block_id) {
            info.replication = replication;
        }
    }

    /// Forgets a block (its file was deleted or the block abandoned) and
    /// queues the deletion of every replica.
    pub fn remove(&mut self, block_id: i64, datanodes: &mut DatanodeManager) {
        self.expected.remove(&block_id);
        let Some(info) = self.blocks.remove(&block_id) else {
            return;
        };
        let deletion = PendingDeletion {
            block_id,
            generation_stamp: info.generation_stamp,
            num_bytes: info.num_bytes,
        };
        for replica in info.replicas {
            datanodes.forget_and_delete(replica.datanode, deletion);
        }
    }

    /// Counts the replicas of a block.
    pub fn counts(&self, block_id: i64, datanodes: &DatanodeManager) -> ReplicaCounts {
        let mut counts = ReplicaCounts::default();
        if let Some(info) = self.blocks.get(&block_id) {
            for replica in &info.replicas {
                if replica.corrupt {
                    counts.corrupt += 1;
                } else if datanodes.is_alive(replica.datanode) {
                    counts.live += 1;
                }
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
        let min = self.min_replication;
        let Some(info) = self.blocks.get_mut(&block_id) else {
            return ReportOutcome::Unknown;
        };
        let length_known = info.state != BlockState::UnderConstruction;
        let bad = generation_stamp < info.generation_stamp
            || (length_known && num_bytes != info.num_bytes);
        if !length_known {
            info.replica_lengths.retain(|(dn, _)| *dn != datanode);
            info.replica_lengths.push((datanode, num_bytes));
        }
        let outcome = match info.replicas.iter_mut().find(|r| r.datanode == datanode) {
            Some(existing) => {
                existing.storage = storage;
                if bad && !existing.corrupt {
                    existing.corrupt = true;
                    ReportOutcome::Corrupt
                } else if bad {
                    ReportOutcome::Corrupt
                } else {
                    ReportOutcome::AlreadyKnown
                }
            }
            None => {
                info.replicas.push(Replica {
                    datanode,
                    storage,
                    corrupt: bad,
                });
                if bad {
                    ReportOutcome::Corrupt
                } else {
                    ReportOutcome::Added
                }
            }
        };
        if let Some(node) = datanodes.get_mut(datanode) {
            node.blocks.insert(block_id);
        }
        if outcome != ReportOutcome::Corrupt {
            self.try_complete(block_id, min, datanodes);
        }
        // A new good copy may be the one that makes the corrupt ones redundant.
        self.invalidate_corrupt_if_safe(block_id, datanodes);
        outcome
    }

    /// Forgets one replica (the datanode deleted it).
    pub fn remove_replica(
        &mut self,
        block_id: i64,
        datanode: DatanodeIndex,
        datanodes: &mut DatanodeManager,
    ) {
        if let Some(info) = self.blocks.get_mut(&block_id) {
            info.replicas.retain(|r| r.datanode != datanode);
        }
        if let Some(node) = datanodes.get_mut(datanode) {
            node.blocks.remove(&block_id);
        }
    }

    /// Forgets every replica a datanode held (it died).
    pub fn remove_datanode_replicas(&mut self, datanode: DatanodeIndex, block_ids: &[i64]) {
        for block_id in block_ids {
            if let Some(info) = self.blocks.get_mut(block_id) {
                info.replicas.retain(|r| r.datanode != datanode);
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
        let Some(info) = self.blocks.get_mut(&block_id) else {
            return false;
        };
        let Some(replica) = info.replicas.iter_mut().find(|r| r.datanode == datanode) else {
            return false;
        };
        replica.corrupt = true;
        self.invalidate_corrupt_if_safe(block_id, datanodes);
        true
    }

    /// Deletes corrupt replicas of a block once enough good ones exist, as
    /// HDFS does; otherwise they stay listed (and never served) until
    /// re-replication has made good copies.
    fn invalidate_corrupt_if_safe(&mut self, block_id: i64, datanodes: &mut DatanodeManager) {
        let counts = self.counts(block_id, datanodes);
        let Some(info) = self.blocks.get_mut(&block_id) else {
            return;
        };
        if counts.live < u32::from(info.replication) || counts.corrupt == 0 {
            return;
        }
        let corrupt: Vec<Replica> = info
            .replicas
            .iter()
            .copied()
            .filter(|r| r.corrupt)
            .collect();
        info.replicas.retain(|r| !r.corrupt);
        let deletion = PendingDeletion {
            block_id,
            generation_stamp: info.generation_stamp,
            num_bytes: info.num_bytes,
        };
        for replica in corrupt {
            datanodes.forget_and_delete(replica.datanode, deletion);
        }
    }

    /// The block with the replicas a reader should use: live, uncorrupted
    /// ones in random order, or every replica flagged corrupt when no good one
    /// is left. Blocks under construction list their pipeline.
    pub fn located(
        &self,
        block_id: i64,
        offset: u64,
        datanodes: &DatanodeManager,
    ) -> Option<LocatedBlock> {
        let info = self.blocks.get(&block_id)?;
        let block = self.extended(block_id)?;
        let mut chosen: Vec<(DatanodeIndex, u16)> = Vec::new();
        let mut corrupt = false;
        if info.state == BlockState::UnderConstruction && info.replicas.is_empty() {
            chosen.extend(self.expected_locations(block_id).iter().map(|&dn| (dn, 0)));
        } else {
            chosen.extend(
                info.replicas
                    .iter()
                    .filter(|r| !r.corrupt && datanodes.is_alive(r.datanode))
                    .map(|r| (r.datanode, r.storage)),
            );
            if chosen.is_empty() && info.replicas.iter().any(|r| r.corrupt) {
                corrupt = true;
                chosen.extend(
                    info.replicas
                        .iter()
                        .filter(|r| datanodes.is_alive(r.datanode))
                        .map(|r| (r.datanode, r.storage)),
                );
            }
        }
        chosen.shuffle(&mut rand::rng());
        let mut located = LocatedBlock {
            block,
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
        Some(located)
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
    fn block_completes_once_minimally_replicated() {
        let (mut dns, ids) = manager_with(3);
        let mut bm = BlockManager::new("BP-1".into(), 1);
        let (id, gs) = bm.next_block();
        assert_eq!((id, gs), (1073741825, 1001));
        bm.add_under_construction(id, gs, 16386, 3);
        bm.commit(id, 100, &dns);
        assert_eq!(bm.get(id).map(|b| b.state), Some(BlockState::Committed));
        assert_eq!(
            bm.add_replica(id, gs, 100, ids[0], 0, &mut dns),
            ReportOutcome::Added
        );
        assert_eq!(bm.get(id).map(|b| b.state), Some(BlockState::Complete));
        assert_eq!(
            bm.add_replica(id, gs, 99, ids[1], 0, &mut dns),
            ReportOutcome::Corrupt
        );
        assert_eq!(
            bm.counts(id, &dns),
            ReplicaCounts {
                live: 1,
                corrupt: 1
            }
        );
        let located = bm.located(id, 0, &dns).expect("located");
        assert_eq!(located.locations.len(), 1, "corrupt replica hidden");
        assert!(!located.corrupt);
        assert_eq!(
            bm.add_replica(id + 7, gs, 1, ids[2], 0, &mut dns),
            ReportOutcome::Unknown
        );
    }

    #[test]
    fn corrupt_replica_is_deleted_once_enough_good_ones_exist() {
        let (mut dns, ids) = manager_with(3);
        let mut bm = BlockManager::new("BP-1".into(), 1);
        let (id, gs) = bm.next_block();
        bm.add_under_construction(id, gs, 16386, 2);
        bm.commit(id, 10, &dns);
        bm.add_replica(id, gs, 10, ids[0], 0, &mut dns);
        assert!(bm.mark_corrupt(id, ids[0], &mut dns));
        let located = bm.located(id, 0, &dns).expect("located");
        assert!(located.corrupt, "only corrupt replicas left: flagged");
        bm.add_replica(id, gs, 10, ids[1], 0, &mut dns);
        bm.add_replica(id, gs, 10, ids[2], 0, &mut dns);
        assert_eq!(
            bm.counts(id, &dns),
            ReplicaCounts {
                live: 2,
                corrupt: 0
            }
        );
        assert_eq!(dns.take_deletions(ids[0], 10).len(), 1);
        bm.remove(id, &mut dns);
        assert_eq!(dns.take_deletions(ids[1], 10).len(), 1);
        assert!(bm.get(id).is_none());
    }
}
