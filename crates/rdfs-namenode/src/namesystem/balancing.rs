//! What the balancer asks of the namenode: blocks held by an over-full
//! datanode, and moves of one replica to another datanode. A move is a copy
//! the namenode schedules like a re-replication, marked to be throttled;
//! once the new replica is reported the block is over-replicated and the
//! source's copy is the one deleted. The namenode, not the balancer, checks
//! that a move never lowers a block's rack spread, and the source copy goes
//! only after the new one exists, so a move never lowers replication.

use std::collections::HashSet;
use std::time::Instant;

use rand::Rng;

use rdfs_common::protocol::{ExtendedBlock, LocatedBlock};

use super::Namesystem;
use crate::apply::FsState;
use crate::block_manager::BlockState;
use crate::datanode_manager::PendingTransfer;
use crate::error::{NamenodeError, Result};

/// Blocks returned by one `get_blocks` call at most.
const MAX_BLOCKS_PER_CALL: usize = 1000;

impl Namesystem {
    /// Complete blocks with a replica on `uuid`, from a random place in its
    /// list, until they add up to `size` bytes.
    pub fn get_blocks(
        &self,
        uuid: &str,
        size: u64,
        min_block_size: u64,
    ) -> Result<Vec<LocatedBlock>> {
        let state = self.state.read();
        let fs = &state.fs;
        let index = fs.datanodes.live_index(uuid).ok_or_else(|| {
            NamenodeError::IllegalArgument(format!("datanode {uuid} is not a live datanode"))
        })?;
        let held = fs.datanodes.held(index);
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let start = rand::rng().random_range(0..held.len());
        let mut total = 0u64;
        let mut blocks = Vec::new();
        for &slot in held[start..].iter().chain(&held[..start]) {
            if total >= size || blocks.len() >= MAX_BLOCKS_PER_CALL {
                break;
            }
            let info = fs.blocks.info(slot);
            if info.state != BlockState::Complete || info.num_bytes < min_block_size {
                continue;
            }
            total += info.num_bytes;
            blocks.push(fs.blocks.located(slot, 0, &fs.datanodes));
        }
        Ok(blocks)
    }

    /// Schedules the move of `block`'s replica from `source` to `target`.
    pub fn schedule_replica_move(
        &self,
        block: &ExtendedBlock,
        source: &str,
        target: &str,
    ) -> Result<()> {
        let mut state = self.state.write();
        self.check_writable(&state, || format!("Cannot move a replica of {block}"))?;
        let FsState {
            blocks, datanodes, ..
        } = &mut state.fs;
        let refuse = |why: String| {
            Err(NamenodeError::IllegalArgument(format!(
                "cannot move {block} from {source} to {target}: {why}"
            )))
        };
        let Some(slot) = blocks.slot_of(block.block_id) else {
            return refuse("no such block".into());
        };
        let info = blocks.info(slot);
        if info.state != BlockState::Complete || info.generation_stamp != block.generation_stamp {
            return refuse("the block is being written or has a newer generation stamp".into());
        }
        if blocks.queues.has_pending(slot) {
            return refuse("a copy of this block is already under way".into());
        }
        let (Some(src), Some(dst)) = (datanodes.live_index(source), datanodes.live_index(target))
        else {
            return refuse("both datanodes must be live".into());
        };
        if !datanodes.is_in_service(dst) {
            return refuse("the target is decommissioning".into());
        }
        let replicas: Vec<_> = blocks.replicas(slot).collect();
        if !replicas.iter().any(|r| r.datanode == src && !r.corrupt) {
            return refuse("the source holds no good replica".into());
        }
        if replicas.iter().any(|r| r.datanode == dst) {
            return refuse("the target already holds a replica".into());
        }
        let racks_before: HashSet<&str> = replicas
            .iter()
            .filter(|r| !r.corrupt)
            .map(|r| datanodes.rack(r.datanode))
            .collect();
        let racks_after: HashSet<&str> = replicas
            .iter()
            .filter(|r| !r.corrupt && r.datanode != src)
            .map(|r| datanodes.rack(r.datanode))
            .chain([datanodes.rack(dst)])
            .collect();
        if racks_after.len() < racks_before.len() {
            return refuse("the block would lose a rack".into());
        }
        datanodes.queue_transfer(
            src,
            PendingTransfer {
                block_id: info.block_id,
                generation_stamp: info.generation_stamp,
                num_bytes: info.num_bytes,
                targets: vec![dst],
                balancing: true,
            },
        );
        let deadline = Instant::now() + self.config.replication.pending_timeout;
        blocks.queues.add_pending(slot, dst, deadline);
        blocks.queues.set_delete_hint(slot, src);
        Ok(())
    }
}
