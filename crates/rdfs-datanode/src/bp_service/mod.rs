//! The datanode's side of its conversation with the namenodes of its
//! nameservice (HDFS's `BPOfferService` and `BPServiceActor`).
//!
//! [`BpOfferService`] owns what the namenodes share: the namespace they
//! must all serve and which of them is active ([`active`]). Under it, one
//! [`actor::BpServiceActor`] per namenode runs the conversation with that
//! namenode alone: handshake, registration, a full block report, then
//! heartbeats, incremental reports from its own queue and periodic full
//! reports. Every namenode hears everything (the standby keeps its block
//! map hot for a failover); only the active one's commands are carried
//! out. Without HA there is one namenode, always active.

pub mod active;
mod actor;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::Instrument;

use rdfs_common::config::NamenodeAddress;
use rdfs_common::protocol::DatanodeId;
use rdfs_proto as pb;
use rdfs_proto::datanode_protocol_client::DatanodeProtocolClient;

use crate::context::DatanodeContext;
use crate::error::DatanodeError;

use self::active::ActiveNamenode;
use self::actor::BpServiceActor;

/// Why the datanode cannot go on serving a namenode.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Storage(#[from] DatanodeError),
    #[error("the namenode refused this datanode: {0}")]
    Refused(String),
}

/// The DatanodeProtocol client of one namenode (the namenode link is this
/// module's; block recovery reports through it too).
pub type NamenodeClient = DatanodeProtocolClient<Channel>;

/// One namenode to serve and the client to reach it.
pub struct NamenodeLink {
    pub namenode: NamenodeAddress,
    pub client: NamenodeClient,
}

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    pub block_report_interval: Duration,
}

/// The link to every namenode of the nameservice.
pub struct BpOfferService {
    shared: Arc<Shared>,
    actors: Vec<BpServiceActor>,
}

/// What every actor shares.
struct Shared {
    ctx: Arc<DatanodeContext>,
    id: DatanodeId,
    /// More than one namenode: a namenode that serves another namespace is
    /// a configuration mistake to log and retry, not a reason to stop.
    ha: bool,
    /// The namespace the volumes were attached to, and who served it first.
    namespace: tokio::sync::OnceCell<Adopted>,
    active: parking_lot::Mutex<ActiveNamenode>,
}

struct Adopted {
    info: pb::NamespaceInfo,
    from: String,
}

/// How a namenode's handshake compares with the namespace adopted.
enum Agreement {
    Agreed,
    /// It serves another namespace: not adopted; the text says why.
    Mismatch(String),
}

/// `nn1 (host:port)`, for the logs.
fn describe(namenode: &NamenodeAddress) -> String {
    format!("{} ({})", namenode.id, namenode.address)
}

impl BpOfferService {
    pub fn new(
        ctx: Arc<DatanodeContext>,
        id: DatanodeId,
        namenodes: Vec<NamenodeLink>,
        timing: Timing,
    ) -> Self {
        let names = namenodes.iter().map(|l| describe(&l.namenode)).collect();
        let shared = Arc::new(Shared {
            ha: namenodes.len() > 1,
            ctx,
            id,
            namespace: tokio::sync::OnceCell::new(),
            active: parking_lot::Mutex::new(ActiveNamenode::new(names)),
        });
        let actors = namenodes
            .into_iter()
            .enumerate()
            .map(|(index, link)| {
                // Subscribed now, before anything can be reported, so every
                // namenode's queue sees every report.
                let queue = shared.ctx.reports.subscribe(&describe(&link.namenode));
                BpServiceActor::new(index, link, queue, Arc::clone(&shared), timing)
            })
            .collect();
        Self { shared, actors }
    }

    pub fn datanode_id(&self) -> &DatanodeId {
        &self.shared.id
    }

    /// The namenodes served, for the logs.
    pub fn namenodes(&self) -> Vec<String> {
        self.actors.iter().map(|a| describe(a.namenode())).collect()
    }

    /// Talks to every namenode until `shutdown`. Ends early with an error
    /// when the storage fails (the datanode cannot serve any namenode), or
    /// when every namenode has refused this datanode for good; a namenode
    /// that is merely unreachable is retried for as long as it takes.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), LinkError> {
        let mut actors = JoinSet::new();
        for actor in self.actors {
            let stop = shutdown.clone();
            let span = tracing::info_span!("namenode_link", nn = %actor.namenode().id,
                namenode = %actor.namenode().address);
            actors.spawn(
                async move {
                    // Dropping the actor mid-call is how an RPC to a namenode
                    // that hangs is cut short on shutdown.
                    tokio::select! {
                        _ = stop.cancelled() => Ok(()),
                        ended = actor.run() => ended,
                    }
                }
                .instrument(span),
            );
        }
        let mut refused = None;
        while let Some(joined) = actors.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(LinkError::Storage(err))) => {
                    // Dropping the set stops the other actors.
                    return Err(LinkError::Storage(err));
                }
                Ok(Err(err)) => {
                    if !actors.is_empty() {
                        tracing::error!(error = %err, "no longer serving this namenode; serving the others");
                    }
                    refused.get_or_insert(err);
                }
                Err(join) => {
                    let err = LinkError::Refused(format!("namenode link panicked: {join}"));
                    if !actors.is_empty() {
                        tracing::error!(error = %err, "no longer serving this namenode; serving the others");
                    }
                    refused.get_or_insert(err);
                }
            }
        }
        match refused {
            Some(err) if !shutdown.is_cancelled() => Err(err),
            _ => Ok(()),
        }
    }
}

impl Shared {
    /// Checks that `namenode` serves the namespace every other namenode
    /// serves; the first to answer sets it, attaching the volumes to its
    /// block pool.
    async fn agree(
        &self,
        namenode: &NamenodeAddress,
        info: &pb::NamespaceInfo,
    ) -> Result<Agreement, LinkError> {
        let adopted = self
            .namespace
            .get_or_try_init(|| self.adopt(namenode, info))
            .await;
        let adopted = match adopted {
            Ok(adopted) => adopted,
            // The volumes belong to another cluster than this namenode's:
            // with other namenodes to serve, this one is the odd one out.
            Err(LinkError::Storage(
                err @ (DatanodeError::IncompatibleCluster { .. } | DatanodeError::WrongPool { .. }),
            )) if self.ha => return Ok(Agreement::Mismatch(err.to_string())),
            Err(err) => return Err(err),
        };
        let same = adopted.info.cluster_id == info.cluster_id
            && adopted.info.block_pool_id == info.block_pool_id
            && adopted.info.namespace_id == info.namespace_id;
        if same {
            return Ok(Agreement::Agreed);
        }
        Ok(Agreement::Mismatch(format!(
            "namenode {} serves cluster {} block pool {} namespace {}, but namenode {} serves cluster {} block pool {} namespace {}",
            describe(namenode),
            info.cluster_id,
            info.block_pool_id,
            info.namespace_id,
            adopted.from,
            adopted.info.cluster_id,
            adopted.info.block_pool_id,
            adopted.info.namespace_id
        )))
    }

    async fn adopt(
        &self,
        namenode: &NamenodeAddress,
        info: &pb::NamespaceInfo,
    ) -> Result<Adopted, LinkError> {
        let suspects = {
            let ctx = Arc::clone(&self.ctx);
            let uuid = self.id.datanode_uuid.clone();
            let info = info.clone();
            tokio::task::spawn_blocking(move || {
                ctx.dataset.attach_pool(
                    &info.cluster_id,
                    &info.block_pool_id,
                    info.namespace_id,
                    &uuid,
                )
            })
            .await
            .map_err(|e| LinkError::Refused(format!("volume setup panicked: {e}")))??
        };
        // Every namenode's queue exists by now, so each hears of these.
        for suspect in suspects {
            self.ctx
                .reports
                .bad_replica(suspect.block, suspect.storage_id, suspect.reason);
        }
        Ok(Adopted {
            info: info.clone(),
            from: describe(namenode),
        })
    }
}
