//! The quorum journal (QJM, as HDFS-3077 describes it): the `rdfs
//! journalnode` daemon that stores edit log segments, and the quorum client
//! a namenode writes edits through and a standby tails them from.
//!
//! - [`Journalnode`] (`server`) serves the journals under its edits dir;
//!   `journal` holds one journal's durable state.
//! - [`QuorumClient`] (`client`) formats the journal, shows the leadership
//!   lease, reads committed edits, and takes a new epoch, which yields the
//!   [`QuorumWriter`] (`writer`) that recovers the last segment
//!   (`recovery`) and writes. `quorum` waits for majorities; `logger`
//!   keeps each journalnode's calls in order.
//! - Two seams let the same code run in the deterministic simulator
//!   (`tests::sim`, hundreds of seeded runs with crashes, torn writes,
//!   pauses, partitions and lost, late and duplicated messages): the client
//!   reaches journalnodes through a `peer` trait (gRPC in production), and
//!   a journal stores its files through a `disk` trait (the local
//!   filesystem in production). Leases are measured on an injected
//!   [`rdfs_common::time::Clock`], the boot clock in production, so a
//!   suspended host cannot outlive its lease.
//! - Every segment's header names the epoch whose edits it holds
//!   (`segment`): a recovery may end the journal before a segment that no
//!   majority holds edits of, and the next writer then writes the same
//!   txids anew. Journalnodes finalize, accept and serve a copy only as the
//!   epoch that wrote or chose it, and recovery ranks copies by epoch before
//!   length.

mod client;
mod disk;
mod fault;
mod journal;
mod logger;
mod peer;
mod quorum;
mod recovery;
pub mod segment;
mod server;
mod stamp;
mod writer;

pub use client::{LeaseView, QuorumClient, QuorumError};
pub use fault::JnError;
pub use journal::JournalError;
pub use server::{ADDRESS_FILE, Journalnode, JournalnodeError};
pub use stamp::NamespaceStamp;
pub use writer::QuorumWriter;

#[cfg(test)]
mod tests;
