//! The replicas one datanode is being told to delete (HDFS's
//! InvalidateBlocks, plus what HDFS leaves implicit: the deletions already
//! sent and not yet done).
//!
//! A deletion is *queued* until a heartbeat takes it, then *sent* until the
//! datanode confirms it: an incremental report that the replica was
//! deleted, or a full report without it. Until then a report of that
//! replica describes a copy on its way out — a full report the datanode
//! took before it acted on the command — and must not bring it back into
//! the block map as a live copy: the replication monitor would count it,
//! find the block over-replicated, and delete another copy, maybe the last
//! good one.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::datanode_manager::PendingDeletion;

/// How long a sent deletion is remembered without a confirmation (a command
/// lost on the way, say); a full report after that counts the replica again
/// and, if it is still unwanted, schedules its deletion anew.
pub const SENT_DELETION_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    Sent(Instant),
}

#[derive(Debug, Default)]
pub struct ReplicaDeletions {
    /// Deletions not sent yet, in the order they were decided. An entry
    /// whose block left `phases` meanwhile (confirmed gone) is skipped.
    queue: VecDeque<PendingDeletion>,
    /// Every replica being deleted, by block id: its generation stamp and
    /// where it stands.
    phases: HashMap<i64, (u64, Phase)>,
}

impl ReplicaDeletions {
    /// Queues a deletion, unless that replica (or a newer one of the
    /// block) is already being deleted.
    pub fn push(&mut self, deletion: PendingDeletion) {
        if self
            .phases
            .get(&deletion.block_id)
            .is_some_and(|(deleted, _)| deletion.generation_stamp <= *deleted)
        {
            return;
        }
        self.phases.insert(
            deletion.block_id,
            (deletion.generation_stamp, Phase::Queued),
        );
        self.queue.push_back(deletion);
    }

    /// Whether any deletion is queued or unconfirmed.
    pub fn is_empty(&self) -> bool {
        self.phases.is_empty()
    }

    /// Whether a deletion of this block is queued or unconfirmed.
    pub fn tracks(&self, block_id: i64) -> bool {
        self.phases.contains_key(&block_id)
    }

    /// Takes up to `limit` queued deletions to send; they stay known as
    /// sent until confirmed.
    pub fn take(&mut self, limit: usize, now: Instant) -> Vec<PendingDeletion> {
        let mut taken = Vec::new();
        while taken.len() < limit {
            let Some(deletion) = self.queue.pop_front() else {
                break;
            };
            if let Some((_, phase)) = self.phases.get_mut(&deletion.block_id)
                && *phase == Phase::Queued
            {
                *phase = Phase::Sent(now);
                taken.push(deletion);
            }
        }
        taken
    }

    /// Whether a report of this replica describes one being deleted: the
    /// same block at a generation stamp no newer than the one deleted.
    pub fn covers(&self, block_id: i64, generation_stamp: u64) -> bool {
        self.phases
            .get(&block_id)
            .is_some_and(|(deleted, _)| generation_stamp <= *deleted)
    }

    /// The datanode no longer holds the replica.
    pub fn confirm(&mut self, block_id: i64) {
        self.phases.remove(&block_id);
    }

    /// A full report listed exactly `reported` (block ids): every deletion
    /// of a replica it did not list is done.
    pub fn confirm_absent(&mut self, reported: impl Fn(i64) -> bool) {
        self.phases.retain(|block_id, _| reported(*block_id));
    }

    /// Forgets sent deletions never confirmed within `ttl`.
    pub fn expire(&mut self, now: Instant, ttl: Duration) {
        self.phases.retain(|_, (_, phase)| match phase {
            Phase::Queued => true,
            Phase::Sent(at) => now.saturating_duration_since(*at) < ttl,
        });
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.phases.clear();
    }

    /// Deletions not sent yet.
    pub fn queued(&self) -> usize {
        self.phases
            .values()
            .filter(|(_, phase)| *phase == Phase::Queued)
            .count()
    }

    /// Deletions sent and not confirmed.
    pub fn sent(&self) -> usize {
        self.phases.len() - self.queued()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deletion(block_id: i64, generation_stamp: u64) -> PendingDeletion {
        PendingDeletion {
            block_id,
            generation_stamp,
            num_bytes: 1,
        }
    }

    #[test]
    fn a_deletion_is_known_from_queued_until_confirmed() {
        let mut deletions = ReplicaDeletions::default();
        let now = Instant::now();
        deletions.push(deletion(1, 5));
        deletions.push(deletion(2, 5));
        deletions.push(deletion(1, 5));
        assert_eq!(deletions.queued(), 2);
        assert!(deletions.covers(1, 5) && deletions.covers(1, 4));
        assert!(!deletions.covers(1, 6), "a newer replica is another copy");
        assert_eq!(deletions.take(1, now), vec![deletion(1, 5)]);
        assert_eq!((deletions.queued(), deletions.sent()), (1, 1));
        assert!(deletions.covers(1, 5), "sent, not yet done");
        deletions.confirm(1);
        assert!(!deletions.covers(1, 5));
        // A queued deletion of a replica already gone is never sent.
        deletions.confirm_absent(|_| false);
        assert!(deletions.take(10, now).is_empty());
    }

    #[test]
    fn a_newer_copy_is_deleted_even_while_an_older_ones_deletion_is_out() {
        let mut deletions = ReplicaDeletions::default();
        let now = Instant::now();
        deletions.push(deletion(1, 5));
        deletions.take(10, now);
        deletions.push(deletion(1, 4));
        assert!(
            deletions.take(10, now).is_empty(),
            "an older copy is covered"
        );
        deletions.push(deletion(1, 6));
        assert_eq!(deletions.take(10, now), vec![deletion(1, 6)]);
        assert!(deletions.covers(1, 6));
    }

    #[test]
    fn sent_deletions_expire_queued_ones_do_not() {
        let mut deletions = ReplicaDeletions::default();
        let now = Instant::now();
        deletions.push(deletion(1, 1));
        deletions.push(deletion(2, 1));
        deletions.take(1, now);
        deletions.expire(now + SENT_DELETION_TTL, SENT_DELETION_TTL);
        assert!(!deletions.covers(1, 1));
        assert!(deletions.covers(2, 1));
    }
}
