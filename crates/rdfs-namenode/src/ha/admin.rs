//! Setting up HA storage: formatting the shared journal with a new
//! namespace, copying a running namenode's image to a new standby
//! (`-bootstrapStandby`), and moving an existing namenode's edits onto the
//! journal (`-initializeSharedEdits`).

use std::time::Duration;

use futures::StreamExt;

use rdfs_common::config::{Config, QuorumJournalUri};
use rdfs_common::ids::NAMENODE_LAYOUT_VERSION;
use rdfs_common::time::now_ms;
use rdfs_proto as pb;
use rdfs_qjournal::QuorumClient;

use super::node::stamp_of;
use crate::edit_log::TxId;
use crate::edit_log::segment::encode_record;
use crate::namesystem::NamesystemConfig;
use crate::server::ServerError;
use crate::storage::{self, NameStorage, NamespaceInfo};

fn quorum(config: &Config) -> Result<QuorumClient, ServerError> {
    let uri = QuorumJournalUri::parse(&config.ha.shared_edits_dir)?;
    Ok(QuorumClient::new(
        &uri,
        Duration::from_millis(config.ha.journal_timeout_ms.max(5_000)),
    ))
}

/// Formats the shared journal for `info` (part of `namenode -format` in an
/// HA nameservice). Every journalnode must be reachable, as in HDFS.
pub async fn format_journal(
    config: &Config,
    info: &NamespaceInfo,
    force: bool,
) -> Result<(), ServerError> {
    let qjm = quorum(config)?;
    qjm.format(&stamp_of(info), force).await.map_err(|err| {
        ServerError::Ha(format!(
            "formatting the journal on {}: {err}{}",
            qjm.journalnodes().join(";"),
            if force {
                ""
            } else {
                " (pass -force to format a journal that holds data)"
            }
        ))
    })?;
    tracing::info!(journalnodes = ?qjm.journalnodes(), "formatted the shared journal");
    Ok(())
}

/// What `-bootstrapStandby` copied.
#[derive(Debug)]
pub struct Bootstrapped {
    pub from: String,
    pub txid: TxId,
    pub info: NamespaceInfo,
}

/// Formats this namenode's name dirs with the newest image of another
/// namenode of the nameservice, after checking that the journal holds the
/// edits that follow it.
pub async fn bootstrap_standby(config: &Config, force: bool) -> Result<Bootstrapped, ServerError> {
    let me = config.this_ha_namenode()?;
    let mut failures = Vec::new();
    for peer in config
        .ha_namenodes()?
        .into_iter()
        .filter(|nn| nn.id != me.id)
    {
        match fetch_image(&peer.address).await {
            Ok((status, txid, image)) => {
                let info = NamespaceInfo {
                    cluster_id: status.cluster_id.clone(),
                    block_pool_id: status.block_pool_id.clone(),
                    namespace_id: status.namespace_id,
                    layout_version: NAMENODE_LAYOUT_VERSION,
                    ctime: now_ms(),
                };
                let qjm = quorum(config)?;
                match qjm.formatted_stamp().await {
                    Ok(Some(stamp)) if stamp == stamp_of(&info) => {}
                    Ok(Some(stamp)) => {
                        return Err(ServerError::Ha(format!(
                            "namenode {} belongs to cluster {} but the journal is formatted for cluster {}",
                            peer.id, info.cluster_id, stamp.cluster_id
                        )));
                    }
                    Ok(None) => {
                        return Err(ServerError::Ha(
                            "the shared journal is not formatted; format the first namenode with `rdfs namenode -format` (or `-initializeSharedEdits`)".into(),
                        ));
                    }
                    Err(err) => {
                        return Err(ServerError::Ha(format!(
                            "cannot read the shared journal: {err}"
                        )));
                    }
                }
                let check = crate::fsimage::decode(
                    std::path::Path::new(&crate::fsimage::file_name(txid)),
                    &image,
                    &info,
                    &NamesystemConfig::from_config(config),
                )
                .map_err(|e| {
                    ServerError::Ha(format!("the image from {} is damaged: {e}", peer.id))
                })?;
                if check.txid != txid {
                    return Err(ServerError::Ha(format!(
                        "the image from {} claims txid {} but was sent as {txid}",
                        peer.id, check.txid
                    )));
                }
                storage::format_with_image(&config.namenode.name_dirs, force, &info, txid, &image)?;
                return Ok(Bootstrapped {
                    from: peer.id,
                    txid,
                    info,
                });
            }
            Err(err) => failures.push(format!("{} ({}): {err}", peer.id, peer.address)),
        }
    }
    Err(ServerError::Ha(format!(
        "no other namenode could provide an image: {}",
        failures.join("; ")
    )))
}

async fn fetch_image(
    address: &str,
) -> Result<(pb::GetServiceStatusResponse, TxId, Vec<u8>), String> {
    let channel = rdfs_common::grpc::channel(address, Duration::from_secs(10))
        .map_err(|e| format!("bad address: {e}"))?;
    let mut client = pb::ha_service_client::HaServiceClient::new(channel)
        .max_decoding_message_size(rdfs_common::grpc::MAX_MESSAGE_SIZE);
    let status = client
        .get_service_status(pb::GetServiceStatusRequest {})
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let mut stream = client
        .download_image(pb::DownloadImageRequest {})
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let mut image = Vec::new();
    let mut txid = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|s| s.message().to_string())?;
        if txid.is_none() {
            if chunk.cluster_id != status.cluster_id {
                return Err("the image and the namenode's status disagree on the cluster".into());
            }
            txid = Some(chunk.txid);
        }
        image.extend_from_slice(&chunk.data);
    }
    let txid = txid.ok_or("the namenode sent no image")?;
    Ok((status, txid, image))
}

/// Formats the shared journal with this (formatted, stopped) namenode's
/// namespace and copies the edits after its newest image onto it, so it
/// can restart as the first namenode of an HA nameservice. Returns the
/// last txid copied.
pub async fn initialize_shared_edits(config: &Config, force: bool) -> Result<TxId, ServerError> {
    let mut name_storage = NameStorage::open(&config.namenode.name_dirs)?;
    let ns_config = NamesystemConfig::from_config(config);
    let loaded = name_storage.load(&ns_config)?;
    let records = loaded.edits;
    let info = name_storage.info.clone();
    drop(name_storage);
    format_journal(config, &info, force).await?;
    let qjm = quorum(config)?;
    let lease = Duration::from_millis(config.ha.lease_timeout_ms);
    let writer = qjm
        .new_epoch(&stamp_of(&info), "initializeSharedEdits", lease, true)
        .await
        .map_err(|e| ServerError::Ha(format!("taking an epoch on the new journal: {e}")))?;
    writer
        .recover()
        .await
        .map_err(|e| ServerError::Ha(format!("recovering the new journal: {e}")))?;
    let Some(first) = records.first().map(|r| r.txid) else {
        return Ok(loaded.image_txid);
    };
    let last = loaded.last_txid;
    writer
        .start_segment(first)
        .await
        .map_err(|e| ServerError::Ha(e.to_string()))?;
    for batch in records.chunks(10_000) {
        let mut framed = Vec::new();
        for record in batch {
            encode_record(record, &mut framed);
        }
        writer
            .journal(batch[0].txid, batch.len() as u64, framed.into())
            .await
            .map_err(|e| ServerError::Ha(e.to_string()))?;
    }
    writer
        .finalize_segment(first, last)
        .await
        .map_err(|e| ServerError::Ha(e.to_string()))?;
    Ok(last)
}
