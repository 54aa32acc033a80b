//! Generated code for rdfs's protocols (`proto/`). Nothing hand-written lives
//! here but the module tree.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Internal RPC services and their messages.
pub mod rdfs {
    tonic::include_proto!("rdfs");

    /// Edit log records, an on-disk format.
    pub mod editlog {
        tonic::include_proto!("rdfs.editlog");
    }
}

pub use rdfs::*;
