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

use crate::apply::FsState;
use crate::edit_log::segment;
use crate::edit_log::{EditRecord, JournalError, TxId};
use crate::namesystem::NamesystemConfig;

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
    #[error("the namenode refuses to start with a partial namespace: {0}")]
    NothingValid(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl From<crate::edit_log::SegmentError> for StorageError {
    fn from(err: crate::edit_log::SegmentError) -> Self {
        Self::Journal(err.into())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a fresh namespace in every directory. The root directory belongs
/// to `superuser:supergroup`, as in HDFS.
/// Creates a fresh namespace in every directory: a VERSION file and
/// `fsimage_0`, the empty namespace `image` encodes.
pub fn format(
    dirs: &[PathBuf],
    force: bool,
    info: &NamespaceInfo,
    image: &[u8],
) -> Result<(), StorageError> {
    format_with_image(dirs, force, info, 0, image)
}

/// Like [`format`], starting from an image at `txid` (another namenode's,
/// for `-bootstrapStandby`).
pub fn format_with_image(
    dirs: &[PathBuf],
    force: bool,
    info: &NamespaceInfo,
    txid: TxId,
    image: &[u8],
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
        write_durably(&current.join(crate::fsimage::file_name(txid)), image)?;
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

/// Locks one name directory and reads its VERSION.
fn open_dir(dir: &Path) -> Result<(File, NamespaceInfo), StorageError> {
    let version_path = dir.join("current").join("VERSION");
    if !version_path.exists() {
        return Err(StorageError::NotFormatted(dir.to_path_buf()));
    }
    let lock = rdfs_common::durable::lock_dir(dir)
        .map_err(io_err(&dir.join(rdfs_common::durable::LOCK_FILE)))?
        .ok_or_else(|| StorageError::Locked(dir.to_path_buf()))?;
    let text = std::fs::read_to_string(&version_path).map_err(io_err(&version_path))?;
    Ok((lock, parse_version(dir, &text)?))
}

/// A namespace read back from the name directories.
pub struct Loaded {
    pub state: FsState,
    /// The txid of the fsimage it started from.
    pub image_txid: TxId,
    /// The txid of the last edit replayed.
    pub last_txid: TxId,
    /// The edits replayed onto the image.
    pub edits: Vec<EditRecord>,
    /// The answers of the at-most-once calls those edits name.
    pub calls: Vec<crate::namesystem::CallOutcome>,
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
    /// namespace. A directory that is unformatted, unreadable or has a
    /// damaged VERSION is reported and left out of service while another
    /// good one remains; one that another namenode holds, or that belongs to
    /// a different namespace, stops the start: those are configuration
    /// mistakes, not damage.
    pub fn open(dirs: &[PathBuf]) -> Result<Self, StorageError> {
        let mut locks = Vec::new();
        let mut info: Option<(PathBuf, NamespaceInfo)> = None;
        let mut current_dirs = Vec::new();
        let mut first_skipped = None;
        for dir in dirs {
            let (lock, this) = match open_dir(dir) {
                Ok(opened) => opened,
                Err(err @ StorageError::Locked(_)) => return Err(err),
                Err(err) => {
                    tracing::error!(dir = %dir.display(), error = %err,
                        "this name directory cannot be used; it is left out of service");
                    first_skipped.get_or_insert(err);
                    continue;
                }
            };
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
            locks.push(lock);
            current_dirs.push(dir.join("current"));
        }
        let Some((_, info)) = info else {
            return Err(first_skipped.unwrap_or_else(|| {
                StorageError::Mismatch("no name directories configured".into())
            }));
        };
        Ok(Self {
            info,
            current_dirs,
            _locks: locks,
        })
    }

    /// Loads the namespace: the newest fsimage that reads back whole (a
    /// damaged one is renamed `*.corrupt`, reported, and an older one tried),
    /// then every edit after it. A directory whose edit log cannot be read,
    /// or is shorter than another's, is left out of service (and reported),
    /// so new edits never land after a gap. Nothing valid left is an error:
    /// the namenode never starts with a partial namespace.
    pub fn load(&mut self, config: &NamesystemConfig) -> Result<Loaded, StorageError> {
        let (image_txid, mut state) = self.load_image(config)?;
        let mut readable: Vec<(PathBuf, Vec<EditRecord>)> = Vec::new();
        let mut first_error = None;
        for dir in &self.current_dirs {
            match recover_dir(dir) {
                Ok(records) => {
                    // Its edits must reach the image, or it must hold the image.
                    let reaches_image = image_txid == 0
                        || records.last().is_some_and(|r| r.txid >= image_txid)
                        || dir.join(crate::fsimage::file_name(image_txid)).exists();
                    if !reaches_image {
                        tracing::error!(dir = %dir.display(), image_txid,
                            "this name directory has neither the fsimage nor the edits up to it; it is left out of service");
                        continue;
                    }
                    let after: Vec<EditRecord> = records
                        .into_iter()
                        .filter(|r| r.txid > image_txid)
                        .collect();
                    if after.first().is_some_and(|r| r.txid != image_txid + 1) {
                        tracing::error!(dir = %dir.display(), image_txid, first = after[0].txid,
                            "this name directory lacks the edits right after the fsimage; it is left out of service");
                        continue;
                    }
                    readable.push((dir.clone(), after));
                }
                Err(err) => {
                    tracing::error!(dir = %dir.display(), error = %err,
                        "this name directory's edit log cannot be read; the directory is left out of service");
                    first_error.get_or_insert(err);
                }
            }
        }
        let Some(best) = readable
            .iter()
            .map(|(_, records)| last_txid(records).max(image_txid))
            .max()
        else {
            return Err(first_error.unwrap_or(StorageError::NothingValid(format!(
                "no name directory holds the edits after fsimage {image_txid}"
            ))));
        };
        let mut in_service = Vec::new();
        let mut history = None;
        for (dir, records) in readable {
            let last = last_txid(&records).max(image_txid);
            if last == best {
                in_service.push(dir);
                history.get_or_insert(records);
            } else {
                tracing::error!(dir = %dir.display(), last_txid = last, best,
                    "this name directory holds a shorter edit log than another; it is left out of service until repaired");
            }
        }
        self.current_dirs = in_service;
        let history = history.unwrap_or_default();
        let keep = if config.retry_cache.enabled {
            config.retry_cache.max_entries
        } else {
            0
        };
        let calls = crate::namesystem::replay_calls(&mut state, &history, keep)
            .map_err(|e| StorageError::NothingValid(e.to_string()))?;
        tracing::info!(
            image_txid,
            edits = history.len(),
            last_txid = best,
            "namespace loaded from fsimage and edits"
        );
        Ok(Loaded {
            state,
            image_txid,
            last_txid: best,
            edits: history,
            calls,
        })
    }

    /// The newest fsimage any directory holds that reads back whole.
    pub fn load_image(&self, config: &NamesystemConfig) -> Result<(TxId, FsState), StorageError> {
        let mut candidates: Vec<(TxId, PathBuf)> = Vec::new();
        for dir in &self.current_dirs {
            match crate::fsimage::list(dir) {
                Ok(images) => candidates.extend(images),
                Err(err) => {
                    tracing::error!(dir = %dir.display(), error = %err, "cannot list the fsimages of this name directory")
                }
            }
            // A checkpoint cut short leaves a temp file: never an image.
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with("fsimage_")
                        && name.to_string_lossy().ends_with(".tmp")
                    {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
        candidates.sort_by_key(|image| std::cmp::Reverse(image.0));
        let mut reasons = Vec::new();
        for (txid, path) in candidates {
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(err) => {
                    tracing::error!(image = %path.display(), error = %err, "cannot read fsimage; trying an older one");
                    reasons.push(format!("{}: {err}", path.display()));
                    continue;
                }
            };
            let decoded =
                crate::fsimage::decode(&path, &bytes, &self.info, config).and_then(|image| {
                    if image.txid == txid {
                        Ok(image)
                    } else {
                        Err(crate::fsimage::ImageError {
                            path: path.clone(),
                            reason: format!(
                                "it holds txid {} but is named for txid {txid}",
                                image.txid
                            ),
                        })
                    }
                });
            match decoded {
                Ok(image) => {
                    tracing::info!(image = %path.display(), txid, inodes = image.state.namespace.inode_count(),
                        blocks = image.state.blocks.len(), "fsimage loaded");
                    return Ok((image.txid, image.state));
                }
                Err(err) => {
                    tracing::error!(error = %err, "fsimage is damaged; it is set aside as *.corrupt and an older one is tried");
                    let aside = path.with_extension("corrupt");
                    if let Err(rename) = std::fs::rename(&path, &aside) {
                        tracing::warn!(image = %path.display(), error = %rename, "cannot set the damaged fsimage aside");
                    }
                    reasons.push(err.to_string());
                }
            }
        }
        Err(StorageError::NothingValid(if reasons.is_empty() {
            "no fsimage in any name directory".to_string()
        } else {
            format!(
                "no valid fsimage in any name directory: {}",
                reasons.join("; ")
            )
        }))
    }

    /// Deletes fsimages beyond the newest `retained`, and the edit segments
    /// no retained image needs.
    pub fn purge(dirs: &[PathBuf], retained: usize) {
        for dir in dirs {
            let Ok(images) = crate::fsimage::list(dir) else {
                continue;
            };
            let Some(oldest_kept) = images.iter().take(retained).map(|(txid, _)| *txid).min()
            else {
                continue;
            };
            for (txid, path) in images.iter().skip(retained) {
                match std::fs::remove_file(path) {
                    Ok(()) => tracing::info!(image = %path.display(), txid, "old fsimage purged"),
                    Err(err) => {
                        tracing::warn!(image = %path.display(), error = %err, "cannot purge old fsimage")
                    }
                }
            }
            let Ok(segments) = segment::list_segments(dir) else {
                continue;
            };
            for seg in segments {
                if seg.last.is_some_and(|last| last <= oldest_kept) {
                    match std::fs::remove_file(&seg.path) {
                        Ok(()) => {
                            tracing::debug!(segment = %seg.path.display(), "old edit segment purged")
                        }
                        Err(err) => {
                            tracing::warn!(segment = %seg.path.display(), error = %err, "cannot purge edit segment")
                        }
                    }
                }
            }
        }
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
            if contents.valid_len == 0 {
                // The header itself is torn: the segment was being created.
                file.set_len(0).map_err(io_err(&seg.path))?;
                (&file)
                    .write_all(&segment::header(segment::LOCAL_EPOCH))
                    .map_err(io_err(&seg.path))?;
            } else {
                file.set_len(contents.valid_len)
                    .map_err(io_err(&seg.path))?;
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
    use crate::edit_log::Op;
    use crate::edit_log::segment::encode_record;

    fn info() -> NamespaceInfo {
        NamespaceInfo {
            cluster_id: "CID-x".into(),
            block_pool_id: "BP-1-127.0.0.1-1".into(),
            namespace_id: 7,
            layout_version: NAMENODE_LAYOUT_VERSION,
            ctime: 1,
        }
    }

    fn config() -> NamesystemConfig {
        NamesystemConfig::from_config(&rdfs_common::config::Config::default())
    }

    fn empty_image() -> Vec<u8> {
        let state = crate::namesystem::empty_state(&info(), &config(), "me", "supergroup", 1);
        crate::fsimage::encode(&state, 0, &info())
    }

    fn format_dirs(dirs: &[PathBuf], force: bool) -> Result<(), StorageError> {
        format(dirs, force, &info(), &empty_image())
    }

    /// A segment of `SetPermission` edits `first..=last`, optionally cut short.
    fn segment_bytes(first: TxId, last: TxId, cut: usize) -> Vec<u8> {
        let mut bytes = segment::header(segment::LOCAL_EPOCH).to_vec();
        for txid in first..=last {
            let op = Op::SetPermission(rdfs_proto::editlog::SetPermission {
                inode_id: 16385,
                mode: 0o700 + txid as u32 % 8,
            });
            encode_record(&crate::edit_log::record(txid, op, None), &mut bytes);
        }
        bytes.truncate(bytes.len() - cut);
        bytes
    }

    #[test]
    fn format_open_and_refusals() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("name");
        assert!(matches!(
            NameStorage::open(std::slice::from_ref(&dir)),
            Err(StorageError::NotFormatted(_))
        ));
        format_dirs(std::slice::from_ref(&dir), false).expect("formats");
        assert!(matches!(
            format_dirs(std::slice::from_ref(&dir), false),
            Err(StorageError::NotEmpty(_))
        ));
        let mut storage = NameStorage::open(std::slice::from_ref(&dir)).expect("opens");
        assert_eq!(storage.info, info());
        assert!(matches!(
            NameStorage::open(std::slice::from_ref(&dir)),
            Err(StorageError::Locked(_))
        ));
        let loaded = storage.load(&config()).expect("loads");
        assert_eq!(loaded.last_txid, 0);
        assert_eq!(
            loaded
                .state
                .namespace
                .get(16385)
                .map(|root| root.owner().to_string()),
            Some("me".into())
        );
        drop(storage);
        format_dirs(std::slice::from_ref(&dir), true).expect("-force formats");
    }

    #[test]
    fn torn_tail_is_truncated_and_segment_finalized() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("name");
        format_dirs(std::slice::from_ref(&dir), false).expect("formats");
        let current = dir.join("current");
        std::fs::write(
            current.join(segment::in_progress_name(1)),
            segment_bytes(1, 3, 3),
        )
        .expect("writes");
        let mut storage = NameStorage::open(std::slice::from_ref(&dir)).expect("opens");
        assert_eq!(storage.load(&config()).expect("loads").last_txid, 2);
        assert!(current.join(segment::finalized_name(1, 2)).exists());
    }

    #[test]
    fn lagging_directory_is_left_out_of_service() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        format_dirs(&[a.clone(), b.clone()], false).expect("formats two");
        std::fs::write(
            a.join("current").join(segment::finalized_name(1, 3)),
            segment_bytes(1, 3, 0),
        )
        .expect("writes");
        std::fs::write(
            b.join("current").join(segment::finalized_name(1, 2)),
            segment_bytes(1, 2, 0),
        )
        .expect("writes");
        let mut storage = NameStorage::open(&[a.clone(), b.clone()]).expect("opens");
        assert_eq!(storage.load(&config()).expect("loads").last_txid, 3);
        assert_eq!(storage.current_dirs, vec![a.join("current")]);
    }

    #[test]
    fn damaged_image_falls_back_to_an_older_one_and_longer_replay() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("name");
        format_dirs(std::slice::from_ref(&dir), false).expect("formats");
        let current = dir.join("current");
        std::fs::write(
            current.join(segment::finalized_name(1, 4)),
            segment_bytes(1, 4, 0),
        )
        .expect("writes");
        // A newer image at txid 4, then zeroed as a bad disk might leave it.
        let image = current.join(crate::fsimage::file_name(4));
        std::fs::write(&image, vec![0u8; 100]).expect("writes");
        let mut storage = NameStorage::open(std::slice::from_ref(&dir)).expect("opens");
        let loaded = storage.load(&config()).expect("falls back");
        assert_eq!((loaded.image_txid, loaded.last_txid), (0, 4));
        assert_eq!(
            loaded
                .state
                .namespace
                .get(16385)
                .map(|r| r.permission().mode),
            Some(0o700 + 4)
        );
        assert!(!image.exists());
        assert!(
            image.with_extension("corrupt").exists(),
            "the damaged image is set aside"
        );
        drop(storage);
        // With every image damaged, the namenode refuses to start.
        std::fs::write(current.join(crate::fsimage::file_name(0)), b"garbage").expect("writes");
        let mut storage = NameStorage::open(std::slice::from_ref(&dir)).expect("opens");
        let err = storage.load(&config()).err().expect("refuses");
        assert!(err.to_string().contains("no valid fsimage"), "{err}");
    }
}
