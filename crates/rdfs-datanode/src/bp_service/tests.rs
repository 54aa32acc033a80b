//! The link against namenodes played by small `DatanodeProtocol` servers
//! on loopback: they answer as a namenode would, with the HA status and
//! commands a test sets, and record what the datanode sent them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use rdfs_common::ExceptionKind;
use rdfs_common::config::NamenodeAddress;
use rdfs_common::protocol::{DatanodeId, ExtendedBlock};
use rdfs_proto as pb;
use rdfs_proto::data_transfer_client::DataTransferClient;
use rdfs_proto::datanode_protocol_client::DatanodeProtocolClient;
use rdfs_proto::datanode_protocol_server::{DatanodeProtocol, DatanodeProtocolServer};
use rdfs_proto::write_block_frame::Frame;
use rdfs_proto::write_block_reply::Reply;

use super::{BpOfferService, LinkError, NamenodeLink, Timing};
use crate::context::DatanodeContext;
use crate::test_support::{self, POOL};

const UUID: &str = "uuid";

/// What a namenode saw of the datanode.
#[derive(Debug, Default)]
struct Seen {
    versions: usize,
    registrations: usize,
    heartbeats: usize,
    /// The heartbeat whose response carried the last commands.
    ordered_at: usize,
    /// Block ids in each full report.
    full_reports: Vec<Vec<i64>>,
    received: Vec<i64>,
    deleted: Vec<i64>,
    bad: Vec<i64>,
    commits: Vec<pb::CommitBlockSynchronizationRequest>,
}

/// A namenode as far as a datanode can tell.
struct FakeNamenode {
    block_pool_id: String,
    /// What heartbeat responses say of its role; `None` as without HA.
    ha: Mutex<Option<pb::NnHaStatus>>,
    /// Handed out with the next heartbeat response.
    commands: Mutex<Vec<pb::DatanodeCommand>>,
    /// Refuses `CommitBlockSynchronization` as a standby would.
    refuse_commit: AtomicBool,
    /// Answers the next heartbeat as a namenode that does not know the
    /// datanode (restarted) and will not send it commands would.
    forget: AtomicBool,
    seen: Mutex<Seen>,
}

fn status(state: pb::HaState, epoch: u64) -> Option<pb::NnHaStatus> {
    Some(pb::NnHaStatus {
        state: state as i32,
        epoch,
        txid: 100,
    })
}

impl FakeNamenode {
    fn new(ha: Option<pb::NnHaStatus>) -> Arc<Self> {
        Self::serving(POOL, ha)
    }

    fn serving(block_pool_id: &str, ha: Option<pb::NnHaStatus>) -> Arc<Self> {
        Arc::new(Self {
            block_pool_id: block_pool_id.to_string(),
            ha: Mutex::new(ha),
            commands: Mutex::new(Vec::new()),
            refuse_commit: AtomicBool::new(false),
            forget: AtomicBool::new(false),
            seen: Mutex::new(Seen::default()),
        })
    }

    fn set_ha(&self, ha: Option<pb::NnHaStatus>) {
        *self.ha.lock() = ha;
    }

    /// Serves on `listener` until `stop`.
    fn serve(self: &Arc<Self>, listener: tokio::net::TcpListener, stop: CancellationToken) {
        let server = rdfs_common::grpc::server()
            .add_service(DatanodeProtocolServer::new(Service(Arc::clone(self))))
            .serve_with_incoming_shutdown(rdfs_common::grpc::incoming(listener), async move {
                stop.cancelled().await
            });
        tokio::spawn(server);
    }

    async fn start(self: &Arc<Self>, stop: CancellationToken) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        self.serve(listener, stop);
        addr
    }

    /// Sends `command` with the next heartbeat response and waits until
    /// the datanode has handled it (its next heartbeat comes after).
    async fn order(&self, command: pb::datanode_command::Command) {
        let before = self.seen.lock().heartbeats;
        self.commands.lock().push(pb::DatanodeCommand {
            command: Some(command),
        });
        wait_until("the datanode to handle a command", || {
            let seen = self.seen.lock();
            seen.ordered_at > before && seen.heartbeats > seen.ordered_at
        })
        .await;
    }

    /// Waits for `more` heartbeats after now, so the datanode has taken in
    /// what the namenode says of itself.
    async fn heartbeats(&self, more: usize) {
        let target = self.seen.lock().heartbeats + more;
        wait_until("heartbeats", || self.seen.lock().heartbeats >= target).await;
    }
}

struct Service(Arc<FakeNamenode>);

#[tonic::async_trait]
impl DatanodeProtocol for Service {
    async fn version_request(
        &self,
        _request: Request<pb::VersionRequestRequest>,
    ) -> Result<Response<pb::VersionRequestResponse>, Status> {
        self.0.seen.lock().versions += 1;
        Ok(Response::new(pb::VersionRequestResponse {
            info: Some(pb::NamespaceInfo {
                cluster_id: "CID-1".into(),
                block_pool_id: self.0.block_pool_id.clone(),
                namespace_id: 1,
                ..Default::default()
            }),
        }))
    }

    async fn register_datanode(
        &self,
        request: Request<pb::RegisterDatanodeRequest>,
    ) -> Result<Response<pb::RegisterDatanodeResponse>, Status> {
        self.0.seen.lock().registrations += 1;
        Ok(Response::new(pb::RegisterDatanodeResponse {
            registration: request.into_inner().registration,
            ..Default::default()
        }))
    }

    async fn send_heartbeat(
        &self,
        _request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let commands = std::mem::take(&mut *self.0.commands.lock());
        let mut seen = self.0.seen.lock();
        seen.heartbeats += 1;
        if self.0.forget.swap(false, Ordering::Relaxed) {
            return Err(ExceptionKind::UnregisteredNode.status("datanode uuid is not registered"));
        }
        if !commands.is_empty() {
            seen.ordered_at = seen.heartbeats;
        }
        Ok(Response::new(pb::HeartbeatResponse {
            commands,
            ha_status: *self.0.ha.lock(),
            ..Default::default()
        }))
    }

    async fn block_report(
        &self,
        request: Request<pb::BlockReportRequest>,
    ) -> Result<Response<pb::BlockReportResponse>, Status> {
        let ids = request
            .into_inner()
            .reports
            .iter()
            .flat_map(|r| r.replicas.iter().map(|r| r.block_id))
            .collect();
        self.0.seen.lock().full_reports.push(ids);
        Ok(Response::new(pb::BlockReportResponse::default()))
    }

    async fn block_received_and_deleted(
        &self,
        request: Request<pb::BlockReceivedAndDeletedRequest>,
    ) -> Result<Response<pb::BlockReceivedAndDeletedResponse>, Status> {
        let mut seen = self.0.seen.lock();
        for block in request.into_inner().blocks {
            let id = block.block.map(|b| b.block_id).unwrap_or_default();
            if block.status == pb::ReceivedDeletedStatus::Deleted as i32 {
                seen.deleted.push(id);
            } else {
                seen.received.push(id);
            }
        }
        Ok(Response::new(pb::BlockReceivedAndDeletedResponse {}))
    }

    async fn report_bad_blocks(
        &self,
        request: Request<pb::DatanodeReportBadBlocksRequest>,
    ) -> Result<Response<pb::DatanodeReportBadBlocksResponse>, Status> {
        let mut seen = self.0.seen.lock();
        seen.bad
            .extend(request.into_inner().blocks.iter().map(|b| b.block_id));
        Ok(Response::new(pb::DatanodeReportBadBlocksResponse {}))
    }

    async fn commit_block_synchronization(
        &self,
        request: Request<pb::CommitBlockSynchronizationRequest>,
    ) -> Result<Response<pb::CommitBlockSynchronizationResponse>, Status> {
        self.0.seen.lock().commits.push(request.into_inner());
        if self.0.refuse_commit.load(Ordering::Relaxed) {
            return Err(ExceptionKind::Standby
                .status("Operation category WRITE is not supported in state standby"));
        }
        Ok(Response::new(pb::CommitBlockSynchronizationResponse {}))
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A datanode on a fresh one-volume dataset, serving transfers and linked
/// to `namenodes`.
struct Datanode {
    ctx: Arc<DatanodeContext>,
    xfer: SocketAddr,
    stop: CancellationToken,
    link: JoinHandle<Result<(), LinkError>>,
    _tmp: tempfile::TempDir,
}

impl Datanode {
    async fn start(namenodes: &[(&str, SocketAddr)]) -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let ctx =
            test_support::context(test_support::dataset(tmp.path(), 1), Duration::from_secs(2));
        let stop = CancellationToken::new();
        let xfer = test_support::serve(Arc::clone(&ctx), stop.clone()).await;
        let id = DatanodeId {
            ip_addr: "127.0.0.1".into(),
            hostname: "localhost".into(),
            datanode_uuid: UUID.into(),
            xfer_port: xfer.port(),
            info_port: 0,
            ipc_port: 0,
        };
        let links = namenodes
            .iter()
            .map(|(id, addr)| {
                let channel =
                    rdfs_common::grpc::endpoint(&addr.to_string(), Duration::from_millis(500))
                        .expect("endpoint")
                        .timeout(Duration::from_secs(2))
                        .connect_lazy();
                NamenodeLink {
                    namenode: NamenodeAddress {
                        id: id.to_string(),
                        address: addr.to_string(),
                    },
                    client: DatanodeProtocolClient::new(channel),
                }
            })
            .collect();
        let timing = Timing {
            heartbeat_interval: Duration::from_millis(50),
            block_report_interval: Duration::from_secs(3600),
        };
        let bp = BpOfferService::new(Arc::clone(&ctx), id, links, timing);
        let link = tokio::spawn(bp.run(stop.clone()));
        Self {
            ctx,
            xfer,
            stop,
            link,
            _tmp: tmp,
        }
    }

    /// Writes a block as a client does, through the write pipeline, which
    /// reports it received once finalized.
    async fn write(&self, block_id: i64, data: &[u8]) {
        let header = pb::WriteBlockFrame {
            frame: Some(Frame::Header(pb::WriteBlockHeader {
                block: Some((&test_support::block(block_id)).into()),
                stage: pb::PipelineStage::SetupCreate as i32,
                checksum_type: pb::ChecksumType::ChecksumCrc32c as i32,
                bytes_per_checksum: 512,
                block_size: 1 << 20,
                ..Default::default()
            })),
        };
        let packet = |seqno: i64, offset: u64, data: &[u8], last: bool| pb::WriteBlockFrame {
            frame: Some(Frame::Packet(pb::Packet {
                seqno,
                offset_in_block: offset,
                last_packet_in_block: last,
                sync_block: false,
                data: bytes::Bytes::copy_from_slice(data),
                checksums: bytes::Bytes::from(crate::replica::packet_checksums(data, offset, 512)),
            })),
        };
        let (frames, rx) = mpsc::channel(4);
        for frame in [
            header,
            packet(0, 0, data, false),
            packet(1, data.len() as u64, &[], true),
        ] {
            frames.send(frame).await.expect("frame");
        }
        let channel = rdfs_common::grpc::channel(&self.xfer.to_string(), Duration::from_secs(2))
            .expect("channel");
        let mut replies = DataTransferClient::new(channel)
            .write_block(ReceiverStream::new(rx))
            .await
            .expect("write_block")
            .into_inner();
        loop {
            let reply = tokio::time::timeout(Duration::from_secs(5), replies.message())
                .await
                .expect("a reply in time")
                .expect("stream")
                .expect("a reply before the end");
            if let Some(Reply::Ack(ack)) = reply.reply
                && ack.seqno == 1
            {
                assert_eq!(ack.replies, vec![0], "{}", ack.message);
                break;
            }
        }
        drop(frames);
    }

    fn has(&self, block_id: i64) -> bool {
        self.ctx.dataset.replica(block_id).is_some()
    }

    /// A finalized replica written straight into the dataset (not
    /// reported), for commands to act on.
    fn replica(&self, block_id: i64) -> ExtendedBlock {
        test_support::write_replica(&self.ctx.dataset, block_id, 1000)
    }

    async fn stop(self) {
        self.stop.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(5), self.link)
            .await
            .expect("the link stops promptly")
            .expect("link task");
        assert!(ended.is_ok(), "{ended:?}");
    }
}

fn invalidate(block: &ExtendedBlock) -> pb::datanode_command::Command {
    pb::datanode_command::Command::Invalidate(pb::BlockList {
        pool_id: POOL.into(),
        blocks: vec![block.into()],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namenode_gets_registration_heartbeats_and_every_report() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let nn1 = FakeNamenode::new(status(pb::HaState::Active, 1));
    let nn2 = FakeNamenode::new(status(pb::HaState::Standby, 0));
    let addr1 = nn1.start(stop.clone()).await;
    let addr2 = nn2.start(stop.clone()).await;
    let dn = Datanode::start(&[("nn1", addr1), ("nn2", addr2)]).await;

    for nn in [&nn1, &nn2] {
        wait_until("registration and a full report", || {
            let seen = nn.seen.lock();
            seen.registrations == 1 && seen.full_reports.len() == 1
        })
        .await;
        nn.heartbeats(2).await;
    }

    dn.write(7, &test_support::data(7, 3000)).await;
    for nn in [&nn1, &nn2] {
        wait_until("the received replica", || {
            nn.seen.lock().received == vec![7]
        })
        .await;
    }

    let info = dn.ctx.dataset.replica(7).expect("replica");
    assert!(dn.ctx.dataset.report_corrupt(7, &info, "checksum mismatch"));
    for nn in [&nn1, &nn2] {
        wait_until("the bad replica", || nn.seen.lock().bad == vec![7]).await;
    }
    dn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_carried_out_only_from_the_active_namenode() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let standby = FakeNamenode::new(status(pb::HaState::Standby, 0));
    let active = FakeNamenode::new(status(pb::HaState::Active, 3));
    let addr1 = standby.start(stop.clone()).await;
    let addr2 = active.start(stop.clone()).await;
    let dn = Datanode::start(&[("nn1", addr1), ("nn2", addr2)]).await;
    let a = dn.replica(1);
    let b = dn.replica(2);
    active.heartbeats(2).await;
    standby.heartbeats(2).await;

    standby.order(invalidate(&a)).await;
    assert!(dn.has(1), "a standby's command was carried out");

    active.order(invalidate(&b)).await;
    assert!(!dn.has(2), "the active's command was not carried out");
    assert!(dn.has(1));
    // Both namenodes hear of the deletion, not only the one that asked.
    for nn in [&standby, &active] {
        wait_until("the deleted replica", || nn.seen.lock().deleted == vec![2]).await;
    }

    // A namenode that forgot the datanode gets it back whatever its role:
    // registration and reports are each namenode's own.
    standby
        .order(pb::datanode_command::Command::Reregister(pb::Reregister {}))
        .await;
    wait_until("registration again", || {
        let seen = standby.seen.lock();
        seen.registrations == 2 && seen.full_reports.len() == 2
    })
    .await;
    assert_eq!(standby.seen.lock().full_reports[1], vec![1]);
    standby.forget.store(true, Ordering::Relaxed);
    wait_until("registration once more", || {
        let seen = standby.seen.lock();
        seen.registrations == 3 && seen.full_reports.len() == 3
    })
    .await;
    assert_eq!(active.seen.lock().registrations, 1);
    dn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_active_is_ignored_once_a_newer_epoch_is_active() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let old = FakeNamenode::new(status(pb::HaState::Active, 1));
    let new = FakeNamenode::new(status(pb::HaState::Standby, 0));
    let addr1 = old.start(stop.clone()).await;
    let addr2 = new.start(stop.clone()).await;
    let dn = Datanode::start(&[("nn1", addr1), ("nn2", addr2)]).await;
    let blocks: Vec<_> = (1..=4).map(|id| dn.replica(id)).collect();
    old.heartbeats(2).await;
    new.heartbeats(2).await;

    old.order(invalidate(&blocks[0])).await;
    assert!(!dn.has(1), "the only active's command was not carried out");

    // A failover the old active missed (it was paused): it still claims
    // to be active, in its old epoch.
    new.set_ha(status(pb::HaState::Active, 2));
    new.heartbeats(2).await;
    old.order(invalidate(&blocks[1])).await;
    assert!(dn.has(2), "a stale active's command was carried out");
    new.order(invalidate(&blocks[2])).await;
    assert!(!dn.has(3));

    // The new active steps down: none is active, and the old one still
    // cannot claim it in its old epoch.
    new.set_ha(status(pb::HaState::Standby, 0));
    new.heartbeats(2).await;
    old.order(invalidate(&blocks[3])).await;
    new.order(invalidate(&blocks[3])).await;
    assert!(dn.has(4));
    dn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namenodes_that_hang_or_are_down_hold_up_nothing() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let up = FakeNamenode::new(status(pb::HaState::Active, 1));
    let addr1 = up.start(stop.clone()).await;
    // A namenode that hangs (paused, say): the kernel takes connections,
    // nothing answers them.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr2 = hung.local_addr().expect("addr");
    // And one that is down: nobody listens there.
    let addr3: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let dn = Datanode::start(&[("nn1", addr1), ("nn2", addr2), ("nn3", addr3)]).await;

    wait_until("registration", || up.seen.lock().registrations == 1).await;
    up.heartbeats(2).await;
    dn.write(7, &test_support::data(7, 3000)).await;
    wait_until("the received replica", || {
        up.seen.lock().received == vec![7]
    })
    .await;

    // The hung namenode comes back: it gets the datanode's registration and a
    // full report with what it missed.
    let late = FakeNamenode::new(status(pb::HaState::Standby, 0));
    late.serve(hung, stop.clone());
    wait_until("the late namenode's registration and report", || {
        let seen = late.seen.lock();
        seen.registrations == 1 && seen.full_reports == vec![vec![7]]
    })
    .await;
    dn.write(8, &test_support::data(8, 100)).await;
    wait_until("the next replica", || late.seen.lock().received == vec![8]).await;
    wait_until("the next replica at the other namenode", || {
        up.seen.lock().received == vec![7, 8]
    })
    .await;
    dn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namenode_of_another_block_pool_is_not_adopted() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let good = FakeNamenode::new(status(pb::HaState::Active, 1));
    let stray = FakeNamenode::serving("BP-other", status(pb::HaState::Standby, 0));
    let addr1 = good.start(stop.clone()).await;
    let addr2 = stray.start(stop.clone()).await;
    let dn = Datanode::start(&[("nn1", addr1), ("nn2", addr2)]).await;

    wait_until("registration", || good.seen.lock().registrations == 1).await;
    // Asked again and again, never registered with.
    wait_until("handshakes retried", || stray.seen.lock().versions >= 3).await;
    assert_eq!(stray.seen.lock().registrations, 0);
    dn.write(7, &test_support::data(7, 100)).await;
    wait_until("the received replica", || {
        good.seen.lock().received == vec![7]
    })
    .await;
    dn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_is_committed_to_the_namenode_that_ordered_it() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let standby = FakeNamenode::new(status(pb::HaState::Standby, 0));
    // Orders the recovery, then turns standby before it is committed.
    let active = FakeNamenode::new(status(pb::HaState::Active, 1));
    active.refuse_commit.store(true, Ordering::Relaxed);
    let addr1 = standby.start(stop.clone()).await;
    let addr2 = active.start(stop.clone()).await;
    let dn = Datanode::start(&[("nn1", addr1), ("nn2", addr2)]).await;
    let block = dn.replica(5);
    active.heartbeats(2).await;
    standby.heartbeats(2).await;

    let located = pb::LocatedBlock {
        block: Some((&block).into()),
        locations: vec![test_support::datanode_info(dn.xfer, UUID)],
        ..Default::default()
    };
    active
        .order(pb::datanode_command::Command::Recover(pb::RecoverCommand {
            pool_id: POOL.into(),
            blocks: vec![pb::RecoveringBlock {
                block: Some(located),
                new_generation_stamp: 2000,
                new_length: None,
            }],
        }))
        .await;
    wait_until("the commit", || active.seen.lock().commits.len() == 1).await;
    let commit = active.seen.lock().commits[0].clone();
    assert_eq!(
        (
            commit.new_generation_stamp,
            commit.new_length,
            commit.new_targets
        ),
        (2000, 1000, vec![UUID.to_string()])
    );
    assert!(standby.seen.lock().commits.is_empty());
    // Refused as standby: the recovery ends quietly, ready to run again
    // when the new active orders it.
    wait_until("the recovery to end", || {
        dn.ctx.recovering.lock().is_empty()
    })
    .await;
    dn.stop().await;
}
