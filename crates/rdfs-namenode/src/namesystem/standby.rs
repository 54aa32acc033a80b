//! A standby namenode's namesystem: it applies the edits the active wrote
//! (tailed from the journal) instead of writing its own, and holds back
//! datanode reports about blocks it does not know yet.
//!
//! Datanodes report to every namenode at once, so a standby often hears of
//! a replica before it has tailed the edit that created its block (or bumped
//! its generation stamp). Such reports wait in a queue and are applied after
//! each batch of tailed edits, as HDFS's PendingDataNodeMessages does; a
//! standby never schedules a deletion from what it does not know yet.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::apply::FsState;
use crate::block_manager::{BlockManager, ReportOutcome, ReportedState};
use crate::datanode_manager::DatanodeIndex;
use crate::edit_log::{EditRecord, TxId};
use crate::error::{NamenodeError, Result};
use crate::lease::LeaseManager;

use super::Namesystem;

/// Reports a standby holds back, at most; older ones are dropped first (a
/// datanode's next full report carries them again).
const MAX_PENDING_REPORTS: usize = 1_000_000;

/// A replica report waiting for the edit that explains it.
#[derive(Debug, Clone)]
pub(crate) struct PendingReport {
    datanode: DatanodeIndex,
    storage_id: String,
    block_id: i64,
    generation_stamp: u64,
    num_bytes: u64,
    kind: PendingKind,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum PendingKind {
    /// From a full report, or a replica being written.
    Reported(ReportedState),
    /// A finalized replica from an incremental report.
    Received,
}

impl PendingReport {
    pub(crate) fn datanode(&self) -> DatanodeIndex {
        self.datanode
    }

    pub(crate) fn block_id(&self) -> i64 {
        self.block_id
    }

    pub(crate) fn new(
        datanode: DatanodeIndex,
        storage_id: &str,
        block_id: i64,
        generation_stamp: u64,
        num_bytes: u64,
        kind: PendingKind,
    ) -> Self {
        Self {
            datanode,
            storage_id: storage_id.to_string(),
            block_id,
            generation_stamp,
            num_bytes,
            kind,
        }
    }
}

/// Whether a standby must hold back a report of this replica: its block is
/// unknown, or newer than the block the standby knows.
pub(crate) fn must_wait(fs: &FsState, block_id: i64, generation_stamp: u64) -> bool {
    must_wait_fs(&fs.blocks, block_id, generation_stamp)
}

pub(crate) fn must_wait_fs(blocks: &BlockManager, block_id: i64, generation_stamp: u64) -> bool {
    match blocks.slot_of(block_id) {
        None => true,
        Some(slot) => generation_stamp > blocks.info(slot).generation_stamp,
    }
}

impl Namesystem {
    /// Whether this namesystem is a standby's (it tails edits, writes none).
    pub fn is_standby(&self) -> bool {
        self.standby.load(Ordering::Acquire)
    }

    /// Makes this namesystem a standby's: it accepts no changes of its own
    /// and holds back reports about blocks it has not tailed yet.
    pub fn set_standby(&self) {
        self.standby.store(true, Ordering::Release);
    }

    /// Queues a report a standby cannot apply yet.
    pub(crate) fn hold_back(pending: &mut Vec<PendingReport>, report: PendingReport) {
        if pending.len() >= MAX_PENDING_REPORTS {
            // Drop the oldest tenth at once rather than shifting a million
            // entries per report; datanodes' next full reports carry them.
            pending.drain(..MAX_PENDING_REPORTS / 10);
            tracing::warn!("too many datanode reports held back; the oldest were dropped");
        }
        pending.push(report);
    }

    /// Applies edits tailed from the journal, in order, then the held-back
    /// reports they explain. Returns the last txid applied.
    pub fn apply_tailed(&self, records: &[EditRecord]) -> Result<TxId> {
        let mut state = self.state.write();
        let mut last = self.journal.last_txid();
        for record in records {
            if record.txid <= last {
                continue;
            }
            if record.txid != last + 1 {
                return Err(NamenodeError::Io(format!(
                    "tailed edits have a gap: expected txid {}, got {}",
                    last + 1,
                    record.txid
                )));
            }
            let Some(op) = &record.op else {
                return Err(NamenodeError::Io(format!(
                    "edit {} holds no operation this rdfs knows",
                    record.txid
                )));
            };
            state.fs.apply(op).map_err(|err| {
                NamenodeError::Io(format!("edit {} cannot be applied: {err}", record.txid))
            })?;
            // So that, once active, it answers a retry of the call that made
            // this edit as the old active did.
            self.note_call_edit(&state.fs, record);
            last = record.txid;
            self.journal.note_applied(last);
        }
        if !records.is_empty() {
            let super::Locked { fs, pending, .. } = &mut *state;
            apply_pending(fs, pending, false);
        }
        Ok(last)
    }

    /// Turns a standby's namesystem into the active's: the held-back reports
    /// are applied (those still unexplained are about blocks deleted since,
    /// and are dropped: the datanodes' next reports get them deleted), work
    /// computed from the standby's view is forgotten, and every writer gets
    /// a fresh lease, as after a restart.
    pub fn promote(&self) {
        let mut state = self.state.write();
        let super::Locked { fs, pending, .. } = &mut *state;
        let unexplained = apply_pending(fs, pending, true);
        let cleared = fs.datanodes.clear_pending_work();
        // What the standby learned of replicas may lag what the datanodes
        // hold (and deletions the old active ordered may still be under
        // way): excess copies wait for each holder's next full report.
        fs.datanodes.mark_all_content_stale();
        fs.leases = LeaseManager::rebuild(&fs.namespace, Instant::now());
        self.standby.store(false, Ordering::Release);
        self.promoted.store(true, Ordering::Release);
        tracing::info!(
            unexplained_reports = unexplained,
            cleared_work = cleared,
            files_under_construction = fs.namespace.writers.len(),
            "namesystem promoted to active"
        );
    }
}

/// Applies the held-back reports whose blocks are now known; keeps the rest
/// (or, when `final_pass`, drops them). Returns how many were left over.
fn apply_pending(fs: &mut FsState, pending: &mut Vec<PendingReport>, final_pass: bool) -> usize {
    if pending.is_empty() {
        return 0;
    }
    let mut waiting = Vec::new();
    for report in pending.drain(..) {
        if must_wait(fs, report.block_id, report.generation_stamp) {
            waiting.push(report);
            continue;
        }
        let FsState {
            blocks, datanodes, ..
        } = fs;
        let Some(storage) = datanodes
            .get_mut(report.datanode)
            .map(|n| n.storage_index(&report.storage_id))
        else {
            continue;
        };
        let outcome = match report.kind {
            PendingKind::Reported(state) => blocks.report_replica(
                report.block_id,
                report.generation_stamp,
                report.num_bytes,
                state,
                report.datanode,
                storage,
                datanodes,
            ),
            PendingKind::Received => {
                let outcome = blocks.add_replica(
                    report.block_id,
                    report.generation_stamp,
                    report.num_bytes,
                    report.datanode,
                    storage,
                    datanodes,
                );
                if let Some(slot) = blocks.slot_of(report.block_id) {
                    blocks.queues.replica_arrived(slot, report.datanode);
                }
                outcome
            }
        };
        if outcome == ReportOutcome::Corrupt {
            tracing::debug!(
                block_id = report.block_id,
                "a held-back replica report does not match its block"
            );
        }
    }
    let left = waiting.len();
    if !final_pass {
        *pending = waiting;
    }
    left
}
