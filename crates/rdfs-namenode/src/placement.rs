//! Choosing the datanodes for a new block's replicas.
//!
//! Distinct datanodes (by uuid, so several on one host count as distinct),
//! alive, not excluded by the writer, with room for a whole block; fresh
//! ones before stale ones, random within each group so load spreads.
//! Rack awareness comes with the topology file.

use std::collections::HashSet;
use std::time::Instant;

use rand::seq::SliceRandom;

use crate::datanode_manager::{DatanodeIndex, DatanodeManager};

pub fn choose_targets(
    datanodes: &DatanodeManager,
    wanted: usize,
    excluded: &HashSet<DatanodeIndex>,
    block_size: u64,
    now: Instant,
) -> Vec<DatanodeIndex> {
    let stale_after = datanodes.liveness.stale_after;
    let mut fresh = Vec::new();
    let mut stale = Vec::new();
    for node in datanodes.live() {
        if excluded.contains(&node.index) || node.remaining() < block_size {
            continue;
        }
        if node.is_stale(now, stale_after) {
            stale.push(node.index);
        } else {
            fresh.push(node.index);
        }
    }
    let mut rng = rand::rng();
    fresh.shuffle(&mut rng);
    stale.shuffle(&mut rng);
    fresh.extend(stale);
    fresh.truncate(wanted);
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datanode_manager::{Liveness, StorageState};
    use rdfs_common::protocol::DatanodeId;
    use std::time::Duration;

    #[test]
    fn picks_distinct_live_nodes_with_room() {
        let mut dns = DatanodeManager::new(Liveness {
            stale_after: Duration::from_secs(30),
            dead_after: Duration::from_secs(600),
        });
        for i in 0..4u16 {
            let uuid = format!("dn-{i}");
            dns.register(DatanodeId {
                ip_addr: "127.0.0.1".into(),
                datanode_uuid: uuid.clone(),
                xfer_port: 9000 + i,
                ..Default::default()
            });
            let remaining = if i == 3 { 10 } else { 1 << 30 };
            dns.heartbeat(
                &uuid,
                vec![StorageState {
                    storage_id: format!("DS-{i}"),
                    capacity: 1 << 31,
                    remaining,
                    ..Default::default()
                }],
                0,
                0,
            );
        }
        let excluded: HashSet<_> = [0].into_iter().collect();
        let chosen = choose_targets(&dns, 3, &excluded, 1 << 20, Instant::now());
        let mut sorted = chosen.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            vec![1, 2],
            "excluded and full nodes are skipped, fewer than wanted is fine"
        );
    }
}
