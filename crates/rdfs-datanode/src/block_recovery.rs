//! Block recovery led by this datanode (HDFS's `BlockRecoveryWorker`): when
//! a writer is gone (lease recovery) or a file is cut short (truncate), the
//! namenode makes one holder of the last block its primary. The primary
//! puts every replica under recovery (`InitReplicaRecovery`), picks the
//! length they agree on ([`choose_length`]), has every participant settle
//! there under the recovery id as generation stamp
//! (`UpdateReplicaUnderRecovery`) and reports the outcome to the namenode
//! (`CommitBlockSynchronization`).

use std::sync::Arc;

use futures::future::join_all;

use rdfs_common::ExceptionKind;
use rdfs_common::block_token::AccessMode;
use rdfs_common::protocol::ExtendedBlock;
use rdfs_proto as pb;
use rdfs_transfer::calls::{self, Answer, RecoveryState};

use crate::bp_service::NamenodeClient;
use crate::context::DatanodeContext;
use crate::dataset::{RecoveryInfo, ReplicaState};
use crate::error::DatanodeError;

/// One replica as `InitReplicaRecovery` described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub state: ReplicaState,
    pub num_bytes: u64,
}

/// The length to settle on and which candidates (by index) take part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub length: u64,
    pub participants: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("no datanode holds a replica with data")]
    NoReplicas,
    #[error("finalized replicas disagree on the length: {0} and {1} bytes")]
    InconsistentFinalized(u64, u64),
    #[error("no replica holds the {new_length} bytes to truncate to (the longest has {longest})")]
    TooShort { new_length: u64, longest: u64 },
}

/// Picks the recovered length as HDFS's `syncBlock` does. Replicas without
/// data take no part. A finalized replica's length wins: the finalized
/// replicas and the RBW ones at least that long take part. Otherwise the
/// best state present (RBW over RWR) takes part, at the shortest of their
/// lengths (every byte there is on all of them). A truncate settles on
/// `new_length`, with every replica at least that long.
pub fn choose_length(candidates: &[Candidate], new_length: Option<u64>) -> Result<Plan, PlanError> {
    let with_data: Vec<(usize, &Candidate)> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.num_bytes > 0)
        .collect();
    if with_data.is_empty() {
        return Err(PlanError::NoReplicas);
    }
    if let Some(new_length) = new_length {
        let participants: Vec<usize> = with_data
            .iter()
            .filter(|(_, c)| c.num_bytes >= new_length)
            .map(|(i, _)| *i)
            .collect();
        if participants.is_empty() {
            return Err(PlanError::TooShort {
                new_length,
                longest: with_data
                    .iter()
                    .map(|(_, c)| c.num_bytes)
                    .max()
                    .unwrap_or(0),
            });
        }
        return Ok(Plan {
            length: new_length,
            participants,
        });
    }
    let finalized: Vec<u64> = with_data
        .iter()
        .filter(|(_, c)| c.state == ReplicaState::Finalized)
        .map(|(_, c)| c.num_bytes)
        .collect();
    if let Some(&length) = finalized.first() {
        if let Some(&other) = finalized.iter().find(|l| **l != length) {
            return Err(PlanError::InconsistentFinalized(length, other));
        }
        let participants = with_data
            .iter()
            .filter(|(_, c)| {
                c.state == ReplicaState::Finalized
                    || (c.state == ReplicaState::Rbw && c.num_bytes >= length)
            })
            .map(|(i, _)| *i)
            .collect();
        return Ok(Plan {
            length,
            participants,
        });
    }
    let best = if with_data.iter().any(|(_, c)| c.state == ReplicaState::Rbw) {
        ReplicaState::Rbw
    } else {
        ReplicaState::Rwr
    };
    let chosen: Vec<(usize, u64)> = with_data
        .iter()
        .filter(|(_, c)| c.state == best)
        .map(|(i, c)| (*i, c.num_bytes))
        .collect();
    let length = chosen.iter().map(|(_, len)| *len).min().unwrap_or(0);
    Ok(Plan {
        length,
        participants: chosen.into_iter().map(|(i, _)| i).collect(),
    })
}

/// How block recovery reports a replica's state.
pub fn recovery_state(state: ReplicaState) -> RecoveryState {
    match state {
        ReplicaState::Finalized => RecoveryState::Finalized,
        ReplicaState::Rbw => RecoveryState::Rbw,
        ReplicaState::Rwr | ReplicaState::Rur => RecoveryState::Rwr,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("recovery command without a block")]
    NoBlock,
    #[error("{block}: {failed} datanode(s) could not be asked for their replica and none had data")]
    Unreachable { block: String, failed: usize },
    #[error("{block}: {source}")]
    Plan { block: String, source: PlanError },
    #[error("{block}: no participant could settle its replica at {length} bytes")]
    NoParticipant { block: String, length: u64 },
    #[error("{block}: the namenode refused the outcome: {message}")]
    Commit { block: String, message: String },
    /// The namenode that ordered the recovery is no longer active; the
    /// new active orders it again, so this is no failure of the datanode.
    #[error("{block}: the namenode that ordered the recovery is standby now: {message}")]
    NamenodeNotActive { block: String, message: String },
}

/// Leads the recovery of blocks this datanode is primary for.
pub struct Worker {
    pub ctx: Arc<DatanodeContext>,
    /// The namenode that ordered the recovery: it is the one waiting for
    /// the outcome.
    pub namenode: NamenodeClient,
    /// This datanode, to call itself directly.
    pub datanode_uuid: String,
    pub pool_id: String,
}

fn location_uuid(info: &pb::DatanodeInfo) -> String {
    info.id
        .as_ref()
        .map(|id| id.datanode_uuid.clone())
        .unwrap_or_default()
}

fn location_addr(info: &pb::DatanodeInfo) -> String {
    info.id
        .as_ref()
        .map(|id| format!("{}:{}", id.ip_addr, id.xfer_port))
        .unwrap_or_default()
}

impl Worker {
    pub async fn recover(self, recovering: pb::RecoveringBlock) -> Result<(), RecoveryError> {
        let located = recovering.block.ok_or(RecoveryError::NoBlock)?;
        let mut block: ExtendedBlock = located.block.ok_or(RecoveryError::NoBlock)?.into();
        if block.pool_id.is_empty() {
            block.pool_id = self.pool_id.clone();
        }
        let recovery_id = recovering.new_generation_stamp;
        let name = block.to_string();
        tracing::info!(block = %block, recovery_id, new_length = ?recovering.new_length,
            locations = located.locations.len(), "block recovery started");

        let answers = join_all(
            located
                .locations
                .iter()
                .map(|location| self.init(location, &block, recovery_id)),
        )
        .await;
        let mut candidates = Vec::new();
        let mut holders = Vec::new();
        let mut failed = 0usize;
        for (location, answer) in located.locations.iter().zip(answers) {
            match answer {
                Answer::Ok(info) if info.generation_stamp >= block.generation_stamp => {
                    tracing::info!(block = %block, recovery_id, datanode = %location_addr(location),
                        state = info.state.name(), gs = info.generation_stamp, bytes = info.num_bytes,
                        "replica under recovery");
                    candidates.push(Candidate {
                        state: info.state,
                        num_bytes: info.num_bytes,
                    });
                    holders.push(location.clone());
                }
                Answer::Ok(info) => {
                    tracing::info!(block = %block, datanode = %location_addr(location), gs = info.generation_stamp,
                        "replica older than the block; left out");
                }
                Answer::NotFound => {
                    tracing::info!(block = %block, datanode = %location_addr(location), "no replica there");
                }
                Answer::Failed(message) => {
                    failed += 1;
                    tracing::warn!(block = %block, datanode = %location_addr(location), error = %message,
                        "cannot put the replica under recovery");
                }
            }
        }
        let plan = match choose_length(&candidates, recovering.new_length) {
            Ok(plan) => plan,
            Err(PlanError::NoReplicas) if failed == 0 => {
                tracing::info!(block = %block, recovery_id, "no datanode holds data of the block; asking the namenode to drop it");
                return self
                    .commit(&block, recovery_id, 0, true, Vec::new(), Vec::new())
                    .await;
            }
            Err(PlanError::NoReplicas) => {
                return Err(RecoveryError::Unreachable {
                    block: name,
                    failed,
                });
            }
            Err(source) => {
                return Err(RecoveryError::Plan {
                    block: name,
                    source,
                });
            }
        };
        let participants: Vec<&pb::DatanodeInfo> =
            plan.participants.iter().map(|i| &holders[*i]).collect();
        tracing::info!(block = %block, recovery_id, length = plan.length,
            participants = ?participants.iter().map(|p| location_addr(p)).collect::<Vec<_>>(),
            "recovered length chosen");
        let updates = join_all(
            participants
                .iter()
                .map(|location| self.update(location, &block, recovery_id, plan.length)),
        )
        .await;
        let mut targets = Vec::new();
        let mut storages = Vec::new();
        for (location, answer) in participants.iter().zip(updates) {
            match answer {
                Answer::Ok(storage_id) => {
                    targets.push(location_uuid(location));
                    storages.push(storage_id);
                }
                Answer::NotFound => {
                    tracing::warn!(block = %block, datanode = %location_addr(location), "replica vanished during recovery; left out");
                }
                Answer::Failed(message) => {
                    tracing::warn!(block = %block, datanode = %location_addr(location), error = %message,
                        "cannot settle the replica; left out");
                }
            }
        }
        if targets.is_empty() {
            return Err(RecoveryError::NoParticipant {
                block: name,
                length: plan.length,
            });
        }
        self.commit(&block, recovery_id, plan.length, false, targets, storages)
            .await
    }

    async fn init(
        &self,
        location: &pb::DatanodeInfo,
        block: &ExtendedBlock,
        recovery_id: u64,
    ) -> Answer<RecoveryInfo> {
        if location_uuid(location) == self.datanode_uuid {
            let ctx = Arc::clone(&self.ctx);
            let block = block.clone();
            let local = tokio::task::spawn_blocking(move || {
                ctx.dataset.init_replica_recovery(&block, recovery_id)
            })
            .await;
            return match local {
                Ok(Ok(info)) => Answer::Ok(info),
                Ok(Err(DatanodeError::ReplicaNotFound(_))) => Answer::NotFound,
                Ok(Err(err)) => Answer::Failed(err.to_string()),
                Err(join) => Answer::Failed(format!("panicked: {join}")),
            };
        }
        let block_token = match self.ctx.block_access.token_for(block, &[AccessMode::Write]) {
            Ok(token) => token,
            Err(err) => return Answer::Failed(err.to_string()),
        };
        match calls::init_replica_recovery(
            &self.ctx.channels,
            &location_addr(location),
            block,
            recovery_id,
            &block_token,
            self.ctx.socket_timeout,
        )
        .await
        {
            Answer::Ok(replica) => Answer::Ok(RecoveryInfo {
                state: match replica.state {
                    RecoveryState::Finalized => ReplicaState::Finalized,
                    RecoveryState::Rbw => ReplicaState::Rbw,
                    RecoveryState::Rwr => ReplicaState::Rwr,
                },
                generation_stamp: replica.generation_stamp,
                num_bytes: replica.num_bytes,
            }),
            Answer::NotFound => Answer::NotFound,
            Answer::Failed(why) => Answer::Failed(why),
        }
    }

    async fn update(
        &self,
        location: &pb::DatanodeInfo,
        block: &ExtendedBlock,
        recovery_id: u64,
        new_length: u64,
    ) -> Answer<String> {
        if location_uuid(location) == self.datanode_uuid {
            let ctx = Arc::clone(&self.ctx);
            let block = block.clone();
            let local = tokio::task::spawn_blocking(move || {
                ctx.dataset
                    .update_replica_under_recovery(&block, recovery_id, new_length)
            })
            .await;
            return match local {
                Ok(Ok(storage)) => Answer::Ok(storage),
                Ok(Err(DatanodeError::ReplicaNotFound(_))) => Answer::NotFound,
                Ok(Err(err)) => Answer::Failed(err.to_string()),
                Err(join) => Answer::Failed(format!("panicked: {join}")),
            };
        }
        let block_token = match self.ctx.block_access.token_for(block, &[AccessMode::Write]) {
            Ok(token) => token,
            Err(err) => return Answer::Failed(err.to_string()),
        };
        calls::update_replica_under_recovery(
            &self.ctx.channels,
            &location_addr(location),
            block,
            recovery_id,
            new_length,
            &block_token,
            self.ctx.socket_timeout,
        )
        .await
    }

    async fn commit(
        &self,
        block: &ExtendedBlock,
        recovery_id: u64,
        new_length: u64,
        delete_block: bool,
        new_targets: Vec<String>,
        new_target_storages: Vec<String>,
    ) -> Result<(), RecoveryError> {
        let request = pb::CommitBlockSynchronizationRequest {
            block: Some(block.into()),
            new_generation_stamp: recovery_id,
            new_length,
            close_file: true,
            delete_block,
            new_targets: new_targets.clone(),
            new_target_storages,
        };
        let mut namenode = self.namenode.clone();
        match namenode.commit_block_synchronization(request).await {
            Ok(_) => {
                tracing::info!(block = %block, recovery_id, new_length, delete_block, targets = ?new_targets,
                    "block recovery committed");
                Ok(())
            }
            Err(status) if ExceptionKind::of_status(&status) == Some(ExceptionKind::Standby) => {
                Err(RecoveryError::NamenodeNotActive {
                    block: block.to_string(),
                    message: status.message().to_string(),
                })
            }
            Err(status) => Err(RecoveryError::Commit {
                block: block.to_string(),
                message: status.message().to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(state: ReplicaState, num_bytes: u64) -> Candidate {
        Candidate { state, num_bytes }
    }

    #[test]
    fn the_recovered_length_follows_hdfs_sync_block() {
        use ReplicaState::*;
        // A finalized replica's length wins; shorter RBWs and every RWR
        // are left out.
        let plan = choose_length(
            &[c(Rbw, 900), c(Finalized, 1000), c(Rbw, 1200), c(Rwr, 2000)],
            None,
        )
        .expect("plan");
        assert_eq!(
            plan,
            Plan {
                length: 1000,
                participants: vec![1, 2]
            }
        );
        // Without one, RBWs settle on the shortest of them.
        let plan = choose_length(&[c(Rbw, 1500), c(Rwr, 100), c(Rbw, 1200)], None).expect("plan");
        assert_eq!(
            plan,
            Plan {
                length: 1200,
                participants: vec![0, 2]
            }
        );
        // Only RWRs: the shortest of them.
        let plan = choose_length(&[c(Rwr, 700), c(Rwr, 512)], None).expect("plan");
        assert_eq!(plan.length, 512);
        assert_eq!(plan.participants, vec![0, 1]);
        // Replicas without data take no part; none with data at all.
        let plan = choose_length(&[c(Rbw, 0), c(Rwr, 10)], None).expect("plan");
        assert_eq!(plan.participants, vec![1]);
        assert_eq!(
            choose_length(&[c(Rbw, 0)], None),
            Err(PlanError::NoReplicas)
        );
        assert_eq!(choose_length(&[], None), Err(PlanError::NoReplicas));
        assert_eq!(
            choose_length(&[c(Finalized, 10), c(Finalized, 11)], None),
            Err(PlanError::InconsistentFinalized(10, 11))
        );
        // A truncate settles on the new length, with every replica long
        // enough whatever its state.
        let plan = choose_length(&[c(Finalized, 4096), c(Rbw, 600), c(Rwr, 700)], Some(650))
            .expect("plan");
        assert_eq!(
            plan,
            Plan {
                length: 650,
                participants: vec![0, 2]
            }
        );
        assert_eq!(
            choose_length(&[c(Finalized, 100)], Some(200)),
            Err(PlanError::TooShort {
                new_length: 200,
                longest: 100
            })
        );
    }
}
