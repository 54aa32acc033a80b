//! Identifiers with HDFS's shapes and starting values, so the Hadoop
//! compatibility layers can hand them to Hadoop clients unchanged.

use std::fmt;

/// The root directory's inode id (HDFS's `INodeId.ROOT_INODE_ID`).
pub const ROOT_INODE_ID: u64 = 16385;

/// Block ids up to this one are reserved; the first block allocated gets the
/// next (HDFS's `SequentialBlockIdGenerator.LAST_RESERVED_BLOCK_ID`).
pub const LAST_RESERVED_BLOCK_ID: i64 = 1 << 30;

/// The generation stamp before the first one handed out (HDFS's
/// `GenerationStamp.LAST_RESERVED_STAMP`).
pub const LAST_RESERVED_GENERATION_STAMP: u64 = 1000;

/// An on-disk layout version, negative and decreasing as in HDFS.
pub const NAMENODE_LAYOUT_VERSION: i32 = -1;
pub const DATANODE_LAYOUT_VERSION: i32 = -1;

/// The software version daemons exchange at registration.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `CID-<uuid>`, fixed at `namenode -format`.
pub fn new_cluster_id() -> String {
    format!("CID-{}", uuid::Uuid::new_v4())
}

/// `BP-<random>-<ip>-<creation ms>`, HDFS's block pool id shape.
pub fn new_block_pool_id(ip: &str, now_ms: u64) -> String {
    let random: u32 = rand::random::<u32>() & 0x7fff_ffff;
    format!("BP-{random}-{ip}-{now_ms}")
}

/// A positive random namespace id, as HDFS draws it.
pub fn new_namespace_id() -> u32 {
    loop {
        let id = rand::random::<u32>() & 0x7fff_ffff;
        if id != 0 {
            return id;
        }
    }
}

/// `DS-<uuid>`: one per datanode volume.
pub fn new_storage_id() -> String {
    format!("DS-{}", uuid::Uuid::new_v4())
}

/// A datanode's permanent identity.
pub fn new_datanode_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A block as HDFS prints it: `blk_<id>_<genstamp>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockName {
    pub block_id: i64,
    pub generation_stamp: u64,
}

impl fmt::Display for BlockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blk_{}_{}", self.block_id, self.generation_stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_hdfs_shapes() {
        assert!(new_cluster_id().starts_with("CID-"));
        let bp = new_block_pool_id("127.0.0.1", 1700000000000);
        let parts: Vec<&str> = bp.split('-').collect();
        assert_eq!(parts[0], "BP");
        assert!(parts[1].parse::<u32>().is_ok());
        assert_eq!(parts[2], "127.0.0.1");
        assert_eq!(parts[3], "1700000000000");
        assert!(new_storage_id().starts_with("DS-"));
        assert_eq!(
            BlockName {
                block_id: LAST_RESERVED_BLOCK_ID + 1,
                generation_stamp: 1001
            }
            .to_string(),
            "blk_1073741825_1001"
        );
    }
}
