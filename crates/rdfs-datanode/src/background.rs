//! The datanode's background threads (block scanners, directory scanner):
//! started together once the daemon serves, stopped together at shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use rdfs_common::config::DatanodeConfig;

use crate::block_scanner::{self, ScanSettings};
use crate::dataset::Dataset;
use crate::directory_scanner;

/// Tells blocking threads to stop, and wakes them from their sleeps.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl StopSignal {
    pub fn stop(&self) {
        let _guard = self.lock.lock();
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration` or until stopped; true when stopped.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut guard = self.lock.lock();
        while !self.is_stopped() {
            if self.wake.wait_until(&mut guard, deadline).timed_out() {
                break;
            }
        }
        self.is_stopped()
    }
}

/// The running background threads.
pub struct Background {
    stop: Arc<StopSignal>,
    threads: Vec<JoinHandle<()>>,
}

impl Background {
    /// Starts a block scanner per volume (unless `scan_period_ms` is 0) and
    /// the directory scanner (unless `directory_scan_interval_ms` is 0).
    pub fn start(dataset: &Arc<Dataset>, config: &DatanodeConfig) -> Self {
        let stop = Arc::new(StopSignal::default());
        let mut threads = Vec::new();
        if config.scan_period_ms > 0 {
            let settings = ScanSettings {
                period: Duration::from_millis(config.scan_period_ms),
                bytes_per_second: config.scan_bandwidth_per_volume.0,
                idle_wake: block_scanner::IDLE_WAKE,
            };
            threads.extend(block_scanner::spawn(dataset, settings, &stop));
        } else {
            tracing::info!("block scanner disabled (scan_period_ms = 0)");
        }
        if config.directory_scan_interval_ms > 0 {
            let interval = Duration::from_millis(config.directory_scan_interval_ms);
            threads.extend(directory_scanner::spawn(dataset, interval, &stop));
        } else {
            tracing::info!("directory scanner disabled (directory_scan_interval_ms = 0)");
        }
        Self { stop, threads }
    }

    /// Stops every thread and waits for them (each checks between chunks,
    /// so this is short). Blocking.
    pub fn stop(self) {
        self.stop.stop();
        for thread in self.threads {
            let name = thread.thread().name().unwrap_or("background").to_string();
            if thread.join().is_err() {
                tracing::error!(thread = %name, "background thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_wakes_a_sleeper() {
        let stop = Arc::new(StopSignal::default());
        assert!(!stop.sleep(Duration::from_millis(1)));
        let sleeper = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || stop.sleep(Duration::from_secs(60)))
        };
        std::thread::sleep(Duration::from_millis(20));
        let started = Instant::now();
        stop.stop();
        assert!(sleeper.join().expect("sleeper"));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(stop.sleep(Duration::from_secs(60)), "stays stopped");
    }
}
