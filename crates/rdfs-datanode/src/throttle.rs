//! Bandwidth limits for background reads (HDFS's `DataTransferThrottler`):
//! the caller accounts each read and waits the time it is told.

use std::time::{Duration, Instant};

/// Holds a reader to `bytes_per_second` on average. Idle time is not saved
/// up: after a pause the reader resumes at the rate, not in a burst.
#[derive(Debug, Clone)]
pub struct Throttle {
    bytes_per_second: u64,
    /// When the bytes accounted so far may all have been read.
    caught_up_at: Option<Instant>,
}

impl Throttle {
    /// 0 means no limit.
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second,
            caught_up_at: None,
        }
    }

    /// Accounts `bytes` just read at `now`; returns how long to wait before
    /// reading more.
    pub fn account(&mut self, bytes: u64, now: Instant) -> Duration {
        if self.bytes_per_second == 0 {
            return Duration::ZERO;
        }
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(self.bytes_per_second);
        let cost = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let start = self.caught_up_at.map_or(now, |at| at.max(now));
        let caught_up_at = start + cost;
        self.caught_up_at = Some(caught_up_at);
        caught_up_at.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_in_proportion_and_does_not_bank_idle_time() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(1024 * 1024);
        assert_eq!(throttle.account(512 * 1024, t0), Duration::from_millis(500));
        // Read again at once: the debt adds up.
        assert_eq!(throttle.account(512 * 1024, t0), Duration::from_secs(1));
        // A long pause does not allow a burst afterwards.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(throttle.account(1024 * 1024, later), Duration::from_secs(1));
        assert_eq!(Throttle::new(0).account(u64::MAX, t0), Duration::ZERO);
    }
}
