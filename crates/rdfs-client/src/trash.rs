//! HDFS's trash, as the shell uses it (Hadoop's `TrashPolicyDefault`):
//! `-rm` moves a path to `/user/<user>/.Trash/Current/<path>` while the
//! trash is on, and `-expunge` turns `Current` into a checkpoint and
//! removes the checkpoints older than the trash interval. The namenode's
//! emptier does the same for every user on a schedule.

use std::time::Duration;

use rdfs_common::time::now_ms;
use rdfs_common::trash::{CURRENT, Expunged, TrashStore, expunge, trash_root};

use crate::client::DfsClient;
use crate::error::{ClientError, Result};

impl DfsClient {
    /// How long the trash keeps what is removed: the namenode's
    /// `fs.trash.interval` when it sets one, else this client's (zero: no
    /// trash).
    pub async fn trash_interval(&self, configured: Duration) -> Result<Duration> {
        let server = self.server_defaults().await?.trash_interval_minutes;
        Ok(if server > 0 {
            Duration::from_secs(server * 60)
        } else {
            configured
        })
    }

    /// Moves `path` into this user's trash; where it went, or `None` when
    /// it is already in the trash (the caller then deletes it outright).
    pub async fn move_to_trash(&self, path: &str) -> Result<Option<String>> {
        let root = trash_root(self.user());
        if path == root || path.starts_with(&format!("{root}/")) {
            return Ok(None);
        }
        if path == "/" || root.starts_with(&format!("{}/", path.trim_end_matches('/'))) {
            return Err(ClientError::InvalidArgument(format!(
                "Cannot move \"{path}\" to the trash, as it contains the trash. Consider using -skipTrash option"
            )));
        }
        let current = format!("{root}/{CURRENT}");
        let mut target = format!("{current}{path}");
        let parent = rdfs_common::path::parent(&target);
        self.mkdirs(parent, 0o700, true).await?;
        if self.get_file_info(&target).await?.is_some() {
            // Removed before under the same name: keep both, as HDFS does.
            target = format!("{target}{}", now_ms());
        }
        if !self.rename(path, &target).await? {
            return Err(ClientError::InvalidArgument(format!(
                "Failed to move {path} to trash {target}"
            )));
        }
        Ok(Some(target))
    }

    /// `-expunge`: checkpoints this user's `Current` and deletes the
    /// checkpoints older than `interval` (all of them, `Current` first
    /// checkpointed, with `immediate`).
    pub async fn expunge(&self, interval: Duration, immediate: bool) -> Result<Expunged> {
        let root = trash_root(self.user());
        expunge(self, &root, interval, immediate, now_ms()).await
    }
}

impl TrashStore for DfsClient {
    type Error = ClientError;

    async fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.get_file_info(path).await?.is_some())
    }

    async fn children(&self, dir: &str) -> Result<Vec<String>> {
        Ok(self
            .list(dir)
            .await?
            .unwrap_or_default()
            .iter()
            .map(|entry| String::from_utf8_lossy(&entry.name).into_owned())
            .collect())
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<bool> {
        DfsClient::rename(self, src, dst).await
    }

    async fn delete(&self, path: &str) -> Result<bool> {
        DfsClient::delete(self, path, true).await
    }
}
