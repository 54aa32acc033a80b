//! The rdfs namenode: the namespace tree, the edit log it is rebuilt from,
//! the block map, the datanode table, and the RPC services over them.
//!
//! Start at [`server::Namenode`] for the daemon, [`namesystem::Namesystem`]
//! for the operations.

pub mod acl_storage;
pub mod apply;
pub mod block_manager;
pub mod block_tokens;
pub mod checkpoint;
pub mod datanode_manager;
pub mod deletions;
pub mod edit_log;
pub mod error;
pub mod fsck;
pub mod fsimage;
pub mod groups;
pub mod ha;
pub mod hosts;
pub mod identity;
pub mod lease;
pub mod names;
pub mod namespace;
pub mod namesystem;
pub mod permission;
pub mod placement;
pub mod protocol;
pub mod replication;
pub mod retry_cache;
pub mod rpc;
pub mod safe_mode;
pub mod server;
pub mod slab;
pub mod storage;
pub mod topology;
pub mod trash_emptier;

pub use error::NamenodeError;
pub use namesystem::Namesystem;
