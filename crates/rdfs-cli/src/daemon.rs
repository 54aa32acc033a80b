//! `rdfs namenode` and `rdfs datanode`: load config, start logging, run the
//! daemon until SIGTERM or SIGINT.

use anyhow::{Context, Result, bail};

use rdfs_datanode::server::Datanode;
use rdfs_namenode::server::{self as namenode, Namenode};

use crate::generic::GenericOptions;

fn run(name: &str, body: impl FnOnce() -> Result<()>) -> u8 {
    match body() {
        Ok(()) => 0,
        Err(err) => {
            tracing::error!("{name} failed: {err:#}");
            eprintln!("{name}: {err:#}");
            1
        }
    }
}

fn daemon_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn namenode(args: Vec<String>) -> u8 {
    rdfs_common::logging::init("info");
    run("namenode", || {
        let (generic, rest) = GenericOptions::parse_anywhere(args)?;
        let mut format = false;
        let mut force = false;
        let mut cluster_id = None;
        let mut iter = rest.into_iter();
        while let Some(arg) = iter.next() {
            match arg.as_str() {
                "-format" => format = true,
                "-force" => force = true,
                "-nonInteractive" => {}
                "-clusterid" | "-clusterId" => {
                    cluster_id = Some(iter.next().context("-clusterid needs a cluster id")?)
                }
                other => bail!(
                    "unknown option {other}\nUsage: rdfs namenode [-format [-force] [-nonInteractive] [-clusterid CID]] [generic options]"
                ),
            }
        }
        let config = generic.load()?;
        if format {
            let superuser = crate::generic::client_user(&config);
            let info = namenode::format(&config, force, cluster_id, &superuser)?;
            println!(
                "Formatted namespace: cluster id {}, block pool {}, in {}",
                info.cluster_id,
                info.block_pool_id,
                config
                    .namenode
                    .name_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return Ok(());
        }
        daemon_runtime()?.block_on(async {
            let node = Namenode::start(&config).await?;
            node.serve(rdfs_common::shutdown::signal()).await?;
            Ok(())
        })
    })
}

pub fn datanode(args: Vec<String>) -> u8 {
    rdfs_common::logging::init("info");
    run("datanode", || {
        let (generic, rest) = GenericOptions::parse_anywhere(args)?;
        if let Some(other) = rest.first() {
            bail!("unknown option {other}\nUsage: rdfs datanode [generic options]");
        }
        let config = generic.load()?;
        daemon_runtime()?.block_on(async {
            let node = Datanode::start(&config).await?;
            node.serve(rdfs_common::shutdown::signal()).await?;
            Ok(())
        })
    })
}
