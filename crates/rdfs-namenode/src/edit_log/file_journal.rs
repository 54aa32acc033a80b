//! Edit log segments written to every name directory, with group commit.
//!
//! Appends only encode into a pending buffer. A sync takes the whole buffer
//! (every edit appended so far, by any number of RPCs), writes it to each
//! directory's segment and fdatasyncs once; callers that arrive while a sync
//! is running wait for it and the next one covers them all. The write runs
//! in its own task so an RPC that is cancelled mid-sync cannot leave the log
//! stuck.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::segment::{self, encode_record};
use super::{EditRecord, Journal, JournalError, Op, TxId};

pub struct FileJournal {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Every edit up to here is durable in every healthy directory.
    synced: AtomicU64,
    sync_done: Notify,
    /// Used only by the task doing a sync, one at a time.
    segments: std::sync::Mutex<Vec<OpenSegment>>,
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

impl FileJournal {
    /// Starts a new in-progress segment whose first edit will be
    /// `first_txid` in each of `dirs` (the name dirs' `current/`).
    pub fn open(dirs: &[PathBuf], first_txid: TxId) -> Result<Self, JournalError> {
        let mut segments = Vec::new();
        for dir in dirs {
            let path = dir.join(segment::in_progress_name(first_txid));
            let io = |source| JournalError::Io {
                path: path.clone(),
                source,
            };
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .map_err(io)?;
            file.write_all(&segment::header()).map_err(io)?;
            file.sync_all().map_err(io)?;
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
                syncs: AtomicU64::new(0),
            }),
        })
    }

    /// Syncs what is pending and renames the in-progress segments to their
    /// finalized names (clean shutdown).
    pub async fn close(&self) -> Result<(), JournalError> {
        let last = self.last_txid();
        self.sync(last).await?;
        let segments = std::mem::take(
            &mut *self
                .inner
                .segments
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for open in segments {
            drop(open.file);
            if last < open.first {
                // Nothing was written to this segment.
                let _ = std::fs::remove_file(&open.path);
                continue;
            }
            let finalized = open.dir.join(segment::finalized_name(open.first, last));
            std::fs::rename(&open.path, &finalized).map_err(|source| JournalError::Io {
                path: open.path.clone(),
                source,
            })?;
            let _ = rdfs_common::durable::sync_dir(&open.dir);
        }
        Ok(())
    }
}

impl FileJournal {
    /// Waits for the syncer's turn. `Ok(true)`: the caller holds it and must
    /// flush. `Ok(false)`: every edit up to `until` is already durable.
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

    /// Flushes (and rolls) in a separate task: a cancelled caller must not
    /// strand the turn. The new segment's first txid when rolled.
    async fn run_flush(&self, roll: bool) -> Option<TxId> {
        let inner = Arc::clone(&self.inner);
        match tokio::spawn(async move { inner.flush(roll).await }).await {
            Ok(first) => first,
            Err(err) => {
                tracing::error!(error = %err, "edit log sync task failed");
                None
            }
        }
    }

    /// Batches written and synced since the journal opened (each one fsync
    /// per directory, however many edits it held).
    pub fn syncs(&self) -> u64 {
        self.inner.syncs.load(Ordering::Relaxed)
    }

    /// The directories still written to.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.inner
            .segments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| s.dir.clone())
            .collect()
    }
}

impl Journal for FileJournal {
    fn append(&self, op: Op) -> Result<TxId, JournalError> {
        let mut state = self.inner.state.lock();
        if let Some(failed) = &state.failed {
            return Err(JournalError::Failed(failed.clone()));
        }
        let txid = state.last_appended + 1;
        encode_record(&EditRecord { txid, op: Some(op) }, &mut state.pending);
        state.last_appended = txid;
        Ok(txid)
    }

    fn sync(&self, txid: TxId) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            while self.take_turn(Some(txid)).await? {
                self.run_flush(false).await;
            }
            Ok(())
        })
    }

    fn roll(&self) -> BoxFuture<'_, Result<TxId, JournalError>> {
        Box::pin(async move {
            self.take_turn(None).await?;
            match self.run_flush(true).await {
                Some(first) => Ok(first),
                None => Err(JournalError::Failed(
                    self.inner
                        .state
                        .lock()
                        .failed
                        .clone()
                        .unwrap_or_else(|| "roll failed".into()),
                )),
            }
        })
    }

    fn last_txid(&self) -> TxId {
        self.inner.state.lock().last_appended
    }
}

impl Inner {
    /// Writes and syncs everything pending, then (when `roll`) finalizes the
    /// segments and opens the next; the caller holds the turn. Returns the
    /// first txid of the open segment when it rolled.
    async fn flush(self: Arc<Self>, roll: bool) -> Option<TxId> {
        let (batch, upto) = {
            let mut state = self.state.lock();
            (std::mem::take(&mut state.pending), state.last_appended)
        };
        let this = Arc::clone(&self);
        let result = tokio::task::spawn_blocking(move || {
            this.write_batch(&batch)?;
            if roll {
                this.roll_segments(upto).map(Some)
            } else {
                Ok(None)
            }
        })
        .await
        .unwrap_or_else(|err| Err(format!("edit log writer panicked: {err}")));
        let rolled = {
            let mut state = self.state.lock();
            state.syncing = false;
            match result {
                Ok(rolled) => {
                    self.synced.store(upto, Ordering::Release);
                    rolled
                }
                Err(err) => {
                    tracing::error!(error = %err, "edit log can no longer be written; no further edits are accepted");
                    state.failed = Some(err);
                    None
                }
            }
        };
        self.sync_done.notify_waiters();
        rolled
    }

    /// Finalizes each open segment at `last` and opens the next one. A
    /// segment with no edits yet is left open.
    fn roll_segments(&self, last: TxId) -> Result<TxId, String> {
        let mut segments = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        let mut failure = String::new();
        let mut rolled = Vec::new();
        for mut open in segments.drain(..) {
            if last < open.first {
                rolled.push(open);
                continue;
            }
            let finalized = open.dir.join(segment::finalized_name(open.first, last));
            let next_path = open.dir.join(segment::in_progress_name(last + 1));
            let result = (|| -> std::io::Result<File> {
                std::fs::rename(&open.path, &finalized)?;
                let mut file = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(&next_path)?;
                file.write_all(&segment::header())?;
                file.sync_all()?;
                rdfs_common::durable::sync_dir(&open.dir)?;
                Ok(file)
            })();
            match result {
                Ok(file) => {
                    open.file = file;
                    open.path = next_path;
                    open.first = last + 1;
                    rolled.push(open);
                }
                Err(err) => {
                    failure = format!("{}: {err}", open.dir.display());
                    tracing::error!(dir = %open.dir.display(), error = %err,
                        "cannot roll the edit log in this name directory; it is dropped from service");
                }
            }
        }
        *segments = rolled;
        if segments.is_empty() {
            return Err(format!(
                "no name directory is left to write the edit log to; last error: {failure}"
            ));
        }
        tracing::info!(finalized_at = last, next = last + 1, "edit log rolled");
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
                let txid = journal.append(op(i)).expect("appends");
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
