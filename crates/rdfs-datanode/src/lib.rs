//! The rdfs datanode: block replicas on local volumes, the write pipeline
//! that receives them, the reads that serve them, and the link that keeps
//! the namenode informed.
//!
//! Start at [`server::Datanode`] for the daemon, [`pipeline`] for writes,
//! [`dataset::Dataset`] for replicas on disk.

pub mod bp_service;
pub mod context;
pub mod dataset;
pub mod error;
pub mod io_hints;
pub mod pipeline;
pub mod receiver;
pub mod replica;
pub mod reports;
pub mod sender;
pub mod server;
pub mod transfer_service;
pub mod volume;

pub use error::DatanodeError;
