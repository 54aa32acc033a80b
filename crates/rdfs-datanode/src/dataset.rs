//! The replicas this datanode holds, across all its volumes (HDFS's
//! `FsDataset`): where each one lives, in which state, and the operations
//! that create, reopen, finalize, recover, read and delete them. It also
//! takes a volume out of service when an I/O error turns out to be a failed
//! disk, and tells the namenode what was lost with it.
//!
//! A replica is finalized (complete, in `finalized/`), being written (RBW,
//! in `rbw/`, perhaps without a writer after a failed session), waiting for
//! recovery (RWR: found unfinished at start-up) or under recovery (RUR).
//! A write session holds a [`WriterLease`] on its replica; whoever must
//! take the replica from it (a recovery, a deletion) cancels the lease and
//! waits until the session has let go of the files.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use rdfs_common::checksum::{DataChecksum, META_HEADER_LEN, MetaHeader};
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

/// How long taking a replica from its writer waits for the write session
/// to let go of the files.
pub const WRITER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    Finalized,
    /// Being written, or left by a write session that failed.
    Rbw,
    /// Found unfinalized at start-up: waits for recovery.
    Rwr,
    /// Under block recovery.
    Rur,
}

impl ReplicaState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Finalized => "FINALIZED",
            Self::Rbw => "RBW",
            Self::Rwr => "RWR",
            Self::Rur => "RUR",
        }
    }
}

/// What a replica under recovery is held by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub id: u64,
    /// The state the replica had when the recovery began.
    pub from: ReplicaState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub generation_stamp: u64,
    /// Bytes on disk that the stored checksums cover.
    pub num_bytes: u64,
    pub state: ReplicaState,
    pub volume: usize,
    /// Being written: the bytes every datanode of the pipeline from here
    /// on acknowledged, which readers may see (the visible length).
    pub acked: u64,
    /// Under recovery: by which recovery, and from which state.
    pub recovery: Option<Recovery>,
}

impl ReplicaInfo {
    pub fn finalized(generation_stamp: u64, num_bytes: u64, volume: usize) -> Self {
        Self {
            generation_stamp,
            num_bytes,
            state: ReplicaState::Finalized,
            volume,
            acked: num_bytes,
            recovery: None,
        }
    }

    fn unfinalized(
        state: ReplicaState,
        generation_stamp: u64,
        num_bytes: u64,
        volume: usize,
    ) -> Self {
        Self {
            state,
            ..Self::finalized(generation_stamp, num_bytes, volume)
        }
    }

    /// Whether the files lie in `finalized/` (else in `rbw/`).
    fn in_finalized_dir(&self) -> bool {
        self.state == ReplicaState::Finalized
            || self
                .recovery
                .is_some_and(|r| r.from == ReplicaState::Finalized)
    }
}

/// A replica's state as block recovery reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryInfo {
    pub state: ReplicaState,
    pub generation_stamp: u64,
    pub num_bytes: u64,
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

/// Set once a write session has let go of its replica's files.
#[derive(Debug, Default)]
struct Released {
    done: std::sync::Mutex<bool>,
    cond: Condvar,
}

impl Released {
    fn is_done(&self) -> bool {
        *self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }

    /// True once released, false when `wait` passed first.
    fn wait(&self, wait: Duration) -> bool {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let (done, _) = self
            .cond
            .wait_timeout_while(done, wait, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        *done
    }
}

/// The dataset's record of a write session holding a replica.
#[derive(Debug)]
struct Writer {
    session: u64,
    cancel: CancellationToken,
    released: Arc<Released>,
}

/// A write session's hold on its replica. Cancelled when a recovery or a
/// deletion takes the replica; dropped (after the dataset recorded what
/// the session left) when the session lets go of the files.
#[derive(Debug)]
pub struct WriterLease {
    session: u64,
    cancel: CancellationToken,
    released: Arc<Released>,
}

impl WriterLease {
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Cancelled when the replica is taken from this session.
    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

impl Drop for WriterLease {
    fn drop(&mut self) {
        self.released.set();
    }
}

/// The replica map and what must change with it under the same lock.
#[derive(Debug, Default)]
struct ReplicaMap {
    replicas: HashMap<i64, ReplicaInfo>,
    /// The write sessions holding replicas.
    writers: HashMap<i64, Writer>,
    /// The session that last released each replica it left unfinalized,
    /// until another session takes it: that session's responder may still
    /// be acknowledging packets the writer stored before it gave up.
    released_sessions: HashMap<i64, u64>,
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
        self.released_sessions.remove(&block_id);
        self.replicas.remove(&block_id)
    }

    /// The session still writing `block_id`, if any.
    fn live_writer(&self, block_id: i64) -> Option<&Writer> {
        self.writers
            .get(&block_id)
            .filter(|w| !w.released.is_done())
    }

    fn is_writer(&self, block_id: i64, session: u64) -> bool {
        self.live_writer(block_id)
            .is_some_and(|w| w.session == session)
    }

    fn lease(&mut self, block_id: i64) -> WriterLease {
        self.released_sessions.remove(&block_id);
        static SESSIONS: AtomicU64 = AtomicU64::new(1);
        let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        let released = Arc::new(Released::default());
        self.writers.insert(
            block_id,
            Writer {
                session,
                cancel: cancel.clone(),
                released: Arc::clone(&released),
            },
        );
        WriterLease {
            session,
            cancel,
            released,
        }
    }

    /// Forgets `session`'s hold on `block_id` (if it still has it).
    fn end_session(&mut self, block_id: i64, session: u64) {
        if self
            .writers
            .get(&block_id)
            .is_some_and(|w| w.session == session)
        {
            self.writers.remove(&block_id);
        }
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
    /// directory scanner are reported; each namenode's link drains its
    /// own copy.
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

    /// Where this dataset's reports go, to be fanned out to every namenode;
    /// the daemon's [`crate::context::DatanodeContext`] must share it.
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
                    Some(older) if older.state == ReplicaState::Finalized => {
                        self.volumes[older.volume].sub_used(older.num_bytes);
                    }
                    _ => {}
                }
                if info.state == ReplicaState::Finalized {
                    volume.add_used(info.num_bytes);
                }
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
    /// `expected_len` bytes. With `replace_older` (a copy from another
    /// datanode), a replica of the block with an older generation stamp, or
    /// an unfinalized one at the same stamp, is deleted first; otherwise any existing replica is an error. Blocking.
    pub fn create_rbw(
        &self,
        block: &ExtendedBlock,
        checksum: DataChecksum,
        expected_len: u64,
        replace_older: bool,
    ) -> Result<ReplicaWriter, DatanodeError> {
        let pool_id = self.pool_id()?.to_string();
        // An unfinalized replica at the same stamp is what a copy that
        // failed part-way leaves: the next attempt starts over.
        if replace_older
            && let Some(existing) = self.replica(block.block_id)
            && (existing.generation_stamp < block.generation_stamp
                || (existing.generation_stamp == block.generation_stamp
                    && existing.state != ReplicaState::Finalized))
        {
            tracing::info!(block = %block, state = existing.state.name(), gs = existing.generation_stamp,
                "replacing an older replica of the block");
            let old = ExtendedBlock {
                generation_stamp: existing.generation_stamp,
                ..block.clone()
            };
            self.invalidate(std::slice::from_ref(&old));
        }
        let volume = self.choose_volume(expected_len)?;
        let lease = {
            let mut map = self.replicas.lock();
            if let Some(existing) = map.get(block.block_id) {
                return Err(DatanodeError::ReplicaExists(
                    format!(
                        "{} (local generation stamp {})",
                        block.name(),
                        existing.generation_stamp
                    ),
                    existing.state.name(),
                ));
            }
            map.insert(
                block.block_id,
                ReplicaInfo::unfinalized(ReplicaState::Rbw, block.generation_stamp, 0, volume),
            );
            map.lease(block.block_id)
        };
        let created = ReplicaWriter::create(
            block.name(),
            volume,
            &self.volumes[volume].rbw_dir(&pool_id),
            checksum,
            self.sync_behind,
        );
        match created {
            Ok(mut writer) => {
                writer.lease = Some(lease);
                Ok(writer)
            }
            Err(err) => {
                {
                    let mut map = self.replicas.lock();
                    map.end_session(block.block_id, lease.session);
                    map.remove(block.block_id);
                }
                if !is_already_exists(&err) {
                    self.check_volume(volume, &err);
                }
                Err(err)
            }
        }
    }

    /// Reopens the finalized replica `block` (same generation stamp and
    /// length) for an append under `new_gs`: it moves back to `rbw/` and
    /// packets continue at its length. Blocking.
    pub fn append(
        &self,
        block: &ExtendedBlock,
        new_gs: u64,
    ) -> Result<ReplicaWriter, DatanodeError> {
        let pool_id = self.pool_id()?.to_string();
        let mut map = self.replicas.lock();
        let info = *map
            .get(block.block_id)
            .ok_or_else(|| DatanodeError::ReplicaNotFound(block.to_string()))?;
        if info.state != ReplicaState::Finalized {
            return Err(DatanodeError::InvalidRequest(format!(
                "cannot append to {block}: the replica is {}, not FINALIZED",
                info.state.name()
            )));
        }
        if info.generation_stamp != block.generation_stamp {
            return Err(DatanodeError::StaleGenerationStamp(format!(
                "cannot append to {block}: the replica has generation stamp {}",
                info.generation_stamp
            )));
        }
        if info.num_bytes != block.num_bytes {
            return Err(DatanodeError::InvalidRequest(format!(
                "cannot append to {block}: the replica has {} bytes, the request says {}",
                info.num_bytes, block.num_bytes
            )));
        }
        if new_gs <= info.generation_stamp {
            return Err(DatanodeError::StaleGenerationStamp(format!(
                "cannot append to {block}: new generation stamp {new_gs} is not newer than the replica's {}",
                info.generation_stamp
            )));
        }
        let length = info.num_bytes;
        let (block_path, meta_path) =
            self.move_to_rbw(&mut map, &pool_id, block.block_id, &info, new_gs, length)?;
        let lease = map.lease(block.block_id);
        drop(map);
        self.open_writer(
            block.block_id,
            new_gs,
            info.volume,
            &block_path,
            &meta_path,
            length,
            lease,
        )
    }

    /// Takes a replica back for the writer's pipeline recovery: stops any
    /// session still writing it, checks it is not older than `block` and
    /// holds at least `min_bytes`, gives it `new_gs` and cuts it to
    /// `min_bytes`, where the writer resends from. Blocking.
    pub fn recover_rbw(
        &self,
        block: &ExtendedBlock,
        new_gs: u64,
        min_bytes: u64,
    ) -> Result<ReplicaWriter, DatanodeError> {
        let pool_id = self.pool_id()?.to_string();
        self.stop_writer(block.block_id, WRITER_STOP_TIMEOUT)?;
        let mut map = self.replicas.lock();
        let info = *map
            .get(block.block_id)
            .ok_or_else(|| DatanodeError::ReplicaNotFound(block.to_string()))?;
        if map.live_writer(block.block_id).is_some() {
            return Err(DatanodeError::InvalidRequest(format!(
                "{block} was taken by another writer meanwhile"
            )));
        }
        if info.state == ReplicaState::Rur {
            return Err(DatanodeError::RecoveryInProgress(format!(
                "{block} is under block recovery {}",
                info.recovery.map(|r| r.id).unwrap_or_default()
            )));
        }
        if info.generation_stamp < block.generation_stamp {
            return Err(DatanodeError::StaleGenerationStamp(format!(
                "the replica of {block} has the older generation stamp {}",
                info.generation_stamp
            )));
        }
        if new_gs < info.generation_stamp {
            return Err(DatanodeError::StaleGenerationStamp(format!(
                "recovery of {block} to generation stamp {new_gs}, but the replica already has {}",
                info.generation_stamp
            )));
        }
        if info.num_bytes < min_bytes {
            return Err(DatanodeError::InvalidRequest(format!(
                "the replica of {block} has {} bytes, fewer than the {min_bytes} acknowledged",
                info.num_bytes
            )));
        }
        let (block_path, meta_path) =
            self.move_to_rbw(&mut map, &pool_id, block.block_id, &info, new_gs, min_bytes)?;
        let lease = map.lease(block.block_id);
        drop(map);
        tracing::info!(block = %block, new_gs, from = info.state.name(), bytes = info.num_bytes, resume_at = min_bytes,
            "replica taken for pipeline recovery");
        self.open_writer(
            block.block_id,
            new_gs,
            info.volume,
            &block_path,
            &meta_path,
            min_bytes,
            lease,
        )
    }

    /// Moves a replica's files into `rbw/` (if not there) with its meta
    /// file named for `new_gs`, and records it as RBW at `length`. Under
    /// the map lock.
    fn move_to_rbw(
        &self,
        map: &mut ReplicaMap,
        pool_id: &str,
        block_id: i64,
        info: &ReplicaInfo,
        new_gs: u64,
        length: u64,
    ) -> Result<(PathBuf, PathBuf), DatanodeError> {
        let (block_path, meta_path) = self.paths(pool_id, block_id, info);
        let rbw = self.volumes[info.volume].rbw_dir(pool_id);
        let block_dest = rbw.join(block_file_name(block_id));
        let meta_dest = rbw.join(meta_file_name(block_id, new_gs));
        let moved = std::fs::rename(&meta_path, &meta_dest)
            .map_err(|source| DatanodeError::Io {
                path: meta_path.clone(),
                source,
            })
            .and_then(|()| {
                std::fs::rename(&block_path, &block_dest).map_err(|source| {
                    let _ = std::fs::rename(&meta_dest, &meta_path);
                    DatanodeError::Io {
                        path: block_path.clone(),
                        source,
                    }
                })
            });
        if let Err(err) = moved {
            tracing::warn!(block_id, error = %err, "cannot move the replica to rbw/");
            return Err(err);
        }
        if info.state == ReplicaState::Finalized {
            self.volumes[info.volume].sub_used(info.num_bytes);
        }
        map.insert(
            block_id,
            ReplicaInfo::unfinalized(ReplicaState::Rbw, new_gs, length, info.volume),
        );
        Ok((block_dest, meta_dest))
    }

    /// Opens a writer over files just taken under `lease`; on failure the
    /// replica stays in the map without a writer.
    #[allow(clippy::too_many_arguments)]
    fn open_writer(
        &self,
        block_id: i64,
        generation_stamp: u64,
        volume: usize,
        block_path: &Path,
        meta_path: &Path,
        length: u64,
        lease: WriterLease,
    ) -> Result<ReplicaWriter, DatanodeError> {
        let name = BlockName {
            block_id,
            generation_stamp,
        };
        match ReplicaWriter::open(
            name,
            volume,
            block_path,
            meta_path,
            length,
            self.sync_behind,
        ) {
            Ok(mut writer) => {
                writer.lease = Some(lease);
                Ok(writer)
            }
            Err(err) => {
                self.replicas.lock().end_session(block_id, lease.session);
                drop(lease);
                if matches!(err, DatanodeError::Io { .. }) {
                    self.check_volume(volume, &err);
                }
                Err(err)
            }
        }
    }

    /// Cancels the session writing `block_id`, if any, and waits until it
    /// has let go of the replica's files. Blocking.
    pub fn stop_writer(&self, block_id: i64, wait: Duration) -> Result<(), DatanodeError> {
        let released = {
            let map = self.replicas.lock();
            let Some(writer) = map.live_writer(block_id) else {
                return Ok(());
            };
            tracing::info!(
                block_id,
                session = writer.session,
                "stopping the replica's writer"
            );
            writer.cancel.cancel();
            Arc::clone(&writer.released)
        };
        if released.wait(wait) {
            Ok(())
        } else {
            Err(DatanodeError::InvalidRequest(format!(
                "the writer of block {block_id} did not stop within {wait:?}"
            )))
        }
    }

    /// Moves a complete replica to `finalized/` (durably, per config) and
    /// records it. Blocking.
    pub fn finalize(&self, mut writer: ReplicaWriter) -> Result<ReplicaInfo, DatanodeError> {
        let lease = writer.lease.take();
        let pool_id = self.pool_id()?.to_string();
        let name = writer.name;
        let volume = writer.volume;
        let dir = self.volumes[volume].finalized_dir(&pool_id, name.block_id);
        let result = writer.finalize(&dir, self.sync_on_close);
        let mut map = self.replicas.lock();
        if let Some(lease) = &lease {
            map.end_session(name.block_id, lease.session);
        }
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
                let info = ReplicaInfo::finalized(name.generation_stamp, num_bytes, volume);
                map.insert(name.block_id, info);
                self.volumes[volume].add_used(num_bytes);
                Ok(info)
            }
            Err(err) => {
                // The files may be half moved: nothing to serve any more.
                map.remove(name.block_id);
                drop(map);
                self.check_volume(volume, &err);
                Err(err)
            }
        }
    }

    /// Ends a write session without finalizing: the replica stays RBW at
    /// the bytes written, for pipeline or block recovery. `acked` sets its
    /// visible length (a copy whose sender holds the bytes acknowledged).
    /// Blocking.
    pub fn release(&self, mut writer: ReplicaWriter, acked: Option<u64>) {
        let lease = writer.lease.take();
        let block_id = writer.name.block_id;
        let written = writer.written();
        let write_failed = writer.had_io_error();
        drop(writer);
        {
            let mut map = self.replicas.lock();
            let ours = lease
                .as_ref()
                .is_some_and(|l| map.is_writer(block_id, l.session));
            if let Some(lease) = &lease {
                map.end_session(block_id, lease.session);
            }
            if ours
                && let Some(info) = map.replicas.get_mut(&block_id)
                && info.state == ReplicaState::Rbw
            {
                info.num_bytes = written;
                info.acked = acked.unwrap_or(info.acked).min(written);
                if let Some(lease) = &lease {
                    map.released_sessions.insert(block_id, lease.session);
                }
            }
        }
        drop(lease);
        if write_failed && let Some(info) = self.replica(block_id) {
            self.check_volume(info.volume, &"a replica write failed");
        }
    }

    /// Deletes a new replica whose write session could not even start.
    /// Blocking.
    pub fn abort(&self, mut writer: ReplicaWriter) {
        let lease = writer.lease.take();
        let block_id = writer.name.block_id;
        let volume = writer.volume;
        let write_failed = writer.had_io_error();
        writer.abort();
        {
            let mut map = self.replicas.lock();
            if let Some(lease) = &lease {
                map.end_session(block_id, lease.session);
            }
            if map
                .get(block_id)
                .is_some_and(|r| r.state == ReplicaState::Rbw)
            {
                map.remove(block_id);
            }
        }
        drop(lease);
        if write_failed {
            self.check_volume(volume, &"a replica write failed");
        }
    }

    /// Records that every datanode from here on holds the replica up to
    /// `end` (an acknowledged packet), if `session` still writes it.
    pub fn set_acked(&self, block_id: i64, session: u64, end: u64) {
        let mut map = self.replicas.lock();
        // The writer thread may have released the replica (a later packet
        // was bad) before the responder acknowledged the earlier ones; what
        // it stored and the pipeline acknowledged still counts.
        let released = map.released_sessions.get(&block_id) == Some(&session);
        if !map.is_writer(block_id, session) && !released {
            return;
        }
        if let Some(info) = map.replicas.get_mut(&block_id)
            && info.state == ReplicaState::Rbw
        {
            if released {
                info.acked = info.acked.max(end.min(info.num_bytes));
            } else {
                info.acked = info.acked.max(end);
                info.num_bytes = info.num_bytes.max(end);
            }
        }
    }

    fn paths(&self, pool_id: &str, block_id: i64, info: &ReplicaInfo) -> (PathBuf, PathBuf) {
        let volume = &self.volumes[info.volume];
        let dir = if info.in_finalized_dir() {
            volume.finalized_dir(pool_id, block_id)
        } else {
            volume.rbw_dir(pool_id)
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

    /// Whether a write session holds the replica.
    pub fn has_writer(&self, block_id: i64) -> bool {
        self.replicas.lock().live_writer(block_id).is_some()
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

    /// A replica readers may see, with a generation stamp at least the
    /// requested one (a reader's locations may be stale, never ahead):
    /// finalized, or being written (up to what was acknowledged).
    fn readable(&self, block: &ExtendedBlock) -> Result<ReplicaInfo, DatanodeError> {
        let info = self
            .replica(block.block_id)
            .ok_or_else(|| DatanodeError::ReplicaNotFound(block.to_string()))?;
        if info.generation_stamp < block.generation_stamp {
            return Err(DatanodeError::ReplicaNotFound(format!(
                "{block} (this datanode holds generation stamp {})",
                info.generation_stamp
            )));
        }
        match info.state {
            ReplicaState::Finalized | ReplicaState::Rbw => Ok(info),
            state => Err(DatanodeError::InvalidRequest(format!(
                "the replica of {block} is {}, which cannot be read",
                state.name()
            ))),
        }
    }

    /// The bytes of a replica readers may see (HDFS's
    /// `getReplicaVisibleLength`).
    pub fn visible_length(&self, block: &ExtendedBlock) -> Result<u64, DatanodeError> {
        let info = self.readable(block)?;
        Ok(match info.state {
            ReplicaState::Finalized => info.num_bytes,
            _ => info.acked,
        })
    }

    /// Opens a replica for reading: a finalized one whole, one being
    /// written up to its visible length. Blocking.
    pub fn open_for_read(&self, block: &ExtendedBlock) -> Result<ReplicaReader, DatanodeError> {
        let info = self.readable(block)?;
        let length = match info.state {
            ReplicaState::Finalized => info.num_bytes,
            _ => info.acked,
        };
        self.open_reader(block.block_id, &info, length)
    }

    /// Opens the first `length` bytes of a replica to copy them to a
    /// datanode joining its pipeline: finalized or being written, and
    /// holding that many bytes. Blocking.
    pub fn open_for_transfer(
        &self,
        block: &ExtendedBlock,
        length: u64,
    ) -> Result<ReplicaReader, DatanodeError> {
        let info = self.readable(block)?;
        let held = info.num_bytes.max(info.acked);
        if held < length {
            return Err(DatanodeError::InvalidRequest(format!(
                "cannot copy {length} bytes of {block}: the replica holds {held}"
            )));
        }
        self.open_reader(block.block_id, &info, length)
    }

    fn open_reader(
        &self,
        block_id: i64,
        info: &ReplicaInfo,
        length: u64,
    ) -> Result<ReplicaReader, DatanodeError> {
        let pool_id = self.pool_id()?.to_string();
        let (block_path, meta_path) = self.paths(&pool_id, block_id, info);
        let opened = ReplicaReader::open(
            BlockName {
                block_id,
                generation_stamp: info.generation_stamp,
            },
            &block_path,
            &meta_path,
            length,
        );
        if let Err(err) = &opened
            && !matches!(err, DatanodeError::CorruptReplica { .. })
        {
            self.check_volume(info.volume, err);
        }
        let partial = info.state != ReplicaState::Finalized || length < info.num_bytes;
        opened.map(|reader| {
            if partial {
                reader.still_written()
            } else {
                reader
            }
        })
    }

    /// Puts a replica under block recovery `recovery_id` (HDFS's
    /// `initReplicaRecovery`): stops its writer, and answers the state,
    /// generation stamp and length it had. Blocking.
    pub fn init_replica_recovery(
        &self,
        block: &ExtendedBlock,
        recovery_id: u64,
    ) -> Result<RecoveryInfo, DatanodeError> {
        self.stop_writer(block.block_id, WRITER_STOP_TIMEOUT)?;
        let mut map = self.replicas.lock();
        let info = *map
            .get(block.block_id)
            .ok_or_else(|| DatanodeError::ReplicaNotFound(block.to_string()))?;
        if map.live_writer(block.block_id).is_some() {
            return Err(DatanodeError::RecoveryInProgress(format!(
                "{block} was taken by a new writer during recovery {recovery_id}"
            )));
        }
        if info.generation_stamp < block.generation_stamp {
            return Err(DatanodeError::StaleGenerationStamp(format!(
                "replica is older than the block: {block} has generation stamp {} here",
                info.generation_stamp
            )));
        }
        let from = match info.recovery {
            Some(current) if current.id >= recovery_id => {
                return Err(DatanodeError::RecoveryInProgress(format!(
                    "{block} is already under recovery {}, not older than recovery {recovery_id}",
                    current.id
                )));
            }
            Some(current) => current.from,
            None => info.state,
        };
        if info.state == ReplicaState::Finalized {
            self.volumes[info.volume].sub_used(info.num_bytes);
        }
        let rur = ReplicaInfo {
            state: ReplicaState::Rur,
            recovery: Some(Recovery {
                id: recovery_id,
                from,
            }),
            ..info
        };
        map.insert(block.block_id, rur);
        tracing::info!(block = %block, recovery_id, state = from.name(), gs = info.generation_stamp,
            bytes = info.num_bytes, "replica under recovery");
        Ok(RecoveryInfo {
            state: from,
            generation_stamp: info.generation_stamp,
            num_bytes: info.num_bytes,
        })
    }

    /// Settles a replica under recovery `recovery_id` (HDFS's
    /// `updateReplicaUnderRecovery`): cut to `new_length`, generation stamp
    /// `recovery_id`, finalized and reported received. Returns its storage
    /// id. Blocking.
    pub fn update_replica_under_recovery(
        &self,
        block: &ExtendedBlock,
        recovery_id: u64,
        new_length: u64,
    ) -> Result<String, DatanodeError> {
        let pool_id = self.pool_id()?.to_string();
        let info = {
            let map = self.replicas.lock();
            let info = *map
                .get(block.block_id)
                .ok_or_else(|| DatanodeError::ReplicaNotFound(block.to_string()))?;
            match info.recovery {
                Some(r) if r.id == recovery_id && info.state == ReplicaState::Rur => {}
                Some(r) => {
                    return Err(DatanodeError::RecoveryInProgress(format!(
                        "{block} is under recovery {}, not {recovery_id}",
                        r.id
                    )));
                }
                None => {
                    return Err(DatanodeError::InvalidRequest(format!(
                        "{block} is {}, not under recovery {recovery_id}",
                        info.state.name()
                    )));
                }
            }
            if info.num_bytes < new_length {
                return Err(DatanodeError::InvalidRequest(format!(
                    "cannot recover {block} to {new_length} bytes: the replica has {}",
                    info.num_bytes
                )));
            }
            info
        };
        let (block_path, meta_path) = self.paths(&pool_id, block.block_id, &info);
        let name = BlockName {
            block_id: block.block_id,
            generation_stamp: recovery_id,
        };
        let writer = ReplicaWriter::open(name, info.volume, &block_path, &meta_path, new_length, 0);
        let writer = match writer {
            Ok(writer) => writer,
            Err(err) => {
                if matches!(err, DatanodeError::Io { .. }) {
                    self.check_volume(info.volume, &err);
                }
                return Err(err);
            }
        };
        let finalized = self.finalize(writer)?;
        let storage_id = self.storage_id_of(&finalized);
        let recovered = self.extended(&pool_id, block.block_id, &finalized);
        tracing::info!(block = %recovered, recovery_id, bytes = new_length, "replica recovered and finalized");
        self.reports
            .replica_changed(recovered, storage_id.clone(), ReplicaChange::Received);
        Ok(storage_id)
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

    /// Deletes the replicas the namenode no longer wants: each only if its
    /// generation stamp is the one ordered (a newer replica is kept), after
    /// stopping its writer. Returns the ones deleted with their storage
    /// ids. Blocking.
    pub fn invalidate(&self, blocks: &[ExtendedBlock]) -> Vec<(ExtendedBlock, String)> {
        let Ok(pool_id) = self.pool_id().map(str::to_string) else {
            return Vec::new();
        };
        let mut deleted = Vec::new();
        for block in blocks {
            if self
                .replica(block.block_id)
                .is_some_and(|r| r.generation_stamp == block.generation_stamp)
                && let Err(err) = self.stop_writer(block.block_id, WRITER_STOP_TIMEOUT)
            {
                tracing::warn!(block = %block, error = %err, "not deleting replica: its writer did not stop");
                continue;
            }
            let info = {
                let mut map = self.replicas.lock();
                match map.get(block.block_id).copied() {
                    Some(info)
                        if info.generation_stamp == block.generation_stamp
                            && map.live_writer(block.block_id).is_none() =>
                    {
                        map.remove(block.block_id);
                        map.deleting.insert(block.block_id);
                        info
                    }
                    Some(info) => {
                        tracing::info!(block = %block, state = info.state.name(), gs = info.generation_stamp,
                            "not deleting replica: its generation stamp is not the one the namenode asked to delete");
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
            if info.state == ReplicaState::Finalized {
                self.volumes[info.volume].sub_used(info.num_bytes);
            }
            deleted.push((
                ExtendedBlock {
                    num_bytes: info.num_bytes,
                    ..block.clone()
                },
                self.volumes[info.volume].storage_id(),
            ));
        }
        if !deleted.is_empty() {
            tracing::info!(
                count = deleted.len(),
                "deleted replicas the namenode invalidated"
            );
        }
        deleted
    }

    /// Every replica in every state, grouped by volume.
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
            per_volume[info.volume].replicas.push((*block_id, *info));
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

/// Finds the replicas of a volume: the finalized ones, each with a reason
/// when its meta file does not fit its block file (a corrupt replica), and
/// those an earlier run left in `rbw/`, loaded as RWR at the length their
/// checksums vouch for (a torn tail is cut off, on disk too).
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
        let info = ReplicaInfo::finalized(generation_stamp, *num_bytes, volume.index);
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
    for (block_id, generation_stamp) in list_rbw(&rbw)? {
        let block_path = rbw.join(block_file_name(block_id));
        let meta_path = rbw.join(meta_file_name(block_id, generation_stamp));
        let length = match crate::replica::verified_length(&block_path, &meta_path) {
            Ok(length) => length,
            Err(reason) => {
                tracing::warn!(block = %block_path.display(), reason, "unfinished replica unreadable; ignored");
                continue;
            }
        };
        // Cut both files to what the checksums vouch for.
        let name = BlockName {
            block_id,
            generation_stamp,
        };
        if let Err(err) =
            ReplicaWriter::open(name, volume.index, &block_path, &meta_path, length, 0)
        {
            tracing::warn!(block = %block_path.display(), error = %err, "cannot trim unfinished replica; ignored");
            continue;
        }
        tracing::info!(block = %block_path.display(), gs = generation_stamp, bytes = length,
            "unfinished replica from an earlier run kept for block recovery (RWR)");
        found.push((
            block_id,
            ReplicaInfo::unfinalized(ReplicaState::Rwr, generation_stamp, length, volume.index),
            None,
        ));
    }
    Ok(found)
}

/// The replicas in an `rbw/` directory that have both files: block id and
/// the newest generation stamp among its meta files.
fn list_rbw(rbw: &Path) -> Result<Vec<(i64, u64)>, DatanodeError> {
    let entries = match std::fs::read_dir(rbw) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(DatanodeError::Io {
                path: rbw.to_path_buf(),
                source,
            });
        }
    };
    let mut blocks = HashSet::new();
    let mut metas: HashMap<i64, u64> = HashMap::new();
    for entry in entries {
        let entry = entry.map_err(|source| DatanodeError::Io {
            path: rbw.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("blk_") else {
            continue;
        };
        if let Some(stem) = rest.strip_suffix(".meta") {
            if let Some((id, gs)) = stem.split_once('_')
                && let (Ok(id), Ok(gs)) = (id.parse::<i64>(), gs.parse::<u64>())
            {
                let newest = metas.entry(id).or_insert(gs);
                *newest = (*newest).max(gs);
            }
        } else if let Ok(id) = rest.parse::<i64>() {
            blocks.insert(id);
        }
    }
    let mut found: Vec<(i64, u64)> = metas
        .into_iter()
        .filter(|(id, _)| blocks.contains(id))
        .collect();
    found.sort_unstable();
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
            let mut writer = ds
                .create_rbw(&block, crate::test_support::CRC32C_512, 1024, false)
                .expect("rbw");
            assert!(matches!(
                ds.create_rbw(&block, crate::test_support::CRC32C_512, 1024, false),
                Err(DatanodeError::ReplicaExists(..))
            ));
            let data = vec![i as u8; 1000];
            writer
                .write(&data, &crate::test_support::CRC32C_512.compute(&data))
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
        let reported = ds.reports().subscribe("nn");
        let blocks: Vec<_> = (0..6).map(|i| write_replica(&ds, 100 + i, 1000)).collect();
        let on_broken: Vec<i64> = ds.finalized_on(1).into_iter().map(|(id, _)| id).collect();
        assert!(!on_broken.is_empty());
        let broken_storage = ds.volumes()[1].storage_id();
        break_volume(&ds, 1);

        // Volumes take turns while equally free: one of these lands on the
        // broken volume, fails, and has it checked.
        let attempts: Vec<_> = (0..2)
            .map(|i| {
                ds.create_rbw(
                    &test_support::block(200 + i),
                    crate::test_support::CRC32C_512,
                    1 << 20,
                    false,
                )
            })
            .collect();
        assert_eq!(attempts.iter().filter(|a| a.is_err()).count(), 1);
        for writer in attempts.into_iter().flatten() {
            ds.abort(writer);
        }
        assert!(ds.volumes()[1].is_failed());
        assert!(!ds.volumes()[0].is_failed());
        let failure = ds.volumes()[1].failure().expect("failure");
        assert!(failure.reason.contains("rbw"), "{}", failure.reason);

        let mut lost: Vec<_> = reported
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
                .create_rbw(
                    &test_support::block(300 + i),
                    crate::test_support::CRC32C_512,
                    1 << 20,
                    false,
                )
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
            ds.create_rbw(
                &test_support::block(400),
                crate::test_support::CRC32C_512,
                0,
                false
            ),
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
        let mut writer = ds
            .create_rbw(&block, crate::test_support::CRC32C_512, 1 << 20, false)
            .expect("rbw");
        writer
            .write(
                &[1; 512],
                &crate::test_support::CRC32C_512.compute(&[1; 512]),
            )
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

    fn write(writer: &mut ReplicaWriter, data: &[u8]) {
        let sums = crate::replica::packet_checksums(data, writer.written(), 512);
        writer.write(data, &sums).expect("write");
    }

    fn read_all(ds: &Dataset, block: &ExtendedBlock) -> Vec<u8> {
        let reader = ds.open_for_read(block).expect("open");
        let len = reader.length as usize;
        let (data, sums) = reader.read(0, len).expect("read");
        crate::test_support::CRC32C_512
            .verify_at(&data, &sums, 0)
            .expect("checksums match");
        data.to_vec()
    }

    fn restart(root: &Path) -> Dataset {
        let volumes = (0..1)
            .map(|i| Volume::open(i, &root.join(format!("v{i}")), 0).expect("volume"))
            .collect();
        let ds = Dataset::new(volumes, 0, false);
        ds.attach_pool("CID-1", crate::test_support::POOL, 1, "uuid")
            .expect("pool");
        ds
    }

    #[test]
    fn unfinished_replicas_come_back_as_rwr_without_their_torn_tail() {
        use crate::test_support;
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = test_support::dataset(tmp.path(), 1);
        let data = test_support::data(1, 1500);
        for id in [1, 2] {
            let mut writer = ds
                .create_rbw(
                    &test_support::block(id),
                    crate::test_support::CRC32C_512,
                    0,
                    false,
                )
                .expect("rbw");
            write(&mut writer, &data);
            ds.release(writer, None);
            assert_eq!(ds.replica(id).expect("kept").state, ReplicaState::Rbw);
        }
        // Block 2 got bytes on disk without their checksum (a crash).
        let (block_path, meta_path) = test_support::files(&ds, 2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&block_path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &[0xff; 100]))
            .expect("torn write");
        drop(ds);
        let ds = restart(tmp.path());
        let one = ds.replica(1).expect("rwr");
        assert_eq!((one.state, one.num_bytes), (ReplicaState::Rwr, 1500));
        let two = ds.replica(2).expect("rwr");
        assert_eq!((two.state, two.num_bytes), (ReplicaState::Rwr, 1024));
        assert_eq!(std::fs::metadata(&block_path).expect("block").len(), 1024);
        assert_eq!(
            std::fs::metadata(&meta_path).expect("meta").len(),
            MetaHeader::new(crate::test_support::CRC32C_512).meta_file_len(1024)
        );
        let reported: Vec<ReplicaState> = ds.block_report()[0]
            .replicas
            .iter()
            .map(|(_, info)| info.state)
            .collect();
        assert_eq!(reported, vec![ReplicaState::Rwr; 2]);
        assert_eq!(ds.volumes()[0].dfs_used(), 0);
        // Not readable until recovered.
        assert!(ds.open_for_read(&test_support::block(1)).is_err());
        assert!(ds.visible_length(&test_support::block(1)).is_err());
    }

    #[test]
    fn invalidate_deletes_only_the_generation_stamp_ordered() {
        use crate::test_support;
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = test_support::dataset(tmp.path(), 1);
        let block = test_support::write_replica(&ds, 7, 1000);
        let older = ExtendedBlock {
            generation_stamp: block.generation_stamp - 1,
            ..block.clone()
        };
        assert!(ds.invalidate(std::slice::from_ref(&older)).is_empty());
        assert!(ds.replica(7).is_some());
        let deleted = ds.invalidate(std::slice::from_ref(&block));
        assert_eq!(deleted.len(), 1);
        assert!(ds.replica(7).is_none());
        assert_eq!(ds.volumes()[0].dfs_used(), 0);

        // A replica being written: its writer is stopped first.
        let mut writer = ds
            .create_rbw(
                &test_support::block(8),
                crate::test_support::CRC32C_512,
                0,
                false,
            )
            .expect("rbw");
        write(&mut writer, &[1; 100]);
        let token = writer.lease.as_ref().expect("lease").cancelled();
        let ds = Arc::new(ds);
        let session = {
            let ds = Arc::clone(&ds);
            std::thread::spawn(move || {
                while !token.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                ds.release(writer, None);
            })
        };
        assert_eq!(ds.invalidate(&[test_support::block(8)]).len(), 1);
        session.join().expect("session");
        assert!(ds.replica(8).is_none());
    }

    #[test]
    fn replicas_are_appended_to_recovered_and_read_while_written() {
        use crate::test_support;
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = test_support::dataset(tmp.path(), 1);
        let data = test_support::data(3, 3000);
        let block = test_support::block(3);
        let mut writer = ds
            .create_rbw(&block, crate::test_support::CRC32C_512, 0, false)
            .expect("rbw");
        let session = writer.lease.as_ref().expect("lease").session();
        write(&mut writer, &data[..700]);
        ds.set_acked(3, session, 700);
        write(&mut writer, &data[700..1200]);
        // Readers see what was acknowledged, with a valid tail checksum.
        assert_eq!(ds.visible_length(&block).expect("visible"), 700);
        assert_eq!(read_all(&ds, &block), &data[..700]);
        ds.release(writer, None);
        let info = ds.replica(3).expect("rbw");
        assert_eq!(
            (info.state, info.num_bytes, info.acked),
            (ReplicaState::Rbw, 1200, 700)
        );

        // Pipeline recovery: stale requests are refused, the rest resumes
        // at the bytes the client says were acknowledged.
        let newer = ExtendedBlock {
            generation_stamp: 1002,
            ..block.clone()
        };
        assert!(matches!(
            ds.recover_rbw(&newer, 1003, 700),
            Err(DatanodeError::StaleGenerationStamp(_))
        ));
        assert!(matches!(
            ds.recover_rbw(&block, 1002, 1300),
            Err(DatanodeError::InvalidRequest(_))
        ));
        assert!(matches!(
            ds.recover_rbw(&test_support::block(99), 1002, 0),
            Err(DatanodeError::ReplicaNotFound(_))
        ));
        let mut writer = ds.recover_rbw(&block, 1002, 700).expect("recovers");
        assert_eq!(writer.written(), 700);
        write(&mut writer, &data[700..1500]);
        let info = ds.finalize(writer).expect("finalize");
        assert_eq!((info.generation_stamp, info.num_bytes), (1002, 1500));
        let finalized = ExtendedBlock {
            generation_stamp: 1002,
            num_bytes: 1500,
            ..block.clone()
        };
        assert_eq!(read_all(&ds, &finalized), &data[..1500]);
        assert_eq!(ds.volumes()[0].dfs_used(), 1500);

        // Append: the generation stamp and length must match.
        assert!(matches!(
            ds.append(
                &ExtendedBlock {
                    num_bytes: 1400,
                    ..finalized.clone()
                },
                1003
            ),
            Err(DatanodeError::InvalidRequest(_))
        ));
        assert!(matches!(
            ds.append(
                &ExtendedBlock {
                    generation_stamp: 1001,
                    ..finalized.clone()
                },
                1003
            ),
            Err(DatanodeError::StaleGenerationStamp(_))
        ));
        let mut writer = ds.append(&finalized, 1003).expect("append");
        assert_eq!(ds.volumes()[0].dfs_used(), 0);
        write(&mut writer, &data[1500..2100]);
        ds.finalize(writer).expect("finalize");
        let appended = ExtendedBlock {
            generation_stamp: 1003,
            num_bytes: 2100,
            ..block.clone()
        };
        assert_eq!(read_all(&ds, &appended), &data[..2100]);
        // An old reader's generation stamp is fine, a newer one is not.
        assert!(ds.open_for_read(&block).is_ok());
        assert!(
            ds.visible_length(&ExtendedBlock {
                generation_stamp: 1004,
                ..block.clone()
            })
            .is_err()
        );
    }

    #[test]
    fn block_recovery_stops_the_writer_and_settles_the_replica() {
        use crate::test_support;
        let tmp = tempfile::tempdir().expect("tmp");
        let ds = Arc::new(test_support::dataset(tmp.path(), 1));
        let data = test_support::data(4, 1500);
        let block = test_support::block(4);
        let mut writer = ds
            .create_rbw(&block, crate::test_support::CRC32C_512, 0, false)
            .expect("rbw");
        write(&mut writer, &data);
        let token = writer.lease.as_ref().expect("lease").cancelled();
        let session = {
            let ds = Arc::clone(&ds);
            std::thread::spawn(move || {
                while !token.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                ds.release(writer, None);
            })
        };
        let older = ExtendedBlock {
            generation_stamp: 1002,
            ..block.clone()
        };
        assert!(matches!(
            ds.init_replica_recovery(&older, 2000),
            Err(DatanodeError::StaleGenerationStamp(_))
        ));
        session.join().expect("the writer was stopped");
        let info = ds.init_replica_recovery(&block, 2000).expect("init");
        assert_eq!(
            info,
            RecoveryInfo {
                state: ReplicaState::Rbw,
                generation_stamp: 1001,
                num_bytes: 1500
            }
        );
        assert!(matches!(
            ds.init_replica_recovery(&block, 1999),
            Err(DatanodeError::RecoveryInProgress(_))
        ));
        // A newer recovery takes over, keeping the state it was found in.
        assert_eq!(
            ds.init_replica_recovery(&block, 2001).expect("newer").state,
            ReplicaState::Rbw
        );
        assert!(
            ds.update_replica_under_recovery(&block, 2000, 1000)
                .is_err()
        );
        assert!(
            ds.update_replica_under_recovery(&block, 2001, 1600)
                .is_err()
        );
        let reported = ds.reports().subscribe("nn");
        let storage = ds
            .update_replica_under_recovery(&block, 2001, 1000)
            .expect("update");
        assert_eq!(storage, ds.volumes()[0].storage_id());
        let recovered = ExtendedBlock {
            generation_stamp: 2001,
            num_bytes: 1000,
            ..block.clone()
        };
        assert_eq!(read_all(&ds, &recovered), &data[..1000]);
        let changes = reported.take().changes;
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, recovered);
        assert_eq!(changes[0].2, ReplicaChange::Received);

        // A finalized replica recovered shorter (truncate) stays in place.
        let info = ds.init_replica_recovery(&recovered, 3000).expect("init");
        assert_eq!(info.state, ReplicaState::Finalized);
        ds.update_replica_under_recovery(&recovered, 3000, 600)
            .expect("truncate");
        let truncated = ExtendedBlock {
            generation_stamp: 3000,
            num_bytes: 600,
            ..block.clone()
        };
        assert_eq!(read_all(&ds, &truncated), &data[..600]);
        assert_eq!(ds.volumes()[0].dfs_used(), 600);
        assert!(matches!(
            ds.init_replica_recovery(&test_support::block(5), 3001),
            Err(DatanodeError::ReplicaNotFound(_))
        ));
    }
}
