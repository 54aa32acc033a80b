//! One namenode of an HA nameservice: its role transitions, the standby's
//! edit tailing and checkpoints, and the active's leadership lease.
//!
//! Everything that changes the role runs on one controller task (operator
//! requests arrive as [`Command`]s), so transitions never interleave.
//! Checkpoints run on their own task: encoding a large namespace takes
//! seconds, and a standby must keep tailing and watching the lease
//! meanwhile.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use rdfs_common::config::{Config, NamenodeAddress, QuorumJournalUri};
use rdfs_qjournal::{NamespaceStamp, QuorumClient, QuorumError};

use super::journal::{HaJournal, QuorumJournal};
use super::{HaStatus, NamenodeHandle, Role};
use crate::edit_log::{Journal, TxId};
use crate::namesystem::{Namesystem, NamesystemConfig};
use crate::server::ServerError;
use crate::storage::{NameStorage, NamespaceInfo};

/// Edits applied per tailing round at most (a standby far behind catches up
/// over several rounds, staying responsive in between).
const TAIL_BATCH: usize = 20_000;
/// The active rolls its segment after this many edits or this long, so a
/// segment to recover after a failover stays small.
const ROLL_TXNS: u64 = 100_000;
const ROLL_PERIOD: Duration = Duration::from_secs(120);
/// How soon after a journalnode falls behind the segment is rolled so it
/// can rejoin.
const LAGGING_ROLL_DELAY: Duration = Duration::from_secs(2);
/// Bytes per chunk of a shipped image.
const IMAGE_CHUNK: usize = 1024 * 1024;
/// Edits kept on the journalnodes beyond the oldest retained image, so a
/// namenode whose image is a little older can still catch up (HDFS's
/// `dfs.namenode.num.extra.edits.retained`).
const EXTRA_EDITS_RETAINED: u64 = 1_000_000;
/// Tailing batches per round, so the controller stays responsive to
/// operators and to the lease while a standby far behind catches up.
const TAIL_ROUNDS: usize = 5;

/// Timings of an HA namenode.
#[derive(Debug, Clone)]
pub struct HaSettings {
    pub automatic_failover: bool,
    pub lease_timeout: Duration,
    pub renew_interval: Duration,
    pub tail_period: Duration,
    pub health_interval: Duration,
    pub journal_timeout: Duration,
    pub checkpoint_txns: u64,
    pub checkpoint_period: Duration,
    pub checkpoint_check: Duration,
    pub retained_images: usize,
}

impl HaSettings {
    pub fn from_config(config: &Config) -> Self {
        let ha = &config.ha;
        Self {
            automatic_failover: ha.automatic_failover,
            lease_timeout: Duration::from_millis(ha.lease_timeout_ms),
            renew_interval: Duration::from_millis(ha.lease_renew_interval_ms),
            tail_period: Duration::from_millis(ha.tail_edits_period_ms),
            health_interval: Duration::from_millis(ha.health_check_interval_ms),
            journal_timeout: Duration::from_millis(ha.journal_timeout_ms),
            checkpoint_txns: ha.standby_checkpoint_txns.max(1),
            checkpoint_period: Duration::from_millis(config.namenode.checkpoint_period_ms.max(1)),
            checkpoint_check: Duration::from_millis(config.namenode.checkpoint_check_ms.max(10)),
            retained_images: config.namenode.retained_images.max(1) as usize,
        }
    }

    /// How long this namenode trusts its lease after the start of a
    /// successful renewal: a little less than the journalnodes do (they
    /// count from when the renewal reached them), so that clocks running at
    /// slightly different rates cannot leave two namenodes both believing
    /// they lead.
    fn trusted_lease(&self) -> Duration {
        let margin = (self.lease_timeout / 10).min(Duration::from_millis(500));
        self.lease_timeout - margin
    }
}

/// A role change asked for by an operator.
pub enum Command {
    ToActive {
        take_over: bool,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    ToStandby {
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// The namespace facts a journal is formatted with.
pub fn stamp_of(info: &NamespaceInfo) -> NamespaceStamp {
    NamespaceStamp {
        cluster_id: info.cluster_id.clone(),
        namespace_id: info.namespace_id,
        block_pool_id: info.block_pool_id.clone(),
    }
}

pub struct HaNode {
    handle: Arc<NamenodeHandle>,
    qjm: QuorumClient,
    stamp: NamespaceStamp,
    settings: HaSettings,
    storage: Arc<NameStorage>,
    ns_config: NamesystemConfig,
    /// The journal of the current namesystem.
    journal: Mutex<Arc<HaJournal>>,
    /// The txid of the newest fsimage in the local name dirs.
    image_txid: AtomicU64,
    /// The other namenodes of the nameservice (checkpoints go to them).
    peers: Vec<NamenodeAddress>,
    /// The user this namenode runs as, named on its calls to the others
    /// (their superuser too: image uploads are the superuser's).
    user: String,
    commands: mpsc::Sender<Command>,
    command_queue: Mutex<Option<mpsc::Receiver<Command>>>,
    /// One image write at a time (a checkpoint or a received upload).
    image_lock: tokio::sync::Mutex<()>,
    /// Set when the active last rolled its segment.
    rolled_at: Mutex<Instant>,
    rolling: std::sync::atomic::AtomicBool,
    /// Whether the last tailing round reached the end of the committed
    /// journal: a standby that cannot catch up (its image predates the
    /// purged edits) must not try to take over.
    caught_up: std::sync::atomic::AtomicBool,
}

impl HaNode {
    /// Opens the name dirs, loads the newest local fsimage and returns a
    /// standby ready to tail the journal, with the handle its RPC services
    /// use.
    pub fn open(config: &Config, user: &str) -> Result<Arc<Self>, ServerError> {
        let me = config.this_ha_namenode()?;
        let uri = QuorumJournalUri::parse(&config.ha.shared_edits_dir)?;
        let peers = config
            .ha_namenodes()?
            .into_iter()
            .filter(|nn| nn.id != me.id)
            .collect();
        let storage = Arc::new(NameStorage::open(&config.namenode.name_dirs)?);
        let ns_config = NamesystemConfig::from_config(config);
        let settings = HaSettings::from_config(config);
        let qjm = QuorumClient::new(&uri, settings.journal_timeout);
        let stamp = stamp_of(&storage.info);
        let (namesystem, journal, image_txid) = build_standby(&storage, &ns_config)?;
        let handle = NamenodeHandle::ha(namesystem, &me.id);
        let (commands, queue) = mpsc::channel(8);
        tracing::info!(namenode = %me.id, journal = %config.ha.shared_edits_dir, image_txid,
            "HA namenode loaded its fsimage; it starts as standby");
        Ok(Arc::new(Self {
            handle,
            qjm,
            stamp,
            settings,
            storage,
            ns_config,
            journal: Mutex::new(journal),
            image_txid: AtomicU64::new(image_txid),
            peers,
            user: user.to_string(),
            commands,
            command_queue: Mutex::new(Some(queue)),
            image_lock: tokio::sync::Mutex::new(()),
            rolled_at: Mutex::new(Instant::now()),
            rolling: std::sync::atomic::AtomicBool::new(false),
            caught_up: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    pub fn handle(&self) -> &Arc<NamenodeHandle> {
        &self.handle
    }

    pub fn info(&self) -> &NamespaceInfo {
        &self.storage.info
    }

    pub fn settings(&self) -> &HaSettings {
        &self.settings
    }

    pub fn quorum(&self) -> &QuorumClient {
        &self.qjm
    }

    /// Asks the controller for a role change.
    pub fn command_sender(&self) -> mpsc::Sender<Command> {
        self.commands.clone()
    }

    /// Refuses to start against journalnodes formatted for another
    /// namespace (a standby pointed at the wrong cluster). Unreachable
    /// journalnodes are not fatal: the standby keeps trying to tail.
    pub async fn check_journal(&self) -> Result<(), ServerError> {
        match self.qjm.formatted_stamp().await {
            Ok(Some(stamp)) if stamp != self.stamp => Err(ServerError::Ha(format!(
                "the journal {} is formatted for cluster {} (namespace {}, block pool {}), but this namenode belongs to cluster {} (namespace {}, block pool {}); run `rdfs namenode -bootstrapStandby` or fix ha.shared_edits_dir",
                self.qjm.journalnodes().join(";"),
                stamp.cluster_id,
                stamp.namespace_id,
                stamp.block_pool_id,
                self.stamp.cluster_id,
                self.stamp.namespace_id,
                self.stamp.block_pool_id
            ))),
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(ServerError::Ha(format!(
                "the journal on {} is not formatted; run `rdfs namenode -format` (new cluster) or `rdfs namenode -initializeSharedEdits` (existing namenode)",
                self.qjm.journalnodes().join(";")
            ))),
            Err(err) => {
                tracing::warn!(error = %err, "cannot check the journal's namespace yet; the standby keeps trying");
                Ok(())
            }
        }
    }

    /// The controller: tails and watches the lease as a standby, renews it
    /// as the active, and carries out operator requests, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let Some(mut queue) = self.command_queue.lock().take() else {
            tracing::error!("the HA controller was started twice");
            return;
        };
        let mut tail = tokio::time::interval(self.settings.tail_period);
        let mut health = tokio::time::interval(self.settings.health_interval);
        let mut renew = tokio::time::interval(self.settings.renew_interval);
        for timer in [&mut tail, &mut health, &mut renew] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            let role = self.handle.status().role;
            let failed = self.handle.get().failed().clone();
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = failed.cancelled(), if role == Role::Active => {
                    self.demote("its edit log failed").await;
                }
                _ = renew.tick(), if role == Role::Active => self.renew().await,
                Some(command) = queue.recv() => self.handle_command(command).await,
                _ = health.tick(), if role == Role::Initializing
                    || (role == Role::Standby && self.settings.automatic_failover) => {
                    if role == Role::Initializing {
                        // A reload after stepping down failed: try again.
                        self.reload().await;
                    } else {
                        self.maybe_take_over().await;
                    }
                }
                _ = tail.tick(), if role == Role::Standby => {
                    if let Err(err) = self.tail_once().await {
                        tracing::warn!(error = %err, "tailing edits failed; retrying");
                    }
                }
            }
        }
        self.shut_down().await;
    }

    async fn handle_command(self: &Arc<Self>, command: Command) {
        match command {
            Command::ToActive { take_over, reply } => {
                let result = self.become_active(take_over).await;
                let _ = reply.send(result);
            }
            Command::ToStandby { reply } => {
                if self.handle.status().role == Role::Active {
                    self.demote("an operator asked it to become standby").await;
                }
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Applies committed edits the active wrote since the last round.
    async fn tail_once(&self) -> Result<usize, String> {
        let result = self.tail_rounds().await;
        self.caught_up
            .store(matches!(result, Ok((_, true))), Ordering::Release);
        result.map(|(applied, _)| applied)
    }

    /// Up to [`TAIL_ROUNDS`] batches; how many edits were applied and
    /// whether the end of the committed journal was reached.
    async fn tail_rounds(&self) -> Result<(usize, bool), String> {
        let namesystem = self.handle.get();
        let mut applied = 0;
        for _ in 0..TAIL_ROUNDS {
            let from = namesystem.last_txid() + 1;
            let records = tokio::time::timeout(
                self.settings.journal_timeout,
                self.qjm.read_committed(from, TAIL_BATCH),
            )
            .await
            .map_err(|_| "the journal did not answer in time".to_string())?
            .map_err(|e| e.to_string())?;
            if records.is_empty() {
                return Ok((applied, true));
            }
            let count = records.len();
            namesystem
                .apply_tailed(&records)
                .map_err(|e| format!("applying tailed edits from txid {from}: {e}"))?;
            applied += count;
            if count < TAIL_BATCH {
                return Ok((applied, true));
            }
        }
        Ok((applied, false))
    }

    /// Takes over when the journalnodes say the active's lease has lapsed.
    async fn maybe_take_over(&self) {
        if !self.caught_up.load(Ordering::Acquire) {
            // Taking an epoch it cannot use would only fence the active
            // and hold up a healthier standby.
            return;
        }
        let view = match self.qjm.lease_view(self.settings.lease_timeout).await {
            Ok(view) => view,
            Err(err) => {
                tracing::debug!(error = %err, "cannot read the leadership lease");
                return;
            }
        };
        if view.held {
            return;
        }
        tracing::info!(previous_writer = %view.writer, epoch = view.epoch,
            "the active namenode's lease has lapsed; taking over");
        if let Err(err) = self.become_active(false).await {
            tracing::warn!(error = %err, "could not become active");
        }
    }

    /// Becomes the active namenode: a new epoch (fencing any old writer),
    /// recovery of the last segment, every remaining edit applied, a new
    /// segment; the epoch on success.
    async fn become_active(&self, take_over: bool) -> Result<u64, String> {
        let status = self.handle.status();
        if status.role == Role::Active {
            return Ok(status.epoch);
        }
        if status.role != Role::Standby {
            return Err(format!("it is {}", status.role.name()));
        }
        let started = self.handle.now();
        let namesystem = self.handle.get();
        if namesystem.failed().is_cancelled() {
            return Err("its namespace is being reloaded".into());
        }
        let writer = self
            .qjm
            .new_epoch(
                &self.stamp,
                self.handle.id(),
                self.settings.lease_timeout,
                take_over,
            )
            .await
            .map_err(|err| match err {
                QuorumError::LeaseHeld {
                    writer,
                    remaining_ms,
                } => format!(
                    "namenode {writer} still holds the leadership lease for {remaining_ms} ms; it must step down first (use -failover, or wait)"
                ),
                other => format!("cannot take a new journal epoch: {other}"),
            })?;
        let writer = Arc::new(writer);
        let epoch = writer.epoch();
        let last = writer
            .recover()
            .await
            .map_err(|e| format!("recovering the journal in epoch {epoch}: {e}"))?;
        // Everything up to `last` is committed now: apply what is missing.
        while namesystem.last_txid() < last {
            let from = namesystem.last_txid() + 1;
            let records = self
                .qjm
                .read_committed(from, TAIL_BATCH)
                .await
                .map_err(|e| format!("reading edits from txid {from}: {e}"))?;
            if records.is_empty() {
                return Err(format!(
                    "the journal holds edits up to txid {last} but none could be read from txid {from}"
                ));
            }
            namesystem
                .apply_tailed(&records)
                .map_err(|e| format!("applying edits from txid {from}: {e}"))?;
        }
        if namesystem.last_txid() > last {
            // This namesystem applied edits the recovery discarded: it can
            // only be rebuilt, never promoted.
            let why = format!(
                "this standby applied edits up to txid {} but the recovered journal ends at {last}",
                namesystem.last_txid()
            );
            self.demote(&why).await;
            return Err(why);
        }
        writer
            .start_segment(last + 1)
            .await
            .map_err(|e| format!("starting a segment at txid {}: {e}", last + 1))?;
        let journal = Arc::new(QuorumJournal::new(
            Arc::clone(&writer),
            last + 1,
            namesystem.failed().clone(),
        ));
        self.journal.lock().activate(journal);
        namesystem.promote();
        *self.rolled_at.lock() = Instant::now();
        let lease_until = started + self.settings.trusted_lease();
        let active_since = rdfs_common::time::now_ms();
        self.handle.set_status(HaStatus {
            role: Role::Active,
            epoch,
            lease_until: Some(lease_until),
        });
        tracing::info!(
            namenode = self.handle.id(),
            epoch,
            last_txid = last,
            took_ms = self
                .handle
                .now()
                .saturating_duration_since(started)
                .as_millis() as u64,
            in_safe_mode = namesystem.safe_mode_tip().is_some(),
            active_since_unix_ms = active_since,
            lease_until_unix_ms = self.unix_ms(lease_until),
            "this namenode is now active"
        );
        Ok(epoch)
    }

    /// Renews the leadership lease; steps down when fenced, or when the
    /// lease ran out without a successful renewal.
    async fn renew(self: &Arc<Self>) {
        let Some(journal) = self.journal.lock().quorum() else {
            return;
        };
        // Counted from before the renewal went out: the journalnodes count
        // from when it reached them, so this namenode's lease ends first.
        let started = self.handle.now();
        let result =
            tokio::time::timeout(self.settings.journal_timeout, journal.writer().heartbeat()).await;
        match result {
            Ok(Ok(())) => {
                let until = started + self.settings.trusted_lease();
                self.handle.extend_lease(until);
                // When it serves as active until, on the wall clock other
                // processes share: what tests check two actives never
                // overlap by.
                tracing::debug!(target: "rdfs_namenode::lease", namenode = self.handle.id(),
                    epoch = self.handle.status().epoch, lease_until_unix_ms = self.unix_ms(until),
                    "leadership lease renewed");
                self.maybe_roll(&journal).await;
            }
            Ok(Err(QuorumError::Fenced {
                journalnode,
                ours,
                promised,
            })) => {
                self.demote(&format!(
                    "journalnode {journalnode} has promised epoch {promised} to another namenode (ours is {ours})"
                ))
                .await;
            }
            Ok(Err(err)) => self.lease_at_risk(&err.to_string()).await,
            Err(_) => {
                self.lease_at_risk("the journalnodes did not answer in time")
                    .await
            }
        }
    }

    /// `at` on the wall clock, in milliseconds since the Unix epoch.
    fn unix_ms(&self, at: rdfs_common::time::BootInstant) -> u64 {
        let now = self.handle.now();
        let wall = rdfs_common::time::now_ms();
        if at >= now {
            wall + at.saturating_duration_since(now).as_millis() as u64
        } else {
            wall.saturating_sub(now.saturating_duration_since(at).as_millis() as u64)
        }
    }

    async fn lease_at_risk(&self, why: &str) {
        let status = self.handle.status();
        if status.lease_until.is_none_or(|t| self.handle.now() >= t) {
            self.demote(&format!("its leadership lease lapsed: {why}"))
                .await;
        } else {
            tracing::warn!(error = why, "cannot renew the leadership lease yet");
        }
    }

    /// Rolls the segment when it is due, in its own task: a roll waits for
    /// the batch in flight and two quorum calls, and must never hold up
    /// the lease renewal.
    async fn maybe_roll(self: &Arc<Self>, journal: &Arc<QuorumJournal>) {
        let pending = journal.last_txid().saturating_sub(journal.segment_first()) + 1;
        // A journalnode that missed a batch (it was down, paused or slow)
        // rejoins only at the next segment; until then one more failure
        // would leave no majority. So roll soon after one falls behind.
        let lagging = journal.writer().out_of_sync();
        let due = {
            let rolled = self.rolled_at.lock();
            pending >= ROLL_TXNS
                || (rolled.elapsed() >= ROLL_PERIOD && pending > 1)
                || (!lagging.is_empty() && rolled.elapsed() >= LAGGING_ROLL_DELAY && pending > 1)
        };
        if due && !lagging.is_empty() {
            tracing::info!(lagging = ?lagging, "rolling the segment so lagging journalnodes rejoin");
        }
        if !due || self.rolling.swap(true, Ordering::AcqRel) {
            return;
        }
        let node = Arc::clone(self);
        let journal = Arc::clone(journal);
        tokio::spawn(async move {
            match journal.roll().await {
                Ok(first) => {
                    tracing::info!(next_segment = first, "rolled the edit log segment");
                    *node.rolled_at.lock() = Instant::now();
                }
                Err(err) => tracing::error!(error = %err, "rolling the edit log failed"),
            }
            node.rolling.store(false, Ordering::Release);
        });
    }

    /// Stops being active and rebuilds the namespace from the local image
    /// and the committed journal: memory may hold edits that never reached
    /// a majority.
    async fn demote(&self, why: &str) {
        let status = self.handle.status();
        // Neither active nor a standby until the namespace is reloaded: the
        // old one may hold edits that never became durable, so nothing may
        // read, checkpoint or promote it.
        self.handle.set_status(HaStatus {
            role: Role::Initializing,
            epoch: 0,
            lease_until: None,
        });
        if let Some(journal) = self.journal.lock().quorum() {
            journal.abort(&format!("namenode stepped down: {why}"));
        }
        self.handle.get().failed().cancel();
        self.handle.get().set_standby();
        tracing::warn!(
            namenode = self.handle.id(),
            epoch = status.epoch,
            reason = why,
            "this namenode is no longer active; reloading the namespace as a standby"
        );
        self.reload().await;
    }

    /// Replaces the namesystem with a standby one loaded from the newest
    /// local image and caught up on the journal.
    async fn reload(&self) {
        // Not while an image is being written: loading sets aside
        // half-written temp files.
        let _images = self.image_lock.lock().await;
        let storage_dirs = self.storage.current_dirs.clone();
        let storage = Arc::clone(&self.storage);
        let config = self.ns_config.clone();
        let built =
            match tokio::task::spawn_blocking(move || build_standby(&storage, &config)).await {
                Ok(built) => built,
                Err(err) => Err(ServerError::Ha(format!("reload task failed: {err}"))),
            };
        match built {
            Ok((namesystem, journal, image_txid)) => {
                self.image_txid.store(image_txid, Ordering::Release);
                self.handle.replace(namesystem);
                *self.journal.lock() = journal;
                self.handle.set_status(HaStatus {
                    role: Role::Standby,
                    epoch: 0,
                    lease_until: None,
                });
                match self.tail_once().await {
                    Ok(applied) => {
                        tracing::info!(image_txid, applied, "standby namespace reloaded")
                    }
                    Err(err) => tracing::warn!(error = %err, "reloaded; tailing continues"),
                }
            }
            Err(err) => {
                tracing::error!(error = %err, dirs = ?storage_dirs,
                    "cannot reload the namespace; this namenode serves nothing and retries");
            }
        }
    }

    async fn shut_down(&self) {
        let status = self.handle.status();
        if status.role != Role::Active {
            return;
        }
        self.handle.set_status(HaStatus {
            role: Role::Stopping,
            epoch: status.epoch,
            lease_until: None,
        });
        let quorum = self.journal.lock().quorum();
        if let Some(journal) = quorum {
            match journal.close().await {
                Ok(next) => tracing::info!(
                    last_txid = next - 1,
                    "edit log segment finalized on the journal quorum"
                ),
                Err(err) => {
                    tracing::warn!(error = %err, "could not finalize the edit log segment; the next active recovers it")
                }
            }
        }
    }

    /// Checkpoints as a standby whenever enough edits or time have passed,
    /// until `stop`.
    pub async fn run_checkpoints(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.checkpoint_check);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_at = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.handle.status().role != Role::Standby {
                continue;
            }
            let namesystem = self.handle.get();
            // Only a namespace built from committed edits alone: never one
            // that was active (it may hold edits that never became durable).
            if !namesystem.is_standby()
                || namesystem.failed().is_cancelled()
                || self.journal.lock().quorum().is_some()
            {
                continue;
            }
            let pending = namesystem
                .last_txid()
                .saturating_sub(self.image_txid.load(Ordering::Acquire));
            let due = pending > 0
                && (pending >= self.settings.checkpoint_txns
                    || last_at.elapsed() >= self.settings.checkpoint_period);
            if !due {
                continue;
            }
            last_at = Instant::now();
            match self.checkpoint(namesystem).await {
                Ok(txid) => tracing::info!(txid, "standby checkpoint saved and shipped"),
                Err(err) => {
                    tracing::error!(error = %err, "standby checkpoint failed; the next check tries again")
                }
            }
        }
    }

    /// Saves the standby's namespace as an fsimage and ships it to the
    /// other namenodes.
    pub async fn checkpoint(&self, namesystem: Arc<Namesystem>) -> Result<TxId, String> {
        let started = Instant::now();
        let (txid, image) = tokio::task::spawn_blocking(move || namesystem.encode_image())
            .await
            .map_err(|e| format!("checkpoint task failed: {e}"))?;
        self.save_image(txid, image.clone()).await?;
        let encoded_ms = started.elapsed().as_millis() as u64;
        let image = bytes::Bytes::from(image);
        for peer in &self.peers {
            if let Err(err) = upload_image(
                &peer.address,
                &self.user,
                &self.storage.info,
                txid,
                image.clone(),
            )
            .await
            {
                tracing::warn!(namenode = %peer.id, address = %peer.address, error = %err,
                    "cannot ship the checkpoint to this namenode");
            }
        }
        tracing::debug!(txid, encoded_ms, "checkpoint done");
        Ok(txid)
    }

    /// Stores an image in every local name dir (after checking it decodes
    /// as this namespace), purges old ones, and — as the active — purges
    /// journal segments no retained image needs.
    pub async fn save_image(&self, txid: TxId, image: Vec<u8>) -> Result<(), String> {
        let _guard = self.image_lock.lock().await;
        if txid <= self.image_txid.load(Ordering::Acquire) {
            return Ok(());
        }
        let dirs = self.storage.current_dirs.clone();
        let info = self.storage.info.clone();
        let config = self.ns_config.clone();
        let retained = self.settings.retained_images;
        let oldest = tokio::task::spawn_blocking(move || -> Result<TxId, String> {
            let name = crate::fsimage::file_name(txid);
            let check_path = PathBuf::from(&name);
            let decoded = crate::fsimage::decode(&check_path, &image, &info, &config)
                .map_err(|e| format!("the image for txid {txid} is not usable: {e}"))?;
            if decoded.txid != txid {
                return Err(format!(
                    "the image claims txid {} but was sent as txid {txid}",
                    decoded.txid
                ));
            }
            let mut written = 0;
            let mut last_error = String::new();
            for dir in &dirs {
                let path = dir.join(&name);
                match rdfs_common::durable::write_file(&path, &image) {
                    Ok(()) => written += 1,
                    Err(err) => last_error = format!("{}: {err}", path.display()),
                }
            }
            if written == 0 {
                return Err(format!(
                    "the image could not be written to any name directory: {last_error}"
                ));
            }
            NameStorage::purge(&dirs, retained);
            let oldest = dirs
                .iter()
                .filter_map(|dir| crate::fsimage::list(dir).ok())
                .flatten()
                .map(|(txid, _)| txid)
                .min()
                .unwrap_or(txid);
            Ok(oldest)
        })
        .await
        .map_err(|e| format!("image task failed: {e}"))??;
        self.image_txid.fetch_max(txid, Ordering::AcqRel);
        if let Some(journal) = self.journal.lock().quorum() {
            let writer = Arc::clone(journal.writer());
            tokio::spawn(async move {
                let keep_from = (oldest + 1).saturating_sub(EXTRA_EDITS_RETAINED);
                if keep_from > 1
                    && let Err(err) = writer.purge_older_than(keep_from).await
                {
                    tracing::warn!(error = %err, "cannot purge old edit segments from the journalnodes");
                }
            });
        }
        Ok(())
    }

    /// The newest local image, for a namenode being bootstrapped.
    pub fn newest_image(&self) -> Result<(TxId, Vec<u8>), String> {
        let mut images: Vec<(TxId, PathBuf)> = self
            .storage
            .current_dirs
            .iter()
            .filter_map(|dir| crate::fsimage::list(dir).ok())
            .flatten()
            .collect();
        images.sort_by_key(|(txid, _)| std::cmp::Reverse(*txid));
        let (txid, path) = images
            .into_iter()
            .next()
            .ok_or_else(|| "this namenode has no fsimage".to_string())?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((txid, bytes))
    }
}

/// A standby namesystem from the newest local image.
fn build_standby(
    storage: &NameStorage,
    config: &NamesystemConfig,
) -> Result<(Arc<Namesystem>, Arc<HaJournal>, TxId), ServerError> {
    let (image_txid, state) = storage.load_image(config)?;
    let journal = Arc::new(HaJournal::standby(image_txid));
    let namesystem = Arc::new(Namesystem::new(
        storage.info.clone(),
        config.clone(),
        state,
        Arc::clone(&journal) as Arc<dyn Journal>,
        CancellationToken::new(),
        true,
    ));
    namesystem.set_standby();
    namesystem.load_topology()?;
    namesystem.refresh_nodes()?;
    Ok((namesystem, journal, image_txid))
}

/// Streams an image to another namenode's HA service.
pub async fn upload_image(
    address: &str,
    user: &str,
    info: &NamespaceInfo,
    txid: TxId,
    image: bytes::Bytes,
) -> Result<(), String> {
    let channel = rdfs_common::grpc::channel(address, Duration::from_secs(10))
        .map_err(|e| format!("bad namenode address {address}: {e}"))?;
    let as_user = rdfs_common::grpc::UserInterceptor::new(user, None)?;
    let mut client =
        rdfs_proto::ha_service_client::HaServiceClient::with_interceptor(channel, as_user)
            .max_encoding_message_size(rdfs_common::grpc::MAX_MESSAGE_SIZE)
            .max_decoding_message_size(rdfs_common::grpc::MAX_MESSAGE_SIZE);
    let total = image.len() as u64;
    let cluster_id = info.cluster_id.clone();
    let chunks: Vec<rdfs_proto::ImageChunk> = if image.is_empty() {
        vec![rdfs_proto::ImageChunk {
            txid,
            cluster_id,
            data: Vec::new(),
            total_len: 0,
        }]
    } else {
        image
            .chunks(IMAGE_CHUNK)
            .enumerate()
            .map(|(i, chunk)| rdfs_proto::ImageChunk {
                txid,
                cluster_id: if i == 0 {
                    cluster_id.clone()
                } else {
                    String::new()
                },
                data: chunk.to_vec(),
                total_len: total,
            })
            .collect()
    };
    client
        .upload_image(tokio_stream::iter(chunks))
        .await
        .map_err(|status| format!("{address}: {}", status.message()))?;
    Ok(())
}
