//! The fsimage: the whole namespace at one txid, as one file.
//!
//! Layout: `RDFSIMG\x01`, a big-endian format version, then sections, each a
//! kind byte, a big-endian u64 length, the payload and a big-endian CRC32C of
//! the payload, in this order: info, strings (owners and groups), inode
//! generations, inodes, block generations, blocks, end. Numbers are LEB128
//! varints. Inodes are written in tree order (a directory before its
//! children, children in name order), so loading rebuilds every directory's
//! sorted child list by appending. Replica locations are not saved: they come
//! from block reports.
//!
//! A damaged image (bad magic, a section failing its checksum, a truncated
//! file, records that contradict each other) is refused with the reason, and
//! the namenode falls back to an older image.

use std::path::{Path, PathBuf};

use crate::apply::FsState;
use crate::block_manager::{BLOCK_ID_BASE, BlockManager, BlockRecord, BlockState};
use crate::datanode_manager::DatanodeManager;
use crate::edit_log::TxId;
use crate::namespace::{ACL_BIT, InodeRecord, Namespace, Permission, ROOT_SLOT};
use crate::namesystem::NamesystemConfig;
use crate::slab::GenSlab;
use crate::storage::NamespaceInfo;

pub const MAGIC: &[u8; 8] = b"RDFSIMG\x01";
/// 2: an inode whose mode has the ACL bit is followed by its stored ACL
/// entries. Images of version 1 (no ACLs) still load.
pub const FORMAT_VERSION: u32 = 2;

const INFO: u8 = 1;
const STRINGS: u8 = 2;
const INODE_GENERATIONS: u8 = 3;
const INODES: u8 = 4;
const BLOCK_GENERATIONS: u8 = 5;
const BLOCKS: u8 = 6;
const END: u8 = 255;

const FLAG_DIR: u8 = 1;
const FLAG_UNDER_CONSTRUCTION: u8 = 2;

/// The file name of the image at `txid`, as HDFS names it.
pub fn file_name(txid: TxId) -> String {
    format!("fsimage_{txid:019}")
}

/// The images in a directory, newest first.
pub fn list(dir: &Path) -> std::io::Result<Vec<(TxId, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(txid) = name
            .strip_prefix("fsimage_")
            .and_then(|t| t.parse::<TxId>().ok())
        {
            out.push((txid, entry.path()));
        }
    }
    out.sort_by_key(|image| std::cmp::Reverse(image.0));
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
#[error("fsimage {path} is damaged: {reason}")]
pub struct ImageError {
    pub path: PathBuf,
    pub reason: String,
}

// ---- encoding ------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn section(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
}

fn generations(out: &mut Vec<u8>, table: &[u32]) {
    put_varint(out, table.len() as u64);
    out.reserve(table.len() * 4);
    for generation in table {
        out.extend_from_slice(&generation.to_le_bytes());
    }
}

/// Encodes the namespace and block map at `txid`.
pub fn encode(fs: &FsState, txid: TxId, info: &NamespaceInfo) -> Vec<u8> {
    let ns = &fs.namespace;
    let mut out = Vec::with_capacity(64 + ns.inode_count() * 48 + fs.blocks.len() * 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());

    let mut payload = Vec::new();
    put_varint(&mut payload, txid);
    put_varint(&mut payload, u64::from(info.namespace_id));
    put_varint(&mut payload, info.ctime);
    put_varint(&mut payload, i64::from(info.layout_version).unsigned_abs());
    put_varint(&mut payload, fs.blocks.last_generation_stamp);
    put_bytes(&mut payload, info.cluster_id.as_bytes());
    put_bytes(&mut payload, info.block_pool_id.as_bytes());
    section(&mut out, INFO, &payload);

    payload.clear();
    put_varint(&mut payload, ns.interner.all().len() as u64);
    for name in ns.interner.all() {
        put_bytes(&mut payload, name.as_bytes());
    }
    section(&mut out, STRINGS, &payload);

    payload.clear();
    generations(&mut payload, ns.inodes.generations());
    section(&mut out, INODE_GENERATIONS, &payload);

    payload.clear();
    put_varint(&mut payload, ns.inode_count() as u64);
    let mut stack = vec![ROOT_SLOT];
    while let Some(slot) = stack.pop() {
        let inode = ns.at(slot);
        let permission = inode.permission();
        put_varint(&mut payload, u64::from(slot));
        put_varint(&mut payload, u64::from(inode.parent_slot()));
        put_bytes(&mut payload, inode.name());
        put_varint(&mut payload, inode.mtime());
        put_varint(&mut payload, inode.atime());
        put_varint(&mut payload, u64::from(permission.owner));
        put_varint(&mut payload, u64::from(permission.group));
        put_varint(&mut payload, u64::from(permission.mode));
        let writer = inode.writer();
        let flags = if inode.is_dir() { FLAG_DIR } else { 0 }
            | if writer.is_some() {
                FLAG_UNDER_CONSTRUCTION
            } else {
                0
            };
        payload.push(flags);
        if permission.mode & ACL_BIT != 0 {
            let entries = inode.acl_entries();
            put_varint(&mut payload, entries.len() as u64);
            for entry in entries {
                put_varint(&mut payload, u64::from(*entry));
            }
        }
        if inode.is_dir() {
            stack.extend(inode.children().iter().rev());
        } else {
            put_varint(&mut payload, u64::from(inode.replication()));
            put_varint(&mut payload, inode.block_size());
            put_varint(&mut payload, inode.block_slots().len() as u64);
            for block in inode.block_slots() {
                put_varint(&mut payload, u64::from(*block));
            }
            if let Some(writer) = writer {
                put_bytes(&mut payload, writer.as_bytes());
            }
        }
    }
    section(&mut out, INODES, &payload);

    payload.clear();
    generations(&mut payload, fs.blocks.blocks.generations());
    section(&mut out, BLOCK_GENERATIONS, &payload);

    payload.clear();
    put_varint(&mut payload, fs.blocks.len() as u64);
    let mut previous = 0u32;
    for slot in fs.blocks.slots() {
        let block = fs.blocks.info(slot);
        put_varint(&mut payload, u64::from(slot - previous));
        previous = slot;
        put_varint(&mut payload, u64::from(block.inode));
        put_varint(&mut payload, block.generation_stamp);
        put_varint(&mut payload, block.num_bytes);
        payload.push(match block.state {
            BlockState::UnderConstruction => 0,
            BlockState::Committed => 1,
            BlockState::Complete => 2,
            BlockState::UnderRecovery => 3,
        });
        put_varint(&mut payload, u64::from(block.replication));
        if block.state == BlockState::UnderRecovery {
            // The recovery id and whether it is a truncate (whose target
            // length is the block's recorded length).
            let recovery = fs.blocks.recovery(slot);
            put_varint(
                &mut payload,
                recovery.map_or(block.generation_stamp, |r| r.recovery_id),
            );
            payload.push(u8::from(recovery.is_some_and(|r| r.truncate)));
        }
    }
    section(&mut out, BLOCKS, &payload);

    section(&mut out, END, &[]);
    out
}

// ---- decoding ------------------------------------------------------------

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .position
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "ends after {} bytes where {n} more were expected at offset {}",
                    self.bytes.len(),
                    self.position
                )
            })?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!(
            "a number at offset {} is longer than 64 bits",
            self.position
        ))
    }

    fn u32_varint(&mut self, what: &str) -> Result<u32, String> {
        u32::try_from(self.varint()?).map_err(|_| format!("{what} out of range"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length out of range".to_string())?;
        self.take(len)
    }

    fn done(&self) -> bool {
        self.position == self.bytes.len()
    }
}

fn read_generations(payload: &[u8]) -> Result<Vec<u32>, String> {
    let mut reader = Reader::new(payload);
    let count = usize::try_from(reader.varint()?).map_err(|_| "too many slots".to_string())?;
    let raw = reader.take(count.checked_mul(4).ok_or("too many slots")?)?;
    Ok(raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// What an image holds.
pub struct LoadedImage {
    pub txid: TxId,
    pub state: FsState,
}

/// Decodes an image of namespace `expected` (its cluster and block pool
/// must match).
pub fn decode(
    path: &Path,
    bytes: &[u8],
    expected: &NamespaceInfo,
    config: &NamesystemConfig,
) -> Result<LoadedImage, ImageError> {
    decode_inner(bytes, expected, config).map_err(|reason| ImageError {
        path: path.to_path_buf(),
        reason,
    })
}

fn decode_inner(
    bytes: &[u8],
    expected: &NamespaceInfo,
    config: &NamesystemConfig,
) -> Result<LoadedImage, String> {
    let mut file = Reader::new(bytes);
    if file.take(8).map_err(|_| "too short to be an fsimage")? != MAGIC {
        return Err("not an rdfs fsimage (bad magic)".into());
    }
    let version = u32::from_be_bytes(file.take(4)?.try_into().map_err(|_| "bad version field")?);
    if version != FORMAT_VERSION && version != 1 {
        return Err(format!(
            "format version {version} is not supported (expected {FORMAT_VERSION})"
        ));
    }
    let mut next_section = |kind: u8| -> Result<&[u8], String> {
        let found = file.byte()?;
        if found != kind {
            return Err(format!("expected section {kind}, found {found}"));
        }
        let len = u64::from_be_bytes(file.take(8)?.try_into().map_err(|_| "bad section length")?);
        let len = usize::try_from(len).map_err(|_| "section too long")?;
        let payload = file.take(len)?;
        let crc = u32::from_be_bytes(file.take(4)?.try_into().map_err(|_| "bad checksum field")?);
        if crc32c::crc32c(payload) != crc {
            return Err(format!("section {kind} fails its checksum"));
        }
        Ok(payload)
    };

    let mut info = Reader::new(next_section(INFO)?);
    let txid = info.varint()?;
    let namespace_id = info.varint()?;
    let _ctime = info.varint()?;
    let _layout = info.varint()?;
    let last_generation_stamp = info.varint()?;
    let cluster_id = String::from_utf8_lossy(info.bytes()?).into_owned();
    let block_pool_id = String::from_utf8_lossy(info.bytes()?).into_owned();
    if cluster_id != expected.cluster_id
        || block_pool_id != expected.block_pool_id
        || namespace_id != u64::from(expected.namespace_id)
    {
        return Err(format!(
            "it belongs to cluster {cluster_id} / block pool {block_pool_id}, not to {} / {}",
            expected.cluster_id, expected.block_pool_id
        ));
    }

    let mut ns = Namespace::empty();
    let mut strings = Reader::new(next_section(STRINGS)?);
    let count = strings.varint()?;
    for _ in 0..count {
        let name = String::from_utf8_lossy(strings.bytes()?).into_owned();
        ns.interner.intern(&name);
    }

    let inode_generations = read_generations(next_section(INODE_GENERATIONS)?)?;
    let slots = inode_generations.len();
    ns.inodes = GenSlab::with_generations(rdfs_common::ids::ROOT_INODE_ID, inode_generations);
    // What each slot turned out to be: 0 not loaded, 1 file, 2 directory.
    let mut kinds = vec![0u8; slots];
    let mut inodes = Reader::new(next_section(INODES)?);
    let count = inodes.varint()?;
    if count != ns.inodes.len() as u64 {
        return Err(format!(
            "{count} inodes listed but {} live slots",
            ns.inodes.len()
        ));
    }
    for index in 0..count {
        let slot = inodes.u32_varint("inode slot")?;
        let parent = inodes.u32_varint("parent slot")?;
        let name = inodes.bytes()?;
        let mtime = inodes.varint()?;
        let atime = inodes.varint()?;
        let permission = Permission {
            owner: inodes.u32_varint("owner")?,
            group: inodes.u32_varint("group")?,
            mode: u16::try_from(inodes.varint()?).map_err(|_| "mode out of range")?,
        };
        let flags = inodes.byte()?;
        let known = ns.interner.all().len() as u32;
        if permission.owner >= known || permission.group >= known {
            return Err(format!(
                "inode slot {slot} names an owner or group missing from the strings table"
            ));
        }
        let mut acl = Vec::new();
        if permission.mode & ACL_BIT != 0 {
            let entries = inodes.varint()?;
            if entries == 0 || entries > rdfs_common::acl::MAX_ENTRIES as u64 {
                return Err(format!("inode slot {slot} has {entries} ACL entries"));
            }
            for _ in 0..entries {
                let entry = inodes.u32_varint("ACL entry")?;
                if crate::acl_storage::unpack(entry)
                    .name
                    .is_some_and(|n| n >= known)
                {
                    return Err(format!(
                        "inode slot {slot} has an ACL entry naming a user or group missing from the strings table"
                    ));
                }
                acl.push(entry);
            }
        }
        let is_root = index == 0;
        if is_root != (slot == ROOT_SLOT)
            || (is_root && (parent != ROOT_SLOT || flags & FLAG_DIR == 0))
        {
            return Err(format!(
                "inode slot {slot} is out of place: the root must come first"
            ));
        }
        if !is_root && kinds.get(parent as usize) != Some(&2) {
            return Err(format!(
                "inode slot {slot} names parent slot {parent}, which is not a loaded directory"
            ));
        }
        if kinds.get(slot as usize).is_none_or(|k| *k != 0) {
            return Err(format!("inode slot {slot} is repeated or out of range"));
        }
        let mut record = InodeRecord {
            parent,
            link: 0,
            extra: 0,
            name: ns.names.add(name),
            mtime,
            atime,
            perm: 0,
            header: 0,
        };
        let mut writer = None;
        if flags & FLAG_DIR != 0 {
            record.link = ns.children.allocate(Vec::new());
            record.header = crate::namespace::DIRECTORY_HEADER;
        } else {
            let replication =
                u16::try_from(inodes.varint()?).map_err(|_| "replication out of range")?;
            let block_size = inodes.varint()?;
            let nblocks = inodes.varint()?;
            let mut blocks = Vec::with_capacity(nblocks.min(1 << 20) as usize);
            for _ in 0..nblocks {
                blocks.push(inodes.u32_varint("block slot")?);
            }
            if flags & FLAG_UNDER_CONSTRUCTION != 0 {
                writer = Some(String::from_utf8_lossy(inodes.bytes()?).into_owned());
            }
            crate::namespace::file_record(
                &mut ns,
                &mut record,
                replication,
                block_size,
                blocks,
                writer.is_some(),
            );
        }
        record.perm = permission.pack_for_image();
        if !ns.inodes.restore(slot, record) {
            return Err(format!(
                "inode slot {slot} is not live in the generation table"
            ));
        }
        if let Some(writer) = writer {
            ns.writers.insert(slot, writer.into());
        }
        if !acl.is_empty() {
            ns.acls.insert(slot, acl.into_boxed_slice());
        }
        kinds[slot as usize] = if flags & FLAG_DIR != 0 { 2 } else { 1 };
        if !is_root {
            let siblings = ns.children.get_mut_pub(ns.inodes.get(parent).link);
            if let Some(&last) = siblings.last()
                && crate::namespace::compare_names(ns.names.get(ns.inodes.get(last).name), name)
                    != std::cmp::Ordering::Less
            {
                return Err(format!("children of slot {parent} are out of name order"));
            }
            ns.children
                .get_mut_pub(ns.inodes.get(parent).link)
                .push(slot);
        }
    }
    if !inodes.done() {
        return Err("trailing bytes after the inodes".into());
    }
    if ns.inodes.slot(rdfs_common::ids::ROOT_INODE_ID) != Some(ROOT_SLOT) {
        return Err("the root is not where its id says".into());
    }

    let mut blocks = BlockManager::new(
        expected.block_pool_id.clone(),
        config.min_replication.min(u16::MAX.into()) as u16,
    );
    blocks.blocks = GenSlab::with_generations(
        BLOCK_ID_BASE,
        read_generations(next_section(BLOCK_GENERATIONS)?)?,
    );
    blocks.last_generation_stamp = last_generation_stamp;
    let mut records = Reader::new(next_section(BLOCKS)?);
    let count = records.varint()?;
    if count != blocks.len() as u64 {
        return Err(format!(
            "{count} blocks listed but {} live slots",
            blocks.len()
        ));
    }
    let mut slot = 0u32;
    for index in 0..count {
        let delta = records.u32_varint("block slot")?;
        slot = slot
            .checked_add(delta)
            .filter(|_| index == 0 || delta > 0)
            .ok_or("block slots out of order")?;
        let inode = records.u32_varint("block's inode")?;
        let generation_stamp = records.varint()?;
        let num_bytes = records.varint()?;
        let state = match records.byte()? {
            0 => BlockState::UnderConstruction,
            1 => BlockState::Committed,
            2 => BlockState::Complete,
            3 => BlockState::UnderRecovery,
            other => return Err(format!("block slot {slot} has unknown state {other}")),
        };
        let replication =
            u16::try_from(records.varint()?).map_err(|_| "replication out of range")?;
        let recovery = if state == BlockState::UnderRecovery {
            let recovery_id = records.varint()?;
            let truncate = match records.byte()? {
                0 => false,
                1 => true,
                other => {
                    return Err(format!(
                        "block slot {slot} has an unknown recovery kind {other}"
                    ));
                }
            };
            Some((recovery_id, truncate))
        } else {
            None
        };
        if kinds.get(inode as usize) != Some(&1) {
            return Err(format!(
                "block slot {slot} belongs to inode slot {inode}, which is not a file"
            ));
        }
        if !blocks.blocks.restore(
            slot,
            BlockRecord::new(inode, generation_stamp, num_bytes, state, replication),
        ) {
            return Err(format!(
                "block slot {slot} is not live in the generation table"
            ));
        }
        if let Some((recovery_id, truncate)) = recovery {
            blocks.restore_recovery(slot, recovery_id, truncate);
        }
    }
    if !records.done() {
        return Err("trailing bytes after the blocks".into());
    }
    // Every block is listed by exactly one file, the file that owns it.
    let mut listed = vec![false; blocks.blocks.slots()];
    for inode_slot in ns.inodes.live_slots() {
        for &block in ns.at(inode_slot).block_slots() {
            if !blocks.blocks.is_live(block) || blocks.info(block).inode != inode_slot {
                return Err(format!(
                    "inode slot {inode_slot} lists block slot {block}, which is not its block"
                ));
            }
            if std::mem::replace(&mut listed[block as usize], true) {
                return Err(format!("block slot {block} is listed twice"));
            }
        }
    }
    if let Some(orphan) = blocks
        .blocks
        .live_slots()
        .find(|slot| !listed[*slot as usize])
    {
        return Err(format!("block slot {orphan} belongs to no file"));
    }

    next_section(END)?;
    if !file.done() {
        return Err("trailing bytes after the end".into());
    }
    let datanodes = DatanodeManager::new(config.liveness);
    // Complete blocks count towards safe mode from the start.
    blocks.recount(&datanodes);
    let leases = crate::lease::LeaseManager::rebuild(&ns, std::time::Instant::now());
    Ok(LoadedImage {
        txid,
        state: FsState {
            namespace: ns,
            blocks,
            datanodes,
            leases,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit_log::Op;
    use rdfs_proto::editlog as edit;

    pub(crate) fn info() -> NamespaceInfo {
        NamespaceInfo {
            cluster_id: "CID-1".into(),
            block_pool_id: "BP-1".into(),
            namespace_id: 9,
            layout_version: -1,
            ctime: 5,
        }
    }

    fn config() -> NamesystemConfig {
        crate::namesystem::NamesystemConfig::from_config(&rdfs_common::config::Config::default())
    }

    fn sample() -> FsState {
        let mut fs = crate::namesystem::empty_state(&info(), &config(), "hdfs", "supergroup", 1);
        let perm = |owner: &str| {
            Some(edit::PermissionStatus {
                owner: owner.into(),
                group: "g".into(),
                mode: 0o755,
            })
        };
        let mut next = rdfs_common::ids::ROOT_INODE_ID + 1;
        for (i, name) in ["b", "a", "é", "c"].iter().enumerate() {
            fs.apply(&Op::Mkdir(edit::Mkdir {
                inode_id: next,
                parent_id: 16385,
                name: name.as_bytes().to_vec(),
                permission: perm("u"),
                mtime: i as u64,
                acl: Vec::new(),
            }))
            .expect("mkdir");
            next += 1;
        }
        let file = next;
        fs.apply(&Op::AddFile(edit::AddFile {
            inode_id: file,
            parent_id: 16386,
            name: b"f".to_vec(),
            permission: perm("writer"),
            mtime: 7,
            replication: 3,
            block_size: 1 << 20,
            client_name: "c1".into(),
            acl: Vec::new(),
        }))
        .expect("add");
        for i in 0..3i64 {
            let previous = (i > 0).then(|| edit::BlockRef {
                block_id: 1073741825 + i - 1,
                generation_stamp: 1001 + i as u64 - 1,
                num_bytes: 1 << 20,
            });
            fs.apply(&Op::AddBlock(edit::AddBlock {
                inode_id: file,
                previous,
                block: Some(edit::BlockRef {
                    block_id: 1073741825 + i,
                    generation_stamp: 1001 + i as u64,
                    num_bytes: 0,
                }),
            }))
            .expect("block");
        }
        fs.apply(&Op::Delete(edit::Delete {
            inode_id: 16387,
            mtime: 9,
        }))
        .expect("delete");
        fs
    }

    #[test]
    fn round_trips_and_rebuilds_the_same_namespace() {
        let fs = sample();
        let bytes = encode(&fs, 42, &info());
        let mut loaded = decode(Path::new("img"), &bytes, &info(), &config()).expect("decodes");
        assert_eq!(loaded.txid, 42);
        let again = encode(&loaded.state, 42, &info());
        assert_eq!(
            again, bytes,
            "encoding the loaded image gives the same bytes"
        );
        let ns = &loaded.state.namespace;
        let names: Vec<String> = ns
            .at(ROOT_SLOT)
            .children()
            .iter()
            .map(|s| String::from_utf8_lossy(ns.at(*s).name()).into_owned())
            .collect();
        assert_eq!(
            names,
            ["é", "b", "c"],
            "signed-byte order kept, deleted dir gone"
        );
        let f = ns.get(16390).expect("file");
        assert_eq!(
            (f.writer(), f.block_slots().len(), f.replication()),
            (Some("c1"), 3, 3)
        );
        assert_eq!(
            loaded.state.blocks.info(f.block_slots()[0]).state,
            BlockState::Committed
        );
        assert_eq!(loaded.state.blocks.next_block().ok(), {
            let mut original = sample().blocks;
            original.next_block().ok()
        });
    }

    #[test]
    fn damage_is_refused_with_a_reason() {
        let bytes = encode(&sample(), 1, &info());
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (bytes[..bytes.len() - 1].to_vec(), "ends after"),
            (vec![0u8; bytes.len()], "bad magic"),
            (
                {
                    let mut b = bytes.clone();
                    let middle = b.len() / 2;
                    b[middle] ^= 0x10;
                    b
                },
                "checksum",
            ),
            (Vec::new(), "too short"),
        ];
        for (damaged, expected) in cases {
            let err = decode(Path::new("img"), &damaged, &info(), &config())
                .err()
                .expect("damage detected");
            assert!(err.reason.contains(expected), "{err}");
        }
        let other = NamespaceInfo {
            cluster_id: "CID-2".into(),
            ..info()
        };
        assert!(
            decode(Path::new("img"), &bytes, &other, &config())
                .err()
                .expect("foreign")
                .reason
                .contains("CID-1")
        );
    }
}
