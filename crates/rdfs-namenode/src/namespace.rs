//! The namespace tree: directories and files, in memory, laid out for bytes
//! per object.
//!
//! Every inode is one fixed 56-byte record in a generational slab
//! ([`crate::slab`]): parent and children are `u32` slots, the name a packed
//! reference into an arena ([`crate::names`]), owner, group and mode are
//! packed into one `u64` (as HDFS packs `PermissionStatus`), and so are the
//! file header fields (replication, preferred block size). A one-block file
//! holds its block inline; longer block lists and directory children live in
//! side lists. Only [`crate::apply`] changes it, so a live change and its
//! replay from the edit log cannot diverge.

use std::cmp::Ordering;
use std::collections::HashMap;

use rdfs_common::ids::ROOT_INODE_ID;

use crate::names::{NameArena, NameRef};
use crate::slab::GenSlab;

/// An inode id: `16385 + (generation << 32 | slot)`.
pub type InodeId = u64;
/// An inode's position in the slab.
pub type Slot = u32;
pub const ROOT_SLOT: Slot = 0;

const HEADER_DIR: u64 = 1 << 63;
const HEADER_UNDER_CONSTRUCTION: u64 = 1 << 62;
const HEADER_HAS_BLOCK: u64 = 1 << 61;
const REPLICATION_SHIFT: u32 = 48;
const REPLICATION_MASK: u64 = 0x1fff;
const BLOCK_SIZE_MASK: u64 = (1 << 48) - 1;
/// Set in an inode's mode when it has an ACL, as Hadoop's
/// `FsPermissionExtension` marks it on the wire.
pub const ACL_BIT: u16 = rdfs_common::acl::ACL_BIT;

/// Interned owner and group ids are 24 bits each.
pub const MAX_INTERNED: u32 = (1 << 24) - 1;

/// Owner, group and mode bits of an inode, with interned names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub owner: u32,
    pub group: u32,
    pub mode: u16,
}

impl Permission {
    pub(crate) fn pack_for_image(self) -> u64 {
        self.pack()
    }

    fn pack(self) -> u64 {
        (u64::from(self.owner & MAX_INTERNED) << 40)
            | (u64::from(self.group & MAX_INTERNED) << 16)
            | u64::from(self.mode)
    }

    fn unpack(packed: u64) -> Self {
        Permission {
            owner: (packed >> 40) as u32 & MAX_INTERNED,
            group: (packed >> 16) as u32 & MAX_INTERNED,
            mode: packed as u16,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct InodeRecord {
    pub(crate) parent: Slot,
    /// Directory: children list. File: its only block's slot (when the
    /// header says it has one and `extra` is 0).
    pub(crate) link: u32,
    /// File with several blocks: block list id + 1.
    pub(crate) extra: u32,
    pub(crate) name: NameRef,
    pub(crate) mtime: u64,
    pub(crate) atime: u64,
    pub(crate) perm: u64,
    pub(crate) header: u64,
}

/// Owner and group names interned to small ids.
#[derive(Debug, Default)]
pub struct Interner {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

impl Interner {
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = (self.names.len() as u32).min(MAX_INTERNED);
        if id == MAX_INTERNED {
            // 16 million distinct users or groups: share the last id rather
            // than corrupt packed permissions.
            return id;
        }
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |name| name)
    }

    /// The id of a name already interned.
    pub fn lookup(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn all(&self) -> &[Box<str>] {
        &self.names
    }
}

/// Lists of slots (directory children, multi-block files), reusable.
#[derive(Debug, Default)]
pub(crate) struct ListStore {
    lists: Vec<Vec<u32>>,
    free: Vec<u32>,
}

impl ListStore {
    pub(crate) fn allocate(&mut self, list: Vec<u32>) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.lists[id as usize] = list;
                id
            }
            None => {
                self.lists.push(list);
                (self.lists.len() - 1) as u32
            }
        }
    }

    pub(crate) fn get(&self, id: u32) -> &[u32] {
        &self.lists[id as usize]
    }

    fn get_mut(&mut self, id: u32) -> &mut Vec<u32> {
        &mut self.lists[id as usize]
    }

    pub(crate) fn get_mut_pub(&mut self, id: u32) -> &mut Vec<u32> {
        self.get_mut(id)
    }

    fn release(&mut self, id: u32) -> Vec<u32> {
        self.free.push(id);
        std::mem::take(&mut self.lists[id as usize])
    }

    fn heap_bytes(&self) -> usize {
        self.lists.capacity() * std::mem::size_of::<Vec<u32>>()
            + self.lists.iter().map(|l| l.capacity() * 4).sum::<usize>()
    }
}

/// The header of a directory record (loading an fsimage).
pub(crate) const DIRECTORY_HEADER: u64 = HEADER_DIR;

/// Fills in a file's header and blocks (loading an fsimage).
pub(crate) fn file_record(
    ns: &mut Namespace,
    record: &mut InodeRecord,
    replication: u16,
    block_size: u64,
    blocks: Vec<u32>,
    under_construction: bool,
) {
    record.header = ((u64::from(replication) & REPLICATION_MASK) << REPLICATION_SHIFT)
        | (block_size & BLOCK_SIZE_MASK);
    if under_construction {
        record.header |= HEADER_UNDER_CONSTRUCTION;
    }
    match blocks.len() {
        0 => {}
        1 => {
            record.link = blocks[0];
            record.header |= HEADER_HAS_BLOCK;
        }
        _ => record.extra = ns.block_lists.allocate(blocks) + 1,
    }
}

/// HDFS orders names as Java compares `byte[]`: by signed bytes, so names
/// with non-ASCII bytes sort before ASCII ones. Listings page by this order.
pub fn compare_names(a: &[u8], b: &[u8]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return (*x as i8).cmp(&(*y as i8));
        }
    }
    a.len().cmp(&b.len())
}

/// A read-only view of one inode.
#[derive(Clone, Copy)]
pub struct Inode<'a> {
    ns: &'a Namespace,
    slot: Slot,
    record: &'a InodeRecord,
}

impl<'a> Inode<'a> {
    pub fn id(&self) -> InodeId {
        self.ns.inodes.id_of(self.slot)
    }

    pub fn slot(&self) -> Slot {
        self.slot
    }

    pub fn parent(&self) -> InodeId {
        self.ns.inodes.id_of(self.record.parent)
    }

    pub fn parent_slot(&self) -> Slot {
        self.record.parent
    }

    pub fn name(&self) -> &'a [u8] {
        self.ns.names.get(self.record.name)
    }

    pub fn is_dir(&self) -> bool {
        self.record.header & HEADER_DIR != 0
    }

    pub fn mtime(&self) -> u64 {
        self.record.mtime
    }

    pub fn atime(&self) -> u64 {
        self.record.atime
    }

    pub fn permission(&self) -> Permission {
        Permission::unpack(self.record.perm)
    }

    pub fn owner(&self) -> &'a str {
        self.ns.interner.name(self.permission().owner)
    }

    pub fn group(&self) -> &'a str {
        self.ns.interner.name(self.permission().group)
    }

    /// The stored entries of this inode's ACL (empty when it has none).
    pub fn acl_entries(&self) -> &'a [u32] {
        if self.permission().mode & ACL_BIT == 0 {
            return &[];
        }
        self.ns.acls.get(&self.slot).map_or(&[], |entries| entries)
    }

    /// A file's replication (0 for directories).
    pub fn replication(&self) -> u16 {
        ((self.record.header >> REPLICATION_SHIFT) & REPLICATION_MASK) as u16
    }

    /// A file's preferred block size (0 for directories).
    pub fn block_size(&self) -> u64 {
        self.record.header & BLOCK_SIZE_MASK
    }

    /// The slots of a file's blocks, in order (none for directories).
    pub fn block_slots(&self) -> &'a [u32] {
        if self.is_dir() {
            return &[];
        }
        if self.record.extra != 0 {
            return self.ns.block_lists.get(self.record.extra - 1);
        }
        if self.record.header & HEADER_HAS_BLOCK != 0 {
            std::slice::from_ref(&self.record.link)
        } else {
            &[]
        }
    }

    /// The client writing the file, while it is under construction.
    pub fn writer(&self) -> Option<&'a str> {
        if self.record.header & HEADER_UNDER_CONSTRUCTION == 0 {
            return None;
        }
        self.ns.writers.get(&self.slot).map(|w| &**w)
    }

    /// A directory's children, sorted by name (none for files).
    pub fn children(&self) -> &'a [Slot] {
        if self.is_dir() {
            self.ns.children.get(self.record.link)
        } else {
            &[]
        }
    }
}

/// An inode to add.
#[derive(Debug, Clone)]
pub struct NewInode<'a> {
    pub id: InodeId,
    pub parent: InodeId,
    pub name: &'a [u8],
    pub permission: Permission,
    pub mtime: u64,
    pub atime: u64,
    pub kind: NewKind,
}

/// What a new inode is.
#[derive(Debug, Clone)]
pub enum NewKind {
    Directory,
    File {
        replication: u16,
        block_size: u64,
        writer: Option<String>,
    },
}

/// Where a path led: the inode of each existing prefix, from the root.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// `inodes[0]` is the root; `inodes[i]` is the i-th component's inode.
    /// Shorter than `components + 1` when the path stops existing.
    pub inodes: Vec<InodeId>,
    pub depth: usize,
}

impl Resolved {
    /// The inode the whole path names, if it exists.
    pub fn last(&self) -> Option<InodeId> {
        (self.inodes.len() == self.depth + 1).then(|| self.inodes[self.depth])
    }

    /// The deepest existing inode along the path.
    pub fn deepest(&self) -> InodeId {
        self.inodes[self.inodes.len() - 1]
    }

    /// The parent directory of the path's last component, if it exists.
    pub fn parent(&self) -> Option<InodeId> {
        if self.depth == 0 {
            return None;
        }
        (self.inodes.len() >= self.depth).then(|| self.inodes[self.depth - 1])
    }
}

/// Resolution stopped at a file that the path continues through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThroughFile {
    /// The path of that file.
    pub path: String,
    /// The inodes from the root down to that file (its last).
    pub inodes: Vec<InodeId>,
}

#[derive(Debug, Default)]
pub struct RemovedSubtree {
    pub files: u64,
    pub directories: u64,
    pub block_slots: Vec<u32>,
}

/// Bytes held by each part of the namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamespaceMemory {
    pub inodes: usize,
    pub names: usize,
    pub lists: usize,
}

#[derive(Debug)]
pub struct Namespace {
    pub(crate) inodes: GenSlab<InodeRecord>,
    pub(crate) names: NameArena,
    pub(crate) children: ListStore,
    pub(crate) block_lists: ListStore,
    pub(crate) writers: HashMap<Slot, Box<str>>,
    /// The ACL entries of the inodes whose mode has [`ACL_BIT`] (see
    /// [`crate::acl_storage`]); an inode without an ACL costs nothing here.
    pub(crate) acls: HashMap<Slot, Box<[u32]>>,
    pub interner: Interner,
}

impl Namespace {
    /// A namespace holding only `/`, owned by `owner:group` with `mode`.
    pub fn new(owner: &str, group: &str, mode: u16, mtime: u64) -> Self {
        let mut ns = Self::empty();
        let permission = Permission {
            owner: ns.interner.intern(owner),
            group: ns.interner.intern(group),
            mode,
        };
        let link = ns.children.allocate(Vec::new());
        let root = InodeRecord {
            parent: ROOT_SLOT,
            link,
            extra: 0,
            name: NameRef::default(),
            mtime,
            atime: 0,
            perm: permission.pack(),
            header: HEADER_DIR,
        };
        // The first id of an empty slab is its base: the root's id.
        let _ = ns.inodes.insert(ROOT_INODE_ID, root);
        ns
    }

    pub(crate) fn empty() -> Self {
        Self {
            inodes: GenSlab::new(ROOT_INODE_ID),
            names: NameArena::new(),
            children: ListStore::default(),
            block_lists: ListStore::default(),
            writers: HashMap::new(),
            acls: HashMap::new(),
            interner: Interner::default(),
        }
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    pub fn slot_of(&self, id: InodeId) -> Option<Slot> {
        self.inodes.slot(id)
    }

    pub fn get(&self, id: InodeId) -> Option<Inode<'_>> {
        self.slot_of(id).map(|slot| self.at(slot))
    }

    /// The inode in a live slot.
    pub fn at(&self, slot: Slot) -> Inode<'_> {
        Inode {
            ns: self,
            slot,
            record: self.inodes.get(slot),
        }
    }

    /// The id the next created inode gets.
    pub fn next_inode_id(&mut self) -> Result<InodeId, String> {
        self.inodes.peek_next().map_err(|e| e.to_string())
    }

    fn search(&self, children: &[Slot], name: &[u8]) -> Result<usize, usize> {
        children.binary_search_by(|child| {
            compare_names(self.names.get(self.inodes.get(*child).name), name)
        })
    }

    /// The child of directory `dir` called `name`.
    pub fn child(&self, dir: InodeId, name: &[u8]) -> Option<InodeId> {
        let slot = self.child_slot(self.slot_of(dir)?, name)?;
        Some(self.inodes.id_of(slot))
    }

    fn child_slot(&self, dir: Slot, name: &[u8]) -> Option<Slot> {
        let inode = self.at(dir);
        if !inode.is_dir() {
            return None;
        }
        let children = inode.children();
        self.search(children, name)
            .ok()
            .map(|index| children[index])
    }

    /// Walks `components` from the root. Fails when a file sits in the middle
    /// of the path.
    pub fn resolve(&self, components: &[&str]) -> Result<Resolved, ThroughFile> {
        let mut inodes = Vec::with_capacity(components.len() + 1);
        inodes.push(ROOT_INODE_ID);
        let mut current = ROOT_SLOT;
        for (index, component) in components.iter().enumerate() {
            if !self.at(current).is_dir() {
                return Err(ThroughFile {
                    path: rdfs_common::path::join_components(&components[..index]),
                    inodes,
                });
            }
            match self.child_slot(current, component.as_bytes()) {
                Some(child) => {
                    inodes.push(self.inodes.id_of(child));
                    current = child;
                }
                None => break,
            }
        }
        Ok(Resolved {
            inodes,
            depth: components.len(),
        })
    }

    /// The absolute path of an inode.
    pub fn path_of(&self, id: InodeId) -> String {
        let Some(mut slot) = self.slot_of(id) else {
            return String::new();
        };
        let mut names: Vec<&[u8]> = Vec::new();
        while slot != ROOT_SLOT {
            let record = self.inodes.get(slot);
            names.push(self.names.get(record.name));
            slot = record.parent;
        }
        if names.is_empty() {
            return "/".to_string();
        }
        let mut out = String::new();
        for name in names.iter().rev() {
            out.push('/');
            out.push_str(&String::from_utf8_lossy(name));
        }
        out
    }

    /// True when `ancestor` is `id` or above it.
    pub fn is_ancestor_or_self(&self, ancestor: InodeId, id: InodeId) -> bool {
        let (Some(ancestor), Some(mut slot)) = (self.slot_of(ancestor), self.slot_of(id)) else {
            return false;
        };
        loop {
            if slot == ancestor {
                return true;
            }
            if slot == ROOT_SLOT {
                return false;
            }
            slot = self.inodes.get(slot).parent;
        }
    }

    /// Adds an inode under `parent`, which must be a directory without a
    /// child of that name.
    pub fn insert(&mut self, new: NewInode<'_>) -> Result<(), String> {
        let NewInode {
            id,
            parent,
            name,
            permission,
            mtime,
            atime,
            kind,
        } = new;
        let parent_slot = self
            .slot_of(parent)
            .ok_or_else(|| format!("parent inode {parent} does not exist"))?;
        if !self.at(parent_slot).is_dir() {
            return Err(format!("parent inode {parent} is not a directory"));
        }
        let position = match self.search(self.at(parent_slot).children(), name) {
            Ok(_) => {
                return Err(format!(
                    "{}/{} already exists",
                    self.path_of(parent),
                    String::from_utf8_lossy(name)
                ));
            }
            Err(position) => position,
        };
        let name_ref = self.names.add(name);
        let (header, link, writer) = match kind {
            NewKind::Directory => (HEADER_DIR, self.children.allocate(Vec::new()), None),
            NewKind::File {
                replication,
                block_size,
                writer,
            } => {
                let mut header = (u64::from(replication) & REPLICATION_MASK) << REPLICATION_SHIFT;
                header |= block_size & BLOCK_SIZE_MASK;
                if writer.is_some() {
                    header |= HEADER_UNDER_CONSTRUCTION;
                }
                (header, 0, writer)
            }
        };
        let record = InodeRecord {
            parent: parent_slot,
            link,
            extra: 0,
            name: name_ref,
            mtime,
            atime,
            perm: permission.pack(),
            header,
        };
        let slot = match self.inodes.insert(id, record) {
            Ok(slot) => slot,
            Err(err) => {
                self.names.release(name_ref);
                if header & HEADER_DIR != 0 {
                    self.children.release(link);
                }
                return Err(err.to_string());
            }
        };
        if let Some(writer) = writer {
            self.writers.insert(slot, writer.into());
        }
        let parent_link = self.inodes.get(parent_slot).link;
        self.children.get_mut(parent_link).insert(position, slot);
        Ok(())
    }

    /// Unlinks `id` from its parent, keeping the subtree (for rename).
    pub fn detach(&mut self, id: InodeId) -> Result<(), String> {
        let slot = self
            .slot_of(id)
            .ok_or_else(|| format!("inode {id} does not exist"))?;
        if slot == ROOT_SLOT {
            return Err("the root cannot be moved".into());
        }
        let record = *self.inodes.get(slot);
        let siblings = self.at(record.parent).children();
        let position = self
            .search(siblings, self.names.get(record.name))
            .map_err(|_| format!("inode {id} is not in its parent"))?;
        let parent_link = self.inodes.get(record.parent).link;
        self.children.get_mut(parent_link).remove(position);
        Ok(())
    }

    /// Links a detached inode under `parent` as `name`.
    pub fn attach(&mut self, id: InodeId, parent: InodeId, name: &[u8]) -> Result<(), String> {
        let slot = self
            .slot_of(id)
            .ok_or_else(|| format!("inode {id} does not exist"))?;
        let parent_slot = self
            .slot_of(parent)
            .ok_or_else(|| format!("new parent {parent} does not exist"))?;
        if !self.at(parent_slot).is_dir() {
            return Err("new parent is not a directory".into());
        }
        let position = match self.search(self.at(parent_slot).children(), name) {
            Ok(_) => return Err("destination exists".into()),
            Err(position) => position,
        };
        let old_name = self.inodes.get(slot).name;
        if self.names.get(old_name) != name {
            self.names.release(old_name);
            let new_name = self.names.add(name);
            self.inodes.get_mut(slot).name = new_name;
        }
        self.inodes.get_mut(slot).parent = parent_slot;
        let parent_link = self.inodes.get(parent_slot).link;
        self.children.get_mut(parent_link).insert(position, slot);
        self.compact_names_if_worthwhile();
        Ok(())
    }

    /// Removes `id` and everything below it; returns the removed files' block
    /// slots. The root cannot be removed.
    pub fn remove_subtree(&mut self, id: InodeId) -> Result<RemovedSubtree, String> {
        let slot = self
            .slot_of(id)
            .ok_or_else(|| format!("inode {id} does not exist"))?;
        if slot == ROOT_SLOT {
            return Err("the root cannot be removed".into());
        }
        self.detach(id)?;
        let mut removed = RemovedSubtree::default();
        let mut stack = vec![slot];
        while let Some(next) = stack.pop() {
            let record = self.inodes.remove(next);
            self.names.release(record.name);
            if record.perm & u64::from(ACL_BIT) != 0 {
                self.acls.remove(&next);
            }
            if record.header & HEADER_DIR != 0 {
                removed.directories += 1;
                stack.extend(self.children.release(record.link));
            } else {
                removed.files += 1;
                if record.extra != 0 {
                    removed
                        .block_slots
                        .extend(self.block_lists.release(record.extra - 1));
                } else if record.header & HEADER_HAS_BLOCK != 0 {
                    removed.block_slots.push(record.link);
                }
                self.writers.remove(&next);
            }
        }
        self.compact_names_if_worthwhile();
        Ok(removed)
    }

    /// Visits `id` and every inode below it, depth first, children in name
    /// order. Iterative: no tree is too deep for it.
    pub fn walk(&self, id: InodeId, visit: &mut impl FnMut(Inode<'_>)) {
        let Some(slot) = self.slot_of(id) else { return };
        let mut stack = vec![slot];
        while let Some(next) = stack.pop() {
            let inode = self.at(next);
            visit(inode);
            stack.extend(inode.children().iter().rev());
        }
    }

    fn record_mut(&mut self, id: InodeId) -> Result<&mut InodeRecord, String> {
        let slot = self
            .slot_of(id)
            .ok_or_else(|| format!("inode {id} does not exist"))?;
        Ok(self.inodes.get_mut(slot))
    }

    pub fn set_times(
        &mut self,
        id: InodeId,
        mtime: Option<u64>,
        atime: Option<u64>,
    ) -> Result<(), String> {
        let record = self.record_mut(id)?;
        if let Some(mtime) = mtime {
            record.mtime = mtime;
        }
        if let Some(atime) = atime {
            record.atime = atime;
        }
        Ok(())
    }

    pub fn set_permission(&mut self, id: InodeId, permission: Permission) -> Result<(), String> {
        self.record_mut(id)?.perm = permission.pack();
        Ok(())
    }

    pub fn set_replication(&mut self, id: InodeId, replication: u16) -> Result<(), String> {
        let record = self.record_mut(id)?;
        if record.header & HEADER_DIR != 0 {
            return Err(format!("inode {id} is a directory"));
        }
        record.header = (record.header & !(REPLICATION_MASK << REPLICATION_SHIFT))
            | ((u64::from(replication) & REPLICATION_MASK) << REPLICATION_SHIFT);
        Ok(())
    }

    /// Closes a file: it has no writer any more.
    pub fn clear_writer(&mut self, id: InodeId) -> Result<(), String> {
        let slot = self
            .slot_of(id)
            .ok_or_else(|| format!("inode {id} does not exist"))?;
        self.inodes.get_mut(slot).header &= !HEADER_UNDER_CONSTRUCTION;
        self.writers.remove(&slot);
        Ok(())
    }

    /// Opens a file for writing by `writer` (append, truncate), or passes
    /// an open file to another writer (lease recovery).
    pub fn set_writer(&mut self, id: InodeId, writer: &str) -> Result<(), String> {
        let slot = self
            .slot_of(id)
            .ok_or_else(|| format!("inode {id} does not exist"))?;
        let record = self.inodes.get_mut(slot);
        if record.header & HEADER_DIR != 0 {
            return Err(format!("inode {id} is a directory, not a file"));
        }
        record.header |= HEADER_UNDER_CONSTRUCTION;
        self.writers.insert(slot, writer.into());
        Ok(())
    }

    /// Appends a block to a file.
    pub fn push_block(&mut self, id: InodeId, block_slot: u32) -> Result<(), String> {
        let slot = self
            .slot_of(id)
            .ok_or_else(|| format!("inode {id} does not exist"))?;
        let record = *self.inodes.get(slot);
        if record.header & HEADER_DIR != 0 {
            return Err(format!("inode {id} is a directory, not a file"));
        }
        let record = self.inodes.get_mut(slot);
        if record.extra != 0 {
            let list = record.extra - 1;
            self.block_lists.get_mut(list).push(block_slot);
        } else if record.header & HEADER_HAS_BLOCK != 0 {
            let list = self.block_lists.allocate(vec![record.link, block_slot]);
            let record = self.inodes.get_mut(slot);
            record.extra = list + 1;
            record.link = 0;
            record.header &= !HEADER_HAS_BLOCK;
        } else {
            record.link = block_slot;
            record.header |= HEADER_HAS_BLOCK;
        }
        Ok(())
    }

    /// Drops a file's last block if it is `block_slot`; true if it was.
    pub fn pop_block(&mut self, id: InodeId, block_slot: u32) -> Result<bool, String> {
        let slot = self
            .slot_of(id)
            .ok_or_else(|| format!("inode {id} does not exist"))?;
        if self.at(slot).block_slots().last() != Some(&block_slot) {
            return Ok(false);
        }
        let record = *self.inodes.get(slot);
        if record.extra != 0 {
            let list = self.block_lists.get_mut(record.extra - 1);
            list.pop();
            if list.len() == 1 {
                let only = list[0];
                self.block_lists.release(record.extra - 1);
                let record = self.inodes.get_mut(slot);
                record.extra = 0;
                record.link = only;
                record.header |= HEADER_HAS_BLOCK;
            }
        } else {
            let record = self.inodes.get_mut(slot);
            record.link = 0;
            record.header &= !HEADER_HAS_BLOCK;
        }
        Ok(true)
    }

    /// Rebuilds the name arena from the live names once released names
    /// outweigh them.
    fn compact_names_if_worthwhile(&mut self) {
        if !self.names.should_compact() {
            return;
        }
        let mut fresh = NameArena::new();
        let slots: Vec<Slot> = self.inodes.live_slots().collect();
        for slot in slots {
            let old = self.inodes.get(slot).name;
            let new = fresh.add(self.names.get(old));
            self.inodes.get_mut(slot).name = new;
        }
        self.names = fresh;
    }

    pub fn memory(&self) -> NamespaceMemory {
        NamespaceMemory {
            inodes: self.inodes.heap_bytes(),
            names: self.names.heap_bytes(),
            // ACL entries are side lists too.
            lists: self.children.heap_bytes() + self.block_lists.heap_bytes() + self.acl_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm() -> Permission {
        Permission {
            owner: 0,
            group: 0,
            mode: 0o755,
        }
    }

    fn dir(ns: &mut Namespace, parent: InodeId, name: &str) -> InodeId {
        let id = ns.next_inode_id().expect("id");
        ns.insert(NewInode {
            id,
            parent,
            name: name.as_bytes(),
            permission: perm(),
            mtime: 0,
            atime: 0,
            kind: NewKind::Directory,
        })
        .expect("insert");
        id
    }

    fn file(ns: &mut Namespace, parent: InodeId, name: &str) -> InodeId {
        let id = ns.next_inode_id().expect("id");
        let kind = NewKind::File {
            replication: 3,
            block_size: 1 << 27,
            writer: Some("w".into()),
        };
        ns.insert(NewInode {
            id,
            parent,
            name: name.as_bytes(),
            permission: perm(),
            mtime: 0,
            atime: 0,
            kind,
        })
        .expect("insert");
        id
    }

    #[test]
    fn records_are_compact() {
        assert_eq!(std::mem::size_of::<InodeRecord>(), 56);
    }

    #[test]
    fn resolve_walks_and_stops() {
        let mut ns = Namespace::new("root", "supergroup", 0o755, 0);
        let a = dir(&mut ns, ROOT_INODE_ID, "a");
        assert_eq!(
            a,
            ROOT_INODE_ID + 1,
            "ids start right after the root, as in HDFS"
        );
        let b = dir(&mut ns, a, "b");
        dir(&mut ns, a, "0");
        dir(&mut ns, a, "z");
        let resolved = ns.resolve(&["a", "b"]).expect("resolves");
        assert_eq!(resolved.last(), Some(b));
        let resolved = ns.resolve(&["a", "x", "y"]).expect("resolves");
        assert_eq!(resolved.last(), None);
        assert_eq!(resolved.deepest(), a);
        assert_eq!(ns.path_of(b), "/a/b");
        let names: Vec<String> = ns
            .get(a)
            .expect("a")
            .children()
            .iter()
            .map(|s| String::from_utf8_lossy(ns.at(*s).name()).into_owned())
            .collect();
        assert_eq!(names, ["0", "b", "z"]);
        assert!(ns.is_ancestor_or_self(a, b));
        assert!(!ns.is_ancestor_or_self(b, a));
        let f = file(&mut ns, b, "f");
        assert_eq!(
            ns.resolve(&["a", "b", "f", "g"])
                .expect_err("through a file")
                .path,
            "/a/b/f"
        );
        assert_eq!(ns.get(f).and_then(|i| i.writer()), Some("w"));
        let removed = ns.remove_subtree(a).expect("removes");
        assert_eq!((removed.directories, removed.files), (4, 1));
        assert_eq!(ns.inode_count(), 1);
        assert!(ns.get(f).is_none());
        let reused = dir(&mut ns, ROOT_INODE_ID, "again");
        assert_ne!(reused, a, "ids are never reused");
    }

    #[test]
    fn blocks_inline_then_listed_then_popped() {
        let mut ns = Namespace::new("root", "supergroup", 0o755, 0);
        let f = file(&mut ns, ROOT_INODE_ID, "f");
        assert!(ns.get(f).expect("f").block_slots().is_empty());
        ns.push_block(f, 7).expect("push");
        assert_eq!(ns.get(f).expect("f").block_slots(), &[7]);
        ns.push_block(f, 9).expect("push");
        ns.push_block(f, 11).expect("push");
        assert_eq!(ns.get(f).expect("f").block_slots(), &[7, 9, 11]);
        assert!(!ns.pop_block(f, 9).expect("pop"));
        assert!(ns.pop_block(f, 11).expect("pop"));
        assert!(ns.pop_block(f, 9).expect("pop"));
        assert_eq!(ns.get(f).expect("f").block_slots(), &[7]);
        ns.set_replication(f, 2).expect("setrep");
        let inode = ns.get(f).expect("f");
        assert_eq!((inode.replication(), inode.block_size()), (2, 1 << 27));
    }

    #[test]
    fn rename_moves_and_renames() {
        let mut ns = Namespace::new("root", "supergroup", 0o755, 0);
        let a = dir(&mut ns, ROOT_INODE_ID, "a");
        let b = dir(&mut ns, ROOT_INODE_ID, "b");
        let f = file(&mut ns, a, "f");
        ns.detach(f).expect("detach");
        ns.attach(f, b, b"g").expect("attach");
        assert_eq!(ns.path_of(f), "/b/g");
        assert!(ns.child(a, b"f").is_none());
        assert_eq!(ns.child(b, b"g"), Some(f));
    }

    #[test]
    fn names_sort_as_hdfs_does() {
        assert_eq!(compare_names(b"a", b"b"), Ordering::Less);
        assert_eq!(compare_names(b"a", b"ab"), Ordering::Less);
        assert_eq!(compare_names("é".as_bytes(), b"a"), Ordering::Less);
    }
}
