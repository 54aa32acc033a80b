//! Running a datanode: open and lock the volumes, listen for transfers,
//! connect to the namenode, serve until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use rdfs_common::config::{Config, ConfigError};
use rdfs_common::grpc::{ChannelCache, MAX_MESSAGE_SIZE};
use rdfs_common::protocol::DatanodeId;
use rdfs_proto::data_transfer_server::DataTransferServer;
use rdfs_proto::datanode_protocol_client::DatanodeProtocolClient;

use crate::bp_service::{BpService, LinkError};
use crate::context::DatanodeContext;
use crate::dataset::Dataset;
use crate::error::DatanodeError;
use crate::io_hints;
use crate::reports::Reports;
use crate::transfer_service::TransferService;
use crate::volume::{Volume, datanode_uuid};

/// The file in the first data dir that names the addresses the datanode
/// bound (useful with port 0).
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

pub struct Datanode {
    ctx: Arc<DatanodeContext>,
    listener: tokio::net::TcpListener,
    address: SocketAddr,
    bp: BpService,
}

impl Datanode {
    pub async fn start(config: &Config) -> Result<Self, ServerError> {
        let dn = &config.datanode;
        let volumes = dn
            .data_dirs
            .iter()
            .enumerate()
            .map(|(index, dir)| Volume::open(index, dir, dn.du_reserved.0))
            .collect::<Result<Vec<_>, _>>()?;
        let uuid = datanode_uuid(&volumes)?;
        let dataset = Arc::new(Dataset::new(
            volumes,
            dn.sync_behind_bytes.0,
            dn.sync_on_close,
        ));
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
        let address_file = dn.data_dirs[0].join(ADDRESS_FILE);
        std::fs::write(
            &address_file,
            format!("xfer={address}\nuuid={}\n", id.datanode_uuid),
        )
        .map_err(|source| ServerError::AddressFile {
            path: address_file.clone(),
            source,
        })?;
        let connect_timeout = Duration::from_millis(config.client.connect_timeout_ms);
        let ctx = Arc::new(DatanodeContext {
            dataset,
            reports: Arc::new(Reports::default()),
            channels: ChannelCache::new(connect_timeout),
            socket_timeout: Duration::from_millis(dn.socket_timeout_ms),
            transfers: Arc::new(AtomicU32::new(0)),
        });
        let namenode_addr = config.namenode_rpc_address()?;
        let channel = rdfs_common::grpc::endpoint(&namenode_addr, connect_timeout)
            .map_err(|source| ServerError::NamenodeAddress {
                addr: namenode_addr.clone(),
                source,
            })?
            .timeout(Duration::from_millis(dn.socket_timeout_ms))
            .connect_lazy();
        let bp = BpService {
            ctx: Arc::clone(&ctx),
            namenode: DatanodeProtocolClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_SIZE),
            namenode_addr,
            id,
            heartbeat_interval: Duration::from_millis(config.dfs.heartbeat_interval_ms),
            block_report_interval: Duration::from_millis(dn.block_report_interval_ms.max(1)),
        };
        Ok(Self {
            ctx,
            listener,
            address,
            bp,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves transfers and talks to the namenode until `shutdown` resolves
    /// or the namenode link fails for good.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Self {
            ctx,
            listener,
            address,
            bp,
        } = self;
        let stop = CancellationToken::new();
        tracing::info!(xfer = %address, uuid = %bp.id.datanode_uuid, volumes = ctx.dataset.volumes().len(), "datanode serving");
        let link = tokio::spawn(bp.run(stop.clone()));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let stop_server = stop.clone();
        let server = tokio::spawn(
            rdfs_common::grpc::server()
                .add_service(
                    DataTransferServer::new(TransferService::new(Arc::clone(&ctx)))
                        .max_decoding_message_size(MAX_MESSAGE_SIZE),
                )
                .serve_with_incoming_shutdown(
                    incoming,
                    async move { stop_server.cancelled().await },
                ),
        );
        let link = tokio::select! {
            _ = shutdown => None,
            result = link => Some(result),
        };
        stop.cancel();
        let served = server.await;
        let link_result = match link {
            Some(Ok(result)) => result,
            Some(Err(join)) => Err(LinkError::Refused(format!(
                "namenode link panicked: {join}"
            ))),
            None => Ok(()),
        };
        link_result?;
        match served {
            Ok(result) => result?,
            Err(join) => tracing::error!(error = %join, "transfer server task failed"),
        }
        tracing::info!("datanode stopped");
        Ok(())
    }
}
