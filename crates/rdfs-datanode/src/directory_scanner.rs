//! The directory scanner (HDFS's `DirectoryScanner`): now and then, compares
//! each volume's `finalized/` tree with the replica map and settles the
//! differences that crept in behind the datanode's back (an operator or a
//! disk deleting, truncating or restoring files):
//!
//! - a replica in memory whose block or meta file is gone leaves the map
//!   and is reported deleted, so the namenode re-replicates it;
//! - a block file of another length than recorded, or a meta file that does
//!   not fit its block, is reported corrupt (once);
//! - a complete replica on disk that the map does not know is adopted and
//!   reported received; the namenode decides whether it wants it.
//!
//! Only finalized replicas are compared, and every change is re-checked
//! against the map (and the disk) under its lock, so writes, finalizes and
//! deletions running meanwhile are left alone.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::background::StopSignal;
use crate::dataset::{Dataset, ReplicaInfo, ReplicaState, check_meta};
use crate::volume::Volume;

/// What one reconciliation changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Replicas dropped from the map because their files are gone.
    pub removed: usize,
    /// Replicas newly reported corrupt for their file lengths.
    pub mismatched: usize,
    /// Replicas found on disk and taken into the map.
    pub adopted: usize,
}

impl Reconciled {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Starts the scanner thread: one reconciliation every `interval`, the first
/// one interval after start (the start-up load has just read the disks).
pub fn spawn(
    dataset: &Arc<Dataset>,
    interval: Duration,
    stop: &Arc<StopSignal>,
) -> Option<JoinHandle<()>> {
    let dataset = Arc::clone(dataset);
    let stop = Arc::clone(stop);
    let spawned = std::thread::Builder::new()
        .name("directory-scanner".to_string())
        .spawn(move || {
            tracing::info!(interval = ?interval, "directory scanner started");
            while !stop.sleep(interval) {
                if dataset.pool_id().is_ok() {
                    reconcile_until(&dataset, &stop);
                }
            }
        });
    match spawned {
        Ok(thread) => Some(thread),
        Err(err) => {
            tracing::error!(error = %err, "cannot start the directory scanner thread");
            None
        }
    }
}

/// Compares every volume in service with the replica map once. Blocking.
pub fn reconcile(dataset: &Dataset) -> Reconciled {
    reconcile_until(dataset, &StopSignal::default())
}

/// [`reconcile`], giving up between volumes once `stop` is set.
fn reconcile_until(dataset: &Dataset, stop: &StopSignal) -> Reconciled {
    let started = Instant::now();
    let mut total = Reconciled::default();
    for volume in dataset.volumes().iter().filter(|v| !v.is_failed()) {
        if stop.is_stopped() {
            break;
        }
        reconcile_volume(dataset, volume, &mut total);
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if total.is_empty() {
        tracing::debug!(
            elapsed_ms,
            "directory scan found the disks and the replica map agreeing"
        );
    } else {
        tracing::info!(
            removed = total.removed,
            mismatched = total.mismatched,
            adopted = total.adopted,
            elapsed_ms,
            "directory scan reconciled the disks with the replica map"
        );
    }
    total
}

fn reconcile_volume(dataset: &Dataset, volume: &Volume, total: &mut Reconciled) {
    let Ok(pool_id) = dataset.pool_id() else {
        return;
    };
    // The disk first, then the map: a replica finalized in between is in
    // the map but not in the listing, and `remove_missing` finds its files.
    let listing = match volume.list_finalized(pool_id) {
        Ok(listing) => listing,
        Err(err) => {
            tracing::warn!(volume = %volume.root.display(), error = %err, "directory scan cannot list the volume");
            dataset.check_volume(volume.index, &err);
            return;
        }
    };
    let in_memory = dataset.finalized_on(volume.index);
    let known: HashSet<i64> = in_memory.iter().map(|(id, _)| *id).collect();
    for (block_id, info) in in_memory {
        let block = listing.blocks.get(&block_id);
        let meta = listing.meta(block_id, info.generation_stamp);
        let (Some((_, block_len)), Some(meta_path)) = (block, meta) else {
            if dataset.remove_missing(block_id, &info) {
                total.removed += 1;
                tracing::warn!(volume = %volume.root.display(), block_id, gs = info.generation_stamp,
                    block_file = block.is_some(), meta_file = meta.is_some(),
                    "replica files are gone from disk; dropped and reported deleted");
            }
            continue;
        };
        let problem = if *block_len != info.num_bytes {
            Some(format!(
                "block file has {block_len} bytes; the replica has {}",
                info.num_bytes
            ))
        } else {
            check_meta(meta_path, *block_len).err()
        };
        if let Some(reason) = problem
            && dataset.report_corrupt(block_id, &info, &reason)
        {
            total.mismatched += 1;
        }
    }
    for (block_id, (block_path, block_len)) in &listing.blocks {
        if known.contains(block_id) {
            continue;
        }
        let Some((meta_path, generation_stamp)) = listing.newest_meta(*block_id) else {
            continue;
        };
        if let Some(other) = dataset.replica(*block_id) {
            if other.volume != volume.index && other.state == ReplicaState::Finalized {
                tracing::debug!(block = %block_path.display(), other_volume = other.volume,
                    "a stale copy of a replica held on another volume; left alone");
            }
            continue;
        }
        let info = ReplicaInfo::finalized(generation_stamp, *block_len, volume.index);
        if dataset.adopt(*block_id, info) {
            total.adopted += 1;
            tracing::info!(block = %block_path.display(), gs = generation_stamp, bytes = block_len,
                "replica on disk unknown to the map; adopted and reported received");
            if let Err(reason) = check_meta(meta_path, *block_len)
                && dataset.report_corrupt(*block_id, &info, &reason)
            {
                total.mismatched += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use crate::reports::ReplicaChange;
    use crate::test_support::{self, POOL};

    #[test]
    fn deleted_truncated_damaged_and_stray_replicas_are_reconciled() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = test_support::dataset(tmp.path(), 2);
        let reported = ds.reports().subscribe("nn");
        let blocks: Vec<_> = (0..4)
            .map(|i| test_support::write_replica(&ds, 1073741825 + i, 5000))
            .collect();
        assert!(reconcile(&ds).is_empty());

        // A block file deleted behind the datanode's back.
        let gone = ds.replica(blocks[0].block_id).expect("replica");
        let used = ds.volumes()[gone.volume].dfs_used();
        let (block_path, _) = test_support::files(&ds, blocks[0].block_id);
        std::fs::remove_file(&block_path).expect("remove");
        // A truncated block file.
        let (block_path, _) = test_support::files(&ds, blocks[1].block_id);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&block_path)
            .and_then(|f| f.set_len(100))
            .expect("truncate");
        // A meta file with bytes too many.
        let (_, meta_path) = test_support::files(&ds, blocks[2].block_id);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&meta_path)
            .and_then(|mut f| f.write_all(b"junk"))
            .expect("append");
        // A complete replica restored into finalized/ on volume 1.
        let (src_block, src_meta) = test_support::files(&ds, blocks[3].block_id);
        let stray_id = 1073741825 + 300;
        let dir = ds.volumes()[1].finalized_dir(POOL, stray_id);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::copy(&src_block, dir.join(format!("blk_{stray_id}"))).expect("copy block");
        std::fs::copy(&src_meta, dir.join(format!("blk_{stray_id}_1001.meta"))).expect("copy meta");
        // A meta file alone is no replica.
        std::fs::copy(&src_meta, dir.join("blk_999_1001.meta")).expect("copy meta");

        let done = reconcile(&ds);
        assert_eq!(
            done,
            Reconciled {
                removed: 1,
                mismatched: 2,
                adopted: 1
            }
        );
        assert!(ds.replica(blocks[0].block_id).is_none());
        assert_eq!(ds.volumes()[gone.volume].dfs_used(), used - 5000);
        let adopted = ds.replica(stray_id).expect("adopted");
        assert_eq!(
            (adopted.volume, adopted.num_bytes, adopted.generation_stamp),
            (1, 5000, 1001)
        );
        assert!(ds.replica(999).is_none());
        let pending = reported.take();
        let mut changes: Vec<_> = pending
            .changes
            .iter()
            .map(|(b, storage, change)| (b.block_id, storage.clone(), *change))
            .collect();
        changes.sort_by_key(|c| c.0);
        assert_eq!(
            changes,
            vec![
                (
                    blocks[0].block_id,
                    ds.storage_id_of(&gone),
                    ReplicaChange::Deleted
                ),
                (
                    stray_id,
                    ds.volumes()[1].storage_id(),
                    ReplicaChange::Received
                ),
            ]
        );
        let mut bad: Vec<_> = pending
            .bad
            .iter()
            .map(|(b, _, r)| (b.block_id, r.clone()))
            .collect();
        bad.sort();
        assert_eq!(bad[0].0, blocks[1].block_id);
        assert!(
            bad[0].1.contains("block file has 100 bytes"),
            "{}",
            bad[0].1
        );
        assert_eq!(bad[1].0, blocks[2].block_id);
        assert!(bad[1].1.contains("meta file has"), "{}", bad[1].1);
        assert!(ds.open_for_read(&test_support::block(stray_id)).is_ok());

        // Reported once: the next scan finds the same damage and says nothing.
        assert!(reconcile(&ds).is_empty());
        assert!(reported.take().bad.is_empty());
    }

    #[test]
    fn replicas_that_changed_since_the_walk_or_are_being_written_are_left_alone() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = test_support::dataset(tmp.path(), 1);
        let block = test_support::write_replica(&ds, 5, 5000);
        let info = ds.replica(block.block_id).expect("replica");
        let (block_path, meta_path) = test_support::files(&ds, block.block_id);
        std::fs::remove_file(&block_path).expect("remove");
        // The map moved on (a newer generation stamp) since the walk.
        let older = ReplicaInfo {
            generation_stamp: info.generation_stamp - 1,
            ..info
        };
        assert!(!ds.remove_missing(block.block_id, &older));
        assert!(ds.replica(block.block_id).is_some());

        // Files in finalized/ for a replica still being written are not
        // adopted: the writer's finalize owns them.
        let writing = test_support::block(6);
        let writer = ds
            .create_rbw(&writing, crate::test_support::CRC32C_512, 1 << 20, false)
            .expect("rbw");
        let dir = ds.volumes()[0].finalized_dir(POOL, 6);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("blk_6"), b"").expect("block");
        std::fs::copy(&meta_path, dir.join("blk_6_1001.meta")).expect("meta");
        let done = reconcile(&ds);
        assert_eq!(done.adopted, 0);
        assert_eq!(done.removed, 1, "the replica whose block file is gone");
        ds.abort(writer);
        assert!(ds.replica(6).is_none());
    }
}
