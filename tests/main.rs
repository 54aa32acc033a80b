//! End-to-end tests: the real `rdfs` binary as separate namenode and
//! datanode processes on 127.0.0.1 (see `harness`).

mod harness;

mod bad_input;
mod block_tokens;
mod chaos;
mod daemons;
mod data_path;
mod dfs_commands;
mod durability;
mod faults;
mod ha;
mod replication;
mod security;
mod tls;
mod write_path;
