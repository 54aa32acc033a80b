//! The one-shot calls to a datanode beside its streams: a replica's
//! visible length (HDFS's `ClientDatanodeProtocol.getReplicaVisibleLength`),
//! a copy of a replica being written to a datanode joining its pipeline
//! (`OP_TRANSFER_BLOCK`), and block recovery's two steps
//! (`InterDatanodeProtocol`). Each has a deadline; a failure is the peer's
//! words, prefixed with its address.

use std::time::Duration;

use tokio::time::timeout;

use rdfs_common::block_token::Token;
use rdfs_common::grpc::ChannelCache;
use rdfs_common::protocol::{DatanodeInfo, ExtendedBlock, token_to_proto};
use rdfs_proto as pb;
use rdfs_proto::data_transfer_client::DataTransferClient;
use rdfs_proto::inter_datanode_client::InterDatanodeClient;

/// A replica's state as block recovery reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryState {
    Finalized,
    /// Being written when recovery began.
    Rbw,
    /// Left unfinalized by a writer that is gone; its length is what its
    /// checksums vouch for.
    Rwr,
}

/// What `InitReplicaRecovery` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredReplica {
    pub state: RecoveryState,
    pub generation_stamp: u64,
    pub num_bytes: u64,
}

pub fn recovery_state_to_pb(state: RecoveryState) -> pb::RecoveryReplicaState {
    match state {
        RecoveryState::Finalized => pb::RecoveryReplicaState::Finalized,
        RecoveryState::Rbw => pb::RecoveryReplicaState::Rbw,
        RecoveryState::Rwr => pb::RecoveryReplicaState::Rwr,
    }
}

fn recovery_state_from_pb(state: i32) -> RecoveryState {
    match pb::RecoveryReplicaState::try_from(state) {
        Ok(pb::RecoveryReplicaState::Finalized) => RecoveryState::Finalized,
        Ok(pb::RecoveryReplicaState::Rbw) => RecoveryState::Rbw,
        _ => RecoveryState::Rwr,
    }
}

/// How one datanode answered a call about a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    Ok(T),
    /// It holds no replica of the block.
    NotFound,
    Failed(String),
}

async fn call<T, F>(addr: &str, wait: Duration, call: F) -> Answer<T>
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match timeout(wait, call).await {
        Ok(Ok(response)) => Answer::Ok(response.into_inner()),
        Ok(Err(status)) if status.code() == tonic::Code::NotFound => Answer::NotFound,
        Ok(Err(status)) => Answer::Failed(format!("{addr}: {}", status.message())),
        Err(_) => Answer::Failed(format!("{addr} did not answer within {wait:?}")),
    }
}

/// The bytes of `block` readers may see on the datanode at `addr`.
pub async fn replica_visible_length(
    channels: &ChannelCache,
    addr: &str,
    block: &ExtendedBlock,
    token: &Token,
    wait: Duration,
) -> Answer<u64> {
    let channel = match channels.get(addr) {
        Ok(channel) => channel,
        Err(e) => return Answer::Failed(format!("bad address {addr}: {e}")),
    };
    let request = pb::GetReplicaVisibleLengthRequest {
        block: Some(block.into()),
        block_token: token_to_proto(token),
    };
    match call(
        addr,
        wait,
        DataTransferClient::new(channel).get_replica_visible_length(request),
    )
    .await
    {
        Answer::Ok(response) => Answer::Ok(response.length),
        Answer::NotFound => Answer::NotFound,
        Answer::Failed(why) => Answer::Failed(why),
    }
}

/// A copy of the first `block.num_bytes` of a replica being written to a
/// datanode joining its pipeline.
pub struct ReplicaCopy<'a> {
    pub block: &'a ExtendedBlock,
    /// COPY access to the block.
    pub token: &'a Token,
    pub target: &'a DatanodeInfo,
    pub target_storage_id: &'a str,
    pub client_name: &'a str,
}

/// Has the datanode at `addr` make `copy`; returns once the target holds
/// the bytes.
pub async fn transfer_replica(
    channels: &ChannelCache,
    addr: &str,
    copy: ReplicaCopy<'_>,
    wait: Duration,
) -> Result<(), String> {
    let channel = channels
        .get(addr)
        .map_err(|e| format!("bad address {addr}: {e}"))?;
    let request = pb::TransferBlockRequest {
        block: Some(copy.block.into()),
        targets: vec![copy.target.into()],
        target_storage_ids: vec![copy.target_storage_id.to_string()],
        client_name: copy.client_name.to_string(),
        block_token: token_to_proto(copy.token),
    };
    match call(
        addr,
        wait,
        DataTransferClient::new(channel).transfer_block(request),
    )
    .await
    {
        Answer::Ok(_) => Ok(()),
        Answer::NotFound => Err(format!("{addr} holds no replica of {}", copy.block)),
        Answer::Failed(why) => Err(why),
    }
}

/// Puts the replica on the datanode at `addr` under recovery.
pub async fn init_replica_recovery(
    channels: &ChannelCache,
    addr: &str,
    block: &ExtendedBlock,
    recovery_id: u64,
    token: &Token,
    wait: Duration,
) -> Answer<RecoveredReplica> {
    let channel = match channels.get(addr) {
        Ok(channel) => channel,
        Err(e) => return Answer::Failed(format!("bad address {addr}: {e}")),
    };
    let request = pb::InitReplicaRecoveryRequest {
        block: Some(block.into()),
        recovery_id,
        block_token: token_to_proto(token),
    };
    match call(
        addr,
        wait,
        InterDatanodeClient::new(channel).init_replica_recovery(request),
    )
    .await
    {
        Answer::Ok(reply) => Answer::Ok(RecoveredReplica {
            state: recovery_state_from_pb(reply.state),
            generation_stamp: reply.generation_stamp,
            num_bytes: reply.num_bytes,
        }),
        Answer::NotFound => Answer::NotFound,
        Answer::Failed(why) => Answer::Failed(why),
    }
}

/// Has the datanode at `addr` settle its replica under recovery at
/// `new_length` and finalize it; answers the replica's storage id.
pub async fn update_replica_under_recovery(
    channels: &ChannelCache,
    addr: &str,
    block: &ExtendedBlock,
    recovery_id: u64,
    new_length: u64,
    token: &Token,
    wait: Duration,
) -> Answer<String> {
    let channel = match channels.get(addr) {
        Ok(channel) => channel,
        Err(e) => return Answer::Failed(format!("bad address {addr}: {e}")),
    };
    let request = pb::UpdateReplicaUnderRecoveryRequest {
        block: Some(block.into()),
        recovery_id,
        new_length,
        block_token: token_to_proto(token),
    };
    match call(
        addr,
        wait,
        InterDatanodeClient::new(channel).update_replica_under_recovery(request),
    )
    .await
    {
        Answer::Ok(reply) => Answer::Ok(reply.storage_id),
        Answer::NotFound => Answer::NotFound,
        Answer::Failed(why) => Answer::Failed(why),
    }
}
