//! Namespace lookups and inserts on the namenode's in-memory tree.
//!
//! Every namenode RPC resolves a path under the namesystem lock, and every
//! create inserts an inode into a directory's sorted child list, so these
//! bound how many operations the namenode can do per second (HDFS's
//! NNThroughputBenchmark measures the same things over RPC). The trees are
//! built outside the measurement with `FsState::apply`, the code that applies
//! live edits and replays the edit log, from the edits a namenode would log
//! (`Mkdir`, `AddFile`, `AddBlock`, `CloseFile`):
//!
//! - `lookup_1M_files/resolve_*`: `Namespace::resolve` of a 4-level path
//!   `/user/u<k>/d<dd>/part-<nnnnn>.parquet` in a namespace of 1,000,000
//!   one-block files (10 users × 100 directories × 1000 files), for one hot
//!   path and for 65,536 paths visited in a pseudo-random order (which
//!   misses the CPU caches as a busy namenode does).
//! - `lookup_1M_files/get_file_info_*`: the same through
//!   `Namesystem::get_file_info`, in process: path parsing, the namesystem
//!   read lock, resolution and the `FileStatus` the RPC returns.
//! - `insert_into_100k_dir/*`: adding a file under a directory that already
//!   has 100,000 children, at a pseudo-random position in its name order:
//!   `Namespace::insert` alone, and `FsState::apply` of the `AddFile` edit
//!   (which also sets the parent's mtime and adds the writer's lease). The
//!   directory is kept at 100,000 children: inserts are timed in batches of
//!   1000, each removed again outside the timing.
//!
//! Run: `cargo bench -p rdfs-micro-benches --bench namespace` (building the
//! 1M-file tree takes a few seconds and some hundreds of MiB).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rdfs_common::ids::{LAST_RESERVED_BLOCK_ID, LAST_RESERVED_GENERATION_STAMP, ROOT_INODE_ID};
use rdfs_namenode::apply::FsState;
use rdfs_namenode::edit_log::{MemoryJournal, Op};
use rdfs_namenode::namespace::{InodeId, NewInode, NewKind, Permission};
use rdfs_namenode::namesystem::{Caller, Namesystem, NamesystemConfig, empty_state};
use rdfs_namenode::storage::NamespaceInfo;
use rdfs_proto::editlog as edit;
use tokio_util::sync::CancellationToken;

const USERS: u64 = 10;
const DIRS_PER_USER: u64 = 100;
const FILES_PER_DIR: u64 = 1000;
const FILES: u64 = USERS * DIRS_PER_USER * FILES_PER_DIR;
const BIG_DIR_CHILDREN: u64 = 100_000;
const INSERT_BATCH: u64 = 1000;
const BLOCK_SIZE: u64 = 128 * 1024 * 1024;
const NOW: u64 = 1_790_000_000_000;

fn info() -> NamespaceInfo {
    NamespaceInfo {
        cluster_id: "CID-bench".into(),
        block_pool_id: "BP-1-127.0.0.1-1".into(),
        namespace_id: 1,
        layout_version: rdfs_common::ids::NAMENODE_LAYOUT_VERSION,
        ctime: 0,
    }
}

fn config() -> NamesystemConfig {
    NamesystemConfig::from_config(&rdfs_common::config::Config::default())
}

/// splitmix64: spreads the benchmarks' indices over names and paths.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn permission(owner: &str, mode: u32) -> Option<edit::PermissionStatus> {
    Some(edit::PermissionStatus {
        owner: owner.into(),
        group: "supergroup".into(),
        mode,
    })
}

/// Applies the edits a namenode logs, handing out inode and block ids as
/// it does.
struct Builder {
    state: FsState,
    next_block: i64,
    next_gs: u64,
}

impl Builder {
    fn new() -> Self {
        Self {
            state: empty_state(&info(), &config(), "hdfs", "supergroup", NOW),
            next_block: LAST_RESERVED_BLOCK_ID + 1,
            next_gs: LAST_RESERVED_GENERATION_STAMP + 1,
        }
    }

    fn apply(&mut self, op: Op) {
        self.state.apply(&op).expect("the edit applies");
    }

    fn next_inode(&mut self) -> InodeId {
        self.state
            .namespace
            .next_inode_id()
            .expect("inode ids left")
    }

    fn mkdir(&mut self, parent: InodeId, name: &str, owner: &str) -> InodeId {
        let id = self.next_inode();
        self.apply(Op::Mkdir(edit::Mkdir {
            inode_id: id,
            parent_id: parent,
            name: name.as_bytes().to_vec(),
            permission: permission(owner, 0o755),
            mtime: NOW,
            acl: Vec::new(),
        }));
        id
    }

    /// A closed file of one block of `length` bytes (`None`: no block).
    fn file(&mut self, parent: InodeId, name: &str, owner: &str, length: Option<u64>) {
        let id = self.next_inode();
        self.apply(Op::AddFile(edit::AddFile {
            inode_id: id,
            parent_id: parent,
            name: name.as_bytes().to_vec(),
            permission: permission(owner, 0o644),
            mtime: NOW,
            replication: 3,
            block_size: BLOCK_SIZE,
            client_name: "DFSClient_bench".into(),
            acl: Vec::new(),
        }));
        let last = length.map(|num_bytes| {
            let block = edit::BlockRef {
                block_id: self.next_block,
                generation_stamp: self.next_gs,
                num_bytes,
            };
            self.next_block += 1;
            self.next_gs += 1;
            self.apply(Op::AddBlock(edit::AddBlock {
                inode_id: id,
                previous: None,
                block: Some(edit::BlockRef {
                    num_bytes: 0,
                    ..block
                }),
            }));
            block
        });
        self.apply(Op::CloseFile(edit::CloseFile {
            inode_id: id,
            last,
            mtime: NOW,
            atime: NOW,
        }));
    }
}

fn file_path(n: u64) -> String {
    let leaf = n / FILES_PER_DIR;
    format!(
        "/user/u{}/d{:02}/part-{:05}.parquet",
        leaf / DIRS_PER_USER,
        leaf % DIRS_PER_USER,
        n % FILES_PER_DIR
    )
}

/// 1M one-block files at `/user/u<k>/d<dd>/part-<nnnnn>.parquet`.
fn million_files() -> FsState {
    let started = Instant::now();
    let mut b = Builder::new();
    let user = b.mkdir(ROOT_INODE_ID, "user", "hdfs");
    for u in 0..USERS {
        let owner = format!("u{u}");
        let home = b.mkdir(user, &owner, &owner);
        for d in 0..DIRS_PER_USER {
            let dir = b.mkdir(home, &format!("d{d:02}"), &owner);
            for f in 0..FILES_PER_DIR {
                let length = 100 * 1024 * 1024 + f * 4096;
                b.file(dir, &format!("part-{f:05}.parquet"), &owner, Some(length));
            }
        }
    }
    println!(
        "namespace: built {} files ({} inodes, {} blocks) in {:.1} s",
        FILES,
        b.state.namespace.inode_count(),
        b.state.blocks.len(),
        started.elapsed().as_secs_f64()
    );
    b.state
}

/// 65,536 existing paths in a pseudo-random order.
fn random_paths() -> Vec<String> {
    (0..65_536u64).map(|i| file_path(mix(i) % FILES)).collect()
}

/// The namesystem over the 1M-file tree (taking it over if it is built).
fn namesystem_of<'a>(
    namesystem: &'a mut Option<Namesystem>,
    tree: &mut Option<FsState>,
) -> &'a Namesystem {
    namesystem.get_or_insert_with(|| {
        let fs = tree.take().unwrap_or_else(million_files);
        Namesystem::new(
            info(),
            config(),
            fs,
            Arc::new(MemoryJournal::new()),
            CancellationToken::new(),
            false,
        )
    })
}

fn bench_lookup(c: &mut Criterion) {
    // Built on first use, so a filter that skips these skips the build.
    let mut tree: Option<FsState> = None;
    let mut namesystem: Option<Namesystem> = None;
    let hot = file_path(FILES / 2 + 517);
    let hot_components: Vec<&str> = rdfs_common::path::components(&hot).expect("a valid path");
    assert_eq!(hot_components.len(), 4);
    let paths = random_paths();
    let components: Vec<Vec<&str>> = paths
        .iter()
        .map(|p| rdfs_common::path::components(p).expect("a valid path"))
        .collect();

    let mut group = c.benchmark_group("lookup_1M_files");
    group.throughput(Throughput::Elements(1));
    group.bench_function("resolve_4_level_hot_path", |b| {
        let fs = tree.get_or_insert_with(million_files);
        assert!(
            fs.namespace
                .resolve(&hot_components)
                .expect("resolves")
                .last()
                .is_some()
        );
        b.iter(|| fs.namespace.resolve(black_box(&hot_components)));
    });
    group.bench_function("resolve_4_level_random_paths", |b| {
        let fs = tree.get_or_insert_with(million_files);
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 0xffff;
            fs.namespace.resolve(black_box(&components[i]))
        });
    });

    // An ordinary user, so the permission checks run as they do for most
    // calls.
    let caller = Caller::new("reader", Arc::from(Vec::new()), false, "127.0.0.1");
    group.bench_function("get_file_info_hot_path", |b| {
        let ns = namesystem_of(&mut namesystem, &mut tree);
        assert!(
            ns.get_file_info(&caller, &hot)
                .expect("a valid path")
                .is_some()
        );
        b.iter(|| ns.get_file_info(&caller, black_box(&hot)));
    });
    group.bench_function("get_file_info_random_paths", |b| {
        let ns = namesystem_of(&mut namesystem, &mut tree);
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 0xffff;
            ns.get_file_info(&caller, black_box(&paths[i]))
        });
    });
    group.finish();
}

/// `/big` with 100,000 closed, empty files of pseudo-random names.
fn big_directory() -> (FsState, InodeId) {
    let mut b = Builder::new();
    let big = b.mkdir(ROOT_INODE_ID, "big", "bench");
    for i in 0..BIG_DIR_CHILDREN {
        b.file(big, &format!("f{:016x}", mix(i)), "bench", None);
    }
    (b.state, big)
}

/// Names that fall between the existing ones.
fn new_names() -> Vec<String> {
    (0..INSERT_BATCH)
        .map(|i| format!("f{:016x}", mix(BIG_DIR_CHILDREN + i)))
        .collect()
}

/// Runs `insert` `iters` times in batches of [`INSERT_BATCH`], timing only
/// it; `remove` then takes each batch's inodes out again.
fn batched(
    fs: &mut FsState,
    iters: u64,
    names: &[String],
    mut insert: impl FnMut(&mut FsState, &str) -> InodeId,
    mut remove: impl FnMut(&mut FsState, InodeId),
) -> Duration {
    let mut timed = Duration::ZERO;
    let mut added = Vec::with_capacity(INSERT_BATCH as usize);
    let mut left = iters;
    while left > 0 {
        let batch = left.min(INSERT_BATCH) as usize;
        let started = Instant::now();
        for name in &names[..batch] {
            added.push(insert(fs, name));
        }
        timed += started.elapsed();
        for id in added.drain(..) {
            remove(fs, id);
        }
        left -= batch as u64;
    }
    timed
}

fn bench_insert(c: &mut Criterion) {
    let names = new_names();
    let mut big: Option<(FsState, InodeId)> = None;
    let mut group = c.benchmark_group("insert_into_100k_dir");
    group.throughput(Throughput::Elements(1));

    group.bench_function("namespace_insert", |b| {
        let (fs, dir) = big.get_or_insert_with(big_directory);
        let dir = *dir;
        let owner = fs.namespace.interner.intern("bench");
        let group = fs.namespace.interner.intern("supergroup");
        let permission = Permission {
            owner,
            group,
            mode: 0o644,
        };
        b.iter_custom(|iters| {
            batched(
                fs,
                iters,
                &names,
                |fs, name| {
                    let id = fs.namespace.next_inode_id().expect("inode ids left");
                    fs.namespace
                        .insert(NewInode {
                            id,
                            parent: dir,
                            name: name.as_bytes(),
                            permission,
                            mtime: NOW,
                            atime: NOW,
                            kind: NewKind::File {
                                replication: 3,
                                block_size: BLOCK_SIZE,
                                writer: Some("DFSClient_bench".into()),
                            },
                        })
                        .expect("inserts");
                    id
                },
                |fs, id| {
                    fs.namespace.remove_subtree(id).expect("removes");
                },
            )
        });
        assert_eq!(
            fs.namespace.get(dir).expect("exists").children().len() as u64,
            BIG_DIR_CHILDREN
        );
    });

    group.bench_function("apply_add_file_edit", |b| {
        let (fs, dir) = big.get_or_insert_with(big_directory);
        let dir = *dir;
        b.iter_custom(|iters| {
            batched(
                fs,
                iters,
                &names,
                |fs, name| {
                    let id = fs.namespace.next_inode_id().expect("inode ids left");
                    fs.apply(&Op::AddFile(edit::AddFile {
                        inode_id: id,
                        parent_id: dir,
                        name: name.as_bytes().to_vec(),
                        permission: permission("bench", 0o644),
                        mtime: NOW,
                        replication: 3,
                        block_size: BLOCK_SIZE,
                        client_name: "DFSClient_bench".into(),
                        acl: Vec::new(),
                    }))
                    .expect("applies");
                    id
                },
                |fs, id| {
                    fs.apply(&Op::Delete(edit::Delete {
                        inode_id: id,
                        mtime: NOW,
                    }))
                    .expect("deletes");
                },
            )
        });
        assert_eq!(
            fs.namespace.get(dir).expect("exists").children().len() as u64,
            BIG_DIR_CHILDREN
        );
    });
    group.finish();
}

criterion_group!(benches, bench_lookup, bench_insert);
criterion_main!(benches);
