//! The replicas this datanode holds, across all its volumes (HDFS's
//! `FsDataset`): where each one lives, in which state, and the operations
//! that create, finalize, read and delete them. It also takes a volume out
//! of service when an I/O error turns out to be a failed disk, and tells
//! the namenode what was lost with it.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use rdfs_common::checksum::{META_HEADER_LEN, MetaHeader};
use rdfs_common::ids::BlockName;
use rdfs_common::protocol::ExtendedBlock;

use crate::error::DatanodeError;
use crate::replica::{ReplicaReader, ReplicaWriter, block_file_name, meta_file_name};
use crate::reports::{ReplicaChange, Reports};
use crate::volume::{FailedVolume, Volume};
use crate::volume_choice::AvailableSpacePolicy;

/// A volume that just passed a health check is not checked again for this
/// long, however many I/O errors follow (HDFS's
/// `dfs.datanode.disk.check.min.gap`, shorter: our check is cheap).
pub const DISK_CHECK_MIN_GAP: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    Finalized,
    /// Being written.
    Rbw,
}

impl ReplicaState {
    fn name(self) -> &'static str {
        match self {
            Self::Finalized => "FINALIZED",
            Self::Rbw => "RBW",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub generation_stamp: u64,
    pub num_bytes: u64,
    pub state: ReplicaState,
    pub volume: usize,
}

/// A replica the start-up scan found damaged.
#[derive(Debug, Clone)]
pub struct SuspectReplica {
    pub block: ExtendedBlock,
    pub storage_id: String,
    pub reason: String,
}

/// One volume's share of a block report.
#[derive(Debug, Clone)]
pub struct StorageReplicas {
    pub storage_id: String,
    pub replicas: Vec<(i64, ReplicaInfo)>,
}

/// The replica map and what must change with it under the same lock.
#[derive(Debug, Default)]
struct ReplicaMap {
    replicas: HashMap<i64, ReplicaInfo>,
    /// Replicas already reported corrupt: each is reported once, until it
    /// is deleted or replaced.
    reported_bad: HashSet<i64>,
    /// Replicas out of the map whose files are being deleted, which a
    /// directory scan must not take for strays to adopt.
    deleting: HashSet<i64>,
    /// Bumped whenever a finalized replica enters the map, so the block
    /// scanners can tell cheaply that nothing new arrived.
    finalized_version: u64,
}

impl ReplicaMap {
    fn get(&self, block_id: i64) -> Option<&ReplicaInfo> {
        self.replicas.get(&block_id)
    }

    fn insert(&mut self, block_id: i64, info: ReplicaInfo) {
        self.reported_bad.remove(&block_id);
        if info.state == ReplicaState::Finalized {
            self.finalized_version += 1;
        }
        self.replicas.insert(block_id, info);
    }

    fn remove(&mut self, block_id: i64) -> Option<ReplicaInfo> {
        self.reported_bad.remove(&block_id);
        self.replicas.remove(&block_id)
    }
}

pub struct Dataset {
    volumes: Vec<Volume>,
    replicas: Mutex<ReplicaMap>,
    pool: OnceLock<String>,
    chooser: AvailableSpacePolicy,
    sync_behind: u64,
    sync_on_close: bool,
    /// Where replicas lost with a volume, found corrupt or found by the
    /// directory scanner are reported; the namenode link drains it.
    reports: Arc<Reports>,
    failed_volumes_tolerated: u32,
    /// Data directories that could not even be opened at start.
    failed_at_start: Vec<FailedVolume>,
    /// Cancelled once more volumes failed than tolerated.
    volumes_lost: CancellationToken,
}

impl Dataset {
    /// A dataset over `volumes` that tolerates no failed volume; see
    /// [`Self::tolerating`].
    pub fn new(mut volumes: Vec<Volume>, sync_behind: u64, sync_on_close: bool) -> Self {
        // Replicas name their volume by position.
        for (index, volume) in volumes.iter_mut().enumerate() {
            volume.index = index;
        }
        Self {
            volumes,
            replicas: Mutex::new(ReplicaMap::default()),
            pool: OnceLock::new(),
            chooser: AvailableSpacePolicy::default(),
            sync_behind,
            sync_on_close,
            reports: Arc::new(Reports::default()),
            failed_volumes_tolerated: 0,
            failed_at_start: Vec::new(),
            volumes_lost: CancellationToken::new(),
        }
    }

    /// Lets up to `tolerated` volumes fail, counting the data directories
    /// that could not be opened at start (`failed_at_start`) among them.
    pub fn tolerating(mut self, tolerated: u32, failed_at_start: Vec<FailedVolume>) -> Self {
        self.failed_volumes_tolerated = tolerated;
        self.failed_at_start = failed_at_start;
        self
    }

    /// The queue of reports for the namenode this dataset writes to; the
    /// daemon's [`crate::context::DatanodeContext`] must share it.
    pub fn reports(&self) -> Arc<Reports> {
        Arc::clone(&self.reports)
    }

    pub fn volumes(&self) -> &[Volume] {
        &self.volumes
    }

    pub fn pool_id(&self) -> Result<&str, DatanodeError> {
        self.pool
            .get()
            .map(String::as_str)
            .ok_or(DatanodeError::NotReady)
    }

    pub fn check_pool(&self, requested: &str) -> Result<(), DatanodeError> {
        let served = self.pool_id()?;
        if served != requested {
            return Err(DatanodeError::WrongPool {
                requested: requested.to_string(),
                served: served.to_string(),
            });
        }
        Ok(())
    }

    /// Formats (or checks) every volume for the namenode's cluster, creates
    /// the block pool directories and loads the replicas already on disk.
    /// A volume that fails with an I/O error on the way is taken out of
    /// service; more than tolerated is an error. Returns the replicas found
    /// damaged (the caller reports them; they are not reported again).
    pub fn attach_pool(
        &self,
        cluster_id: &str,
        pool_id: &str,
        namespace_id: u32,
        datanode_uuid: &str,
    ) -> Result<Vec<SuspectReplica>, DatanodeError> {
        if let Some(existing) = self.pool.get() {
            if existing != pool_id {
                return Err(DatanodeError::WrongPool {
                    requested: pool_id.to_string(),
                    served: existing.clone(),
                });
            }
            return Ok(Vec::new());
        }
        for volume in self.volumes.iter().filter(|v| !v.is_failed()) {
            let prepared = volume
                .format_or_check(cluster_id, datanode_uuid)
                .and_then(|()| volume.init_block_pool(pool_id, namespace_id));
            match prepared {
                Ok(()) => {}
                Err(err @ DatanodeError::Io { .. }) => self.fail_volume(volume.index, &err),
                Err(err) => return Err(err),
            }
        }
        self.volume_health()?;
        let mut scanned = Vec::new();
        for volume in self.volumes.iter().filter(|v| !v.is_failed()) {
            match scan_volume(volume, pool_id) {
                Ok(found) => scanned.push((volume, found)),
                Err(err) => self.fail_volume(volume.index, &err),
            }
        }
        self.volume_health()?;
        let mut suspects = Vec::new();
        let mut map = self.replicas.lock();
        for (volume, found) in scanned {
            for (block_id, info, suspect) in found {
                match map.get(block_id) {
                    Some(existing) if existing.generation_stamp >= info.generation_stamp => {
                        tracing::warn!(block_id, volume = %volume.root.display(),
                            "a replica of this block is on two volumes; keeping the one with the newer generation stamp");
                        continue;
                    }
                    Some(older) => self.volumes[older.volume].sub_used(older.num_bytes),
                    None => {}
                }
                volume.add_used(info.num_bytes);
                map.insert(block_id, info);
                if let Some(reason) = suspect {
                    map.reported_bad.insert(block_id);
                    suspects.push(SuspectReplica {
                        block: ExtendedBlock {
                            pool_id: pool_id.to_string(),
                            block_id,
                            generation_stamp: info.generation_stamp,
                            num_bytes: info.num_bytes,
                        },
                        storage_id: volume.storage_id(),
                        reason,
                    });
                }
            }
        }
        // A suspect superseded by a newer replica on another volume is not
        // the replica the namenode will hear about.
        suspects.retain(|s| {
            map.get(s.block.block_id)
                .is_some_and(|r| r.generation_stamp == s.block.generation_stamp)
        });
        tracing::info!(
            replicas = map.replicas.len(),
            suspects = suspects.len(),
            "volumes scanned"
        );
        drop(map);
        let _ = self.pool.set(pool_id.to_string());
        Ok(suspects)
    }

    /// A volume with room for `needed` bytes, by available space.
    fn choose_volume(&self, needed: u64) -> Result<usize, DatanodeError> {
        let candidates: Vec<(usize, u64)> = self
            .volumes
            .iter()
            .filter(|v| !v.is_failed())
            .map(|v| (v.index, v.remaining()))
            .collect();
        self.chooser
            .choose(&candidates, needed)
            .ok_or(DatanodeError::NoSpace { needed })
    }

    /// Starts a new replica in `rbw/` on a volume with room for
    /// `expected_len` bytes.
    pub fn create_rbw(
        &self,
        block: &ExtendedBlock,
        bytes_per_checksum: u32,
        expected_len: u64,
    ) -> Result<ReplicaWriter, DatanodeError> {
        let pool_id = self.pool_id()?.to_string();
        let volume = self.choose_volume(expected_len)?;
        {
            let mut map = self.replicas.lock();
            if let Some(existing) = map.get(block.block_id) {
                return Err(DatanodeError::ReplicaExists(
                    block.name().to_string(),
                    existing.state.name(),
                ));
            }
            map.insert(
                block.block_id,
                ReplicaInfo {
                    generation_stamp: block.generation_stamp,
                    num_bytes: 0,
                    state: ReplicaState::Rbw,
                    volume,
                },
            );
        }
        let created = ReplicaWriter::create(
            block.name(),
            volume,
            &self.volumes[volume].rbw_dir(&pool_id),
            bytes_per_checksum,
            self.sync_behind,
        );
        if let Err(err) = &created {
            self.replicas.lock().remove(block.block_id);
            if !is_already_exists(err) {
                self.check_volume(volume, err);
            }
        }
        created
    }

    /// Moves a complete replica to `finalized/` (durably, per config) and
    /// records it. Blocking.
    pub fn finalize(&self, writer: ReplicaWriter) -> Result<ReplicaInfo, DatanodeError> {
        let pool_id = self.pool_id()?.to_string();
        let name = writer.name;
        let volume = writer.volume;
        let dir = self.volumes[volume].finalized_dir(&pool_id, name.block_id);
        let result = writer.finalize(&dir, self.sync_on_close);
        let mut map = self.replicas.lock();
        // Checked under the lock: a volume failing now has either already
        // dropped its replicas (and this one must not come back) or will
        // drop this one with them.
        if let Some(failure) = self.volumes[volume].failure() {
            map.remove(name.block_id);
            return Err(DatanodeError::VolumeFailed {
                root: failure.root,
                reason: failure.reason,
            });
        }
        match result {
            Ok(num_bytes) => {
                let info = ReplicaInfo {
                    generation_stamp: name.generation_stamp,
                    num_bytes,
                    state: ReplicaState::Finalized,
                    volume,
                };
                map.insert(name.block_id, info);
                self.volumes[volume].add_used(num_bytes);
                Ok(info)
            }
            Err(err) => {
                map.remove(name.block_id);
                drop(map);
                self.check_volume(volume, &err);
                Err(err)
            }
        }
    }

    /// Deletes a replica that will never be finalized. Blocking.
    pub fn abort(&self, writer: ReplicaWriter) {
        let block_id = writer.name.block_id;
        let volume = writer.volume;
        let write_failed = writer.had_io_error();
        writer.abort();
        {
            let mut map = self.replicas.lock();
            if map
                .get(block_id)
                .is_some_and(|r| r.state == ReplicaState::Rbw)
            {
                map.remove(block_id);
            }
        }
        if write_failed {
            self.check_volume(volume, &"a replica write failed");
        }
    }

    fn paths(&self, pool_id: &str, block_id: i64, info: &ReplicaInfo) -> (PathBuf, PathBuf) {
        let volume = &self.volumes[info.volume];
        let dir = match info.state {
            ReplicaState::Finalized => volume.finalized_dir(pool_id, block_id),
            ReplicaState::Rbw => volume.rbw_dir(pool_id),
        };
        (
            dir.join(block_file_name(block_id)),
            dir.join(meta_file_name(block_id, info.generation_stamp)),
        )
    }

    /// The block and meta files of a replica.
    pub fn replica_paths(
        &self,
        block_id: i64,
        info: &ReplicaInfo,
    ) -> Result<(PathBuf, PathBuf), DatanodeError> {
        Ok(self.paths(self.pool_id()?, block_id, info))
    }

    pub fn replica(&self, block_id: i64) -> Option<ReplicaInfo> {
        self.replicas.lock().get(block_id).copied()
    }

    /// Changes whenever a finalized replica is added or replaced.
    pub fn finalized_version(&self) -> u64 {
        self.replicas.lock().finalized_version
    }

    /// The finalized replicas on one volume.
    pub fn finalized_on(&self, volume: usize) -> Vec<(i64, ReplicaInfo)> {
        self.replicas
            .lock()
            .replicas
            .iter()
            .filter(|(_, r)| r.volume == volume && r.state == ReplicaState::Finalized)
            .map(|(id, r)| (*id, *r))
            .collect()
    }

    pub fn storage_id_of(&self, info: &ReplicaInfo) -> String {
        self.volumes[info.volume].storage_id()
    }

    fn extended(&self, pool_id: &str, block_id: i64, info: &ReplicaInfo) -> ExtendedBlock {
        ExtendedBlock {
            pool_id: pool_id.to_string(),
            block_id,
            generation_stamp: info.generation_stamp,
            num_bytes: info.num_bytes,
        }
    }

    /// Opens a finalized replica whose generation stamp is at least the
    /// requested one. Blocking.
    pub fn open_for_read(&self, block: &ExtendedBlock) -> Result<ReplicaReader, DatanodeError> {
        let pool_id = self.pool_id()?.to_string();
        let info = self
            .replica(block.block_id)
            .filter(|r| {
                r.state == ReplicaState::Finalized && r.generation_stamp >= block.generation_stamp
            })
            .ok_or_else(|| DatanodeError::ReplicaNotFound(block.to_string()))?;
        let (block_path, meta_path) = self.paths(&pool_id, block.block_id, &info);
        let opened = ReplicaReader::open(
            BlockName {
                block_id: block.block_id,
                generation_stamp: info.generation_stamp,
            },
            &block_path,
            &meta_path,
            info.num_bytes,
        );
        if let Err(err) = &opened {
            self.check_volume(info.volume, err);
        }
        opened
    }

    /// Reports `block_id` corrupt to the namenode, if it is still the
    /// replica that was checked (`expected`: not deleted or rewritten
    /// meanwhile) and has not been reported already. True when reported.
    pub fn report_corrupt(&self, block_id: i64, expected: &ReplicaInfo, reason: &str) -> bool {
        let Ok(pool_id) = self.pool_id() else {
            return false;
        };
        {
            let mut map = self.replicas.lock();
            if map.get(block_id) != Some(expected) || !map.reported_bad.insert(block_id) {
                return false;
            }
        }
        let block = self.extended(pool_id, block_id, expected);
        let storage_id = self.storage_id_of(expected);
        tracing::warn!(block = %block, storage_id, reason, "replica is corrupt; reporting it to the namenode");
        self.reports
            .bad_replica(block, storage_id, reason.to_string());
        true
    }

    /// Drops a finalized replica whose files are gone from disk and reports
    /// it deleted, so the namenode re-replicates it. Looks at the disk
    /// again under the lock, and does nothing if the replica changed since
    /// `expected` was read. True when dropped.
    pub fn remove_missing(&self, block_id: i64, expected: &ReplicaInfo) -> bool {
        let Ok(pool_id) = self.pool_id() else {
            return false;
        };
        let (block_path, meta_path) = self.paths(pool_id, block_id, expected);
        // When the disk cannot say, keep the replica.
        let present = |path: &Path| path.try_exists().unwrap_or(true);
        {
            let mut map = self.replicas.lock();
            if map.get(block_id) != Some(expected)
                || expected.state != ReplicaState::Finalized
                || (present(&block_path) && present(&meta_path))
            {
                return false;
            }
            map.remove(block_id);
        }
        self.volumes[expected.volume].sub_used(expected.num_bytes);
        self.reports.replica_changed(
            self.extended(pool_id, block_id, expected),
            self.storage_id_of(expected),
            ReplicaChange::Deleted,
        );
        true
    }

    /// Takes a finalized replica found on disk but not in memory into the
    /// map and reports it received (the namenode decides whether it wants
    /// it). Refused when the block is known in any state, is being deleted,
    /// or its files are gone. True when adopted.
    pub fn adopt(&self, block_id: i64, info: ReplicaInfo) -> bool {
        let Ok(pool_id) = self.pool_id() else {
            return false;
        };
        if info.state != ReplicaState::Finalized || self.volumes[info.volume].is_failed() {
            return false;
        }
        let (block_path, meta_path) = self.paths(pool_id, block_id, &info);
        {
            let mut map = self.replicas.lock();
            if map.get(block_id).is_some()
                || map.deleting.contains(&block_id)
                || !block_path.is_file()
                || !meta_path.is_file()
            {
                return false;
            }
            map.insert(block_id, info);
        }
        self.volumes[info.volume].add_used(info.num_bytes);
        self.reports.replica_changed(
            self.extended(pool_id, block_id, &info),
            self.storage_id_of(&info),
            ReplicaChange::Received,
        );
        true
    }

    /// Deletes the finalized replicas the namenode no longer wants; returns
    /// the ones deleted with their storage ids. Blocking.
    pub fn invalidate(&self, blocks: &[ExtendedBlock]) -> Vec<(ExtendedBlock, String)> {
        let Ok(pool_id) = self.pool_id().map(str::to_string) else {
            return Vec::new();
        };
        let mut deleted = Vec::new();
        for block in blocks {
            let info = {
                let mut map = self.replicas.lock();
                match map.get(block.block_id).copied() {
                    Some(info)
                        if info.state == ReplicaState::Finalized
                            && info.generation_stamp <= block.generation_stamp =>
                    {
                        map.remove(block.block_id);
                        map.deleting.insert(block.block_id);
                        info
                    }
                    Some(info) => {
                        tracing::info!(block = %block, state = info.state.name(), gs = info.generation_stamp,
                            "not deleting replica: it is newer than the one the namenode asked to delete");
                        continue;
                    }
                    None => {
                        deleted.push((block.clone(), String::new()));
                        continue;
                    }
                }
            };
            let (block_path, meta_path) = self.paths(&pool_id, block.block_id, &info);
            for path in [&block_path, &meta_path] {
                if let Err(err) = std::fs::remove_file(path)
                    && err.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), error = %err, "cannot delete replica file");
                }
            }
            self.replicas.lock().deleting.remove(&block.block_id);
            self.volumes[info.volume].sub_used(info.num_bytes);
            deleted.push((block.clone(), self.volumes[info.volume].storage_id()));
        }
        if !deleted.is_empty() {
            tracing::info!(
                count = deleted.len(),
                "deleted replicas the namenode invalidated"
            );
        }
        deleted
    }

    /// Finalized replicas, grouped by volume.
    pub fn block_report(&self) -> Vec<StorageReplicas> {
        let mut per_volume: Vec<StorageReplicas> = self
            .volumes
            .iter()
            .map(|v| StorageReplicas {
                storage_id: v.storage_id(),
                replicas: Vec::new(),
            })
            .collect();
        for (block_id, info) in self.replicas.lock().replicas.iter() {
            if info.state == ReplicaState::Finalized {
                per_volume[info.volume].replicas.push((*block_id, *info));
            }
        }
        per_volume
    }

    /// Every volume out of service: those that could not be opened at start
    /// and those that failed since.
    pub fn failed_volumes(&self) -> Vec<FailedVolume> {
        self.failed_at_start
            .iter()
            .cloned()
            .chain(self.volumes.iter().filter_map(Volume::failure))
            .collect()
    }

    /// What the heartbeat reports as `failed_volumes`.
    pub fn failed_volume_count(&self) -> usize {
        self.failed_at_start.len() + self.volumes.iter().filter(|v| v.is_failed()).count()
    }

    /// Whether the datanode may go on with the volumes it has left: no
    /// more failed than tolerated, and at least one in service.
    pub fn volume_health(&self) -> Result<(), DatanodeError> {
        let failed = self.failed_volume_count();
        if failed > self.failed_volumes_tolerated as usize {
            return Err(DatanodeError::TooManyFailedVolumes {
                failed,
                tolerated: self.failed_volumes_tolerated,
                volumes: self.failed_volumes(),
            });
        }
        if self.volumes.iter().all(Volume::is_failed) {
            return Err(DatanodeError::NoVolumeLeft {
                volumes: self.failed_volumes(),
            });
        }
        Ok(())
    }

    /// Resolves once the datanode has lost more volumes than it tolerates,
    /// with the error to stop on.
    pub async fn volumes_lost(&self) -> DatanodeError {
        self.volumes_lost.cancelled().await;
        match self.volume_health() {
            Err(err) => err,
            // Unreachable: failed volumes never come back.
            Ok(()) => DatanodeError::NoVolumeLeft {
                volumes: self.failed_volumes(),
            },
        }
    }

    /// Called after an I/O error on `volume` (HDFS's `checkDiskError`):
    /// checks the volume and, if it is broken, takes it out of service.
    /// Returns whether the volume is still in service. Blocking.
    pub fn check_volume(&self, volume: usize, cause: &dyn Display) -> bool {
        let Some(vol) = self.volumes.get(volume) else {
            return false;
        };
        if vol.is_failed() {
            return false;
        }
        let pool_id = self.pool.get().map(String::as_str);
        match vol.check_health_throttled(pool_id, DISK_CHECK_MIN_GAP) {
            None => !vol.is_failed(),
            Some(Ok(())) => {
                tracing::info!(volume = %vol.root.display(), cause = %cause,
                    "I/O error on a volume that passes its health check; keeping it in service");
                true
            }
            Some(Err(err)) => {
                tracing::error!(volume = %vol.root.display(), cause = %cause, error = %err,
                    "volume failed its health check");
                self.fail_volume(volume, &err);
                false
            }
        }
    }

    /// Takes a volume out of service: no new replicas go to it, its
    /// replicas leave the map and the finalized ones are reported deleted
    /// so the namenode re-replicates them. Past the tolerance, the datanode
    /// is told to stop.
    fn fail_volume(&self, index: usize, reason: &dyn Display) {
        let volume = &self.volumes[index];
        // Marked before the map is touched, so a finalize that takes the
        // lock after this sees the volume failed.
        if !volume.fail(&reason.to_string()) {
            return;
        }
        let lost: Vec<(i64, ReplicaInfo)> = {
            let mut map = self.replicas.lock();
            let ids: Vec<i64> = map
                .replicas
                .iter()
                .filter(|(_, r)| r.volume == index)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| map.remove(id).map(|info| (id, info)))
                .collect()
        };
        let storage_id = volume.storage_id();
        let mut finalized = 0usize;
        for (block_id, info) in &lost {
            if info.state != ReplicaState::Finalized {
                continue;
            }
            finalized += 1;
            volume.sub_used(info.num_bytes);
            if let Ok(pool_id) = self.pool_id() {
                self.reports.replica_changed(
                    self.extended(pool_id, *block_id, info),
                    storage_id.clone(),
                    ReplicaChange::Deleted,
                );
            }
        }
        tracing::error!(volume = %volume.root.display(), reason = %reason, storage_id,
            replicas_lost = finalized, writes_abandoned = lost.len() - finalized,
            failed = self.failed_volume_count(), tolerated = self.failed_volumes_tolerated,
            "volume failed: taken out of service and its replicas reported lost");
        if let Err(err) = self.volume_health() {
            tracing::error!(error = %err, "the datanode cannot go on with the volumes it has left");
            self.volumes_lost.cancel();
        }
    }
}

/// A file left in `rbw/` by an earlier run is no sign of a failing disk.
fn is_already_exists(err: &DatanodeError) -> bool {
    matches!(err, DatanodeError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
}

/// Finds the finalized replicas of a volume. Each comes with a reason when
/// its meta file does not fit its block file (a corrupt replica).
fn scan_volume(
    volume: &Volume,
    pool_id: &str,
) -> Result<Vec<(i64, ReplicaInfo, Option<String>)>, DatanodeError> {
    let listing = volume.list_finalized(pool_id)?;
    let mut found = Vec::new();
    for (block_id, (block_path, num_bytes)) in &listing.blocks {
        let Some((meta_path, generation_stamp)) = listing.newest_meta(*block_id) else {
            tracing::warn!(block = %block_path.display(), "block file without a meta file; ignored");
            continue;
        };
        let suspect = check_meta(meta_path, *num_bytes).err();
        if let Some(reason) = &suspect {
            tracing::warn!(block = %block_path.display(), reason, "replica is corrupt");
        }
        let info = ReplicaInfo {
            generation_stamp,
            num_bytes: *num_bytes,
            state: ReplicaState::Finalized,
            volume: volume.index,
        };
        found.push((*block_id, info, suspect));
    }
    for (block_id, metas) in &listing.metas {
        if !listing.blocks.contains_key(block_id) {
            for (meta_path, _) in metas {
                tracing::warn!(meta = %meta_path.display(), "meta file without a block file; ignored");
            }
        }
    }
    let rbw = volume.rbw_dir(pool_id);
    if let Ok(entries) = std::fs::read_dir(&rbw) {
        let count = entries.count();
        if count > 0 {
            tracing::info!(dir = %rbw.display(), files = count,
                "replicas left unfinished by an earlier run are kept in rbw/ for block recovery");
        }
    }
    Ok(found)
}

/// Whether a meta file is as long as a block of `block_len` bytes needs;
/// the reason when not.
pub(crate) fn check_meta(meta_path: &Path, block_len: u64) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(meta_path)
        .map_err(|e| format!("cannot open {}: {e}", meta_path.display()))?;
    let mut header = [0u8; META_HEADER_LEN];
    let read = file
        .read_at(&mut header, 0)
        .map_err(|e| format!("cannot read {}: {e}", meta_path.display()))?;
    let header = MetaHeader::decode(&header[..read]).map_err(|e| e.to_string())?;
    let actual = file
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", meta_path.display()))?
        .len();
    let expected = header.meta_file_len(block_len);
    if actual != expected {
        return Err(format!(
            "meta file has {actual} bytes; {expected} expected for a {block_len}-byte block"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(root: &Path) -> Dataset {
        let volumes = (0..2)
            .map(|i| Volume::open(i, &root.join(format!("v{i}")), 0).expect("volume"))
            .collect();
        let dataset = Dataset::new(volumes, 0, false);
        dataset
            .attach_pool("CID-1", "BP-1", 1, "uuid")
            .expect("pool");
        dataset
    }

    #[test]
    fn replicas_survive_a_restart_and_damage_is_found() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = dataset(tmp.path());
        let mut ids = Vec::new();
        for i in 0..4 {
            let block = ExtendedBlock {
                pool_id: "BP-1".into(),
                block_id: 1073741825 + i,
                generation_stamp: 1001,
                num_bytes: 0,
            };
            let mut writer = ds.create_rbw(&block, 512, 1024).expect("rbw");
            assert!(matches!(
                ds.create_rbw(&block, 512, 1024),
                Err(DatanodeError::ReplicaExists(..))
            ));
            let data = vec![i as u8; 1000];
            writer
                .write(&data, &rdfs_common::checksum::compute(&data, 512))
                .expect("write");
            ds.finalize(writer).expect("finalize");
            ids.push(block);
        }
        let report: usize = ds.block_report().iter().map(|s| s.replicas.len()).sum();
        assert_eq!(report, 4);
        let deleted = ds.invalidate(&ids[3..]);
        assert_eq!(deleted.len(), 1);
        // Damage one replica's meta file, then restart.
        let info = ds.replica(ids[0].block_id).expect("replica");
        let (_, meta) = ds.paths("BP-1", ids[0].block_id, &info);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&meta)
            .and_then(|f| f.set_len(9))
            .expect("truncate meta");
        drop(ds);
        let ds = Dataset::new(
            (0..2)
                .map(|i| Volume::open(i, &tmp.path().join(format!("v{i}")), 0).expect("volume"))
                .collect(),
            0,
            false,
        );
        let suspects = ds.attach_pool("CID-1", "BP-1", 1, "uuid").expect("pool");
        assert_eq!(suspects.len(), 1);
        assert_eq!(suspects[0].block.block_id, ids[0].block_id);
        let report: usize = ds.block_report().iter().map(|s| s.replicas.len()).sum();
        assert_eq!(report, 3);
        assert!(ds.open_for_read(&ids[1]).is_ok());
        assert!(matches!(
            ds.open_for_read(&ids[3]),
            Err(DatanodeError::ReplicaNotFound(_))
        ));
    }

    /// Makes a volume's `rbw/` a plain file: listing it and creating
    /// replicas in it fail, as on a dead disk (chmod would not stop root).
    fn break_volume(ds: &Dataset, index: usize) {
        let rbw = ds.volumes()[index].rbw_dir(crate::test_support::POOL);
        std::fs::remove_dir_all(&rbw).expect("remove rbw");
        std::fs::write(&rbw, b"not a directory").expect("file");
    }

    #[test]
    fn a_broken_volume_is_taken_out_of_service_and_its_replicas_reported_lost() {
        use crate::reports::ReplicaChange;
        use crate::test_support::{self, write_replica};
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = test_support::dataset(tmp.path(), 2).tolerating(1, Vec::new());
        let blocks: Vec<_> = (0..6).map(|i| write_replica(&ds, 100 + i, 1000)).collect();
        let on_broken: Vec<i64> = ds.finalized_on(1).into_iter().map(|(id, _)| id).collect();
        assert!(!on_broken.is_empty());
        let broken_storage = ds.volumes()[1].storage_id();
        break_volume(&ds, 1);

        // Volumes take turns while equally free: one of these lands on the
        // broken volume, fails, and has it checked.
        let attempts: Vec<_> = (0..2)
            .map(|i| ds.create_rbw(&test_support::block(200 + i), 512, 1 << 20))
            .collect();
        assert_eq!(attempts.iter().filter(|a| a.is_err()).count(), 1);
        for writer in attempts.into_iter().flatten() {
            ds.abort(writer);
        }
        assert!(ds.volumes()[1].is_failed());
        assert!(!ds.volumes()[0].is_failed());
        let failure = ds.volumes()[1].failure().expect("failure");
        assert!(failure.reason.contains("rbw"), "{}", failure.reason);

        let mut lost: Vec<_> = ds
            .reports()
            .take()
            .changes
            .into_iter()
            .map(|(block, storage, change)| {
                assert_eq!(
                    (storage.as_str(), change),
                    (broken_storage.as_str(), ReplicaChange::Deleted)
                );
                block.block_id
            })
            .collect();
        lost.sort();
        let mut expected = on_broken.clone();
        expected.sort();
        assert_eq!(lost, expected);
        assert!(ds.finalized_on(1).is_empty());
        assert_eq!(ds.volumes()[1].dfs_used(), 0);
        assert_eq!(ds.block_report()[1].replicas.len(), 0);
        for block in &blocks {
            assert_eq!(
                ds.open_for_read(block).is_ok(),
                !on_broken.contains(&block.block_id)
            );
        }
        // New replicas all go to the volume left.
        for i in 0..4 {
            let writer = ds
                .create_rbw(&test_support::block(300 + i), 512, 1 << 20)
                .expect("rbw");
            assert_eq!(writer.volume, 0);
            ds.abort(writer);
        }
        // One failure is tolerated.
        assert_eq!(ds.failed_volume_count(), 1);
        assert!(ds.volume_health().is_ok());
        assert!(futures::FutureExt::now_or_never(ds.volumes_lost()).is_none());

        // A second is not.
        break_volume(&ds, 0);
        assert!(!ds.check_volume(0, &"test"));
        let err = futures::FutureExt::now_or_never(ds.volumes_lost()).expect("volumes lost");
        let message = err.to_string();
        assert!(
            message.starts_with("too many failed volumes: 2 failed, 1 tolerated: "),
            "{message}"
        );
        for volume in ds.volumes() {
            assert!(
                message.contains(&volume.root.display().to_string()),
                "{message}"
            );
        }
        assert!(message.contains("rbw: not a directory"), "{message}");
        assert!(matches!(
            ds.create_rbw(&test_support::block(400), 512, 0),
            Err(DatanodeError::NoSpace { .. })
        ));
    }

    #[test]
    fn an_io_error_on_a_healthy_volume_keeps_it_and_a_failing_finalize_is_refused() {
        use crate::test_support;
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = test_support::dataset(tmp.path(), 1).tolerating(1, Vec::new());
        assert!(ds.check_volume(0, &"a read failed"));
        assert!(!ds.volumes()[0].is_failed());

        // The volume fails while a replica is being written: finalizing
        // it must not bring the replica back into the map.
        let block = test_support::block(9);
        let mut writer = ds.create_rbw(&block, 512, 1 << 20).expect("rbw");
        writer
            .write(&[1; 512], &rdfs_common::checksum::compute(&[1; 512], 512))
            .expect("write");
        ds.fail_volume(0, &"disk gone");
        assert!(matches!(
            ds.finalize(writer),
            Err(DatanodeError::VolumeFailed { .. })
        ));
        assert!(ds.replica(9).is_none());
        let err = ds.volume_health().expect_err("no volume left");
        assert_eq!(
            err.to_string(),
            format!(
                "no volume left in service: {} (disk gone)",
                ds.volumes()[0].root.display()
            )
        );
    }

    #[test]
    fn unopenable_data_dirs_count_against_the_tolerance() {
        use crate::volume::open_volumes;
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("file");
        let dirs = vec![tmp.path().join("good"), file.clone()];
        let (opened, failed) = open_volumes(&dirs, 0).expect("opens what it can");
        assert_eq!(opened.len(), 1);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].root, file);
        let err = Dataset::new(opened, 0, false)
            .tolerating(0, failed.clone())
            .volume_health()
            .expect_err("none tolerated");
        assert!(
            err.to_string().starts_with(&format!(
                "too many failed volumes: 1 failed, 0 tolerated: {} (",
                file.display()
            )),
            "{err}"
        );
        let (opened, _) = open_volumes(&dirs[..1], 0).expect("reopens");
        let ds = Dataset::new(opened, 0, false).tolerating(1, failed.clone());
        assert!(ds.volume_health().is_ok());
        assert_eq!(ds.failed_volume_count(), 1);
        // Another datanode's lock is a mistake to stop on, not a failure.
        assert!(matches!(
            open_volumes(&dirs, 0),
            Err(DatanodeError::VolumeLocked(_))
        ));
        let err = Dataset::new(Vec::new(), 0, false)
            .tolerating(5, failed)
            .volume_health()
            .expect_err("nothing left");
        assert!(matches!(err, DatanodeError::NoVolumeLeft { .. }));
    }
}
