//! What operators ask: datanode reports, filesystem figures, fsck, safe
//! mode, and the namespace snapshot a checkpoint saves.

use rdfs_common::path;
use rdfs_common::protocol::{DatanodeInfo, FsStats};

use super::access::PathUse;
use super::{Caller, Namesystem};
use crate::apply::FsState;
use crate::block_manager::BlockState;
use crate::edit_log::TxId;
use crate::error::{NamenodeError, Result};
use crate::fsck::{self, FsckReport};
use crate::permission::{FsAction, Required};
use crate::safe_mode::BlockSafety;

/// Which datanodes a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatanodeReportType {
    All,
    Live,
    Dead,
    Decommissioning,
}

/// `dfsadmin -safemode get|enter|leave`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafeModeAction {
    Get,
    Enter,
    Leave,
}

impl Namesystem {
    pub fn datanode_report(&self, kind: DatanodeReportType) -> Vec<DatanodeInfo> {
        let state = self.state.read();
        let mut nodes: Vec<DatanodeInfo> = state
            .fs
            .datanodes
            .all()
            .filter(|d| match kind {
                DatanodeReportType::All => true,
                DatanodeReportType::Live => d.alive,
                DatanodeReportType::Dead => !d.alive,
                DatanodeReportType::Decommissioning => {
                    d.alive
                        && d.admin_state
                            == rdfs_common::protocol::AdminState::DecommissionInProgress
                }
            })
            .map(|d| d.info())
            .collect();
        nodes.sort_by_key(|n| n.id.xfer_addr());
        nodes
    }

    pub fn fs_stats(&self) -> FsStats {
        let state = self.state.read();
        let fs = &state.fs;
        let mut stats = FsStats {
            in_safe_mode: state.safe_mode.is_on(),
            ..Default::default()
        };
        for node in fs.datanodes.live() {
            stats.capacity += node.capacity();
            stats.used += node.dfs_used();
            stats.remaining += node.remaining();
            stats.non_dfs_used += node.non_dfs_used();
        }
        for slot in fs.blocks.slots() {
            stats.total_blocks += 1;
            let info = fs.blocks.info(slot);
            if info.state != BlockState::Complete {
                continue;
            }
            let counts = fs.blocks.counts(slot, &fs.datanodes);
            if counts.corrupt > 0 {
                stats.corrupt_blocks += 1;
            }
            let expected = u32::from(info.replication);
            if counts.readable() == 0 {
                stats.missing_blocks += 1;
                if expected == 1 {
                    stats.missing_repl_one_blocks += 1;
                }
            } else if counts.live < expected {
                stats.under_replicated += 1;
                if counts.live <= 1 && expected > 1 || counts.live == 0 {
                    stats.highest_priority_blocks += 1;
                }
            } else if fs.datanodes.rack_count() > 1 {
                let holders: Vec<_> = fs
                    .blocks
                    .replicas(slot)
                    .filter(|r| !r.corrupt && fs.datanodes.is_in_service(r.datanode))
                    .map(|r| r.datanode)
                    .collect();
                if !crate::placement::is_well_placed(&fs.datanodes, &holders) {
                    stats.mis_replicated_blocks += 1;
                }
            }
        }
        stats.pending_deletion_blocks = fs
            .datanodes
            .all()
            .map(|d| d.deletions.queued() as u64)
            .sum();
        stats.pending_replication_blocks = fs.blocks.queues.counts().pending_copies;
        stats.total_files = (fs.namespace.inode_count() as u64).saturating_sub(count_dirs(fs));
        stats
    }

    /// The health of the files under `src`, as the caller may list them
    /// (read and execute on every directory, as HDFS's fsck lists as its
    /// caller).
    pub fn fsck(&self, caller: &Caller, src: &str) -> Result<FsckReport> {
        let components = path::components(src)?;
        let state = self.state.read();
        let fs = &state.fs;
        let resolved = self.resolve_checked(
            &fs.namespace,
            caller,
            &components,
            Required::TRAVERSE,
            PathUse::Access,
        )?;
        let id = resolved
            .last()
            .ok_or_else(|| NamenodeError::FileNotFound(format!("{src} does not exist")))?;
        self.check_subtree(&fs.namespace, caller, id, FsAction::READ_EXECUTE)?;
        Ok(fsck::collect(
            fs,
            id,
            self.config.default_replication,
            self.config.min_replication,
        ))
    }

    /// Complete blocks, and how many of them have their minimum replicas.
    pub(crate) fn block_safety(&self, fs: &FsState) -> BlockSafety {
        let (safe, total) = fs.blocks.safety();
        BlockSafety {
            safe,
            total,
            live_datanodes: fs.datanodes.live_count(),
        }
    }

    /// Turns safe mode on or off, or reports it; whether it is on after.
    pub fn safe_mode(&self, action: SafeModeAction) -> bool {
        match action {
            SafeModeAction::Get => self.state.read().safe_mode.is_on(),
            SafeModeAction::Enter => {
                let mut state = self.state.write();
                if !state.safe_mode.is_on() {
                    tracing::info!("safe mode entered by an operator");
                }
                state.safe_mode.enter();
                true
            }
            SafeModeAction::Leave => {
                let mut state = self.state.write();
                if state.safe_mode.is_on() {
                    tracing::info!("safe mode left by an operator");
                }
                state.safe_mode.leave();
                false
            }
        }
    }

    /// Why writes are refused right now, when they are.
    pub fn safe_mode_tip(&self) -> Option<String> {
        let state = self.state.read();
        state.safe_mode.is_on().then(|| state.safe_mode.tip())
    }

    /// The namespace encoded as an fsimage, with the txid it reflects. Writers
    /// wait while it is encoded; nothing is written to disk here.
    /// Finalizes the current edit segment and starts the next; the first
    /// txid of the new one.
    pub async fn roll_edits(&self) -> Result<TxId> {
        match self.journal.roll().await {
            Ok(first) => Ok(first),
            Err(err) => {
                self.fail(&err.to_string());
                Err(err.into())
            }
        }
    }

    pub(crate) fn encode_image(&self) -> (TxId, Vec<u8>) {
        let state = self.state.read();
        let txid = self.journal.last_txid();
        let bytes = crate::fsimage::encode(&state.fs, txid, &self.info);
        (txid, bytes)
    }
}

fn count_dirs(fs: &FsState) -> u64 {
    let mut dirs = 0;
    fs.namespace
        .walk(rdfs_common::ids::ROOT_INODE_ID, &mut |inode| {
            if inode.is_dir() {
                dirs += 1;
            }
        });
    dirs
}
