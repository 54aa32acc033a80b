//! gRPC adapters over the [`crate::namesystem::Namesystem`]: they convert
//! wire types and errors and hold no logic of their own.

pub mod client_service;
pub mod datanode_service;

use rdfs_common::grpc::{
    CALL_ID_METADATA_KEY, CLIENT_ID_METADATA_KEY, REAL_USER_METADATA_KEY, USER_METADATA_KEY,
};

use crate::edit_log::RpcId;
use crate::identity::Origin;

/// Who sent a request, as the client protocol takes it: the user in its
/// metadata (HDFS's default web user, `dr.who`, when absent), the real user
/// when a proxy sent it for them, the peer's address and the call's ids.
pub(crate) fn origin<T>(request: &tonic::Request<T>) -> Origin {
    let text = |key: &str| {
        request
            .metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .filter(|u| !u.is_empty())
            .map(str::to_string)
    };
    let peer = rdfs_common::tls::peer(request);
    let address = peer
        .and_then(|peer| peer.remote_addr)
        .map_or_else(|| "unknown".to_string(), |addr| addr.ip().to_string());
    Origin {
        user: text(USER_METADATA_KEY).unwrap_or_else(|| "dr.who".to_string()),
        real_user: text(REAL_USER_METADATA_KEY),
        address,
        rpc: rpc_id(request.metadata()),
        certified: peer.and_then(|peer| peer.identity.clone()),
    }
}

/// The call's ids (client id, call id), when the client sent them; a
/// malformed pair is ignored rather than refused: the call then simply runs
/// without the retry cache.
fn rpc_id(metadata: &tonic::metadata::MetadataMap) -> Option<RpcId> {
    let client = metadata.get(CLIENT_ID_METADATA_KEY)?.to_str().ok()?;
    let call_id = metadata
        .get(CALL_ID_METADATA_KEY)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(RpcId {
        client_id: rdfs_common::grpc::parse_client_id(client)?,
        call_id,
    })
}

pub(crate) fn required<T>(field: Option<T>, name: &str) -> Result<T, tonic::Status> {
    field.ok_or_else(|| {
        rdfs_common::ExceptionKind::IllegalArgument.status(format!("request has no {name}"))
    })
}

/// Permission bits from the wire, rejecting values outside 0..=0o7777.
pub(crate) fn mode(value: u32) -> Result<u16, tonic::Status> {
    if value > 0o7777 {
        return Err(rdfs_common::ExceptionKind::IllegalArgument
            .status(format!("permission {value:o} is out of range")));
    }
    Ok(value as u16)
}
