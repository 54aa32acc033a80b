//! One journalnode as the quorum client sees it. [`GrpcPeer`] calls a real
//! journalnode over QJournalProtocol; the simulator implements the same
//! trait with in-memory journalnodes behind a network that loses, delays,
//! duplicates and reorders messages, so the writer, recovery and tailing
//! code it checks is the code that runs here.
//!
//! Streamed calls are whole here: a read or fetch answers with its chunks
//! once the stream has ended, which is how the callers used them anyway.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use tonic::transport::Channel;

use rdfs_common::grpc::MAX_MESSAGE_SIZE;
use rdfs_proto::q_journal_protocol_client::QJournalProtocolClient;
use rdfs_proto::{
    AcceptRecoveryRequest, EditsChunk, FetchSegmentRequest, FinalizeLogSegmentRequest,
    FormatJournalRequest, GetJournalStateRequest, GetJournalStateResponse, JournalHeartbeatRequest,
    JournalRequest, NewEpochRequest, NewEpochResponse, PrepareRecoveryRequest,
    PrepareRecoveryResponse, PurgeLogsRequest, ReadEditsRequest, StartLogSegmentRequest,
};

use crate::fault::JnError;

/// The answer to one call to one journalnode.
pub(crate) type PeerCall<T> = BoxFuture<'static, Result<T, JnError>>;

pub(crate) trait JournalPeer: Send + Sync + 'static {
    /// The journalnode's address, for messages and logs.
    fn name(&self) -> &str;
    fn get_journal_state(
        &self,
        request: GetJournalStateRequest,
    ) -> PeerCall<GetJournalStateResponse>;
    fn format_journal(&self, request: FormatJournalRequest) -> PeerCall<()>;
    fn new_epoch(&self, request: NewEpochRequest) -> PeerCall<NewEpochResponse>;
    fn heartbeat(&self, request: JournalHeartbeatRequest) -> PeerCall<()>;
    fn start_log_segment(&self, request: StartLogSegmentRequest) -> PeerCall<()>;
    fn journal(&self, request: JournalRequest) -> PeerCall<()>;
    fn finalize_log_segment(&self, request: FinalizeLogSegmentRequest) -> PeerCall<()>;
    fn purge_logs(&self, request: PurgeLogsRequest) -> PeerCall<()>;
    fn prepare_recovery(
        &self,
        request: PrepareRecoveryRequest,
    ) -> PeerCall<PrepareRecoveryResponse>;
    /// `head` names the decision; `edits`, when the journalnode lacks the
    /// chosen segment, are its framed records in chunks.
    fn accept_recovery(
        &self,
        head: AcceptRecoveryRequest,
        edits: Option<Arc<Vec<Bytes>>>,
    ) -> PeerCall<()>;
    /// A segment's records, committed or not, in the chunks they came in.
    fn fetch_segment(&self, request: FetchSegmentRequest) -> PeerCall<Vec<EditsChunk>>;
    /// Committed records, in the chunks they came in.
    fn read_edits(&self, request: ReadEditsRequest) -> PeerCall<Vec<EditsChunk>>;
}

/// A journalnode over gRPC, connected on first use, so one that is down
/// costs nothing until it is called.
pub(crate) struct GrpcPeer {
    name: String,
    connect_timeout: Duration,
    channel: OnceLock<Result<Channel, String>>,
}

impl GrpcPeer {
    pub(crate) fn new(name: String, connect_timeout: Duration) -> Self {
        Self {
            name,
            connect_timeout,
            channel: OnceLock::new(),
        }
    }

    fn client(&self) -> Result<QJournalProtocolClient<Channel>, JnError> {
        let channel = self.channel.get_or_init(|| {
            rdfs_common::grpc::channel(&self.name, self.connect_timeout)
                .map_err(|err| format!("bad journalnode address {}: {err}", self.name))
        });
        match channel {
            Ok(channel) => Ok(QJournalProtocolClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE)),
            Err(why) => Err(JnError::Rpc(why.clone())),
        }
    }

    /// Runs `call` on a client; an address that cannot be used fails at
    /// once.
    fn with_client<T, F, Fut>(&self, call: F) -> PeerCall<T>
    where
        T: Send + 'static,
        F: FnOnce(QJournalProtocolClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>> + Send + 'static,
    {
        match self.client() {
            Ok(client) => {
                let call = call(client);
                Box::pin(async move { call.await.map_err(|status| JnError::from_status(&status)) })
            }
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }
}

async fn collect(
    stream: Result<tonic::Response<tonic::Streaming<EditsChunk>>, tonic::Status>,
) -> Result<Vec<EditsChunk>, tonic::Status> {
    let mut stream = stream?.into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.message().await? {
        chunks.push(chunk);
    }
    Ok(chunks)
}

impl JournalPeer for GrpcPeer {
    fn name(&self) -> &str {
        &self.name
    }

    fn get_journal_state(
        &self,
        request: GetJournalStateRequest,
    ) -> PeerCall<GetJournalStateResponse> {
        self.with_client(|mut client| async move {
            Ok(client.get_journal_state(request).await?.into_inner())
        })
    }

    fn format_journal(&self, request: FormatJournalRequest) -> PeerCall<()> {
        self.with_client(|mut client| async move { client.format_journal(request).await.map(drop) })
    }

    fn new_epoch(&self, request: NewEpochRequest) -> PeerCall<NewEpochResponse> {
        self.with_client(
            |mut client| async move { Ok(client.new_epoch(request).await?.into_inner()) },
        )
    }

    fn heartbeat(&self, request: JournalHeartbeatRequest) -> PeerCall<()> {
        self.with_client(
            |mut client| async move { client.journal_heartbeat(request).await.map(drop) },
        )
    }

    fn start_log_segment(&self, request: StartLogSegmentRequest) -> PeerCall<()> {
        self.with_client(
            |mut client| async move { client.start_log_segment(request).await.map(drop) },
        )
    }

    fn journal(&self, request: JournalRequest) -> PeerCall<()> {
        self.with_client(|mut client| async move { client.journal(request).await.map(drop) })
    }

    fn finalize_log_segment(&self, request: FinalizeLogSegmentRequest) -> PeerCall<()> {
        self.with_client(|mut client| async move {
            client.finalize_log_segment(request).await.map(drop)
        })
    }

    fn purge_logs(&self, request: PurgeLogsRequest) -> PeerCall<()> {
        self.with_client(|mut client| async move { client.purge_logs(request).await.map(drop) })
    }

    fn prepare_recovery(
        &self,
        request: PrepareRecoveryRequest,
    ) -> PeerCall<PrepareRecoveryResponse> {
        self.with_client(|mut client| async move {
            Ok(client.prepare_recovery(request).await?.into_inner())
        })
    }

    fn accept_recovery(
        &self,
        head: AcceptRecoveryRequest,
        edits: Option<Arc<Vec<Bytes>>>,
    ) -> PeerCall<()> {
        self.with_client(|mut client| async move {
            // Chunks are copied into messages as the stream is polled, not
            // all at once.
            let chunks = edits.unwrap_or_default();
            let rest = (0..chunks.len()).map(move |i| AcceptRecoveryRequest {
                info: None,
                segment_state: None,
                records: chunks[i].to_vec(),
            });
            client
                .accept_recovery(tokio_stream::iter(std::iter::once(head).chain(rest)))
                .await
                .map(drop)
        })
    }

    fn fetch_segment(&self, request: FetchSegmentRequest) -> PeerCall<Vec<EditsChunk>> {
        self.with_client(
            |mut client| async move { collect(client.fetch_segment(request).await).await },
        )
    }

    fn read_edits(&self, request: ReadEditsRequest) -> PeerCall<Vec<EditsChunk>> {
        self.with_client(
            |mut client| async move { collect(client.read_edits(request).await).await },
        )
    }
}
