//! The replicas this datanode holds, across all its volumes (HDFS's
//! `FsDataset`): where each one lives, in which state, and the operations
//! that create, finalize, read and delete them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use rdfs_common::checksum::{META_HEADER_LEN, MetaHeader};
use rdfs_common::ids::BlockName;
use rdfs_common::protocol::ExtendedBlock;

use crate::error::DatanodeError;
use crate::replica::{ReplicaReader, ReplicaWriter, block_file_name, meta_file_name};
use crate::volume::Volume;

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

pub struct Dataset {
    volumes: Vec<Volume>,
    replicas: Mutex<HashMap<i64, ReplicaInfo>>,
    pool: OnceLock<String>,
    next_volume: AtomicUsize,
    sync_behind: u64,
    sync_on_close: bool,
}

impl Dataset {
    pub fn new(volumes: Vec<Volume>, sync_behind: u64, sync_on_close: bool) -> Self {
        Self {
            volumes,
            replicas: Mutex::new(HashMap::new()),
            pool: OnceLock::new(),
            next_volume: AtomicUsize::new(0),
            sync_behind,
            sync_on_close,
        }
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
    /// Returns the replicas found damaged.
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
        for volume in &self.volumes {
            volume.format_or_check(cluster_id, datanode_uuid)?;
            volume.init_block_pool(pool_id, namespace_id)?;
        }
        let mut suspects = Vec::new();
        let mut replicas = self.replicas.lock();
        for volume in &self.volumes {
            let found = scan_volume(volume, pool_id)?;
            for (block_id, info, suspect) in found {
                if let Some(reason) = suspect {
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
                match replicas.get(&block_id) {
                    Some(existing) if existing.generation_stamp >= info.generation_stamp => {
                        tracing::warn!(block_id, volume = %volume.root.display(),
                            "a replica of this block is on two volumes; keeping the one with the newer generation stamp");
                    }
                    _ => {
                        volume.add_used(info.num_bytes);
                        replicas.insert(block_id, info);
                    }
                }
            }
        }
        tracing::info!(
            replicas = replicas.len(),
            suspects = suspects.len(),
            "volumes scanned"
        );
        drop(replicas);
        let _ = self.pool.set(pool_id.to_string());
        Ok(suspects)
    }

    fn choose_volume(&self, needed: u64) -> Result<usize, DatanodeError> {
        let count = self.volumes.len();
        let start = self.next_volume.fetch_add(1, Ordering::Relaxed);
        for step in 0..count {
            let index = (start + step) % count;
            let volume = &self.volumes[index];
            if !volume.is_failed() && volume.remaining() >= needed {
                return Ok(index);
            }
        }
        Err(DatanodeError::NoSpace { needed })
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
            let mut replicas = self.replicas.lock();
            if let Some(existing) = replicas.get(&block.block_id) {
                return Err(DatanodeError::ReplicaExists(
                    block.name().to_string(),
                    existing.state.name(),
                ));
            }
            replicas.insert(
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
        if created.is_err() {
            self.replicas.lock().remove(&block.block_id);
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
        let mut replicas = self.replicas.lock();
        match result {
            Ok(num_bytes) => {
                let info = ReplicaInfo {
                    generation_stamp: name.generation_stamp,
                    num_bytes,
                    state: ReplicaState::Finalized,
                    volume,
                };
                replicas.insert(name.block_id, info);
                self.volumes[volume].add_used(num_bytes);
                Ok(info)
            }
            Err(err) => {
                replicas.remove(&name.block_id);
                Err(err)
            }
        }
    }

    /// Deletes a replica that will never be finalized. Blocking.
    pub fn abort(&self, writer: ReplicaWriter) {
        let block_id = writer.name.block_id;
        writer.abort();
        let mut replicas = self.replicas.lock();
        if replicas
            .get(&block_id)
            .is_some_and(|r| r.state == ReplicaState::Rbw)
        {
            replicas.remove(&block_id);
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

    pub fn replica(&self, block_id: i64) -> Option<ReplicaInfo> {
        self.replicas.lock().get(&block_id).copied()
    }

    pub fn storage_id_of(&self, info: &ReplicaInfo) -> String {
        self.volumes[info.volume].storage_id()
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
        ReplicaReader::open(
            BlockName {
                block_id: block.block_id,
                generation_stamp: info.generation_stamp,
            },
            &block_path,
            &meta_path,
            info.num_bytes,
        )
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
                let mut replicas = self.replicas.lock();
                match replicas.get(&block.block_id) {
                    Some(info)
                        if info.state == ReplicaState::Finalized
                            && info.generation_stamp <= block.generation_stamp =>
                    {
                        let info = *info;
                        replicas.remove(&block.block_id);
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
        for (block_id, info) in self.replicas.lock().iter() {
            if info.state == ReplicaState::Finalized {
                per_volume[info.volume].replicas.push((*block_id, *info));
            }
        }
        per_volume
    }
}

/// Finds the finalized replicas of a volume. Each comes with a reason when
/// its meta file does not fit its block file (a corrupt replica).
fn scan_volume(
    volume: &Volume,
    pool_id: &str,
) -> Result<Vec<(i64, ReplicaInfo, Option<String>)>, DatanodeError> {
    let finalized = volume.pool_dir(pool_id).join("finalized");
    let mut blocks: HashMap<i64, (PathBuf, u64)> = HashMap::new();
    let mut metas: HashMap<i64, (PathBuf, u64)> = HashMap::new();
    let mut stack = vec![finalized];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| DatanodeError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| DatanodeError::Io {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if path.is_dir() {
                stack.push(path);
            } else if let Some(rest) = name.strip_prefix("blk_") {
                if let Some(meta) = rest.strip_suffix(".meta") {
                    if let Some((id, gs)) = meta.split_once('_')
                        && let (Ok(id), Ok(gs)) = (id.parse::<i64>(), gs.parse::<u64>())
                    {
                        metas.insert(id, (path, gs));
                    }
                } else if let Ok(id) = rest.parse::<i64>() {
                    let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    blocks.insert(id, (path, len));
                }
            }
        }
    }
    let mut found = Vec::new();
    for (block_id, (block_path, num_bytes)) in blocks {
        let Some((meta_path, generation_stamp)) = metas.remove(&block_id) else {
            tracing::warn!(block = %block_path.display(), "block file without a meta file; ignored");
            continue;
        };
        let suspect = check_meta(&meta_path, num_bytes).err();
        if let Some(reason) = &suspect {
            tracing::warn!(block = %block_path.display(), reason, "replica is corrupt");
        }
        let info = ReplicaInfo {
            generation_stamp,
            num_bytes,
            state: ReplicaState::Finalized,
            volume: volume.index,
        };
        found.push((block_id, info, suspect));
    }
    for (_, (meta_path, _)) in metas {
        tracing::warn!(meta = %meta_path.display(), "meta file without a block file; ignored");
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

fn check_meta(meta_path: &Path, block_len: u64) -> Result<(), String> {
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
}
