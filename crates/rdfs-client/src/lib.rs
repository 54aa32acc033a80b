//! The rdfs client library: [`DfsClient`] for namespace calls,
//! [`DfsOutputStream`] to write a file through datanode pipelines,
//! [`DfsInputStream`] to read one with every chunk verified. Namenode calls
//! fail over between the namenodes of an HA nameservice (`failover`).

mod block_writer;
pub mod client;
pub mod error;
mod failover;
pub mod input;
pub mod output;
pub mod trash;

pub use client::{ClientSettings, CreateOptions, DfsClient, FsckEntry};
pub use error::{ClientError, Result};
pub use input::DfsInputStream;
pub use output::DfsOutputStream;
