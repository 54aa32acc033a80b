//! One journal's persistent state on a journalnode (HDFS's `Journal`): the
//! namespace stamp, the promised and writer epochs, accepted recoveries and
//! the edit segments, under `<edits_dir>/<journal id>/current/`:
//!
//! ```text
//! VERSION                      namespace stamp, written at format
//! last-promised-epoch          "<epoch>\nwriter=<id>\n"
//! last-writer-epoch            "<epoch>\n"
//! paxos/<first txid>           recovery accepted for that segment
//! paxos/<first>.epoch-<e>.edits  its edits, before they replace the segment
//! edits_inprogress_<first>     the segment being written
//! edits_<first>-<last>         finalized segments
//! ```
//!
//! Every change is durable (file and directory synced) before the call that
//! made it returns: an acknowledgement that a crash could undo would break
//! the quorum's arithmetic. Calls do blocking I/O and are run off the async
//! runtime by the server.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use rdfs_common::time::{BootClock, BootInstant, Clock};
use rdfs_proto::{
    EditsChunk, GetEditLogManifestResponse, GetJournalStateResponse, JournalRequestInfo,
    NewEpochResponse, PrepareRecoveryResponse, SegmentStateProto,
};

use crate::disk::{Disk, DiskFile, FsDisk};
use crate::segment::{self, SegmentContents, SegmentError, SegmentFile, SegmentReader, TxId};
use crate::stamp::NamespaceStamp;

const VERSION_FILE: &str = "VERSION";
const PROMISED_EPOCH_FILE: &str = "last-promised-epoch";
const WRITER_EPOCH_FILE: &str = "last-writer-epoch";
const PAXOS_DIR: &str = "paxos";

/// Why a journal refused a call or failed it.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal '{0}' is not formatted")]
    NotFormatted(String),
    #[error("journal '{journal}' already holds {what}; format with force to erase it")]
    AlreadyFormatted { journal: String, what: String },
    #[error("journal '{journal}': {why}")]
    Mismatch { journal: String, why: String },
    #[error("epoch {epoch} is not newer than the promised epoch {promised}")]
    EpochNotNewer { epoch: u64, promised: u64 },
    #[error(
        "epoch {epoch} is older than promised epoch {promised}; another namenode has taken over"
    )]
    EpochTooOld { epoch: u64, promised: u64 },
    #[error(
        "the leadership lease of {holder} (epoch {epoch}) is held for another {remaining_ms} ms"
    )]
    LeaseHeld {
        holder: String,
        epoch: u64,
        remaining_ms: u64,
    },
    #[error("journal '{journal}' is out of sync with the writer: {why}")]
    OutOfSync { journal: String, why: String },
    #[error("journal '{journal}' would get a gap: expected txid {expected}, got {got}")]
    Gap {
        journal: String,
        expected: TxId,
        got: TxId,
    },
    #[error("invalid request for journal '{journal}': {why}")]
    Invalid { journal: String, why: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {why}")]
    Damaged { path: PathBuf, why: String },
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io {
        action,
        path,
        source,
    }
}

/// Journal ids name a directory under the edits dir: one plain path
/// segment, nothing that could climb out of it or hide.
pub fn validate_journal_id(id: &str) -> Result<(), JournalError> {
    let bad = |why: &str| JournalError::Invalid {
        journal: id.to_string(),
        why: format!("a journal id {why}"),
    };
    if id.is_empty() {
        return Err(bad("must not be empty"));
    }
    if id.len() > 255 {
        return Err(bad("must be at most 255 bytes"));
    }
    if id.starts_with('.') {
        return Err(bad("must not start with '.'"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad("may hold only letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

/// The segment a writer is appending to.
struct OpenSegment {
    first: TxId,
    /// The epoch that started it (its header's).
    epoch: u64,
    path: PathBuf,
    file: Box<dyn DiskFile>,
    /// Bytes durable on disk.
    len: u64,
    next_txid: TxId,
    /// Where each record starts, by `txid - first`, so tailers reading the
    /// newest edits seek straight to them.
    offsets: Vec<u64>,
}

#[derive(Default)]
struct State {
    stamp: Option<NamespaceStamp>,
    promised_epoch: u64,
    promised_writer: String,
    last_writer_epoch: u64,
    /// When this journalnode last heard from the writer of the promised
    /// epoch, on its own boot clock: the leadership lease.
    writer_heard_at: Option<BootInstant>,
    /// The lease the current writer asked for when it took its epoch. A
    /// candidate configured with a shorter lease must still wait out the
    /// holder's, or the holder would go on serving while another writes.
    /// Unknown (zero) after a restart, when `writer_heard_at` is reset to
    /// now and the candidate's own lease applies.
    holder_lease: Duration,
    /// The highest txid a writer said a majority acknowledged, or the end
    /// of a finalized segment. Only ever grows (until a forced format):
    /// committed edits stay committed whoever writes next.
    committed_txid: TxId,
    open: Option<OpenSegment>,
    /// Cached highest txid on disk; `None` after changes that can lower it.
    highest_txid: Option<TxId>,
    /// Test hook: appends that fail half-written, as on a full disk.
    #[cfg(test)]
    fail_appends: u32,
}

/// A recovery this journalnode accepted (HDFS's PersistedRecoveryPaxosData).
#[derive(Debug, Clone, PartialEq)]
struct Accepted {
    epoch: u64,
    segment: SegmentStateProto,
}

/// Where to read edits from: `from..=to` of the segment at `path`.
#[derive(Debug, Clone)]
pub(crate) struct ReadPart {
    path: PathBuf,
    seg_first: TxId,
    /// The epoch the segment's header names, when known: a file replaced
    /// since the plan was made (a journal recovered without this node) is
    /// not read.
    epoch: Option<u64>,
    /// Byte offset of `from`'s record when known.
    offset: Option<u64>,
    from: TxId,
    to: TxId,
}

#[derive(Default)]
pub(crate) struct ReadPlan {
    disk: Option<Arc<dyn Disk>>,
    pub(crate) parts: Vec<ReadPart>,
    /// The oldest txid held (0 when none).
    pub(crate) first_available: TxId,
}

pub(crate) struct Journal {
    id: String,
    root: PathBuf,
    dir: PathBuf,
    disk: Arc<dyn Disk>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl Journal {
    /// Opens the journal `id` under `edits_dir`, formatted or not. A torn
    /// tail on an in-progress segment (a crash mid-append) is cut off: the
    /// writer never counted that batch as acknowledged by this node.
    pub(crate) fn open(edits_dir: &Path, id: &str) -> Result<Self, JournalError> {
        Self::open_on(Arc::new(FsDisk), Arc::new(BootClock), edits_dir, id)
    }

    /// Like [`Self::open`], on `disk`, with leases on `clock`.
    pub(crate) fn open_on(
        disk: Arc<dyn Disk>,
        clock: Arc<dyn Clock>,
        edits_dir: &Path,
        id: &str,
    ) -> Result<Self, JournalError> {
        validate_journal_id(id)?;
        let root = edits_dir.join(id);
        let dir = root.join("current");
        let journal = Self {
            id: id.to_string(),
            root,
            dir,
            disk,
            clock,
            state: Mutex::new(State::default()),
        };
        let version = journal.dir.join(VERSION_FILE);
        let Some(text) = journal.read_text(&version)? else {
            return Ok(journal);
        };
        let stamp = NamespaceStamp::parse_version(&text).map_err(|why| JournalError::Damaged {
            path: version.clone(),
            why,
        })?;
        let (promised_epoch, promised_writer) =
            journal.read_epoch_file(&journal.dir.join(PROMISED_EPOCH_FILE))?;
        let (last_writer_epoch, _) =
            journal.read_epoch_file(&journal.dir.join(WRITER_EPOCH_FILE))?;
        let paxos = journal.dir.join(PAXOS_DIR);
        journal
            .disk
            .create_dir_all(&paxos)
            .map_err(io_err("create", &paxos))?;
        for first in journal.accepted_segments()? {
            journal.complete_half_done_accept(first)?;
        }
        let segments = journal.segments()?;
        for seg in segments.iter().filter(|s| s.last.is_none()) {
            journal.repair_in_progress(seg)?;
        }
        let committed_txid = segments.iter().filter_map(|s| s.last).max().unwrap_or(0);
        {
            let mut st = journal.state.lock();
            st.stamp = Some(stamp);
            st.promised_epoch = promised_epoch;
            st.promised_writer = promised_writer;
            st.last_writer_epoch = last_writer_epoch;
            st.committed_txid = committed_txid;
            // A restarted journalnode cannot know when the writer last
            // called: it assumes just now, so no one takes over before a
            // whole lease has passed without the writer.
            st.writer_heard_at = (promised_epoch > 0).then(|| journal.clock.now());
        }
        tracing::info!(journal = %id, promised_epoch, last_writer_epoch, segments = segments.len(),
            "journal opened");
        Ok(journal)
    }

    fn repair_in_progress(&self, seg: &SegmentFile) -> Result<(), JournalError> {
        let contents = self.read_segment(&seg.path)?;
        check_contiguous(
            &seg.path,
            seg.first,
            contents.records.iter().map(|r| r.txid),
        )?;
        let Some(why) = contents.torn_tail else {
            return Ok(());
        };
        let mut file = self
            .disk
            .open_write(&seg.path)
            .map_err(io_err("open", &seg.path))?;
        if contents.valid_len == 0 {
            // The header itself is torn: the file was being created and
            // holds no edits, so whose they were does not matter.
            file.set_len(0).map_err(io_err("truncate", &seg.path))?;
            file.write_all_at(&segment::header(0), 0)
                .map_err(io_err("write", &seg.path))?;
        } else {
            file.set_len(contents.valid_len)
                .map_err(io_err("truncate", &seg.path))?;
        }
        file.sync_data().map_err(io_err("sync", &seg.path))?;
        tracing::warn!(journal = %self.id, path = %seg.path.display(), why = %why,
            kept_edits = contents.records.len(), kept_bytes = contents.valid_len,
            "cut the torn tail off an in-progress segment");
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn fail_next_appends(&self, count: u32) {
        self.state.lock().fail_appends = count;
    }

    fn not_formatted(&self) -> JournalError {
        JournalError::NotFormatted(self.id.clone())
    }

    fn check_formatted(&self, st: &State) -> Result<(), JournalError> {
        match st.stamp {
            Some(_) => Ok(()),
            None => Err(self.not_formatted()),
        }
    }

    fn invalid(&self, why: impl Into<String>) -> JournalError {
        JournalError::Invalid {
            journal: self.id.clone(),
            why: why.into(),
        }
    }

    fn out_of_sync(&self, why: impl Into<String>) -> JournalError {
        JournalError::OutOfSync {
            journal: self.id.clone(),
            why: why.into(),
        }
    }

    /// Fencing: refuses calls from an older epoch. A newer epoch is adopted:
    /// its writer won a majority that this node was not part of.
    fn check_request(&self, st: &mut State, info: &JournalRequestInfo) -> Result<(), JournalError> {
        self.check_formatted(st)?;
        if info.epoch == 0 {
            return Err(self.invalid("epoch 0 is never a writer's"));
        }
        if info.epoch < st.promised_epoch {
            return Err(JournalError::EpochTooOld {
                epoch: info.epoch,
                promised: st.promised_epoch,
            });
        }
        if info.epoch > st.promised_epoch {
            tracing::info!(journal = %self.id, epoch = info.epoch, writer = %info.writer_id,
                previous = st.promised_epoch, "a call from a newer epoch: promising it");
            self.persist_promise(st, info.epoch, &info.writer_id)?;
            st.open = None;
        }
        st.writer_heard_at = Some(self.clock.now());
        st.committed_txid = st.committed_txid.max(info.committed_txid);
        Ok(())
    }

    /// Like [`Self::check_request`], and the caller must be the writer that
    /// started the current segment.
    fn check_write_request(
        &self,
        st: &mut State,
        info: &JournalRequestInfo,
    ) -> Result<(), JournalError> {
        self.check_request(st, info)?;
        if info.epoch != st.last_writer_epoch {
            return Err(self.out_of_sync(format!(
                "epoch {} has not started a segment here (the last writer epoch is {})",
                info.epoch, st.last_writer_epoch
            )));
        }
        Ok(())
    }

    fn persist_promise(
        &self,
        st: &mut State,
        epoch: u64,
        writer: &str,
    ) -> Result<(), JournalError> {
        let path = self.dir.join(PROMISED_EPOCH_FILE);
        self.disk
            .write_durably(&path, format!("{epoch}\nwriter={writer}\n").as_bytes())
            .map_err(io_err("write", &path))?;
        st.promised_epoch = epoch;
        st.promised_writer = writer.to_string();
        Ok(())
    }

    fn persist_writer_epoch(&self, st: &mut State, epoch: u64) -> Result<(), JournalError> {
        let path = self.dir.join(WRITER_EPOCH_FILE);
        self.disk
            .write_durably(&path, format!("{epoch}\n").as_bytes())
            .map_err(io_err("write", &path))?;
        st.last_writer_epoch = epoch;
        Ok(())
    }

    fn segments(&self) -> Result<Vec<SegmentFile>, JournalError> {
        let names = self
            .disk
            .list(&self.dir)
            .map_err(io_err("list", &self.dir))?;
        Ok(segment::segments_named(&self.dir, &names))
    }

    /// The epoch a segment's header names, without reading its records.
    fn segment_epoch(&self, path: &Path) -> Result<u64, JournalError> {
        let inner = self.disk.open_read(path).map_err(io_err("open", path))?;
        Ok(SegmentReader::new(path, inner)?.header().epoch)
    }

    fn read_segment(&self, path: &Path) -> Result<SegmentContents, JournalError> {
        let bytes = self.disk.read(path).map_err(io_err("read", path))?;
        Ok(segment::decode_segment(path, &bytes)?)
    }

    /// The file at `path` as text; `None` when it does not exist.
    fn read_text(&self, path: &Path) -> Result<Option<String>, JournalError> {
        let bytes = match self.disk.read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_err("read", path)(err)),
        };
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| JournalError::Damaged {
                path: path.to_path_buf(),
                why: "not UTF-8 text".into(),
            })
    }

    /// An epoch file: the number on its first line, and `writer=<id>`
    /// after.
    fn read_epoch_file(&self, path: &Path) -> Result<(u64, String), JournalError> {
        let Some(text) = self.read_text(path)? else {
            return Ok((0, String::new()));
        };
        let mut lines = text.lines();
        let epoch = lines
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| JournalError::Damaged {
                path: path.to_path_buf(),
                why: format!("'{}' is not an epoch", text.trim()),
            })?;
        let writer = lines
            .find_map(|line| line.strip_prefix("writer="))
            .unwrap_or_default()
            .to_string();
        Ok((epoch, writer))
    }

    /// `(segment first txid, path)` of every file under `paxos/`:
    /// decisions (`<first>`) and staged edits (`<first>.epoch-<e>.edits`).
    fn paxos_files(&self) -> Result<Vec<(TxId, PathBuf)>, JournalError> {
        let paxos = self.dir.join(PAXOS_DIR);
        let names = match self.disk.list(&paxos) {
            Ok(names) => names,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io_err("list", &paxos)(err)),
        };
        Ok(names
            .into_iter()
            .filter_map(|name| {
                let digits = name.split('.').next().unwrap_or(&name);
                let first = digits.parse().ok()?;
                Some((first, paxos.join(&name)))
            })
            .collect())
    }

    fn sync_dir(&self, dir: &Path) -> Result<(), JournalError> {
        self.disk.sync_dir(dir).map_err(io_err("sync", dir))
    }

    fn remove_synced(&self, path: &Path) -> Result<(), JournalError> {
        self.disk.remove(path).map_err(io_err("remove", path))?;
        self.sync_dir(&self.dir)
    }

    /// The segment starting at `first`, finalized preferred.
    fn segment_at(&self, first: TxId) -> Result<Option<SegmentFile>, JournalError> {
        let mut found: Option<SegmentFile> = None;
        for seg in self.segments()? {
            if seg.first == first && (found.is_none() || seg.last.is_some()) {
                found = Some(seg);
            }
        }
        Ok(found)
    }

    fn highest_txid(&self, st: &mut State) -> Result<TxId, JournalError> {
        if let Some(txid) = st.highest_txid {
            return Ok(txid);
        }
        let mut highest = 0;
        for seg in self.segments()? {
            let last = match (seg.last, &st.open) {
                (Some(last), _) => last,
                (None, Some(open)) if open.first == seg.first => open.next_txid - 1,
                (None, _) => self
                    .read_segment(&seg.path)?
                    .records
                    .last()
                    .map_or(0, |r| r.txid),
            };
            highest = highest.max(last);
        }
        st.highest_txid = Some(highest);
        Ok(highest)
    }

    pub(crate) fn journal_state(&self) -> Result<GetJournalStateResponse, JournalError> {
        let mut st = self.state.lock();
        let Some(stamp) = st.stamp.clone() else {
            return Ok(GetJournalStateResponse::default());
        };
        let segments = self.segments()?;
        let finalized = segments.iter().filter_map(|s| s.last).max().unwrap_or(0);
        let last_segment_txid = segments.iter().map(|s| s.first).max().unwrap_or(0);
        let highest_txid = self.highest_txid(&mut st)?;
        Ok(GetJournalStateResponse {
            formatted: true,
            stamp: Some(stamp.to_proto()),
            last_promised_epoch: st.promised_epoch,
            writer_id: st.promised_writer.clone(),
            writer_silent_ms: st
                .writer_heard_at
                .map(|at| self.clock.now().saturating_duration_since(at).as_millis() as u64),
            last_writer_epoch: st.last_writer_epoch,
            highest_txid,
            committed_txid: st.committed_txid.max(finalized),
            last_segment_txid,
        })
    }

    /// Formats the journal for `stamp`. Refuses one that holds data unless
    /// `force`; formatting again with the same stamp before any writer came
    /// is a no-op, so a retried format succeeds.
    pub(crate) fn format(&self, stamp: &NamespaceStamp, force: bool) -> Result<(), JournalError> {
        if let Some(why) = stamp.invalid() {
            return Err(self.invalid(format!("cannot format: {why}")));
        }
        let mut st = self.state.lock();
        if !force {
            let segments = if self.disk.is_dir(&self.dir) {
                self.segments()?.len()
            } else {
                0
            };
            let what = match &st.stamp {
                _ if segments > 0 => Some(format!("{segments} edit log segments")),
                None => None,
                Some(_) if st.promised_epoch > 0 => {
                    Some(format!("a promise to epoch {}", st.promised_epoch))
                }
                Some(ours) if ours != stamp => Some(format!(
                    "the namespace of cluster {} (namespace {})",
                    ours.cluster_id, ours.namespace_id
                )),
                Some(_) => return Ok(()),
            };
            if let Some(what) = what {
                return Err(JournalError::AlreadyFormatted {
                    journal: self.id.clone(),
                    what,
                });
            }
        }
        st.open = None;
        if self.disk.exists(&self.dir) {
            self.disk
                .remove_dir_all(&self.dir)
                .map_err(io_err("erase", &self.dir))?;
        }
        let paxos = self.dir.join(PAXOS_DIR);
        self.disk
            .create_dir_all(&paxos)
            .map_err(io_err("create", &paxos))?;
        let version = self.dir.join(VERSION_FILE);
        self.disk
            .write_durably(&version, stamp.render_version().as_bytes())
            .map_err(io_err("write", &version))?;
        for dir in [&self.dir, &self.root] {
            self.sync_dir(dir)?;
        }
        if let Some(parent) = self.root.parent() {
            self.sync_dir(parent)?;
        }
        *st = State {
            stamp: Some(stamp.clone()),
            ..State::default()
        };
        tracing::info!(journal = %self.id, cluster_id = %stamp.cluster_id,
            namespace_id = stamp.namespace_id, force, "journal formatted");
        Ok(())
    }

    /// Promises `epoch` to `writer` (Paxos phase 1 for the writer role).
    pub(crate) fn new_epoch(
        &self,
        stamp: &NamespaceStamp,
        epoch: u64,
        writer: &str,
        lease_timeout: Duration,
        take_over_held_lease: bool,
    ) -> Result<NewEpochResponse, JournalError> {
        let mut st = self.state.lock();
        let Some(ours) = &st.stamp else {
            return Err(self.not_formatted());
        };
        if let Some(why) = ours.mismatch(stamp) {
            return Err(JournalError::Mismatch {
                journal: self.id.clone(),
                why,
            });
        }
        if epoch <= st.promised_epoch {
            return Err(JournalError::EpochNotNewer {
                epoch,
                promised: st.promised_epoch,
            });
        }
        if st.promised_epoch > 0
            && !take_over_held_lease
            && let Some(heard) = st.writer_heard_at
        {
            let silent = self.clock.now().saturating_duration_since(heard);
            let lease = lease_timeout.max(st.holder_lease);
            if silent < lease {
                return Err(JournalError::LeaseHeld {
                    holder: st.promised_writer.clone(),
                    epoch: st.promised_epoch,
                    remaining_ms: (lease - silent).as_millis().max(1) as u64,
                });
            }
        }
        let previous = (st.promised_epoch, st.promised_writer.clone());
        self.persist_promise(&mut st, epoch, writer)?;
        st.open = None;
        st.writer_heard_at = Some(self.clock.now());
        st.holder_lease = lease_timeout;
        tracing::info!(journal = %self.id, epoch, writer, previous_epoch = previous.0,
            previous_writer = %previous.1, take_over_held_lease, "promised a new epoch");
        let last_segment_txid = self.segments()?.iter().map(|s| s.first).max().unwrap_or(0);
        Ok(NewEpochResponse {
            last_segment_txid,
            last_writer_epoch: st.last_writer_epoch,
        })
    }

    pub(crate) fn heartbeat(&self, info: &JournalRequestInfo) -> Result<(), JournalError> {
        let mut st = self.state.lock();
        self.check_request(&mut st, info)
    }

    pub(crate) fn start_segment(
        &self,
        info: &JournalRequestInfo,
        txid: TxId,
    ) -> Result<(), JournalError> {
        let mut st = self.state.lock();
        self.check_request(&mut st, info)?;
        if txid == 0 {
            return Err(self.invalid("a segment cannot start at txid 0"));
        }
        st.open = None;
        let segments = self.segments()?;
        if let Some(seg) = segments
            .iter()
            .find(|s| s.last.is_some_and(|last| last >= txid))
        {
            return Err(self.invalid(format!(
                "a segment at txid {txid} would overlap finalized {}",
                seg.path.display()
            )));
        }
        // The writer recovered the journal before starting here: every
        // committed edit is below `txid`, so this node cannot know of a
        // committed edit at or past it.
        if st.committed_txid >= txid {
            return Err(self.invalid(format!(
                "a segment at txid {txid} would overwrite committed txid {}",
                st.committed_txid
            )));
        }
        for seg in segments
            .iter()
            .filter(|s| s.last.is_none() && s.first >= txid)
        {
            let contents = self.read_segment(&seg.path)?;
            let edits = contents.records.len();
            if edits == 0 {
                continue;
            }
            // Edits an older epoch left here were never committed (a
            // majority would have carried them into the recovery), so they
            // give way — as copies of the same txids with other edits, they
            // must never be finalized or served. Edits of this epoch or a
            // newer one mean a writer bug.
            if contents.epoch >= info.epoch {
                return Err(self.invalid(format!(
                    "{} already holds {edits} edits from epoch {}",
                    seg.path.display(),
                    contents.epoch
                )));
            }
            if seg.first > txid {
                return Err(self.invalid(format!(
                    "{} holds {edits} edits of epoch {} past the start of segment {txid}",
                    seg.path.display(),
                    contents.epoch
                )));
            }
            tracing::warn!(journal = %self.id, path = %seg.path.display(), edits,
                segment_epoch = contents.epoch, epoch = info.epoch,
                "replacing an uncommitted in-progress segment of an older epoch");
        }
        if st.last_writer_epoch != info.epoch {
            tracing::info!(journal = %self.id, from = st.last_writer_epoch, to = info.epoch,
                writer = %info.writer_id, "new writer epoch");
            self.persist_writer_epoch(&mut st, info.epoch)?;
        }
        // A writer starting at this txid means any recovery of a segment here
        // was finished or abandoned.
        self.remove_accepted(txid)?;
        let path = self.dir.join(segment::in_progress_name(txid));
        self.disk
            .create_synced(&path, &segment::header(info.epoch))
            .map_err(io_err("create", &path))?;
        self.sync_dir(&self.dir)?;
        let file = self.disk.open_write(&path).map_err(io_err("open", &path))?;
        st.open = Some(OpenSegment {
            first: txid,
            epoch: info.epoch,
            path,
            file,
            len: segment::HEADER_LEN as u64,
            next_txid: txid,
            offsets: Vec::new(),
        });
        st.highest_txid = None;
        tracing::info!(journal = %self.id, txid, epoch = info.epoch, "segment started");
        Ok(())
    }

    /// Appends a batch of framed records and makes it durable. A failed
    /// write is undone (the file cut back to its previous length) so the
    /// next batch can land; if even that fails the segment is closed and
    /// the writer skips this node until its next segment.
    pub(crate) fn journal(
        &self,
        info: &JournalRequestInfo,
        segment_first: TxId,
        first_txid: TxId,
        count: u64,
        framed: &[u8],
    ) -> Result<(), JournalError> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        self.check_write_request(st, info)?;
        let Some(open) = st.open.as_mut() else {
            return Err(self.out_of_sync(format!(
                "no segment is open here (this journalnode restarted, or missed the start of segment {segment_first})"
            )));
        };
        if open.first != segment_first {
            return Err(self.out_of_sync(format!(
                "segment {} is open here, not {segment_first}",
                open.first
            )));
        }
        if first_txid != open.next_txid {
            return Err(JournalError::Gap {
                journal: self.id.clone(),
                expected: open.next_txid,
                got: first_txid,
            });
        }
        let records = segment::decode_records_with_offsets(framed)
            .map_err(|why| self.invalid(format!("batch at txid {first_txid}: {why}")))?;
        if records.len() as u64 != count {
            return Err(self.invalid(format!(
                "batch at txid {first_txid} holds {} edits, not the {count} announced",
                records.len()
            )));
        }
        if let Some((bad, (record, _))) = records
            .iter()
            .enumerate()
            .find(|(i, (record, _))| record.txid != first_txid + *i as u64)
        {
            return Err(JournalError::Gap {
                journal: self.id.clone(),
                expected: first_txid + bad as u64,
                got: record.txid,
            });
        }
        #[cfg(test)]
        let inject = if st.fail_appends > 0 {
            st.fail_appends -= 1;
            true
        } else {
            false
        };
        let open = st
            .open
            .as_mut()
            .ok_or_else(|| self.out_of_sync("no segment is open"))?;
        #[cfg(test)]
        let written = if inject {
            let _ = open
                .file
                .write_all_at(&framed[..framed.len() / 2], open.len);
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            ))
        } else {
            append(open, framed)
        };
        #[cfg(not(test))]
        let written = append(open, framed);
        if let Err(source) = written {
            let path = open.path.clone();
            let undone = open
                .file
                .set_len(open.len)
                .and_then(|()| open.file.sync_data());
            if let Err(err) = undone {
                tracing::error!(journal = %self.id, path = %path.display(), error = %err,
                    "cannot cut a failed append back; closing the segment");
                st.open = None;
            } else {
                tracing::warn!(journal = %self.id, path = %path.display(), error = %source,
                    first_txid, count, "append failed and was undone");
            }
            return Err(JournalError::Io {
                action: "append edits to",
                path,
                source,
            });
        }
        for (_, at) in &records {
            open.offsets.push(open.len + *at as u64);
        }
        open.len += framed.len() as u64;
        open.next_txid += count;
        if let Some(highest) = st.highest_txid.as_mut() {
            *highest = (*highest).max(first_txid + count - 1);
        }
        Ok(())
    }

    pub(crate) fn finalize(
        &self,
        info: &JournalRequestInfo,
        first: TxId,
        last: TxId,
    ) -> Result<(), JournalError> {
        let mut st = self.state.lock();
        self.check_request(&mut st, info)?;
        if first == 0 || last + 1 < first {
            return Err(self.invalid(format!("cannot finalize segment {first} at txid {last}")));
        }
        if st.open.as_ref().is_some_and(|o| o.first == first) {
            let open = st
                .open
                .take()
                .ok_or_else(|| self.out_of_sync("no segment open"))?;
            if open.next_txid != last + 1 {
                return Err(self.out_of_sync(format!(
                    "asked to finalize segment {first} at txid {last}, but it was written up to txid {}",
                    open.next_txid - 1
                )));
            }
        }
        let Some(seg) = self.segment_at(first)? else {
            return Err(self.out_of_sync(format!("no segment at txid {first} to finalize")));
        };
        st.highest_txid = None;
        if let Some(done) = seg.last {
            if done != last {
                return Err(self.invalid(format!(
                    "{} is already finalized, not at txid {last}",
                    seg.path.display()
                )));
            }
            self.remove_accepted(first)?;
            return Ok(());
        }
        let contents = self.read_segment(&seg.path)?;
        check_contiguous(&seg.path, first, contents.records.iter().map(|r| r.txid))?;
        let held = contents.records.last().map_or(first - 1, |r| r.txid);
        if held != last {
            return Err(self.out_of_sync(format!(
                "asked to finalize segment {first} at txid {last}, but {} holds edits up to txid {held}",
                seg.path.display()
            )));
        }
        // Only the copy this epoch wrote, or chose in its recovery, may be
        // finalized: a copy of the same txids another epoch left here (a
        // journalnode that was away while the journal was recovered without
        // it) may hold other edits.
        if held >= first && contents.epoch != info.epoch {
            let recovered_here = self.read_accepted(first)?.is_some_and(|accepted| {
                accepted.epoch == info.epoch
                    && accepted.segment.last_txid == last
                    && accepted.segment.epoch == contents.epoch
            });
            if !recovered_here {
                return Err(self.out_of_sync(format!(
                    "{} holds edits of epoch {}, which the writer of epoch {} neither wrote nor recovered here",
                    seg.path.display(),
                    contents.epoch,
                    info.epoch
                )));
            }
        }
        if last + 1 == first {
            // An empty segment: nothing to keep.
            self.remove_synced(&seg.path)?;
            self.remove_accepted(first)?;
            tracing::info!(journal = %self.id, first, "empty segment removed");
            return Ok(());
        }
        if contents.torn_tail.is_some() {
            let mut file = self
                .disk
                .open_write(&seg.path)
                .map_err(io_err("open", &seg.path))?;
            file.set_len(contents.valid_len)
                .and_then(|()| file.sync_data())
                .map_err(io_err("truncate", &seg.path))?;
        }
        let done = self.dir.join(segment::finalized_name(first, last));
        self.disk
            .rename(&seg.path, &done)
            .map_err(io_err("rename", &seg.path))?;
        self.sync_dir(&self.dir)?;
        // A finalized segment is itself the decision: no recovery will ever
        // choose another length for it.
        self.remove_accepted(first)?;
        st.committed_txid = st.committed_txid.max(last);
        tracing::info!(journal = %self.id, first, last, epoch = info.epoch, "segment finalized");
        Ok(())
    }

    /// Deletes segments that end below `min_txid_to_keep`, and stale
    /// in-progress ones (left by older epochs) that do too.
    pub(crate) fn purge(
        &self,
        info: &JournalRequestInfo,
        min_txid_to_keep: TxId,
    ) -> Result<(), JournalError> {
        let mut st = self.state.lock();
        self.check_request(&mut st, info)?;
        let open_first = st.open.as_ref().map(|o| o.first);
        let mut purged = 0;
        for seg in self.segments()? {
            let below = match seg.last {
                Some(last) => last < min_txid_to_keep,
                None if Some(seg.first) == open_first => false,
                None => {
                    seg.first < min_txid_to_keep
                        && self.read_segment(&seg.path).is_ok_and(|c| {
                            c.records.last().is_none_or(|r| r.txid < min_txid_to_keep)
                        })
                }
            };
            if below {
                self.disk
                    .remove(&seg.path)
                    .map_err(io_err("remove", &seg.path))?;
                purged += 1;
            }
        }
        let paxos = self.dir.join(PAXOS_DIR);
        for (first, path) in self.paxos_files()? {
            if first < min_txid_to_keep {
                self.disk.remove(&path).map_err(io_err("remove", &path))?;
            }
        }
        for dir in [&self.dir, &paxos] {
            self.sync_dir(dir)?;
        }
        st.highest_txid = None;
        tracing::info!(journal = %self.id, min_txid_to_keep, purged, "old segments purged");
        Ok(())
    }

    /// This node's view of the segment at `first`: `None` when it holds no
    /// edits there (an empty in-progress segment is deleted, as HDFS does,
    /// so it cannot be mistaken for a recovery candidate later).
    fn segment_state(&self, first: TxId) -> Result<Option<SegmentStateProto>, JournalError> {
        let Some(seg) = self.segment_at(first)? else {
            return Ok(None);
        };
        if let Some(last) = seg.last {
            return Ok(Some(SegmentStateProto {
                first_txid: first,
                last_txid: last,
                in_progress: false,
                epoch: self.segment_epoch(&seg.path)?,
            }));
        }
        let contents = self.read_segment(&seg.path)?;
        check_contiguous(&seg.path, first, contents.records.iter().map(|r| r.txid))?;
        match contents.records.last() {
            Some(record) => Ok(Some(SegmentStateProto {
                first_txid: first,
                last_txid: record.txid,
                in_progress: true,
                epoch: contents.epoch,
            })),
            None => {
                self.remove_synced(&seg.path)?;
                tracing::info!(journal = %self.id, path = %seg.path.display(), "removed an empty in-progress segment");
                Ok(None)
            }
        }
    }

    pub(crate) fn prepare_recovery(
        &self,
        info: &JournalRequestInfo,
        segment_txid: TxId,
    ) -> Result<PrepareRecoveryResponse, JournalError> {
        let mut st = self.state.lock();
        self.check_request(&mut st, info)?;
        st.open = None;
        st.highest_txid = None;
        self.complete_half_done_accept(segment_txid)?;
        let state = self.segment_state(segment_txid)?;
        let accepted = self.read_accepted(segment_txid)?;
        let finalized = state.as_ref().is_some_and(|s| !s.in_progress);
        let mut response = PrepareRecoveryResponse {
            segment_state: state,
            accepted_in_epoch: 0,
            last_writer_epoch: st.last_writer_epoch,
            committed_txid: st.committed_txid,
        };
        if let Some(accepted) = accepted.filter(|_| !finalized) {
            response.accepted_in_epoch = accepted.epoch;
            response.segment_state = Some(accepted.segment);
        }
        tracing::info!(journal = %self.id, segment_txid, epoch = info.epoch,
            state = ?response.segment_state, accepted_in_epoch = response.accepted_in_epoch,
            last_writer_epoch = response.last_writer_epoch, "prepared recovery");
        Ok(response)
    }

    /// Makes this node's copy of a segment the chosen one (Paxos phase 2).
    /// `framed` holds the segment's edits when the writer knew this node
    /// lacked them. Downloaded edits wait under `paxos/` until the decision
    /// is durable, then replace the segment: a crash in between is finished
    /// by the next prepare (or start-up), never left half applied.
    pub(crate) fn accept_recovery(
        &self,
        info: &JournalRequestInfo,
        chosen: &SegmentStateProto,
        framed: Option<&[u8]>,
    ) -> Result<(), JournalError> {
        let mut st = self.state.lock();
        self.check_request(&mut st, info)?;
        st.open = None;
        st.highest_txid = None;
        let first = chosen.first_txid;
        if first == 0 || chosen.last_txid < first {
            return Err(self.invalid(format!(
                "cannot accept segment {first}-{} for recovery",
                chosen.last_txid
            )));
        }
        if let Some(old) = self.read_accepted(first)?
            && old.epoch > info.epoch
        {
            return Err(self.invalid(format!(
                "segment {first} was accepted in epoch {}, newer than {}",
                old.epoch, info.epoch
            )));
        }
        let current = self.segment_state(first)?;
        if let Some(current) = &current
            && !current.in_progress
            && current.last_txid == chosen.last_txid
            && current.epoch != chosen.epoch
        {
            return Err(self.invalid(format!(
                "segment {first}-{} is finalized here with the edits of epoch {}; recovery chose those of epoch {}",
                chosen.last_txid, current.epoch, chosen.epoch
            )));
        }
        // A copy of another epoch may hold other edits under the same txids:
        // only the chosen epoch's copy of the chosen length will do.
        let needs_edits = current
            .as_ref()
            .is_none_or(|c| c.last_txid != chosen.last_txid || c.epoch != chosen.epoch);
        let mut staged = None;
        if needs_edits {
            if let Some(current) = &current {
                if !current.in_progress {
                    return Err(self.invalid(format!(
                        "segment {first} is finalized at txid {}; recovery chose txid {}",
                        current.last_txid, chosen.last_txid
                    )));
                }
                let committed = st.committed_txid;
                if (current.first_txid..=current.last_txid).contains(&committed)
                    && committed > chosen.last_txid
                {
                    return Err(self.invalid(format!(
                        "recovery chose segment {first} up to txid {}, which would drop committed txid {committed}",
                        chosen.last_txid
                    )));
                }
            }
            let Some(framed) = framed.filter(|f| !f.is_empty()) else {
                return Err(self.out_of_sync(format!(
                    "recovery needs the edits of segment {first}-{} sent along, this node holds {}",
                    chosen.last_txid,
                    current.map_or("none".to_string(), |c| format!(
                        "up to txid {}",
                        c.last_txid
                    ))
                )));
            };
            let records = segment::decode_records(framed)
                .map_err(|why| self.invalid(format!("recovery edits of segment {first}: {why}")))?;
            let txids: Vec<TxId> = records.iter().map(|r| r.txid).collect();
            let expected: Vec<TxId> = (first..=chosen.last_txid).collect();
            if txids != expected {
                return Err(self.invalid(format!(
                    "recovery edits of segment {first} hold txids {:?}..{:?}, not {first}..{}",
                    txids.first(),
                    txids.last(),
                    chosen.last_txid
                )));
            }
            let path = self.staged_path(first, info.epoch);
            // The copy is the chosen one byte for byte: its header names the
            // epoch that wrote the edits, not the one recovering them.
            let mut bytes = segment::header(chosen.epoch).to_vec();
            bytes.extend_from_slice(framed);
            self.disk
                .create_synced(&path, &bytes)
                .map_err(io_err("write", &path))?;
            self.sync_dir(&self.dir.join(PAXOS_DIR))?;
            staged = Some(path);
        }
        self.write_accepted(
            first,
            &Accepted {
                epoch: info.epoch,
                segment: *chosen,
            },
        )?;
        if let Some(staged) = staged {
            let target = self.dir.join(segment::in_progress_name(first));
            self.disk
                .rename(&staged, &target)
                .map_err(io_err("rename", &staged))?;
            self.sync_dir(&self.dir)?;
        }
        tracing::info!(journal = %self.id, first, last = chosen.last_txid, epoch = info.epoch,
            synced = needs_edits, "accepted recovery");
        Ok(())
    }

    fn staged_path(&self, first: TxId, epoch: u64) -> PathBuf {
        self.dir
            .join(PAXOS_DIR)
            .join(format!("{first}.epoch-{epoch}.edits"))
    }

    /// Finishes an accept that crashed after its decision was durable but
    /// before the downloaded edits replaced the segment.
    fn complete_half_done_accept(&self, first: TxId) -> Result<(), JournalError> {
        let Some(accepted) = self.read_accepted(first)? else {
            return Ok(());
        };
        let staged = self.staged_path(first, accepted.epoch);
        if !self.disk.exists(&staged) {
            return Ok(());
        }
        let target = self.dir.join(segment::in_progress_name(first));
        self.disk
            .rename(&staged, &target)
            .map_err(io_err("rename", &staged))?;
        self.sync_dir(&self.dir)?;
        tracing::warn!(journal = %self.id, first, epoch = accepted.epoch,
            "finished an accepted recovery interrupted by a crash");
        Ok(())
    }

    fn accepted_segments(&self) -> Result<Vec<TxId>, JournalError> {
        Ok(self
            .paxos_files()?
            .into_iter()
            .filter(|(first, path)| {
                path.file_name().and_then(|n| n.to_str()) == Some(&first.to_string())
            })
            .map(|(first, _)| first)
            .collect())
    }

    fn read_accepted(&self, first: TxId) -> Result<Option<Accepted>, JournalError> {
        let path = self.dir.join(PAXOS_DIR).join(first.to_string());
        let Some(text) = self.read_text(&path)? else {
            return Ok(None);
        };
        let pairs = rdfs_common::version_file::parse(&text);
        let num = |key: &str| {
            pairs
                .get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| JournalError::Damaged {
                    path: path.clone(),
                    why: format!("no number for {key}"),
                })
        };
        Ok(Some(Accepted {
            epoch: num("acceptedInEpoch")?,
            segment: SegmentStateProto {
                first_txid: num("firstTxid")?,
                last_txid: num("lastTxid")?,
                in_progress: pairs.get("inProgress").is_some_and(|v| v == "true"),
                epoch: match pairs.get("segmentEpoch").and_then(|v| v.parse().ok()) {
                    Some(epoch) => epoch,
                    // A decision written before segments named their epoch:
                    // the accepted copy is the in-progress segment here.
                    None => match self.segment_at(first)? {
                        Some(seg) if seg.last.is_none() => self.segment_epoch(&seg.path)?,
                        _ => 0,
                    },
                },
            },
        }))
    }

    fn write_accepted(&self, first: TxId, accepted: &Accepted) -> Result<(), JournalError> {
        let path = self.dir.join(PAXOS_DIR).join(first.to_string());
        let text = rdfs_common::version_file::render(
            "recovery accepted by this journalnode",
            &[
                ("acceptedInEpoch", accepted.epoch.to_string()),
                ("firstTxid", accepted.segment.first_txid.to_string()),
                ("lastTxid", accepted.segment.last_txid.to_string()),
                ("inProgress", accepted.segment.in_progress.to_string()),
                ("segmentEpoch", accepted.segment.epoch.to_string()),
            ],
        );
        self.disk
            .write_durably(&path, text.as_bytes())
            .map_err(io_err("write", &path))
    }

    fn remove_accepted(&self, first: TxId) -> Result<(), JournalError> {
        let mut removed = false;
        for (txid, path) in self.paxos_files()? {
            if txid == first {
                self.disk.remove(&path).map_err(io_err("remove", &path))?;
                removed = true;
            }
        }
        if removed {
            self.sync_dir(&self.dir.join(PAXOS_DIR))?;
        }
        Ok(())
    }

    /// The last committed txid this node may serve from the open segment.
    fn served_last(st: &State) -> Option<(TxId, &OpenSegment)> {
        let open = st.open.as_ref()?;
        let last = (open.next_txid - 1).min(st.committed_txid);
        (last >= open.first).then_some((last, open))
    }

    /// Where the committed edits from `from` are: finalized segments, then
    /// the open one up to the committed txid. Stops at the first txid this
    /// node lacks, so what it serves is always contiguous.
    pub(crate) fn plan_committed_read(&self, from: TxId) -> Result<ReadPlan, JournalError> {
        let st = self.state.lock();
        self.check_formatted(&st)?;
        let segments = self.segments()?;
        let mut plan = ReadPlan {
            disk: Some(Arc::clone(&self.disk)),
            parts: Vec::new(),
            first_available: segments
                .iter()
                .filter(|s| {
                    s.last.is_some() || st.open.as_ref().is_some_and(|o| o.first == s.first)
                })
                .map(|s| s.first)
                .min()
                .unwrap_or(0),
        };
        let mut cursor = from.max(1);
        loop {
            if let Some(seg) = segments
                .iter()
                .find(|s| s.first <= cursor && s.last.is_some_and(|last| cursor <= last))
            {
                let last = seg.last.unwrap_or(cursor);
                plan.parts.push(ReadPart {
                    path: seg.path.clone(),
                    seg_first: seg.first,
                    epoch: None,
                    offset: None,
                    from: cursor,
                    to: last,
                });
                cursor = last + 1;
                continue;
            }
            if let Some((last, open)) = Self::served_last(&st)
                && open.first <= cursor
                && cursor <= last
            {
                plan.parts.push(ReadPart {
                    path: open.path.clone(),
                    seg_first: open.first,
                    epoch: Some(open.epoch),
                    offset: open.offsets.get((cursor - open.first) as usize).copied(),
                    from: cursor,
                    to: last,
                });
            }
            return Ok(plan);
        }
    }

    /// Where a recovering writer reads a segment's edits, committed or not.
    pub(crate) fn plan_segment_fetch(
        &self,
        info: &JournalRequestInfo,
        first: TxId,
        last: TxId,
    ) -> Result<ReadPlan, JournalError> {
        let st = self.state.lock();
        self.check_formatted(&st)?;
        if info.epoch < st.promised_epoch {
            return Err(JournalError::EpochTooOld {
                epoch: info.epoch,
                promised: st.promised_epoch,
            });
        }
        let Some(seg) = self.segment_at(first)? else {
            return Err(self.out_of_sync(format!("no segment at txid {first}")));
        };
        if last < first || seg.last.is_some_and(|held| held != last) {
            return Err(self.invalid(format!(
                "cannot fetch txids {first}..{last} of {}",
                seg.path.display()
            )));
        }
        Ok(ReadPlan {
            disk: Some(Arc::clone(&self.disk)),
            parts: vec![ReadPart {
                path: seg.path,
                seg_first: first,
                epoch: None,
                offset: None,
                from: first,
                to: last,
            }],
            first_available: first,
        })
    }

    pub(crate) fn manifest(&self, since: TxId) -> Result<GetEditLogManifestResponse, JournalError> {
        let st = self.state.lock();
        self.check_formatted(&st)?;
        let mut segments = Vec::new();
        for seg in self.segments()? {
            if let Some(last) = seg.last
                && last >= since
            {
                segments.push(SegmentStateProto {
                    first_txid: seg.first,
                    last_txid: last,
                    in_progress: false,
                    epoch: self.segment_epoch(&seg.path)?,
                });
            }
        }
        if let Some((last, open)) = Self::served_last(&st)
            && last >= since
        {
            segments.push(SegmentStateProto {
                first_txid: open.first,
                last_txid: last,
                in_progress: true,
                epoch: open.epoch,
            });
        }
        Ok(GetEditLogManifestResponse { segments })
    }
}

fn append(open: &mut OpenSegment, framed: &[u8]) -> std::io::Result<()> {
    open.file.write_all_at(framed, open.len)?;
    open.file.sync_data()
}

fn check_contiguous(
    path: &Path,
    first: TxId,
    txids: impl Iterator<Item = TxId>,
) -> Result<(), JournalError> {
    for (i, txid) in txids.enumerate() {
        if txid != first + i as u64 {
            return Err(JournalError::Damaged {
                path: path.to_path_buf(),
                why: format!("holds txid {txid} where {} belongs", first + i as u64),
            });
        }
    }
    Ok(())
}

/// Reads the records of `plan`, at most `max_records`, handing them to
/// `emit` in chunks of about `chunk_bytes` (one record may be larger).
/// `emit` returns false when the reader went away.
fn read_plan(
    plan: &ReadPlan,
    max_records: u64,
    chunk_bytes: usize,
    mut emit: impl FnMut(Vec<u8>, u64) -> bool,
) -> Result<(), SegmentError> {
    let mut left = max_records;
    for part in &plan.parts {
        if left == 0 {
            break;
        }
        let Some(disk) = &plan.disk else {
            break;
        };
        let inner = disk
            .open_read(&part.path)
            .map_err(|source| SegmentError::Io {
                path: part.path.clone(),
                source,
            })?;
        let mut reader = SegmentReader::new(&part.path, inner)?;
        let epoch = reader.header().epoch;
        if part.epoch.is_some_and(|expected| expected != epoch) {
            return Ok(());
        }
        let mut buf = Vec::new();
        match part.offset {
            Some(offset) => reader.seek_to(offset)?,
            None => {
                for _ in part.seg_first..part.from {
                    reader.skip()?;
                }
            }
        }
        let mut txid = part.from;
        while txid <= part.to && left > 0 {
            let at = buf.len();
            let got = reader.next_framed(&mut buf)?;
            if got != txid {
                return Err(SegmentError::Corrupt {
                    path: part.path.clone(),
                    offset: at as u64,
                    reason: format!("holds txid {got} where {txid} belongs"),
                });
            }
            txid += 1;
            left -= 1;
            if buf.len() >= chunk_bytes && !emit(std::mem::take(&mut buf), epoch) {
                return Ok(());
            }
        }
        // Chunks never span segments, so each names its segment's epoch.
        if !buf.is_empty() && !emit(buf, epoch) {
            return Ok(());
        }
    }
    Ok(())
}

/// The messages a read of `plan` answers with: records in chunks of about
/// `chunk_bytes`, the first carrying the oldest txid held; one empty chunk
/// when there is nothing to send. `emit` returns false when the reader
/// went away.
pub(crate) fn read_chunks(
    plan: &ReadPlan,
    max_records: u64,
    chunk_bytes: usize,
    mut emit: impl FnMut(EditsChunk) -> bool,
) -> Result<(), SegmentError> {
    let mut sent = 0usize;
    read_plan(plan, max_records, chunk_bytes, |records, segment_epoch| {
        let chunk = EditsChunk {
            records,
            first_available_txid: if sent == 0 { plan.first_available } else { 0 },
            segment_epoch,
        };
        sent += 1;
        emit(chunk)
    })?;
    if sent == 0 {
        emit(EditsChunk {
            records: Vec::new(),
            first_available_txid: plan.first_available,
            segment_epoch: 0,
        });
    }
    Ok(())
}

/// The journals of one journalnode, opened on first use.
pub(crate) struct Journals {
    edits_dir: PathBuf,
    open: Mutex<HashMap<String, Arc<Journal>>>,
}

impl Journals {
    pub(crate) fn new(edits_dir: PathBuf) -> Self {
        Self {
            edits_dir,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Opens every journal already on disk, so torn tails are cut and
    /// leases start counting at start-up. One that cannot open is logged
    /// and retried when it is next used.
    pub(crate) fn open_existing(&self) -> Result<usize, JournalError> {
        let entries = fs::read_dir(&self.edits_dir).map_err(io_err("list", &self.edits_dir))?;
        let mut opened = 0;
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.edits_dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if validate_journal_id(&name).is_err() || !entry.path().join("current").is_dir() {
                continue;
            }
            match self.get(&name) {
                Ok(_) => opened += 1,
                Err(err) => {
                    tracing::error!(journal = %name, error = %err, "cannot open journal");
                }
            }
        }
        Ok(opened)
    }

    /// Blocking: opening reads the journal's files.
    pub(crate) fn get(&self, id: &str) -> Result<Arc<Journal>, JournalError> {
        validate_journal_id(id)?;
        let mut open = self.open.lock();
        if let Some(journal) = open.get(id) {
            return Ok(Arc::clone(journal));
        }
        let journal = Arc::new(Journal::open(&self.edits_dir, id)?);
        open.insert(id.to_string(), Arc::clone(&journal));
        Ok(journal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{framed, stamp};

    fn info(epoch: u64) -> JournalRequestInfo {
        JournalRequestInfo {
            journal_id: "j".into(),
            epoch,
            writer_id: format!("nn{epoch}"),
            committed_txid: 0,
        }
    }

    fn formatted(dir: &Path) -> Journal {
        let journal = Journal::open(dir, "j").expect("open");
        journal.format(&stamp(), false).expect("format");
        journal
    }

    #[test]
    fn journal_ids_cannot_leave_the_edits_dir() {
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a b", "a\0b"] {
            assert!(validate_journal_id(bad).is_err(), "{bad:?}");
        }
        for good in ["ns1", "my-cluster_2.prod"] {
            validate_journal_id(good).expect(good);
        }
    }

    #[test]
    fn a_segment_start_replaces_only_an_older_epochs_leftovers() {
        let tmp = tempfile::tempdir().expect("tmp");
        let journal = formatted(tmp.path());
        let lease = Duration::from_secs(60);
        journal
            .new_epoch(&stamp(), 1, "nn1", lease, false)
            .expect("epoch 1");
        journal.start_segment(&info(1), 1).expect("start");
        journal
            .journal(&info(1), 1, 1, 3, &framed(1, 3))
            .expect("journal");
        // Epoch 2 recovered without these edits and starts over at txid 1.
        journal
            .new_epoch(&stamp(), 2, "nn2", lease, true)
            .expect("epoch 2");
        journal
            .start_segment(&info(2), 1)
            .expect("replaces epoch 1's edits");
        journal
            .journal(&info(2), 1, 1, 2, &framed(1, 2))
            .expect("journal");
        let err = journal.start_segment(&info(2), 1).expect_err("own edits");
        assert!(
            err.to_string()
                .contains("already holds 2 edits from epoch 2"),
            "{err}"
        );
        let err = journal
            .journal(&info(1), 1, 3, 1, &framed(3, 1))
            .expect_err("fenced");
        assert!(
            matches!(
                err,
                JournalError::EpochTooOld {
                    epoch: 1,
                    promised: 2
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn the_lease_blocks_a_new_epoch_until_it_lapses_and_a_restart_restarts_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let journal = formatted(tmp.path());
        let lease = Duration::from_millis(50);
        journal
            .new_epoch(&stamp(), 1, "nn1", lease, false)
            .expect("epoch 1");
        let err = journal
            .new_epoch(&stamp(), 2, "nn2", lease, false)
            .expect_err("held");
        assert!(
            matches!(&err, JournalError::LeaseHeld { holder, epoch: 1, .. } if holder == "nn1"),
            "{err}"
        );
        std::thread::sleep(lease);
        drop(journal);
        // Reopened: the writer may have called just before the restart.
        let journal = Journal::open(tmp.path(), "j").expect("reopen");
        assert!(journal.new_epoch(&stamp(), 2, "nn2", lease, false).is_err());
        std::thread::sleep(lease);
        journal
            .new_epoch(&stamp(), 2, "nn2", lease, false)
            .expect("lapsed");
        let err = journal
            .new_epoch(&stamp(), 2, "nn3", lease, true)
            .expect_err("same epoch");
        assert_eq!(
            err.to_string(),
            "epoch 2 is not newer than the promised epoch 2"
        );
    }
}
