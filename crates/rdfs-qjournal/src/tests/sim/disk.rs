//! A simulated disk: files and directory entries in memory, each with the
//! state a crash would leave (what was synced). A crash keeps only that —
//! plus, for a file written past its last sync, a random prefix of the
//! unsynced bytes, as a torn write leaves. Faults are armed for a coming
//! operation: a crash in the middle of a call, or one failed operation (a
//! full disk) the journalnode lives through.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::rng::Rng;
use crate::disk::{Disk, DiskFile, ReadSeek};

#[derive(Debug, Default)]
struct FileData {
    data: Vec<u8>,
    synced: Vec<u8>,
}

/// A fault waiting for the disk operation it is armed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiskFault {
    /// The process dies at that operation: it and everything after fail.
    CrashAt(u64),
    /// That one operation fails (half done if it writes).
    FailAt(u64),
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<u64, FileData>,
    next_inode: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    ops: u64,
    fault: Option<DiskFault>,
    crashed: bool,
    /// Whether an injected fault has failed an operation since this was
    /// last cleared.
    injected: bool,
}

#[derive(Clone, Default)]
pub(crate) struct SimDisk {
    state: Arc<Mutex<State>>,
}

fn crashed() -> io::Error {
    io::Error::other("the journalnode crashed")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}", path.display()))
}

/// How an operation goes, decided before it runs.
enum Outcome {
    Run,
    /// Fail after doing half of a write.
    Fail,
    Crash,
}

impl State {
    fn begin(&mut self) -> Outcome {
        if self.crashed {
            return Outcome::Crash;
        }
        self.ops += 1;
        match self.fault {
            Some(DiskFault::CrashAt(at)) if self.ops >= at => {
                self.crashed = true;
                self.injected = true;
                self.fault = None;
                Outcome::Crash
            }
            Some(DiskFault::FailAt(at)) if self.ops >= at => {
                self.fault = None;
                self.injected = true;
                Outcome::Fail
            }
            _ => Outcome::Run,
        }
    }

    /// Fails unless the operation may run.
    fn check(&mut self) -> io::Result<()> {
        match self.begin() {
            Outcome::Run => Ok(()),
            Outcome::Fail => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (simulated)",
            )),
            Outcome::Crash => Err(crashed()),
        }
    }

    fn inode(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }

    /// An open file's contents; a handle outlives its name when the file
    /// is removed under it.
    fn file_mut(&mut self, inode: u64) -> io::Result<&mut FileData> {
        self.files
            .get_mut(&inode)
            .ok_or_else(|| io::Error::other("the file was removed"))
    }

    fn new_file(&mut self, data: Vec<u8>, synced: Vec<u8>) -> u64 {
        self.next_inode += 1;
        self.files
            .insert(self.next_inode, FileData { data, synced });
        self.next_inode
    }

    fn add_dirs(&mut self, dir: &Path) {
        let mut at = Some(dir);
        while let Some(path) = at {
            if path.as_os_str().is_empty() {
                break;
            }
            self.dirs.insert(path.to_path_buf());
            at = path.parent();
        }
    }
}

impl SimDisk {
    /// Arms `fault` for the operation `after` operations from now (1 is
    /// the next).
    pub(crate) fn arm(&self, crash: bool, after: u64) {
        let mut st = self.state.lock();
        let at = st.ops + after.max(1);
        st.fault = Some(if crash {
            DiskFault::CrashAt(at)
        } else {
            DiskFault::FailAt(at)
        });
    }

    /// Whether an injected fault failed an operation since the last call.
    pub(crate) fn take_injected(&self) -> bool {
        std::mem::take(&mut self.state.lock().injected)
    }

    pub(crate) fn has_armed_fault(&self) -> bool {
        self.state.lock().fault.is_some()
    }

    pub(crate) fn disarm(&self) {
        self.state.lock().fault = None;
    }

    /// A new file at `path` holding `bytes`, synced; its name is durable at
    /// once when `durable_name` (an atomic replace), else after a sync of
    /// its directory.
    fn create(&self, path: &Path, bytes: &[u8], durable_name: bool) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check()?;
        if let Some(dir) = path.parent()
            && !st.dirs.contains(dir)
        {
            return Err(not_found(dir));
        }
        let inode = st.new_file(bytes.to_vec(), bytes.to_vec());
        st.names.insert(path.to_path_buf(), inode);
        if durable_name {
            st.durable_names.insert(path.to_path_buf(), inode);
        }
        Ok(())
    }

    pub(crate) fn has_crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// What survives a crash: synced data and durable directory entries,
    /// and for files written past their last sync, a random prefix of the
    /// unsynced bytes (a torn write). The disk is usable again afterwards.
    pub(crate) fn crash(&self, rng: &mut Rng) {
        let mut st = self.state.lock();
        let st = &mut *st;
        for file in st.files.values_mut() {
            let synced = std::mem::take(&mut file.synced);
            let mut kept = synced.clone();
            if file.data.len() > synced.len() && file.data.starts_with(&synced) && rng.chance(0.5) {
                let extra = file.data.len() - synced.len();
                let keep = rng.below(extra as u64 + 1) as usize;
                kept.extend_from_slice(&file.data[synced.len()..synced.len() + keep]);
            }
            file.data = kept.clone();
            file.synced = kept;
        }
        st.names = st.durable_names.clone();
        let live: BTreeSet<u64> = st.names.values().copied().collect();
        st.files.retain(|inode, _| live.contains(inode));
        st.fault = None;
        st.crashed = false;
    }

    /// The current content of every file under `dir` whose name satisfies
    /// `keep`, by name (for checking what journalnodes hold).
    pub(crate) fn files_in(
        &self,
        dir: &Path,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<(String, Vec<u8>)> {
        let st = self.state.lock();
        st.names
            .iter()
            .filter(|(path, _)| path.parent() == Some(dir))
            .filter_map(|(path, inode)| {
                let name = path.file_name()?.to_str()?.to_string();
                keep(&name).then(|| (name, st.files[inode].data.clone()))
            })
            .collect()
    }
}

struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
}

impl DiskFile for SimFile {
    fn write_all_at(&mut self, bytes: &[u8], offset: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        let (len, result) = match st.begin() {
            Outcome::Run => (bytes.len(), Ok(())),
            Outcome::Fail => (
                bytes.len() / 2,
                Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device (simulated)",
                )),
            ),
            Outcome::Crash => (bytes.len() / 2, Err(crashed())),
        };
        let file = st.file_mut(self.inode)?;
        let offset = offset as usize;
        if file.data.len() < offset {
            file.data.resize(offset, 0);
        }
        let end = offset + len;
        if file.data.len() < end {
            file.data.resize(end, 0);
        }
        file.data[offset..end].copy_from_slice(&bytes[..len]);
        result
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check()?;
        let file = st.file_mut(self.inode)?;
        file.data.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check()?;
        let file = st.file_mut(self.inode)?;
        file.synced = file.data.clone();
        Ok(())
    }
}

impl Disk for SimDisk {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut st = self.state.lock();
        st.check()?;
        let inode = st.inode(path)?;
        Ok(st.files[&inode].data.clone())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut st = self.state.lock();
        st.check()?;
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let files = st.names.keys().filter(|path| path.parent() == Some(dir));
        let dirs = st.dirs.iter().filter(|path| path.parent() == Some(dir));
        Ok(files
            .chain(dirs)
            .filter_map(|path| Some(path.file_name()?.to_str()?.to_string()))
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.state.lock();
        st.names.contains_key(path) || st.dirs.contains(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.state.lock().dirs.contains(path)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check()?;
        st.add_dirs(dir);
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check()?;
        st.names.retain(|path, _| !path.starts_with(dir));
        st.durable_names.retain(|path, _| !path.starts_with(dir));
        st.dirs.retain(|path| !path.starts_with(dir));
        Ok(())
    }

    fn write_durably(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.create(path, bytes, true)
    }

    fn create_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.create(path, bytes, false)
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let mut st = self.state.lock();
        st.check()?;
        let inode = st.inode(path)?;
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            inode,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadSeek>> {
        Ok(Box::new(io::Cursor::new(self.read(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check()?;
        let inode = st.names.remove(from).ok_or_else(|| not_found(from))?;
        st.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check()?;
        st.names.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.check()?;
        let st = &mut *st;
        st.durable_names
            .retain(|path, _| path.parent() != Some(dir));
        for (path, inode) in &st.names {
            if path.parent() == Some(dir) {
                st.durable_names.insert(path.clone(), *inode);
            }
        }
        Ok(())
    }
}
