//! `rdfs bench namespace`: memory per file+block, fsimage save and load.

use std::time::Instant;

use anyhow::{Context, Result};

use rdfs_common::protocol::DatanodeId;
use rdfs_namenode::apply::FsState;
use rdfs_namenode::edit_log::Op;
use rdfs_namenode::namesystem::{NamesystemConfig, empty_state, replay};
use rdfs_namenode::storage::NamespaceInfo;
use rdfs_proto::editlog as edit;

use super::{Options, resident_bytes, scratch};

const FILES_PER_DIR: u64 = 1000;
const DIRS_PER_PROJECT: u64 = 100;
const BLOCK_SIZE: u64 = 256 * 1024 * 1024;

/// Files of a realistic tree: `/user/u<k>/project<p>/day<d>/part-<n>.parquet`.
struct TreeBuilder {
    next_inode: u64,
    next_block: i64,
    next_gs: u64,
    dirs: std::collections::HashMap<String, u64>,
    now: u64,
}

impl TreeBuilder {
    fn new() -> Self {
        Self {
            next_inode: rdfs_common::ids::ROOT_INODE_ID + 1,
            next_block: rdfs_common::ids::LAST_RESERVED_BLOCK_ID + 1,
            next_gs: rdfs_common::ids::LAST_RESERVED_GENERATION_STAMP + 1,
            dirs: std::collections::HashMap::new(),
            now: 1_790_000_000_000,
        }
    }

    fn permission(owner: &str) -> Option<edit::PermissionStatus> {
        Some(edit::PermissionStatus {
            owner: owner.into(),
            group: "supergroup".into(),
            mode: 0o755,
        })
    }

    fn dir(&mut self, path: &str, parent: u64, name: &str, owner: &str, out: &mut Vec<Op>) -> u64 {
        if let Some(id) = self.dirs.get(path) {
            return *id;
        }
        let id = self.next_inode;
        self.next_inode += 1;
        out.push(Op::Mkdir(edit::Mkdir {
            inode_id: id,
            parent_id: parent,
            name: name.as_bytes().to_vec(),
            permission: Self::permission(owner),
            mtime: self.now,
            acl: Vec::new(),
        }));
        self.dirs.insert(path.to_string(), id);
        id
    }

    /// The edits that create file number `n` with one full block.
    fn file(&mut self, n: u64, out: &mut Vec<Op>) -> (i64, u64) {
        let leaf = n / FILES_PER_DIR;
        let project = leaf / DIRS_PER_PROJECT;
        let user = format!("u{}", project % 100);
        let user_dir = self.dir(
            "/user",
            rdfs_common::ids::ROOT_INODE_ID,
            "user",
            "hdfs",
            out,
        );
        let home = self.dir(&format!("/user/{user}"), user_dir, &user, &user, out);
        let project_name = format!("project{project}");
        let project_dir = self.dir(
            &format!("/user/{user}/{project_name}"),
            home,
            &project_name,
            &user,
            out,
        );
        let day = format!("day={:04}", leaf % DIRS_PER_PROJECT);
        let leaf_dir = self.dir(
            &format!("/user/{user}/{project_name}/{day}"),
            project_dir,
            &day,
            &user,
            out,
        );
        let inode = self.next_inode;
        self.next_inode += 1;
        self.now += 1;
        out.push(Op::AddFile(edit::AddFile {
            inode_id: inode,
            parent_id: leaf_dir,
            name: format!("part-{:05}.parquet", n % FILES_PER_DIR).into_bytes(),
            permission: Self::permission(&user),
            mtime: self.now,
            replication: 3,
            block_size: BLOCK_SIZE,
            client_name: "bench".into(),
            acl: Vec::new(),
        }));
        let (block, gs) = (self.next_block, self.next_gs);
        self.next_block += 1;
        self.next_gs += 1;
        out.push(Op::AddBlock(edit::AddBlock {
            inode_id: inode,
            previous: None,
            block: Some(edit::BlockRef {
                block_id: block,
                generation_stamp: gs,
                num_bytes: 0,
            }),
        }));
        let length = 100 * 1024 * 1024 + (n % 1000) * 4096;
        out.push(Op::CloseFile(edit::CloseFile {
            inode_id: inode,
            last: Some(edit::BlockRef {
                block_id: block,
                generation_stamp: gs,
                num_bytes: length,
            }),
            mtime: self.now,
            atime: self.now,
        }));
        (block, gs)
    }
}

fn info() -> NamespaceInfo {
    NamespaceInfo {
        cluster_id: "CID-bench".into(),
        block_pool_id: "BP-1-127.0.0.1-1".into(),
        namespace_id: 1,
        layout_version: rdfs_common::ids::NAMENODE_LAYOUT_VERSION,
        ctime: 0,
    }
}

/// Three datanodes hold a replica of every block, as after block reports.
fn report_replicas(state: &mut FsState, blocks: &[(i64, u64, u64)]) {
    let nodes: Vec<u32> = (0..3u16)
        .map(|i| {
            state
                .datanodes
                .register(DatanodeId {
                    ip_addr: "127.0.0.1".into(),
                    datanode_uuid: format!("dn-{i}"),
                    xfer_port: 9866 + i,
                    ..Default::default()
                })
                .0
        })
        .collect();
    let FsState {
        blocks: bm,
        datanodes,
        ..
    } = state;
    for &(block, gs, length) in blocks {
        for dn in &nodes {
            bm.add_replica(block, gs, length, *dn, 0, datanodes);
        }
    }
}

pub(super) fn run(args: &[String]) -> Result<()> {
    let options = Options::parse(args, &["files", "dir", "edits"], &[])?;
    let files = options.number("files", 1_000_000)?;
    let replayed_edits = options.number("edits", 100_000)?;
    let (dir, _guard) = scratch(&options)?;
    let config = NamesystemConfig::from_config(&rdfs_common::config::Config::default());
    println!("rdfs bench namespace: {files} files of one block each, 3 replicas per block");

    let baseline = resident_bytes();
    let started = Instant::now();
    let mut state = empty_state(&info(), &config, "hdfs", "supergroup", 0);
    let mut builder = TreeBuilder::new();
    let mut ops = Vec::new();
    let mut blocks = Vec::with_capacity(files as usize);
    for n in 0..files {
        ops.clear();
        let (block, gs) = builder.file(n, &mut ops);
        for op in &ops {
            state.apply(op).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        blocks.push((block, gs, 100 * 1024 * 1024 + (n % 1000) * 4096));
    }
    report_replicas(&mut state, &blocks);
    drop(blocks);
    let built = started.elapsed();
    let resident = resident_bytes().saturating_sub(baseline);
    let inodes = state.namespace.inode_count();
    let memory = state.namespace.memory();
    println!(
        "build:              {:.1} s ({} inodes, {} blocks)",
        built.as_secs_f64(),
        inodes,
        state.blocks.len()
    );
    println!(
        "resident memory:    {:.1} MiB = {:.1} bytes per file+block",
        resident as f64 / 1048576.0,
        resident as f64 / files as f64
    );
    println!(
        "  of which:         inodes {:.1} B, names {:.1} B, lists {:.1} B, blocks {:.1} B, replica sets {:.1} B per file",
        memory.inodes as f64 / files as f64,
        memory.names as f64 / files as f64,
        memory.lists as f64 / files as f64,
        state.blocks.memory() as f64 / files as f64,
        state.datanodes.replica_set_bytes() as f64 / files as f64,
    );

    let started = Instant::now();
    let image = rdfs_namenode::fsimage::encode(&state, 0, &info());
    let encoded = started.elapsed();
    let path = dir.join(rdfs_namenode::fsimage::file_name(0));
    rdfs_common::durable::write_file(&path, &image).context("writing the fsimage")?;
    let saved = started.elapsed();
    println!(
        "fsimage save:       {:.2} s ({:.2} s to encode, {:.2} s to write and sync {:.1} MiB, {:.1} bytes per file)",
        saved.as_secs_f64(),
        encoded.as_secs_f64(),
        (saved - encoded).as_secs_f64(),
        image.len() as f64 / 1048576.0,
        image.len() as f64 / files as f64
    );
    drop(image);

    // Edits that follow the image: more files in a new part of the tree.
    let mut records = Vec::new();
    let mut txid = 0;
    let mut new_ops = Vec::new();
    let mut n = files;
    while (records.len() as u64) < replayed_edits {
        new_ops.clear();
        builder.file(n, &mut new_ops);
        n += 1;
        for op in new_ops.drain(..) {
            txid += 1;
            records.push(rdfs_namenode::edit_log::record(txid, op, None));
        }
    }
    drop(state);

    let started = Instant::now();
    let bytes = std::fs::read(&path).context("reading the fsimage")?;
    let read = started.elapsed();
    let loaded = rdfs_namenode::fsimage::decode(&path, &bytes, &info(), &config)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(bytes);
    let decoded = started.elapsed();
    let loaded_inodes = loaded.state.namespace.inode_count();
    let mut state = loaded.state;
    replay(&mut state, &records).map_err(|e| anyhow::anyhow!("{e}"))?;
    let replayed = started.elapsed();
    println!(
        "fsimage load:       {:.2} s ({:.2} s to read, {:.2} s to decode {} inodes), then {:.2} s to replay {} edits ({:.0} edits/s)",
        decoded.as_secs_f64(),
        read.as_secs_f64(),
        (decoded - read).as_secs_f64(),
        loaded_inodes,
        (replayed - decoded).as_secs_f64(),
        records.len(),
        records.len() as f64 / (replayed - decoded).as_secs_f64().max(1e-9)
    );
    println!(
        "figure namespace_bytes_per_file {:.1} bytes",
        resident as f64 / files as f64
    );
    println!("figure fsimage_save {:.2} s", saved.as_secs_f64());
    println!(
        "figure fsimage_load_and_replay {:.2} s",
        replayed.as_secs_f64()
    );
    Ok(())
}
