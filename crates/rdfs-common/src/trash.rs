//! HDFS's trash layout, shared by the shell (which moves what `-rm` removes
//! there) and the namenode's emptier (which checkpoints and expires it):
//! `/user/<user>/.Trash/Current/<original path>`, and checkpoints of
//! `Current` named by the local time they were taken, `yyMMddHHmmss`
//! (`-1`, `-2`, ... when two fall in the same second).

use chrono::{Local, NaiveDateTime, TimeZone};

/// A user's trash directory, below their home.
pub fn trash_root(user: &str) -> String {
    format!("/user/{user}/.Trash")
}

/// Where what is removed now goes, inside a trash root.
pub const CURRENT: &str = "Current";

/// The name of a checkpoint taken at `ms` (Unix milliseconds).
pub fn checkpoint_name(ms: u64) -> String {
    Local.timestamp_millis_opt(ms as i64).single().map_or_else(
        || "700101000000".to_string(),
        |t| t.format("%y%m%d%H%M%S").to_string(),
    )
}

/// When the checkpoint `name` was taken (Unix milliseconds); `None` for
/// anything in a trash root that is not a checkpoint (such as `Current`).
pub fn checkpoint_time(name: &str) -> Option<u64> {
    let stamp = name.split_once('-').map_or(name, |(stamp, _)| stamp);
    if stamp.len() != 12 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(stamp, "%y%m%d%H%M%S").ok()?;
    let local = Local.from_local_datetime(&naive).earliest()?;
    u64::try_from(local.timestamp_millis()).ok()
}

/// What a trash needs from a filesystem (the client's calls in the shell,
/// the namesystem's in the namenode's emptier).
pub trait TrashStore: Sync {
    type Error;
    fn exists(&self, path: &str) -> impl Future<Output = Result<bool, Self::Error>> + Send;
    /// The names in directory `dir` (none when it does not exist).
    fn children(&self, dir: &str) -> impl Future<Output = Result<Vec<String>, Self::Error>> + Send;
    fn rename(
        &self,
        src: &str,
        dst: &str,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
    /// Deletes `path` and everything below it.
    fn delete(&self, path: &str) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

/// What an expunge did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expunged {
    pub created: Option<String>,
    pub deleted: Vec<String>,
}

/// Checkpoints the trash `root` and removes its checkpoints taken before
/// `now - interval` (all of them with `immediate`). As HDFS: expired
/// checkpoints go before `Current` becomes one, so a new checkpoint lives
/// a whole interval.
pub async fn expunge<S: TrashStore>(
    store: &S,
    root: &str,
    interval: std::time::Duration,
    immediate: bool,
    now: u64,
) -> Result<Expunged, S::Error> {
    let mut done = Expunged::default();
    if !store.exists(root).await? {
        return Ok(done);
    }
    if !immediate {
        let expired_before = now.saturating_sub(interval.as_millis() as u64);
        delete_checkpoints(store, root, |taken| taken < expired_before, &mut done).await?;
    }
    let current = format!("{root}/{CURRENT}");
    if store.exists(&current).await? {
        let name = checkpoint_name(now);
        let mut checkpoint = format!("{root}/{name}");
        let mut attempt = 0;
        while store.exists(&checkpoint).await? {
            attempt += 1;
            checkpoint = format!("{root}/{name}-{attempt}");
        }
        if store.rename(&current, &checkpoint).await? {
            done.created = Some(checkpoint);
        }
    }
    if immediate {
        delete_checkpoints(store, root, |_| true, &mut done).await?;
    }
    Ok(done)
}

async fn delete_checkpoints<S: TrashStore>(
    store: &S,
    root: &str,
    expired: impl Fn(u64) -> bool,
    done: &mut Expunged,
) -> Result<(), S::Error> {
    for name in store.children(root).await? {
        if checkpoint_time(&name).is_some_and(&expired) {
            let path = format!("{root}/{name}");
            if store.delete(&path).await? {
                done.deleted.push(path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_read_back_to_the_second() {
        let ms = 1_796_000_000_000;
        let name = checkpoint_name(ms);
        assert_eq!(name.len(), 12);
        assert_eq!(checkpoint_time(&name), Some(ms));
        assert_eq!(checkpoint_time(&format!("{name}-1")), Some(ms));
        assert_eq!(checkpoint_time(CURRENT), None);
        assert_eq!(checkpoint_time("9912319999xx"), None);
        assert_eq!(trash_root("alice"), "/user/alice/.Trash");
    }
}
