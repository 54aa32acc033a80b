//! Making files and directory entries durable: what a crash must not undo.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` atomically and durably: a temp file is
/// written and synced, renamed over `path`, and the directory synced, so a
/// crash leaves either the old content or the new, never a mix.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes the entries of `dir` (files created, renamed or removed) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The name of the lock file a storage directory holds while in use.
pub const LOCK_FILE: &str = "in_use.lock";

/// Takes the exclusive lock on storage directory `dir` (its
/// [`LOCK_FILE`]), so two daemons never share one; `None` when another
/// process holds it. The lock lasts as long as the returned file is open, and
/// the kernel drops it when the process dies, so a crash leaves no stale lock.
pub fn lock_dir(dir: &Path) -> std::io::Result<Option<File>> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    Ok(lock.try_lock().is_ok().then_some(lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("VERSION");
        write_file(&path, b"one").expect("first");
        write_file(&path, b"two").expect("second");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert_eq!(std::fs::read_dir(tmp.path()).expect("dir").count(), 1);
    }
}
