//! Choosing datanodes for new replicas: HDFS's default block placement.
//!
//! The first replica goes to the writer's datanode when it is one, else to a
//! random one; the second to another rack; the third to the second's rack
//! (or, when the first two share a rack, to another one); the rest at
//! random, never more than `(replicas - 1) / racks + 2` on one rack.
//! Candidates are in service (not decommissioning), not excluded, have room
//! for a whole block; fresh ones come before stale or overloaded ones.
//! When no node fits a rack rule, any candidate will do: a replica on the
//! wrong rack beats no replica, and the replication monitor fixes the spread
//! later.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rand::seq::IndexedRandom;

use crate::datanode_manager::{DatanodeIndex, DatanodeManager};

/// What a placement is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// New replicas wanted.
    pub wanted: usize,
    /// Datanodes already holding (or about to hold) a replica: they are not
    /// chosen again and guide the rack rules.
    pub chosen: &'a [DatanodeIndex],
    /// Datanodes not to use (the writer could not reach them, they hold a
    /// corrupt copy, ...).
    pub excluded: &'a HashSet<DatanodeIndex>,
    /// The writer's own datanode, if it runs on one.
    pub writer: Option<DatanodeIndex>,
    pub block_size: u64,
}

/// The new targets, in pipeline order; fewer than wanted when the cluster
/// has no more suitable datanodes.
pub fn choose_targets(
    datanodes: &DatanodeManager,
    request: Placement<'_>,
    now: Instant,
) -> Vec<DatanodeIndex> {
    let stale_after = datanodes.liveness.stale_after;
    let candidates: Vec<DatanodeIndex> = datanodes
        .in_service()
        .filter(|n| {
            !request.excluded.contains(&n.index)
                && !request.chosen.contains(&n.index)
                && n.remaining() >= request.block_size
        })
        .map(|n| n.index)
        .collect();
    let load_sum: u64 = datanodes.in_service().map(|n| u64::from(n.xceivers)).sum();
    let in_service = datanodes.in_service().count().max(1) as u64;
    // HDFS's considerLoad: a node with more than twice the average number
    // of transfers is a last resort.
    let overloaded = |index: DatanodeIndex| {
        datanodes
            .get(index)
            .is_some_and(|n| load_sum > 0 && u64::from(n.xceivers) * in_service > 2 * load_sum)
    };
    let preferred = |index: DatanodeIndex| {
        datanodes
            .get(index)
            .is_some_and(|n| !n.is_stale(now, stale_after))
            && !overloaded(index)
    };

    let racks = datanodes.rack_count().max(1);
    let total = request.chosen.len() + request.wanted;
    let max_per_rack = (total.saturating_sub(1)) / racks + 2;
    let mut per_rack: HashMap<&str, usize> = HashMap::new();
    for &dn in request.chosen {
        *per_rack.entry(datanodes.rack(dn)).or_default() += 1;
    }
    let mut results: Vec<DatanodeIndex> = request.chosen.to_vec();
    let mut new = Vec::new();
    let mut rng = rand::rng();
    while new.len() < request.wanted {
        let open: Vec<DatanodeIndex> = candidates
            .iter()
            .copied()
            .filter(|dn| !results.contains(dn))
            .filter(|dn| per_rack.get(datanodes.rack(*dn)).copied().unwrap_or(0) < max_per_rack)
            .collect();
        if open.is_empty() {
            break;
        }
        let rack_rule: Box<dyn Fn(DatanodeIndex) -> bool> = match results.as_slice() {
            [] => match request.writer {
                Some(writer) if open.contains(&writer) => Box::new(move |dn| dn == writer),
                _ => Box::new(|_| true),
            },
            [first] => {
                let rack = datanodes.rack(*first);
                Box::new(move |dn| datanodes.rack(dn) != rack)
            }
            [first, second, ..] if results.len() == 2 => {
                let (r0, r1) = (datanodes.rack(*first), datanodes.rack(*second));
                if r0 == r1 {
                    Box::new(move |dn| datanodes.rack(dn) != r0)
                } else {
                    Box::new(move |dn| datanodes.rack(dn) == r1)
                }
            }
            _ => Box::new(|_| true),
        };
        let tiers: [Vec<DatanodeIndex>; 4] = [
            open.iter()
                .copied()
                .filter(|&d| rack_rule(d) && preferred(d))
                .collect(),
            open.iter().copied().filter(|&d| rack_rule(d)).collect(),
            open.iter().copied().filter(|&d| preferred(d)).collect(),
            open.clone(),
        ];
        let Some(&pick) = tiers
            .iter()
            .find(|t| !t.is_empty())
            .and_then(|t| t.choose(&mut rng))
        else {
            break;
        };
        *per_rack.entry(datanodes.rack(pick)).or_default() += 1;
        results.push(pick);
        new.push(pick);
    }
    new
}

/// Whether replicas on these racks satisfy the default policy: spread over
/// at least two racks when the block has two or more replicas and the
/// cluster has two or more racks.
pub fn is_well_placed(datanodes: &DatanodeManager, holders: &[DatanodeIndex]) -> bool {
    if holders.len() < 2 || datanodes.rack_count() < 2 {
        return true;
    }
    let first = datanodes.rack(holders[0]);
    holders.iter().any(|&dn| datanodes.rack(dn) != first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datanode_manager::{Liveness, StorageState};
    use crate::topology::Topology;
    use rdfs_common::protocol::DatanodeId;
    use std::time::Duration;

    fn cluster(racks: &[&str], remaining: &[u64]) -> DatanodeManager {
        let mut dns = DatanodeManager::new(Liveness {
            stale_after: Duration::from_secs(30),
            dead_after: Duration::from_secs(600),
        });
        let table: String = racks
            .iter()
            .enumerate()
            .map(|(i, rack)| format!("127.0.0.1:{} {rack}\n", 9000 + i))
            .collect();
        dns.topology = Topology::parse(&table).expect("topology");
        for (i, &room) in remaining.iter().enumerate() {
            let uuid = format!("dn-{i}");
            dns.register(DatanodeId {
                ip_addr: "127.0.0.1".into(),
                datanode_uuid: uuid.clone(),
                xfer_port: 9000 + i as u16,
                ..Default::default()
            });
            dns.heartbeat(
                &uuid,
                vec![StorageState {
                    storage_id: format!("DS-{i}"),
                    capacity: 1 << 31,
                    remaining: room,
                    ..Default::default()
                }],
                0,
                0,
                0,
            );
        }
        dns
    }

    fn choose(dns: &DatanodeManager, wanted: usize, chosen: &[DatanodeIndex]) -> Vec<u32> {
        choose_targets(
            dns,
            Placement {
                wanted,
                chosen,
                excluded: &HashSet::new(),
                writer: None,
                block_size: 1 << 20,
            },
            Instant::now(),
        )
    }

    #[test]
    fn picks_distinct_live_nodes_with_room() {
        let dns = cluster(&["/r", "/r", "/r", "/r"], &[1 << 30, 1 << 30, 1 << 30, 10]);
        let excluded: HashSet<_> = [0].into_iter().collect();
        let mut chosen = choose_targets(
            &dns,
            Placement {
                wanted: 3,
                chosen: &[],
                excluded: &excluded,
                writer: None,
                block_size: 1 << 20,
            },
            Instant::now(),
        );
        chosen.sort_unstable();
        assert_eq!(
            chosen,
            vec![1, 2],
            "excluded and full nodes are skipped, fewer than wanted is fine"
        );
    }

    #[test]
    fn replicas_follow_the_rack_rules() {
        // Racks: /a holds 0,1,2; /b holds 3,4,5.
        let dns = cluster(&["/a", "/a", "/a", "/b", "/b", "/b"], &[1 << 30; 6]);
        for _ in 0..50 {
            let picks = choose(&dns, 3, &[]);
            assert_eq!(picks.len(), 3);
            let racks: Vec<&str> = picks.iter().map(|&d| dns.rack(d)).collect();
            assert_ne!(racks[0], racks[1], "second replica off the first's rack");
            assert_eq!(racks[1], racks[2], "third on the second's rack");
            // Re-replication of a block whose two replicas share a rack
            // goes to the other rack.
            let extra = choose(&dns, 1, &[0, 1]);
            assert_eq!(dns.rack(extra[0]), "/b");
        }
        assert!(!is_well_placed(&dns, &[0, 1, 2]));
        assert!(is_well_placed(&dns, &[0, 3]));
    }

    #[test]
    fn writer_gets_the_first_replica() {
        let dns = cluster(&["/a", "/a", "/b"], &[1 << 30; 3]);
        for _ in 0..20 {
            let picks = choose_targets(
                &dns,
                Placement {
                    wanted: 2,
                    chosen: &[],
                    excluded: &HashSet::new(),
                    writer: Some(1),
                    block_size: 1,
                },
                Instant::now(),
            );
            assert_eq!(picks, vec![1, 2]);
        }
    }
}
