//! Running a namenode: format, start-up (lock the name dirs, replay the edit
//! log, open a new segment), serving RPCs, and shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use rdfs_common::config::{Config, ConfigError};
use rdfs_common::grpc::MAX_MESSAGE_SIZE;
use rdfs_common::ids::{
    NAMENODE_LAYOUT_VERSION, new_block_pool_id, new_cluster_id, new_namespace_id,
};
use rdfs_common::time::now_ms;
use rdfs_proto::client_namenode_server::ClientNamenodeServer;
use rdfs_proto::datanode_protocol_server::DatanodeProtocolServer;
use rdfs_proto::ha_service_server::HaServiceServer;

use crate::block_tokens::BlockTokens;
use crate::checkpoint::{CheckpointPolicy, Checkpointer};
use crate::edit_log::{FileJournal, Journal, JournalError};
use crate::ha::NamenodeHandle;
use crate::ha::node::HaNode;
use crate::ha::service::HaServiceImpl;
use crate::identity::Identities;
use crate::namesystem::{Namesystem, NamesystemConfig, empty_state};
use crate::protocol::ClientProtocol;
use crate::rpc::client_service::ClientService;
use crate::rpc::datanode_service::DatanodeService;
use crate::storage::{self, NameStorage, NamespaceInfo, StorageError};

/// The file in the first name dir that names the addresses the namenode
/// bound (useful with port 0).
pub const ADDRESS_FILE: &str = "namenode.addresses";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    AddressFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("RPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("the namenode stopped because its edit log failed; see the log above")]
    EditLogFailed,
    #[error(transparent)]
    Namesystem(#[from] crate::error::NamenodeError),
    #[error("{0}")]
    Ha(String),
}

/// Formats the configured name dirs with a new namespace whose root belongs
/// to `superuser` and the supergroup.
pub fn format(
    config: &Config,
    force: bool,
    cluster_id: Option<String>,
    superuser: &str,
) -> Result<NamespaceInfo, ServerError> {
    let rpc = config.namenode_rpc_address()?;
    let host = rpc.rsplit_once(':').map_or(rpc.as_str(), |(h, _)| h);
    let ip = host
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|_| "127.0.0.1".to_string());
    let now = now_ms();
    let info = NamespaceInfo {
        cluster_id: cluster_id.unwrap_or_else(new_cluster_id),
        block_pool_id: new_block_pool_id(&ip, now),
        namespace_id: new_namespace_id(),
        layout_version: NAMENODE_LAYOUT_VERSION,
        ctime: now,
    };
    let ns_config = NamesystemConfig::from_config(config);
    let empty = empty_state(
        &info,
        &ns_config,
        superuser,
        &config.namenode.supergroup,
        now,
    );
    let image = crate::fsimage::encode(&empty, 0, &info);
    storage::format(&config.namenode.name_dirs, force, &info, &image)?;
    tracing::info!(cluster_id = %info.cluster_id, block_pool_id = %info.block_pool_id,
        dirs = ?config.namenode.name_dirs, "formatted a new namespace");
    Ok(info)
}

/// Reads the daemon's configuration again (its file and `-D` overrides),
/// for the refresh commands.
pub type ConfigReload = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// A namenode that has loaded its namespace and is ready to serve.
pub struct Namenode {
    handle: Arc<NamenodeHandle>,
    identities: Arc<Identities>,
    block_tokens: Arc<BlockTokens>,
    reload: ConfigReload,
    mode: Mode,
    listener: tokio::net::TcpListener,
    address: SocketAddr,
    tick: Duration,
}

enum Mode {
    /// One namenode writing its edit log to its own name dirs.
    Single {
        journal: Arc<FileJournal>,
        checkpointer: Arc<Checkpointer>,
        storage: NameStorage,
        fatal: CancellationToken,
    },
    /// One of the namenodes of an HA nameservice.
    Ha(Arc<HaNode>),
}

impl Namenode {
    /// Locks the name dirs, loads the newest fsimage and the edits after it,
    /// and binds the RPC address. The namenode starts in safe mode; in an HA
    /// nameservice it starts as standby.
    /// Loads the namespace and binds the RPC port. `superuser` is the user
    /// the namenode runs as (who formatted it), whom no permission check
    /// stops.
    pub async fn start(
        config: &Config,
        superuser: &str,
        reload: ConfigReload,
    ) -> Result<Self, ServerError> {
        let identities =
            Arc::new(Identities::from_config(config, superuser).map_err(ConfigError::Invalid)?);
        let block_tokens = Arc::new(BlockTokens::from_config(config)?);
        let (handle, mode) = if config.is_ha() {
            let node = HaNode::open(config, superuser)?;
            node.check_journal().await?;
            (Arc::clone(node.handle()), Mode::Ha(node))
        } else {
            Self::open_single(config)?
        };
        let ns_config = handle.get().config().clone();
        let addr = config.namenode_rpc_address()?;
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let address = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        write_address_file(&config.namenode.name_dirs[0], address)?;
        let tick = (ns_config.liveness.dead_after / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        Ok(Self {
            handle,
            identities,
            block_tokens,
            reload,
            mode,
            listener,
            address,
            tick,
        })
    }

    fn open_single(config: &Config) -> Result<(Arc<NamenodeHandle>, Mode), ServerError> {
        let mut storage = NameStorage::open(&config.namenode.name_dirs)?;
        let ns_config = NamesystemConfig::from_config(config);
        let started = std::time::Instant::now();
        let loaded = storage.load(&ns_config)?;
        tracing::info!(
            image_txid = loaded.image_txid,
            last_txid = loaded.last_txid,
            inodes = loaded.state.namespace.inode_count(),
            blocks = loaded.state.blocks.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "namespace loaded"
        );
        let journal = Arc::new(FileJournal::open(
            &storage.current_dirs,
            loaded.last_txid + 1,
        )?);
        let fatal = CancellationToken::new();
        let namesystem = Arc::new(Namesystem::new(
            storage.info.clone(),
            ns_config.clone(),
            loaded.state,
            Arc::clone(&journal) as Arc<dyn Journal>,
            fatal.clone(),
            true,
        ));
        namesystem.remember_calls(loaded.calls);
        namesystem.load_topology()?;
        let hosts = namesystem.refresh_nodes()?;
        if !config.namenode.hosts_file.is_empty() || !config.namenode.hosts_exclude_file.is_empty()
        {
            tracing::info!(summary = %hosts, "host files read");
        }
        let nn = &config.namenode;
        let policy = CheckpointPolicy {
            txns: nn.checkpoint_txns.max(1),
            period: Duration::from_millis(nn.checkpoint_period_ms.max(1)),
            check: Duration::from_millis(nn.checkpoint_check_ms.max(10)),
            retained_images: nn.retained_images.max(1) as usize,
        };
        let checkpointer = Arc::new(Checkpointer::new(
            Arc::clone(&namesystem),
            Arc::clone(&journal),
            loaded.image_txid,
            policy,
        ));
        Ok((
            NamenodeHandle::single(namesystem),
            Mode::Single {
                journal,
                checkpointer,
                storage,
                fatal,
            },
        ))
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The current namesystem (in HA it is replaced when the namenode steps
    /// down).
    pub fn namesystem(&self) -> Arc<Namesystem> {
        self.handle.get()
    }

    /// Serves until `shutdown` resolves (or the edit log fails), then closes
    /// the edit log cleanly.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Self {
            handle,
            identities,
            block_tokens,
            reload,
            mode,
            listener,
            address,
            tick,
        } = self;
        let stop = CancellationToken::new();
        let mut tasks = vec![
            spawn_ticker(Arc::clone(&handle), tick, stop.clone()),
            spawn_replication_monitor(Arc::clone(&handle), stop.clone()),
            spawn_lease_monitor(Arc::clone(&handle), stop.clone()),
            tokio::spawn(crate::trash_emptier::run(
                Arc::clone(&handle),
                identities.namenode(),
                stop.clone(),
            )),
        ];
        let (checkpointer, fatal, ha_node) = match &mode {
            Mode::Single {
                checkpointer,
                fatal,
                ..
            } => {
                tasks.push(tokio::spawn(Arc::clone(checkpointer).run(stop.clone())));
                (Some(Arc::clone(checkpointer)), fatal.clone(), None)
            }
            Mode::Ha(node) => (None, CancellationToken::new(), Some(Arc::clone(node))),
        };
        let controller = ha_node.as_ref().map(|node| {
            tasks.push(tokio::spawn(Arc::clone(node).run_checkpoints(stop.clone())));
            tokio::spawn(Arc::clone(node).run(stop.clone()))
        });
        let info = handle.get().namespace_info().clone();
        tracing::info!(rpc = %address, cluster_id = %info.cluster_id,
            block_pool_id = %info.block_pool_id, ha = handle.is_ha(),
            "namenode serving (in safe mode until enough blocks are reported)");
        let incoming = rdfs_common::grpc::incoming(listener);
        let fatal_signal = fatal.clone();
        let result = rdfs_common::grpc::server()
            .add_service(
                ClientNamenodeServer::new(ClientService::new(
                    Arc::new(ClientProtocol::new(
                        Arc::clone(&handle),
                        checkpointer,
                        Arc::clone(&identities),
                        Arc::clone(&block_tokens),
                    )),
                    reload,
                ))
                .max_decoding_message_size(MAX_MESSAGE_SIZE),
            )
            .add_service(tonic::service::interceptor::InterceptedService::new(
                DatanodeProtocolServer::new(DatanodeService::new(
                    Arc::clone(&handle),
                    block_tokens,
                ))
                .max_decoding_message_size(MAX_MESSAGE_SIZE),
                // Over TLS only a datanode's certificate may register and
                // report as one.
                rdfs_common::tls::require_role(
                    "the datanode protocol",
                    &[rdfs_common::tls::Role::Datanode],
                ),
            ))
            .add_service(
                HaServiceServer::new(HaServiceImpl::new(Arc::clone(&handle), ha_node, identities))
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
            )
            .serve_with_incoming_shutdown(incoming, async move {
                tokio::select! {
                    _ = shutdown => {}
                    _ = fatal_signal.cancelled() => {}
                }
            })
            .await;
        stop.cancel();
        for task in tasks {
            let _ = task.await;
        }
        if let Some(controller) = controller {
            let _ = controller.await;
        }
        if fatal.is_cancelled() {
            return Err(ServerError::EditLogFailed);
        }
        result?;
        if let Mode::Single {
            journal, storage, ..
        } = mode
        {
            journal.close().await?;
            drop(storage);
        }
        tracing::info!(
            last_txid = handle.get().last_txid(),
            "namenode stopped; edit log finalized"
        );
        Ok(())
    }
}

/// Dead-node detection and safe mode, whatever the role.
fn spawn_ticker(
    handle: Arc<NamenodeHandle>,
    tick: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = interval.tick() => handle.get().tick(),
            }
        }
    })
}

/// Re-replication, deletions and decommissioning: the active's work only.
fn spawn_replication_monitor(
    handle: Arc<NamenodeHandle>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = handle.get().config().clone();
        let mut interval = tokio::time::interval(config.replication_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_decommission_check = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = interval.tick() => {
                    if !handle.is_serving_active() {
                        continue;
                    }
                    let due = last_decommission_check.elapsed() >= config.decommission_interval;
                    if due {
                        last_decommission_check = tokio::time::Instant::now();
                    }
                    handle.get().replication_round(due);
                }
            }
        }
    })
}

/// Lease expiry and recovery: the active's work only.
fn spawn_lease_monitor(
    handle: Arc<NamenodeHandle>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = handle.get().config().lease_recheck_interval;
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = interval.tick() => {
                    if !handle.is_serving_active() {
                        continue;
                    }
                    if let Err(err) = handle.get().check_leases(std::time::Instant::now()).await {
                        tracing::warn!(error = %err, "lease monitor round failed");
                    }
                }
            }
        }
    })
}

fn write_address_file(dir: &Path, address: SocketAddr) -> Result<(), ServerError> {
    let path = dir.join(ADDRESS_FILE);
    let tmp = dir.join(format!("{ADDRESS_FILE}.tmp"));
    std::fs::write(&tmp, format!("rpc={address}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| ServerError::AddressFile { path, source })
}
