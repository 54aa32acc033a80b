//! [`DfsClient`]: the connections to a namenode (or to the namenodes of an
//! HA nameservice, failing over between them in `failover.rs`) plus
//! the settings and identity of this client; namespace calls live here, data
//! goes through [`crate::DfsOutputStream`] and [`crate::DfsInputStream`].

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;

use rdfs_common::block_token::Token;
use rdfs_common::checksum::DataChecksum;
use rdfs_common::config::Config;
use rdfs_common::grpc::{
    CALL_ID_METADATA_KEY, CLIENT_ID_METADATA_KEY, ChannelCache, MAX_MESSAGE_SIZE,
    REAL_USER_METADATA_KEY, USER_METADATA_KEY,
};
use rdfs_common::protocol::{
    ContentSummary, DatanodeInfo, ExtendedBlock, FileStatus, FsStats, LocatedBlock, LocatedBlocks,
    ServerDefaults,
};
use rdfs_proto as pb;
use rdfs_proto::client_namenode_client::ClientNamenodeClient;
use rdfs_transfer::calls::Answer;

use crate::error::{ClientError, Result};
use crate::failover::FailoverChannel;
use crate::input::DfsInputStream;
use crate::output::DfsOutputStream;

/// HDFS's default `fs.permissions.umask-mode`.
pub const DEFAULT_UMASK: u16 = 0o022;

/// Settings the client library works with.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub block_size: u64,
    pub replication: u32,
    /// How new blocks are checksummed.
    pub checksum: DataChecksum,
    pub write_packet_size: usize,
    pub max_packets_in_flight: usize,
    pub connect_timeout: Duration,
    pub socket_timeout: Duration,
    pub block_write_retries: u32,
    pub complete_retries: u32,
    pub umask: u16,
    /// When a write pipeline that lost datanodes gets a replacement.
    pub replace_policy: ReplacePolicy,
    /// Write on with the survivors when no replacement can be added.
    pub replace_best_effort: bool,
    /// How often leases are renewed while files are open for writing.
    pub lease_renew_interval: Duration,
    /// Requests one namenode call may send, over all namenodes, before it
    /// fails: a standby namenode or one that cannot be reached costs one.
    pub failover_max_attempts: u32,
    /// Pause after every namenode failed once, doubling each round...
    pub failover_sleep_base: Duration,
    /// ...up to this.
    pub failover_sleep_max: Duration,
    /// Times the locations of a file's last block being written are asked
    /// again while no datanode is known for it...
    pub last_block_length_retries: u32,
    /// ...this long apart.
    pub last_block_length_retry_interval: Duration,
    /// How long a call retries a namenode that answers RetriableException.
    pub retriable_wait: Duration,
    /// The user that acts for the client's user (a proxy user), sent as
    /// Hadoop's real user; `None` when the client is its own user.
    pub real_user: Option<String>,
}

/// HDFS's ReplaceDatanodeOnFailure policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplacePolicy {
    Never,
    /// Replication 3 or more, and either at most half the pipeline left or
    /// the block hflushed or appended to.
    Default,
    Always,
}

impl ClientSettings {
    pub fn from_config(config: &Config) -> Self {
        let bpc = config.dfs.bytes_per_checksum.max(1);
        // Packets carry whole chunks.
        let packet =
            (config.client.write_packet_size.0 as usize / bpc as usize).max(1) * bpc as usize;
        Self {
            block_size: config.dfs.block_size.0,
            replication: config.dfs.replication,
            checksum: config
                .dfs
                .data_checksum()
                .unwrap_or(DataChecksum::crc32c(bpc)),
            write_packet_size: packet,
            max_packets_in_flight: config.client.max_packets_in_flight.max(1) as usize,
            connect_timeout: Duration::from_millis(config.client.connect_timeout_ms),
            socket_timeout: Duration::from_millis(config.client.socket_timeout_ms),
            block_write_retries: config.client.block_write_retries.max(1),
            complete_retries: config.client.complete_retries.max(1),
            umask: config.fs.umask().unwrap_or(DEFAULT_UMASK),
            replace_policy: if !config.client.replace_datanode_on_failure {
                ReplacePolicy::Never
            } else {
                match config.client.replace_datanode_on_failure_policy.as_str() {
                    "NEVER" => ReplacePolicy::Never,
                    "ALWAYS" => ReplacePolicy::Always,
                    _ => ReplacePolicy::Default,
                }
            },
            replace_best_effort: config.client.replace_datanode_on_failure_best_effort,
            // HDFS renews at half the soft limit.
            lease_renew_interval: Duration::from_millis(
                (config.namenode.lease_soft_limit_ms / 2).max(100),
            ),
            failover_max_attempts: config.client.failover_max_attempts.max(1),
            failover_sleep_base: Duration::from_millis(config.client.failover_sleep_base_ms),
            failover_sleep_max: Duration::from_millis(config.client.failover_sleep_max_ms),
            last_block_length_retries: config.client.last_block_length_retries,
            last_block_length_retry_interval: Duration::from_millis(
                config.client.last_block_length_retry_interval_ms,
            ),
            retriable_wait: Duration::from_millis(config.client.retriable_wait_ms),
            real_user: None,
        }
    }
}

/// Adds to every namenode request the caller's user name and the call's
/// ids: this client's id and a number of its own per call. The failover
/// layer below sends a call's retries with the same headers, so a namenode
/// answers a retried create, append, rename, delete or truncate from its
/// retry cache rather than running it twice.
#[derive(Clone)]
pub struct CallInterceptor {
    user: MetadataValue<tonic::metadata::Ascii>,
    real_user: Option<MetadataValue<tonic::metadata::Ascii>>,
    client_id: MetadataValue<tonic::metadata::Ascii>,
    next_call: Arc<std::sync::atomic::AtomicI32>,
}

impl CallInterceptor {
    fn new(
        user: MetadataValue<tonic::metadata::Ascii>,
        real_user: Option<MetadataValue<tonic::metadata::Ascii>>,
    ) -> Self {
        let client_id = rdfs_common::grpc::format_client_id(&rand::random::<[u8; 16]>());
        Self {
            user,
            real_user,
            // Hex digits are always valid metadata.
            client_id: MetadataValue::try_from(client_id.as_str())
                .unwrap_or_else(|_| MetadataValue::from_static("")),
            next_call: Arc::new(std::sync::atomic::AtomicI32::new(0)),
        }
    }
}

impl Interceptor for CallInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        // Wraps past i32::MAX as Hadoop's call ids do; entries expire long
        // before a client makes four billion calls.
        let call = self
            .next_call
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            & i32::MAX;
        let metadata = request.metadata_mut();
        metadata.insert(USER_METADATA_KEY, self.user.clone());
        if let Some(real_user) = &self.real_user {
            metadata.insert(REAL_USER_METADATA_KEY, real_user.clone());
        }
        metadata.insert(CLIENT_ID_METADATA_KEY, self.client_id.clone());
        metadata.insert(CALL_ID_METADATA_KEY, MetadataValue::from(call));
        Ok(request)
    }
}

pub(crate) type NamenodeClient =
    ClientNamenodeClient<InterceptedService<FailoverChannel, CallInterceptor>>;

/// An inode's ACL as `getfacl` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclView {
    pub owner: String,
    pub group: String,
    pub sticky: bool,
    pub permission: u16,
    /// The whole ACL: owner, group (or mask), other and every other entry.
    pub entries: Vec<rdfs_common::acl::AclEntry>,
}

/// Options of a new file.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub overwrite: bool,
    pub create_parent: bool,
    pub replication: Option<u32>,
    pub block_size: Option<u64>,
    /// Permission before the umask; 0o666 by default.
    pub permission: u16,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            overwrite: false,
            create_parent: true,
            replication: None,
            block_size: None,
            permission: 0o666,
        }
    }
}

/// Renews this client's leases while any file is open for writing (HDFS's
/// LeaseRenewer): one task per client, started by the first open stream and
/// ended once none is left.
pub(crate) struct LeaseRenewer {
    open: std::sync::atomic::AtomicUsize,
    running: parking_lot::Mutex<bool>,
}

/// Held by each open output stream.
pub(crate) struct LeaseGuard {
    renewer: Arc<LeaseRenewer>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.renewer
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

pub(crate) struct Inner {
    pub leases: Arc<LeaseRenewer>,
    pub namenode: NamenodeClient,
    /// The transport under `namenode`, kept to ask which namenode is active.
    pub failover: FailoverChannel,
    pub namenode_addrs: Vec<String>,
    /// The namenode addresses, comma-separated, for messages.
    pub namenode_label: String,
    pub settings: ClientSettings,
    pub user: String,
    pub client_name: String,
    pub datanodes: ChannelCache,
}

/// A client of one rdfs namespace. Cheap to clone.
#[derive(Clone)]
pub struct DfsClient {
    pub(crate) inner: Arc<Inner>,
}

/// An entry of an fsck report, as the namenode sends it.
pub use rdfs_proto::fsck_response::Entry as FsckEntry;

impl DfsClient {
    /// A client of the namenode at `namenode_addr` (`host:port`), acting as
    /// `user`. Calls that cannot reach it are retried within the failover
    /// settings, so a namenode restart does not fail them at once.
    pub fn new(namenode_addr: &str, user: &str, settings: ClientSettings) -> Result<Self> {
        Self::new_nameservice(&[namenode_addr], user, settings)
    }

    /// A client of the HA nameservice whose namenodes are at
    /// `namenode_addrs` (`host:port` each), acting as `user`. Each call goes
    /// to the namenode that last served one (the first at the start) and
    /// fails over to the next when it is standby or cannot be reached.
    /// Must be called within a tokio runtime.
    pub fn new_nameservice<S: AsRef<str>>(
        namenode_addrs: &[S],
        user: &str,
        settings: ClientSettings,
    ) -> Result<Self> {
        let failover = FailoverChannel::new(namenode_addrs, &settings)?;
        let namenode_addrs: Vec<String> = namenode_addrs
            .iter()
            .map(|addr| addr.as_ref().to_string())
            .collect();
        let metadata = |user: &str| {
            MetadataValue::try_from(user).map_err(|_| {
                ClientError::InvalidArgument(format!("user name '{user}' is not valid ASCII"))
            })
        };
        let real_user = settings.real_user.as_deref().map(metadata).transpose()?;
        let namenode = ClientNamenodeClient::with_interceptor(
            failover.clone(),
            CallInterceptor::new(metadata(user)?, real_user),
        )
        .max_decoding_message_size(MAX_MESSAGE_SIZE);
        let client_name = format!(
            "DFSClient_NONMAPREDUCE_{}_1",
            rand::random::<u32>() & 0x7fff_ffff
        );
        Ok(Self {
            inner: Arc::new(Inner {
                leases: Arc::new(LeaseRenewer {
                    open: std::sync::atomic::AtomicUsize::new(0),
                    running: parking_lot::Mutex::new(false),
                }),
                namenode,
                failover,
                namenode_label: namenode_addrs.join(","),
                namenode_addrs,
                datanodes: ChannelCache::new(settings.connect_timeout),
                settings,
                user: user.to_string(),
                client_name,
            }),
        })
    }

    pub fn user(&self) -> &str {
        &self.inner.user
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }

    /// The namenode's address; for a nameservice, every namenode's,
    /// comma-separated.
    pub fn namenode_addr(&self) -> &str {
        &self.inner.namenode_label
    }

    /// The addresses of the namenodes this client fails over between.
    pub fn namenode_addrs(&self) -> &[String] {
        &self.inner.namenode_addrs
    }

    /// The namenode calls go to first: the one that last served a call.
    pub fn active_namenode(&self) -> &str {
        self.inner.failover.active_addr()
    }

    /// `/user/<name>`, where relative paths start.
    pub fn home_directory(&self) -> String {
        format!("/user/{}", self.inner.user)
    }

    /// The name the namenode knows this client's leases by.
    pub fn client_name(&self) -> &str {
        &self.inner.client_name
    }

    /// Counts an open output stream, starting the lease renewer if needed.
    pub(crate) fn lease_guard(&self) -> LeaseGuard {
        use std::sync::atomic::Ordering;
        let renewer = Arc::clone(&self.inner.leases);
        renewer.open.fetch_add(1, Ordering::AcqRel);
        let mut running = renewer.running.lock();
        if !*running && tokio::runtime::Handle::try_current().is_ok() {
            *running = true;
            let namenode = self.nn();
            let client_name = self.inner.client_name.clone();
            let interval = self.inner.settings.lease_renew_interval;
            let task_renewer = Arc::clone(&renewer);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(interval).await;
                    {
                        let mut running = task_renewer.running.lock();
                        if task_renewer.open.load(Ordering::Acquire) == 0 {
                            *running = false;
                            return;
                        }
                    }
                    let request = pb::RenewLeaseRequest {
                        client_name: client_name.clone(),
                    };
                    if let Err(status) = namenode.clone().renew_lease(request).await {
                        tracing::warn!(client = %client_name, error = %status.message(), "lease renewal failed; will retry");
                    }
                }
            });
        }
        drop(running);
        LeaseGuard { renewer }
    }

    pub(crate) fn nn(&self) -> NamenodeClient {
        self.inner.namenode.clone()
    }

    pub(crate) fn remote(&self, status: tonic::Status) -> ClientError {
        ClientError::from_status(status, &self.inner.namenode_label)
    }

    pub async fn get_file_info(&self, path: &str) -> Result<Option<FileStatus>> {
        let response = self
            .nn()
            .get_file_info(pb::GetFileInfoRequest {
                src: path.to_string(),
            })
            .await
            .map_err(|s| self.remote(s))?;
        Ok(response.into_inner().fs.map(Into::into))
    }

    /// Every entry of a directory (one entry for a file), paging through the
    /// namenode's listing; `None` when the path does not exist.
    pub async fn list(&self, path: &str) -> Result<Option<Vec<FileStatus>>> {
        let mut entries = Vec::new();
        let mut start_after = Vec::new();
        loop {
            let request = pb::GetListingRequest {
                src: path.to_string(),
                start_after: start_after.clone(),
                need_location: false,
            };
            let response = self
                .nn()
                .get_listing(request)
                .await
                .map_err(|s| self.remote(s))?;
            let Some(page) = response.into_inner().dir_list else {
                return Ok(if entries.is_empty() {
                    None
                } else {
                    Some(entries)
                });
            };
            let remaining = page.remaining_entries;
            let count = page.partial_listing.len();
            entries.extend(page.partial_listing.into_iter().map(FileStatus::from));
            if remaining == 0 || count == 0 {
                return Ok(Some(entries));
            }
            start_after = entries.last().map(|e| e.name.clone()).unwrap_or_default();
        }
    }

    pub async fn mkdirs(&self, path: &str, permission: u16, create_parent: bool) -> Result<bool> {
        let request = pb::MkdirsRequest {
            src: path.to_string(),
            permission: u32::from(permission & !self.inner.settings.umask),
            create_parent,
        };
        let response = self
            .nn()
            .mkdirs(request)
            .await
            .map_err(|s| self.remote(s))?;
        Ok(response.into_inner().result)
    }

    /// Creates a file and returns the stream that writes it.
    pub async fn create(&self, path: &str, options: CreateOptions) -> Result<DfsOutputStream> {
        let settings = &self.inner.settings;
        let replication = options.replication.unwrap_or(settings.replication);
        let block_size = options.block_size.unwrap_or(settings.block_size);
        let request = pb::CreateRequest {
            src: path.to_string(),
            permission: u32::from(options.permission & !settings.umask),
            client_name: self.inner.client_name.clone(),
            overwrite: options.overwrite,
            create_parent: options.create_parent,
            replication,
            block_size,
        };
        let response = self
            .nn()
            .create(request)
            .await
            .map_err(|s| self.remote(s))?;
        let status: FileStatus = response
            .into_inner()
            .fs
            .map(Into::into)
            .ok_or_else(|| ClientError::Transport("create returned no file status".into()))?;
        Ok(DfsOutputStream::new(
            self.clone(),
            path.to_string(),
            status.file_id,
            block_size,
            replication,
        ))
    }

    /// Opens an existing file to write at its end; a partial last block is
    /// continued (under a new generation stamp), else a new block starts.
    pub async fn append(&self, path: &str) -> Result<DfsOutputStream> {
        let request = pb::AppendRequest {
            src: path.to_string(),
            client_name: self.inner.client_name.clone(),
        };
        let response = self
            .nn()
            .append(request)
            .await
            .map_err(|s| self.remote(s))?
            .into_inner();
        let status: FileStatus = response
            .stat
            .map(Into::into)
            .ok_or_else(|| ClientError::Transport("append returned no file status".into()))?;
        let reopen: Option<LocatedBlock> = response.block.map(Into::into);
        // A file ending on a block boundary continues with a new block after
        // its last one, which the namenode wants named.
        let previous = match (&reopen, status.length) {
            (None, length) if length > 0 => self
                .get_block_locations(path, length - 1, 1)
                .await?
                .blocks
                .last()
                .map(|b| b.block.clone()),
            _ => None,
        };
        Ok(DfsOutputStream::for_append(
            self.clone(),
            path.to_string(),
            status.file_id,
            status.block_size,
            status.replication,
            status.length,
            reopen,
            previous,
        ))
    }

    /// Cuts a file to `new_length`. `true` when done; `false` when its last
    /// block is being cut on the datanodes and the file stays open until
    /// then (see [`Self::is_under_construction`]).
    pub async fn truncate(&self, path: &str, new_length: u64) -> Result<bool> {
        let request = pb::TruncateRequest {
            src: path.to_string(),
            new_length,
            client_name: self.inner.client_name.clone(),
        };
        Ok(self
            .nn()
            .truncate(request)
            .await
            .map_err(|s| self.remote(s))?
            .into_inner()
            .result)
    }

    /// Starts recovering the lease of a file whose writer is gone; `true`
    /// once the file is closed.
    pub async fn recover_lease(&self, path: &str) -> Result<bool> {
        let request = pb::RecoverLeaseRequest {
            src: path.to_string(),
            client_name: self.inner.client_name.clone(),
        };
        Ok(self
            .nn()
            .recover_lease(request)
            .await
            .map_err(|s| self.remote(s))?
            .into_inner()
            .result)
    }

    /// Whether a file is open for writing (or being recovered or truncated).
    pub async fn is_under_construction(&self, path: &str) -> Result<bool> {
        Ok(self
            .get_block_locations(path, 0, 1)
            .await?
            .under_construction)
    }

    /// Opens a file for reading. For a file being written, the last block's
    /// length is what its datanodes have acknowledged (the visible length).
    pub async fn open(&self, path: &str) -> Result<DfsInputStream> {
        let located = self.readable_locations(path).await?;
        Ok(DfsInputStream::new(self.clone(), path.to_string(), located))
    }

    /// The block locations of a whole file, with the visible length of a
    /// last block under construction asked of its datanodes.
    ///
    /// A last block being written that the namenode knows no datanode of
    /// (one that has just taken over and not heard from them yet) is asked
    /// for again a few times; if it holds data by the namenode's account,
    /// opening then fails (HDFS's "Could not obtain the last block
    /// locations") rather than read the file short and call it whole.
    pub(crate) async fn readable_locations(&self, path: &str) -> Result<LocatedBlocks> {
        let settings = &self.inner.settings;
        let mut asked = 0;
        let mut located = loop {
            let located = self.get_block_locations(path, 0, u64::MAX).await?;
            if located.under_construction
                && !located.is_last_block_complete
                && let Some(last) = located.last_block.as_ref()
                && last.locations.is_empty()
                && last.block.num_bytes > 0
            {
                if asked < settings.last_block_length_retries {
                    asked += 1;
                    tracing::info!(path, block = %last.block, attempt = asked,
                        "no datanode is known yet for the last block being written; asking again");
                    tokio::time::sleep(settings.last_block_length_retry_interval).await;
                    continue;
                }
                return Err(ClientError::Transport(format!(
                    "Could not obtain the last block locations of {path}: the namenode knows no datanode holding {} ({} bytes at least) after {asked} more tries",
                    last.block, last.block.num_bytes
                )));
            }
            break located;
        };
        if !located.under_construction || located.is_last_block_complete {
            return Ok(located);
        }
        let Some(last_id) = located.last_block.as_ref().map(|b| b.block.block_id) else {
            return Ok(located);
        };
        let Some(last) = located
            .blocks
            .iter_mut()
            .find(|b| b.block.block_id == last_id)
        else {
            return Ok(located);
        };
        if last.locations.is_empty() {
            // Nothing written yet by the namenode's account: a block just
            // allocated, its pipeline not set up.
            return Ok(located);
        }
        let mut failures = Vec::new();
        let mut visible = None;
        for node in &last.locations {
            match self
                .replica_visible_length(&last.block, &last.block_token, node)
                .await
            {
                Ok(length) => {
                    visible = Some(length);
                    break;
                }
                Err(why) => failures.push(why),
            }
        }
        let Some(visible) = visible else {
            return Err(ClientError::Transport(format!(
                "Cannot obtain block length for {} of {path}: {}",
                last.block,
                failures.join("; ")
            )));
        };
        last.block.num_bytes = last.block.num_bytes.max(visible);
        located.file_length = last.offset + last.block.num_bytes;
        Ok(located)
    }

    async fn replica_visible_length(
        &self,
        block: &ExtendedBlock,
        token: &Token,
        node: &DatanodeInfo,
    ) -> std::result::Result<u64, String> {
        let addr = node.id.xfer_addr();
        match rdfs_transfer::calls::replica_visible_length(
            &self.inner.datanodes,
            &addr,
            block,
            token,
            self.inner.settings.socket_timeout,
        )
        .await
        {
            Answer::Ok(length) => Ok(length),
            Answer::NotFound => Err(format!("{addr} holds no replica of {block}")),
            Answer::Failed(why) => Err(why),
        }
    }

    pub async fn get_block_locations(
        &self,
        path: &str,
        offset: u64,
        length: u64,
    ) -> Result<LocatedBlocks> {
        let request = pb::GetBlockLocationsRequest {
            src: path.to_string(),
            offset,
            length,
        };
        let response = self
            .nn()
            .get_block_locations(request)
            .await
            .map_err(|s| self.remote(s))?;
        Ok(response
            .into_inner()
            .locations
            .map(Into::into)
            .unwrap_or_default())
    }

    pub async fn rename(&self, src: &str, dst: &str) -> Result<bool> {
        let request = pb::RenameRequest {
            src: src.to_string(),
            dst: dst.to_string(),
        };
        Ok(self
            .nn()
            .rename(request)
            .await
            .map_err(|s| self.remote(s))?
            .into_inner()
            .result)
    }

    pub async fn delete(&self, path: &str, recursive: bool) -> Result<bool> {
        let request = pb::DeleteRequest {
            src: path.to_string(),
            recursive,
        };
        Ok(self
            .nn()
            .delete(request)
            .await
            .map_err(|s| self.remote(s))?
            .into_inner()
            .result)
    }

    pub async fn set_replication(&self, path: &str, replication: u32) -> Result<bool> {
        let request = pb::SetReplicationRequest {
            src: path.to_string(),
            replication,
        };
        Ok(self
            .nn()
            .set_replication(request)
            .await
            .map_err(|s| self.remote(s))?
            .into_inner()
            .result)
    }

    pub async fn set_permission(&self, path: &str, permission: u16) -> Result<()> {
        let request = pb::SetPermissionRequest {
            src: path.to_string(),
            permission: u32::from(permission),
        };
        self.nn()
            .set_permission(request)
            .await
            .map_err(|s| self.remote(s))?;
        Ok(())
    }

    pub async fn set_owner(
        &self,
        path: &str,
        owner: Option<&str>,
        group: Option<&str>,
    ) -> Result<()> {
        let request = pb::SetOwnerRequest {
            src: path.to_string(),
            username: owner.unwrap_or_default().to_string(),
            groupname: group.unwrap_or_default().to_string(),
        };
        self.nn()
            .set_owner(request)
            .await
            .map_err(|s| self.remote(s))?;
        Ok(())
    }

    pub async fn set_times(
        &self,
        path: &str,
        mtime: Option<u64>,
        atime: Option<u64>,
    ) -> Result<()> {
        let time = |t: Option<u64>| t.and_then(|t| i64::try_from(t).ok()).unwrap_or(-1);
        let request = pb::SetTimesRequest {
            src: path.to_string(),
            mtime: time(mtime),
            atime: time(atime),
        };
        self.nn()
            .set_times(request)
            .await
            .map_err(|s| self.remote(s))?;
        Ok(())
    }

    pub async fn content_summary(&self, path: &str) -> Result<ContentSummary> {
        let request = pb::GetContentSummaryRequest {
            path: path.to_string(),
        };
        let response = self
            .nn()
            .get_content_summary(request)
            .await
            .map_err(|s| self.remote(s))?;
        Ok(response
            .into_inner()
            .summary
            .map(Into::into)
            .unwrap_or_default())
    }

    pub async fn server_defaults(&self) -> Result<ServerDefaults> {
        let response = self
            .nn()
            .get_server_defaults(pb::GetServerDefaultsRequest {})
            .await
            .map_err(|s| self.remote(s))?;
        Ok(response
            .into_inner()
            .server_defaults
            .map(Into::into)
            .unwrap_or_default())
    }

    pub async fn datanode_report(&self, kind: pb::DatanodeReportType) -> Result<Vec<DatanodeInfo>> {
        let request = pb::GetDatanodeReportRequest {
            r#type: kind as i32,
        };
        let response = self
            .nn()
            .get_datanode_report(request)
            .await
            .map_err(|s| self.remote(s))?;
        Ok(response
            .into_inner()
            .datanodes
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn fs_stats(&self) -> Result<FsStats> {
        let response = self
            .nn()
            .get_fs_stats(pb::GetFsStatsRequest {})
            .await
            .map_err(|s| self.remote(s))?;
        Ok(response.into_inner().into())
    }

    /// Safe mode after `action`, and why it is on when it is.
    pub async fn safe_mode(&self, action: pb::SafeModeAction) -> Result<(bool, String)> {
        let request = pb::SetSafeModeRequest {
            action: action as i32,
        };
        let response = self
            .nn()
            .set_safe_mode(request)
            .await
            .map_err(|s| self.remote(s))?
            .into_inner();
        Ok((response.on, response.tip))
    }

    /// Saves a new fsimage; its txid.
    pub async fn save_namespace(&self) -> Result<u64> {
        let response = self
            .nn()
            .save_namespace(pb::SaveNamespaceRequest {})
            .await
            .map_err(|s| self.remote(s))?;
        Ok(response.into_inner().txid)
    }

    /// Re-reads the namenode's include and exclude host files; its summary.
    pub async fn refresh_nodes(&self) -> Result<String> {
        let response = self
            .nn()
            .refresh_nodes(pb::RefreshNodesRequest {})
            .await
            .map_err(|s| self.remote(s))?;
        Ok(response.into_inner().summary)
    }

    /// Changes the ACL of `path` (`setfacl`).
    pub async fn change_acl(
        &self,
        path: &str,
        change: pb::AclChange,
        entries: &[rdfs_common::acl::AclEntry],
    ) -> Result<()> {
        self.nn()
            .change_acl(pb::ChangeAclRequest {
                src: path.to_string(),
                change: change as i32,
                entries: rdfs_common::acl::to_wire(entries),
            })
            .await
            .map_err(|s| self.remote(s))?;
        Ok(())
    }

    /// The whole ACL of `path` with its owner, group and sticky bit
    /// (`getfacl`).
    pub async fn get_acl(&self, path: &str) -> Result<AclView> {
        let response = self
            .nn()
            .get_acl_status(pb::GetAclStatusRequest {
                src: path.to_string(),
            })
            .await
            .map_err(|s| self.remote(s))?
            .into_inner();
        let stored = rdfs_common::acl::from_wire(&response.entries)
            .map_err(|e| ClientError::InvalidArgument(e.0))?;
        let permission = response.permission as u16;
        Ok(AclView {
            owner: response.owner,
            group: response.group,
            sticky: response.sticky,
            permission,
            entries: rdfs_common::acl::logical(permission, &stored),
        })
    }

    /// The groups the namenode resolves for `user` (`rdfs groups`).
    pub async fn get_groups(&self, user: &str) -> Result<Vec<String>> {
        let response = self
            .nn()
            .get_groups(pb::GetGroupsRequest {
                user: user.to_string(),
            })
            .await
            .map_err(|s| self.remote(s))?;
        Ok(response.into_inner().groups)
    }

    /// Makes the namenode forget the users' groups it cached.
    pub async fn refresh_user_to_groups_mappings(&self) -> Result<()> {
        self.nn()
            .refresh_user_to_groups_mappings(pb::RefreshUserToGroupsMappingsRequest {})
            .await
            .map_err(|s| self.remote(s))?;
        Ok(())
    }

    /// Makes the namenode read its proxy-user rules again.
    pub async fn refresh_super_user_groups_configuration(&self) -> Result<()> {
        self.nn()
            .refresh_super_user_groups_configuration(
                pb::RefreshSuperUserGroupsConfigurationRequest {},
            )
            .await
            .map_err(|s| self.remote(s))?;
        Ok(())
    }

    /// Blocks with a replica on a datanode, adding up to about `size` bytes
    /// (for the balancer).
    pub async fn get_blocks(
        &self,
        datanode_uuid: &str,
        size: u64,
        min_block_size: u64,
    ) -> Result<Vec<LocatedBlock>> {
        let response = self
            .nn()
            .get_blocks(pb::GetBlocksRequest {
                datanode_uuid: datanode_uuid.to_string(),
                size,
                min_block_size,
            })
            .await
            .map_err(|s| self.remote(s))?;
        Ok(response
            .into_inner()
            .blocks
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Asks the namenode to move a replica between datanodes.
    pub async fn schedule_replica_move(
        &self,
        block: &ExtendedBlock,
        source_uuid: &str,
        target_uuid: &str,
    ) -> Result<()> {
        self.nn()
            .schedule_replica_move(pb::ScheduleReplicaMoveRequest {
                block: Some(block.into()),
                source_uuid: source_uuid.to_string(),
                target_uuid: target_uuid.to_string(),
            })
            .await
            .map_err(|s| self.remote(s))?;
        Ok(())
    }

    /// Rolls the edit log; the first txid of the new segment.
    pub async fn roll_edits(&self) -> Result<u64> {
        let response = self
            .nn()
            .roll_edits(pb::RollEditsRequest {})
            .await
            .map_err(|s| self.remote(s))?;
        Ok(response.into_inner().new_segment_txid)
    }

    /// The namenode's fsck facts for everything under `path`.
    pub async fn fsck(&self, path: &str) -> Result<Vec<FsckEntry>> {
        let response = self
            .nn()
            .fsck(pb::FsckRequest {
                path: path.to_string(),
            })
            .await
            .map_err(|s| self.remote(s))?;
        let mut stream = response.into_inner();
        let mut entries = Vec::new();
        while let Some(item) = stream.message().await.map_err(|s| self.remote(s))? {
            if let Some(entry) = item.entry {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Tells the namenode that `datanode` holds a corrupt replica of `block`.
    pub async fn report_bad_block(
        &self,
        block: &ExtendedBlock,
        datanode: &DatanodeInfo,
    ) -> Result<()> {
        let located = LocatedBlock {
            block: block.clone(),
            offset: 0,
            locations: vec![datanode.clone()],
            storage_ids: Vec::new(),
            corrupt: false,
            block_token: Default::default(),
        };
        let request = pb::ReportBadBlocksRequest {
            blocks: vec![(&located).into()],
        };
        self.nn()
            .report_bad_blocks(request)
            .await
            .map_err(|s| self.remote(s))?;
        Ok(())
    }
}
