//! Quorum journal tests against real journalnodes on 127.0.0.1:0 in temp
//! dirs: a [`Cluster`] starts, stops and restarts them on the same port and
//! directory.

mod failures;
mod lease;
mod protocol;
mod recovery;
mod restart;
mod sim;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use rdfs_common::config::{Config, QuorumJournalUri};
use rdfs_proto::editlog::edit_record::Op;
use rdfs_proto::editlog::{EditRecord, SetReplication};
use rdfs_proto::q_journal_protocol_client::QJournalProtocolClient;

use crate::journal::Journal;
use crate::segment::{self, TxId};
use crate::{Journalnode, JournalnodeError, NamespaceStamp, QuorumClient, QuorumWriter};

pub(crate) const JOURNAL: &str = "ns1";
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);
/// Long enough that a test's own pauses never let it lapse by accident.
pub(crate) const LONG_LEASE: Duration = Duration::from_secs(60);

pub(crate) fn stamp() -> NamespaceStamp {
    NamespaceStamp {
        cluster_id: "CID-a".into(),
        namespace_id: 42,
        block_pool_id: "BP-42".into(),
    }
}

pub(crate) fn record(txid: TxId) -> EditRecord {
    EditRecord {
        txid,
        op: Some(Op::SetReplication(SetReplication {
            inode_id: 16384 + txid,
            replication: (txid % 7) as u32 + 1,
        })),
        ..Default::default()
    }
}

pub(crate) fn framed(first: TxId, count: u64) -> Bytes {
    let mut out = Vec::new();
    for txid in first..first + count {
        segment::encode_record(&record(txid), &mut out);
    }
    Bytes::from(out)
}

pub(crate) fn txids(records: &[EditRecord]) -> Vec<TxId> {
    records.iter().map(|r| r.txid).collect()
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), JournalnodeError>>,
    journal: Arc<Journal>,
}

pub(crate) struct TestJn {
    pub(crate) dir: PathBuf,
    pub(crate) addr: String,
    running: Option<Running>,
}

pub(crate) struct Cluster {
    _tmp: tempfile::TempDir,
    pub(crate) jns: Vec<TestJn>,
}

async fn launch(dir: &std::path::Path, addr: &str) -> (String, Running) {
    let mut config = Config::default();
    config.journalnode.edits_dir = dir.to_path_buf();
    config.journalnode.rpc_address = addr.to_string();
    let jn = Journalnode::start(&config)
        .await
        .expect("journalnode starts");
    let journal = jn.journal_for_test(JOURNAL);
    let addr = jn.address().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(jn.serve(async move {
        let _ = stopped.await;
    }));
    (
        addr,
        Running {
            stop,
            task,
            journal,
        },
    )
}

impl Cluster {
    pub(crate) async fn start(n: usize) -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut jns = Vec::new();
        for i in 0..n {
            let dir = tmp.path().join(format!("jn{i}"));
            let (addr, running) = launch(&dir, "127.0.0.1:0").await;
            jns.push(TestJn {
                dir,
                addr,
                running: Some(running),
            });
        }
        Self { _tmp: tmp, jns }
    }

    /// Formatted, with a client.
    pub(crate) async fn formatted(n: usize) -> (Self, QuorumClient) {
        let cluster = Self::start(n).await;
        let client = cluster.client();
        client.format(&stamp(), false).await.expect("format");
        (cluster, client)
    }

    pub(crate) fn uri(&self) -> QuorumJournalUri {
        QuorumJournalUri {
            journalnodes: self.jns.iter().map(|jn| jn.addr.clone()).collect(),
            journal_id: JOURNAL.to_string(),
        }
    }

    pub(crate) fn client(&self) -> QuorumClient {
        QuorumClient::new(&self.uri(), TIMEOUT)
    }

    pub(crate) fn journal(&self, i: usize) -> Arc<Journal> {
        Arc::clone(&self.jns[i].running.as_ref().expect("running").journal)
    }

    pub(crate) fn current_dir(&self, i: usize) -> PathBuf {
        self.jns[i].dir.join(JOURNAL).join("current")
    }

    pub(crate) async fn raw(&self, i: usize) -> QJournalProtocolClient<tonic::transport::Channel> {
        QJournalProtocolClient::connect(format!("http://{}", self.jns[i].addr))
            .await
            .expect("connect")
    }

    pub(crate) async fn stop(&mut self, i: usize) {
        let Some(running) = self.jns[i].running.take() else {
            return;
        };
        let _ = running.stop.send(());
        let mut task = running.task;
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(joined) => joined.expect("serve task").expect("serve"),
            Err(_) => {
                task.abort();
                let _ = task.await;
            }
        }
    }

    pub(crate) async fn restart(&mut self, i: usize) {
        self.stop(i).await;
        let (_, running) = launch(&self.jns[i].dir, &self.jns[i].addr).await;
        self.jns[i].running = Some(running);
    }

    /// Segment files of journalnode `i`: (first, last or None).
    pub(crate) fn segments(&self, i: usize) -> Vec<(TxId, Option<TxId>)> {
        segment::list_segments(&self.current_dir(i))
            .expect("list")
            .into_iter()
            .map(|s| (s.first, s.last))
            .collect()
    }

    /// The txids in journalnode `i`'s segment starting at `first`, empty
    /// while it has none (for waiting on a journalnode that lags).
    pub(crate) fn segment_txids_if_any(&self, i: usize, first: TxId) -> Vec<TxId> {
        let Ok(segments) = segment::list_segments(&self.current_dir(i)) else {
            return Vec::new();
        };
        segments
            .into_iter()
            .find(|s| s.first == first)
            .and_then(|seg| segment::read_segment(&seg.path).ok())
            .map_or_else(Vec::new, |contents| txids(&contents.records))
    }

    /// The txids in journalnode `i`'s segment starting at `first`.
    pub(crate) fn segment_txids(&self, i: usize, first: TxId) -> Vec<TxId> {
        let seg = segment::list_segments(&self.current_dir(i))
            .expect("list")
            .into_iter()
            .find(|s| s.first == first)
            .expect("segment exists");
        txids(&segment::read_segment(&seg.path).expect("read").records)
    }
}

/// A writer that has recovered, with a segment open at the journal's end.
pub(crate) async fn writer(client: &QuorumClient, id: &str) -> QuorumWriter {
    let writer = client
        .new_epoch(&stamp(), id, LONG_LEASE, true)
        .await
        .expect("new epoch");
    let last = writer.recover().await.expect("recover");
    writer.start_segment(last + 1).await.expect("start segment");
    writer
}

pub(crate) async fn write(writer: &QuorumWriter, first: TxId, count: u64) {
    writer
        .journal(first, count, framed(first, count))
        .await
        .expect("journal");
}

/// Waits until `check` holds, for calls a quorum call left running.
pub(crate) async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}
