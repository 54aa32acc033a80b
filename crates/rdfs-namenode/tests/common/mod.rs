//! Set-up shared by the in-process namesystem tests: a namespace of one
//! test cluster over an in-memory journal, a caller, registered datanodes.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rdfs_common::protocol::{DatanodeId, ExtendedBlock};
use rdfs_namenode::datanode_manager::{Liveness, StorageState};
use rdfs_namenode::edit_log::MemoryJournal;
use rdfs_namenode::namesystem::{
    Caller, DatanodeCommand, Namesystem, NamesystemConfig, Registration, ReplicaEvent,
    ReportedReplica, ReportedState, empty_state, replay,
};
use rdfs_namenode::safe_mode::SafeModeConfig;
use rdfs_namenode::storage::NamespaceInfo;
use tokio_util::sync::CancellationToken;

pub const BLOCK: u64 = 1024 * 1024;

pub fn info() -> NamespaceInfo {
    NamespaceInfo {
        cluster_id: "CID-test".into(),
        block_pool_id: "BP-1-127.0.0.1-1".into(),
        namespace_id: 1,
        layout_version: -1,
        ctime: 0,
    }
}

/// Replication 3 (minimum 1), 1 MiB blocks, datanodes never stale or dead
/// within a test, and safe mode left as soon as the blocks are reported.
pub fn config() -> NamesystemConfig {
    NamesystemConfig {
        default_replication: 3,
        min_replication: 1,
        max_replication: 512,
        default_block_size: BLOCK,
        liveness: Liveness {
            stale_after: Duration::from_secs(30),
            dead_after: Duration::from_secs(600),
        },
        safe_mode: SafeModeConfig {
            threshold: 0.999,
            min_datanodes: 0,
            extension: Duration::ZERO,
        },
        ..NamesystemConfig::from_config(&rdfs_common::config::Config::default())
    }
}

/// A namesystem with `config`, rebuilt from everything in `journal`.
pub fn namesystem_with(journal: Arc<MemoryJournal>, config: NamesystemConfig) -> Namesystem {
    let mut state = empty_state(&info(), &config, "", "", 0);
    replay(&mut state, &journal.records()).expect("replay");
    Namesystem::new(
        info(),
        config,
        state,
        journal,
        CancellationToken::new(),
        false,
    )
}

/// A namenode restarted on everything `journal` holds, with a journal of
/// its own, in start-up safe mode when `safe_mode`.
pub fn restarted(journal: &MemoryJournal, safe_mode: bool) -> Namesystem {
    let mut state = empty_state(&info(), &config(), "", "", 0);
    replay(&mut state, &journal.records()).expect("replay");
    Namesystem::new(
        info(),
        config(),
        state,
        Arc::new(MemoryJournal::new()),
        CancellationToken::new(),
        safe_mode,
    )
}

/// The superuser (permission checks have their own tests, with
/// [`user`]).
pub fn caller() -> Caller {
    Caller::new("alice", std::sync::Arc::from(Vec::new()), true, "10.0.0.1")
}

/// An ordinary user in `groups`.
pub fn user(name: &str, groups: &[&str]) -> Caller {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    Caller::new(name, std::sync::Arc::from(groups), false, "10.0.0.2")
}

/// Registers datanodes `dn-0` .. `dn-{n-1}`, one 1 TiB storage each, and
/// heartbeats each once.
pub async fn register(ns: &Namesystem, n: usize) {
    for i in 0..n {
        ns.register_datanode(Registration {
            id: DatanodeId {
                ip_addr: "127.0.0.1".into(),
                hostname: "h".into(),
                datanode_uuid: format!("dn-{i}"),
                xfer_port: 9000 + i as u16,
                ..Default::default()
            },
            cluster_id: "CID-test".into(),
            block_pool_id: "BP-1-127.0.0.1-1".into(),
            storage_ids: vec![format!("DS-{i}")],
        })
        .expect("register");
        heartbeat(ns, i).await;
    }
}

/// A heartbeat of `dn-{i}`; the commands it gets back.
pub async fn heartbeat(ns: &Namesystem, i: usize) -> Vec<DatanodeCommand> {
    let storage = StorageState {
        storage_id: format!("DS-{i}"),
        capacity: 1 << 40,
        remaining: 1 << 40,
        ..Default::default()
    };
    ns.heartbeat(&format!("dn-{i}"), vec![storage], 0, 0, 0, || true)
        .await
        .expect("heartbeat")
}

/// `dn-{dn}` reports a finalized replica of `block`.
pub fn received(ns: &Namesystem, dn: usize, block: &ExtendedBlock) {
    ns.block_received_and_deleted(
        &format!("dn-{dn}"),
        &info().block_pool_id,
        &[(block.clone(), format!("DS-{dn}"), ReplicaEvent::Received)],
    )
    .expect("received");
}

pub fn with_len(block: &ExtendedBlock, num_bytes: u64) -> ExtendedBlock {
    ExtendedBlock {
        num_bytes,
        ..block.clone()
    }
}

/// A closed file of `lengths` blocks, each reported by datanodes 0..3.
pub async fn closed_file(ns: &Namesystem, src: &str, lengths: &[u64]) -> Vec<ExtendedBlock> {
    let c = caller();
    ns.create(&c, src, 0o644, "writer", false, true, 3, BLOCK)
        .await
        .expect("create");
    let mut previous: Option<ExtendedBlock> = None;
    let mut blocks = Vec::new();
    for &length in lengths {
        let located = ns
            .add_block(src, "writer", previous.as_ref(), &[], 0)
            .await
            .expect("add block");
        let block = with_len(&located.block, length);
        for dn in 0..3 {
            received(ns, dn, &block);
        }
        previous = Some(block.clone());
        blocks.push(block);
    }
    assert!(
        ns.complete(src, "writer", previous.as_ref(), 0)
            .await
            .expect("complete")
    );
    blocks
}

/// A full block report of `dn-{dn}` listing finalized `blocks`.
pub fn full_report(ns: &Namesystem, dn: usize, blocks: &[ExtendedBlock]) {
    let replicas = blocks
        .iter()
        .map(|b| ReportedReplica {
            block_id: b.block_id,
            generation_stamp: b.generation_stamp,
            num_bytes: b.num_bytes,
            state: ReportedState::Finalized,
        })
        .collect();
    ns.block_report(
        &format!("dn-{dn}"),
        &info().block_pool_id,
        &[(format!("DS-{dn}"), replicas)],
    )
    .expect("full block report");
}
