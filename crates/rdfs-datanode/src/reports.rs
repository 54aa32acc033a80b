//! What the datanode owes its namenode between heartbeats: replicas
//! received or deleted (incremental block reports, sent at once) and
//! replicas found corrupt.

use parking_lot::Mutex;
use tokio::sync::Notify;

use rdfs_common::protocol::ExtendedBlock;

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

#[derive(Debug, Default)]
pub struct Reports {
    pending: Mutex<Pending>,
    notify: Notify,
}

impl Reports {
    pub fn replica_changed(&self, block: ExtendedBlock, storage_id: String, change: ReplicaChange) {
        self.pending
            .lock()
            .changes
            .push((block, storage_id, change));
        self.notify.notify_one();
    }

    pub fn bad_replica(&self, block: ExtendedBlock, storage_id: String, reason: String) {
        self.pending.lock().bad.push((block, storage_id, reason));
        self.notify.notify_one();
    }

    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Puts back reports that could not be sent, ahead of newer ones.
    pub fn restore(&self, mut earlier: Pending) {
        let mut pending = self.pending.lock();
        earlier.changes.append(&mut pending.changes);
        earlier.bad.append(&mut pending.bad);
        *pending = earlier;
    }

    /// Drops incremental changes: a full block report supersedes them.
    pub fn clear_changes(&self) {
        self.pending.lock().changes.clear();
    }

    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}
