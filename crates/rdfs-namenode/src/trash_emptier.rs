//! The namenode's trash emptier (HDFS's `TrashPolicyDefault.Emptier`):
//! every checkpoint interval, on the active namenode, each user's trash
//! under `/user/*/.Trash` is checkpointed and its checkpoints older than
//! the trash interval are deleted, so what `-rm` moved there is freed in
//! the end. It works through the namesystem's own operations, as the
//! superuser, so its changes are logged and checked like any client's.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use rdfs_common::time::now_ms;
use rdfs_common::trash::{TrashStore, expunge};

use crate::error::NamenodeError;
use crate::ha::{Category, NamenodeHandle};
use crate::namesystem::{Caller, Namesystem};

/// The namesystem seen as a trash store, by the superuser.
struct Store<'a> {
    ns: &'a Namesystem,
    caller: &'a Caller,
}

impl TrashStore for Store<'_> {
    type Error = NamenodeError;

    async fn exists(&self, path: &str) -> Result<bool, NamenodeError> {
        Ok(self.ns.get_file_info(self.caller, path)?.is_some())
    }

    async fn children(&self, dir: &str) -> Result<Vec<String>, NamenodeError> {
        let mut names = Vec::new();
        let mut after = Vec::new();
        while let Some(page) = self.ns.get_listing(self.caller, dir, &after, false)? {
            for entry in &page.entries {
                names.push(String::from_utf8_lossy(&entry.name).into_owned());
            }
            match page.entries.last() {
                Some(last) if page.remaining > 0 => after = last.name.clone(),
                _ => break,
            }
        }
        Ok(names)
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<bool, NamenodeError> {
        self.ns.rename(self.caller, src, dst).await
    }

    async fn delete(&self, path: &str) -> Result<bool, NamenodeError> {
        self.ns.delete(self.caller, path, true).await
    }
}

/// Checkpoints and expires every user's trash once.
pub async fn empty_once(ns: &Namesystem, superuser: &Caller) -> Result<(), NamenodeError> {
    let interval = ns.config().trash_interval;
    let store = Store {
        ns,
        caller: superuser,
    };
    let now = now_ms();
    for user in store.children("/user").await? {
        let root = format!("/user/{user}/.Trash");
        match expunge(&store, &root, interval, false, now).await {
            Ok(done) => {
                if let Some(created) = &done.created {
                    tracing::info!(checkpoint = %created, "created trash checkpoint");
                }
                for deleted in &done.deleted {
                    tracing::info!(checkpoint = %deleted, "deleted trash checkpoint");
                }
            }
            // One user's trash (a file where a directory should be, say)
            // must not stop the others'.
            Err(err) => tracing::warn!(trash = %root, error = %err, "cannot empty trash"),
        }
    }
    Ok(())
}

/// Runs the emptier until `stop`, when the trash is on.
pub async fn run(handle: Arc<NamenodeHandle>, superuser: Caller, stop: CancellationToken) {
    let period = handle.get().config().trash_checkpoint_interval;
    if period.is_zero() {
        return;
    }
    tracing::info!(
        interval_s = handle.get().config().trash_interval.as_secs_f64(),
        checkpoint_s = period.as_secs_f64(),
        "trash emptier running"
    );
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        // Only the active namenode changes the namespace.
        let Ok(ns) = handle.active(Category::Write) else {
            continue;
        };
        if let Err(err) = empty_once(&ns, &superuser).await {
            tracing::warn!(error = %err, "trash emptier round failed");
        }
    }
}
