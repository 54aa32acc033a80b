//! rdfs configuration: one TOML file (documented with every default in
//! `config/rdfs.toml`), then `-D key=value` overrides applied last.
//!
//! Keys are `section.key` (`dfs.block_size`); Hadoop's own names
//! (`dfs.blocksize`, `fs.defaultFS`, `dfs.replication`, ...) are accepted as
//! `-D` overrides too, so operators' habits carry over. Unknown keys are
//! reported as warnings, never silently dropped. Path values may use
//! `${VAR}` and `${VAR:-default}`; `${RDFS_HOME}` defaults to
//! `${TMPDIR:-/tmp}/rdfs-<user>`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("-D {0}: expected key=value")]
    BadOverride(String),
}

/// Everything configurable, by section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub fs: FsConfig,
    pub dfs: DfsConfig,
    pub client: ClientConfig,
    pub namenode: NamenodeConfig,
    pub datanode: DatanodeConfig,
    pub ha: HaConfig,
    pub journalnode: JournalnodeConfig,
    pub security: SecurityConfig,
}

/// Who may do what: HDFS's permission, group-mapping and proxy-user
/// settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    /// Whether the namenode checks permissions (`dfs.permissions.enabled`);
    /// off, only ownership is checked for chmod and chown, as in HDFS.
    pub permissions_enabled: bool,
    /// Whether POSIX ACLs may be set and are enforced
    /// (`dfs.namenode.acls.enabled`).
    pub acls_enabled: bool,
    /// Seconds a user's groups are cached
    /// (`hadoop.security.groups.cache.secs`).
    pub groups_cache_secs: u64,
    /// Seconds a user the system does not know is remembered as such
    /// (`hadoop.security.groups.negative-cache.secs`; 0 remembers none).
    pub groups_negative_cache_secs: u64,
    /// Users whose groups come from here rather than the system, as
    /// `user=group1,group2;user2=;`
    /// (`hadoop.user.group.static.mapping.overrides`).
    pub group_mapping_overrides: String,
    /// Users allowed to act for others, by name
    /// (`hadoop.proxyuser.<name>.hosts`, `.groups`, `.users`).
    pub proxy_users: std::collections::BTreeMap<String, ProxyUserConfig>,
    /// Whether the namenode hands out block access tokens and datanodes
    /// require them (`dfs.block.access.token.enable`).
    pub block_access_token_enable: bool,
    /// How often the namenode rolls its block keys
    /// (`dfs.block.access.key.update.interval`, there in minutes).
    pub block_access_key_update_interval_ms: u64,
    /// How long a block token is valid
    /// (`dfs.block.access.token.lifetime`, there in minutes).
    pub block_access_token_lifetime_ms: u64,
    /// Mutual TLS on every connection, servers and clients alike.
    pub tls_enabled: bool,
    /// PEM file of the cluster's CA certificate (`rdfs ca init`).
    pub tls_ca_file: String,
    /// PEM file of this process's certificate (`rdfs ca issue`).
    pub tls_cert_file: String,
    /// PEM file of this process's private key.
    pub tls_key_file: String,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            permissions_enabled: true,
            acls_enabled: true,
            groups_cache_secs: 300,
            groups_negative_cache_secs: 30,
            group_mapping_overrides: "dr.who=;".to_string(),
            proxy_users: std::collections::BTreeMap::new(),
            block_access_token_enable: false,
            block_access_key_update_interval_ms: 600 * 60_000,
            block_access_token_lifetime_ms: 600 * 60_000,
            tls_enabled: false,
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

/// What one proxy user may do: connect from `hosts` and act for `users` or
/// members of `groups`; each a comma-separated list, `*` for any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProxyUserConfig {
    pub hosts: String,
    pub groups: String,
    pub users: String,
}

/// Shared by every process (Hadoop's core-site.xml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FsConfig {
    /// The filesystem paths without a scheme refer to (`fs.defaultFS`).
    pub default_fs: String,
    /// Permission bits a client clears from new files and directories,
    /// octal (`022`) or symbolic (`u=rwx,g=rx,o=`)
    /// (`fs.permissions.umask-mode`).
    pub umask_mode: String,
    /// Minutes the trash keeps what `-rm` removes; 0 turns the trash off
    /// (`fs.trash.interval`; fractions allowed, as in Hadoop). The
    /// namenode's value is what clients use.
    pub trash_interval_minutes: f64,
    /// Minutes between the namenode's trash checkpoints; 0 means the trash
    /// interval (`fs.trash.checkpoint.interval`).
    pub trash_checkpoint_interval_minutes: f64,
}

impl FsConfig {
    /// The umask `umask_mode` gives: octal (`022`, `0077`) or symbolic
    /// clauses naming the bits new files and directories may keep
    /// (`u=rwx,g=rx,o=` is `027`), as Hadoop's `UmaskParser` reads them.
    pub fn umask(&self) -> Result<u16, ConfigError> {
        parse_umask(&self.umask_mode).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "Unable to parse configuration fs.permissions.umask-mode with value {} as octal or symbolic umask.",
                self.umask_mode
            ))
        })
    }
}

fn parse_umask(text: &str) -> Option<u16> {
    let text = text.trim();
    let digits = text.strip_prefix('+').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        let trimmed = digits.trim_start_matches('0');
        return (trimmed.len() <= 3).then(|| u16::from_str_radix(trimmed, 8).unwrap_or(0));
    }
    let mut allowed = 0u16;
    for clause in text.split(',') {
        let op_at = clause.find(['+', '-', '='])?;
        let (who, rest) = clause.split_at(op_at);
        let (op, bits) = rest.split_at(1);
        if !who.chars().all(|c| "ugoa".contains(c)) || !bits.chars().all(|c| "rwx".contains(c)) {
            return None;
        }
        let mut perm = 0u16;
        for c in bits.chars() {
            perm |= match c {
                'r' => 4,
                'w' => 2,
                _ => 1,
            };
        }
        let who = if who.is_empty() { "a" } else { who };
        for class in who.chars() {
            let shifts: &[u16] = match class {
                'u' => &[6],
                'g' => &[3],
                'o' => &[0],
                _ => &[6, 3, 0],
            };
            for shift in shifts {
                match op {
                    "-" => allowed &= !(perm << shift),
                    "=" => allowed = (allowed & !(7 << shift)) | (perm << shift),
                    _ => allowed |= perm << shift,
                }
            }
        }
    }
    Some(!allowed & 0o777)
}

impl Default for FsConfig {
    fn default() -> Self {
        Self {
            default_fs: "hdfs://127.0.0.1:8020".to_string(),
            umask_mode: "022".to_string(),
            trash_interval_minutes: 0.0,
            trash_checkpoint_interval_minutes: 0.0,
        }
    }
}

/// HDFS-wide settings that clients, namenode and datanodes agree on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DfsConfig {
    /// Replicas per block for new files (`dfs.replication`).
    pub replication: u32,
    /// Block size for new files (`dfs.blocksize`).
    pub block_size: ByteSize,
    /// Bytes covered by each checksum (`dfs.bytes-per-checksum`).
    pub bytes_per_checksum: u32,
    /// The checksum new replicas are written with: CRC32C or CRC32
    /// (`dfs.checksum.type`).
    pub checksum_type: String,
    /// How often datanodes heartbeat (`dfs.heartbeat.interval`, in ms here).
    pub heartbeat_interval_ms: u64,
}

impl Default for DfsConfig {
    fn default() -> Self {
        Self {
            replication: 3,
            block_size: ByteSize(256 * 1024 * 1024),
            bytes_per_checksum: 512,
            checksum_type: "CRC32C".into(),
            heartbeat_interval_ms: 3000,
        }
    }
}

impl DfsConfig {
    /// The checksum setting of new replicas.
    pub fn data_checksum(&self) -> Result<crate::checksum::DataChecksum, ConfigError> {
        use crate::checksum::{ChecksumKind, DataChecksum};
        let kind = match self.checksum_type.to_ascii_uppercase().as_str() {
            "CRC32C" => ChecksumKind::Crc32c,
            "CRC32" => ChecksumKind::Crc32,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "dfs.checksum_type = {other} is not supported; use CRC32C or CRC32"
                )));
            }
        };
        DataChecksum::new(kind, self.bytes_per_checksum)
            .map_err(|e| ConfigError::Invalid(format!("dfs.bytes_per_checksum: {e}")))
    }
}

/// The client library and `rdfs dfs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientConfig {
    /// Data bytes per write packet (`dfs.client-write-packet-size`). 256 KiB
    /// rather than HDFS's 64 KiB: a quarter of the per-packet work on every
    /// datanode (wakeups, acks, syscalls) for the same bytes.
    pub write_packet_size: ByteSize,
    /// Packets sent but not yet acknowledged before the writer waits; with
    /// 256 KiB packets, 20 keep HDFS's 5 MiB in flight.
    pub max_packets_in_flight: u32,
    /// Timeout for connecting to a namenode or datanode.
    pub connect_timeout_ms: u64,
    /// Timeout for any single network wait (`dfs.client.socket-timeout`).
    pub socket_timeout_ms: u64,
    /// Attempts to set up a write pipeline for a block, excluding the failed
    /// datanode each time (`dfs.client.block.write.retries`).
    pub block_write_retries: u32,
    /// Attempts of `complete` while the last block awaits its minimum replicas.
    pub complete_retries: u32,
    /// The user name sent to the namenode; empty means `HADOOP_USER_NAME`,
    /// then the login user.
    pub user: String,
    /// Whether a pipeline that lost a datanode may get a replacement
    /// (`dfs.client.block.write.replace-datanode-on-failure.enable`).
    pub replace_datanode_on_failure: bool,
    /// When a replacement is added: `DEFAULT` (replication 3 or more and
    /// either half the pipeline lost or the block hflushed or appended),
    /// `ALWAYS` or `NEVER`
    /// (`dfs.client.block.write.replace-datanode-on-failure.policy`).
    pub replace_datanode_on_failure_policy: String,
    /// Go on with the surviving datanodes when no replacement can be added
    /// (`dfs.client.block.write.replace-datanode-on-failure.best-effort`).
    pub replace_datanode_on_failure_best_effort: bool,
    /// Attempts of one namenode call across the namenodes of an HA
    /// nameservice, moving on after a standby answer or a connection
    /// failure (`dfs.client.failover.max.attempts`).
    pub failover_max_attempts: u32,
    /// First pause between failover attempts, doubling up to the maximum
    /// (`dfs.client.failover.sleep.base.millis`).
    pub failover_sleep_base_ms: u64,
    /// Longest pause between failover attempts
    /// (`dfs.client.failover.sleep.max.millis`).
    pub failover_sleep_max_ms: u64,
    /// Times a reader asks again for the locations of a file's last block
    /// while it is being written and the namenode knows none of its
    /// datanodes yet (a namenode that has just taken over), before it fails
    /// rather than read the file short
    /// (`dfs.client.retry.times.get-last-block-length`)...
    pub last_block_length_retries: u32,
    /// ...this long apart (`dfs.client.retry.interval-ms.get-last-block-length`).
    pub last_block_length_retry_interval_ms: u64,
    /// How long a call keeps retrying a namenode that answers
    /// RetriableException (an active still in its start-up safe mode, whose
    /// extension alone is 30 s by default); those answers do not count
    /// against `failover_max_attempts`.
    pub retriable_wait_ms: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            write_packet_size: ByteSize(256 * 1024),
            max_packets_in_flight: 20,
            connect_timeout_ms: 20_000,
            socket_timeout_ms: 60_000,
            block_write_retries: 3,
            complete_retries: 10,
            user: String::new(),
            replace_datanode_on_failure: true,
            replace_datanode_on_failure_policy: "DEFAULT".to_string(),
            replace_datanode_on_failure_best_effort: false,
            failover_max_attempts: 30,
            failover_sleep_base_ms: 50,
            failover_sleep_max_ms: 500,
            last_block_length_retries: 3,
            last_block_length_retry_interval_ms: 4_000,
            retriable_wait_ms: 90_000,
        }
    }
}

/// `rdfs namenode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamenodeConfig {
    /// Address the RPC server binds (`dfs.namenode.rpc-address`); empty means
    /// the host and port of `fs.default_fs`. Port 0 picks a free port.
    pub rpc_address: String,
    /// Directories holding the namespace metadata (`dfs.namenode.name.dir`).
    #[serde(deserialize_with = "paths_from_list_or_string")]
    pub name_dirs: Vec<PathBuf>,
    /// Replicas a block needs before a file can be closed
    /// (`dfs.namenode.replication.min`).
    pub min_replication: u32,
    /// Largest replication a file may ask for (`dfs.replication.max`).
    pub max_replication: u32,
    /// A datanode silent this long is stale: last choice for reads and writes.
    pub stale_interval_ms: u64,
    /// A datanode silent this long is dead: its replicas no longer count.
    pub dead_interval_ms: u64,
    /// Replica deletions sent to one datanode per heartbeat.
    pub invalidate_limit_per_heartbeat: u32,
    /// Entries per `getListing` reply (`dfs.ls.limit`).
    pub listing_limit: u32,
    /// Group whose members bypass permission checks
    /// (`dfs.permissions.superusergroup`).
    pub supergroup: String,
    /// Share of complete blocks that must have a reported replica before the
    /// namenode leaves start-up safe mode (`dfs.namenode.safemode.threshold-pct`).
    pub safemode_threshold: f64,
    /// Live datanodes needed to leave start-up safe mode
    /// (`dfs.namenode.safemode.min.datanodes`).
    pub safemode_min_datanodes: u32,
    /// How long to stay in safe mode once its thresholds are met
    /// (`dfs.namenode.safemode.extension`).
    pub safemode_extension_ms: u64,
    /// Checkpoint once this many edits follow the newest fsimage
    /// (`dfs.namenode.checkpoint.txns`).
    pub checkpoint_txns: u64,
    /// Checkpoint once the newest fsimage is this old
    /// (`dfs.namenode.checkpoint.period`, here in milliseconds).
    pub checkpoint_period_ms: u64,
    /// How often the two conditions above are checked
    /// (`dfs.namenode.checkpoint.check.period`, here in milliseconds).
    pub checkpoint_check_ms: u64,
    /// Fsimages kept, with the edits needed to replay from the oldest
    /// (`dfs.namenode.num.checkpoints.retained`).
    pub retained_images: u32,
    /// How often the replication monitor schedules copies and deletions
    /// (`dfs.namenode.redundancy.interval.seconds`, here in milliseconds).
    pub replication_interval_ms: u64,
    /// Blocks scheduled per live datanode per round
    /// (`dfs.namenode.replication.work.multiplier.per.iteration`).
    pub replication_work_multiplier: u32,
    /// Copies a datanode sends at once for ordinary under-replication
    /// (`dfs.namenode.replication.max-streams`)...
    pub replication_max_streams: u32,
    /// ...and for blocks down to their last replica
    /// (`dfs.namenode.replication.max-streams-hard-limit`).
    pub replication_streams_hard_limit: u32,
    /// A scheduled copy not reported done within this time is scheduled
    /// again (`dfs.namenode.reconstruction.pending.timeout-sec`, in ms).
    pub pending_replication_timeout_ms: u64,
    /// File of hosts allowed to register, one per line; empty allows every
    /// host (`dfs.hosts`). Re-read by `dfsadmin -refreshNodes`.
    pub hosts_file: String,
    /// File of hosts to decommission, one per line (`dfs.hosts.exclude`).
    /// Re-read by `dfsadmin -refreshNodes`.
    pub hosts_exclude_file: String,
    /// File mapping hosts to racks: lines of `host-or-ip[:port] /rack`;
    /// unlisted hosts are on /default-rack (`net.topology.table.file.name`).
    pub topology_file: String,
    /// How often decommissioning datanodes are checked for completion
    /// (`dfs.namenode.decommission.interval`, here in milliseconds).
    pub decommission_interval_ms: u64,
    /// A writer silent this long (no lease renewal) may lose its file to
    /// another client's append or create (HDFS's fixed soft limit).
    pub lease_soft_limit_ms: u64,
    /// A writer silent this long loses its files: the namenode recovers them
    /// itself (`dfs.namenode.lease-hard-limit-sec`, here in milliseconds).
    /// Also how often a block recovery that did not finish is retried.
    pub lease_hard_limit_ms: u64,
    /// How often expired leases are looked for
    /// (`dfs.namenode.lease-recheck-interval-ms`).
    pub lease_recheck_interval_ms: u64,
    /// Whether a retried create, append, rename, delete, truncate or
    /// updatePipeline gets the first attempt's answer
    /// (`dfs.namenode.enable.retrycache`).
    pub retry_cache_enabled: bool,
    /// How long those answers are kept
    /// (`dfs.namenode.retrycache.expirytime.millis`).
    pub retry_cache_expiry_ms: u64,
    /// How many answers are kept at most, the oldest going first (HDFS
    /// bounds the cache by a share of the heap instead).
    pub retry_cache_max_entries: u64,
}

impl Default for NamenodeConfig {
    fn default() -> Self {
        Self {
            rpc_address: String::new(),
            name_dirs: vec![PathBuf::from("${RDFS_HOME}/namenode")],
            min_replication: 1,
            max_replication: 512,
            stale_interval_ms: 30_000,
            dead_interval_ms: 630_000,
            invalidate_limit_per_heartbeat: 1000,
            listing_limit: 1000,
            supergroup: "supergroup".to_string(),
            safemode_threshold: 0.999,
            safemode_min_datanodes: 0,
            safemode_extension_ms: 30_000,
            checkpoint_txns: 1_000_000,
            checkpoint_period_ms: 3_600_000,
            checkpoint_check_ms: 60_000,
            retained_images: 2,
            replication_interval_ms: 3_000,
            replication_work_multiplier: 2,
            replication_max_streams: 2,
            replication_streams_hard_limit: 4,
            pending_replication_timeout_ms: 300_000,
            hosts_file: String::new(),
            hosts_exclude_file: String::new(),
            topology_file: String::new(),
            decommission_interval_ms: 30_000,
            lease_soft_limit_ms: 60_000,
            lease_hard_limit_ms: 1_200_000,
            lease_recheck_interval_ms: 2_000,
            retry_cache_enabled: true,
            retry_cache_expiry_ms: 600_000,
            retry_cache_max_entries: 1_000_000,
        }
    }
}

/// A highly available nameservice: two or three namenodes sharing their
/// edit log through a quorum of journalnodes (Hadoop's `dfs.ha.*` keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HaConfig {
    /// The nameservice's logical name (`dfs.nameservices`); a client given
    /// `hdfs://<nameservice>/...` tries every namenode in `namenodes`.
    pub nameservice: String,
    /// The namenodes as `id=host:port` (`dfs.ha.namenodes.<ns>` with each
    /// `dfs.namenode.rpc-address.<ns>.<id>`). Empty: no HA, one namenode.
    #[serde(deserialize_with = "strings_from_list_or_string")]
    pub namenodes: Vec<String>,
    /// Which of `namenodes` this namenode is (`dfs.ha.namenode.id`); empty
    /// means the one whose address is `namenode.rpc_address`.
    pub namenode_id: String,
    /// The shared edit log (`dfs.namenode.shared.edits.dir`):
    /// `qjournal://host1:port1;host2:port2;host3:port3/<journal id>`.
    pub shared_edits_dir: String,
    /// Whether namenodes fail over by themselves when the active's
    /// leadership lease lapses (`dfs.ha.automatic-failover.enabled`).
    pub automatic_failover: bool,
    /// How long the active's leadership lease lasts after it last reached a
    /// majority of journalnodes. Writes resume about this long after the
    /// active dies; a paused active stops serving before it ends.
    pub lease_timeout_ms: u64,
    /// How often the active renews its lease through the journalnodes.
    pub lease_renew_interval_ms: u64,
    /// How often a standby reads new edits from the journalnodes
    /// (`dfs.ha.tail-edits.period`, in ms here).
    pub tail_edits_period_ms: u64,
    /// How often a standby checks whether the active's lease has lapsed.
    pub health_check_interval_ms: u64,
    /// How long a call to the journalnodes may take before the namenode
    /// gives up on the ones that have not answered
    /// (`dfs.qjournal.write-txns.timeout.ms`).
    pub journal_timeout_ms: u64,
    /// How often the standby checkpoints (transactions since the last one),
    /// shipping the image to the active; see also
    /// `namenode.checkpoint_period_ms`.
    pub standby_checkpoint_txns: u64,
}

impl Default for HaConfig {
    fn default() -> Self {
        Self {
            nameservice: String::new(),
            namenodes: Vec::new(),
            namenode_id: String::new(),
            shared_edits_dir: String::new(),
            automatic_failover: true,
            lease_timeout_ms: 3_000,
            lease_renew_interval_ms: 500,
            tail_edits_period_ms: 100,
            health_check_interval_ms: 250,
            journal_timeout_ms: 2_000,
            standby_checkpoint_txns: 1_000_000,
        }
    }
}

/// One namenode of an HA nameservice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamenodeAddress {
    /// Its id in `ha.namenodes` (`nn` without HA).
    pub id: String,
    /// `host:port` of its RPC server.
    pub address: String,
}

/// The quorum journal a nameservice writes its edits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumJournalUri {
    /// `host:port` of each journalnode.
    pub journalnodes: Vec<String>,
    /// Which journal on those journalnodes (one per nameservice).
    pub journal_id: String,
}

impl QuorumJournalUri {
    /// Parses `qjournal://h1:p1;h2:p2;h3:p3/<journal id>`.
    pub fn parse(uri: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| {
            ConfigError::Invalid(format!(
                "ha.shared_edits_dir = '{uri}': {why}; expected qjournal://host1:port1;host2:port2;host3:port3/<journal id>"
            ))
        };
        let rest = uri
            .strip_prefix("qjournal://")
            .ok_or_else(|| bad("not a qjournal:// URI"))?;
        let (hosts, journal_id) = rest
            .split_once('/')
            .ok_or_else(|| bad("no journal id after the hosts"))?;
        let journal_id = journal_id.trim_end_matches('/');
        if journal_id.is_empty() || journal_id.contains('/') {
            return Err(bad("the journal id must be one non-empty path segment"));
        }
        let journalnodes: Vec<String> = hosts
            .split(';')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if journalnodes.is_empty() {
            return Err(bad("no journalnodes named"));
        }
        if let Some(bad_host) = journalnodes.iter().find(|h| {
            h.rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        }) {
            return Err(bad(&format!("'{bad_host}' is not host:port")));
        }
        Ok(Self {
            journalnodes,
            journal_id: journal_id.to_string(),
        })
    }
}

/// `rdfs journalnode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JournalnodeConfig {
    /// Address the journalnode's RPC server binds
    /// (`dfs.journalnode.rpc-address`). Port 0 picks a free port.
    pub rpc_address: String,
    /// Where the journalnode keeps its journals, one subdirectory per
    /// journal id (`dfs.journalnode.edits.dir`).
    pub edits_dir: PathBuf,
}

impl Default for JournalnodeConfig {
    fn default() -> Self {
        Self {
            rpc_address: "127.0.0.1:8485".to_string(),
            edits_dir: PathBuf::from("${RDFS_HOME}/journal"),
        }
    }
}

/// `rdfs datanode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatanodeConfig {
    /// Volumes holding block replicas, one per disk (`dfs.datanode.data.dir`).
    #[serde(deserialize_with = "paths_from_list_or_string")]
    pub data_dirs: Vec<PathBuf>,
    /// Address the data transfer server binds (`dfs.datanode.address`).
    /// Port 0 picks a free port.
    pub xfer_address: String,
    /// Host name or address other nodes use to reach this one; empty means
    /// the bind address (or 127.0.0.1 when that is a wildcard).
    pub advertised_host: String,
    /// Full block report period (`dfs.blockreport.intervalMsec`).
    pub block_report_interval_ms: u64,
    /// Space per volume never used for blocks (`dfs.datanode.du.reserved`).
    pub du_reserved: ByteSize,
    /// Start writeback of a replica being written every this many bytes, so
    /// the final sync is short and dirty pages never pile up. 0 disables.
    pub sync_behind_bytes: ByteSize,
    /// fdatasync a replica's block and meta files when it is finalized.
    pub sync_on_close: bool,
    /// Timeout for any single network wait in the pipeline.
    pub socket_timeout_ms: u64,
    /// The block scanner verifies every replica at least this often
    /// (`dfs.datanode.scan.period.hours`, here in milliseconds); 0 disables it.
    pub scan_period_ms: u64,
    /// Bytes per second the block scanner reads from each volume
    /// (`dfs.block.scanner.volume.bytes.per.second`).
    pub scan_bandwidth_per_volume: ByteSize,
    /// How often the directory scanner reconciles the disks with the replica
    /// map (`dfs.datanode.directoryscan.interval`, here in milliseconds);
    /// 0 disables it.
    pub directory_scan_interval_ms: u64,
    /// Volumes that may fail before the datanode shuts down
    /// (`dfs.datanode.failed.volumes.tolerated`).
    pub failed_volumes_tolerated: u32,
    /// Bytes per second the balancer's replica moves may use on this
    /// datanode (`dfs.datanode.balance.bandwidthPerSec`).
    pub balance_bandwidth: ByteSize,
}

impl Default for DatanodeConfig {
    fn default() -> Self {
        Self {
            data_dirs: vec![PathBuf::from("${RDFS_HOME}/datanode")],
            xfer_address: "127.0.0.1:9866".to_string(),
            advertised_host: String::new(),
            block_report_interval_ms: 6 * 3600 * 1000,
            du_reserved: ByteSize(0),
            sync_behind_bytes: ByteSize(8 * 1024 * 1024),
            sync_on_close: true,
            socket_timeout_ms: 60_000,
            scan_period_ms: 504 * 3600 * 1000,
            scan_bandwidth_per_volume: ByteSize(1024 * 1024),
            directory_scan_interval_ms: 6 * 3600 * 1000,
            failed_volumes_tolerated: 0,
            balance_bandwidth: ByteSize(100 * 1024 * 1024),
        }
    }
}

/// A size in bytes; in TOML an integer or a string such as `"256m"`,
/// `"64k"`, `"1g"` (binary multiples, as Hadoop reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        let split = lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len());
        let (digits, suffix) = lower.split_at(split);
        let value: u64 = digits
            .parse()
            .map_err(|_| format!("'{trimmed}' is not a size"))?;
        let shift = match suffix.trim() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            "p" | "pb" | "pib" => 50,
            _ => return Err(format!("'{trimmed}' has an unknown size suffix")),
        };
        value
            .checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("'{trimmed}' is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Int(value) => Ok(ByteSize(value)),
            Raw::Text(text) => ByteSize::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

fn strings_from_list_or_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::List(items) => items,
        Raw::Text(text) => text
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    })
}

fn paths_from_list_or_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    let items = match Raw::deserialize(deserializer)? {
        Raw::List(items) => items,
        Raw::Text(text) => text
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    // Hadoop writes local dirs as file:// URIs; accept them.
    Ok(items
        .into_iter()
        .map(|item| {
            PathBuf::from(
                item.strip_prefix("file://")
                    .map(str::to_string)
                    .unwrap_or(item),
            )
        })
        .collect())
}

/// A Hadoop key and the rdfs key it sets; `scale` multiplies numeric values
/// (Hadoop gives some intervals in seconds where rdfs uses milliseconds).
struct HadoopAlias {
    hadoop: &'static str,
    rdfs: &'static str,
    scale: u64,
}

const HADOOP_ALIASES: &[HadoopAlias] = &[
    HadoopAlias {
        hadoop: "dfs.nameservices",
        rdfs: "ha.nameservice",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.ha.namenode.id",
        rdfs: "ha.namenode_id",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.shared.edits.dir",
        rdfs: "ha.shared_edits_dir",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.ha.automatic-failover.enabled",
        rdfs: "ha.automatic_failover",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.journalnode.rpc-address",
        rdfs: "journalnode.rpc_address",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.journalnode.edits.dir",
        rdfs: "journalnode.edits_dir",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.client.failover.max.attempts",
        rdfs: "client.failover_max_attempts",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.client.failover.sleep.base.millis",
        rdfs: "client.failover_sleep_base_ms",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.client.failover.sleep.max.millis",
        rdfs: "client.failover_sleep_max_ms",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.qjournal.write-txns.timeout.ms",
        rdfs: "ha.journal_timeout_ms",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "fs.defaultFS",
        rdfs: "fs.default_fs",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "fs.default.name",
        rdfs: "fs.default_fs",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.replication",
        rdfs: "dfs.replication",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.blocksize",
        rdfs: "dfs.block_size",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.block.size",
        rdfs: "dfs.block_size",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.bytes-per-checksum",
        rdfs: "dfs.bytes_per_checksum",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.checksum.type",
        rdfs: "dfs.checksum_type",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.heartbeat.interval",
        rdfs: "dfs.heartbeat_interval_ms",
        scale: 1000,
    },
    HadoopAlias {
        hadoop: "dfs.client-write-packet-size",
        rdfs: "client.write_packet_size",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.client.socket-timeout",
        rdfs: "client.socket_timeout_ms",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.client.block.write.retries",
        rdfs: "client.block_write_retries",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.rpc-address",
        rdfs: "namenode.rpc_address",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.name.dir",
        rdfs: "namenode.name_dirs",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.replication.min",
        rdfs: "namenode.min_replication",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.replication.max",
        rdfs: "namenode.max_replication",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.stale.datanode.interval",
        rdfs: "namenode.stale_interval_ms",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.enable.retrycache",
        rdfs: "namenode.retry_cache_enabled",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.retrycache.expirytime.millis",
        rdfs: "namenode.retry_cache_expiry_ms",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.client.retry.times.get-last-block-length",
        rdfs: "client.last_block_length_retries",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.client.retry.interval-ms.get-last-block-length",
        rdfs: "client.last_block_length_retry_interval_ms",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.ls.limit",
        rdfs: "namenode.listing_limit",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.permissions.superusergroup",
        rdfs: "namenode.supergroup",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.permissions.enabled",
        rdfs: "security.permissions_enabled",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.block.access.token.enable",
        rdfs: "security.block_access_token_enable",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.block.access.key.update.interval",
        rdfs: "security.block_access_key_update_interval_ms",
        scale: 60_000,
    },
    HadoopAlias {
        hadoop: "dfs.block.access.token.lifetime",
        rdfs: "security.block_access_token_lifetime_ms",
        scale: 60_000,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.acls.enabled",
        rdfs: "security.acls_enabled",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "hadoop.security.groups.cache.secs",
        rdfs: "security.groups_cache_secs",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "hadoop.security.groups.negative-cache.secs",
        rdfs: "security.groups_negative_cache_secs",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "hadoop.user.group.static.mapping.overrides",
        rdfs: "security.group_mapping_overrides",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "fs.permissions.umask-mode",
        rdfs: "fs.umask_mode",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "fs.trash.interval",
        rdfs: "fs.trash_interval_minutes",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "fs.trash.checkpoint.interval",
        rdfs: "fs.trash_checkpoint_interval_minutes",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.datanode.data.dir",
        rdfs: "datanode.data_dirs",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.datanode.address",
        rdfs: "datanode.xfer_address",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.datanode.hostname",
        rdfs: "datanode.advertised_host",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.blockreport.intervalMsec",
        rdfs: "datanode.block_report_interval_ms",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.datanode.du.reserved",
        rdfs: "datanode.du_reserved",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.redundancy.interval.seconds",
        rdfs: "namenode.replication_interval_ms",
        scale: 1000,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.replication.interval",
        rdfs: "namenode.replication_interval_ms",
        scale: 1000,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.replication.work.multiplier.per.iteration",
        rdfs: "namenode.replication_work_multiplier",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.replication.max-streams",
        rdfs: "namenode.replication_max_streams",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.replication.max-streams-hard-limit",
        rdfs: "namenode.replication_streams_hard_limit",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.reconstruction.pending.timeout-sec",
        rdfs: "namenode.pending_replication_timeout_ms",
        scale: 1000,
    },
    HadoopAlias {
        hadoop: "dfs.hosts",
        rdfs: "namenode.hosts_file",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.hosts.exclude",
        rdfs: "namenode.hosts_exclude_file",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "net.topology.table.file.name",
        rdfs: "namenode.topology_file",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.decommission.interval",
        rdfs: "namenode.decommission_interval_ms",
        scale: 1000,
    },
    HadoopAlias {
        hadoop: "dfs.datanode.scan.period.hours",
        rdfs: "datanode.scan_period_ms",
        scale: 3600000,
    },
    HadoopAlias {
        hadoop: "dfs.block.scanner.volume.bytes.per.second",
        rdfs: "datanode.scan_bandwidth_per_volume",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.datanode.directoryscan.interval",
        rdfs: "datanode.directory_scan_interval_ms",
        scale: 1000,
    },
    HadoopAlias {
        hadoop: "dfs.datanode.failed.volumes.tolerated",
        rdfs: "datanode.failed_volumes_tolerated",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.datanode.balance.bandwidthPerSec",
        rdfs: "datanode.balance_bandwidth",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.lease-hard-limit-sec",
        rdfs: "namenode.lease_hard_limit_ms",
        scale: 1000,
    },
    HadoopAlias {
        hadoop: "dfs.namenode.lease-recheck-interval-ms",
        rdfs: "namenode.lease_recheck_interval_ms",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.client.block.write.replace-datanode-on-failure.enable",
        rdfs: "client.replace_datanode_on_failure",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.client.block.write.replace-datanode-on-failure.policy",
        rdfs: "client.replace_datanode_on_failure_policy",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "dfs.client.block.write.replace-datanode-on-failure.best-effort",
        rdfs: "client.replace_datanode_on_failure_best_effort",
        scale: 1,
    },
    HadoopAlias {
        hadoop: "hadoop.user.name",
        rdfs: "client.user",
        scale: 1,
    },
];

/// Splits `key=value` (the argument of `-D`).
pub fn parse_override(arg: &str) -> Result<(String, String), ConfigError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(ConfigError::BadOverride(arg.to_string())),
    }
}

/// A configuration and what was odd about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Unknown keys and ignored overrides, for the caller to log.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads `file` (or starts from the defaults when `None`), applies the
    /// `-D` overrides, expands variables in paths and validates the result.
    pub fn load(
        file: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<Loaded, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                })?
            }
            None => toml::Table::new(),
        };
        let mut warnings = Vec::new();
        for (key, value) in overrides {
            apply_override(&mut table, key, value, &mut warnings)?;
        }
        let mut unknown = Vec::new();
        let mut config: Config = serde_ignored::deserialize(toml::Value::Table(table), |path| {
            unknown.push(path.to_string());
        })
        .map_err(|err: toml::de::Error| ConfigError::Invalid(err.to_string()))?;
        // Name a bad -D key in full, even when serde only saw its unknown section.
        for (key, _) in overrides {
            let (rdfs_key, _) = rdfs_key_of(key);
            let before = unknown.len();
            unknown
                .retain(|path| !(rdfs_key == *path || rdfs_key.starts_with(&format!("{path}."))));
            if unknown.len() != before {
                warnings.push(format!("-D {key}: unknown config key, ignored"));
            }
        }
        warnings.extend(
            unknown
                .into_iter()
                .map(|key| format!("unknown config key '{key}' ignored")),
        );
        config.expand_paths()?;
        config.validate()?;
        Ok(Loaded { config, warnings })
    }

    fn expand_paths(&mut self) -> Result<(), ConfigError> {
        for dir in self
            .namenode
            .name_dirs
            .iter_mut()
            .chain(self.datanode.data_dirs.iter_mut())
        {
            let text = dir.to_string_lossy().into_owned();
            *dir = PathBuf::from(expand_vars(&text)?);
        }
        let text = self.journalnode.edits_dir.to_string_lossy().into_owned();
        self.journalnode.edits_dir = PathBuf::from(expand_vars(&text)?);
        for file in [
            &mut self.namenode.hosts_file,
            &mut self.namenode.hosts_exclude_file,
            &mut self.namenode.topology_file,
        ] {
            *file = expand_vars(file)?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        self.fs.umask()?;
        self.dfs.data_checksum()?;
        let bpc = self.dfs.bytes_per_checksum;
        if bpc == 0 || bpc > 1024 * 1024 {
            return invalid(format!(
                "dfs.bytes_per_checksum = {bpc} must be between 1 and 1048576"
            ));
        }
        let block = self.dfs.block_size.0;
        if block == 0 || !block.is_multiple_of(u64::from(bpc)) {
            return invalid(format!(
                "dfs.block_size = {block} must be a positive multiple of dfs.bytes_per_checksum ({bpc})"
            ));
        }
        let packet = self.client.write_packet_size.0;
        if packet < bpc as u64 || packet > 16 * 1024 * 1024 {
            return invalid(format!(
                "client.write_packet_size = {packet} must be at least one checksum chunk ({bpc}) and at most 16m"
            ));
        }
        if self.dfs.replication == 0 {
            return invalid("dfs.replication must be at least 1".to_string());
        }
        if self.namenode.min_replication == 0 {
            return invalid("namenode.min_replication must be at least 1".to_string());
        }
        if self.namenode.name_dirs.is_empty() {
            return invalid("namenode.name_dirs must name at least one directory".to_string());
        }
        if self.datanode.data_dirs.is_empty() {
            return invalid("datanode.data_dirs must name at least one directory".to_string());
        }
        if !(0.0..=1.0).contains(&self.namenode.safemode_threshold) {
            return invalid(format!(
                "namenode.safemode_threshold = {} must be between 0 and 1",
                self.namenode.safemode_threshold
            ));
        }
        if self.namenode.retained_images == 0 {
            return invalid("namenode.retained_images must be at least 1".to_string());
        }
        if self.namenode.replication_interval_ms == 0 {
            return invalid("namenode.replication_interval_ms must be positive".to_string());
        }
        if self.namenode.replication_max_streams == 0
            || self.namenode.replication_streams_hard_limit < self.namenode.replication_max_streams
        {
            return invalid(format!(
                "namenode.replication_max_streams = {} must be at least 1 and at most namenode.replication_streams_hard_limit = {}",
                self.namenode.replication_max_streams, self.namenode.replication_streams_hard_limit
            ));
        }
        if !["DEFAULT", "ALWAYS", "NEVER"]
            .contains(&self.client.replace_datanode_on_failure_policy.as_str())
        {
            return invalid(format!(
                "client.replace_datanode_on_failure_policy = '{}' must be DEFAULT, ALWAYS or NEVER",
                self.client.replace_datanode_on_failure_policy
            ));
        }
        if self.namenode.lease_soft_limit_ms == 0
            || self.namenode.lease_hard_limit_ms < self.namenode.lease_soft_limit_ms
        {
            return invalid(format!(
                "namenode.lease_soft_limit_ms = {} must be positive and at most namenode.lease_hard_limit_ms = {}",
                self.namenode.lease_soft_limit_ms, self.namenode.lease_hard_limit_ms
            ));
        }
        if self.namenode.lease_recheck_interval_ms == 0 {
            return invalid("namenode.lease_recheck_interval_ms must be positive".to_string());
        }
        if self.dfs.heartbeat_interval_ms == 0 {
            return invalid("dfs.heartbeat_interval_ms must be positive".to_string());
        }
        self.validate_ha()
    }

    fn validate_ha(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let namenodes = self.ha_namenodes()?;
        if !namenodes.is_empty() {
            if namenodes.len() < 2 {
                return invalid(format!(
                    "ha.namenodes names {} namenode; an HA nameservice needs two or three",
                    namenodes.len()
                ));
            }
            if self.ha.shared_edits_dir.is_empty() {
                return invalid(
                    "ha.namenodes is set but ha.shared_edits_dir is empty: HA namenodes share their edits through journalnodes (qjournal://...)".to_string(),
                );
            }
        }
        if !self.ha.shared_edits_dir.is_empty() {
            QuorumJournalUri::parse(&self.ha.shared_edits_dir)?;
        }
        let ha = &self.ha;
        if ha.lease_renew_interval_ms == 0 || ha.lease_renew_interval_ms * 2 > ha.lease_timeout_ms {
            return invalid(format!(
                "ha.lease_renew_interval_ms = {} must be positive and at most half of ha.lease_timeout_ms = {}",
                ha.lease_renew_interval_ms, ha.lease_timeout_ms
            ));
        }
        if ha.tail_edits_period_ms == 0
            || ha.health_check_interval_ms == 0
            || ha.journal_timeout_ms == 0
        {
            return invalid("ha.tail_edits_period_ms, ha.health_check_interval_ms and ha.journal_timeout_ms must be positive".to_string());
        }
        if self.client.failover_max_attempts == 0 {
            return invalid("client.failover_max_attempts must be at least 1".to_string());
        }
        Ok(())
    }

    /// The namenode RPC address: `namenode.rpc_address`, or the authority of
    /// `fs.default_fs`.
    pub fn namenode_rpc_address(&self) -> Result<String, ConfigError> {
        if !self.namenode.rpc_address.is_empty() {
            return Ok(self.namenode.rpc_address.clone());
        }
        default_fs_authority(&self.fs.default_fs).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "fs.default_fs = '{}' is not hdfs://host:port",
                self.fs.default_fs
            ))
        })
    }

    /// The namenodes of the HA nameservice (`ha.namenodes`), empty without HA.
    pub fn ha_namenodes(&self) -> Result<Vec<NamenodeAddress>, ConfigError> {
        let mut out: Vec<NamenodeAddress> = Vec::new();
        for entry in &self.ha.namenodes {
            let Some((id, address)) = entry.split_once('=') else {
                return Err(ConfigError::Invalid(format!(
                    "ha.namenodes entry '{entry}' is not id=host:port"
                )));
            };
            let (id, address) = (id.trim(), address.trim());
            if id.is_empty() || address.rsplit_once(':').is_none() {
                return Err(ConfigError::Invalid(format!(
                    "ha.namenodes entry '{entry}' is not id=host:port"
                )));
            }
            if out.iter().any(|nn| nn.id == id) {
                return Err(ConfigError::Invalid(format!(
                    "ha.namenodes names namenode '{id}' twice"
                )));
            }
            out.push(NamenodeAddress {
                id: id.to_string(),
                address: address.to_string(),
            });
        }
        Ok(out)
    }

    /// Whether the namenodes form an HA nameservice.
    pub fn is_ha(&self) -> bool {
        !self.ha.namenodes.is_empty()
    }

    /// The namenodes a client of `authority` (the `host:port` or nameservice
    /// of an `hdfs://` URI) talks to: every HA namenode when it names the
    /// nameservice, else just that address.
    pub fn namenodes_for(&self, authority: &str) -> Result<Vec<NamenodeAddress>, ConfigError> {
        let ns = &self.ha.nameservice;
        let names_ns = !ns.is_empty()
            && (authority == ns || authority.strip_suffix(":8020") == Some(ns.as_str()));
        if names_ns || (self.is_ha() && ns.is_empty() && authority == self.default_authority()) {
            let namenodes = self.ha_namenodes()?;
            if namenodes.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "nameservice '{ns}' has no namenodes: set ha.namenodes"
                )));
            }
            return Ok(namenodes);
        }
        Ok(vec![NamenodeAddress {
            id: "nn".to_string(),
            address: authority.to_string(),
        }])
    }

    fn default_authority(&self) -> String {
        default_fs_authority(&self.fs.default_fs).unwrap_or_default()
    }

    /// The namenodes that `fs.default_fs` names (see [`Self::namenodes_for`]).
    pub fn default_namenodes(&self) -> Result<Vec<NamenodeAddress>, ConfigError> {
        if self.is_ha() {
            let ns = &self.ha.nameservice;
            let authority = self.default_authority();
            if ns.is_empty()
                || authority == *ns
                || authority.strip_suffix(":8020") == Some(ns.as_str())
            {
                return self.ha_namenodes();
            }
        }
        Ok(vec![NamenodeAddress {
            id: "nn".to_string(),
            address: self.namenode_rpc_address()?,
        }])
    }

    /// This namenode's entry in `ha.namenodes`: `ha.namenode_id`, else the
    /// one whose address is `namenode.rpc_address`.
    pub fn this_ha_namenode(&self) -> Result<NamenodeAddress, ConfigError> {
        let namenodes = self.ha_namenodes()?;
        if !self.ha.namenode_id.is_empty() {
            return namenodes
                .into_iter()
                .find(|nn| nn.id == self.ha.namenode_id)
                .ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "ha.namenode_id = '{}' is not one of ha.namenodes ({})",
                        self.ha.namenode_id,
                        self.ha.namenodes.join(", ")
                    ))
                });
        }
        let own = &self.namenode.rpc_address;
        namenodes
            .into_iter()
            .find(|nn| nn.address == *own)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "cannot tell which HA namenode this is: set ha.namenode_id to one of {} (or namenode.rpc_address to its address)",
                    self.ha.namenodes.join(", ")
                ))
            })
    }

    /// The configuration as documented TOML (for `rdfs getconf -dump`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|err| format!("# cannot render config: {err}\n"))
    }
}

/// `host:port` of an `hdfs://host:port[/...]` URI; port 8020 when absent.
pub fn default_fs_authority(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("hdfs://")?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return None;
    }
    if authority.contains(':') {
        Some(authority.to_string())
    } else {
        Some(format!("{authority}:8020"))
    }
}

fn apply_override(
    table: &mut toml::Table,
    key: &str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let (rdfs_key, scale) = rdfs_key_of(key);
    let Some((section, field)) = rdfs_key.split_once('.') else {
        warnings.push(format!("-D {key}: not a known key, ignored"));
        return Ok(());
    };
    let mut parsed = parse_scalar(value);
    if scale != 1 {
        parsed = match parsed {
            toml::Value::Integer(n) => toml::Value::Integer(n.saturating_mul(scale as i64)),
            other => {
                return Err(ConfigError::Invalid(format!(
                    "-D {key}={value}: expected a number, got {other}"
                )));
            }
        };
    }
    // Nested keys (`security.proxy_users.hue.hosts`) walk down tables.
    let mut current = table;
    let mut walked = section.to_string();
    let mut parts: Vec<&str> = vec![section];
    parts.extend(field.split('.'));
    let (last, tables) = parts.split_last().unwrap_or((&"", &[]));
    for (index, part) in tables.iter().enumerate() {
        if index > 0 {
            walked = format!("{walked}.{part}");
        }
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "-D {key}: '{walked}' is not a section"
                )));
            }
        };
    }
    current.insert(last.to_string(), parsed);
    Ok(())
}

/// The rdfs key a `-D` key sets, and the factor numbers are scaled by:
/// Hadoop names map through the alias table, and
/// `hadoop.proxyuser.<user>.<hosts|groups|users>` to
/// `security.proxy_users.<user>.<...>`.
fn rdfs_key_of(key: &str) -> (std::borrow::Cow<'_, str>, u64) {
    if let Some(alias) = HADOOP_ALIASES.iter().find(|alias| alias.hadoop == key) {
        return (alias.rdfs.into(), alias.scale);
    }
    if let Some(rest) = key.strip_prefix("hadoop.proxyuser.")
        && let Some((user, what)) = rest.rsplit_once('.')
        && !user.is_empty()
    {
        return (format!("security.proxy_users.{user}.{what}").into(), 1);
    }
    (key.into(), 1)
}

/// A `-D` value as TOML would read it (integer, float, boolean), else a string.
fn parse_scalar(value: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {value}")) {
        Ok(mut table) => match table.remove("v") {
            Some(
                parsed
                @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
            ) => parsed,
            _ => toml::Value::String(value.to_string()),
        },
        Err(_) => toml::Value::String(value.to_string()),
    }
}

/// `${TMPDIR:-/tmp}/rdfs-<user>` unless `RDFS_HOME` is set.
pub fn rdfs_home() -> PathBuf {
    if let Some(home) = std::env::var_os("RDFS_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    let tmp = std::env::var_os("TMPDIR")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "/tmp".into());
    PathBuf::from(tmp).join(format!("rdfs-{}", login_user()))
}

/// Replaces `${VAR}` and `${VAR:-default}` in `text` with the environment's
/// values; `RDFS_HOME` and `USER` have built-in fallbacks.
pub fn expand_vars(text: &str) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::Invalid(format!(
                "unterminated ${{ in '{text}'"
            )));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let value = match std::env::var(name).ok().filter(|v| !v.is_empty()) {
            Some(value) => value,
            None => match (name, default) {
                (_, Some(default)) => default.to_string(),
                ("RDFS_HOME", None) => rdfs_home().to_string_lossy().into_owned(),
                ("USER", None) => login_user(),
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "'{text}' refers to ${{{name}}}, which is not set"
                    )));
                }
            },
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The user this process runs as: `$USER`, `$LOGNAME`, else the passwd entry
/// of the process's uid.
pub fn login_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Some(user) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
            return user;
        }
    }
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "rdfs".to_string();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let entry_uid: u32 = fields.nth(1)?.parse().ok()?;
                (entry_uid == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid{uid}"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn umasks_read_as_hadoop_reads_them() {
        let umask = |mode: &str| {
            FsConfig {
                umask_mode: mode.to_string(),
                ..FsConfig::default()
            }
            .umask()
            .ok()
        };
        assert_eq!(umask("022"), Some(0o022));
        assert_eq!(umask("0077"), Some(0o077));
        assert_eq!(umask("u=rwx,g=rx,o="), Some(0o027));
        assert_eq!(umask("u=rwx"), Some(0o077));
        assert_eq!(umask("a+r,u+w"), Some(0o133));
        assert_eq!(umask("0800"), None);
        assert_eq!(umask("1022"), None);
        assert_eq!(umask("u=rwq"), None);
    }

    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn documented_defaults_match_the_code() {
        let documented: Config = toml::from_str(include_str!("../../../config/rdfs.toml"))
            .expect("config/rdfs.toml parses");
        assert_eq!(
            documented,
            Config::default(),
            "config/rdfs.toml and Config::default() disagree"
        );
    }

    #[test]
    fn overrides_accept_rdfs_and_hadoop_names() {
        let loaded = Config::load(
            None,
            &overrides(&[
                ("dfs.blocksize", "128m"),
                ("dfs.replication", "2"),
                ("dfs.heartbeat.interval", "1"),
                ("datanode.data_dirs", "/a,/b"),
                ("fs.defaultFS", "hdfs://nn:9000"),
                ("datanode.sync_on_close", "false"),
                ("no.such", "1"),
            ]),
        )
        .expect("loads");
        let c = &loaded.config;
        assert_eq!(c.dfs.block_size, ByteSize(128 << 20));
        assert_eq!(c.dfs.replication, 2);
        assert_eq!(c.dfs.heartbeat_interval_ms, 1000);
        assert_eq!(
            c.datanode.data_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert!(!c.datanode.sync_on_close);
        assert_eq!(c.namenode_rpc_address().expect("address"), "nn:9000");
        assert!(
            loaded.warnings.iter().any(|w| w.contains("no.such")),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err =
            Config::load(None, &overrides(&[("dfs.block_size", "12q")])).expect_err("bad size");
        assert!(err.to_string().contains("12q"), "{err}");
        let err = Config::load(None, &overrides(&[("dfs.block_size", "1000")]))
            .expect_err("not chunk multiple");
        assert!(err.to_string().contains("multiple"), "{err}");
        assert!(parse_override("novalue").is_err());
    }

    #[test]
    fn byte_sizes_and_vars() {
        assert_eq!(ByteSize::parse("64k"), Ok(ByteSize(65536)));
        assert_eq!(ByteSize::parse("256MiB"), Ok(ByteSize(256 << 20)));
        assert_eq!(ByteSize::parse("7"), Ok(ByteSize(7)));
        assert!(ByteSize::parse("k").is_err());
        assert_eq!(
            expand_vars("${RDFS_NO_SUCH_VAR:-/x}/y").expect("expands"),
            "/x/y"
        );
        assert!(expand_vars("${RDFS_NO_SUCH_VAR}").is_err());
        assert_eq!(default_fs_authority("hdfs://h"), Some("h:8020".to_string()));
        assert_eq!(default_fs_authority("file:///"), None);
    }
}
