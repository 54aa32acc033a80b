//! `HaService` over gRPC: a namenode's role for `rdfs haadmin`, operator
//! transitions, and fsimages shipped between namenodes.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

use rdfs_common::ExceptionKind;
use rdfs_proto as pb;
use rdfs_proto::ha_service_server::HaService;

use super::NamenodeHandle;
use super::node::{Command, HaNode};
use crate::identity::Identities;
use crate::rpc::origin;

/// Largest image a namenode accepts from a peer.
const MAX_IMAGE: u64 = 64 * 1024 * 1024 * 1024;

pub struct HaServiceImpl {
    handle: Arc<NamenodeHandle>,
    /// `None` for a namenode without HA.
    node: Option<Arc<HaNode>>,
    identities: Arc<Identities>,
}

impl HaServiceImpl {
    pub fn new(
        handle: Arc<NamenodeHandle>,
        node: Option<Arc<HaNode>>,
        identities: Arc<Identities>,
    ) -> Self {
        Self {
            handle,
            node,
            identities,
        }
    }

    /// Transitions and image transfers are the superuser's, as HDFS's
    /// `checkSuperuserPrivilege` makes them (the other namenode, running as
    /// the same user, is one); the service state is anyone's to read.
    fn require_superuser<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let caller = self.identities.caller(origin(request))?;
        caller.require_superuser().map_err(|err| {
            tracing::warn!(user = %caller.user, address = %caller.machine, "refused an HA call: {err}");
            Status::from(err)
        })
    }

    fn node(&self) -> Result<&Arc<HaNode>, Status> {
        self.node.as_ref().ok_or_else(|| {
            ExceptionKind::IllegalArgument
                .status("this namenode is not part of an HA nameservice (ha.namenodes is empty)")
        })
    }
}

type ImageStream = Pin<Box<dyn Stream<Item = Result<pb::ImageChunk, Status>> + Send>>;

#[tonic::async_trait]
impl HaService for HaServiceImpl {
    async fn get_service_status(
        &self,
        _request: Request<pb::GetServiceStatusRequest>,
    ) -> Result<Response<pb::GetServiceStatusResponse>, Status> {
        let status = self.handle.status();
        let namesystem = self.handle.get();
        let info = namesystem.namespace_info();
        let serving = self.handle.is_serving_active();
        let state = match status.role {
            super::Role::Active if !serving => pb::HaState::Standby,
            role => role.to_pb(),
        };
        let (ready, reason) = match status.role {
            super::Role::Standby if namesystem.failed().is_cancelled() => {
                (false, "its namespace failed to load".to_string())
            }
            super::Role::Standby | super::Role::Active => (true, String::new()),
            other => (false, format!("it is {}", other.name())),
        };
        Ok(Response::new(pb::GetServiceStatusResponse {
            state: state as i32,
            namenode_id: self.handle.id().to_string(),
            epoch: status.epoch,
            last_txid: namesystem.last_txid(),
            ready_to_become_active: ready,
            not_ready_reason: reason,
            lease_remaining_ms: status.lease_until.map_or(0, |t| {
                t.saturating_duration_since(self.handle.now()).as_millis() as u64
            }),
            cluster_id: info.cluster_id.clone(),
            block_pool_id: info.block_pool_id.clone(),
            namespace_id: info.namespace_id,
            in_safe_mode: namesystem.safe_mode_tip().is_some(),
        }))
    }

    async fn transition_to_active(
        &self,
        request: Request<pb::TransitionToActiveRequest>,
    ) -> Result<Response<pb::TransitionToActiveResponse>, Status> {
        self.require_superuser(&request)?;
        let node = self.node()?;
        let (reply, answer) = oneshot::channel();
        node.command_sender()
            .send(Command::ToActive {
                take_over: request.get_ref().take_over,
                reply,
            })
            .await
            .map_err(|_| ExceptionKind::Io.status("the namenode is shutting down"))?;
        let epoch = answer
            .await
            .map_err(|_| ExceptionKind::Io.status("the namenode is shutting down"))?
            .map_err(|why| {
                ExceptionKind::Io.status(format!(
                    "namenode {} cannot become active: {why}",
                    self.handle.id()
                ))
            })?;
        Ok(Response::new(pb::TransitionToActiveResponse { epoch }))
    }

    async fn transition_to_standby(
        &self,
        request: Request<pb::TransitionToStandbyRequest>,
    ) -> Result<Response<pb::TransitionToStandbyResponse>, Status> {
        self.require_superuser(&request)?;
        let node = self.node()?;
        let (reply, answer) = oneshot::channel();
        node.command_sender()
            .send(Command::ToStandby { reply })
            .await
            .map_err(|_| ExceptionKind::Io.status("the namenode is shutting down"))?;
        answer
            .await
            .map_err(|_| ExceptionKind::Io.status("the namenode is shutting down"))?
            .map_err(|why| ExceptionKind::Io.status(why))?;
        Ok(Response::new(pb::TransitionToStandbyResponse {}))
    }

    async fn upload_image(
        &self,
        request: Request<Streaming<pb::ImageChunk>>,
    ) -> Result<Response<pb::UploadImageResponse>, Status> {
        self.require_superuser(&request)?;
        let node = self.node()?;
        let mut stream = request.into_inner();
        let mut image = Vec::new();
        let mut txid = None;
        let mut total = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if txid.is_none() {
                if chunk.cluster_id != node.info().cluster_id {
                    return Err(ExceptionKind::IncorrectVersion.status(format!(
                        "the image is of cluster {}, this namenode belongs to cluster {}",
                        chunk.cluster_id,
                        node.info().cluster_id
                    )));
                }
                if chunk.total_len > MAX_IMAGE {
                    return Err(ExceptionKind::IllegalArgument.status(format!(
                        "an image of {} bytes is too large",
                        chunk.total_len
                    )));
                }
                txid = Some(chunk.txid);
                total = chunk.total_len;
                image.reserve(total as usize);
            }
            image.extend_from_slice(&chunk.data);
            if image.len() as u64 > total {
                return Err(ExceptionKind::IllegalArgument.status(format!(
                    "the image is longer than the {total} bytes announced"
                )));
            }
        }
        let Some(txid) = txid else {
            return Err(ExceptionKind::IllegalArgument.status("no image was sent"));
        };
        if image.len() as u64 != total {
            return Err(ExceptionKind::IllegalArgument.status(format!(
                "the image stream ended after {} of {total} bytes",
                image.len()
            )));
        }
        node.save_image(txid, image)
            .await
            .map_err(|why| ExceptionKind::Io.status(why))?;
        tracing::info!(txid, bytes = total, "received a checkpoint from a standby");
        Ok(Response::new(pb::UploadImageResponse {}))
    }

    type DownloadImageStream = ImageStream;

    async fn download_image(
        &self,
        request: Request<pb::DownloadImageRequest>,
    ) -> Result<Response<Self::DownloadImageStream>, Status> {
        self.require_superuser(&request)?;
        let node = Arc::clone(self.node()?);
        let (txid, image) = tokio::task::spawn_blocking(move || node.newest_image())
            .await
            .map_err(|e| ExceptionKind::Io.status(e.to_string()))?
            .map_err(|why| ExceptionKind::Io.status(why))?;
        let cluster_id = self.handle.get().namespace_info().cluster_id.clone();
        let total = image.len() as u64;
        let chunks: Vec<Result<pb::ImageChunk, Status>> = image
            .chunks(1024 * 1024)
            .enumerate()
            .map(|(i, chunk)| {
                Ok(pb::ImageChunk {
                    txid,
                    cluster_id: if i == 0 {
                        cluster_id.clone()
                    } else {
                        String::new()
                    },
                    data: chunk.to_vec(),
                    total_len: total,
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
}
