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
/// edits that follow it. `user` is who this namenode runs as: the image is
/// the superuser's to download.
pub async fn bootstrap_standby(
    config: &Config,
    force: bool,
    user: &str,
) -> Result<Bootstrapped, ServerError> {
    let me = config.this_ha_namenode()?;
    let mut failures = Vec::new();
    for peer in config
        .ha_namenodes()?
        .into_iter()
        .filter(|nn| nn.id != me.id)
    {
        match fetch_image(&peer.address, user).await {
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
                check_edits_follow(&qjm, txid, &config.ha.shared_edits_dir)
                    .await
                    .map_err(ServerError::Ha)?;
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

/// Checks that the journal holds every committed edit after `image_txid`, so
/// a standby starting from that image can catch up: a journal purged past
/// it (the image is older than every namenode's retained ones) would leave
/// it behind for good, unable ever to take over.
pub(crate) async fn check_edits_follow(
    qjm: &QuorumClient,
    image_txid: TxId,
    shared_edits_dir: &str,
) -> Result<(), String> {
    let committed = qjm
        .last_committed_txid()
        .await
        .map_err(|err| format!("cannot read the shared journal: {err}"))?;
    if committed <= image_txid {
        return Ok(());
    }
    let unavailable = |why: String| {
        format!(
            "Unable to read transaction ids {}-{committed} from the configured shared edits storage \
             {shared_edits_dir}: {why}. The image copied ends at txid {image_txid}. Save a newer \
             image on the active namenode (`rdfs dfsadmin -safemode enter`, \
             `rdfs dfsadmin -saveNamespace`, `rdfs dfsadmin -safemode leave`) and bootstrap again.",
            image_txid + 1
        )
    };
    // Nothing readable yet (journalnodes that have not heard the newest
    // commit) is no gap: the standby reads it once they have.
    match qjm.read_committed(image_txid + 1, 1).await {
        Ok(_) => Ok(()),
        Err(err) => Err(unavailable(err.to_string())),
    }
}

async fn fetch_image(
    address: &str,
    user: &str,
) -> Result<(pb::GetServiceStatusResponse, TxId, Vec<u8>), String> {
    let channel = rdfs_common::grpc::channel(address, Duration::from_secs(10))
        .map_err(|e| format!("bad address: {e}"))?;
    let as_user = rdfs_common::grpc::UserInterceptor::new(user, None)?;
    let mut client = pb::ha_service_client::HaServiceClient::with_interceptor(channel, as_user)
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

#[cfg(test)]
mod tests {
    use super::*;
    use rdfs_qjournal::Journalnode;

    /// Three journalnodes on 127.0.0.1:0 serving until the test ends.
    async fn journalnodes(tmp: &std::path::Path) -> QuorumJournalUri {
        let mut names = Vec::new();
        for i in 0..3 {
            let mut config = Config::default();
            config.journalnode.edits_dir = tmp.join(format!("jn{i}"));
            config.journalnode.rpc_address = "127.0.0.1:0".into();
            let jn = Journalnode::start(&config).await.expect("journalnode");
            names.push(jn.address().to_string());
            tokio::spawn(jn.serve(std::future::pending()));
        }
        QuorumJournalUri {
            journalnodes: names,
            journal_id: "ns1".into(),
        }
    }

    fn op(txid: TxId) -> crate::edit_log::Op {
        crate::edit_log::Op::SetReplication(rdfs_proto::editlog::SetReplication {
            inode_id: 16385 + txid,
            replication: 2,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bootstrapping_refuses_an_image_the_journal_has_purged_past() {
        let tmp = tempfile::tempdir().expect("tmp");
        let uri = journalnodes(tmp.path()).await;
        let qjm = QuorumClient::new(&uri, Duration::from_secs(5));
        let info = NamespaceInfo {
            cluster_id: "CID-b".into(),
            block_pool_id: "BP-b".into(),
            namespace_id: 5,
            layout_version: NAMENODE_LAYOUT_VERSION,
            ctime: 0,
        };
        qjm.format(&stamp_of(&info), false).await.expect("format");
        let writer = qjm
            .new_epoch(&stamp_of(&info), "nn1", Duration::from_secs(60), true)
            .await
            .expect("epoch");
        writer.recover().await.expect("recover");
        for (first, last) in [(1, 5), (6, 10)] {
            writer.start_segment(first).await.expect("segment");
            let mut framed = Vec::new();
            for txid in first..=last {
                encode_record(&crate::edit_log::record(txid, op(txid), None), &mut framed);
            }
            writer
                .journal(first, last - first + 1, framed.into())
                .await
                .expect("journal");
            writer
                .finalize_segment(first, last)
                .await
                .expect("finalize");
        }
        writer.purge_older_than(6).await.expect("purge");
        let err = check_edits_follow(&qjm, 3, "qjournal://test/ns1")
            .await
            .expect_err("edits 4-5 are gone");
        assert!(
            err.starts_with(
                "Unable to read transaction ids 4-10 from the configured shared edits storage"
            ),
            "{err}"
        );
        check_edits_follow(&qjm, 5, "qjournal://test/ns1")
            .await
            .expect("edits 6-10 follow image 5");
        check_edits_follow(&qjm, 10, "qjournal://test/ns1")
            .await
            .expect("nothing follows image 10");
    }
}
