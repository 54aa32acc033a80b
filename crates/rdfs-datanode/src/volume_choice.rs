//! Which volume gets a new replica (HDFS's
//! `AvailableSpaceVolumeChoosingPolicy`): round robin while the volumes are
//! about equally free, otherwise a bias towards the ones with more room, so
//! a new or emptier disk fills up without taking every write.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Volumes whose free space differs by less than this are treated as
/// equally free (`dfs.datanode.available-space-volume-choosing-policy.balanced-space-threshold`).
pub const BALANCED_SPACE_THRESHOLD: u64 = 10 * 1024 * 1024 * 1024;
/// Share of new replicas sent to the freer volumes when they are not
/// balanced (`...balanced-space-preference-fraction`).
pub const BALANCED_SPACE_PREFERENCE: f64 = 0.75;

pub struct AvailableSpacePolicy {
    threshold: u64,
    preference: f64,
    // One cursor per group, as in HDFS, so alternating between groups does
    // not skew the rotation inside either.
    balanced: AtomicUsize,
    high: AtomicUsize,
    low: AtomicUsize,
    rng: AtomicU64,
}

impl Default for AvailableSpacePolicy {
    fn default() -> Self {
        Self::new(BALANCED_SPACE_THRESHOLD, BALANCED_SPACE_PREFERENCE)
    }
}

impl AvailableSpacePolicy {
    pub fn new(threshold: u64, preference: f64) -> Self {
        Self {
            threshold,
            preference: preference.clamp(0.0, 1.0),
            balanced: AtomicUsize::new(0),
            high: AtomicUsize::new(0),
            low: AtomicUsize::new(0),
            rng: AtomicU64::new(RandomState::new().hash_one(0u8)),
        }
    }

    /// Picks among `(volume index, remaining bytes)` pairs one with room for
    /// `needed` bytes; `None` when no volume has room.
    pub fn choose(&self, volumes: &[(usize, u64)], needed: u64) -> Option<usize> {
        self.choose_with(volumes, needed, self.next_random())
    }

    /// [`Self::choose`] with the coin toss given: `random` in `[0, 1)`.
    pub fn choose_with(&self, volumes: &[(usize, u64)], needed: u64, random: f64) -> Option<usize> {
        let fitting: Vec<(usize, u64)> = volumes
            .iter()
            .copied()
            .filter(|(_, remaining)| *remaining >= needed)
            .collect();
        let least = fitting.iter().map(|(_, r)| *r).min()?;
        let most = fitting.iter().map(|(_, r)| *r).max()?;
        if most - least < self.threshold {
            return Some(round_robin(&self.balanced, &fitting));
        }
        let (high, low): (Vec<_>, Vec<_>) = fitting
            .iter()
            .partition(|(_, remaining)| *remaining >= least + self.threshold);
        // Scaled by group sizes, as HDFS does, so that each high volume gets
        // `preference / (1 - preference)` times the writes of each low one
        // whatever the split.
        let high_weight = high.len() as f64 * self.preference;
        let low_weight = low.len() as f64 * (1.0 - self.preference);
        let scaled = high_weight / (high_weight + low_weight);
        if random < scaled {
            Some(round_robin(&self.high, &high))
        } else {
            Some(round_robin(&self.low, &low))
        }
    }

    /// A uniform draw in `[0, 1)` (splitmix64; not for anything secret).
    fn next_random(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn round_robin(cursor: &AtomicUsize, group: &[(usize, u64)]) -> usize {
    let turn = cursor.fetch_add(1, Ordering::Relaxed);
    group[turn % group.len()].0
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn balanced_volumes_take_turns() {
        let policy = AvailableSpacePolicy::default();
        let volumes = [(0, 100 * GIB), (1, 95 * GIB), (2, 91 * GIB)];
        let picks: Vec<_> = (0..6)
            .map(|_| policy.choose_with(&volumes, GIB, 0.9))
            .collect();
        assert_eq!(
            picks,
            [0, 1, 2, 0, 1, 2].map(Some).to_vec(),
            "round robin whatever the coin says"
        );
    }

    #[test]
    fn unbalanced_volumes_favour_the_freer_ones() {
        let policy = AvailableSpacePolicy::default();
        let volumes = [(0, 20 * GIB), (1, 500 * GIB), (2, 22 * GIB)];
        // One high volume against two low: 0.75 / (0.75 + 2 * 0.25) = 0.6.
        assert_eq!(policy.choose_with(&volumes, GIB, 0.0), Some(1));
        assert_eq!(policy.choose_with(&volumes, GIB, 0.59), Some(1));
        assert_eq!(policy.choose_with(&volumes, GIB, 0.61), Some(0));
        assert_eq!(policy.choose_with(&volumes, GIB, 0.99), Some(2));
        let high = (0..1000)
            .filter(|_| policy.choose(&volumes, GIB) == Some(1))
            .count();
        assert!(
            (500..700).contains(&high),
            "{high} of 1000 on the freer volume"
        );
    }

    #[test]
    fn a_volume_without_room_is_never_chosen() {
        let policy = AvailableSpacePolicy::default();
        let volumes = [(0, 10), (1, 500 * GIB), (3, 2 * GIB)];
        for _ in 0..50 {
            let pick = policy.choose(&volumes, GIB);
            assert!(matches!(pick, Some(1) | Some(3)), "{pick:?}");
        }
        assert_eq!(policy.choose(&volumes, 1000 * GIB), None);
        assert_eq!(policy.choose(&[], 0), None);
    }
}
