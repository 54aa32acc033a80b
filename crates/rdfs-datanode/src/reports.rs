//! What the datanode owes its namenodes between heartbeats: replicas
//! received or deleted (incremental block reports, sent at once) and
//! replicas found corrupt.
//!
//! In an HA nameservice every namenode must hear all of it (the standby
//! keeps its block map hot for a failover), so [`Reports`] fans each report
//! out to one [`ReportQueue`] per namenode, and each namenode's link drains
//! its own queue at its own pace: a namenode that is down only makes its
//! own queue grow, never the others' or the writer that reported.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use rdfs_common::protocol::ExtendedBlock;

/// How many incremental changes one namenode's queue holds before they are
/// dropped in favour of a full block report. A namenode that cannot take
/// reports for a long while (down, or paused) would otherwise make this
/// datanode hold every change since; at about 150 bytes a change this
/// bounds that to about 10 MiB per namenode, and hours of writes on a busy
/// datanode still fit.
pub const QUEUE_CAPACITY: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaChange {
    Received,
    Deleted,
}

#[derive(Debug, Default)]
pub struct Pending {
    pub changes: Vec<(ExtendedBlock, String, ReplicaChange)>,
    pub bad: Vec<(ExtendedBlock, String, String)>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.bad.is_empty()
    }
}

/// Where the dataset, the write pipeline and the scanners report; it copies
/// every report into each namenode's queue.
#[derive(Debug, Default)]
pub struct Reports {
    queues: Mutex<Vec<Arc<ReportQueue>>>,
}

impl Reports {
    /// A queue for `namenode` that receives every report made from now on.
    pub fn subscribe(&self, namenode: &str) -> Arc<ReportQueue> {
        self.subscribe_bounded(namenode, QUEUE_CAPACITY)
    }

    /// [`Self::subscribe`] with another capacity (tests overflow it).
    pub fn subscribe_bounded(&self, namenode: &str, capacity: usize) -> Arc<ReportQueue> {
        let queue = Arc::new(ReportQueue {
            namenode: namenode.to_string(),
            capacity: capacity.max(1),
            state: Mutex::new(QueueState::default()),
            notify: Notify::new(),
        });
        self.queues.lock().push(Arc::clone(&queue));
        queue
    }

    pub fn replica_changed(&self, block: ExtendedBlock, storage_id: String, change: ReplicaChange) {
        for queue in self.queues.lock().iter() {
            queue.push_change(block.clone(), storage_id.clone(), change);
        }
    }

    pub fn bad_replica(&self, block: ExtendedBlock, storage_id: String, reason: String) {
        for queue in self.queues.lock().iter() {
            queue.push_bad(block.clone(), storage_id.clone(), reason.clone());
        }
    }
}

/// The reports one namenode has yet to receive.
#[derive(Debug)]
pub struct ReportQueue {
    namenode: String,
    capacity: usize,
    state: Mutex<QueueState>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct QueueState {
    pending: Pending,
    /// The namenode needs a full block report: its changes overflowed, or
    /// the last full report did not reach it. Changes are not queued
    /// meanwhile, since the full report (taken after this is cleared)
    /// covers them.
    full_report_due: bool,
}

impl QueueState {
    /// Drops the changes for a full report, once, with a warning.
    fn overflow(&mut self, namenode: &str, capacity: usize) {
        self.pending.changes = Vec::new();
        self.full_report_due = true;
        tracing::warn!(
            namenode,
            capacity,
            "too many incremental block reports waiting for this namenode; it gets a full block report instead"
        );
    }
}

impl ReportQueue {
    fn push_change(&self, block: ExtendedBlock, storage_id: String, change: ReplicaChange) {
        {
            let mut state = self.state.lock();
            if state.full_report_due {
                return;
            }
            if state.pending.changes.len() >= self.capacity {
                state.overflow(&self.namenode, self.capacity);
            } else {
                state.pending.changes.push((block, storage_id, change));
            }
        }
        self.notify.notify_one();
    }

    /// Bad replicas are kept whatever the count: a full report does not
    /// carry them, and the dataset reports each replica at most once, so
    /// they stay within the number of replicas.
    fn push_bad(&self, block: ExtendedBlock, storage_id: String, reason: String) {
        self.state
            .lock()
            .pending
            .bad
            .push((block, storage_id, reason));
        self.notify.notify_one();
    }

    pub fn take(&self) -> Pending {
        std::mem::take(&mut self.state.lock().pending)
    }

    /// Puts back reports that could not be sent, ahead of newer ones.
    pub fn restore(&self, mut earlier: Pending) {
        let mut state = self.state.lock();
        if state.full_report_due {
            earlier.changes.clear();
        } else if earlier.changes.len() + state.pending.changes.len() > self.capacity {
            earlier.changes.clear();
            state.overflow(&self.namenode, self.capacity);
        } else {
            earlier.changes.append(&mut state.pending.changes);
            state.pending.changes = earlier.changes;
        }
        earlier.bad.append(&mut state.pending.bad);
        state.pending.bad = earlier.bad;
    }

    /// True when the namenode should get a full block report before more
    /// incremental ones.
    pub fn full_report_due(&self) -> bool {
        self.state.lock().full_report_due
    }

    /// Called just before a full report is taken: it covers every change
    /// made before it, so those are dropped; changes after it are queued.
    pub fn start_full_report(&self) {
        let mut state = self.state.lock();
        state.pending.changes.clear();
        state.full_report_due = false;
    }

    /// A full report did not reach the namenode: send one again later.
    pub fn request_full_report(&self) {
        let mut state = self.state.lock();
        state.pending.changes.clear();
        state.full_report_due = true;
    }

    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(block_id: i64) -> ExtendedBlock {
        ExtendedBlock {
            pool_id: "BP-1".into(),
            block_id,
            generation_stamp: 1,
            num_bytes: 0,
        }
    }

    fn ids(pending: &Pending) -> Vec<i64> {
        pending.changes.iter().map(|(b, _, _)| b.block_id).collect()
    }

    #[test]
    fn every_namenode_gets_every_report() {
        let reports = Reports::default();
        let nn1 = reports.subscribe("nn1");
        let nn2 = reports.subscribe("nn2");
        reports.replica_changed(block(1), "DS-1".into(), ReplicaChange::Received);
        reports.bad_replica(block(2), "DS-1".into(), "checksum".into());
        let taken = nn1.take();
        assert_eq!((ids(&taken), taken.bad.len()), (vec![1], 1));
        // Taking from one queue leaves the other's alone.
        let taken = nn2.take();
        assert_eq!((ids(&taken), taken.bad.len()), (vec![1], 1));
        assert!(nn1.take().is_empty());
    }

    #[test]
    fn unsent_reports_go_back_ahead_of_newer_ones() {
        let reports = Reports::default();
        let nn = reports.subscribe("nn");
        reports.replica_changed(block(1), "DS-1".into(), ReplicaChange::Received);
        let unsent = nn.take();
        reports.replica_changed(block(2), "DS-1".into(), ReplicaChange::Deleted);
        nn.restore(unsent);
        assert_eq!(ids(&nn.take()), vec![1, 2]);
    }

    #[test]
    fn an_overflowing_queue_asks_for_a_full_report_instead() {
        let reports = Reports::default();
        let slow = reports.subscribe_bounded("slow", 3);
        let fast = reports.subscribe_bounded("fast", 3);
        for id in 0..3 {
            reports.replica_changed(block(id), "DS-1".into(), ReplicaChange::Received);
            assert_eq!(ids(&fast.take()), vec![id]);
        }
        assert!(!slow.full_report_due());
        reports.replica_changed(block(3), "DS-1".into(), ReplicaChange::Received);
        reports.bad_replica(block(0), "DS-1".into(), "checksum".into());
        // The slow namenode loses the changes (a full report covers them)
        // but not the bad replica, which no full report carries.
        assert!(slow.full_report_due());
        let taken = slow.take();
        assert_eq!((ids(&taken), taken.bad.len()), (vec![], 1));
        assert_eq!(ids(&fast.take()), vec![3]);

        // Changes made before the full report is taken are in it; later
        // ones are queued again.
        reports.replica_changed(block(4), "DS-1".into(), ReplicaChange::Received);
        slow.start_full_report();
        assert!(!slow.full_report_due());
        reports.replica_changed(block(5), "DS-1".into(), ReplicaChange::Received);
        assert_eq!(ids(&slow.take()), vec![5]);

        // Restoring beyond the bound overflows too.
        for id in 6..8 {
            reports.replica_changed(block(id), "DS-1".into(), ReplicaChange::Received);
        }
        let unsent = slow.take();
        for id in 8..10 {
            reports.replica_changed(block(id), "DS-1".into(), ReplicaChange::Received);
        }
        slow.restore(unsent);
        assert!(slow.full_report_due());
        assert!(slow.take().is_empty());

        // A full report that failed is asked for again.
        slow.start_full_report();
        slow.request_full_report();
        assert!(slow.full_report_due());
    }
}
