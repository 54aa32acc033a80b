//! Which namenode of the nameservice this datanode takes orders from (the
//! rule of HDFS's `BPOfferService.updateActorStatesFromHeartbeat`, with the
//! journal epoch where HDFS compares transaction ids).
//!
//! Every heartbeat response says what its namenode believes it is. The
//! datanode trusts as active the namenode whose latest response claims
//! ACTIVE with the highest epoch seen. A namenode that claims ACTIVE with a
//! lower epoch is an old active that has not yet noticed it was replaced
//! (it was paused, say); its epoch is fenced at the journal, and its orders
//! (delete this, copy that) are ignored here for the same reason. When the
//! active says anything else, there is no active until another claims it.

use rdfs_proto as pb;

/// What one heartbeat response claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub active: bool,
    pub epoch: u64,
    /// Only for the logs.
    pub txid: u64,
}

impl Claim {
    /// A namenode without HA sends no status: it is always active.
    pub fn of(status: Option<&pb::NnHaStatus>) -> Self {
        match status {
            None => Self {
                active: true,
                epoch: 0,
                txid: 0,
            },
            Some(status) => Self {
                active: status.state == pb::HaState::Active as i32,
                epoch: status.epoch,
                txid: status.txid,
            },
        }
    }
}

/// The datanode's view of who is active, fed by every namenode's
/// heartbeat responses; namenodes are named by their index.
#[derive(Debug)]
pub struct ActiveNamenode {
    /// For the logs.
    names: Vec<String>,
    active: Option<usize>,
    /// The epoch of the latest claim trusted; a claim must not be older.
    highest_epoch: u64,
    /// Namenodes whose active claim was refused last time, so the refusal
    /// is logged once rather than with every heartbeat.
    refused: Vec<bool>,
}

impl ActiveNamenode {
    pub fn new(names: Vec<String>) -> Self {
        let refused = vec![false; names.len()];
        Self {
            names,
            active: None,
            highest_epoch: 0,
            refused,
        }
    }

    pub fn active(&self) -> Option<usize> {
        self.active
    }

    /// Takes in the latest claim of namenode `nn`; true when `nn` is the
    /// active one now (its commands are to be carried out).
    pub fn update(&mut self, nn: usize, claim: Claim) -> bool {
        let name = self.name(nn).to_string();
        if !claim.active {
            self.refused[nn] = false;
            if self.active == Some(nn) {
                tracing::info!(namenode = %name, epoch = claim.epoch, txid = claim.txid,
                    "namenode gave up the active state; no namenode is active until another claims it");
                self.active = None;
            }
            return false;
        }
        if self.active == Some(nn) {
            if claim.epoch < self.highest_epoch {
                // Its epoch went backwards: whatever it is now, it is not
                // the writer that was trusted.
                tracing::warn!(namenode = %name, epoch = claim.epoch, highest_epoch = self.highest_epoch,
                    "the active namenode now claims an older epoch; taking no more commands from it");
                self.active = None;
                self.refused[nn] = true;
                return false;
            }
            self.highest_epoch = claim.epoch;
            return true;
        }
        // Two namenodes never write in the same epoch, so an equal epoch is
        // only the same claim again (or a namenode coming back as active in
        // the epoch it left in), acceptable when no other holds it.
        let newer = claim.epoch > self.highest_epoch
            || (claim.epoch == self.highest_epoch && self.active.is_none());
        if !newer {
            if !self.refused[nn] {
                tracing::warn!(namenode = %name, epoch = claim.epoch, txid = claim.txid,
                    active = %self.active.map(|a| self.name(a)).unwrap_or("none"),
                    highest_epoch = self.highest_epoch,
                    "namenode claims to be active in an older epoch than the active one: a stale active; ignoring its commands");
                self.refused[nn] = true;
            }
            return false;
        }
        self.refused[nn] = false;
        match self.active {
            None => tracing::info!(namenode = %name, epoch = claim.epoch, txid = claim.txid,
                "namenode is active; taking commands from it"),
            Some(old) => tracing::info!(namenode = %name, epoch = claim.epoch, txid = claim.txid,
                previous = %self.name(old), previous_epoch = self.highest_epoch,
                "namenode took over the active state in a newer epoch; taking commands from it only"),
        }
        self.active = Some(nn);
        self.highest_epoch = claim.epoch;
        true
    }

    fn name(&self, nn: usize) -> &str {
        self.names.get(nn).map(String::as_str).unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(epoch: u64) -> Claim {
        Claim {
            active: true,
            epoch,
            txid: 0,
        }
    }

    fn standby() -> Claim {
        Claim {
            active: false,
            epoch: 0,
            txid: 0,
        }
    }

    fn tracker() -> ActiveNamenode {
        ActiveNamenode::new(vec!["nn1".into(), "nn2".into(), "nn3".into()])
    }

    #[test]
    fn a_namenode_without_ha_status_is_active() {
        let mut t = ActiveNamenode::new(vec!["nn".into()]);
        assert!(t.update(0, Claim::of(None)));
        assert!(t.update(0, Claim::of(None)));
        assert_eq!(t.active(), Some(0));
        let standby = pb::NnHaStatus {
            state: pb::HaState::Standby as i32,
            epoch: 0,
            txid: 7,
        };
        assert!(!Claim::of(Some(&standby)).active);
    }

    #[test]
    fn only_the_newest_active_claim_is_trusted() {
        let mut t = tracker();
        assert!(!t.update(1, standby()));
        assert!(t.update(0, active(3)));
        // A standby stays one, whatever it says.
        assert!(!t.update(1, standby()));
        assert_eq!(t.active(), Some(0));
        // A newer epoch takes over; the old active, still claiming, is
        // stale and ignored for as long as it claims.
        assert!(t.update(1, active(4)));
        assert!(!t.update(0, active(3)));
        assert!(!t.update(0, active(3)));
        assert!(t.update(1, active(4)));
        assert_eq!(t.active(), Some(1));
        // The active gives up: none is active, and the stale one still
        // cannot claim in its old epoch.
        assert!(!t.update(1, standby()));
        assert_eq!(t.active(), None);
        assert!(!t.update(0, active(3)));
        assert_eq!(t.active(), None);
        // A third namenode in a newer epoch is trusted.
        assert!(t.update(2, active(5)));
        // An equal epoch from another namenode while one holds it is not.
        assert!(!t.update(1, active(5)));
        assert_eq!(t.active(), Some(2));
    }

    #[test]
    fn an_active_whose_epoch_goes_back_is_no_longer_trusted() {
        let mut t = tracker();
        assert!(t.update(0, active(5)));
        assert!(!t.update(0, active(4)));
        assert_eq!(t.active(), None);
        // It (or another) must claim epoch 5 or later again.
        assert!(!t.update(0, active(4)));
        assert!(t.update(0, active(5)));
    }
}
