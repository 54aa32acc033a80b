//! `rdfs bench nn`: namenode operations per second, as HDFS's
//! NNThroughputBenchmark measures them.
//!
//! Over RPC (the default) it drives the cluster `fs.default_fs` names through
//! the same client `rdfs dfs` uses, so the figure includes the transport.
//! `-inprocess` drives a namesystem built in this process with a file edit
//! log (or, with `-qjournal URI`, the quorum of running journalnodes it
//! names), so the cost of the namespace and the edit log can be told from
//! that of the transport.
//!
//! Each of `-threads` tasks works on its own files `<dir>/t<T>/d<D>/f<I>`
//! (`-filesPerDir` files per leaf directory, as in NNThroughputBenchmark).
//! Operations that need existing files (open, fileStatus, listStatus,
//! rename, delete) first create them, untimed. `create` is create followed by
//! complete, as in NNThroughputBenchmark: two synced edits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use rdfs_client::{CreateOptions, DfsClient};
use rdfs_namenode::edit_log::{FileJournal, Journal};
use rdfs_namenode::ha::journal::QuorumJournal;
use rdfs_namenode::namesystem::{Caller, Namesystem, NamesystemConfig, empty_state};
use rdfs_namenode::storage::NamespaceInfo;

use super::{Options, percentile, scratch};
use crate::generic::GenericOptions;

/// What `open` asks for, as an HDFS client's first getBlockLocations does
/// (`dfs.client.read.prefetch.size`: ten blocks).
const OPEN_PREFETCH: u64 = 10 * 256 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Mkdirs,
    Open,
    FileStatus,
    ListStatus,
    Rename,
    Delete,
}

impl Op {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "create" => Self::Create,
            "mkdirs" => Self::Mkdirs,
            "open" => Self::Open,
            "fileStatus" => Self::FileStatus,
            "listStatus" => Self::ListStatus,
            "rename" => Self::Rename,
            "delete" => Self::Delete,
            other => bail!(
                "-op {other}: expected create, mkdirs, open, fileStatus, listStatus, rename or delete"
            ),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Mkdirs => "mkdirs",
            Self::Open => "open",
            Self::FileStatus => "fileStatus",
            Self::ListStatus => "listStatus",
            Self::Rename => "rename",
            Self::Delete => "delete",
        }
    }

    fn needs_files(self) -> bool {
        !matches!(self, Self::Create | Self::Mkdirs)
    }

    /// Synced edits per operation.
    fn edits(self) -> u64 {
        match self {
            Self::Create => 2,
            Self::Mkdirs | Self::Rename | Self::Delete => 1,
            Self::Open | Self::FileStatus | Self::ListStatus => 0,
        }
    }
}

/// Where each thread's files live.
#[derive(Clone)]
struct Layout {
    base: String,
    files_per_dir: u64,
}

impl Layout {
    fn thread_dir(&self, thread: usize) -> String {
        format!("{}/t{thread}", self.base)
    }

    fn dir(&self, thread: usize, index: u64) -> String {
        format!("{}/t{thread}/d{}", self.base, index / self.files_per_dir)
    }

    fn file(&self, thread: usize, index: u64) -> String {
        format!("{}/f{index}", self.dir(thread, index))
    }
}

/// What the operations run against.
#[derive(Clone)]
enum Target {
    InProcess { ns: Arc<Namesystem>, caller: Caller },
    Rpc { client: DfsClient },
}

impl Target {
    async fn create(&self, path: &str, thread: usize) -> Result<()> {
        match self {
            Self::InProcess { ns, caller } => {
                let holder = format!("bench-{thread}");
                let status = ns
                    .create(caller, path, 0o644, &holder, false, false, 3, 256 << 20)
                    .await?;
                ns.complete(path, &holder, None, status.file_id).await?;
            }
            Self::Rpc { client } => {
                let options = CreateOptions {
                    create_parent: false,
                    ..CreateOptions::default()
                };
                client.create(path, options).await?.close().await?;
            }
        }
        Ok(())
    }

    async fn mkdirs(&self, path: &str) -> Result<()> {
        let created = match self {
            Self::InProcess { ns, caller } => ns.mkdirs(caller, path, 0o755, true).await?,
            Self::Rpc { client } => client.mkdirs(path, 0o755, true).await?,
        };
        if !created {
            bail!("mkdirs {path} returned false");
        }
        Ok(())
    }

    async fn open(&self, path: &str) -> Result<()> {
        match self {
            Self::InProcess { ns, caller } => {
                ns.get_block_locations(caller, path, 0, OPEN_PREFETCH)?;
            }
            Self::Rpc { client } => {
                client.get_block_locations(path, 0, OPEN_PREFETCH).await?;
            }
        }
        Ok(())
    }

    async fn file_status(&self, path: &str) -> Result<()> {
        let found = match self {
            Self::InProcess { ns, caller } => ns.get_file_info(caller, path)?.is_some(),
            Self::Rpc { client } => client.get_file_info(path).await?.is_some(),
        };
        if !found {
            bail!("{path} not found");
        }
        Ok(())
    }

    async fn list_status(&self, dir: &str) -> Result<()> {
        let found = match self {
            Self::InProcess { ns, caller } => ns.get_listing(caller, dir, b"", false)?.is_some(),
            Self::Rpc { client } => client.list(dir).await?.is_some(),
        };
        if !found {
            bail!("{dir} not found");
        }
        Ok(())
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        let renamed = match self {
            Self::InProcess { ns, caller } => ns.rename(caller, src, dst).await?,
            Self::Rpc { client } => client.rename(src, dst).await?,
        };
        if !renamed {
            bail!("rename {src} to {dst} returned false");
        }
        Ok(())
    }

    async fn delete(&self, path: &str, recursive: bool) -> Result<bool> {
        Ok(match self {
            Self::InProcess { ns, caller } => ns.delete(caller, path, recursive).await?,
            Self::Rpc { client } => client.delete(path, recursive).await?,
        })
    }

    async fn run(&self, op: Op, layout: &Layout, thread: usize, index: u64) -> Result<()> {
        let file = layout.file(thread, index);
        match op {
            Op::Create => self.create(&file, thread).await,
            Op::Mkdirs => self.mkdirs(&file).await,
            Op::Open => self.open(&file).await,
            Op::FileStatus => self.file_status(&file).await,
            Op::ListStatus => self.list_status(&layout.dir(thread, index)).await,
            Op::Rename => self.rename(&file, &format!("{file}.r")).await,
            Op::Delete => {
                if !self.delete(&file, false).await? {
                    bail!("delete {file} returned false");
                }
                Ok(())
            }
        }
    }
}

struct Plan {
    op: Op,
    threads: usize,
    per_thread: u64,
    layout: Layout,
}

pub(super) fn run(args: &[String], generic: &GenericOptions) -> Result<()> {
    let options = Options::parse(
        args,
        &[
            "op",
            "threads",
            "files",
            "filesPerDir",
            "dir",
            "qjournal",
            "clients",
            "baseDir",
            "permissions",
        ],
        &["inprocess", "keepResults"],
    )?;
    let op = Op::parse(options.value("op").unwrap_or("create"))?;
    let threads = options.number("threads", 1)?.clamp(1, 10_000) as usize;
    let files = options.number("files", 10_000)?.max(threads as u64);
    let plan = Plan {
        op,
        threads,
        per_thread: files / threads as u64,
        layout: Layout {
            base: options
                .value("baseDir")
                .unwrap_or("/benchmarks/NNThroughput")
                .trim_end_matches('/')
                .to_string(),
            files_per_dir: options.number("filesPerDir", 4)?.max(1),
        },
    };
    if options.has("inprocess") {
        run_in_process(&options, plan)
    } else {
        if options.has("qjournal") || options.has("dir") || options.has("permissions") {
            bail!("-qjournal, -dir and -permissions go with -inprocess");
        }
        let config = generic.load()?;
        let runtime = crate::generic::runtime()?;
        runtime.block_on(async move {
            // One connection per 16 threads: HTTP/2 multiplexes the calls of
            // several threads as Hadoop IPC shares a connection per user.
            let connections = options
                .number("clients", (threads as u64).div_ceil(16))?
                .clamp(1, threads as u64);
            let mut targets = Vec::new();
            for _ in 0..connections {
                targets.push(Target::Rpc {
                    client: super::cluster_client(&config)?,
                });
            }
            let label = format!(
                "over RPC to {} ({connections} connection{})",
                config.fs.default_fs,
                if connections == 1 { "" } else { "s" }
            );
            let outcome = measure(&plan, &targets, &label, "rpc").await;
            if !options.has("keepResults") {
                let cleaned = targets[0].delete(&plan.layout.base, true).await;
                if let Err(err) = cleaned {
                    eprintln!("bench: could not remove {}: {err:#}", plan.layout.base);
                }
            }
            outcome.map(|_| ())
        })
    }
}

fn run_in_process(options: &Options, plan: Plan) -> Result<()> {
    let (dir, _guard) = scratch(options)?;
    let current = dir.join("current");
    std::fs::create_dir_all(&current)
        .with_context(|| format!("cannot create {}", current.display()))?;
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
        let mut config = NamesystemConfig::from_config(&rdfs_common::config::Config::default());
        // `-permissions off` measures what the checks cost.
        config.permissions_enabled = options.value("permissions") != Some("off");
        let (file_journal, quorum) = match options.value("qjournal") {
            None => (
                Some(Arc::new(FileJournal::open(
                    std::slice::from_ref(&current),
                    1,
                )?)),
                None,
            ),
            Some(uri) => (None, Some(quorum_journal(uri, &info).await?)),
        };
        let journal: Arc<dyn Journal> = match (&file_journal, &quorum) {
            (Some(file), _) => Arc::clone(file) as Arc<dyn Journal>,
            (None, Some(quorum)) => Arc::clone(quorum) as Arc<dyn Journal>,
            (None, None) => bail!("no edit log"),
        };
        let state = empty_state(&info, &config, "bench", "supergroup", 0);
        let ns = Arc::new(Namesystem::new(
            info,
            config,
            state,
            Arc::clone(&journal),
            CancellationToken::new(),
            false,
        ));
        // An ordinary user (not the superuser), so every permission check
        // runs: the namespace's root is theirs.
        let caller = Caller::new(
            "bench",
            Arc::from(vec!["bench".to_string()]),
            false,
            "127.0.0.1",
        );
        let target = Target::InProcess { ns, caller };
        let label = match options.value("qjournal") {
            Some(uri) => format!("in-process, edit log through the quorum {uri}"),
            None => "in-process, edit log in a local name dir".to_string(),
        };
        let syncs_before = file_journal.as_ref().map_or(0, |j| j.syncs());
        let ops = measure(&plan, std::slice::from_ref(&target), &label, "inprocess").await?;
        if let Some(file) = &file_journal
            && plan.op.edits() > 0
        {
            let edits = plan.op.edits() * ops;
            let syncs = file.syncs() - syncs_before;
            println!(
                "group commit:       {syncs} fsyncs for {edits} edits ({:.1} edits per fsync)",
                edits as f64 / syncs.max(1) as f64
            );
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

/// Prepares the namespace for `plan`, times its operations spread over
/// `targets` (thread t uses targets[t % len]), prints the figures and
/// returns the number of operations timed.
async fn measure(plan: &Plan, targets: &[Target], label: &str, mode: &str) -> Result<u64> {
    let Plan {
        op,
        threads,
        per_thread,
        ref layout,
    } = *plan;
    let setup = &targets[0];
    if setup.delete(&layout.base, true).await? {
        eprintln!("bench: removed {} left by an earlier run", layout.base);
    }
    // Leaf directories exist before the timed run, so each operation
    // measures one file or directory, not its parents.
    let mut tasks = tokio::task::JoinSet::new();
    for thread in 0..threads {
        let target = targets[thread % targets.len()].clone();
        let layout = layout.clone();
        tasks.spawn(async move {
            target.mkdirs(&layout.thread_dir(thread)).await?;
            for d in 0..per_thread.div_ceil(layout.files_per_dir) {
                target
                    .mkdirs(&layout.dir(thread, d * layout.files_per_dir))
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("set-up thread panicked")??;
    }
    if op.needs_files() {
        let started = Instant::now();
        run_threads(Op::Create, threads, per_thread, layout, targets).await?;
        eprintln!(
            "bench: created {} files to {} in {:.1} s (untimed)",
            threads as u64 * per_thread,
            op.name(),
            started.elapsed().as_secs_f64()
        );
    }

    let started = Instant::now();
    let mut latencies = run_threads(op, threads, per_thread, layout, targets).await?;
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let ops = latencies.len() as u64;
    let rate = ops as f64 / elapsed.as_secs_f64();
    println!(
        "rdfs bench nn -op {}: {threads} threads, {ops} operations, {label}",
        op.name()
    );
    match op.edits() {
        0 => println!("throughput:         {rate:.0} ops/s"),
        edits => println!(
            "throughput:         {rate:.0} ops/s ({:.0} synced edits/s)",
            rate * edits as f64
        ),
    }
    println!(
        "latency:            p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        percentile(&latencies, 0.5).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6,
        percentile(&latencies, 1.0).as_secs_f64() * 1e6
    );
    println!("figure nn_{}_{mode}_t{threads} {rate:.0} ops/s", op.name());
    Ok(ops)
}

/// Runs `op` on every thread's files and returns each call's latency.
async fn run_threads(
    op: Op,
    threads: usize,
    per_thread: u64,
    layout: &Layout,
    targets: &[Target],
) -> Result<Vec<Duration>> {
    let mut tasks = tokio::task::JoinSet::new();
    for thread in 0..threads {
        let target = targets[thread % targets.len()].clone();
        let layout = layout.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(per_thread as usize);
            for index in 0..per_thread {
                let started = Instant::now();
                target
                    .run(op, &layout, thread, index)
                    .await
                    .with_context(|| format!("{} on thread {thread}", op.name()))?;
                latencies.push(started.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(threads * per_thread as usize);
    while let Some(joined) = tasks.join_next().await {
        latencies.extend(joined.context("benchmark thread panicked")??);
    }
    Ok(latencies)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_puts_files_per_dir_files_in_each_leaf() {
        let layout = Layout {
            base: "/b".into(),
            files_per_dir: 4,
        };
        assert_eq!(layout.file(2, 0), "/b/t2/d0/f0");
        assert_eq!(layout.file(2, 3), "/b/t2/d0/f3");
        assert_eq!(layout.file(2, 4), "/b/t2/d1/f4");
        assert_eq!(layout.dir(0, 9), "/b/t0/d2");
    }

    #[test]
    fn every_op_named_on_the_command_line_parses_back() {
        for op in [
            Op::Create,
            Op::Mkdirs,
            Op::Open,
            Op::FileStatus,
            Op::ListStatus,
            Op::Rename,
            Op::Delete,
        ] {
            assert_eq!(Op::parse(op.name()).ok(), Some(op));
        }
        assert!(Op::parse("stat").is_err());
    }
}
