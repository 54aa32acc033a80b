//! `rdfs balancer [-threshold PCT] [-idleiterations N]`: moves replicas from
//! datanodes fuller than the cluster average to emptier ones until every
//! datanode's utilization is within the threshold of the average, as
//! HDFS's balancer does.
//!
//! Each iteration pairs over-full sources with under-full targets (the
//! fullest with the emptiest first), asks the namenode for blocks on each
//! source and asks it to move them. The namenode checks every move (the
//! block keeps its rack spread; the source copy is deleted only once the
//! new one is reported) and the source datanode throttles the copy to its
//! balance bandwidth. The balancer waits for the moves to settle, then
//! measures again.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use rdfs_client::DfsClient;
use rdfs_common::protocol::{AdminState, DatanodeInfo};
use rdfs_proto as pb;

use crate::generic::{GenericOptions, client_user, runtime};
use crate::report::byte_desc;

const USAGE: &str = "Usage: rdfs balancer [generic options]\n\
\t[-threshold <threshold>]\tPercentage of disk capacity (default 10)\n\
\t[-idleiterations <idleiterations>]\tNumber of consecutive idle iterations before exit (default 5)";

/// HDFS's balancer exit statuses.
const NO_MOVE_PROGRESS: u8 = (-3i8) as u8;
const ILLEGAL_ARGUMENTS: u8 = (-5i8) as u8;
const IO_EXCEPTION: u8 = (-4i8) as u8;

/// Bytes moved from or to one datanode per iteration at most (HDFS's
/// dfs.balancer.max-size-to-move).
const MAX_SIZE_TO_MOVE: u64 = 10 << 30;

struct Options {
    threshold: f64,
    idle_iterations: u32,
}

pub fn main(args: Vec<String>) -> u8 {
    rdfs_common::logging::init("warn");
    let (generic, rest) = match GenericOptions::parse_anywhere(args) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("balancer: {err:#}\n{USAGE}");
            return ILLEGAL_ARGUMENTS;
        }
    };
    let options = match parse(&rest) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("balancer: {err:#}\n{USAGE}");
            return ILLEGAL_ARGUMENTS;
        }
    };
    match run(generic, options) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("balancer: {err:#}");
            IO_EXCEPTION
        }
    }
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        threshold: 10.0,
        idle_iterations: 5,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-threshold" => {
                let value = iter
                    .next()
                    .ok_or_else(|| anyhow!("-threshold needs a number"))?;
                let threshold: f64 = value
                    .parse()
                    .map_err(|_| anyhow!("-threshold: '{value}' is not a number"))?;
                if !(threshold > 0.0 && threshold <= 100.0) {
                    bail!("Number out of range: threshold = {value}; it must be in (0, 100]");
                }
                options.threshold = threshold;
            }
            "-idleiterations" => {
                let value = iter
                    .next()
                    .ok_or_else(|| anyhow!("-idleiterations needs a number"))?;
                options.idle_iterations = value
                    .parse()
                    .map_err(|_| anyhow!("-idleiterations: '{value}' is not a whole number"))?;
            }
            other => bail!("Illegal option {other}"),
        }
    }
    Ok(options)
}

/// A datanode's share of the imbalance: bytes it should give (positive) or
/// take (negative) to reach the average.
struct Node {
    info: DatanodeInfo,
    utilization: f64,
    /// Bytes left to give (sources) or take (targets) this iteration.
    quota: u64,
}

fn utilization(node: &DatanodeInfo) -> f64 {
    if node.capacity == 0 {
        0.0
    } else {
        node.dfs_used as f64 * 100.0 / node.capacity as f64
    }
}

fn run(generic: GenericOptions, options: Options) -> Result<u8> {
    let config = generic.load()?;
    let namenodes = crate::generic::namenode_addresses(&config)?;
    let user = client_user(&config);
    let settings = crate::generic::client_settings(&config);
    let heartbeat = Duration::from_millis(config.dfs.heartbeat_interval_ms);
    runtime()?.block_on(async {
        let client = DfsClient::new_nameservice(&namenodes, &user, settings)?;
        println!("Balancing with threshold {}%", options.threshold);
        println!(
            "{:<26}{:>11}{:>22}{:>20}{:>19}",
            "Time Stamp",
            "Iteration#",
            "Bytes Already Moved",
            "Bytes Left To Move",
            "Bytes Being Moved"
        );
        let started = Instant::now();
        let mut moved_total = 0u64;
        let mut idle = 0u32;
        for iteration in 0.. {
            let (sources, targets) = plan(&client, options.threshold).await?;
            if sources.is_empty() || targets.is_empty() {
                println!("The cluster is balanced. Exiting...");
                break;
            }
            let left: u64 = sources.iter().map(|s| s.quota).sum();
            let moving = schedule(&client, sources, targets).await?;
            println!(
                "{:<26}{:>11}{:>22}{:>20}{:>19}",
                chrono::Utc::now().format("%b %-d, %Y %-I:%M:%S %p"),
                iteration,
                byte_desc(moved_total),
                byte_desc(left),
                byte_desc(moving)
            );
            if moving == 0 {
                idle += 1;
                if idle >= options.idle_iterations {
                    println!("No block can be moved. Exiting...");
                    return Ok(NO_MOVE_PROGRESS);
                }
                tokio::time::sleep(heartbeat * 2).await;
                continue;
            }
            idle = 0;
            settle(&client, heartbeat).await?;
            moved_total += moving;
        }
        println!(
            "{}  Balancing took {:.1} seconds",
            chrono::Utc::now().format("%b %-d, %Y %-I:%M:%S %p"),
            started.elapsed().as_secs_f64()
        );
        Ok(0)
    })
}

/// The over- and under-utilized datanodes, fullest and emptiest first, each
/// with the bytes it should give or take.
async fn plan(client: &DfsClient, threshold: f64) -> Result<(Vec<Node>, Vec<Node>)> {
    let live: Vec<DatanodeInfo> = client
        .datanode_report(pb::DatanodeReportType::DatanodeReportLive)
        .await?
        .into_iter()
        .filter(|d| d.admin_state == AdminState::Normal && d.capacity > 0)
        .collect();
    let capacity: u64 = live.iter().map(|d| d.capacity).sum();
    let used: u64 = live.iter().map(|d| d.dfs_used).sum();
    if capacity == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let average = used as f64 * 100.0 / capacity as f64;
    let mut sources = Vec::new();
    let mut targets = Vec::new();
    for info in live {
        let util = utilization(&info);
        let bytes =
            |diff: f64| ((diff.abs() * info.capacity as f64 / 100.0) as u64).min(MAX_SIZE_TO_MOVE);
        if util > average + threshold {
            let quota = bytes(util - average);
            sources.push(Node {
                info,
                utilization: util,
                quota,
            });
        } else if util < average - threshold {
            let quota = bytes(average - util).min(info.remaining);
            targets.push(Node {
                info,
                utilization: util,
                quota,
            });
        }
    }
    // With only one side beyond the threshold, the other side's nodes are
    // those on the far side of the average (HDFS's above/below-average
    // classes), so an empty newcomer still receives blocks.
    if sources.is_empty() != targets.is_empty() {
        let report = client
            .datanode_report(pb::DatanodeReportType::DatanodeReportLive)
            .await?;
        for info in report
            .into_iter()
            .filter(|d| d.admin_state == AdminState::Normal && d.capacity > 0)
        {
            let util = utilization(&info);
            let known = sources
                .iter()
                .chain(&targets)
                .any(|n| n.info.id.datanode_uuid == info.id.datanode_uuid);
            if known {
                continue;
            }
            let quota = ((util - average).abs() * info.capacity as f64 / 100.0) as u64;
            if sources.is_empty() && util > average {
                sources.push(Node {
                    info,
                    utilization: util,
                    quota: quota.min(MAX_SIZE_TO_MOVE),
                });
            } else if targets.is_empty() && util < average {
                let quota = quota.min(info.remaining).min(MAX_SIZE_TO_MOVE);
                targets.push(Node {
                    info,
                    utilization: util,
                    quota,
                });
            }
        }
    }
    sources.sort_by(|a, b| b.utilization.total_cmp(&a.utilization));
    targets.sort_by(|a, b| a.utilization.total_cmp(&b.utilization));
    Ok((sources, targets))
}

/// Asks the namenode to move blocks from each source to the targets, up to
/// their quotas; the bytes scheduled.
async fn schedule(
    client: &DfsClient,
    mut sources: Vec<Node>,
    mut targets: Vec<Node>,
) -> Result<u64> {
    let mut scheduled = 0u64;
    for source in &mut sources {
        let source_uuid = source.info.id.datanode_uuid.clone();
        let blocks = client
            .get_blocks(&source_uuid, source.quota.saturating_mul(2), 0)
            .await?;
        for located in blocks {
            if source.quota == 0 {
                break;
            }
            let len = located.block.num_bytes;
            let Some(target) = targets.iter_mut().find(|t| {
                t.quota > 0
                    && !located
                        .locations
                        .iter()
                        .any(|l| l.id.datanode_uuid == t.info.id.datanode_uuid)
            }) else {
                continue;
            };
            match client
                .schedule_replica_move(&located.block, &source_uuid, &target.info.id.datanode_uuid)
                .await
            {
                Ok(()) => {
                    scheduled += len;
                    source.quota = source.quota.saturating_sub(len);
                    target.quota = target.quota.saturating_sub(len);
                }
                // The namenode refuses moves that would hurt the block (its
                // rack spread, a copy already under way): try another.
                Err(err) => tracing::debug!(block = %located.block, error = %err, "move refused"),
            }
        }
    }
    Ok(scheduled)
}

/// Waits until the namenode has no copies pending and no deletions queued,
/// then for the datanodes' next heartbeats to carry their new usage.
async fn settle(client: &DfsClient, heartbeat: Duration) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20 * 60);
    loop {
        let stats = client.fs_stats().await?;
        if stats.pending_replication_blocks == 0 && stats.pending_deletion_blocks == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("moves did not finish within 20 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(heartbeat * 2 + Duration::from_millis(200)).await;
    Ok(())
}
