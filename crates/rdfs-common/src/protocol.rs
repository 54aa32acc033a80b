//! The data that namenode, datanodes and clients exchange, as plain Rust
//! types shaped like HDFS's (`ExtendedBlock`, `DatanodeInfo`, `LocatedBlock`,
//! `HdfsFileStatus`, ...). Logic works on these; the gRPC adapters convert
//! them to and from `rdfs-proto` at the edge, and a Hadoop front door will
//! convert them to Hadoop's protos the same way.

use std::fmt;

use rdfs_proto as pb;

use crate::block_token::{BlockKey, ExportedBlockKeys, Token};
use crate::ids::BlockName;

/// A block as the whole cluster names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ExtendedBlock {
    pub pool_id: String,
    pub block_id: i64,
    pub generation_stamp: u64,
    pub num_bytes: u64,
}

impl ExtendedBlock {
    pub fn name(&self) -> BlockName {
        BlockName {
            block_id: self.block_id,
            generation_stamp: self.generation_stamp,
        }
    }
}

impl fmt::Display for ExtendedBlock {
    /// `BP-…:blk_<id>_<gs>`, as HDFS prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.pool_id, self.name())
    }
}

/// How a datanode is identified and reached.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatanodeId {
    pub ip_addr: String,
    pub hostname: String,
    pub datanode_uuid: String,
    pub xfer_port: u16,
    pub info_port: u16,
    pub ipc_port: u16,
}

impl DatanodeId {
    /// `ip:xfer_port`, the address HDFS names a datanode by.
    pub fn xfer_addr(&self) -> String {
        format!("{}:{}", self.ip_addr, self.xfer_port)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminState {
    #[default]
    Normal,
    DecommissionInProgress,
    Decommissioned,
}

/// A datanode and the figures of its last heartbeat.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatanodeInfo {
    pub id: DatanodeId,
    pub capacity: u64,
    pub dfs_used: u64,
    pub remaining: u64,
    pub non_dfs_used: u64,
    pub last_update_ms: u64,
    pub xceiver_count: u32,
    pub network_location: String,
    pub admin_state: AdminState,
    pub num_blocks: u64,
    pub dead: bool,
    pub last_block_report_ms: u64,
    pub failed_volumes: u32,
}

/// One block of a file and where its replicas are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LocatedBlock {
    pub block: ExtendedBlock,
    pub offset: u64,
    pub locations: Vec<DatanodeInfo>,
    pub storage_ids: Vec<String>,
    pub corrupt: bool,
    /// Empty when block tokens are off.
    pub block_token: Token,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LocatedBlocks {
    pub file_length: u64,
    pub blocks: Vec<LocatedBlock>,
    pub under_construction: bool,
    pub last_block: Option<LocatedBlock>,
    pub is_last_block_complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Directory,
    File,
    Symlink,
}

/// HDFS's `HdfsFileStatus`.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStatus {
    pub file_type: FileType,
    /// The entry's own name (empty for the path that was asked about).
    pub name: Vec<u8>,
    pub length: u64,
    pub permission: u16,
    pub owner: String,
    pub group: String,
    pub modification_time: u64,
    pub access_time: u64,
    pub replication: u32,
    pub block_size: u64,
    pub file_id: u64,
    pub children_num: i32,
    pub locations: Option<LocatedBlocks>,
}

impl FileStatus {
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentSummary {
    pub length: u64,
    pub file_count: u64,
    pub directory_count: u64,
    pub quota: i64,
    pub space_consumed: u64,
    pub space_quota: i64,
}

/// Figures for `dfsadmin -report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    pub capacity: u64,
    pub used: u64,
    pub remaining: u64,
    pub non_dfs_used: u64,
    pub under_replicated: u64,
    pub corrupt_blocks: u64,
    pub missing_blocks: u64,
    pub in_safe_mode: bool,
    pub total_blocks: u64,
    pub total_files: u64,
    pub missing_repl_one_blocks: u64,
    pub highest_priority_blocks: u64,
    pub pending_deletion_blocks: u64,
    pub pending_replication_blocks: u64,
    pub mis_replicated_blocks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerDefaults {
    pub block_size: u64,
    pub bytes_per_checksum: u32,
    pub write_packet_size: u32,
    pub replication: u32,
    pub trash_interval_minutes: u64,
}

// ---- conversions to and from the wire ----

impl From<&ExtendedBlock> for pb::ExtendedBlock {
    fn from(b: &ExtendedBlock) -> Self {
        pb::ExtendedBlock {
            pool_id: b.pool_id.clone(),
            block_id: b.block_id,
            generation_stamp: b.generation_stamp,
            num_bytes: b.num_bytes,
        }
    }
}

impl From<pb::ExtendedBlock> for ExtendedBlock {
    fn from(b: pb::ExtendedBlock) -> Self {
        ExtendedBlock {
            pool_id: b.pool_id,
            block_id: b.block_id,
            generation_stamp: b.generation_stamp,
            num_bytes: b.num_bytes,
        }
    }
}

fn port(value: u32) -> u16 {
    u16::try_from(value).unwrap_or(0)
}

impl From<&DatanodeId> for pb::DatanodeId {
    fn from(d: &DatanodeId) -> Self {
        pb::DatanodeId {
            ip_addr: d.ip_addr.clone(),
            hostname: d.hostname.clone(),
            datanode_uuid: d.datanode_uuid.clone(),
            xfer_port: d.xfer_port.into(),
            info_port: d.info_port.into(),
            ipc_port: d.ipc_port.into(),
        }
    }
}

impl From<pb::DatanodeId> for DatanodeId {
    fn from(d: pb::DatanodeId) -> Self {
        DatanodeId {
            ip_addr: d.ip_addr,
            hostname: d.hostname,
            datanode_uuid: d.datanode_uuid,
            xfer_port: port(d.xfer_port),
            info_port: port(d.info_port),
            ipc_port: port(d.ipc_port),
        }
    }
}

impl From<&DatanodeInfo> for pb::DatanodeInfo {
    fn from(d: &DatanodeInfo) -> Self {
        pb::DatanodeInfo {
            id: Some((&d.id).into()),
            capacity: d.capacity,
            dfs_used: d.dfs_used,
            remaining: d.remaining,
            non_dfs_used: d.non_dfs_used,
            last_update_ms: d.last_update_ms,
            xceiver_count: d.xceiver_count,
            network_location: d.network_location.clone(),
            admin_state: match d.admin_state {
                AdminState::Normal => pb::AdminState::Normal,
                AdminState::DecommissionInProgress => pb::AdminState::DecommissionInprogress,
                AdminState::Decommissioned => pb::AdminState::Decommissioned,
            } as i32,
            num_blocks: d.num_blocks,
            dead: d.dead,
            last_block_report_ms: d.last_block_report_ms,
            failed_volumes: d.failed_volumes,
        }
    }
}

impl From<pb::DatanodeInfo> for DatanodeInfo {
    fn from(d: pb::DatanodeInfo) -> Self {
        DatanodeInfo {
            id: d.id.map(Into::into).unwrap_or_default(),
            capacity: d.capacity,
            dfs_used: d.dfs_used,
            remaining: d.remaining,
            non_dfs_used: d.non_dfs_used,
            last_update_ms: d.last_update_ms,
            xceiver_count: d.xceiver_count,
            network_location: d.network_location,
            admin_state: match pb::AdminState::try_from(d.admin_state) {
                Ok(pb::AdminState::DecommissionInprogress) => AdminState::DecommissionInProgress,
                Ok(pb::AdminState::Decommissioned) => AdminState::Decommissioned,
                _ => AdminState::Normal,
            },
            num_blocks: d.num_blocks,
            dead: d.dead,
            last_block_report_ms: d.last_block_report_ms,
            failed_volumes: d.failed_volumes,
        }
    }
}

impl From<&LocatedBlock> for pb::LocatedBlock {
    fn from(b: &LocatedBlock) -> Self {
        pb::LocatedBlock {
            block: Some((&b.block).into()),
            offset: b.offset,
            locations: b.locations.iter().map(Into::into).collect(),
            storage_ids: b.storage_ids.clone(),
            corrupt: b.corrupt,
            block_token: token_to_proto(&b.block_token),
        }
    }
}

/// `None` for the empty token, so that a call without tokens carries none.
pub fn token_to_proto(token: &Token) -> Option<pb::Token> {
    (!token.is_empty()).then(|| pb::Token {
        identifier: token.identifier.clone(),
        password: token.password.clone(),
        kind: token.kind.clone(),
        service: token.service.clone(),
    })
}

pub fn token_from_proto(token: Option<pb::Token>) -> Token {
    token
        .map(|token| Token {
            identifier: token.identifier,
            password: token.password,
            kind: token.kind,
            service: token.service,
        })
        .unwrap_or_default()
}

fn block_key_to_proto(key: &BlockKey) -> pb::BlockKey {
    pb::BlockKey {
        key_id: key.key_id,
        expiry_ms: key.expiry_ms,
        secret: key.secret.clone(),
    }
}

fn block_key_from_proto(key: pb::BlockKey) -> BlockKey {
    BlockKey {
        key_id: key.key_id,
        expiry_ms: key.expiry_ms,
        secret: key.secret,
    }
}

impl From<&ExportedBlockKeys> for pb::ExportedBlockKeys {
    fn from(keys: &ExportedBlockKeys) -> Self {
        pb::ExportedBlockKeys {
            current_key: Some(block_key_to_proto(&keys.current_key)),
            all_keys: keys.all_keys.iter().map(block_key_to_proto).collect(),
            key_update_interval_ms: keys.key_update_interval_ms,
            token_lifetime_ms: keys.token_lifetime_ms,
        }
    }
}

impl TryFrom<pb::ExportedBlockKeys> for ExportedBlockKeys {
    type Error = String;

    fn try_from(keys: pb::ExportedBlockKeys) -> Result<Self, String> {
        Ok(ExportedBlockKeys {
            current_key: block_key_from_proto(
                keys.current_key
                    .ok_or("exported block keys without a current key")?,
            ),
            all_keys: keys
                .all_keys
                .into_iter()
                .map(block_key_from_proto)
                .collect(),
            key_update_interval_ms: keys.key_update_interval_ms,
            token_lifetime_ms: keys.token_lifetime_ms,
        })
    }
}

impl From<pb::LocatedBlock> for LocatedBlock {
    fn from(b: pb::LocatedBlock) -> Self {
        LocatedBlock {
            block: b.block.map(Into::into).unwrap_or_default(),
            offset: b.offset,
            locations: b.locations.into_iter().map(Into::into).collect(),
            storage_ids: b.storage_ids,
            corrupt: b.corrupt,
            block_token: token_from_proto(b.block_token),
        }
    }
}

impl From<&LocatedBlocks> for pb::LocatedBlocks {
    fn from(b: &LocatedBlocks) -> Self {
        pb::LocatedBlocks {
            file_length: b.file_length,
            blocks: b.blocks.iter().map(Into::into).collect(),
            under_construction: b.under_construction,
            last_block: b.last_block.as_ref().map(Into::into),
            is_last_block_complete: b.is_last_block_complete,
        }
    }
}

impl From<pb::LocatedBlocks> for LocatedBlocks {
    fn from(b: pb::LocatedBlocks) -> Self {
        LocatedBlocks {
            file_length: b.file_length,
            blocks: b.blocks.into_iter().map(Into::into).collect(),
            under_construction: b.under_construction,
            last_block: b.last_block.map(Into::into),
            is_last_block_complete: b.is_last_block_complete,
        }
    }
}

impl From<&FileStatus> for pb::FileStatus {
    fn from(s: &FileStatus) -> Self {
        pb::FileStatus {
            file_type: match s.file_type {
                FileType::Directory => pb::FileType::Directory,
                FileType::File => pb::FileType::File,
                FileType::Symlink => pb::FileType::Symlink,
            } as i32,
            path: s.name.clone(),
            length: s.length,
            permission: s.permission.into(),
            owner: s.owner.clone(),
            group: s.group.clone(),
            modification_time: s.modification_time,
            access_time: s.access_time,
            block_replication: s.replication,
            block_size: s.block_size,
            file_id: s.file_id,
            children_num: s.children_num,
            locations: s.locations.as_ref().map(Into::into),
        }
    }
}

impl From<pb::FileStatus> for FileStatus {
    fn from(s: pb::FileStatus) -> Self {
        FileStatus {
            file_type: match pb::FileType::try_from(s.file_type) {
                Ok(pb::FileType::Directory) => FileType::Directory,
                Ok(pb::FileType::Symlink) => FileType::Symlink,
                _ => FileType::File,
            },
            name: s.path,
            length: s.length,
            // The bits plus HDFS's ACL flag (bit 12); nothing else fits.
            permission: (s.permission & (0o7777 | u32::from(crate::acl::ACL_BIT))) as u16,
            owner: s.owner,
            group: s.group,
            modification_time: s.modification_time,
            access_time: s.access_time,
            replication: s.block_replication,
            block_size: s.block_size,
            file_id: s.file_id,
            children_num: s.children_num,
            locations: s.locations.map(Into::into),
        }
    }
}

impl From<&ContentSummary> for pb::ContentSummary {
    fn from(c: &ContentSummary) -> Self {
        pb::ContentSummary {
            length: c.length,
            file_count: c.file_count,
            directory_count: c.directory_count,
            quota: c.quota,
            space_consumed: c.space_consumed,
            space_quota: c.space_quota,
        }
    }
}

impl From<pb::ContentSummary> for ContentSummary {
    fn from(c: pb::ContentSummary) -> Self {
        ContentSummary {
            length: c.length,
            file_count: c.file_count,
            directory_count: c.directory_count,
            quota: c.quota,
            space_consumed: c.space_consumed,
            space_quota: c.space_quota,
        }
    }
}

impl From<&FsStats> for pb::GetFsStatsResponse {
    fn from(s: &FsStats) -> Self {
        pb::GetFsStatsResponse {
            capacity: s.capacity,
            used: s.used,
            remaining: s.remaining,
            under_replicated: s.under_replicated,
            corrupt_blocks: s.corrupt_blocks,
            missing_blocks: s.missing_blocks,
            non_dfs_used: s.non_dfs_used,
            in_safe_mode: s.in_safe_mode,
            total_blocks: s.total_blocks,
            total_files: s.total_files,
            missing_repl_one_blocks: s.missing_repl_one_blocks,
            highest_priority_blocks: s.highest_priority_blocks,
            pending_deletion_blocks: s.pending_deletion_blocks,
            pending_replication_blocks: s.pending_replication_blocks,
            mis_replicated_blocks: s.mis_replicated_blocks,
        }
    }
}

impl From<pb::GetFsStatsResponse> for FsStats {
    fn from(s: pb::GetFsStatsResponse) -> Self {
        FsStats {
            capacity: s.capacity,
            used: s.used,
            remaining: s.remaining,
            non_dfs_used: s.non_dfs_used,
            under_replicated: s.under_replicated,
            corrupt_blocks: s.corrupt_blocks,
            missing_blocks: s.missing_blocks,
            in_safe_mode: s.in_safe_mode,
            total_blocks: s.total_blocks,
            total_files: s.total_files,
            missing_repl_one_blocks: s.missing_repl_one_blocks,
            highest_priority_blocks: s.highest_priority_blocks,
            pending_deletion_blocks: s.pending_deletion_blocks,
            pending_replication_blocks: s.pending_replication_blocks,
            mis_replicated_blocks: s.mis_replicated_blocks,
        }
    }
}

impl From<&ServerDefaults> for pb::FsServerDefaults {
    fn from(d: &ServerDefaults) -> Self {
        pb::FsServerDefaults {
            block_size: d.block_size,
            bytes_per_checksum: d.bytes_per_checksum,
            write_packet_size: d.write_packet_size,
            replication: d.replication,
            checksum_type: pb::ChecksumType::ChecksumCrc32c as i32,
            trash_interval: d.trash_interval_minutes,
        }
    }
}

impl From<pb::FsServerDefaults> for ServerDefaults {
    fn from(d: pb::FsServerDefaults) -> Self {
        ServerDefaults {
            block_size: d.block_size,
            bytes_per_checksum: d.bytes_per_checksum,
            write_packet_size: d.write_packet_size,
            replication: d.replication,
            trash_interval_minutes: d.trash_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_status_round_trips() {
        let status = FileStatus {
            file_type: FileType::File,
            name: b"x".to_vec(),
            length: 5,
            permission: 0o644,
            owner: "u".into(),
            group: "g".into(),
            modification_time: 1,
            access_time: 2,
            replication: 3,
            block_size: 4,
            file_id: 16386,
            children_num: 0,
            locations: Some(LocatedBlocks {
                file_length: 5,
                blocks: vec![LocatedBlock {
                    block: ExtendedBlock {
                        pool_id: "BP-1".into(),
                        block_id: 7,
                        generation_stamp: 1001,
                        num_bytes: 5,
                    },
                    offset: 0,
                    locations: vec![DatanodeInfo {
                        capacity: 9,
                        ..Default::default()
                    }],
                    storage_ids: vec!["DS-1".into()],
                    corrupt: false,
                    block_token: Token {
                        identifier: vec![1, 2],
                        password: vec![3],
                        kind: "HDFS_BLOCK_TOKEN".into(),
                        service: String::new(),
                    },
                }],
                ..Default::default()
            }),
        };
        let wire: pb::FileStatus = (&status).into();
        assert_eq!(FileStatus::from(wire), status);
    }
}
