//! Running a datanode: open and lock the volumes, listen for transfers,
//! connect to the namenodes, scan the replicas in the background, serve
//! until told to stop or until more volumes fail than tolerated.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use rdfs_common::config::{Config, ConfigError, DatanodeConfig};
use rdfs_common::grpc::{ChannelCache, MAX_MESSAGE_SIZE};
use rdfs_common::protocol::DatanodeId;
use rdfs_proto::datanode_protocol_client::DatanodeProtocolClient;
use rdfs_proto::inter_datanode_server::InterDatanodeServer;

use crate::background::Background;
use crate::block_access::BlockAccess;
use crate::bp_service::{BpOfferService, LinkError, NamenodeLink, Timing};
use crate::context::DatanodeContext;
use crate::dataset::Dataset;
use crate::error::DatanodeError;
use crate::io_hints;
use crate::recovery_service::RecoveryService;
use crate::transfer_service::DataTransferService;
use crate::volume::{datanode_uuid, open_volumes};

/// The file in the first data dir that opened that names the addresses the
/// datanode bound (useful with port 0).
pub const ADDRESS_FILE: &str = "datanode.addresses";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] DatanodeError),
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
    #[error("bad namenode address {addr}: {source}")]
    NamenodeAddress {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("transfer server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// Why [`Datanode::serve`] stopped serving.
enum Ended {
    Shutdown,
    Link(Result<Result<(), LinkError>, tokio::task::JoinError>),
    VolumesLost(DatanodeError),
}

pub struct Datanode {
    ctx: Arc<DatanodeContext>,
    listener: tokio::net::TcpListener,
    address: SocketAddr,
    bp: BpOfferService,
    /// What the background scanners need.
    config: DatanodeConfig,
}

impl Datanode {
    pub async fn start(config: &Config) -> Result<Self, ServerError> {
        let dn = &config.datanode;
        let (volumes, failed) = open_volumes(&dn.data_dirs, dn.du_reserved.0)?;
        let uuid = datanode_uuid(&volumes)?;
        let dataset = Dataset::new(volumes, dn.sync_behind_bytes.0, dn.sync_on_close)
            .tolerating(dn.failed_volumes_tolerated, failed);
        // Refuse to start on fewer volumes than the operator allows.
        dataset.volume_health()?;
        let address_dir = dataset
            .volumes()
            .first()
            .map(|v| v.root.clone())
            .ok_or_else(|| DatanodeError::NoVolumeLeft {
                volumes: dataset.failed_volumes(),
            })?;
        let dataset = Arc::new(dataset);
        let listener = tokio::net::TcpListener::bind(&dn.xfer_address)
            .await
            .map_err(|source| ServerError::Bind {
                addr: dn.xfer_address.clone(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: dn.xfer_address.clone(),
            source,
        })?;
        let ip = if dn.advertised_host.is_empty() {
            if address.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                address.ip().to_string()
            }
        } else {
            dn.advertised_host.clone()
        };
        let id = DatanodeId {
            ip_addr: ip,
            hostname: io_hints::hostname(),
            datanode_uuid: uuid,
            xfer_port: address.port(),
            info_port: 0,
            ipc_port: 0,
        };
        let address_file = address_dir.join(ADDRESS_FILE);
        std::fs::write(
            &address_file,
            format!("xfer={address}\nuuid={}\n", id.datanode_uuid),
        )
        .map_err(|source| ServerError::AddressFile {
            path: address_file.clone(),
            source,
        })?;
        let connect_timeout = Duration::from_millis(config.client.connect_timeout_ms);
        let socket_timeout = Duration::from_millis(dn.socket_timeout_ms);
        let channels = Arc::new(ChannelCache::new(connect_timeout));
        let ctx = Arc::new(DatanodeContext {
            reports: dataset.reports(),
            dataset,
            mirror: crate::context::grpc_mirror(&channels, socket_timeout),
            channels,
            socket_timeout,
            transfers: Arc::new(AtomicU32::new(0)),
            xmits: Arc::new(AtomicU32::new(0)),
            balance_throttle: parking_lot::Mutex::new(crate::throttle::Throttle::new(
                dn.balance_bandwidth.0,
            )),
            recovering: parking_lot::Mutex::new(Default::default()),
            block_access: BlockAccess::new(config.security.block_access_token_enable),
        });
        // Every namenode of the nameservice (one without HA).
        let namenodes = config
            .default_namenodes()?
            .into_iter()
            .map(|namenode| {
                let channel = rdfs_common::grpc::endpoint(&namenode.address, connect_timeout)
                    .map_err(|source| ServerError::NamenodeAddress {
                        addr: namenode.address.clone(),
                        source,
                    })?
                    .timeout(Duration::from_millis(dn.socket_timeout_ms))
                    .connect_lazy();
                Ok(NamenodeLink {
                    namenode,
                    client: DatanodeProtocolClient::new(channel)
                        .max_decoding_message_size(MAX_MESSAGE_SIZE),
                })
            })
            .collect::<Result<Vec<_>, ServerError>>()?;
        let timing = Timing {
            heartbeat_interval: Duration::from_millis(config.dfs.heartbeat_interval_ms),
            block_report_interval: Duration::from_millis(dn.block_report_interval_ms.max(1)),
        };
        let bp = BpOfferService::new(Arc::clone(&ctx), id, namenodes, timing);
        Ok(Self {
            ctx,
            listener,
            address,
            bp,
            config: dn.clone(),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves transfers and talks to the namenodes until `shutdown`
    /// resolves, the storage fails under the namenode link or every
    /// namenode refused this datanode, or more volumes fail than tolerated
    /// (then the error names them).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Self {
            ctx,
            listener,
            address,
            bp,
            config,
        } = self;
        let stop = CancellationToken::new();
        tracing::info!(xfer = %address, uuid = %bp.datanode_id().datanode_uuid, volumes = ctx.dataset.volumes().len(),
            failed_volumes = ctx.dataset.failed_volume_count(), namenodes = ?bp.namenodes(), "datanode serving");
        let background = Background::start(&ctx.dataset, &config);
        let link = tokio::spawn(bp.run(stop.clone()));
        let incoming = rdfs_common::grpc::incoming(listener);
        let stop_server = stop.clone();
        let server = tokio::spawn(
            rdfs_common::grpc::server()
                .add_service(DataTransferService::new(Arc::clone(&ctx)))
                .add_service(tonic::service::interceptor::InterceptedService::new(
                    InterDatanodeServer::new(RecoveryService::new(Arc::clone(&ctx))),
                    // Over TLS only datanodes recover replicas together.
                    rdfs_common::tls::require_role(
                        "the inter-datanode protocol",
                        &[rdfs_common::tls::Role::Datanode],
                    ),
                ))
                .serve_with_incoming_shutdown(
                    incoming,
                    async move { stop_server.cancelled().await },
                ),
        );
        let ended = tokio::select! {
            _ = shutdown => Ended::Shutdown,
            result = link => Ended::Link(result),
            err = ctx.dataset.volumes_lost() => Ended::VolumesLost(err),
        };
        stop.cancel();
        let served = server.await;
        if let Err(join) = tokio::task::spawn_blocking(move || background.stop()).await {
            tracing::error!(error = %join, "stopping the background scanners failed");
        }
        match ended {
            Ended::Shutdown => {}
            Ended::Link(Ok(result)) => result?,
            Ended::Link(Err(join)) => {
                return Err(LinkError::Refused(format!("namenode link panicked: {join}")).into());
            }
            Ended::VolumesLost(err) => {
                tracing::error!(error = %err, "datanode shutting down");
                return Err(err.into());
            }
        }
        match served {
            Ok(result) => result?,
            Err(join) => tracing::error!(error = %join, "transfer server task failed"),
        }
        tracing::info!("datanode stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dirs: Vec<PathBuf>, tolerated: u32) -> Config {
        let mut config = Config::default();
        config.datanode.data_dirs = dirs;
        config.datanode.failed_volumes_tolerated = tolerated;
        config.datanode.xfer_address = "127.0.0.1:0".to_string();
        // Nobody listens there: the link keeps retrying, which is all
        // these tests need.
        config.namenode.rpc_address = "127.0.0.1:1".to_string();
        config
    }

    #[tokio::test]
    async fn start_refuses_more_unopenable_volumes_than_tolerated() {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("file");
        let dirs = vec![file.clone(), tmp.path().join("good")];
        let Err(err) = Datanode::start(&config(dirs.clone(), 0)).await else {
            panic!("started with a volume it cannot open and none tolerated");
        };
        assert!(
            err.to_string().starts_with(&format!(
                "too many failed volumes: 1 failed, 0 tolerated: {} (",
                file.display()
            )),
            "{err}"
        );
        let dn = Datanode::start(&config(dirs, 1)).await.expect("starts");
        assert_eq!(dn.ctx.dataset.volumes().len(), 1);
        assert_eq!(dn.ctx.dataset.failed_volume_count(), 1);
        assert!(tmp.path().join("good").join(ADDRESS_FILE).exists());
    }

    #[tokio::test]
    async fn serve_stops_with_an_error_naming_the_failed_volume() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("v0");
        let dn = Datanode::start(&config(vec![root.clone()], 0))
            .await
            .expect("starts");
        let dataset = Arc::clone(&dn.ctx.dataset);
        let serving = tokio::spawn(dn.serve(std::future::pending()));
        std::fs::rename(&root, tmp.path().join("moved")).expect("move the volume away");
        std::fs::write(&root, b"x").expect("file in its place");
        let healthy = tokio::task::spawn_blocking(move || dataset.check_volume(0, &"test"))
            .await
            .expect("check");
        assert!(!healthy);
        let result = tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .expect("serve ends promptly")
            .expect("serve task");
        let err = result.expect_err("too many failed volumes");
        assert!(
            err.to_string().starts_with(&format!(
                "too many failed volumes: 1 failed, 0 tolerated: {} (",
                root.display()
            )),
            "{err}"
        );
    }
}
