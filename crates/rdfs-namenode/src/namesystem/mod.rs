//! The namenode's operations as a plain Rust API: what a client or datanode
//! may ask, with HDFS's semantics and error texts. Transports (gRPC now,
//! Hadoop IPC later) are thin adapters over this.
//!
//! Locking: one reader-writer lock over the namespace, block map, datanode
//! table and safe mode, never held across I/O. A change is validated and
//! applied under the write lock and its edit appended to the journal there
//! (so txids follow the order of changes); the lock is released before
//! waiting for the edit to be durable, which lets concurrent changes share
//! one sync.

mod access;
mod acl;
mod admin;
mod append;
mod balancing;
mod datanodes;
mod lease;
mod read;
mod retry;
mod standby;
mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use rdfs_common::protocol::{FileStatus, FileType};

use crate::apply::FsState;
use crate::block_manager::BlockManager;
use crate::datanode_manager::{DatanodeManager, Liveness};
use crate::edit_log::{EditRecord, Journal, Op, RpcId, TxId};
use crate::error::{NamenodeError, Result};
use crate::groups::GroupList;
use crate::lease::LeaseManager;
use crate::namespace::{Inode, Namespace, Resolved, ThroughFile};
use crate::replication::ReplicationSettings;
use crate::retry_cache::{RetryCache, RetryCacheConfig};
use crate::safe_mode::{SafeMode, SafeModeConfig};
use crate::storage::NamespaceInfo;

pub use crate::block_manager::ReportedState;
pub use crate::lease::NAMENODE_LEASE_HOLDER;
pub use acl::{AclChange, AclStatus};
pub use admin::{DatanodeReportType, SafeModeAction};
pub use append::AppendResult;
pub use datanodes::{
    DatanodeCommand, RecoverOrder, Registration, ReplicaEvent, ReportedReplica, TransferOrder,
};
pub use read::DirectoryListing;

/// Settings the namesystem enforces.
#[derive(Debug, Clone)]
pub struct NamesystemConfig {
    pub default_replication: u32,
    pub min_replication: u32,
    pub max_replication: u32,
    pub default_block_size: u64,
    pub bytes_per_checksum: u32,
    pub write_packet_size: u32,
    pub listing_limit: usize,
    pub invalidate_limit: usize,
    pub liveness: Liveness,
    pub safe_mode: SafeModeConfig,
    pub replication: ReplicationSettings,
    pub replication_interval: Duration,
    pub decommission_interval: Duration,
    pub hosts_file: String,
    pub hosts_exclude_file: String,
    pub topology_file: String,
    /// A writer silent this long may lose its file to another client.
    pub lease_soft_limit: Duration,
    /// A writer silent this long loses its files to the namenode.
    pub lease_hard_limit: Duration,
    /// How often the lease monitor runs.
    pub lease_recheck_interval: Duration,
    pub retry_cache: RetryCacheConfig,
    /// Whether permissions are checked (`dfs.permissions.enabled`); when
    /// not, only ownership for chmod and chown is, as in HDFS.
    pub permissions_enabled: bool,
    /// Whether ACLs may be set and read (`dfs.namenode.acls.enabled`).
    pub acls_enabled: bool,
    /// How long the trash keeps what clients remove (`fs.trash.interval`),
    /// told to clients in the server defaults; zero when off.
    pub trash_interval: Duration,
    /// How often the emptier checkpoints every user's trash.
    pub trash_checkpoint_interval: Duration,
}

/// A duration given in (possibly fractional) minutes; negative or absurd
/// values are none.
fn minutes(value: f64) -> Duration {
    Duration::try_from_secs_f64(value * 60.0).unwrap_or(Duration::ZERO)
}

impl NamesystemConfig {
    pub fn from_config(config: &rdfs_common::config::Config) -> Self {
        let nn = &config.namenode;
        Self {
            default_replication: config.dfs.replication,
            min_replication: nn.min_replication,
            max_replication: nn.max_replication,
            default_block_size: config.dfs.block_size.0,
            bytes_per_checksum: config.dfs.bytes_per_checksum,
            write_packet_size: u32::try_from(config.client.write_packet_size.0)
                .unwrap_or(64 * 1024),
            listing_limit: nn.listing_limit.max(1) as usize,
            invalidate_limit: nn.invalidate_limit_per_heartbeat.max(1) as usize,
            liveness: Liveness {
                stale_after: std::time::Duration::from_millis(nn.stale_interval_ms),
                dead_after: std::time::Duration::from_millis(nn.dead_interval_ms),
            },
            safe_mode: SafeModeConfig {
                threshold: nn.safemode_threshold,
                min_datanodes: nn.safemode_min_datanodes as usize,
                extension: std::time::Duration::from_millis(nn.safemode_extension_ms),
            },
            replication: ReplicationSettings {
                work_multiplier: nn.replication_work_multiplier,
                max_streams: nn.replication_max_streams,
                streams_hard_limit: nn.replication_streams_hard_limit,
                pending_timeout: Duration::from_millis(nn.pending_replication_timeout_ms),
            },
            replication_interval: Duration::from_millis(nn.replication_interval_ms),
            decommission_interval: Duration::from_millis(nn.decommission_interval_ms),
            hosts_file: nn.hosts_file.clone(),
            hosts_exclude_file: nn.hosts_exclude_file.clone(),
            topology_file: nn.topology_file.clone(),
            lease_soft_limit: Duration::from_millis(nn.lease_soft_limit_ms),
            lease_hard_limit: Duration::from_millis(nn.lease_hard_limit_ms),
            lease_recheck_interval: Duration::from_millis(nn.lease_recheck_interval_ms.max(10)),
            retry_cache: RetryCacheConfig {
                enabled: nn.retry_cache_enabled,
                expiry: Duration::from_millis(nn.retry_cache_expiry_ms),
                max_entries: nn.retry_cache_max_entries as usize,
            },
            permissions_enabled: config.security.permissions_enabled,
            acls_enabled: config.security.acls_enabled,
            trash_interval: minutes(config.fs.trash_interval_minutes),
            trash_checkpoint_interval: {
                let checkpoint = config.fs.trash_checkpoint_interval_minutes;
                let trash = config.fs.trash_interval_minutes;
                minutes(if checkpoint > 0.0 {
                    checkpoint.min(trash)
                } else {
                    trash
                })
            },
        }
    }
}

/// Who is asking, as the protocol facade ([`crate::protocol`]) established
/// it: the user the call acts for with the groups the namenode resolved,
/// whether that user is the superuser, the proxy acting for them, the
/// peer's address, and which call this is when the client names its calls
/// (at-most-once calls are answered from the retry cache when retried).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub groups: GroupList,
    /// The user the namenode runs as, or a member of the supergroup: no
    /// permission check applies.
    pub superuser: bool,
    /// The authenticated user acting for `user` (a proxy user).
    pub real_user: Option<String>,
    pub machine: String,
    pub rpc: Option<RpcId>,
}

impl Caller {
    /// A caller with no proxy and no call ids.
    pub fn new(user: &str, groups: GroupList, superuser: bool, machine: &str) -> Self {
        Self {
            user: user.to_string(),
            groups,
            superuser,
            real_user: None,
            machine: machine.to_string(),
            rpc: None,
        }
    }

    /// Refuses a non-superuser, as HDFS's `checkSuperuserPrivilege`.
    pub fn require_superuser(&self) -> Result<()> {
        if self.superuser {
            Ok(())
        } else {
            Err(crate::permission::superuser_required(&self.user))
        }
    }
}

/// Everything the namesystem lock protects.
#[derive(Debug)]
pub(crate) struct Locked {
    pub(crate) fs: FsState,
    pub(crate) safe_mode: SafeMode,
    /// Reports a standby holds back until it tails their blocks' edits.
    pub(crate) pending: Vec<standby::PendingReport>,
}

pub struct Namesystem {
    state: RwLock<Locked>,
    journal: Arc<dyn Journal>,
    info: NamespaceInfo,
    config: NamesystemConfig,
    /// Cancelled when the edit log fails: the namenode must stop (or, in
    /// HA, step down and reload), since its memory may hold changes that
    /// are not durable.
    fatal: CancellationToken,
    /// A standby's namesystem: changes come only from tailed edits.
    standby: std::sync::atomic::AtomicBool,
    /// An HA active's: a standby that was promoted.
    promoted: std::sync::atomic::AtomicBool,
    /// When start-up safe mode last looked up the blocks it waits for.
    safe_mode_looked_up: parking_lot::Mutex<Option<Instant>>,
    /// The answers of at-most-once calls, for their retries.
    retry_cache: RetryCache,
}

/// An empty namespace of this cluster (what `-format` saves as fsimage 0).
pub fn empty_state(
    info: &NamespaceInfo,
    config: &NamesystemConfig,
    owner: &str,
    group: &str,
    now: u64,
) -> FsState {
    FsState {
        namespace: Namespace::new(owner, group, 0o755, now),
        blocks: BlockManager::new(
            info.block_pool_id.clone(),
            config.min_replication.min(u16::MAX.into()) as u16,
        ),
        datanodes: DatanodeManager::new(config.liveness),
        leases: LeaseManager::default(),
    }
}

/// Replays `records` onto `state`, in order.
pub fn replay(state: &mut FsState, records: &[EditRecord]) -> Result<()> {
    replay_noting(state, records, |_, _| {})
}

/// A call an edit recorded, with what it answered (for the retry cache).
pub type CallOutcome = (RpcId, crate::retry_cache::Outcome, TxId);

/// Like [`replay`], and returns the outcomes of the last `keep` at-most-once
/// calls the edits name, as they were when each edit was applied (the
/// retry cache keeps no more anyway).
pub fn replay_calls(
    state: &mut FsState,
    records: &[EditRecord],
    keep: usize,
) -> Result<Vec<CallOutcome>> {
    let mut calls = std::collections::VecDeque::new();
    replay_noting(state, records, |state, record| {
        if keep == 0 {
            return;
        }
        if let (Some(rpc), Some(op)) = (RpcId::of(record), &record.op)
            && let Some(outcome) = retry::outcome_of_edit(state, op)
        {
            if calls.len() == keep {
                calls.pop_front();
            }
            calls.push_back((rpc, outcome, record.txid));
        }
    })?;
    Ok(calls.into())
}

fn replay_noting(
    state: &mut FsState,
    records: &[EditRecord],
    mut note: impl FnMut(&FsState, &EditRecord),
) -> Result<()> {
    for record in records {
        let Some(op) = &record.op else {
            return Err(NamenodeError::Io(format!(
                "edit log record {} holds no operation this rdfs knows",
                record.txid
            )));
        };
        state.apply(op).map_err(|err| {
            NamenodeError::Io(format!(
                "edit log record {} cannot be replayed: {err}",
                record.txid
            ))
        })?;
        note(state, record);
    }
    Ok(())
}

/// The status of an inode as clients see it (HDFS's `HdfsFileStatus`).
pub(crate) fn file_status(fs: &FsState, inode: Inode<'_>, name: Vec<u8>) -> FileStatus {
    let (file_type, length, children) = if inode.is_dir() {
        (FileType::Directory, 0, inode.children().len() as i32)
    } else {
        let length = inode
            .block_slots()
            .iter()
            .map(|slot| fs.blocks.info(*slot).num_bytes)
            .sum();
        (FileType::File, length, 0)
    };
    FileStatus {
        file_type,
        name,
        length,
        permission: inode.permission().mode,
        owner: inode.owner().to_string(),
        group: inode.group().to_string(),
        modification_time: inode.mtime(),
        access_time: inode.atime(),
        replication: u32::from(inode.replication()),
        block_size: inode.block_size(),
        file_id: inode.id(),
        children_num: children,
        locations: None,
    }
}

impl Namesystem {
    /// A namesystem over `fs`, in safe mode when `safe_mode` (a namenode
    /// starting up) and out of it otherwise (tests, benchmarks).
    pub fn new(
        info: NamespaceInfo,
        config: NamesystemConfig,
        mut fs: FsState,
        journal: Arc<dyn Journal>,
        fatal: CancellationToken,
        safe_mode: bool,
    ) -> Self {
        // Every writer gets a fresh lease, as after an HDFS restart.
        fs.leases = LeaseManager::rebuild(&fs.namespace, Instant::now());
        let retry_cache = RetryCache::new(config.retry_cache);
        let safe_mode = if safe_mode {
            SafeMode::startup(config.safe_mode)
        } else {
            SafeMode::off(config.safe_mode)
        };
        Self {
            state: RwLock::new(Locked {
                fs,
                safe_mode,
                pending: Vec::new(),
            }),
            journal,
            info,
            config,
            retry_cache,
            fatal,
            standby: std::sync::atomic::AtomicBool::new(false),
            promoted: std::sync::atomic::AtomicBool::new(false),
            safe_mode_looked_up: parking_lot::Mutex::new(None),
        }
    }

    pub fn namespace_info(&self) -> &NamespaceInfo {
        &self.info
    }

    pub fn config(&self) -> &NamesystemConfig {
        &self.config
    }

    pub fn last_txid(&self) -> TxId {
        self.journal.last_txid()
    }

    /// Remembers the answers of calls whose edits were replayed at start-up,
    /// so their retries are answered as the first attempts were.
    pub fn remember_calls(&self, calls: Vec<CallOutcome>) {
        for (rpc, outcome, txid) in calls {
            self.retry_cache.record(&rpc, outcome, txid);
        }
    }

    /// Entries in the retry cache and the bytes they take, roughly.
    pub fn retry_cache_usage(&self) -> (usize, usize) {
        (self.retry_cache.len(), self.retry_cache.memory())
    }

    /// Cancelled once the edit log has failed: this namesystem's memory may
    /// hold changes that never became durable, so it must not serve again.
    pub fn failed(&self) -> &CancellationToken {
        &self.fatal
    }

    /// Refuses a change while in safe mode: "<operation>. Name node is in
    /// safe mode." and why, as HDFS words it. An HA active still in its
    /// start-up safe mode (promoted before enough blocks were reported)
    /// will leave it by itself soon: it says RetriableException, which
    /// clients retry, as HDFS's does, rather than fail every write of a
    /// failover.
    fn check_writable(&self, locked: &Locked, operation: impl FnOnce() -> String) -> Result<()> {
        if locked.safe_mode.is_on() {
            let message = format!(
                "{}. Name node is in safe mode.\n{}",
                operation(),
                locked.safe_mode.tip()
            );
            if locked.safe_mode.is_automatic()
                && self.promoted.load(std::sync::atomic::Ordering::Acquire)
            {
                return Err(NamenodeError::Retriable(message));
            }
            return Err(NamenodeError::SafeMode(message));
        }
        Ok(())
    }

    /// Applies `op` and appends it to the journal; the caller holds the lock.
    fn log(&self, fs: &mut FsState, op: Op) -> Result<TxId> {
        self.log_call(fs, op, None)
    }

    /// Like [`Self::log`], for the edit an at-most-once call `rpc` made.
    fn log_call(&self, fs: &mut FsState, op: Op, rpc: Option<&RpcId>) -> Result<TxId> {
        if self.is_standby() {
            // The RPC layer turns callers away first; this guards the
            // namespace should anything get through.
            return Err(NamenodeError::Standby(
                "Operation category WRITE is not supported in state standby".into(),
            ));
        }
        fs.apply(&op)
            .map_err(|err| NamenodeError::Io(format!("internal error: {err}")))?;
        match self.journal.append(op, rpc) {
            Ok(txid) => Ok(txid),
            Err(err) => {
                self.fail(&err.to_string());
                Err(err.into())
            }
        }
    }

    /// Waits until the edit `txid` is durable.
    async fn sync(&self, txid: Option<TxId>) -> Result<()> {
        let Some(txid) = txid else { return Ok(()) };
        if let Err(err) = self.journal.sync(txid).await {
            self.fail(&err.to_string());
            return Err(err.into());
        }
        Ok(())
    }

    fn fail(&self, why: &str) {
        if !self.fatal.is_cancelled() {
            tracing::error!(
                error = why,
                "edit log failed; the namenode stops rather than acknowledge non-durable changes"
            );
            self.fatal.cancel();
        }
    }
}

/// A path through a file, for other operations: HDFS's AccessControlException.
fn through_file_access(resolved: std::result::Result<Resolved, ThroughFile>) -> Result<Resolved> {
    resolved.map_err(|t| NamenodeError::AccessControl(format!("{} (is not a directory)", t.path)))
}
