//! Structured logs on stderr, filtered by `RDFS_LOG` (tracing's env-filter
//! syntax, e.g. `info,rdfs_datanode=debug`), `info` by default.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_env("RDFS_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true)
        .try_init();
}
