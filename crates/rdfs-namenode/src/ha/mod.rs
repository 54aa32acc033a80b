//! High availability: two or three namenodes share one edit log through a
//! quorum of journalnodes, and the journal quorum alone decides which one is
//! active (no ZooKeeper, no separate failover controller process).
//!
//! - The active writes every edit through the quorum ([`journal`]) and
//!   renews a leadership lease on it; it stops serving the moment its lease,
//!   measured on its own monotonic clock from before the last successful
//!   renewal, runs out, and steps down when a journalnode reports a newer
//!   epoch.
//! - A standby tails committed edits, in-progress segment included, keeps
//!   receiving datanode reports, checkpoints and ships images to the active
//!   ([`node`]). When the journalnodes say the active's lease has lapsed it
//!   takes a new epoch (which fences the old active), recovers the last
//!   segment, applies the rest of the log and becomes active.
//!
//! [`NamenodeHandle`] is what RPC services hold: the current namesystem (a
//! namenode that steps down reloads a fresh one, since its memory may hold
//! edits that never became durable) and the role it serves in.

pub mod admin;
pub mod journal;
pub mod node;
pub mod service;

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use rdfs_common::time::{BootClock, BootInstant, Clock};
use rdfs_proto as pb;

use crate::error::NamenodeError;
use crate::namesystem::Namesystem;

/// A namenode's role (HDFS's HAServiceState).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Initializing,
    Active,
    Standby,
    Stopping,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Initializing => "initializing",
            Self::Active => "active",
            Self::Standby => "standby",
            Self::Stopping => "stopping",
        }
    }

    fn to_pb(self) -> pb::HaState {
        match self {
            Self::Initializing => pb::HaState::Initializing,
            Self::Active => pb::HaState::Active,
            Self::Standby => pb::HaState::Standby,
            Self::Stopping => pb::HaState::Stopping,
        }
    }
}

/// Where a namenode stands in its nameservice.
#[derive(Debug, Clone, Copy)]
pub struct HaStatus {
    pub role: Role,
    /// The journal epoch it writes in while active.
    pub epoch: u64,
    /// While active: when its leadership lease runs out, on this host's
    /// boot clock (which, unlike the monotonic one, counts time the host
    /// spent suspended: a namenode resumed after its lease ran out must not
    /// serve a moment longer).
    pub lease_until: Option<BootInstant>,
}

/// The current namesystem and the role it serves in.
pub struct NamenodeHandle {
    current: RwLock<Arc<Namesystem>>,
    /// `None` for a namenode without HA: always active.
    status: Option<Mutex<HaStatus>>,
    id: String,
    /// What the lease is measured on.
    clock: Arc<dyn Clock>,
}

/// What a client or operator is asking for, as HDFS categorizes operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Read,
    Write,
}

impl NamenodeHandle {
    /// A namenode without HA.
    pub fn single(namesystem: Arc<Namesystem>) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(namesystem),
            status: None,
            id: "nn".to_string(),
            clock: Arc::new(BootClock),
        })
    }

    /// An HA namenode, starting as standby.
    pub fn ha(namesystem: Arc<Namesystem>, id: &str) -> Arc<Self> {
        Self::ha_with_clock(namesystem, id, Arc::new(BootClock))
    }

    /// Like [`Self::ha`], with the lease measured on `clock`.
    pub fn ha_with_clock(
        namesystem: Arc<Namesystem>,
        id: &str,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(namesystem),
            status: Some(Mutex::new(HaStatus {
                role: Role::Standby,
                epoch: 0,
                lease_until: None,
            })),
            id: id.to_string(),
            clock,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Now, on the clock the leadership lease is measured on.
    pub fn now(&self) -> BootInstant {
        self.clock.now()
    }

    pub fn is_ha(&self) -> bool {
        self.status.is_some()
    }

    /// The namesystem, whatever the role (datanode reports, admin reads).
    pub fn get(&self) -> Arc<Namesystem> {
        Arc::clone(&self.current.read())
    }

    pub(crate) fn replace(&self, namesystem: Arc<Namesystem>) {
        *self.current.write() = namesystem;
    }

    pub fn status(&self) -> HaStatus {
        match &self.status {
            Some(status) => *status.lock(),
            None => HaStatus {
                role: Role::Active,
                epoch: 0,
                lease_until: None,
            },
        }
    }

    pub(crate) fn set_status(&self, new: HaStatus) {
        if let Some(status) = &self.status {
            *status.lock() = new;
        }
    }

    /// Moves the lease end forward (never backward) after a renewal.
    pub(crate) fn extend_lease(&self, until: BootInstant) {
        if let Some(status) = &self.status {
            let mut status = status.lock();
            if status.role == Role::Active && status.lease_until.is_none_or(|t| t < until) {
                status.lease_until = Some(until);
            }
        }
    }

    /// Whether this namenode may act as the active one right now: it is
    /// active and its lease has not run out.
    pub fn is_serving_active(&self) -> bool {
        let Some(status) = &self.status else {
            return true;
        };
        let status = *status.lock();
        status.role == Role::Active && status.lease_until.is_some_and(|t| self.clock.now() < t)
    }

    /// The namesystem, for a client operation only the active serves; a
    /// standby answers as HDFS's does, so clients fail over.
    pub fn active(&self, category: Category) -> Result<Arc<Namesystem>, NamenodeError> {
        if self.is_serving_active() {
            let namesystem = self.get();
            // The role and the namesystem are read separately: a step-down
            // in between would hand out a standby's (lagging) namesystem,
            // and a failed edit log means memory may hold edits that never
            // became durable.
            if !namesystem.is_standby() && !namesystem.failed().is_cancelled() {
                return Ok(namesystem);
            }
        }
        let status = self.status();
        let what = match category {
            Category::Read => "READ",
            Category::Write => "WRITE",
        };
        Err(NamenodeError::Standby(if status.role == Role::Active {
            format!(
                "Operation category {what} is not supported: namenode {} lost its leadership lease and is stepping down",
                self.id
            )
        } else {
            format!(
                "Operation category {what} is not supported in state {} (namenode {})",
                status.role.name(),
                self.id
            )
        }))
    }

    /// What heartbeat responses tell datanodes about this namenode.
    pub fn ha_status_pb(&self) -> Option<pb::NnHaStatus> {
        self.status.as_ref()?;
        let status = self.status();
        let role = if status.role == Role::Active && !self.is_serving_active() {
            Role::Standby
        } else {
            status.role
        };
        Some(pb::NnHaStatus {
            state: role.to_pb() as i32,
            epoch: if role == Role::Active {
                status.epoch
            } else {
                0
            },
            txid: self.get().last_txid(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use parking_lot::Mutex;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::edit_log::MemoryJournal;
    use crate::namesystem::{NamesystemConfig, empty_state};
    use crate::storage::NamespaceInfo;

    /// A boot clock a test moves by hand, as a suspend would: the monotonic
    /// clock does not move meanwhile.
    #[derive(Debug, Default)]
    struct SuspendableClock(Mutex<Duration>);

    impl Clock for SuspendableClock {
        fn now(&self) -> BootInstant {
            BootInstant::from_since_boot(Duration::from_secs(100) + *self.0.lock())
        }
    }

    #[test]
    fn a_namenode_resumed_after_its_lease_ran_out_stops_serving_at_once() {
        let info = NamespaceInfo {
            cluster_id: "CID-a".into(),
            block_pool_id: "BP-1".into(),
            namespace_id: 1,
            layout_version: -1,
            ctime: 0,
        };
        let config = NamesystemConfig::from_config(&rdfs_common::config::Config::default());
        let state = empty_state(&info, &config, "", "", 0);
        let namesystem = Arc::new(Namesystem::new(
            info,
            config,
            state,
            Arc::new(MemoryJournal::new()),
            CancellationToken::new(),
            false,
        ));
        let clock = Arc::new(SuspendableClock::default());
        let handle = NamenodeHandle::ha_with_clock(namesystem, "nn1", Arc::clone(&clock) as _);
        handle.set_status(HaStatus {
            role: Role::Active,
            epoch: 3,
            lease_until: Some(handle.now() + Duration::from_secs(10)),
        });
        assert!(handle.is_serving_active());
        assert!(handle.active(Category::Read).is_ok());
        // The host sleeps for a minute; its monotonic clock stood still.
        *clock.0.lock() += Duration::from_secs(60);
        assert!(!handle.is_serving_active());
        let err = handle.active(Category::Read).err().expect("refused");
        assert!(matches!(err, NamenodeError::Standby(_)), "{err}");
        let status = handle.ha_status_pb().expect("HA status");
        assert_eq!(
            status.state,
            pb::HaState::Standby as i32,
            "datanodes must not take its orders"
        );
    }
}
