//! `rdfs dfsadmin`: `-report [-live] [-dead] [-decommissioning]` (cluster
//! capacity, block health and one section per datanode, in HDFS's layout),
//! `-refreshNodes`, `-safemode`, `-saveNamespace`, `-rollEdits`,
//! `-refreshUserToGroupsMappings`, `-refreshSuperUserGroupsConfiguration`.

use std::fmt::Write as _;

use anyhow::{Result, bail};

use rdfs_client::DfsClient;
use rdfs_common::protocol::{AdminState, DatanodeInfo};
use rdfs_proto as pb;

use crate::generic::{GenericOptions, client_user, runtime};
use crate::report::{bytes_with_desc, java_date, percent};

const USAGE: &str = "Usage: rdfs dfsadmin [generic options]\n\t[-report [-live] [-dead] [-decommissioning]]\n\t[-safemode <enter | leave | get | wait>]\n\t[-saveNamespace]\n\t[-rollEdits]\n\t[-refreshNodes]\n\t[-refreshUserToGroupsMappings]\n\t[-refreshSuperUserGroupsConfiguration]";

pub fn main(args: Vec<String>) -> u8 {
    rdfs_common::logging::init("warn");
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("dfsadmin: {err:#}");
            255
        }
    }
}

fn run(args: Vec<String>) -> Result<u8> {
    let (generic, rest) = GenericOptions::parse_anywhere(args)?;
    let Some(command) = rest.first().cloned() else {
        eprintln!("{USAGE}");
        return Ok(255);
    };
    let options = &rest[1..];
    let config = generic.load()?;
    let namenodes = crate::generic::namenode_addresses(&config)?;
    let user = client_user(&config);
    let settings = crate::generic::client_settings(&config);
    runtime()?.block_on(async {
        let client = DfsClient::new_nameservice(&namenodes, &user, settings)?;
        match command.as_str() {
            "-report" => report(&client, options).await,
            "-safemode" => safe_mode(&client, options).await,
            "-saveNamespace" => {
                no_options(&command, options)?;
                client.save_namespace().await?;
                println!("Save namespace successful");
                Ok(0)
            }
            "-refreshNodes" => {
                no_options(&command, options)?;
                let summary = client.refresh_nodes().await?;
                println!("{summary}");
                Ok(0)
            }
            "-refreshUserToGroupsMappings" => {
                no_options(&command, options)?;
                client.refresh_user_to_groups_mappings().await?;
                println!("Refresh user to groups mapping successful");
                Ok(0)
            }
            "-refreshSuperUserGroupsConfiguration" => {
                no_options(&command, options)?;
                client.refresh_super_user_groups_configuration().await?;
                println!("Refresh super user groups configuration successful");
                Ok(0)
            }
            "-rollEdits" => {
                no_options(&command, options)?;
                let txid = client.roll_edits().await?;
                println!("Successfully rolled edit logs.\nNew segment starts at txid {txid}");
                Ok(0)
            }
            other => bail!("{other}: Unknown command\n{USAGE}"),
        }
    })
}

fn no_options(command: &str, options: &[String]) -> Result<()> {
    if let Some(extra) = options.first() {
        bail!("{command}: unexpected argument {extra}\n{USAGE}");
    }
    Ok(())
}

async fn safe_mode(client: &DfsClient, options: &[String]) -> Result<u8> {
    let action = match options
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["get"] | ["wait"] => pb::SafeModeAction::Get,
        ["enter"] => pb::SafeModeAction::Enter,
        ["leave"] => pb::SafeModeAction::Leave,
        _ => bail!("-safemode needs one of enter, leave, get, wait\n{USAGE}"),
    };
    let (mut on, _) = client.safe_mode(action).await?;
    if options[0] == "wait" {
        while on {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            on = client.safe_mode(pb::SafeModeAction::Get).await?.0;
        }
    }
    println!("Safe mode is {}", if on { "ON" } else { "OFF" });
    Ok(0)
}

async fn report(client: &DfsClient, options: &[String]) -> Result<u8> {
    let (mut live_only, mut dead_only, mut decommissioning_only) = (false, false, false);
    for option in options {
        match option.as_str() {
            "-live" => live_only = true,
            "-dead" => dead_only = true,
            "-decommissioning" => decommissioning_only = true,
            other => bail!("Illegal option {other}\n{USAGE}"),
        }
    }
    let all = !(live_only || dead_only || decommissioning_only);
    let stats = client.fs_stats().await?;
    let live = client
        .datanode_report(pb::DatanodeReportType::DatanodeReportLive)
        .await?;
    let dead = client
        .datanode_report(pb::DatanodeReportType::DatanodeReportDead)
        .await?;
    let decommissioning = client
        .datanode_report(pb::DatanodeReportType::DatanodeReportDecommissioning)
        .await?;
    let mut out = String::new();
    if stats.in_safe_mode {
        let _ = writeln!(out, "Safe mode is ON");
    }
    let present = stats.used + stats.remaining;
    let _ = writeln!(
        out,
        "Configured Capacity: {}",
        bytes_with_desc(stats.capacity)
    );
    let _ = writeln!(out, "Present Capacity: {}", bytes_with_desc(present));
    let _ = writeln!(out, "DFS Remaining: {}", bytes_with_desc(stats.remaining));
    let _ = writeln!(out, "DFS Used: {}", bytes_with_desc(stats.used));
    let used_percent = if present == 0 {
        0.0
    } else {
        stats.used as f64 * 100.0 / present as f64
    };
    let _ = writeln!(out, "DFS Used%: {}", percent(used_percent));
    let _ = writeln!(out, "Replicated Blocks:");
    let _ = writeln!(out, "\tUnder replicated blocks: {}", stats.under_replicated);
    let _ = writeln!(
        out,
        "\tBlocks with corrupt replicas: {}",
        stats.corrupt_blocks
    );
    let _ = writeln!(out, "\tMissing blocks: {}", stats.missing_blocks);
    let _ = writeln!(
        out,
        "\tMissing blocks (with replication factor 1): {}",
        stats.missing_repl_one_blocks
    );
    let _ = writeln!(
        out,
        "\tLow redundancy blocks with highest priority to recover: {}",
        stats.highest_priority_blocks
    );
    let _ = writeln!(
        out,
        "\tPending deletion blocks: {}",
        stats.pending_deletion_blocks
    );
    let _ = writeln!(out, "\n-------------------------------------------------");
    let sections = [
        ("Live", &live, all || live_only),
        ("Dead", &dead, all || dead_only),
        (
            "Decommissioning",
            &decommissioning,
            all || decommissioning_only,
        ),
    ];
    for (name, nodes, wanted) in sections {
        if !wanted || (nodes.is_empty() && all && name != "Live") {
            continue;
        }
        let _ = writeln!(out, "{name} datanodes ({}):\n", nodes.len());
        for node in nodes.iter() {
            out.push_str(&datanode_report(node));
            out.push_str("\n\n");
        }
    }
    print!("{out}");
    Ok(0)
}

fn datanode_report(node: &DatanodeInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Name: {} ({})", node.id.xfer_addr(), node.id.hostname);
    let _ = writeln!(out, "Hostname: {}", node.id.hostname);
    if node.network_location != "/default-rack" && !node.network_location.is_empty() {
        let _ = writeln!(out, "Rack: {}", node.network_location);
    }
    let status = match node.admin_state {
        AdminState::Normal => "Normal",
        AdminState::DecommissionInProgress => "Decommission in progress",
        AdminState::Decommissioned => "Decommissioned",
    };
    let _ = writeln!(out, "Decommission Status : {status}");
    let _ = writeln!(
        out,
        "Configured Capacity: {}",
        bytes_with_desc(node.capacity)
    );
    let _ = writeln!(out, "DFS Used: {}", bytes_with_desc(node.dfs_used));
    let _ = writeln!(out, "Non DFS Used: {}", bytes_with_desc(node.non_dfs_used));
    let _ = writeln!(out, "DFS Remaining: {}", bytes_with_desc(node.remaining));
    let (used, remaining) = if node.capacity == 0 {
        (100.0, 0.0)
    } else {
        (
            node.dfs_used as f64 * 100.0 / node.capacity as f64,
            node.remaining as f64 * 100.0 / node.capacity as f64,
        )
    };
    let _ = writeln!(out, "DFS Used%: {}", percent(used));
    let _ = writeln!(out, "DFS Remaining%: {}", percent(remaining));
    let _ = writeln!(out, "Configured Cache Capacity: 0 (0 B)");
    let _ = writeln!(out, "Cache Used: 0 (0 B)");
    let _ = writeln!(out, "Cache Remaining: 0 (0 B)");
    let _ = writeln!(out, "Cache Used%: 100.00%");
    let _ = writeln!(out, "Cache Remaining%: 0.00%");
    let _ = writeln!(out, "Xceivers: {}", node.xceiver_count);
    let _ = writeln!(out, "Last contact: {}", java_date(node.last_update_ms));
    let last_report = if node.last_block_report_ms == 0 {
        "Never".to_string()
    } else {
        java_date(node.last_block_report_ms)
    };
    let _ = writeln!(out, "Last Block Report: {last_report}");
    let _ = write!(out, "Num of Blocks: {}", node.num_blocks);
    out
}
