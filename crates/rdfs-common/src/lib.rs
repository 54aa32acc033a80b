//! What every rdfs process shares: HDFS-shaped ids, CRC32C chunk checksums,
//! configuration, path rules, the exception kinds that cross the wire,
//! logging and shutdown.

pub mod acl;
pub mod block_token;
pub mod checksum;
pub mod config;
pub mod durable;
pub mod exception;
pub mod grpc;
pub mod ids;
pub mod logging;
pub mod path;
pub mod protocol;
pub mod shutdown;
pub mod time;
pub mod tls;
pub mod trash;
pub mod version_file;
pub mod writable;

pub use exception::ExceptionKind;
