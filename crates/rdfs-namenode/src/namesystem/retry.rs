//! The namesystem's side of the retry cache (`crate::retry_cache`): looking
//! an at-most-once call up before running it, and recording the outcome of
//! calls whose edits arrive from the journal (tailed by a standby, or
//! replayed at start-up).

use rdfs_common::protocol::FileStatus;

use crate::apply::FsState;
use crate::edit_log::{EditRecord, Op, RpcId};
use crate::error::{NamenodeError, Result};
use crate::retry_cache::{Lookup, Outcome, Ticket};

use super::write::offset_of;
use super::{AppendResult, Caller, Namesystem, file_status};

/// Whether an at-most-once call runs, or was answered before.
pub(super) enum Attempt {
    Run(Ticket),
    Answered(Outcome),
}

impl Namesystem {
    /// Looks up an at-most-once call. An earlier attempt's answer is given
    /// only once its edit is durable (that attempt may still be waiting for
    /// it); an attempt still running is waited for.
    pub(super) async fn attempt(&self, caller: &Caller) -> Result<Attempt> {
        match self.retry_cache.lookup(caller.rpc.as_ref()).await {
            Lookup::Run(ticket) => Ok(Attempt::Run(ticket)),
            Lookup::Answered { outcome, txid } => {
                self.sync(Some(txid)).await?;
                tracing::debug!(rpc = ?caller.rpc, txid, "retried call answered from the retry cache");
                Ok(Attempt::Answered(outcome))
            }
        }
    }

    /// Records the outcome of the call that made `record`, if it names one,
    /// as applied to `fs`.
    pub(super) fn note_call_edit(&self, fs: &FsState, record: &EditRecord) {
        let (Some(rpc), Some(op)) = (RpcId::of(record), &record.op) else {
            return;
        };
        if let Some(outcome) = outcome_of_edit(fs, op) {
            self.retry_cache.record(&rpc, outcome, record.txid);
        }
    }
}

/// What the at-most-once call that made `op` answered, from the state just
/// after `op` was applied.
pub(crate) fn outcome_of_edit(fs: &FsState, op: &Op) -> Option<Outcome> {
    match op {
        Op::AddFile(add) => {
            let inode = fs.namespace.get(add.inode_id)?;
            Some(Outcome::Status(Box::new(file_status(
                fs,
                inode,
                Vec::new(),
            ))))
        }
        Op::ReopenFile(reopen) => {
            let inode = fs.namespace.get(reopen.inode_id)?;
            let slots = inode.block_slots().to_vec();
            let block = match slots.last() {
                Some(&last) if reopen.last_block_reopened => {
                    let offset = offset_of(fs, &slots, slots.len() - 1);
                    Some(fs.blocks.located(last, offset, &fs.datanodes))
                }
                _ => None,
            };
            let status = file_status(fs, inode, Vec::new());
            Some(Outcome::Append(Box::new(AppendResult { block, status })))
        }
        Op::Rename(_) | Op::Delete(_) => Some(Outcome::Bool(true)),
        Op::Truncate(truncate) => Some(Outcome::Bool(truncate.recovery_generation_stamp == 0)),
        Op::UpdateLastBlock(_) => Some(Outcome::Done),
        _ => None,
    }
}

fn mismatch(outcome: &Outcome) -> NamenodeError {
    NamenodeError::Io(format!(
        "the retry cache holds an answer of another kind for this call ({outcome:?}): \
         the client reused a call id"
    ))
}

impl Outcome {
    pub(super) fn into_bool(self) -> Result<bool> {
        match self {
            Outcome::Bool(value) => Ok(value),
            other => Err(mismatch(&other)),
        }
    }

    pub(super) fn into_status(self) -> Result<FileStatus> {
        match self {
            Outcome::Status(status) => Ok(*status),
            other => Err(mismatch(&other)),
        }
    }

    pub(super) fn into_append(self) -> Result<AppendResult> {
        match self {
            Outcome::Append(result) => Ok(*result),
            other => Err(mismatch(&other)),
        }
    }

    pub(super) fn into_done(self) -> Result<()> {
        match self {
            Outcome::Done => Ok(()),
            other => Err(mismatch(&other)),
        }
    }
}
