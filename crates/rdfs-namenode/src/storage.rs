//! The namenode's name directories: `rdfs namenode -format` creates them,
//! start-up checks and locks them and recovers the edit log from them.
//!
//! Layout of each directory (as in HDFS):
//! ```text
//! <name_dir>/in_use.lock
//! <name_dir>/current/VERSION
//! <name_dir>/current/edits_<first>-<last>
//! <name_dir>/current/edits_inprogress_<first>
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rdfs_common::ids::NAMENODE_LAYOUT_VERSION;

use crate::edit_log::segment::{self, encode_record};
use crate::edit_log::{EditRecord, JournalError, Op, TxId};

/// What a namespace is; fixed at format time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub cluster_id: String,
    pub block_pool_id: String,
    pub namespace_id: u32,
    pub layout_version: i32,
    pub ctime: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "name directory {0} is not empty; formatting would destroy the namespace in it. Pass -force to format it anyway"
    )]
    NotEmpty(PathBuf),
    #[error(
        "the namenode is not formatted: {0} has no current/VERSION. Run `rdfs namenode -format` first"
    )]
    NotFormatted(PathBuf),
    #[error("cannot lock name directory {0}: another namenode is using it")]
    Locked(PathBuf),
    #[error("{path}/current/VERSION is invalid: {reason}")]
    BadVersion { path: PathBuf, reason: String },
    #[error("name directories disagree: {0}")]
    Mismatch(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a fresh namespace in every directory. The root directory belongs
/// to `superuser:supergroup`, as in HDFS.
pub fn format(
    dirs: &[PathBuf],
    force: bool,
    info: &NamespaceInfo,
    superuser: &str,
    supergroup: &str,
) -> Result<(), StorageError> {
    for dir in dirs {
        if dir.exists() {
            let non_empty = std::fs::read_dir(dir)
                .map_err(io_err(dir))?
                .next()
                .is_some();
            if non_empty && !force {
                return Err(StorageError::NotEmpty(dir.clone()));
            }
        }
    }
    for dir in dirs {
        if dir.exists() {
            for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
                let path = entry.map_err(io_err(dir))?.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
                } else {
                    std::fs::remove_file(&path).map_err(io_err(&path))?;
                }
            }
        }
        let current = dir.join("current");
        std::fs::create_dir_all(&current).map_err(io_err(&current))?;
        // The root's ownership is the first edit, so replay alone rebuilds it.
        let mut bytes = segment::header().to_vec();
        let ops = [
            Op::SetOwner(rdfs_proto::editlog::SetOwner {
                inode_id: rdfs_common::ids::ROOT_INODE_ID,
                owner: Some(superuser.to_string()),
                group: Some(supergroup.to_string()),
            }),
            Op::SetPermission(rdfs_proto::editlog::SetPermission {
                inode_id: rdfs_common::ids::ROOT_INODE_ID,
                mode: 0o755,
            }),
        ];
        let count = ops.len() as TxId;
        for (txid, op) in (1..).zip(ops) {
            encode_record(&EditRecord { txid, op: Some(op) }, &mut bytes);
        }
        write_durably(&current.join(segment::finalized_name(1, count)), &bytes)?;
        write_durably(&current.join("VERSION"), render_version(info).as_bytes())?;
        rdfs_common::durable::sync_dir(&current).map_err(io_err(&current))?;
    }
    Ok(())
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    rdfs_common::durable::write_file(path, bytes).map_err(io_err(path))
}

fn render_version(info: &NamespaceInfo) -> String {
    format!(
        "#rdfs namenode storage, written by `rdfs namenode -format`\n\
         namespaceID={}\nclusterID={}\ncTime={}\nstorageType=NAME_NODE\nblockpoolID={}\nlayoutVersion={}\n",
        info.namespace_id, info.cluster_id, info.ctime, info.block_pool_id, info.layout_version
    )
}

fn parse_version(dir: &Path, text: &str) -> Result<NamespaceInfo, StorageError> {
    let bad = |reason: String| StorageError::BadVersion {
        path: dir.to_path_buf(),
        reason,
    };
    let fields = rdfs_common::version_file::parse(text);
    let get = |key: &str| {
        fields
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| bad(format!("missing {key}")))
    };
    if get("storageType")? != "NAME_NODE" {
        return Err(bad("storageType is not NAME_NODE".into()));
    }
    let layout_version: i32 = get("layoutVersion")?
        .parse()
        .map_err(|_| bad("layoutVersion is not a number".into()))?;
    if layout_version != NAMENODE_LAYOUT_VERSION {
        return Err(bad(format!(
            "layoutVersion {layout_version} is not supported by this rdfs (it writes {NAMENODE_LAYOUT_VERSION})"
        )));
    }
    Ok(NamespaceInfo {
        cluster_id: get("clusterID")?.to_string(),
        block_pool_id: get("blockpoolID")?.to_string(),
        namespace_id: get("namespaceID")?
            .parse()
            .map_err(|_| bad("namespaceID is not a number".into()))?,
        layout_version,
        ctime: get("cTime")?
            .parse()
            .map_err(|_| bad("cTime is not a number".into()))?,
    })
}

/// The name directories of a running namenode, locked for its lifetime.
#[derive(Debug)]
pub struct NameStorage {
    pub info: NamespaceInfo,
    /// Each directory's `current/`.
    pub current_dirs: Vec<PathBuf>,
    _locks: Vec<File>,
}

impl NameStorage {
    /// Locks every directory and checks that they hold the same formatted
    /// namespace.
    pub fn open(dirs: &[PathBuf]) -> Result<Self, StorageError> {
        let mut locks = Vec::new();
        let mut info: Option<(PathBuf, NamespaceInfo)> = None;
        let mut current_dirs = Vec::new();
        for dir in dirs {
            let version_path = dir.join("current").join("VERSION");
            if !version_path.exists() {
                return Err(StorageError::NotFormatted(dir.clone()));
            }
            let lock_path = dir.join("in_use.lock");
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(io_err(&lock_path))?;
            if lock.try_lock().is_err() {
                return Err(StorageError::Locked(dir.clone()));
            }
            locks.push(lock);
            let text = std::fs::read_to_string(&version_path).map_err(io_err(&version_path))?;
            let this = parse_version(dir, &text)?;
            match &info {
                None => info = Some((dir.clone(), this)),
                Some((first_dir, first)) if *first != this => {
                    return Err(StorageError::Mismatch(format!(
                        "{} belongs to cluster {} (block pool {}), {} to cluster {} (block pool {})",
                        first_dir.display(),
                        first.cluster_id,
                        first.block_pool_id,
                        dir.display(),
                        this.cluster_id,
                        this.block_pool_id
                    )));
                }
                Some(_) => {}
            }
            current_dirs.push(dir.join("current"));
        }
        let (_, info) =
            info.ok_or_else(|| StorageError::Mismatch("no name directories configured".into()))?;
        Ok(Self {
            info,
            current_dirs,
            _locks: locks,
        })
    }

    /// Reads the edit log of every directory, truncating a torn last record
    /// of an in-progress segment and finalizing it, and returns the longest
    /// history found. A directory that cannot be read, or holds a shorter
    /// history than another, is left out of service (and logged), so new
    /// edits never land after a gap; at least one complete copy is required.
    pub fn recover_edits(&mut self) -> Result<Vec<EditRecord>, StorageError> {
        let mut readable: Vec<(PathBuf, Vec<EditRecord>)> = Vec::new();
        let mut first_error = None;
        for dir in &self.current_dirs {
            match recover_dir(dir) {
                Ok(records) => readable.push((dir.clone(), records)),
                Err(err) => {
                    tracing::error!(dir = %dir.display(), error = %err,
                        "this name directory's edit log cannot be read; the directory is left out of service");
                    first_error.get_or_insert(err);
                }
            }
        }
        let Some(best) = readable.iter().map(|(_, records)| last_txid(records)).max() else {
            return Err(first_error.unwrap_or_else(|| {
                StorageError::Mismatch("no name directories configured".into())
            }));
        };
        let mut in_service = Vec::new();
        let mut history = None;
        for (dir, records) in readable {
            let last = last_txid(&records);
            if last == best {
                in_service.push(dir);
                history.get_or_insert(records);
            } else {
                tracing::error!(dir = %dir.display(), last_txid = last, best,
                    "this name directory holds a shorter edit log than another; it is left out of service until repaired");
            }
        }
        self.current_dirs = in_service;
        Ok(history.unwrap_or_default())
    }
}

fn last_txid(records: &[EditRecord]) -> TxId {
    records.last().map_or(0, |r| r.txid)
}

fn recover_dir(dir: &Path) -> Result<Vec<EditRecord>, StorageError> {
    let mut records: Vec<EditRecord> = Vec::new();
    for seg in segment::list_segments(dir)? {
        let mut contents = segment::read_segment(&seg.path)?;
        if let Some(why) = contents.torn_tail.take() {
            if seg.last.is_some() {
                return Err(JournalError::Corrupt {
                    path: seg.path.clone(),
                    offset: contents.valid_len,
                    reason: why,
                }
                .into());
            }
            tracing::warn!(segment = %seg.path.display(), valid_bytes = contents.valid_len, reason = %why,
                "edit log ends in a torn record (an interrupted write); truncating it");
            let file = OpenOptions::new()
                .write(true)
                .open(&seg.path)
                .map_err(io_err(&seg.path))?;
            let keep = contents.valid_len.max(segment::HEADER_LEN as u64);
            if contents.valid_len < segment::HEADER_LEN as u64 {
                file.set_len(0).map_err(io_err(&seg.path))?;
                (&file)
                    .write_all(&segment::header())
                    .map_err(io_err(&seg.path))?;
            } else {
                file.set_len(keep).map_err(io_err(&seg.path))?;
            }
            file.sync_all().map_err(io_err(&seg.path))?;
        }
        let mut expected = last_txid(&records) + 1;
        if seg.first != expected && !(records.is_empty() && seg.first >= 1) {
            return Err(JournalError::Gap {
                path: seg.path.clone(),
                expected,
                found: seg.first,
            }
            .into());
        }
        expected = seg.first;
        for record in contents.records {
            if record.txid != expected {
                return Err(JournalError::Gap {
                    path: seg.path.clone(),
                    expected,
                    found: record.txid,
                }
                .into());
            }
            expected += 1;
            records.push(record);
        }
        if seg.last.is_none() {
            let last = expected - 1;
            if last < seg.first {
                std::fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            } else {
                let finalized = dir.join(segment::finalized_name(seg.first, last));
                std::fs::rename(&seg.path, &finalized).map_err(io_err(&seg.path))?;
            }
            rdfs_common::durable::sync_dir(dir).map_err(io_err(dir))?;
        } else if seg.last != Some(expected - 1) {
            return Err(JournalError::Corrupt {
                path: seg.path.clone(),
                offset: 0,
                reason: format!(
                    "segment named to end at txid {:?} ends at {}",
                    seg.last,
                    expected - 1
                ),
            }
            .into());
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> NamespaceInfo {
        NamespaceInfo {
            cluster_id: "CID-x".into(),
            block_pool_id: "BP-1-127.0.0.1-1".into(),
            namespace_id: 7,
            layout_version: NAMENODE_LAYOUT_VERSION,
            ctime: 1,
        }
    }

    #[test]
    fn format_open_and_refusals() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("name");
        assert!(matches!(
            NameStorage::open(std::slice::from_ref(&dir)),
            Err(StorageError::NotFormatted(_))
        ));
        format(
            std::slice::from_ref(&dir),
            false,
            &info(),
            "me",
            "supergroup",
        )
        .expect("formats");
        assert!(matches!(
            format(
                std::slice::from_ref(&dir),
                false,
                &info(),
                "me",
                "supergroup"
            ),
            Err(StorageError::NotEmpty(_))
        ));
        let mut storage = NameStorage::open(std::slice::from_ref(&dir)).expect("opens");
        assert_eq!(storage.info, info());
        assert!(matches!(
            NameStorage::open(std::slice::from_ref(&dir)),
            Err(StorageError::Locked(_))
        ));
        let records = storage.recover_edits().expect("recovers");
        assert_eq!(records.len(), 2);
        drop(storage);

        // A second directory that lags behind is left out of service.
        let lagging = tmp.path().join("lagging");
        format(
            &[dir.clone(), lagging.clone()],
            true,
            &info(),
            "me",
            "supergroup",
        )
        .expect("formats two");
        let mut bytes = segment::header().to_vec();
        let op = Op::SetPermission(rdfs_proto::editlog::SetPermission {
            inode_id: 16385,
            mode: 0o700,
        });
        encode_record(
            &EditRecord {
                txid: 3,
                op: Some(op),
            },
            &mut bytes,
        );
        std::fs::write(
            dir.join("current").join(segment::finalized_name(3, 3)),
            &bytes,
        )
        .expect("writes");
        let mut storage = NameStorage::open(&[dir.clone(), lagging.clone()]).expect("opens");
        let records = storage.recover_edits().expect("recovers");
        assert_eq!(records.last().map(|r| r.txid), Some(3));
        assert_eq!(storage.current_dirs, vec![dir.join("current")]);
        drop(storage);
        format(
            std::slice::from_ref(&dir),
            true,
            &info(),
            "me",
            "supergroup",
        )
        .expect("-force formats");
    }

    #[test]
    fn torn_tail_is_truncated_and_segment_finalized() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("name");
        format(
            std::slice::from_ref(&dir),
            false,
            &info(),
            "me",
            "supergroup",
        )
        .expect("formats");
        let current = dir.join("current");
        let mut bytes = segment::header().to_vec();
        for txid in 3..=5 {
            let op = Op::SetPermission(rdfs_proto::editlog::SetPermission {
                inode_id: 16385,
                mode: 0o700,
            });
            encode_record(&EditRecord { txid, op: Some(op) }, &mut bytes);
        }
        bytes.truncate(bytes.len() - 3);
        std::fs::write(current.join(segment::in_progress_name(3)), &bytes).expect("writes");
        let mut storage = NameStorage::open(std::slice::from_ref(&dir)).expect("opens");
        let records = storage.recover_edits().expect("recovers");
        assert_eq!(records.last().map(|r| r.txid), Some(4));
        assert!(current.join(segment::finalized_name(3, 4)).exists());
    }
}
