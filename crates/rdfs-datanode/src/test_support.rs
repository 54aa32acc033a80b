//! Datasets on temporary directories for the crate's unit tests.

use std::path::{Path, PathBuf};

use rdfs_common::protocol::ExtendedBlock;

use crate::dataset::Dataset;
use crate::volume::Volume;

pub const POOL: &str = "BP-1";

/// A dataset over `count` fresh volumes under `root`, attached to [`POOL`].
pub fn dataset(root: &Path, count: usize) -> Dataset {
    let volumes = (0..count)
        .map(|i| Volume::open(i, &root.join(format!("v{i}")), 0).expect("volume"))
        .collect();
    let dataset = Dataset::new(volumes, 0, false);
    dataset.attach_pool("CID-1", POOL, 1, "uuid").expect("pool");
    dataset
}

pub fn block(block_id: i64) -> ExtendedBlock {
    ExtendedBlock {
        pool_id: POOL.into(),
        block_id,
        generation_stamp: 1001,
        num_bytes: 0,
    }
}

/// Writes and finalizes a replica of `len` bytes derived from its id.
pub fn write_replica(dataset: &Dataset, block_id: i64, len: usize) -> ExtendedBlock {
    let block = block(block_id);
    let mut writer = dataset.create_rbw(&block, 512, 1 << 20).expect("rbw");
    let data: Vec<u8> = (0..len).map(|i| (i as i64 + block_id) as u8).collect();
    writer
        .write(&data, &rdfs_common::checksum::compute(&data, 512))
        .expect("write");
    dataset.finalize(writer).expect("finalize");
    ExtendedBlock {
        num_bytes: len as u64,
        ..block
    }
}

/// A replica's block and meta files.
pub fn files(dataset: &Dataset, block_id: i64) -> (PathBuf, PathBuf) {
    let info = dataset.replica(block_id).expect("replica");
    dataset.replica_paths(block_id, &info).expect("paths")
}
