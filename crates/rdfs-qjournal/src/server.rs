//! The journalnode daemon: locks its edits dir, opens the journals in it,
//! and serves [`QJournalProtocol`] until told to stop. Every call runs its
//! disk work on the blocking pool; a journal's calls are serialized by that
//! journal's lock, so a slow fsync in one journal never holds up another.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use rdfs_common::config::Config;
use rdfs_common::durable;
use rdfs_common::grpc::MAX_MESSAGE_SIZE;
use rdfs_common::tls::Role;
use rdfs_proto::q_journal_protocol_server::{QJournalProtocol, QJournalProtocolServer};
use rdfs_proto::{
    AcceptRecoveryRequest, AcceptRecoveryResponse, EditsChunk, FetchSegmentRequest,
    FinalizeLogSegmentRequest, FinalizeLogSegmentResponse, FormatJournalRequest,
    FormatJournalResponse, GetEditLogManifestRequest, GetEditLogManifestResponse,
    GetJournalStateRequest, GetJournalStateResponse, JournalHeartbeatRequest,
    JournalHeartbeatResponse, JournalRequest, JournalRequestInfo, JournalResponse, NewEpochRequest,
    NewEpochResponse, PrepareRecoveryRequest, PrepareRecoveryResponse, PurgeLogsRequest,
    PurgeLogsResponse, ReadEditsRequest, StartLogSegmentRequest, StartLogSegmentResponse,
};

use crate::journal::{self, Journal, JournalError, Journals, ReadPlan};
use crate::stamp::NamespaceStamp;

/// The file in the edits dir that names the address the journalnode bound
/// (useful with port 0).
pub const ADDRESS_FILE: &str = "journalnode.addresses";

/// Edits travel in messages of about this size: far below the message
/// limit, small enough to keep memory flat on both ends.
pub(crate) const CHUNK_BYTES: usize = 1024 * 1024;

/// Recovery edits a journalnode takes in one accept; a segment is tens of
/// MiB, so this only stops a runaway writer.
const MAX_ACCEPT_BYTES: usize = 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JournalnodeError {
    #[error("cannot create the journalnode edits dir {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock the journalnode edits dir {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the journalnode edits dir {0} is in use by another journalnode (it holds the lock on {lock})",
        lock = durable::LOCK_FILE
    )]
    InUse(PathBuf),
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
    #[error("cannot open the journals in {path}: {source}")]
    Journals { path: PathBuf, source: JournalError },
    #[error("journalnode RPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

pub struct Journalnode {
    journals: Arc<Journals>,
    listener: tokio::net::TcpListener,
    address: SocketAddr,
    edits_dir: PathBuf,
    /// Held while the daemon lives; the kernel drops it if the process dies.
    _lock: std::fs::File,
}

impl Journalnode {
    pub async fn start(config: &Config) -> Result<Self, JournalnodeError> {
        let edits_dir = config.journalnode.edits_dir.clone();
        std::fs::create_dir_all(&edits_dir).map_err(|source| JournalnodeError::CreateDir {
            path: edits_dir.clone(),
            source,
        })?;
        let lock = durable::lock_dir(&edits_dir)
            .map_err(|source| JournalnodeError::Lock {
                path: edits_dir.clone(),
                source,
            })?
            .ok_or_else(|| JournalnodeError::InUse(edits_dir.clone()))?;
        let rpc_address = config.journalnode.rpc_address.clone();
        let listener = tokio::net::TcpListener::bind(&rpc_address)
            .await
            .map_err(|source| JournalnodeError::Bind {
                addr: rpc_address.clone(),
                source,
            })?;
        let address = listener
            .local_addr()
            .map_err(|source| JournalnodeError::Bind {
                addr: rpc_address.clone(),
                source,
            })?;
        let journals = Arc::new(Journals::new(edits_dir.clone()));
        let opening = Arc::clone(&journals);
        let opened = tokio::task::spawn_blocking(move || opening.open_existing())
            .await
            .map_err(|join| JournalnodeError::Journals {
                path: edits_dir.clone(),
                source: JournalError::Io {
                    action: "open journals in",
                    path: edits_dir.clone(),
                    source: std::io::Error::other(join.to_string()),
                },
            })?
            .map_err(|source| JournalnodeError::Journals {
                path: edits_dir.clone(),
                source,
            })?;
        let address_file = edits_dir.join(ADDRESS_FILE);
        durable::write_file(&address_file, format!("rpc={address}\n").as_bytes()).map_err(
            |source| JournalnodeError::AddressFile {
                path: address_file.clone(),
                source,
            },
        )?;
        tracing::info!(rpc = %address, edits_dir = %edits_dir.display(), journals = opened,
            "journalnode started");
        Ok(Self {
            journals,
            listener,
            address,
            edits_dir,
            _lock: lock,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` resolves, then lets calls in flight finish.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), JournalnodeError> {
        let Self {
            journals,
            listener,
            address,
            edits_dir,
            _lock,
        } = self;
        let service = JournalService {
            journals,
            node: address.to_string(),
        };
        tracing::info!(rpc = %address, "journalnode serving");
        rdfs_common::grpc::server()
            .add_service(tonic::service::interceptor::InterceptedService::new(
                QJournalProtocolServer::new(service)
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
                // Over TLS only namenodes write the journal.
                rdfs_common::tls::require_role(
                    "the journal protocol",
                    &[Role::Namenode, Role::Journalnode],
                ),
            ))
            .serve_with_incoming_shutdown(rdfs_common::grpc::incoming(listener), shutdown)
            .await?;
        tracing::info!(rpc = %address, edits_dir = %edits_dir.display(), "journalnode stopped");
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn journal_for_test(&self, id: &str) -> Arc<Journal> {
        self.journals.get(id).expect("journal opens")
    }
}

struct JournalService {
    journals: Arc<Journals>,
    /// This journalnode's address, for logs.
    node: String,
}

fn info_of(info: Option<JournalRequestInfo>) -> Result<JournalRequestInfo, Status> {
    info.ok_or_else(|| Status::invalid_argument("the request carries no JournalRequestInfo"))
}

impl JournalService {
    /// Runs `f` on journal `id` on the blocking pool; a refusal becomes a
    /// status carrying its [`rdfs_proto::JournalFault`].
    async fn run<T: Send + 'static>(
        &self,
        id: String,
        call: &'static str,
        f: impl FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, Status> {
        let journals = Arc::clone(&self.journals);
        let journal_id = id.clone();
        let done = tokio::task::spawn_blocking(move || {
            let journal = journals.get(&journal_id)?;
            f(&journal)
        })
        .await;
        match done {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                match &err {
                    JournalError::Io { .. }
                    | JournalError::Damaged { .. }
                    | JournalError::Segment(_) => {
                        tracing::warn!(node = %self.node, journal = %id, call, error = %err, "journal call failed");
                    }
                    _ => {
                        tracing::debug!(node = %self.node, journal = %id, call, error = %err, "journal call refused");
                    }
                }
                Err(err.into_status())
            }
            Err(join) => {
                tracing::error!(node = %self.node, journal = %id, call, error = %join, "journal call panicked");
                Err(Status::internal(format!(
                    "journal {id}: {call} failed: {join}"
                )))
            }
        }
    }

    /// Streams the records of `plan` in chunks; the first message carries
    /// the oldest txid held.
    fn stream_plan(
        &self,
        id: String,
        plan: ReadPlan,
        max_records: u64,
    ) -> ReceiverStream<Result<EditsChunk, Status>> {
        let (tx, rx) = mpsc::channel(4);
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || {
            let read = journal::read_chunks(&plan, max_records, CHUNK_BYTES, |chunk| {
                tx.blocking_send(Ok(chunk)).is_ok()
            });
            if let Err(err) = read {
                tracing::warn!(node = %node, journal = %id, error = %err, "reading edits failed");
                let _ = tx.blocking_send(Err(JournalError::from(err).into_status()));
            }
        });
        ReceiverStream::new(rx)
    }
}

#[tonic::async_trait]
impl QJournalProtocol for JournalService {
    async fn get_journal_state(
        &self,
        request: Request<GetJournalStateRequest>,
    ) -> Result<Response<GetJournalStateResponse>, Status> {
        let id = request.into_inner().journal_id;
        let state = self
            .run(id, "getJournalState", |j| j.journal_state())
            .await?;
        Ok(Response::new(state))
    }

    async fn format_journal(
        &self,
        request: Request<FormatJournalRequest>,
    ) -> Result<Response<FormatJournalResponse>, Status> {
        let req = request.into_inner();
        let stamp = NamespaceStamp::from_proto(&req.stamp.unwrap_or_default());
        self.run(req.journal_id, "format", move |j| {
            j.format(&stamp, req.force)
        })
        .await?;
        Ok(Response::new(FormatJournalResponse {}))
    }

    async fn new_epoch(
        &self,
        request: Request<NewEpochRequest>,
    ) -> Result<Response<NewEpochResponse>, Status> {
        let req = request.into_inner();
        let stamp = NamespaceStamp::from_proto(&req.stamp.unwrap_or_default());
        let response = self
            .run(req.journal_id, "newEpoch", move |j| {
                j.new_epoch(
                    &stamp,
                    req.epoch,
                    &req.writer_id,
                    Duration::from_millis(req.lease_timeout_ms),
                    req.take_over_held_lease,
                )
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn journal_heartbeat(
        &self,
        request: Request<JournalHeartbeatRequest>,
    ) -> Result<Response<JournalHeartbeatResponse>, Status> {
        let info = info_of(request.into_inner().info)?;
        self.run(info.journal_id.clone(), "heartbeat", move |j| {
            j.heartbeat(&info)
        })
        .await?;
        Ok(Response::new(JournalHeartbeatResponse {}))
    }

    async fn start_log_segment(
        &self,
        request: Request<StartLogSegmentRequest>,
    ) -> Result<Response<StartLogSegmentResponse>, Status> {
        let req = request.into_inner();
        let info = info_of(req.info)?;
        self.run(info.journal_id.clone(), "startLogSegment", move |j| {
            j.start_segment(&info, req.txid)
        })
        .await?;
        Ok(Response::new(StartLogSegmentResponse {}))
    }

    async fn journal(
        &self,
        request: Request<JournalRequest>,
    ) -> Result<Response<JournalResponse>, Status> {
        let req = request.into_inner();
        let info = info_of(req.info)?;
        self.run(info.journal_id.clone(), "journal", move |j| {
            j.journal(
                &info,
                req.segment_first_txid,
                req.first_txid,
                req.num_records,
                &req.records,
            )
        })
        .await?;
        Ok(Response::new(JournalResponse {}))
    }

    async fn finalize_log_segment(
        &self,
        request: Request<FinalizeLogSegmentRequest>,
    ) -> Result<Response<FinalizeLogSegmentResponse>, Status> {
        let req = request.into_inner();
        let info = info_of(req.info)?;
        self.run(info.journal_id.clone(), "finalizeLogSegment", move |j| {
            j.finalize(&info, req.first_txid, req.last_txid)
        })
        .await?;
        Ok(Response::new(FinalizeLogSegmentResponse {}))
    }

    async fn purge_logs(
        &self,
        request: Request<PurgeLogsRequest>,
    ) -> Result<Response<PurgeLogsResponse>, Status> {
        let req = request.into_inner();
        let info = info_of(req.info)?;
        self.run(info.journal_id.clone(), "purgeLogs", move |j| {
            j.purge(&info, req.min_txid_to_keep)
        })
        .await?;
        Ok(Response::new(PurgeLogsResponse {}))
    }

    async fn prepare_recovery(
        &self,
        request: Request<PrepareRecoveryRequest>,
    ) -> Result<Response<PrepareRecoveryResponse>, Status> {
        let req = request.into_inner();
        let info = info_of(req.info)?;
        let response = self
            .run(info.journal_id.clone(), "prepareRecovery", move |j| {
                j.prepare_recovery(&info, req.segment_txid)
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn accept_recovery(
        &self,
        request: Request<Streaming<AcceptRecoveryRequest>>,
    ) -> Result<Response<AcceptRecoveryResponse>, Status> {
        let mut stream = request.into_inner();
        let head = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("acceptRecovery: empty request stream"))?;
        let info = info_of(head.info)?;
        let chosen = head.segment_state.ok_or_else(|| {
            Status::invalid_argument("acceptRecovery: the first message names no segment")
        })?;
        let mut edits = head.records;
        while let Some(more) = stream.message().await? {
            if edits.len() + more.records.len() > MAX_ACCEPT_BYTES {
                return Err(Status::invalid_argument(format!(
                    "acceptRecovery: segment {} is over {MAX_ACCEPT_BYTES} bytes",
                    chosen.first_txid
                )));
            }
            edits.extend_from_slice(&more.records);
        }
        self.run(info.journal_id.clone(), "acceptRecovery", move |j| {
            j.accept_recovery(&info, &chosen, (!edits.is_empty()).then_some(&edits[..]))
        })
        .await?;
        Ok(Response::new(AcceptRecoveryResponse {}))
    }

    type FetchSegmentStream = ReceiverStream<Result<EditsChunk, Status>>;

    async fn fetch_segment(
        &self,
        request: Request<FetchSegmentRequest>,
    ) -> Result<Response<Self::FetchSegmentStream>, Status> {
        let req = request.into_inner();
        let info = info_of(req.info)?;
        let id = info.journal_id.clone();
        let plan = self
            .run(id.clone(), "fetchSegment", move |j| {
                j.plan_segment_fetch(&info, req.first_txid, req.last_txid)
            })
            .await?;
        Ok(Response::new(self.stream_plan(id, plan, u64::MAX)))
    }

    async fn get_edit_log_manifest(
        &self,
        request: Request<GetEditLogManifestRequest>,
    ) -> Result<Response<GetEditLogManifestResponse>, Status> {
        let req = request.into_inner();
        let manifest = self
            .run(req.journal_id, "getEditLogManifest", move |j| {
                j.manifest(req.since_txid)
            })
            .await?;
        Ok(Response::new(manifest))
    }

    type ReadEditsStream = ReceiverStream<Result<EditsChunk, Status>>;

    async fn read_edits(
        &self,
        request: Request<ReadEditsRequest>,
    ) -> Result<Response<Self::ReadEditsStream>, Status> {
        let req = request.into_inner();
        let id = req.journal_id.clone();
        let plan = self
            .run(id.clone(), "readEdits", move |j| {
                j.plan_committed_read(req.from_txid)
            })
            .await?;
        let max = if req.max_records == 0 {
            u64::MAX
        } else {
            req.max_records
        };
        Ok(Response::new(self.stream_plan(id, plan, max)))
    }
}
