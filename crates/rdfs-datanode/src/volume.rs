//! A volume: one configured data directory, usually one disk.
//!
//! Layout (as in HDFS, so operators and tools find their way):
//! ```text
//! <dir>/in_use.lock
//! <dir>/current/VERSION                      storageID, clusterID, datanodeUuid, ...
//! <dir>/current/<bp>/current/VERSION         namespaceID, blockpoolID, ...
//! <dir>/current/<bp>/current/finalized/subdir<d1>/subdir<d2>/blk_<id>
//! <dir>/current/<bp>/current/finalized/subdir<d1>/subdir<d2>/blk_<id>_<gs>.meta
//! <dir>/current/<bp>/current/rbw/blk_<id>, blk_<id>_<gs>.meta
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rdfs_common::ids::{DATANODE_LAYOUT_VERSION, new_storage_id};

use crate::error::DatanodeError;
use crate::io_hints;

/// Makes concurrent health-check probe names unique.
static PROBES: AtomicU64 = AtomicU64::new(0);

/// What a formatted volume's VERSION records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeIdentity {
    pub storage_id: String,
    pub cluster_id: String,
    pub datanode_uuid: String,
}

#[derive(Debug)]
pub struct Volume {
    pub index: usize,
    pub root: PathBuf,
    /// Set once the volume is formatted for a cluster.
    identity: parking_lot::Mutex<Option<VolumeIdentity>>,
    reserved: u64,
    dfs_used: AtomicU64,
    failed: AtomicBool,
    /// Why the volume was taken out of service.
    failure: parking_lot::Mutex<Option<String>>,
    /// Held while a health check runs; records when the last one passed, so
    /// a burst of I/O errors on a healthy volume costs one check, not one
    /// per error.
    last_check: parking_lot::Mutex<Option<Instant>>,
    _lock: File,
}

/// A data directory that is out of service, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedVolume {
    pub root: PathBuf,
    pub reason: String,
}

/// The replica files found under a volume's `finalized/` tree.
#[derive(Debug, Default)]
pub struct FinalizedListing {
    /// Block id to (block file, its length).
    pub blocks: HashMap<i64, (PathBuf, u64)>,
    /// Block id to its meta files, with the generation stamp each names.
    pub metas: HashMap<i64, Vec<(PathBuf, u64)>>,
}

impl FinalizedListing {
    /// The meta file of `block_id` for generation stamp `gs`.
    pub fn meta(&self, block_id: i64, gs: u64) -> Option<&Path> {
        self.metas
            .get(&block_id)?
            .iter()
            .find(|(_, g)| *g == gs)
            .map(|(p, _)| p.as_path())
    }

    /// The meta file with the newest generation stamp of `block_id`.
    pub fn newest_meta(&self, block_id: i64) -> Option<(&Path, u64)> {
        self.metas
            .get(&block_id)?
            .iter()
            .max_by_key(|(_, g)| *g)
            .map(|(p, g)| (p.as_path(), *g))
    }
}

/// Opens every configured data directory. One that cannot be opened (not a
/// directory, permission denied, unreadable VERSION) is returned as failed
/// for the caller to weigh against the tolerated number; one locked by
/// another datanode is a configuration mistake, not a disk failure, and
/// stops the start.
pub fn open_volumes(
    dirs: &[PathBuf],
    reserved: u64,
) -> Result<(Vec<Volume>, Vec<FailedVolume>), DatanodeError> {
    let mut opened = Vec::new();
    let mut failed = Vec::new();
    for dir in dirs {
        match Volume::open(opened.len(), dir, reserved) {
            Ok(volume) => opened.push(volume),
            Err(err @ DatanodeError::VolumeLocked(_)) => return Err(err),
            Err(err) => {
                tracing::error!(volume = %dir.display(), error = %err, "cannot open volume; counting it as failed");
                failed.push(FailedVolume {
                    root: dir.clone(),
                    reason: err.to_string(),
                });
            }
        }
    }
    Ok((opened, failed))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatanodeError + '_ {
    move |source| DatanodeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_properties(path: &Path) -> Result<BTreeMap<String, String>, DatanodeError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    Ok(rdfs_common::version_file::parse(&text))
}

fn write_durably(path: &Path, text: &str) -> Result<(), DatanodeError> {
    rdfs_common::durable::write_file(path, text.as_bytes()).map_err(io_err(path))
}

impl Volume {
    /// Opens (creating if needed) and locks a data directory, reading its
    /// identity if it was formatted before.
    pub fn open(index: usize, root: &Path, reserved: u64) -> Result<Self, DatanodeError> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        let lock = rdfs_common::durable::lock_dir(root)
            .map_err(io_err(&root.join(rdfs_common::durable::LOCK_FILE)))?
            .ok_or_else(|| DatanodeError::VolumeLocked(root.to_path_buf()))?;
        let version = root.join("current").join("VERSION");
        let identity = if version.exists() {
            let props = read_properties(&version)?;
            let get = |key: &str| {
                props
                    .get(key)
                    .cloned()
                    .ok_or_else(|| DatanodeError::BadVersionFile {
                        path: version.clone(),
                        reason: format!("missing {key}"),
                    })
            };
            if get("storageType")? != "DATA_NODE" {
                return Err(DatanodeError::BadVersionFile {
                    path: version.clone(),
                    reason: "storageType is not DATA_NODE".into(),
                });
            }
            Some(VolumeIdentity {
                storage_id: get("storageID")?,
                cluster_id: get("clusterID")?,
                datanode_uuid: get("datanodeUuid")?,
            })
        } else {
            None
        };
        Ok(Self {
            index,
            root: root.to_path_buf(),
            identity: parking_lot::Mutex::new(identity),
            reserved,
            dfs_used: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            failure: parking_lot::Mutex::new(None),
            last_check: parking_lot::Mutex::new(None),
            _lock: lock,
        })
    }

    pub fn identity(&self) -> Option<VolumeIdentity> {
        self.identity.lock().clone()
    }

    pub fn storage_id(&self) -> String {
        self.identity
            .lock()
            .as_ref()
            .map(|i| i.storage_id.clone())
            .unwrap_or_default()
    }

    /// Formats an empty volume for `cluster_id`, or checks that a formatted
    /// one belongs to it.
    pub fn format_or_check(
        &self,
        cluster_id: &str,
        datanode_uuid: &str,
    ) -> Result<(), DatanodeError> {
        let mut identity = self.identity.lock();
        match &*identity {
            Some(existing) if existing.cluster_id != cluster_id => {
                Err(DatanodeError::IncompatibleCluster {
                    dir: self.root.clone(),
                    namenode: cluster_id.to_string(),
                    datanode: existing.cluster_id.clone(),
                })
            }
            Some(_) => Ok(()),
            None => {
                let current = self.root.join("current");
                std::fs::create_dir_all(&current).map_err(io_err(&current))?;
                let new = VolumeIdentity {
                    storage_id: new_storage_id(),
                    cluster_id: cluster_id.to_string(),
                    datanode_uuid: datanode_uuid.to_string(),
                };
                write_durably(
                    &current.join("VERSION"),
                    &format!(
                        "#rdfs datanode volume\nstorageID={}\nclusterID={}\ncTime=0\ndatanodeUuid={}\nstorageType=DATA_NODE\nlayoutVersion={}\n",
                        new.storage_id, new.cluster_id, new.datanode_uuid, DATANODE_LAYOUT_VERSION
                    ),
                )?;
                tracing::info!(volume = %self.root.display(), storage_id = %new.storage_id, "formatted volume");
                *identity = Some(new);
                Ok(())
            }
        }
    }

    /// `<dir>/current/<bp>/current`, created with its VERSION on first use.
    pub fn init_block_pool(&self, pool_id: &str, namespace_id: u32) -> Result<(), DatanodeError> {
        let bp = self.pool_dir(pool_id);
        for dir in [bp.join("finalized"), bp.join("rbw")] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let version = bp.join("VERSION");
        if version.exists() {
            let props = read_properties(&version)?;
            let recorded = props.get("namespaceID").and_then(|v| v.parse::<u32>().ok());
            if recorded != Some(namespace_id) {
                return Err(DatanodeError::BadVersionFile {
                    path: version,
                    reason: format!(
                        "namespaceID is {recorded:?}, the namenode's is {namespace_id}"
                    ),
                });
            }
        } else {
            write_durably(
                &version,
                &format!(
                    "#rdfs block pool\nnamespaceID={namespace_id}\ncTime=0\nblockpoolID={pool_id}\nlayoutVersion={DATANODE_LAYOUT_VERSION}\n"
                ),
            )?;
        }
        Ok(())
    }

    pub fn pool_dir(&self, pool_id: &str) -> PathBuf {
        self.root.join("current").join(pool_id).join("current")
    }

    pub fn rbw_dir(&self, pool_id: &str) -> PathBuf {
        self.pool_dir(pool_id).join("rbw")
    }

    /// HDFS's `idToBlockDir`: 32 x 32 subdirectories by block id bits.
    pub fn finalized_dir(&self, pool_id: &str, block_id: i64) -> PathBuf {
        let d1 = (block_id >> 16) & 0x1f;
        let d2 = (block_id >> 8) & 0x1f;
        self.pool_dir(pool_id)
            .join("finalized")
            .join(format!("subdir{d1}"))
            .join(format!("subdir{d2}"))
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Takes the volume out of service; true for the call that did it.
    pub fn fail(&self, reason: &str) -> bool {
        let mut failure = self.failure.lock();
        if self.failed.swap(true, Ordering::SeqCst) {
            return false;
        }
        *failure = Some(reason.to_string());
        true
    }

    pub fn failure(&self) -> Option<FailedVolume> {
        let reason = self.failure.lock().clone()?;
        Some(FailedVolume {
            root: self.root.clone(),
            reason,
        })
    }

    /// Runs [`Self::check_health`] unless a check is already running or
    /// one passed less than `min_gap` ago; `None` when skipped.
    pub fn check_health_throttled(
        &self,
        pool_id: Option<&str>,
        min_gap: std::time::Duration,
    ) -> Option<Result<(), DatanodeError>> {
        let mut last = self.last_check.try_lock()?;
        if last.is_some_and(|at| at.elapsed() < min_gap) {
            return None;
        }
        let result = self.check_health(pool_id);
        if result.is_ok() {
            *last = Some(Instant::now());
        }
        Some(result)
    }

    /// HDFS's disk check: the root and the block pool's directories must be
    /// directories we can list, and a probe file must survive create, write,
    /// fsync and delete in `rbw/` (where new replicas go), so a disk that
    /// went read-only or stopped answering writes is caught.
    pub fn check_health(&self, pool_id: Option<&str>) -> Result<(), DatanodeError> {
        let not_a_dir = |path: &Path| DatanodeError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        };
        let mut dirs = vec![self.root.clone()];
        let probe_dir = match pool_id {
            Some(pool_id) => {
                let bp = self.pool_dir(pool_id);
                dirs.extend([bp.join("finalized"), bp.join("rbw")]);
                bp.join("rbw")
            }
            None => self.root.clone(),
        };
        for dir in &dirs {
            let meta = std::fs::metadata(dir).map_err(io_err(dir))?;
            if !meta.is_dir() {
                return Err(not_a_dir(dir));
            }
            std::fs::read_dir(dir).map_err(io_err(dir))?;
        }
        let probe = probe_dir.join(format!(
            ".rdfs-disk-check-{}-{}",
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        ));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|mut file| {
                file.write_all(&[0xa5; 512])?;
                file.sync_all()
            });
        let removed = std::fs::remove_file(&probe);
        written.map_err(io_err(&probe))?;
        removed.map_err(io_err(&probe))?;
        Ok(())
    }

    /// Every block and meta file under `finalized/`, read straight from disk.
    pub fn list_finalized(&self, pool_id: &str) -> Result<FinalizedListing, DatanodeError> {
        let mut listing = FinalizedListing::default();
        let mut stack = vec![self.pool_dir(pool_id).join("finalized")];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(io_err(&dir))?;
            for entry in entries {
                let entry = entry.map_err(io_err(&dir))?;
                let path = entry.path();
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let file_type = entry.file_type().map_err(io_err(&path))?;
                if file_type.is_dir() {
                    stack.push(path);
                } else if let Some(rest) = name.strip_prefix("blk_") {
                    if let Some(meta) = rest.strip_suffix(".meta") {
                        if let Some((id, gs)) = meta.split_once('_')
                            && let (Ok(id), Ok(gs)) = (id.parse::<i64>(), gs.parse::<u64>())
                        {
                            listing.metas.entry(id).or_default().push((path, gs));
                        }
                    } else if let Ok(id) = rest.parse::<i64>() {
                        let len = match entry.metadata() {
                            Ok(meta) => meta.len(),
                            // Deleted since the directory was read.
                            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(source) => return Err(DatanodeError::Io { path, source }),
                        };
                        listing.blocks.insert(id, (path, len));
                    }
                }
            }
        }
        Ok(listing)
    }

    pub fn dfs_used(&self) -> u64 {
        self.dfs_used.load(Ordering::Relaxed)
    }

    pub fn add_used(&self, bytes: u64) {
        self.dfs_used.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn sub_used(&self, bytes: u64) {
        let _ = self
            .dfs_used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(bytes))
            });
    }

    /// (capacity, dfs used, remaining, non-dfs used), with the reserved
    /// space taken out of capacity and remaining.
    pub fn usage(&self) -> (u64, u64, u64, u64) {
        let (total, available) = io_hints::disk_space(&self.root).unwrap_or((0, 0));
        let capacity = total.saturating_sub(self.reserved);
        let remaining = available.saturating_sub(self.reserved);
        let used = self.dfs_used();
        let non_dfs = capacity.saturating_sub(remaining).saturating_sub(used);
        (capacity, used, remaining, non_dfs)
    }

    pub fn remaining(&self) -> u64 {
        self.usage().2
    }
}

/// The datanode's uuid: the one its formatted volumes agree on, or a new one.
pub fn datanode_uuid(volumes: &[Volume]) -> Result<String, DatanodeError> {
    let mut found: Option<(PathBuf, String)> = None;
    for volume in volumes {
        if let Some(identity) = volume.identity() {
            match &found {
                Some((dir, uuid)) if *uuid != identity.datanode_uuid => {
                    return Err(DatanodeError::Inconsistent(format!(
                        "volume {} belongs to datanode {uuid}, volume {} to datanode {}",
                        dir.display(),
                        volume.root.display(),
                        identity.datanode_uuid
                    )));
                }
                Some(_) => {}
                None => found = Some((volume.root.clone(), identity.datanode_uuid)),
            }
        }
    }
    Ok(found.map_or_else(rdfs_common::ids::new_datanode_uuid, |(_, uuid)| uuid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_reopen_and_refuse_another_cluster() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("v0");
        let volume = Volume::open(0, &root, 0).expect("opens");
        assert!(volume.identity().is_none());
        volume.format_or_check("CID-a", "uuid-1").expect("formats");
        volume.init_block_pool("BP-1-127.0.0.1-1", 7).expect("pool");
        assert!(matches!(
            Volume::open(0, &root, 0),
            Err(DatanodeError::VolumeLocked(_))
        ));
        drop(volume);
        let volume = Volume::open(0, &root, 0).expect("reopens");
        assert_eq!(
            volume.identity().map(|i| i.datanode_uuid),
            Some("uuid-1".to_string())
        );
        let err = volume
            .format_or_check("CID-b", "uuid-1")
            .expect_err("other cluster");
        assert!(err.to_string().contains("Incompatible clusterIDs"), "{err}");
        assert!(volume.init_block_pool("BP-1-127.0.0.1-1", 8).is_err());
        assert_eq!(
            volume.finalized_dir("BP", 1073741825 + 256),
            root.join("current/BP/current/finalized/subdir0/subdir1")
        );
    }
}
