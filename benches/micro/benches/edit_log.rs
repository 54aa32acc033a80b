//! Edit-log append and group commit on the real file journal.
//!
//! Every namespace change is appended to the edit log while the namesystem
//! lock is held and must be durable before the RPC answers: the namesystem
//! calls `Journal::append` under the lock and awaits `Journal::sync` after
//! releasing it, so edits of concurrent RPCs share one fdatasync (group
//! commit). This drives `rdfs_namenode::edit_log::FileJournal` through that
//! same `Journal` trait, in a temporary directory (`TMPDIR` picks the disk),
//! with `AddFile` edits like the ones `create` logs for
//! `/bench/dir/f<n>`:
//!
//! - `append_only`: the part that runs under the namesystem lock (encoding
//!   the record into the pending batch); the batch is synced outside the
//!   timing every 4096 edits.
//! - `single_writer_synced`: one writer appending an edit and awaiting its
//!   sync, one at a time: one fsync per edit, the latency floor of a
//!   mutating RPC.
//! - `concurrent_writers_synced/{16,64}`: that many tokio tasks, each
//!   appending and syncing edits in a loop: the time per edit falls with the
//!   number of edits each fsync covers. Each run prints the edits per fsync.
//!
//! Times are per edit, so criterion's throughput is edits/s. These hit a real
//! fsync: the sample size is small and the measurement short.
//!
//! Run: `cargo bench -p rdfs-micro-benches --bench edit_log`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rdfs_namenode::edit_log::{FileJournal, Journal, Op};
use rdfs_proto::editlog as edit;
use tokio::runtime::Runtime;

/// The inode of `/bench/dir`, as if made by two mkdirs after the root.
const DIR_INODE: u64 = rdfs_common::ids::ROOT_INODE_ID + 2;
const BLOCK_SIZE: u64 = 128 * 1024 * 1024;

/// The edit `create("/bench/dir/f<n>")` logs.
fn add_file(n: u64, client: &str) -> Op {
    Op::AddFile(edit::AddFile {
        inode_id: DIR_INODE + 1 + n,
        parent_id: DIR_INODE,
        name: format!("f{n}").into_bytes(),
        permission: Some(edit::PermissionStatus {
            owner: "bench".into(),
            group: "supergroup".into(),
            mode: 0o644,
        }),
        mtime: 1_790_000_000_000 + n,
        replication: 3,
        block_size: BLOCK_SIZE,
        client_name: client.into(),
        acl: Vec::new(),
    })
}

/// A journal writing a new segment into its own temporary directory.
struct TempJournal {
    journal: Arc<FileJournal>,
    _dir: tempfile::TempDir,
}

impl TempJournal {
    fn open() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let current: PathBuf = dir.path().to_path_buf();
        let journal = FileJournal::open(std::slice::from_ref(&current), 1).expect("opens");
        Self {
            journal: Arc::new(journal),
            _dir: dir,
        }
    }

    fn close(self, runtime: &Runtime) {
        runtime
            .block_on(self.journal.close())
            .expect("closes the segment");
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn bench_edit_log(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("edit_log");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));

    {
        let log = TempJournal::open();
        let journal = &log.journal;
        let mut n = 0u64;
        group.bench_function("append_only", |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(4096);
                    let started = Instant::now();
                    for _ in 0..batch {
                        journal.append(add_file(n, "bench"), None).expect("appends");
                        n += 1;
                    }
                    timed += started.elapsed();
                    left -= batch;
                    runtime
                        .block_on(journal.sync(journal.last_txid()))
                        .expect("syncs");
                }
                timed
            });
        });
        log.close(&runtime);
    }

    {
        let log = TempJournal::open();
        let journal = &log.journal;
        let mut n = 0u64;
        let syncs_before = journal.syncs();
        group.bench_function("single_writer_synced", |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let txid = journal.append(add_file(n, "bench"), None).expect("appends");
                        journal.sync(txid).await.expect("syncs");
                        n += 1;
                    }
                    started.elapsed()
                })
            });
        });
        report_batching("single_writer_synced", n, journal.syncs() - syncs_before);
        log.close(&runtime);
    }

    for writers in [16u64, 64] {
        let log = TempJournal::open();
        let journal = &log.journal;
        let mut edits = 0u64;
        let syncs_before = journal.syncs();
        group.bench_function(format!("concurrent_writers_synced/{writers}"), |b| {
            b.iter_custom(|iters| {
                let per_writer = iters.div_ceil(writers);
                let first = edits;
                edits += per_writer * writers;
                let elapsed = runtime.block_on(async {
                    let started = Instant::now();
                    let tasks: Vec<_> = (0..writers)
                        .map(|w| {
                            let journal = Arc::clone(journal);
                            tokio::spawn(async move {
                                let client = format!("bench-{w}");
                                for i in 0..per_writer {
                                    let n = first + w * per_writer + i;
                                    let txid = journal
                                        .append(add_file(n, &client), None)
                                        .expect("appends");
                                    journal.sync(txid).await.expect("syncs");
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("writer task");
                    }
                    started.elapsed()
                });
                // Time for `iters` edits, though whole rounds ran.
                elapsed.mul_f64(iters as f64 / (per_writer * writers) as f64)
            });
        });
        report_batching(
            &format!("concurrent_writers_synced/{writers}"),
            edits,
            journal.syncs() - syncs_before,
        );
        log.close(&runtime);
    }
    group.finish();
}

fn report_batching(name: &str, edits: u64, syncs: u64) {
    println!(
        "edit_log/{name}: {edits} synced edits in {syncs} fsyncs ({:.1} edits per fsync)",
        edits as f64 / syncs.max(1) as f64
    );
}

criterion_group!(benches, bench_edit_log);
criterion_main!(benches);
