//! Namenode failover in the client: real `DfsClient`s against tiny in-process
//! ClientNamenode servers on 127.0.0.1:0 that play an active or a standby
//! namenode (test doubles of the peer, answering only what these tests ask).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use rdfs_client::{ClientError, ClientSettings, DfsClient};
use rdfs_common::ExceptionKind;
use rdfs_common::config::Config;
use rdfs_common::exception::EXCEPTION_METADATA_KEY;
use rdfs_common::grpc::USER_METADATA_KEY;
use rdfs_proto as pb;
use rdfs_proto::client_namenode_server::{ClientNamenode, ClientNamenodeServer};

/// A namenode that is active or standby as the test says, and counts the
/// calls it receives.
#[derive(Default)]
struct FakeNamenode {
    standby: AtomicBool,
    calls: AtomicUsize,
    /// Calls still to answer RetriableException (an active in its start-up
    /// safe mode).
    not_ready: AtomicUsize,
    /// The (client id, call id) of every getFileInfo call received.
    call_ids: std::sync::Mutex<Vec<(String, String)>>,
    /// The length the namenode knows of the last block of `/open`, a file
    /// being written whose last block has no known datanode.
    open_last_block_bytes: std::sync::atomic::AtomicU64,
    locations_asked: AtomicUsize,
}

impl FakeNamenode {
    fn active() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn standby() -> Arc<Self> {
        let nn = Self::default();
        nn.standby.store(true, Ordering::SeqCst);
        Arc::new(nn)
    }

    fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Counts a call; the standby refusal a standby namenode answers with.
    fn admit(&self) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.standby.load(Ordering::SeqCst) {
            return Err(ExceptionKind::Standby
                .status("Operation category READ is not supported in state standby"));
        }
        Ok(())
    }
}

/// Implements the calls the tests use and refuses the others (as
/// unimplemented, or standby when standby).
macro_rules! fake_namenode {
    ({ $($used:tt)* } $($method:ident($request:ident) -> $response:ident;)*) => {
        #[tonic::async_trait]
        impl ClientNamenode for FakeNamenode {
            $($used)*
            $(
                async fn $method(
                    &self,
                    _request: Request<pb::$request>,
                ) -> Result<Response<pb::$response>, Status> {
                    self.admit()?;
                    Err(Status::unimplemented(stringify!($method)))
                }
            )*
        }
    };
}

type FsckStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::FsckResponse, Status>> + Send>>;

fake_namenode! {
    {
        async fn get_file_info(
            &self,
            request: Request<pb::GetFileInfoRequest>,
        ) -> Result<Response<pb::GetFileInfoResponse>, Status> {
            self.admit()?;
            let id = |key: &str| {
                request
                    .metadata()
                    .get(key)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("<none>")
                    .to_string()
            };
            self.call_ids.lock().expect("ids").push((
                id(rdfs_common::grpc::CLIENT_ID_METADATA_KEY),
                id(rdfs_common::grpc::CALL_ID_METADATA_KEY),
            ));
            if self
                .not_ready
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(ExceptionKind::Retriable.status(
                    "Cannot get file info. Name node is in safe mode. In safe mode extension.",
                ));
            }
            // The user metadata must survive every replay of the request.
            let owner = request
                .metadata()
                .get(USER_METADATA_KEY)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("<none>")
                .to_string();
            let request = request.into_inner();
            if request.src == "/missing" {
                return Err(ExceptionKind::FileNotFound.status("File does not exist: /missing"));
            }
            Ok(Response::new(pb::GetFileInfoResponse {
                fs: Some(pb::FileStatus {
                    length: 42,
                    owner,
                    ..Default::default()
                }),
            }))
        }

        async fn get_block_locations(
            &self,
            _request: Request<pb::GetBlockLocationsRequest>,
        ) -> Result<Response<pb::GetBlockLocationsResponse>, Status> {
            self.admit()?;
            self.locations_asked.fetch_add(1, Ordering::SeqCst);
            let last = pb::LocatedBlock {
                block: Some(pb::ExtendedBlock {
                    pool_id: "BP-1".into(),
                    block_id: 1_073_741_825,
                    generation_stamp: 1001,
                    num_bytes: self.open_last_block_bytes.load(Ordering::SeqCst),
                }),
                ..Default::default()
            };
            Ok(Response::new(pb::GetBlockLocationsResponse {
                locations: Some(pb::LocatedBlocks {
                    file_length: 0,
                    blocks: vec![last.clone()],
                    under_construction: true,
                    last_block: Some(last),
                    is_last_block_complete: false,
                }),
            }))
        }

        type FsckStream = FsckStream;

        async fn fsck(
            &self,
            request: Request<pb::FsckRequest>,
        ) -> Result<Response<FsckStream>, Status> {
            self.admit()?;
            let path = request.into_inner().path;
            let entries = vec![
                Ok(pb::FsckResponse {
                    entry: Some(pb::fsck_response::Entry::Directory(path.clone())),
                }),
                Ok(pb::FsckResponse {
                    entry: Some(pb::fsck_response::Entry::Directory(format!("{path}/sub"))),
                }),
            ];
            Ok(Response::new(Box::pin(tokio_stream::iter(entries))))
        }
    }
    get_listing(GetListingRequest) -> GetListingResponse;
    get_content_summary(GetContentSummaryRequest) -> GetContentSummaryResponse;
    get_server_defaults(GetServerDefaultsRequest) -> GetServerDefaultsResponse;
    mkdirs(MkdirsRequest) -> MkdirsResponse;
    create(CreateRequest) -> CreateResponse;
    add_block(AddBlockRequest) -> AddBlockResponse;
    abandon_block(AbandonBlockRequest) -> AbandonBlockResponse;
    complete(CompleteRequest) -> CompleteResponse;
    rename(RenameRequest) -> RenameResponse;
    delete(DeleteRequest) -> DeleteResponse;
    set_replication(SetReplicationRequest) -> SetReplicationResponse;
    set_permission(SetPermissionRequest) -> SetPermissionResponse;
    set_owner(SetOwnerRequest) -> SetOwnerResponse;
    set_times(SetTimesRequest) -> SetTimesResponse;
    report_bad_blocks(ReportBadBlocksRequest) -> ReportBadBlocksResponse;
    renew_lease(RenewLeaseRequest) -> RenewLeaseResponse;
    recover_lease(RecoverLeaseRequest) -> RecoverLeaseResponse;
    append(AppendRequest) -> AppendResponse;
    truncate(TruncateRequest) -> TruncateResponse;
    fsync(FsyncRequest) -> FsyncResponse;
    update_block_for_pipeline(UpdateBlockForPipelineRequest) -> UpdateBlockForPipelineResponse;
    update_pipeline(UpdatePipelineRequest) -> UpdatePipelineResponse;
    get_additional_datanode(GetAdditionalDatanodeRequest) -> GetAdditionalDatanodeResponse;
    get_datanode_report(GetDatanodeReportRequest) -> GetDatanodeReportResponse;
    get_fs_stats(GetFsStatsRequest) -> GetFsStatsResponse;
    set_safe_mode(SetSafeModeRequest) -> SetSafeModeResponse;
    save_namespace(SaveNamespaceRequest) -> SaveNamespaceResponse;
    roll_edits(RollEditsRequest) -> RollEditsResponse;
    refresh_nodes(RefreshNodesRequest) -> RefreshNodesResponse;
    get_blocks(GetBlocksRequest) -> GetBlocksResponse;
    schedule_replica_move(ScheduleReplicaMoveRequest) -> ScheduleReplicaMoveResponse;
    get_groups(GetGroupsRequest) -> GetGroupsResponse;
    change_acl(ChangeAclRequest) -> ChangeAclResponse;
    get_acl_status(GetAclStatusRequest) -> GetAclStatusResponse;
    refresh_user_to_groups_mappings(RefreshUserToGroupsMappingsRequest) -> RefreshUserToGroupsMappingsResponse;
    refresh_super_user_groups_configuration(RefreshSuperUserGroupsConfigurationRequest) -> RefreshSuperUserGroupsConfigurationResponse;
}

/// Serves `nn` on `listener` with the real namenode's transport settings.
fn serve_on(nn: &Arc<FakeNamenode>, listener: TcpListener) {
    let service = ClientNamenodeServer::from_arc(Arc::clone(nn));
    tokio::spawn(
        rdfs_common::grpc::server()
            .add_service(service)
            .serve_with_incoming(rdfs_common::grpc::incoming(listener)),
    );
}

/// Serves `nn` on a fresh port; its address.
async fn serve(nn: &Arc<FakeNamenode>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    serve_on(nn, listener);
    addr
}

/// An address nobody listens on: connections to it are refused.
async fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr").to_string()
}

/// Fast failover settings: `max_attempts` requests per call, millisecond
/// pauses, and `socket_timeout` for each attempt.
fn settings(max_attempts: u32, socket_timeout: Duration) -> ClientSettings {
    let mut settings = ClientSettings::from_config(&Config::default());
    settings.connect_timeout = Duration::from_secs(2);
    settings.socket_timeout = socket_timeout;
    settings.failover_max_attempts = max_attempts;
    settings.failover_sleep_base = Duration::from_millis(1);
    settings.failover_sleep_max = Duration::from_millis(4);
    settings
}

fn nameservice(addrs: &[&str], max_attempts: u32) -> DfsClient {
    DfsClient::new_nameservice(
        addrs,
        "tester",
        settings(max_attempts, Duration::from_secs(5)),
    )
    .expect("client")
}

#[tokio::test]
async fn a_standby_answers_trailers_only_with_the_exception_in_the_headers() {
    // The failover decision reads the response headers only; check that a
    // tonic server puts grpc-status and our metadata there for an error.
    use http_body_util::BodyExt;
    use tower_service::Service;

    let nn = FakeNamenode::standby();
    let addr = serve(&nn).await;
    let mut channel = rdfs_common::grpc::channel(&addr, Duration::from_secs(2)).expect("channel");
    // An empty message: the 5-byte gRPC frame header and no payload.
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{addr}/rdfs.ClientNamenode/GetServerDefaults"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from_static(&[0, 0, 0, 0, 0]),
        )))
        .expect("request");
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .expect("ready");
    let response = channel.call(request).await.expect("response");
    let headers = response.headers().clone();
    assert_eq!(
        headers.get("grpc-status").map(|v| v.as_bytes()),
        Some(b"14".as_slice()),
        "{headers:?}"
    );
    assert_eq!(
        headers.get(EXCEPTION_METADATA_KEY).map(|v| v.as_bytes()),
        Some(b"StandbyException".as_slice()),
        "{headers:?}"
    );
    let body = response.into_body().collect().await.expect("body");
    assert!(
        body.to_bytes().is_empty(),
        "a trailers-only response has no body"
    );
    assert_eq!(nn.calls(), 1);
}

#[tokio::test]
async fn a_call_goes_on_to_the_active_namenode_and_stays_there() {
    let (standby, active) = (FakeNamenode::standby(), FakeNamenode::active());
    let standby_addr = serve(&standby).await;
    let active_addr = serve(&active).await;
    let client = nameservice(&[&standby_addr, &active_addr], 10);
    assert_eq!(client.active_namenode(), standby_addr);

    let status = client
        .get_file_info("/f")
        .await
        .expect("call")
        .expect("status");
    assert_eq!(status.length, 42);
    assert_eq!(status.owner, "tester", "the user metadata is replayed");
    assert_eq!((standby.calls(), active.calls()), (1, 1));
    assert_eq!(client.active_namenode(), active_addr);

    // Later calls, from clones too, go straight to the active namenode.
    client.get_file_info("/f").await.expect("call");
    client.clone().get_file_info("/g").await.expect("call");
    assert_eq!((standby.calls(), active.calls()), (1, 3));
    assert_eq!(client.namenode_addrs(), [standby_addr, active_addr]);
}

#[tokio::test]
async fn unreachable_namenodes_are_skipped() {
    let (standby, active) = (FakeNamenode::standby(), FakeNamenode::active());
    let dead = dead_address().await;
    let standby_addr = serve(&standby).await;
    let active_addr = serve(&active).await;
    let client = nameservice(&[&dead, &standby_addr, &active_addr], 10);
    client
        .get_file_info("/f")
        .await
        .expect("call")
        .expect("status");
    assert_eq!((standby.calls(), active.calls()), (1, 1));
    assert_eq!(client.active_namenode(), active_addr);
}

#[tokio::test]
async fn a_namenode_that_never_answers_counts_as_unreachable() {
    // Accepts connections (the kernel completes the handshake) but never
    // answers, like a SIGSTOPped namenode.
    let stopped = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stopped_addr = stopped.local_addr().expect("local addr").to_string();
    let active = FakeNamenode::active();
    let active_addr = serve(&active).await;
    let timeout = Duration::from_millis(300);
    let client = DfsClient::new_nameservice(
        &[stopped_addr, active_addr.clone()],
        "tester",
        settings(10, timeout),
    )
    .expect("client");
    let started = Instant::now();
    client
        .get_file_info("/f")
        .await
        .expect("call")
        .expect("status");
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    assert!(started.elapsed() < timeout * 5, "{:?}", started.elapsed());
    assert_eq!(active.calls(), 1);
    assert_eq!(client.active_namenode(), active_addr);
    drop(stopped);
}

#[tokio::test]
async fn other_errors_are_not_retried() {
    let (first, second) = (FakeNamenode::active(), FakeNamenode::active());
    let first_addr = serve(&first).await;
    let second_addr = serve(&second).await;
    let client = nameservice(&[&first_addr, &second_addr], 10);
    let err = client.get_file_info("/missing").await.expect_err("missing");
    assert!(err.is(ExceptionKind::FileNotFound), "{err:?}");
    assert_eq!(err.to_string(), "File does not exist: /missing");
    let err = client.fsck("/").await.map(|_| ()).err();
    assert!(err.is_none(), "{err:?}");
    let err = client
        .mkdirs("/d", 0o755, true)
        .await
        .expect_err("unimplemented");
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    assert_eq!((first.calls(), second.calls()), (3, 0));

    // Nor with a single namenode.
    let lone = FakeNamenode::active();
    let lone_addr = serve(&lone).await;
    let client = nameservice(&[&lone_addr], 10);
    let err = client.get_file_info("/missing").await.expect_err("missing");
    assert!(err.is(ExceptionKind::FileNotFound), "{err:?}");
    assert_eq!(lone.calls(), 1);
}

#[tokio::test]
async fn attempts_are_bounded_and_the_error_names_every_namenode() {
    let (a, b) = (FakeNamenode::standby(), FakeNamenode::standby());
    let a_addr = serve(&a).await;
    let b_addr = serve(&b).await;
    let client = nameservice(&[&a_addr, &b_addr], 5);
    let err = client.get_file_info("/f").await.expect_err("all standby");
    assert!(err.is(ExceptionKind::Standby), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("{a_addr} is standby")),
        "{message}"
    );
    assert!(
        message.contains(&format!("{b_addr} is standby")),
        "{message}"
    );
    assert!(
        message.contains("not supported in state standby"),
        "{message}"
    );
    assert!(message.contains("5 attempts"), "{message}");
    assert_eq!(a.calls() + b.calls(), 5);
    assert_eq!((a.calls(), b.calls()), (3, 2));

    // Unreachable and standby mixed: the last answer sets the kind.
    let dead = dead_address().await;
    let client = DfsClient::new_nameservice(
        &[b_addr.as_str(), dead.as_str()],
        "tester",
        settings(4, Duration::from_secs(5)),
    )
    .expect("client");
    let err = client.get_file_info("/f").await.expect_err("none active");
    let ClientError::Transport(message) = &err else {
        panic!("expected a transport error, got {err:?}");
    };
    assert!(
        message.contains(&format!("{b_addr} is standby")),
        "{message}"
    );
    assert!(
        message.contains(&format!("{dead} is unreachable")),
        "{message}"
    );
    assert!(message.contains("4 attempts"), "{message}");
}

#[tokio::test]
async fn a_lone_namenode_is_retried_when_unreachable_but_not_when_standby() {
    let dead = dead_address().await;
    let client = nameservice(&[&dead], 3);
    let err = client.get_file_info("/f").await.expect_err("dead");
    let message = err.to_string();
    // The single-namenode message keeps its shape for the CLI.
    assert!(
        message.starts_with(&format!("Call to {dead} failed: {dead} is unreachable")),
        "{message}"
    );
    assert!(message.contains("3 attempts"), "{message}");

    // A lone standby's refusal is final: nobody else could serve the call.
    let standby = FakeNamenode::standby();
    let standby_addr = serve(&standby).await;
    let client = nameservice(&[&standby_addr], 10);
    let err = client.get_file_info("/f").await.expect_err("standby");
    assert!(err.is(ExceptionKind::Standby), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Operation category READ is not supported in state standby"
    );
    assert_eq!(standby.calls(), 1);
}

#[tokio::test]
async fn a_restarting_lone_namenode_does_not_fail_the_call() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    let nn = FakeNamenode::active();
    let restarted = Arc::clone(&nn);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let listener = TcpListener::bind(addr).await.expect("rebind");
        serve_on(&restarted, listener);
    });
    let addr = addr.to_string();
    let client = nameservice(&[&addr], 200);
    client
        .get_file_info("/f")
        .await
        .expect("call")
        .expect("status");
    assert_eq!(nn.calls(), 1);
}

#[tokio::test]
async fn calls_follow_a_switch_of_the_active_namenode() {
    let (nn0, nn1) = (FakeNamenode::active(), FakeNamenode::standby());
    let addr0 = serve(&nn0).await;
    let addr1 = serve(&nn1).await;
    let client = nameservice(&[&addr0, &addr1], 10);
    client.get_file_info("/f").await.expect("call");
    assert_eq!((nn0.calls(), nn1.calls()), (1, 0));

    // Failover: the old active steps down, the standby takes over.
    nn0.set_standby(true);
    nn1.set_standby(false);
    client.get_file_info("/f").await.expect("call");
    assert_eq!((nn0.calls(), nn1.calls()), (2, 1));
    client.get_file_info("/f").await.expect("call");
    assert_eq!((nn0.calls(), nn1.calls()), (2, 2));
    assert_eq!(client.active_namenode(), addr1);

    // And back.
    nn1.set_standby(true);
    nn0.set_standby(false);
    client.get_file_info("/f").await.expect("call");
    client.get_file_info("/f").await.expect("call");
    assert_eq!((nn0.calls(), nn1.calls()), (4, 3));
    assert_eq!(client.active_namenode(), addr0);
}

#[tokio::test]
async fn a_server_streaming_call_fails_over() {
    let (standby, active) = (FakeNamenode::standby(), FakeNamenode::active());
    let standby_addr = serve(&standby).await;
    let active_addr = serve(&active).await;
    let client = nameservice(&[&standby_addr, &active_addr], 10);
    let entries = client.fsck("/a").await.expect("fsck");
    let dirs: Vec<_> = entries
        .into_iter()
        .map(|entry| match entry {
            pb::fsck_response::Entry::Directory(dir) => dir,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(dirs, ["/a", "/a/sub"]);
    assert_eq!((standby.calls(), active.calls()), (1, 1));
}

#[tokio::test]
async fn concurrent_calls_all_fail_over() {
    let (standby, active) = (FakeNamenode::standby(), FakeNamenode::active());
    let standby_addr = serve(&standby).await;
    let active_addr = serve(&active).await;
    let client = nameservice(&[&standby_addr, &active_addr], 10);
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.get_file_info(&format!("/f{i}")).await })
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("call").expect("status");
    }
    assert_eq!(active.calls(), 20);
    assert!(standby.calls() <= 20);
}

#[tokio::test]
async fn a_not_ready_active_is_retried_with_the_same_call_ids() {
    let (active, standby) = (FakeNamenode::active(), FakeNamenode::standby());
    active.not_ready.store(2, Ordering::SeqCst);
    let active_addr = serve(&active).await;
    let standby_addr = serve(&standby).await;
    let client = nameservice(&[&active_addr, &standby_addr], 10);
    let status = client
        .get_file_info("/f")
        .await
        .expect("answered once the active is ready")
        .expect("status");
    assert_eq!(status.length, 42);
    assert_eq!(
        (active.calls(), standby.calls()),
        (3, 0),
        "retried on the active, which stays the one believed active"
    );
    client.get_file_info("/g").await.expect("call");
    let ids = active.call_ids.lock().expect("ids").clone();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0].0.len(), 32, "a 16-byte client id in hex: {ids:?}");
    assert!(ids.iter().all(|(client_id, _)| *client_id == ids[0].0));
    assert!(
        ids[..3].iter().all(|(_, call)| *call == ids[0].1),
        "retries repeat the call id: {ids:?}"
    );
    assert_ne!(ids[3].1, ids[0].1, "a new call gets a new id");
}

#[tokio::test]
async fn a_namenode_that_stays_not_ready_ends_in_retriable_exception() {
    let active = FakeNamenode::active();
    active.not_ready.store(usize::MAX, Ordering::SeqCst);
    let addr = serve(&active).await;
    let mut settings = settings(3, Duration::from_secs(5));
    settings.retriable_wait = Duration::from_millis(300);
    let client = DfsClient::new_nameservice(&[&addr], "tester", settings).expect("client");
    let started = Instant::now();
    let err = client.get_file_info("/f").await.expect_err("never ready");
    assert!(err.to_string().contains("safe mode"), "{err}");
    assert!(
        active.calls() > 3,
        "not-ready answers do not use up the attempts ({} calls)",
        active.calls()
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_last_block_with_data_and_no_known_datanode_fails_the_open_instead_of_a_short_read() {
    let nn = FakeNamenode::active();
    nn.open_last_block_bytes.store(89_409, Ordering::SeqCst);
    let addr = serve(&nn).await;
    let mut settings = settings(3, Duration::from_secs(5));
    settings.last_block_length_retries = 2;
    settings.last_block_length_retry_interval = Duration::from_millis(10);
    let client = DfsClient::new_nameservice(&[&addr], "tester", settings.clone()).expect("client");
    let err = client.open("/open").await.err().expect("no short read");
    assert!(
        err.to_string()
            .contains("Could not obtain the last block locations of /open"),
        "{err}"
    );
    assert_eq!(
        nn.locations_asked.load(Ordering::SeqCst),
        3,
        "asked again twice"
    );

    // Nothing written to it yet by the namenode's account: an empty block.
    nn.open_last_block_bytes.store(0, Ordering::SeqCst);
    let client = DfsClient::new_nameservice(&[&addr], "tester", settings).expect("client");
    client.open("/open").await.expect("opens at once");
}
