//! The `InterDatanode` gRPC service: the calls a block recovery's primary
//! makes to every holder of the block (HDFS's InterDatanodeProtocol). A thin
//! adapter over [`crate::dataset::Dataset`].

use std::sync::Arc;

use tonic::{Request, Response, Status};

use rdfs_common::block_token::AccessMode;
use rdfs_common::protocol::{ExtendedBlock, token_from_proto};
use rdfs_proto as pb;
use rdfs_proto::inter_datanode_server::InterDatanode;

use crate::block_recovery::recovery_state;
use crate::context::DatanodeContext;
use crate::error::DatanodeError;
use rdfs_transfer::calls::recovery_state_to_pb;

pub struct RecoveryService {
    ctx: Arc<DatanodeContext>,
}

impl RecoveryService {
    pub fn new(ctx: Arc<DatanodeContext>) -> Self {
        Self { ctx }
    }
}

/// NOT_FOUND without a replica; FAILED_PRECONDITION for a replica too old
/// or held by another recovery; otherwise as the error's kind says.
fn status(err: DatanodeError) -> Status {
    match err {
        DatanodeError::ReplicaNotFound(_) => Status::not_found(err.to_string()),
        DatanodeError::StaleGenerationStamp(_) | DatanodeError::RecoveryInProgress(_) => {
            Status::failed_precondition(err.to_string())
        }
        err => err.into(),
    }
}

fn block_of(block: Option<pb::ExtendedBlock>) -> Result<ExtendedBlock, Status> {
    block
        .map(ExtendedBlock::from)
        .ok_or_else(|| Status::invalid_argument("request without a block"))
}

#[tonic::async_trait]
impl InterDatanode for RecoveryService {
    async fn init_replica_recovery(
        &self,
        request: Request<pb::InitReplicaRecoveryRequest>,
    ) -> Result<Response<pb::InitReplicaRecoveryResponse>, Status> {
        let req = request.into_inner();
        let block = block_of(req.block)?;
        self.ctx.dataset.check_pool(&block.pool_id)?;
        self.ctx.block_access.check(
            &token_from_proto(req.block_token.clone()),
            &block,
            AccessMode::Write,
            "INIT_REPLICA_RECOVERY",
        )?;
        let ctx = Arc::clone(&self.ctx);
        let block_id = block.block_id;
        let info = tokio::task::spawn_blocking(move || {
            ctx.dataset.init_replica_recovery(&block, req.recovery_id)
        })
        .await
        .map_err(|e| Status::internal(format!("recovery panicked: {e}")))?
        .map_err(status)?;
        Ok(Response::new(pb::InitReplicaRecoveryResponse {
            block_id,
            generation_stamp: info.generation_stamp,
            num_bytes: info.num_bytes,
            state: recovery_state_to_pb(recovery_state(info.state)) as i32,
        }))
    }

    async fn update_replica_under_recovery(
        &self,
        request: Request<pb::UpdateReplicaUnderRecoveryRequest>,
    ) -> Result<Response<pb::UpdateReplicaUnderRecoveryResponse>, Status> {
        let req = request.into_inner();
        let block = block_of(req.block)?;
        self.ctx.dataset.check_pool(&block.pool_id)?;
        self.ctx.block_access.check(
            &token_from_proto(req.block_token.clone()),
            &block,
            AccessMode::Write,
            "UPDATE_REPLICA_UNDER_RECOVERY",
        )?;
        let ctx = Arc::clone(&self.ctx);
        let storage_id = tokio::task::spawn_blocking(move || {
            ctx.dataset
                .update_replica_under_recovery(&block, req.recovery_id, req.new_length)
        })
        .await
        .map_err(|e| Status::internal(format!("recovery panicked: {e}")))?
        .map_err(status)?;
        Ok(Response::new(pb::UpdateReplicaUnderRecoveryResponse {
            storage_id,
        }))
    }
}
