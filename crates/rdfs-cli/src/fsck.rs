//! `rdfs fsck PATH [-files [-blocks [-locations | -racks | -replicaDetails]]]
//! [-openforwrite]`: the health of every file under a path, in the layout of
//! HDFS 3's fsck. Exit 0 when HEALTHY, 1 when CORRUPT.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Result, bail};

use rdfs_client::{DfsClient, FsckEntry};
use rdfs_common::time::now_ms;
use rdfs_proto as pb;

use crate::generic::{GenericOptions, client_user, runtime};
use crate::report::{java_date, java_float};

const USAGE: &str = "Usage: rdfs fsck <path> [-openforwrite] [-files [-blocks [-locations | -racks | -replicaDetails]]]\n\
\t<path>\tstart checking from this path\n\
\t-openforwrite\tprint out files opened for write\n\
\t-files\tprint out files being checked\n\
\t-blocks\tprint out block report\n\
\t-locations\tprint out locations for every block\n\
\t-racks\tprint out network topology for data-node locations\n\
\t-replicaDetails\tprint out each replica details";

#[derive(Default)]
struct Options {
    path: Option<String>,
    files: bool,
    blocks: bool,
    locations: bool,
    racks: bool,
    replica_details: bool,
    open_for_write: bool,
}

pub fn main(args: Vec<String>) -> u8 {
    rdfs_common::logging::init("warn");
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fsck: {err:#}");
            255
        }
    }
}

fn parse(args: Vec<String>) -> Result<Options> {
    let mut options = Options::default();
    for arg in args {
        match arg.as_str() {
            "-files" => options.files = true,
            "-blocks" => options.blocks = true,
            "-locations" => options.locations = true,
            "-racks" => options.racks = true,
            "-replicaDetails" => options.replica_details = true,
            "-openforwrite" => options.open_for_write = true,
            other if other.starts_with('-') => bail!("Illegal option '{other}'\n{USAGE}"),
            other => {
                if options.path.is_some() {
                    bail!("can only operate on one path at a time '{other}'\n{USAGE}");
                }
                options.path = Some(other.to_string());
            }
        }
    }
    Ok(options)
}

fn run(args: Vec<String>) -> Result<u8> {
    let (generic, rest) = GenericOptions::parse_anywhere(args)?;
    let options = parse(rest)?;
    let config = generic.load()?;
    let user = client_user(&config);
    let namenodes = crate::generic::namenode_addresses(&config)?;
    let raw = options.path.clone().unwrap_or_else(|| "/".to_string());
    let path = crate::generic::absolute_path(&config, &raw);
    runtime()?.block_on(async {
        let client = DfsClient::new_nameservice(
            &namenodes,
            &user,
            crate::generic::client_settings(&config),
        )?;
        if client.get_file_info(&path).await?.is_none() {
            eprintln!(
                "FileSystem is inaccessible due to:\nFile does not exist: {path}\nDFSck exiting."
            );
            return Ok(0);
        }
        let authority = crate::generic::namenode_authority(&config)?;
        eprintln!("Connecting to namenode via hdfs://{authority}/fsck?ugi={user}&path={path}");
        let started = Instant::now();
        let entries = client.fsck(&path).await?;
        let (text, healthy) = render(&options, &user, &path, &entries, started);
        print!("{text}");
        Ok(if healthy { 0 } else { 1 })
    })
}

#[derive(Default)]
struct Totals {
    size: u64,
    files: u64,
    blocks: u64,
    open_files: u64,
    open_size: u64,
    open_blocks: u64,
    replicas: u64,
    expected_replicas: u64,
    min_replicated: u64,
    over_replicated: u64,
    under_replicated: u64,
    mis_replicated: u64,
    under_min: u64,
    missing_replicas: u64,
    missing_blocks: u64,
    missing_size: u64,
    corrupt_blocks: u64,
    corrupt_size: u64,
    corrupt_files: u64,
}

impl Totals {
    fn healthy(&self) -> bool {
        self.missing_blocks == 0 && self.corrupt_blocks == 0
    }

    fn percent(&self, n: u64) -> String {
        if self.blocks == 0 {
            String::new()
        } else {
            format!(" ({} %)", java_float((n * 100) as f32 / self.blocks as f32))
        }
    }
}

fn admin_state(replica: &pb::FsckReplica) -> pb::AdminState {
    replica
        .datanode
        .as_ref()
        .and_then(|d| pb::AdminState::try_from(d.admin_state).ok())
        .unwrap_or(pb::AdminState::Normal)
}

/// Good replicas on (decommissioning, decommissioned) datanodes.
fn retiring_replicas(block: &pb::FsckBlock) -> (u64, u64) {
    let count = |state| {
        block
            .replicas
            .iter()
            .filter(|r| !r.corrupt && admin_state(r) == state)
            .count() as u64
    };
    (
        count(pb::AdminState::DecommissionInprogress),
        count(pb::AdminState::Decommissioned),
    )
}

fn replica_info(options: &Options, block: &pb::FsckBlock) -> String {
    if !(options.locations || options.racks || options.replica_details) {
        return String::new();
    }
    let parts: Vec<String> = block
        .replicas
        .iter()
        .map(|replica| {
            let id = replica.datanode.as_ref().and_then(|d| d.id.as_ref());
            let addr = id
                .map(|id| format!("{}:{}", id.ip_addr, id.xfer_port))
                .unwrap_or_default();
            let mut text = if options.racks {
                let rack = replica
                    .datanode
                    .as_ref()
                    .map_or("/default-rack", |d| d.network_location.as_str());
                format!("{rack}/{addr}")
            } else {
                format!(
                    "DatanodeInfoWithStorage[{addr},{},DISK]",
                    replica.storage_id
                )
            };
            if options.replica_details {
                text.push_str(if replica.corrupt {
                    "(CORRUPT)"
                } else {
                    match admin_state(replica) {
                        pb::AdminState::DecommissionInprogress => "(DECOMMISSIONING)",
                        pb::AdminState::Decommissioned => "(DECOMMISSIONED)",
                        pb::AdminState::Normal => "(LIVE)",
                    }
                });
            }
            text
        })
        .collect();
    format!(" [{}]", parts.join(", "))
}

fn render(
    options: &Options,
    user: &str,
    path: &str,
    entries: &[FsckEntry],
    started: Instant,
) -> (String, bool) {
    let files = options.files;
    let show_blocks = files && options.blocks;
    let summary = entries.iter().find_map(|e| match e {
        FsckEntry::Summary(s) => Some(s.clone()),
        _ => None,
    });
    let summary = summary.unwrap_or_default();
    let min_replication = u64::from(summary.min_replication.max(1));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "FSCK started by {user} (auth:SIMPLE) from /{} for path {path} at {}",
        summary.remote_address,
        java_date(now_ms())
    );
    let mut totals = Totals::default();
    let mut dirs = 0u64;
    for (checked, entry) in entries.iter().enumerate() {
        if checked.is_multiple_of(1000) {
            out.push('\n');
        }
        let file = match entry {
            FsckEntry::Directory(dir) => {
                if files {
                    let _ = writeln!(out, "{dir} <dir>");
                }
                dirs += 1;
                continue;
            }
            FsckEntry::File(file) => file,
            FsckEntry::Summary(_) => continue,
        };
        let status = file.status.clone().unwrap_or_default();
        let target = u64::from(status.block_replication);
        let file_path = &file.path;
        // The block being written is not validated.
        let validated: Vec<&pb::FsckBlock> = file
            .blocks
            .iter()
            .filter(|b| !file.under_construction || b.complete)
            .collect();
        if file.under_construction {
            totals.open_files += 1;
            totals.open_size += status.length;
            totals.open_blocks += validated.len() as u64;
            if !options.open_for_write {
                continue;
            }
        }
        totals.files += 1;
        totals.size += status.length;
        totals.blocks += validated.len() as u64;
        if files {
            let open = if file.under_construction {
                ", OPENFORWRITE: "
            } else {
                ": "
            };
            let _ = write!(
                out,
                "{file_path} {} bytes, replicated: replication={target}, {} block(s){open}",
                status.length,
                validated.len()
            );
        }
        let mut report = String::new();
        let (mut missing, mut missing_size, mut corrupt, mut corrupt_size, mut under) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let mis = validated.iter().any(|b| b.mis_replicated);
        for (number, block) in validated.iter().enumerate() {
            let b = block.block.clone().unwrap_or_default();
            let name = format!("{}:blk_{}_{}", b.pool_id, b.block_id, b.generation_stamp);
            let live = u64::from(block.live_replicas);
            let (decommissioning, decommissioned) = retiring_replicas(block);
            totals.replicas += live;
            totals.expected_replicas += target;
            let is_missing = live + decommissioning + decommissioned == 0;
            let is_corrupt = !block.replicas.is_empty() && block.replicas.iter().all(|r| r.corrupt);
            if live < min_replication {
                totals.under_min += 1;
            }
            if live > target {
                totals.over_replicated += 1;
            }
            if is_corrupt {
                totals.corrupt_blocks += 1;
                totals.corrupt_size += b.num_bytes;
                corrupt += 1;
                corrupt_size += b.num_bytes;
                let _ = write!(
                    out,
                    "\n{file_path}: CORRUPT blockpool {} block blk_{}\n",
                    b.pool_id, b.block_id
                );
            }
            if live >= min_replication {
                totals.min_replicated += 1;
            }
            if live < target && !is_missing {
                totals.missing_replicas += target - live;
                totals.under_replicated += 1;
                under += 1;
                if !files {
                    let _ = write!(out, "\n{file_path}: ");
                }
                let _ = writeln!(
                    out,
                    " Under replicated {name}. Target Replicas is {target} but found {live} live replica(s), {decommissioned} decommissioned replica(s), {decommissioning} decommissioning replica(s)."
                );
            }
            if block.mis_replicated && !is_missing {
                totals.mis_replicated += 1;
                if !files {
                    let _ = write!(out, "\n{file_path}: ");
                }
                let _ = writeln!(
                    out,
                    " Replica placement policy is violated for {name}. Block should be additionally replicated on 1 more rack(s). Total number of racks in the cluster: {}",
                    summary.racks
                );
            }
            let _ = write!(report, "{number}. {name} len={}", b.num_bytes);
            if is_missing && !is_corrupt {
                report.push_str(" MISSING!");
                totals.missing_blocks += 1;
                totals.missing_size += b.num_bytes;
                missing += 1;
                missing_size += b.num_bytes;
            } else {
                let _ = write!(report, " Live_repl={live}");
                if decommissioning + decommissioned > 0 {
                    let _ = write!(
                        report,
                        " Decommissioning_repl={decommissioning} Decommissioned_repl={decommissioned}"
                    );
                }
                let info = replica_info(options, block);
                if !info.is_empty() {
                    let _ = write!(report, " {info}");
                }
            }
            report.push('\n');
        }
        if missing > 0 || corrupt > 0 {
            totals.corrupt_files += 1;
            if !files {
                if missing > 0 {
                    let _ = write!(
                        out,
                        "\n{file_path}: MISSING {missing} blocks of total size {missing_size} B."
                    );
                }
                if corrupt > 0 {
                    let _ = write!(
                        out,
                        "\n{file_path}: CORRUPT {corrupt} blocks of total size {corrupt_size} B."
                    );
                }
            }
        }
        if files {
            if missing > 0 {
                let _ = writeln!(
                    out,
                    " MISSING {missing} blocks of total size {missing_size} B"
                );
            }
            if corrupt > 0 {
                let _ = writeln!(
                    out,
                    " CORRUPT {corrupt} blocks of total size {corrupt_size} B"
                );
            }
            if missing == 0 && corrupt == 0 && under == 0 && !mis {
                out.push_str(" OK\n");
            }
            if show_blocks {
                out.push_str(&report);
                out.push('\n');
            }
        }
    }
    let healthy = totals.healthy();
    let _ = writeln!(
        out,
        "\nStatus: {}",
        if healthy { "HEALTHY" } else { "CORRUPT" }
    );
    let _ = writeln!(out, " Number of data-nodes:\t{}", summary.live_datanodes);
    let _ = writeln!(out, " Number of racks:\t\t{}", summary.racks);
    let _ = writeln!(out, " Total dirs:\t\t\t{dirs}");
    let _ = writeln!(out, " Total symlinks:\t\t0");
    let _ = writeln!(out, "\nReplicated Blocks:");
    let _ = write!(out, " Total size:\t{} B", totals.size);
    if totals.open_size != 0 {
        let _ = write!(out, " (Total open files size: {} B)", totals.open_size);
    }
    let _ = write!(out, "\n Total files:\t{}", totals.files);
    if totals.open_files != 0 {
        let _ = write!(
            out,
            " (Files currently being written: {})",
            totals.open_files
        );
    }
    let _ = write!(out, "\n Total blocks (validated):\t{}", totals.blocks);
    if let Some(average) = totals.size.checked_div(totals.blocks) {
        let _ = write!(out, " (avg. block size {average} B)");
    }
    if totals.open_blocks != 0 {
        let _ = write!(
            out,
            " (Total open file blocks (not validated): {})",
            totals.open_blocks
        );
    }
    if totals.corrupt_files > 0 || totals.under_min > 0 {
        out.push_str("\n  ********************************");
        if totals.under_min > 0 {
            let _ = write!(
                out,
                "\n  UNDER MIN REPL'D BLOCKS:\t{}{}",
                totals.under_min,
                totals.percent(totals.under_min)
            );
            let _ = write!(out, "\n  MINIMAL BLOCK REPLICATION:\t{min_replication}");
        }
        if totals.corrupt_files > 0 {
            let _ = write!(out, "\n  CORRUPT FILES:\t{}", totals.corrupt_files);
            if totals.missing_size > 0 {
                let _ = write!(
                    out,
                    "\n  MISSING BLOCKS:\t{}\n  MISSING SIZE:\t\t{} B",
                    totals.missing_blocks, totals.missing_size
                );
            }
            if totals.corrupt_blocks > 0 {
                let _ = write!(
                    out,
                    "\n  CORRUPT BLOCKS: \t{}\n  CORRUPT SIZE:\t\t{} B",
                    totals.corrupt_blocks, totals.corrupt_size
                );
            }
        }
        out.push_str("\n  ********************************");
    }
    let _ = write!(
        out,
        "\n Minimally replicated blocks:\t{}{}",
        totals.min_replicated,
        totals.percent(totals.min_replicated)
    );
    let _ = write!(
        out,
        "\n Over-replicated blocks:\t{}{}",
        totals.over_replicated,
        totals.percent(totals.over_replicated)
    );
    let _ = write!(
        out,
        "\n Under-replicated blocks:\t{}{}",
        totals.under_replicated,
        totals.percent(totals.under_replicated)
    );
    let _ = write!(
        out,
        "\n Mis-replicated blocks:\t\t{}{}",
        totals.mis_replicated,
        totals.percent(totals.mis_replicated)
    );
    let _ = write!(
        out,
        "\n Default replication factor:\t{}",
        summary.default_replication
    );
    let average = if totals.blocks == 0 {
        0.0
    } else {
        totals.replicas as f32 / totals.blocks as f32
    };
    let _ = write!(
        out,
        "\n Average block replication:\t{}",
        java_float(average)
    );
    let _ = write!(out, "\n Missing blocks:\t\t{}", totals.missing_blocks);
    let _ = write!(out, "\n Corrupt blocks:\t\t{}", totals.corrupt_blocks);
    let _ = write!(out, "\n Missing replicas:\t\t{}", totals.missing_replicas);
    if totals.replicas > 0 && totals.expected_replicas > 0 {
        let _ = write!(
            out,
            " ({} %)",
            java_float((totals.missing_replicas * 100) as f32 / totals.expected_replicas as f32)
        );
    }
    let _ = writeln!(
        out,
        "\n Blocks queued for replication:\t{}",
        summary.pending_replications
    );
    out.push_str(
        "\nErasure Coded Block Groups:\n Total size:\t0 B\n Total files:\t0\n Total block groups (validated):\t0\n \
         Minimally erasure-coded block groups:\t0\n Over-erasure-coded block groups:\t0\n Under-erasure-coded block groups:\t0\n \
         Unsatisfactory placement block groups:\t0\n Average block group size:\t0.0\n Missing block groups:\t\t0\n \
         Corrupt block groups:\t\t0\n Missing internal blocks:\t0\n Blocks queued for replication:\t0\n",
    );
    let _ = writeln!(
        out,
        "FSCK ended at {} in {} milliseconds",
        java_date(now_ms()),
        started.elapsed().as_millis()
    );
    let verdict = if healthy { "is HEALTHY" } else { "is CORRUPT" };
    let _ = writeln!(out, "\n\nThe filesystem under path '{path}' {verdict}");
    (out, healthy)
}
