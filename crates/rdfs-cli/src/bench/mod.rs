//! `rdfs bench`: benchmarks that print figures (never pass/fail).
//!
//! - `rdfs bench namespace [-files N] [-dir D]`: builds N one-block files in
//!   memory (no RPC), then prints resident bytes per file+block, the time to
//!   save the fsimage, and the time to load it and replay edits.
//! - `rdfs bench nn -op OP [-threads T] [-files N] [-inprocess [-dir D]]`:
//!   namenode operations per second with latency percentiles, over RPC
//!   against the cluster `fs.default_fs` names, or in-process.
//! - `rdfs bench io -write|-read|-clean [-files N] [-size S] [-replication R]`:
//!   aggregate and per-file MB/s against a running cluster (TestDFSIO).
//!
//! Every subcommand takes the generic options (`-D key=value`, `-fs URI`,
//! `-conf FILE`) anywhere on its command line.

mod io;
mod namespace;
mod nn;

use anyhow::{Result, bail};

use crate::generic::GenericOptions;

const USAGE: &str = "usage: rdfs bench namespace [-files N] [-dir D]
       rdfs bench nn -op create|mkdirs|open|fileStatus|listStatus|rename|delete [-threads T] [-files N] [-inprocess [-dir D] [-qjournal URI] [-permissions on|off]]
       rdfs bench nn ... [-filesPerDir F] [-baseDir PATH] [-clients C] [-keepResults]
       rdfs bench io -write|-read|-clean [-files N] [-size S] [-replication R] [-blockSize B] [-dir PATH]";

pub fn main(args: Vec<String>) -> u8 {
    rdfs_common::logging::init("warn");
    let result =
        GenericOptions::parse_anywhere(args).and_then(|(generic, args)| match args.split_first() {
            Some((what, rest)) if what == "namespace" => namespace::run(rest),
            Some((what, rest)) if what == "nn" => nn::run(rest, &generic),
            Some((what, rest)) if what == "io" => io::run(rest, &generic),
            _ => Err(anyhow::anyhow!(USAGE)),
        });
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("bench: {err:#}");
            1
        }
    }
}

/// `-name value` options.
pub(crate) struct Options(Vec<(String, Option<String>)>);

impl Options {
    pub(crate) fn parse(args: &[String], with_value: &[&str], flags: &[&str]) -> Result<Self> {
        let mut out = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let name = arg.trim_start_matches('-');
            if with_value.contains(&name) {
                let Some(value) = iter.next() else {
                    bail!("{arg} needs a value")
                };
                out.push((name.to_string(), Some(value.clone())));
            } else if flags.contains(&name) {
                out.push((name.to_string(), None));
            } else {
                bail!("unknown option {arg}");
            }
        }
        Ok(Self(out))
    }

    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    pub(crate) fn number(&self, name: &str, default: u64) -> Result<u64> {
        match self.value(name) {
            Some(text) => Ok(rdfs_common::config::ByteSize::parse(text)
                .map_err(anyhow::Error::msg)?
                .0),
            None => Ok(default),
        }
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
}

/// This process's resident memory, from /proc.
pub(crate) fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}

/// A scratch directory: `-dir` or a new temp dir.
pub(crate) fn scratch(
    options: &Options,
) -> Result<(std::path::PathBuf, Option<tempfile::TempDir>)> {
    match options.value("dir") {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Ok((dir.into(), None))
        }
        None => {
            let tmp = tempfile::Builder::new().prefix("rdfs-bench-").tempdir()?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

/// A client of the cluster (or HA nameservice) `fs.default_fs` names, as
/// `rdfs dfs` would make it. Must be called within a tokio runtime.
pub(crate) fn cluster_client(
    config: &rdfs_common::config::Config,
) -> Result<rdfs_client::DfsClient> {
    let namenodes = crate::generic::namenode_addresses(config)?;
    let user = crate::generic::client_user(config);
    Ok(rdfs_client::DfsClient::new_nameservice(
        &namenodes,
        &user,
        crate::generic::client_settings(config),
    )?)
}

/// Latency percentile `p` (0..=1) of sorted samples.
pub(crate) fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
