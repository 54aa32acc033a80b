//! `rdfs bench nn`: namenode operations per second (HDFS's
//! NNThroughputBenchmark). `-inprocess` drives the namesystem and a file
//! edit log directly, without RPC, so the cost of the namespace and the edit
//! log can be told from that of the transport. `-qjournal URI` writes the
//! edit log through a quorum of running journalnodes instead (HA), taking
//! over the journal id it names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio_util::sync::CancellationToken;

use rdfs_namenode::edit_log::{FileJournal, Journal};
use rdfs_namenode::ha::journal::QuorumJournal;
use rdfs_namenode::namesystem::{Caller, Namesystem, NamesystemConfig, empty_state};
use rdfs_namenode::storage::NamespaceInfo;

use super::{Options, scratch};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(super) fn run(args: &[String]) -> Result<()> {
    let options = Options::parse(
        args,
        &["op", "threads", "files", "dir", "qjournal"],
        &["inprocess"],
    )?;
    let op = options.value("op").unwrap_or("create").to_string();
    if op != "create" {
        bail!("-op {op}: only create is measured so far");
    }
    if !options.has("inprocess") {
        bail!("only -inprocess runs so far (over RPC comes with the benchmarks issue)");
    }
    let threads = options.number("threads", 1)?.max(1) as usize;
    let files = options.number("files", 10_000)?.max(threads as u64);
    let (dir, _guard) = scratch(&options)?;
    let current = dir.join("current");
    std::fs::create_dir_all(&current)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let info = NamespaceInfo {
            cluster_id: "CID-bench".into(),
            block_pool_id: "BP-1-127.0.0.1-1".into(),
            namespace_id: 1,
            layout_version: rdfs_common::ids::NAMENODE_LAYOUT_VERSION,
            ctime: 0,
        };
        let config = NamesystemConfig::from_config(&rdfs_common::config::Config::default());
        let (file_journal, quorum) = match options.value("qjournal") {
            None => (Some(Arc::new(FileJournal::open(std::slice::from_ref(&current), 1)?)), None),
            Some(uri) => (None, Some(quorum_journal(uri, &info).await?)),
        };
        let journal: Arc<dyn Journal> = match (&file_journal, &quorum) {
            (Some(file), _) => Arc::clone(file) as Arc<dyn Journal>,
            (None, Some(quorum)) => Arc::clone(quorum) as Arc<dyn Journal>,
            (None, None) => bail!("no edit log"),
        };
        let state = empty_state(&info, &config, "bench", "supergroup", 0);
        let ns = Arc::new(Namesystem::new(info, config, state, Arc::clone(&journal), CancellationToken::new(), false));
        let caller = Caller { user: "bench".into(), machine: "127.0.0.1".into() };
        for t in 0..threads {
            ns.mkdirs(&caller, &format!("/bench/t{t}"), 0o755, true).await?;
        }
        let syncs_before = file_journal.as_ref().map_or(0, |j| j.syncs());
        let per_thread = files / threads as u64;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..threads {
            let ns = Arc::clone(&ns);
            let caller = caller.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_thread as usize);
                let client = format!("bench-{t}");
                for i in 0..per_thread {
                    let path = format!("/bench/t{t}/f{i}");
                    let op_started = Instant::now();
                    let status = ns.create(&caller, &path, 0o644, &client, false, false, 3, 256 << 20).await?;
                    ns.complete(&path, &client, None, status.file_id).await?;
                    latencies.push(op_started.elapsed());
                }
                Ok::<_, rdfs_namenode::NamenodeError>(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await??);
        }
        let elapsed = started.elapsed();
        let syncs = file_journal.as_ref().map(|j| j.syncs() - syncs_before);
        latencies.sort_unstable();
        let ops = latencies.len() as f64;
        println!(
            "rdfs bench nn -op create -inprocess: {threads} threads, {} creates (create + complete, 2 synced edits each), edit log {}",
            latencies.len(),
            options.value("qjournal").map_or("in a local name dir".to_string(), |uri| format!("through the quorum {uri}"))
        );
        println!("throughput:         {:.0} creates/s ({:.0} synced edits/s)", ops / elapsed.as_secs_f64(), 2.0 * ops / elapsed.as_secs_f64());
        println!(
            "latency:            p50 {:.0} us, p99 {:.0} us",
            percentile(&latencies, 0.5).as_secs_f64() * 1e6,
            percentile(&latencies, 0.99).as_secs_f64() * 1e6
        );
        if let Some(syncs) = syncs {
            println!("group commit:       {syncs} fsyncs for {:.0} edits ({:.1} edits per fsync)", 2.0 * ops, 2.0 * ops / syncs.max(1) as f64);
        }
        match (&file_journal, &quorum) {
            (Some(file), _) => file.close().await?,
            (None, Some(quorum)) => {
                quorum.close().await?;
            }
            _ => {}
        }
        Ok(())
    })
}

/// Takes over the journal `uri` names (formatting it for this benchmark's
/// namespace) and opens a quorum journal at txid 1.
async fn quorum_journal(uri: &str, info: &NamespaceInfo) -> Result<Arc<QuorumJournal>> {
    let uri = rdfs_common::config::QuorumJournalUri::parse(uri)?;
    let client = rdfs_qjournal::QuorumClient::new(&uri, Duration::from_secs(10));
    let stamp = rdfs_namenode::ha::node::stamp_of(info);
    client.format(&stamp, true).await?;
    let writer = client
        .new_epoch(&stamp, "bench", Duration::from_secs(3), true)
        .await?;
    writer.recover().await?;
    writer.start_segment(1).await?;
    Ok(Arc::new(QuorumJournal::new(
        Arc::new(writer),
        1,
        CancellationToken::new(),
    )))
}
