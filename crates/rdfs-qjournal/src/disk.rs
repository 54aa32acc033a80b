//! The journalnode's storage as a journal uses it: the few file operations
//! it needs, each with the durability it promises. [`FsDisk`] is the local
//! filesystem; the simulator's disk implements the same trait and, when a
//! simulated journalnode crashes, keeps only what was synced — so the
//! journal code that runs in the simulator is the code that runs here.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rdfs_common::durable;

/// A readable, seekable view of one file.
pub(crate) trait ReadSeek: Read + Seek + Send {}

impl<T: Read + Seek + Send> ReadSeek for T {}

/// A file open for writing in place.
pub(crate) trait DiskFile: Send {
    /// Writes all of `bytes` at `offset`; not durable until synced.
    fn write_all_at(&mut self, bytes: &[u8], offset: u64) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes the file's data (and its length) durable.
    fn sync_data(&mut self) -> io::Result<()>;
}

pub(crate) trait Disk: Send + Sync + 'static {
    /// The whole file; `NotFound` when it does not exist.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The names of the entries of `dir`; `NotFound` when it does not
    /// exist.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
    fn is_dir(&self, path: &Path) -> bool;
    /// Creates `dir` and its parents (durable once their parents are
    /// synced).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Replaces `path` with `bytes` atomically and durably: after a crash
    /// it holds either the old content or the new.
    fn write_durably(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Creates (or truncates) `path` holding `bytes`, its data synced; the
    /// directory entry is durable only after [`Disk::sync_dir`].
    fn create_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadSeek>>;
    /// Durable after [`Disk::sync_dir`] of the directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Durable after [`Disk::sync_dir`] of the directory.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (created, renamed, removed) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The local filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FsDisk;

struct FsFile(File);

impl DiskFile for FsFile {
    fn write_all_at(&mut self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(bytes, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Disk for FsDisk {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    fn write_durably(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        durable::write_file(path, bytes)
    }

    fn create_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(FsFile(OpenOptions::new().write(true).open(path)?)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadSeek>> {
        Ok(Box::new(File::open(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        durable::sync_dir(dir)
    }
}
