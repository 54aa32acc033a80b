//! Edit log segments written to every name directory, with group commit.
//!
//! Appends only encode into a pending buffer. A sync takes the whole buffer
//! (every edit appended so far, by any number of RPCs), writes it to each
//! directory's segment and fdatasyncs once; callers that arrive while a sync
//! is running wait for it and the next one covers them all. Rolling and
//! closing the log are turns of the same syncer, so a batch can never land
//! in the wrong segment. The write runs in its own task so an RPC that is
//! cancelled mid-sync cannot leave the log stuck.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::segment::{self, encode_record};
use super::{Journal, JournalError, Op, RpcId, TxId, record};

pub struct FileJournal {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Every edit up to here is durable in every healthy directory.
    synced: AtomicU64,
    sync_done: Notify,
    /// Used only by the syncer, one turn at a time.
    segments: std::sync::Mutex<Vec<OpenSegment>>,
    /// The directories in service, readable without waiting for a sync.
    dirs: Mutex<Vec<PathBuf>>,
    /// Batches written and synced so far.
    syncs: AtomicU64,
}

struct State {
    pending: Vec<u8>,
    last_appended: TxId,
    syncing: bool,
    failed: Option<String>,
}

struct OpenSegment {
    dir: PathBuf,
    path: PathBuf,
    first: TxId,
    file: File,
}

/// What a syncer's turn does after writing the pending batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    Sync,
    /// Finalize the segments and open the next ones.
    Roll,
    /// Finalize the segments (shutdown).
    Close,
}

impl FileJournal {
    /// Starts a new in-progress segment whose first edit will be
    /// `first_txid` in each of `dirs` (the name dirs' `current/`).
    pub fn open(dirs: &[PathBuf], first_txid: TxId) -> Result<Self, JournalError> {
        let mut segments = Vec::new();
        for dir in dirs {
            let path = dir.join(segment::in_progress_name(first_txid));
            let file = create_segment(&path).map_err(|source| JournalError::Io {
                path: path.clone(),
                source,
            })?;
            rdfs_common::durable::sync_dir(dir).map_err(|source| JournalError::Io {
                path: dir.clone(),
                source,
            })?;
            segments.push(OpenSegment {
                dir: dir.clone(),
                path,
                first: first_txid,
                file,
            });
        }
        let last = first_txid.saturating_sub(1);
        Ok(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    pending: Vec::new(),
                    last_appended: last,
                    syncing: false,
                    failed: None,
                }),
                synced: AtomicU64::new(last),
                sync_done: Notify::new(),
                segments: std::sync::Mutex::new(segments),
                dirs: Mutex::new(dirs.to_vec()),
                syncs: AtomicU64::new(0),
            }),
        })
    }

    /// Flushes what is pending and renames the in-progress segments to
    /// their finalized names (clean shutdown); nothing may be appended after.
    pub async fn close(&self) -> Result<(), JournalError> {
        self.take_turn(None).await?;
        self.run_turn(Flush::Close).await.map(|_| ())
    }

    /// Batches written and synced since the journal opened (each one fsync
    /// per directory, however many edits it held).
    pub fn syncs(&self) -> u64 {
        self.inner.syncs.load(Ordering::Relaxed)
    }

    /// The directories still written to.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.inner.dirs.lock().clone()
    }

    /// Waits for the syncer's turn. `Ok(true)`: the caller holds it and must
    /// run it. `Ok(false)`: every edit up to `until` is already durable.
    async fn take_turn(&self, until: Option<TxId>) -> Result<bool, JournalError> {
        loop {
            let wait = {
                let mut state = self.inner.state.lock();
                if let Some(failed) = &state.failed {
                    return Err(JournalError::Failed(failed.clone()));
                }
                if until.is_some_and(|txid| self.inner.synced.load(Ordering::Acquire) >= txid) {
                    return Ok(false);
                }
                if state.syncing {
                    // Created under the lock, so the syncer's notify (which
                    // takes the lock first) cannot be missed.
                    Some(self.inner.sync_done.notified())
                } else {
                    state.syncing = true;
                    None
                }
            };
            match wait {
                Some(notified) => notified.await,
                None => return Ok(true),
            }
        }
    }

    /// Runs the turn the caller holds in a separate task, so a cancelled
    /// caller cannot strand it; the first txid of the new segment on a roll.
    async fn run_turn(&self, flush: Flush) -> Result<TxId, JournalError> {
        let inner = Arc::clone(&self.inner);
        match tokio::spawn(async move { inner.flush(flush).await }).await {
            Ok(result) => result.map_err(JournalError::Failed),
            Err(err) => {
                // The task died holding the turn: the log cannot be trusted.
                let why = format!("edit log task failed: {err}");
                self.inner.fail(why.clone());
                Err(JournalError::Failed(why))
            }
        }
    }
}

impl Journal for FileJournal {
    fn append(&self, op: Op, rpc: Option<&RpcId>) -> Result<TxId, JournalError> {
        let mut state = self.inner.state.lock();
        if let Some(failed) = &state.failed {
            return Err(JournalError::Failed(failed.clone()));
        }
        let txid = state.last_appended + 1;
        encode_record(&record(txid, op, rpc), &mut state.pending);
        state.last_appended = txid;
        Ok(txid)
    }

    fn sync(&self, txid: TxId) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            while self.take_turn(Some(txid)).await? {
                self.run_turn(Flush::Sync).await?;
            }
            Ok(())
        })
    }

    fn last_txid(&self) -> TxId {
        self.inner.state.lock().last_appended
    }

    fn roll(&self) -> BoxFuture<'_, Result<TxId, JournalError>> {
        Box::pin(async move {
            self.take_turn(None).await?;
            self.run_turn(Flush::Roll).await
        })
    }
}

fn create_segment(path: &std::path::Path) -> std::io::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    file.write_all(&segment::header(segment::LOCAL_EPOCH))?;
    file.sync_all()?;
    Ok(file)
}

impl Inner {
    /// Marks the log failed and releases the turn.
    fn fail(&self, why: String) {
        {
            let mut state = self.state.lock();
            state.syncing = false;
            if state.failed.is_none() {
                tracing::error!(error = %why, "edit log can no longer be written; no further edits are accepted");
                state.failed = Some(why);
            }
        }
        self.sync_done.notify_waiters();
    }

    /// Writes and syncs everything pending, then rolls or closes the
    /// segments as asked; the caller holds the turn. Returns the first txid
    /// of the open segment after a roll (the next txid otherwise).
    async fn flush(self: Arc<Self>, flush: Flush) -> Result<TxId, String> {
        let (batch, upto) = {
            let mut state = self.state.lock();
            (std::mem::take(&mut state.pending), state.last_appended)
        };
        let this = Arc::clone(&self);
        let result = tokio::task::spawn_blocking(move || {
            this.write_batch(&batch)?;
            match flush {
                Flush::Sync => Ok(upto + 1),
                Flush::Roll => this.finalize_segments(upto, true),
                Flush::Close => this.finalize_segments(upto, false),
            }
        })
        .await
        .unwrap_or_else(|err| Err(format!("edit log writer panicked: {err}")));
        match result {
            Ok(next) => {
                {
                    let mut state = self.state.lock();
                    state.syncing = false;
                    self.synced.store(upto, Ordering::Release);
                }
                self.sync_done.notify_waiters();
                Ok(next)
            }
            Err(err) => {
                self.fail(err.clone());
                Err(err)
            }
        }
    }

    /// Finalizes each open segment at `last` and, when `reopen`, opens the
    /// next one. A segment with no edits is left open (or, closing, removed).
    fn finalize_segments(&self, last: TxId, reopen: bool) -> Result<TxId, String> {
        let mut segments = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        let mut failure = String::new();
        let mut kept = Vec::new();
        for mut open in segments.drain(..) {
            if last < open.first {
                if reopen {
                    kept.push(open);
                } else {
                    drop(open.file);
                    let _ = std::fs::remove_file(&open.path);
                }
                continue;
            }
            let finalized = open.dir.join(segment::finalized_name(open.first, last));
            let next_path = open.dir.join(segment::in_progress_name(last + 1));
            let result = (|| -> std::io::Result<Option<File>> {
                std::fs::rename(&open.path, &finalized)?;
                let next = if reopen {
                    Some(create_segment(&next_path)?)
                } else {
                    None
                };
                rdfs_common::durable::sync_dir(&open.dir)?;
                Ok(next)
            })();
            match result {
                Ok(Some(file)) => {
                    open.file = file;
                    open.path = next_path;
                    open.first = last + 1;
                    kept.push(open);
                }
                Ok(None) => {}
                Err(err) => {
                    failure = format!("{}: {err}", open.dir.display());
                    tracing::error!(dir = %open.dir.display(), error = %err,
                        "cannot finalize the edit log segment in this name directory; it is dropped from service");
                }
            }
        }
        *segments = kept;
        *self.dirs.lock() = segments.iter().map(|s| s.dir.clone()).collect();
        if reopen && segments.is_empty() {
            return Err(format!(
                "no name directory is left to write the edit log to; last error: {failure}"
            ));
        }
        if reopen {
            tracing::info!(finalized_at = last, next = last + 1, "edit log rolled");
        }
        Ok(last + 1)
    }

    /// Appends `batch` to every healthy segment and syncs it. A directory
    /// that fails is dropped from service; the batch is durable as long as
    /// one directory took it.
    fn write_batch(&self, batch: &[u8]) -> Result<(), String> {
        let mut segments = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        if batch.is_empty() {
            return Ok(());
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let mut last_error = String::from("no name directories configured");
        let before = segments.len();
        segments.retain_mut(|open| {
            match open
                .file
                .write_all(batch)
                .and_then(|()| open.file.sync_data())
            {
                Ok(()) => true,
                Err(err) => {
                    last_error = format!("{}: {err}", open.path.display());
                    tracing::error!(segment = %open.path.display(), error = %err,
                    "edit log write failed; this name directory is dropped from service");
                    false
                }
            }
        });
        if segments.len() != before {
            *self.dirs.lock() = segments.iter().map(|s| s.dir.clone()).collect();
        }
        if segments.is_empty() {
            Err(format!(
                "no name directory is left to write the edit log to; last error: {last_error}"
            ))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit_log::segment::{list_segments, read_segment};
    use rdfs_proto::editlog::SetPermission;

    fn op(mode: u32) -> Op {
        Op::SetPermission(SetPermission {
            inode_id: 16385,
            mode,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_syncs_share_batches_and_everything_lands() {
        let dirs = [
            tempfile::tempdir().expect("tmp"),
            tempfile::tempdir().expect("tmp"),
        ];
        let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
        let journal = Arc::new(FileJournal::open(&paths, 1).expect("opens"));
        let mut tasks = Vec::new();
        for i in 0..64 {
            let journal = Arc::clone(&journal);
            tasks.push(tokio::spawn(async move {
                let txid = journal.append(op(i), None).expect("appends");
                journal.sync(txid).await.expect("syncs");
                txid
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(journal.last_txid(), 64);
        journal.close().await.expect("closes");
        for dir in &paths {
            let segments = list_segments(dir).expect("lists");
            assert_eq!(segments.len(), 1);
            assert_eq!(segments[0].last, Some(64));
            let contents = read_segment(&segments[0].path).expect("reads");
            let txids: Vec<TxId> = contents.records.iter().map(|r| r.txid).collect();
            assert_eq!(txids, (1..=64).collect::<Vec<_>>());
        }
    }
}
