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
        let mut bootstrap = false;
        let mut initialize_shared = false;
        let mut force = false;
        let mut cluster_id = None;
        let mut iter = rest.into_iter();
        while let Some(arg) = iter.next() {
            match arg.as_str() {
                "-format" => format = true,
                "-bootstrapStandby" => bootstrap = true,
                "-initializeSharedEdits" => initialize_shared = true,
                "-force" => force = true,
                "-nonInteractive" => {}
                "-clusterid" | "-clusterId" => {
                    cluster_id = Some(iter.next().context("-clusterid needs a cluster id")?)
                }
                other => bail!(
                    "unknown option {other}\nUsage: rdfs namenode [-format [-force] [-nonInteractive] [-clusterid CID] | -bootstrapStandby [-force] | -initializeSharedEdits [-force]] [generic options]"
                ),
            }
        }
        let config = generic.load()?;
        if usize::from(format) + usize::from(bootstrap) + usize::from(initialize_shared) > 1 {
            bail!(
                "-format, -bootstrapStandby and -initializeSharedEdits are separate steps; give one"
            );
        }
        if (bootstrap || initialize_shared) && !config.is_ha() {
            bail!(
                "{} needs an HA nameservice: set ha.namenodes and ha.shared_edits_dir",
                if bootstrap {
                    "-bootstrapStandby"
                } else {
                    "-initializeSharedEdits"
                }
            );
        }
        if bootstrap {
            let user = crate::generic::login_user(&config);
            let done = daemon_runtime()?.block_on(rdfs_namenode::ha::admin::bootstrap_standby(
                &config, force, &user,
            ))?;
            println!(
                "Bootstrapped from namenode {}: fsimage at txid {}, cluster id {}, block pool {}",
                done.from, done.txid, done.info.cluster_id, done.info.block_pool_id
            );
            return Ok(());
        }
        if initialize_shared {
            let last = daemon_runtime()?.block_on(
                rdfs_namenode::ha::admin::initialize_shared_edits(&config, force),
            )?;
            println!(
                "Shared edits initialized: the journal holds this namenode's edits up to txid {last}"
            );
            return Ok(());
        }
        if format {
            let superuser = crate::generic::login_user(&config);
            let info = namenode::format(&config, force, cluster_id, &superuser)?;
            if config.is_ha() {
                daemon_runtime()?.block_on(rdfs_namenode::ha::admin::format_journal(
                    &config, &info, force,
                ))?;
                println!(
                    "Formatted the shared journal {}",
                    config.ha.shared_edits_dir
                );
            }
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
        let superuser = crate::generic::login_user(&config);
        let reload: namenode::ConfigReload =
            std::sync::Arc::new(move || generic.load().map_err(|e| format!("{e:#}")));
        daemon_runtime()?.block_on(async {
            let node = Namenode::start(&config, &superuser, reload).await?;
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

pub fn journalnode(args: Vec<String>) -> u8 {
    rdfs_common::logging::init("info");
    run("journalnode", || {
        let (generic, rest) = GenericOptions::parse_anywhere(args)?;
        if let Some(other) = rest.first() {
            bail!("unknown option {other}\nUsage: rdfs journalnode [generic options]");
        }
        let config = generic.load()?;
        daemon_runtime()?.block_on(async {
            let node = rdfs_qjournal::Journalnode::start(&config).await?;
            node.serve(rdfs_common::shutdown::signal()).await?;
            Ok(())
        })
    })
}
