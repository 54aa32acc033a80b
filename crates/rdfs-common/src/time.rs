//! Wall-clock time as HDFS stores it: milliseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is before 1970.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A reading of the boot-time clock (Linux's `CLOCK_BOOTTIME`): monotonic
/// like [`std::time::Instant`], but it keeps counting while the host or VM
/// is suspended. Every lease and deadline that fences another process is
/// measured on it: `CLOCK_MONOTONIC`, which `Instant` and tokio's timers
/// read, stops during a suspend, so a process resumed after its lease ran
/// out elsewhere would go on believing it holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BootInstant(std::time::Duration);

impl BootInstant {
    pub fn now() -> Self {
        Self(boot_clock_now())
    }

    /// The instant `since_boot` after the clock's zero; simulated clocks
    /// build their readings with it.
    pub fn from_since_boot(since_boot: std::time::Duration) -> Self {
        Self(since_boot)
    }

    pub fn since_boot(&self) -> std::time::Duration {
        self.0
    }

    /// How long after `earlier` this is; zero when it is not after it.
    pub fn saturating_duration_since(&self, earlier: Self) -> std::time::Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// How long ago this was on the boot clock.
    pub fn elapsed(&self) -> std::time::Duration {
        Self::now().saturating_duration_since(*self)
    }
}

impl std::ops::Add<std::time::Duration> for BootInstant {
    type Output = Self;

    fn add(self, rhs: std::time::Duration) -> Self {
        Self(self.0.saturating_add(rhs))
    }
}

impl std::ops::Sub<std::time::Duration> for BootInstant {
    type Output = Self;

    fn sub(self, rhs: std::time::Duration) -> Self {
        Self(self.0.saturating_sub(rhs))
    }
}

#[cfg(target_os = "linux")]
fn boot_clock_now() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer it is given,
    // which points at a live local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        // CLOCK_BOOTTIME exists on every kernel since 2.6.39; should it
        // fail, the monotonic clock is the next best.
        return monotonic_fallback();
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn boot_clock_now() -> std::time::Duration {
    monotonic_fallback()
}

fn monotonic_fallback() -> std::time::Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// Where a component reads the time that fences: the boot clock in a
/// daemon, virtual time in a simulation.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> BootInstant;
}

/// The real boot-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct BootClock;

impl Clock for BootClock {
    fn now(&self) -> BootInstant {
        BootInstant::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_clock_moves_forward_with_the_monotonic_one() {
        let boot = BootInstant::now();
        let mono = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let boot_elapsed = boot.elapsed();
        let mono_elapsed = mono.elapsed();
        assert!(boot_elapsed >= std::time::Duration::from_millis(20));
        // Nothing was suspended meanwhile: the two agree closely.
        let diff = boot_elapsed.abs_diff(mono_elapsed);
        assert!(diff < std::time::Duration::from_millis(15), "{diff:?}");
        assert_eq!(
            boot + std::time::Duration::from_secs(1) - std::time::Duration::from_secs(1),
            boot
        );
    }
}
