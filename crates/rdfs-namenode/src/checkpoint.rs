//! Checkpoints: saving the namespace as a new fsimage so start-up replays
//! few edits, and deleting images and edit segments no longer needed.
//!
//! A checkpoint encodes the namespace under the read lock (writers wait
//! while it is encoded, never while it is written), waits until the edit log
//! is durable up to the image's txid (so an image never gets ahead of the
//! log), writes the image to every name directory still in service (temp
//! file, fsync, rename), rolls the edit log, and purges.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::edit_log::{FileJournal, Journal, JournalError, TxId};
use crate::namesystem::Namesystem;
use crate::storage::NameStorage;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the fsimage could not be written to any name directory: {0}")]
    NoDirectory(String),
    #[error("checkpoint task failed: {0}")]
    Task(String),
}

/// When checkpoints happen.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    pub txns: u64,
    pub period: Duration,
    pub check: Duration,
    pub retained_images: usize,
}

struct Newest {
    txid: TxId,
    at: Instant,
}

pub struct Checkpointer {
    namesystem: Arc<Namesystem>,
    journal: Arc<FileJournal>,
    policy: CheckpointPolicy,
    /// One checkpoint at a time; holds the newest image's txid and age.
    newest: tokio::sync::Mutex<Newest>,
}

impl Checkpointer {
    pub fn new(
        namesystem: Arc<Namesystem>,
        journal: Arc<FileJournal>,
        image_txid: TxId,
        policy: CheckpointPolicy,
    ) -> Self {
        Self {
            namesystem,
            journal,
            policy,
            newest: tokio::sync::Mutex::new(Newest {
                txid: image_txid,
                at: Instant::now(),
            }),
        }
    }

    /// Saves a new fsimage now (`dfsadmin -saveNamespace`); its txid.
    pub async fn save(&self) -> Result<TxId, CheckpointError> {
        let mut newest = self.newest.lock().await;
        let started = Instant::now();
        let namesystem = Arc::clone(&self.namesystem);
        let (txid, image) = tokio::task::spawn_blocking(move || namesystem.encode_image())
            .await
            .map_err(|e| CheckpointError::Task(e.to_string()))?;
        let encoded = started.elapsed();
        self.journal.sync(txid).await?;
        let dirs = self.journal.dirs();
        let name = crate::fsimage::file_name(txid);
        let size = image.len();
        let write_dirs = dirs.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut written = 0;
            let mut last_error = String::from("no name directory in service");
            for dir in &write_dirs {
                let path = dir.join(&name);
                match rdfs_common::durable::write_file(&path, &image) {
                    Ok(()) => written += 1,
                    Err(err) => {
                        last_error = format!("{}: {err}", path.display());
                        tracing::error!(image = %path.display(), error = %err, "cannot write fsimage to this name directory");
                    }
                }
            }
            (written, last_error)
        })
        .await
        .map_err(|e| CheckpointError::Task(e.to_string()))?;
        if written.0 == 0 {
            return Err(CheckpointError::NoDirectory(written.1));
        }
        self.journal.roll().await?;
        let retained = self.policy.retained_images;
        let _ = tokio::task::spawn_blocking(move || NameStorage::purge(&dirs, retained)).await;
        newest.txid = txid;
        newest.at = Instant::now();
        tracing::info!(
            txid,
            bytes = size,
            encode_ms = encoded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "checkpoint saved"
        );
        Ok(txid)
    }

    /// Rolls the edit log (`dfsadmin -rollEdits`); the first txid of the new
    /// segment.
    pub async fn roll_edits(&self) -> Result<TxId, CheckpointError> {
        Ok(self.journal.roll().await?)
    }

    async fn due(&self) -> bool {
        let newest = self.newest.lock().await;
        let pending = self.journal.last_txid().saturating_sub(newest.txid);
        pending > 0 && (pending >= self.policy.txns || newest.at.elapsed() >= self.policy.period)
    }

    /// Checkpoints whenever enough edits or time have passed, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.policy.check);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.due().await
                && let Err(err) = self.save().await
            {
                tracing::error!(error = %err, "checkpoint failed; the edit log keeps every change, and the next check tries again");
            }
        }
    }
}
