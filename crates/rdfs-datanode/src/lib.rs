//! The rdfs datanode: block replicas on local volumes, the write pipeline
//! that receives them, the reads that serve them, and the link that keeps
//! the namenode informed.
//!
//! Start at [`server::Datanode`] for the daemon, [`pipeline`] for writes,
//! [`dataset::Dataset`] for replicas on disk.

pub mod background;
pub mod block_access;
pub mod block_recovery;
pub mod block_scanner;
pub mod bp_service;
pub mod context;
pub mod dataset;
pub mod directory_scanner;
pub mod error;
pub mod io_hints;
pub mod pipeline;
pub mod read_session;
pub mod receiver;
pub mod recovery_service;
pub mod replica;
pub mod replicate;
pub mod reports;
pub mod sender;
pub mod server;
#[cfg(test)]
mod test_support;
pub mod throttle;
pub mod transfer_service;
pub mod volume;
pub mod volume_choice;

pub use error::DatanodeError;
