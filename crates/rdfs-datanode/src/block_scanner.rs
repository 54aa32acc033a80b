//! The block scanner (HDFS's `BlockScanner` and `VolumeScanner`): one thread
//! per volume reads every finalized replica back, checks each chunk against
//! the CRC32C stored in its meta file, and reports the replicas that fail to
//! the namenode, which replaces them from good copies. Reads are throttled
//! so the scan never competes with clients for the disk.
//!
//! Each replica is verified at least once per scan period. When the
//! verification times were last taken lives in memory only: after a restart
//! every replica is due at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdfs_common::ids::BlockName;

use crate::background::StopSignal;
use crate::dataset::{Dataset, ReplicaInfo};
use crate::error::DatanodeError;
use crate::replica::ReplicaReader;
use crate::throttle::Throttle;

/// Longest a scanner sleeps before looking for new replicas.
pub const IDLE_WAKE: Duration = Duration::from_secs(5);
/// Bytes read and verified at a time (rounded to whole chunks); also how
/// often a scan notices it is told to stop.
const SCAN_READ_SIZE: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct ScanSettings {
    /// Every replica is verified at least this often.
    pub period: Duration,
    /// Read budget per volume; 0 means unthrottled.
    pub bytes_per_second: u64,
    /// Longest sleep between looks for new replicas.
    pub idle_wake: Duration,
}

/// Starts one scanner thread per volume in service.
pub fn spawn(
    dataset: &Arc<Dataset>,
    settings: ScanSettings,
    stop: &Arc<StopSignal>,
) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    for volume in dataset.volumes().iter().filter(|v| !v.is_failed()) {
        let scanner = VolumeScanner::new(
            Arc::clone(dataset),
            volume.index,
            settings,
            Arc::clone(stop),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("block-scanner-{}", volume.index))
            .spawn(move || scanner.run());
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(err) => {
                tracing::error!(volume = %volume.root.display(), error = %err, "cannot start the block scanner thread; this volume goes unscanned");
            }
        }
    }
    threads
}

/// What one pass over the replicas due found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Replicas verified (corrupt ones included).
    pub replicas: usize,
    pub bytes: u64,
    /// Replicas found corrupt that are still in the map.
    pub corrupt: usize,
    /// Replicas whose files were gone (deleted meanwhile, or missing: the
    /// directory scanner's business).
    pub missing: usize,
    pub elapsed: Duration,
}

/// The outcome of verifying one replica.
enum Verdict {
    Healthy {
        bytes: u64,
    },
    Corrupt {
        reason: String,
        bytes: u64,
        /// Not a checksum mismatch but a failed read: the disk may be at
        /// fault rather than the replica.
        read_error: bool,
    },
    Missing,
    Stopped,
}

pub struct VolumeScanner {
    dataset: Arc<Dataset>,
    volume: usize,
    settings: ScanSettings,
    stop: Arc<StopSignal>,
    throttle: Throttle,
    /// Block id to the generation stamp verified and when.
    verified: HashMap<i64, (u64, Instant)>,
    passes: u64,
    /// The dataset's finalized version when a look found nothing due, and
    /// when the next replica falls due: until either changes, waking up
    /// costs no walk over the replica map.
    idle_at_version: Option<u64>,
    next_due: Option<Instant>,
}

impl VolumeScanner {
    pub fn new(
        dataset: Arc<Dataset>,
        volume: usize,
        settings: ScanSettings,
        stop: Arc<StopSignal>,
    ) -> Self {
        Self {
            dataset,
            volume,
            throttle: Throttle::new(settings.bytes_per_second),
            settings,
            stop,
            verified: HashMap::new(),
            passes: 0,
            idle_at_version: None,
            next_due: None,
        }
    }

    fn root(&self) -> String {
        self.dataset
            .volumes()
            .get(self.volume)
            .map(|v| v.root.display().to_string())
            .unwrap_or_default()
    }

    fn volume_failed(&self) -> bool {
        self.dataset
            .volumes()
            .get(self.volume)
            .is_none_or(|v| v.is_failed())
    }

    /// Scans until stopped or the volume fails.
    pub fn run(mut self) {
        tracing::info!(volume = %self.root(), period = ?self.settings.period,
            bytes_per_second = self.settings.bytes_per_second, "block scanner started");
        loop {
            if self.stop.is_stopped() {
                return;
            }
            if self.volume_failed() {
                tracing::info!(volume = %self.root(), "volume failed; its block scanner stops");
                return;
            }
            if self.dataset.pool_id().is_err() {
                if self.stop.sleep(self.settings.idle_wake) {
                    return;
                }
                continue;
            }
            let now = Instant::now();
            let version = self.dataset.finalized_version();
            let idle =
                self.idle_at_version == Some(version) && self.next_due.is_none_or(|at| now < at);
            let due = if idle {
                Vec::new()
            } else {
                let (due, next_due) = self.due(now);
                self.next_due = next_due;
                self.idle_at_version = due.is_empty().then_some(version);
                due
            };
            if due.is_empty() {
                let wait = self
                    .next_due
                    .map_or(self.settings.idle_wake, |at| {
                        at.saturating_duration_since(now)
                    })
                    .min(self.settings.idle_wake);
                if self.stop.sleep(wait) {
                    return;
                }
                continue;
            }
            let rescans = due
                .iter()
                .filter(|(id, _)| self.verified.contains_key(id))
                .count();
            let Some(summary) = self.scan(due) else {
                return;
            };
            self.passes += 1;
            // Passes over nothing but replicas written since the last one
            // come every few seconds on a busy node; only the others are
            // worth an info line.
            if self.passes == 1 || rescans > 0 || summary.corrupt > 0 {
                tracing::info!(volume = %self.root(), replicas = summary.replicas, bytes = summary.bytes,
                    corrupt = summary.corrupt, missing = summary.missing,
                    elapsed_ms = summary.elapsed.as_millis() as u64, "block scanner pass done");
            } else {
                tracing::debug!(volume = %self.root(), replicas = summary.replicas, bytes = summary.bytes,
                    elapsed_ms = summary.elapsed.as_millis() as u64, "block scanner verified new replicas");
            }
        }
    }

    /// Verifies every replica due now; `None` when stopped midway.
    pub fn scan_due(&mut self) -> Option<PassSummary> {
        let (due, _) = self.due(Instant::now());
        self.scan(due)
    }

    /// The replicas due at `now` (never verified first, then the longest
    /// unverified) and when the next one not yet due will be.
    fn due(&mut self, now: Instant) -> (Vec<(i64, ReplicaInfo)>, Option<Instant>) {
        let replicas: HashMap<i64, ReplicaInfo> =
            self.dataset.finalized_on(self.volume).into_iter().collect();
        self.verified
            .retain(|id, (gs, _)| replicas.get(id).is_some_and(|r| r.generation_stamp == *gs));
        let mut fresh = Vec::new();
        let mut stale = Vec::new();
        let mut next_due: Option<Instant> = None;
        for (id, info) in replicas {
            match self.verified.get(&id) {
                None => fresh.push((id, info)),
                Some((_, at)) => match at.checked_add(self.settings.period) {
                    Some(due_at) if due_at <= now => stale.push((*at, id, info)),
                    Some(due_at) => next_due = Some(next_due.map_or(due_at, |n| n.min(due_at))),
                    None => {}
                },
            }
        }
        fresh.sort_by_key(|(id, _)| *id);
        stale.sort_by_key(|(at, id, _)| (*at, *id));
        fresh.extend(stale.into_iter().map(|(_, id, info)| (id, info)));
        (fresh, next_due)
    }

    fn scan(&mut self, due: Vec<(i64, ReplicaInfo)>) -> Option<PassSummary> {
        let started = Instant::now();
        let mut summary = PassSummary::default();
        for (block_id, info) in due {
            if self.volume_failed() {
                break;
            }
            let verdict = self.verify(block_id, &info);
            match verdict {
                Verdict::Stopped => return None,
                Verdict::Healthy { bytes } => {
                    summary.replicas += 1;
                    summary.bytes += bytes;
                }
                Verdict::Missing => summary.missing += 1,
                Verdict::Corrupt {
                    reason,
                    bytes,
                    read_error,
                } => {
                    summary.replicas += 1;
                    summary.bytes += bytes;
                    // A failing disk takes its replicas with it; they are
                    // then reported lost, not corrupt.
                    if read_error && !self.dataset.check_volume(self.volume, &reason) {
                        break;
                    }
                    if self.dataset.replica(block_id) == Some(info) {
                        summary.corrupt += 1;
                        self.dataset.report_corrupt(block_id, &info, &reason);
                    }
                }
            }
            // Missing and corrupt replicas count as verified too: the first
            // is the directory scanner's to settle, the second is reported,
            // and looking again at once would only spin.
            self.verified
                .insert(block_id, (info.generation_stamp, Instant::now()));
        }
        summary.elapsed = started.elapsed();
        Some(summary)
    }

    fn verify(&mut self, block_id: i64, info: &ReplicaInfo) -> Verdict {
        let Ok((block_path, meta_path)) = self.dataset.replica_paths(block_id, info) else {
            return Verdict::Missing;
        };
        // Only a definite "no such file": a disk that cannot even stat is
        // the volume check's business.
        let gone = || {
            matches!(block_path.try_exists(), Ok(false))
                || matches!(meta_path.try_exists(), Ok(false))
        };
        let corrupt = |err: DatanodeError, bytes: u64| {
            if gone() {
                return Verdict::Missing;
            }
            let reason = match err {
                DatanodeError::CorruptReplica { reason, .. } => reason,
                other => other.to_string(),
            };
            Verdict::Corrupt {
                reason,
                bytes,
                read_error: true,
            }
        };
        let name = BlockName {
            block_id,
            generation_stamp: info.generation_stamp,
        };
        let reader = match ReplicaReader::open(name, &block_path, &meta_path, info.num_bytes) {
            Ok(reader) => reader,
            Err(err) => return corrupt(err, 0),
        };
        let bpc = u64::from(reader.checksum.bytes_per_checksum);
        let step = (SCAN_READ_SIZE / bpc).max(1) * bpc;
        let mut offset = 0;
        while offset < info.num_bytes {
            if self.stop.is_stopped() {
                return Verdict::Stopped;
            }
            let len = step.min(info.num_bytes - offset);
            let (data, sums) = match reader.read(offset, len as usize) {
                Ok(read) => read,
                Err(err) => return corrupt(err, offset),
            };
            if let Err(mismatch) = reader.checksum.verify_at(&data, &sums, offset) {
                return Verdict::Corrupt {
                    reason: mismatch.to_string(),
                    bytes: offset + len,
                    read_error: false,
                };
            }
            offset += len;
            let wait = self.throttle.account(len, Instant::now());
            if !wait.is_zero() && self.stop.sleep(wait) {
                return Verdict::Stopped;
            }
        }
        Verdict::Healthy { bytes: offset }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    use crate::test_support::{self, POOL};

    fn settings(period: Duration) -> ScanSettings {
        ScanSettings {
            period,
            bytes_per_second: 0,
            idle_wake: Duration::from_millis(10),
        }
    }

    fn scanner(dataset: &Arc<Dataset>, volume: usize, period: Duration) -> VolumeScanner {
        VolumeScanner::new(
            Arc::clone(dataset),
            volume,
            settings(period),
            Arc::new(StopSignal::default()),
        )
    }

    /// One pass of a scanner per volume, summed.
    fn scan_all(scanners: &mut [VolumeScanner]) -> PassSummary {
        let mut total = PassSummary::default();
        for scanner in scanners {
            let pass = scanner.scan_due().expect("not stopped");
            total.replicas += pass.replicas;
            total.bytes += pass.bytes;
            total.corrupt += pass.corrupt;
            total.missing += pass.missing;
        }
        total
    }

    fn flip_byte(path: &std::path::Path, offset: u64) {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open");
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, offset).expect("read");
        file.write_all_at(&[byte[0] ^ 0x40], offset).expect("write");
    }

    #[test]
    fn a_flipped_byte_is_reported_once_until_the_replica_is_replaced() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = Arc::new(test_support::dataset(tmp.path(), 2));
        let reported = ds.reports().subscribe("nn");
        let blocks: Vec<_> = (0..4)
            .map(|i| test_support::write_replica(&ds, 1073741825 + i, 5000))
            .collect();
        let victim = &blocks[1];
        let (block_path, _) = test_support::files(&ds, victim.block_id);
        flip_byte(&block_path, 3000);
        let info = ds.replica(victim.block_id).expect("replica");

        let mut scanners: Vec<_> = (0..2)
            .map(|v| scanner(&ds, v, Duration::from_secs(3600)))
            .collect();
        let pass = scan_all(&mut scanners);
        assert_eq!((pass.replicas, pass.bytes, pass.corrupt), (4, 20_000, 1));
        let bad = reported.take().bad;
        assert_eq!(bad.len(), 1, "{bad:?}");
        let (reported_block, storage_id, reason) = &bad[0];
        assert_eq!(reported_block, victim);
        assert_eq!(reported_block.pool_id, POOL);
        assert_eq!(*storage_id, ds.storage_id_of(&info));
        assert!(reason.contains("checksum error at offset 2560"), "{reason}");

        // Nothing is due again within the period.
        assert_eq!(scan_all(&mut scanners).replicas, 0);
        // Verified again (period 0), it is still corrupt but not reported twice.
        let mut eager = scanner(&ds, info.volume, Duration::ZERO);
        assert_eq!(eager.scan_due().expect("pass").corrupt, 1);
        assert!(reported.take().bad.is_empty());

        // Deleted and written again, it is a new replica: healthy now, and
        // reported again if it goes bad.
        ds.invalidate(std::slice::from_ref(victim));
        let rewritten = test_support::write_replica(&ds, victim.block_id, 5000);
        let mut eager: Vec<_> = (0..2).map(|v| scanner(&ds, v, Duration::ZERO)).collect();
        assert_eq!(scan_all(&mut eager).corrupt, 0);
        let (block_path, _) = test_support::files(&ds, rewritten.block_id);
        flip_byte(&block_path, 10);
        assert_eq!(scan_all(&mut eager).corrupt, 1);
        assert_eq!(reported.take().bad.len(), 1);
    }

    #[test]
    fn short_files_and_unreadable_meta_are_corrupt_but_missing_files_are_not() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = Arc::new(test_support::dataset(tmp.path(), 2));
        let reported = ds.reports().subscribe("nn");
        let short = test_support::write_replica(&ds, 1, 5000);
        let bad_meta = test_support::write_replica(&ds, 2, 5000);
        let missing = test_support::write_replica(&ds, 3, 5000);
        let healthy = test_support::write_replica(&ds, 4, 5000);
        let (block_path, _) = test_support::files(&ds, short.block_id);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&block_path)
            .and_then(|f| f.set_len(4000))
            .expect("truncate");
        let (_, meta_path) = test_support::files(&ds, bad_meta.block_id);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&meta_path)
            .and_then(|f| f.write_all_at(&[0xff; 3], 0))
            .expect("damage header");
        let (block_path, _) = test_support::files(&ds, missing.block_id);
        std::fs::remove_file(&block_path).expect("remove");

        let mut scanners: Vec<_> = (0..2)
            .map(|v| scanner(&ds, v, Duration::from_secs(3600)))
            .collect();
        let pass = scan_all(&mut scanners);
        assert_eq!((pass.replicas, pass.corrupt, pass.missing), (3, 2, 1));
        let mut bad: Vec<_> = reported
            .take()
            .bad
            .into_iter()
            .map(|(b, _, reason)| (b.block_id, reason))
            .collect();
        bad.sort();
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(bad[0].0, short.block_id);
        assert!(bad[0].1.contains("4000 bytes"), "{}", bad[0].1);
        assert_eq!(bad[1].0, bad_meta.block_id);
        assert!(bad[1].1.contains("version"), "{}", bad[1].1);
        // Read errors on a healthy disk leave the volumes in service.
        assert!(ds.volumes().iter().all(|v| !v.is_failed()));
        assert!(
            ds.replica(missing.block_id).is_some(),
            "the directory scanner's to drop"
        );
        assert!(ds.open_for_read(&healthy).is_ok());
    }

    #[test]
    fn a_replica_deleted_or_rewritten_during_its_scan_is_not_reported() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = Arc::new(test_support::dataset(tmp.path(), 1));
        let reported = ds.reports().subscribe("nn");
        let block = test_support::write_replica(&ds, 7, 5000);
        let scanned = ds.replica(block.block_id).expect("replica");
        ds.invalidate(std::slice::from_ref(&block));
        assert!(!ds.report_corrupt(block.block_id, &scanned, "checksum error"));
        let rewritten = test_support::write_replica(&ds, 7, 6000);
        assert!(!ds.report_corrupt(rewritten.block_id, &scanned, "checksum error"));
        assert!(reported.take().bad.is_empty());
    }

    #[test]
    fn the_thread_verifies_new_replicas_throttled_and_stops_promptly() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = Arc::new(test_support::dataset(tmp.path(), 2));
        let reported = ds.reports().subscribe("nn");
        test_support::write_replica(&ds, 1, 20_000);
        let stop = Arc::new(StopSignal::default());
        let settings = ScanSettings {
            period: Duration::from_secs(3600),
            bytes_per_second: 200_000,
            idle_wake: Duration::from_millis(10),
        };
        let threads = spawn(&ds, settings, &stop);
        assert_eq!(threads.len(), 2);
        // A replica that arrives after the scanners started, stored with
        // checksums that do not match its data.
        let block = test_support::block(2);
        let mut writer = ds
            .create_rbw(&block, crate::test_support::CRC32C_512, 1 << 20, false)
            .expect("rbw");
        let data = vec![7u8; 20_000];
        let mut sums = crate::test_support::CRC32C_512.compute(&data);
        sums[0] ^= 1;
        writer.write(&data, &sums).expect("write");
        ds.finalize(writer).expect("finalize");
        let started = Instant::now();
        let bad = loop {
            let bad = reported.take().bad;
            if !bad.is_empty() || started.elapsed() > Duration::from_secs(5) {
                break bad;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].0.block_id, 2);
        // A big replica at 200 kB/s keeps a scanner busy for a while; the
        // stop must not wait for it.
        test_support::write_replica(&ds, 3, 1 << 20);
        std::thread::sleep(Duration::from_millis(30));
        let stopping = Instant::now();
        stop.stop();
        for thread in threads {
            thread.join().expect("scanner thread");
        }
        assert!(
            stopping.elapsed() < Duration::from_millis(500),
            "{:?}",
            stopping.elapsed()
        );
    }
}
