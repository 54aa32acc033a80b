//! Leases: which client writes which files, and when each client last
//! showed it is alive.
//!
//! One writer per file: a file under construction names its writer (the
//! namespace keeps it, and the edit log), and that writer holds a lease on
//! it here. A lease is renewed by `renewLease` and by every call its holder
//! makes about its files. A holder silent past the soft limit may lose a
//! file to another client's append, create or recoverLease; past the hard
//! limit the namenode takes its files itself and recovers them, holding them
//! under [`NAMENODE_LEASE_HOLDER`] meanwhile.
//!
//! Leases are not persisted: after loading the image and replaying the edit
//! log they are rebuilt from the files under construction, with fresh
//! renewal times (a restart gives every writer a full soft limit again, as
//! in HDFS).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::namespace::{InodeId, Namespace};

/// The holder of the files the namenode is recovering (HDFS's
/// `HdfsServerConstants.NAMENODE_LEASE_HOLDER`).
pub const NAMENODE_LEASE_HOLDER: &str = "HDFS_NameNode";

#[derive(Debug, Clone)]
struct Lease {
    last_renewed: Instant,
    files: BTreeSet<InodeId>,
}

#[derive(Debug, Default)]
pub struct LeaseManager {
    leases: HashMap<String, Lease>,
    holders: HashMap<InodeId, String>,
    /// The address of the client that opened each file, when known (not
    /// after a restart); only for messages.
    machines: HashMap<InodeId, String>,
}

impl LeaseManager {
    /// The leases of every file under construction in `namespace`, all
    /// renewed now.
    pub fn rebuild(namespace: &Namespace, now: Instant) -> Self {
        let mut leases = Self::default();
        for (&slot, writer) in &namespace.writers {
            let id = namespace.at(slot).id();
            leases.add(writer, id, now);
        }
        leases
    }

    /// `holder` writes `file`; the lease is renewed.
    pub fn add(&mut self, holder: &str, file: InodeId, now: Instant) {
        self.remove(file);
        let lease = self
            .leases
            .entry(holder.to_string())
            .or_insert_with(|| Lease {
                last_renewed: now,
                files: BTreeSet::new(),
            });
        lease.last_renewed = now;
        lease.files.insert(file);
        self.holders.insert(file, holder.to_string());
    }

    /// `file` is closed or gone.
    pub fn remove(&mut self, file: InodeId) {
        self.machines.remove(&file);
        let Some(holder) = self.holders.remove(&file) else {
            return;
        };
        if let Some(lease) = self.leases.get_mut(&holder) {
            lease.files.remove(&file);
            if lease.files.is_empty() {
                self.leases.remove(&holder);
            }
        }
    }

    /// Moves `file` to `new_holder`'s lease (renewing it), keeping the
    /// machine it was opened from.
    pub fn reassign(&mut self, file: InodeId, new_holder: &str, now: Instant) {
        let machine = self.machines.remove(&file);
        self.add(new_holder, file, now);
        if let Some(machine) = machine {
            self.machines.insert(file, machine);
        }
    }

    /// Renews every lease of `holder`; false when it holds none.
    pub fn renew(&mut self, holder: &str, now: Instant) -> bool {
        match self.leases.get_mut(holder) {
            Some(lease) => {
                lease.last_renewed = now;
                true
            }
            None => false,
        }
    }

    pub fn holder_of(&self, file: InodeId) -> Option<&str> {
        self.holders.get(&file).map(String::as_str)
    }

    pub fn set_machine(&mut self, file: InodeId, machine: &str) {
        if self.holders.contains_key(&file) {
            self.machines.insert(file, machine.to_string());
        }
    }

    pub fn machine_of(&self, file: InodeId) -> Option<&str> {
        self.machines.get(&file).map(String::as_str)
    }

    /// When `holder` last renewed its lease.
    pub fn last_renewed(&self, holder: &str) -> Option<Instant> {
        self.leases.get(holder).map(|l| l.last_renewed)
    }

    /// True when `holder` has been silent longer than `limit`.
    pub fn expired(&self, holder: &str, now: Instant, limit: Duration) -> bool {
        self.last_renewed(holder)
            .is_some_and(|renewed| now.saturating_duration_since(renewed) > limit)
    }

    /// The files of holders (other than the namenode) silent longer than
    /// `hard_limit`, oldest lease first.
    pub fn past_hard_limit(&self, now: Instant, hard_limit: Duration) -> Vec<(String, InodeId)> {
        let mut expired: Vec<(&String, &Lease)> = self
            .leases
            .iter()
            .filter(|(holder, lease)| {
                holder.as_str() != NAMENODE_LEASE_HOLDER
                    && now.saturating_duration_since(lease.last_renewed) > hard_limit
            })
            .collect();
        expired.sort_by_key(|(_, lease)| lease.last_renewed);
        expired
            .into_iter()
            .flat_map(|(holder, lease)| lease.files.iter().map(|f| (holder.clone(), *f)))
            .collect()
    }

    /// The files `holder` writes.
    pub fn files_of(&self, holder: &str) -> Vec<InodeId> {
        self.leases
            .get(holder)
            .map(|l| l.files.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Holders with at least one file.
    pub fn holder_count(&self) -> usize {
        self.leases.len()
    }

    /// Files under a lease.
    pub fn file_count(&self) -> usize {
        self.holders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_follow_files_and_expire() {
        let start = Instant::now();
        let mut leases = LeaseManager::default();
        leases.add("a", 1, start);
        leases.add("a", 2, start);
        leases.add("b", 3, start + Duration::from_secs(5));
        assert_eq!(leases.holder_of(2), Some("a"));
        let later = start + Duration::from_secs(11);
        assert!(leases.expired("a", later, Duration::from_secs(10)));
        assert!(!leases.expired("b", later, Duration::from_secs(10)));
        assert_eq!(
            leases.past_hard_limit(later, Duration::from_secs(10)),
            vec![("a".to_string(), 1), ("a".to_string(), 2)]
        );
        assert!(leases.renew("a", later));
        assert!(
            leases
                .past_hard_limit(later, Duration::from_secs(10))
                .is_empty()
        );
        leases.reassign(1, NAMENODE_LEASE_HOLDER, later);
        assert_eq!(leases.holder_of(1), Some(NAMENODE_LEASE_HOLDER));
        assert!(
            leases
                .past_hard_limit(later + Duration::from_secs(60), Duration::from_secs(10))
                .iter()
                .all(|(holder, _)| holder != NAMENODE_LEASE_HOLDER),
            "the namenode's own lease never expires"
        );
        leases.remove(2);
        leases.remove(3);
        assert_eq!(leases.files_of("a"), Vec::<InodeId>::new());
        assert!(!leases.renew("a", later));
        assert_eq!((leases.holder_count(), leases.file_count()), (1, 1));
    }
}
