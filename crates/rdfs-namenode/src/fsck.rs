//! What `rdfs fsck` reports: every file under a path with its blocks, their
//! replicas and how healthy each block is. The namenode collects the facts;
//! the CLI renders them the way HDFS's fsck does.

use rdfs_common::protocol::{DatanodeInfo, ExtendedBlock, FileStatus};

use crate::apply::FsState;
use crate::block_manager::BlockState;
use crate::namespace::InodeId;
use crate::namesystem::file_status;
use crate::placement;

#[derive(Debug, Clone)]
pub struct FsckReport {
    pub entries: Vec<FsckEntry>,
    pub live_datanodes: u32,
    pub racks: u32,
    pub default_replication: u32,
    pub min_replication: u32,
    pub pending_replications: u64,
}

#[derive(Debug, Clone)]
pub enum FsckEntry {
    Directory(String),
    File(Box<FsckFile>),
}

#[derive(Debug, Clone)]
pub struct FsckFile {
    pub path: String,
    pub status: FileStatus,
    pub blocks: Vec<FsckBlock>,
    pub under_construction: bool,
}

#[derive(Debug, Clone)]
pub struct FsckBlock {
    pub block: ExtendedBlock,
    pub replicas: Vec<FsckReplica>,
    /// Good replicas on in-service datanodes.
    pub live_replicas: u32,
    pub complete: bool,
    pub mis_replicated: bool,
}

#[derive(Debug, Clone)]
pub struct FsckReplica {
    pub datanode: DatanodeInfo,
    pub storage_id: String,
    pub corrupt: bool,
}

pub(crate) fn collect(
    state: &FsState,
    root: InodeId,
    default_replication: u32,
    min_replication: u32,
) -> FsckReport {
    let mut entries = Vec::new();
    state.namespace.walk(root, &mut |inode| {
        let path = state.namespace.path_of(inode.id());
        if inode.is_dir() {
            entries.push(FsckEntry::Directory(path));
            return;
        }
        let blocks = inode
            .block_slots()
            .iter()
            .map(|&slot| {
                let replicas = state
                    .blocks
                    .replicas(slot)
                    .filter_map(|r| {
                        let node = state.datanodes.get(r.datanode)?;
                        node.alive.then(|| FsckReplica {
                            datanode: node.info(),
                            storage_id: node.storage_id_for(r.storage).to_string(),
                            corrupt: r.corrupt,
                        })
                    })
                    .collect();
                let in_service: Vec<_> = state
                    .blocks
                    .replicas(slot)
                    .filter(|r| !r.corrupt && state.datanodes.is_in_service(r.datanode))
                    .map(|r| r.datanode)
                    .collect();
                FsckBlock {
                    block: state.blocks.extended(slot),
                    replicas,
                    live_replicas: in_service.len() as u32,
                    complete: state.blocks.info(slot).state == BlockState::Complete,
                    mis_replicated: !placement::is_well_placed(&state.datanodes, &in_service),
                }
            })
            .collect();
        entries.push(FsckEntry::File(Box::new(FsckFile {
            path,
            status: file_status(state, inode, Vec::new()),
            blocks,
            under_construction: inode.writer().is_some(),
        })));
    });
    let live_datanodes = state.datanodes.live_count() as u32;
    let racks = {
        let mut racks: Vec<&str> = state
            .datanodes
            .live()
            .map(|d| d.network_location.as_str())
            .collect();
        racks.sort_unstable();
        racks.dedup();
        racks.len() as u32
    };
    FsckReport {
        entries,
        live_datanodes,
        racks,
        default_replication,
        min_replication,
        pending_replications: state.blocks.queues.counts().pending_copies,
    }
}
