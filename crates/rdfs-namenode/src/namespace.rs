//! The namespace tree: directories and files, kept in memory.
//!
//! Laid out for bytes per object: inodes live in one map keyed by inode id
//! (parents and children are ids, never pointers), names are boxed byte
//! slices, owners and groups are interned to 4-byte ids, and a directory's
//! children are a sorted vector of ids searched by name. Only
//! [`crate::apply`] changes it, so a live change and its replay from the edit
//! log cannot diverge.

use std::cmp::Ordering;
use std::collections::HashMap;

use rdfs_common::ids::ROOT_INODE_ID;

/// An inode id.
pub type InodeId = u64;

/// Owner, group and mode bits of an inode, with interned names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub owner: u32,
    pub group: u32,
    pub mode: u16,
}

#[derive(Debug)]
pub struct Inode {
    pub id: InodeId,
    pub parent: InodeId,
    pub name: Box<[u8]>,
    pub mtime: u64,
    pub atime: u64,
    pub permission: Permission,
    pub kind: InodeKind,
}

#[derive(Debug)]
pub enum InodeKind {
    Directory(Directory),
    File(FileInode),
}

#[derive(Debug, Default)]
pub struct Directory {
    /// Child inode ids, sorted by name in HDFS's order (see [`compare_names`]).
    pub children: Vec<InodeId>,
}

#[derive(Debug)]
pub struct FileInode {
    pub replication: u16,
    pub block_size: u64,
    pub blocks: Vec<i64>,
    /// The client writing the file, while it is under construction.
    pub writer: Option<Box<str>>,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, InodeKind::Directory(_))
    }

    pub fn as_file(&self) -> Option<&FileInode> {
        match &self.kind {
            InodeKind::File(file) => Some(file),
            InodeKind::Directory(_) => None,
        }
    }

    pub fn as_dir(&self) -> Option<&Directory> {
        match &self.kind {
            InodeKind::Directory(dir) => Some(dir),
            InodeKind::File(_) => None,
        }
    }
}

/// HDFS orders names as Java compares `byte[]`: by signed bytes, so names
/// with non-ASCII bytes sort before ASCII ones. Listings page by this order.
pub fn compare_names(a: &[u8], b: &[u8]) -> Ordering {
    let signed = |bytes: &[u8]| bytes.iter().map(|&b| b as i8).collect::<Vec<i8>>();
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    signed(a).cmp(&signed(b))
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
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |name| name)
    }
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
}

#[derive(Debug)]
pub struct Namespace {
    inodes: HashMap<InodeId, Inode>,
    last_inode_id: InodeId,
    pub interner: Interner,
}

impl Namespace {
    /// A namespace holding only `/`, owned by `owner:group` with `mode`.
    pub fn new(owner: &str, group: &str, mode: u16, mtime: u64) -> Self {
        let mut interner = Interner::default();
        let permission = Permission {
            owner: interner.intern(owner),
            group: interner.intern(group),
            mode,
        };
        let root = Inode {
            id: ROOT_INODE_ID,
            parent: ROOT_INODE_ID,
            name: Box::new([]),
            mtime,
            atime: 0,
            permission,
            kind: InodeKind::Directory(Directory::default()),
        };
        let mut inodes = HashMap::new();
        inodes.insert(ROOT_INODE_ID, root);
        Self {
            inodes,
            last_inode_id: ROOT_INODE_ID,
            interner,
        }
    }

    pub fn get(&self, id: InodeId) -> Option<&Inode> {
        self.inodes.get(&id)
    }

    pub fn get_mut(&mut self, id: InodeId) -> Option<&mut Inode> {
        self.inodes.get_mut(&id)
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    pub fn last_inode_id(&self) -> InodeId {
        self.last_inode_id
    }

    /// The id the next created inode gets.
    pub fn next_inode_id(&self) -> InodeId {
        self.last_inode_id + 1
    }

    /// The child of directory `dir` called `name`.
    pub fn child(&self, dir: InodeId, name: &[u8]) -> Option<InodeId> {
        let children = &self.inodes.get(&dir)?.as_dir()?.children;
        self.search(children, name).ok().map(|idx| children[idx])
    }

    fn search(&self, children: &[InodeId], name: &[u8]) -> Result<usize, usize> {
        children.binary_search_by(|child| {
            let child_name = self.inodes.get(child).map_or(&[][..], |inode| &inode.name);
            compare_names(child_name, name)
        })
    }

    /// Walks `components` from the root. Fails when a file sits in the middle
    /// of the path.
    pub fn resolve(&self, components: &[&str]) -> Result<Resolved, ThroughFile> {
        let mut inodes = Vec::with_capacity(components.len() + 1);
        inodes.push(ROOT_INODE_ID);
        let mut current = ROOT_INODE_ID;
        for (idx, component) in components.iter().enumerate() {
            let Some(inode) = self.inodes.get(&current) else {
                break;
            };
            if !inode.is_dir() {
                return Err(ThroughFile {
                    path: rdfs_common::path::join_components(&components[..idx]),
                });
            }
            match self.child(current, component.as_bytes()) {
                Some(child) => {
                    inodes.push(child);
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
    pub fn path_of(&self, mut id: InodeId) -> String {
        let mut names: Vec<&[u8]> = Vec::new();
        while id != ROOT_INODE_ID {
            let Some(inode) = self.inodes.get(&id) else {
                break;
            };
            names.push(&inode.name);
            id = inode.parent;
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
    pub fn is_ancestor_or_self(&self, ancestor: InodeId, mut id: InodeId) -> bool {
        loop {
            if id == ancestor {
                return true;
            }
            if id == ROOT_INODE_ID {
                return false;
            }
            match self.inodes.get(&id) {
                Some(inode) => id = inode.parent,
                None => return false,
            }
        }
    }

    /// Adds `inode` under its parent. The caller has checked that the parent
    /// is a directory without a child of that name.
    pub fn insert(&mut self, inode: Inode) -> Result<(), String> {
        let parent_id = inode.parent;
        let name = inode.name.clone();
        let id = inode.id;
        let position = {
            let parent = self
                .inodes
                .get(&parent_id)
                .ok_or_else(|| format!("parent inode {parent_id} does not exist"))?;
            let children = &parent
                .as_dir()
                .ok_or_else(|| format!("parent inode {parent_id} is not a directory"))?
                .children;
            match self.search(children, &name) {
                Ok(_) => return Err(format!("{} already exists", self.path_of(parent_id))),
                Err(position) => position,
            }
        };
        if self.inodes.contains_key(&id) {
            return Err(format!("inode id {id} is already in use"));
        }
        self.last_inode_id = self.last_inode_id.max(id);
        self.inodes.insert(id, inode);
        if let Some(InodeKind::Directory(dir)) =
            self.inodes.get_mut(&parent_id).map(|p| &mut p.kind)
        {
            dir.children.insert(position, id);
        }
        Ok(())
    }

    /// Unlinks `id` from its parent, keeping the subtree (for rename).
    pub fn detach(&mut self, id: InodeId) -> Result<(), String> {
        let (parent_id, name) = {
            let inode = self
                .inodes
                .get(&id)
                .ok_or_else(|| format!("inode {id} does not exist"))?;
            (inode.parent, inode.name.clone())
        };
        let position = {
            let parent = self
                .inodes
                .get(&parent_id)
                .and_then(Inode::as_dir)
                .ok_or("parent is not a directory")?;
            self.search(&parent.children, &name)
                .map_err(|_| format!("inode {id} is not in its parent"))?
        };
        if let Some(InodeKind::Directory(dir)) =
            self.inodes.get_mut(&parent_id).map(|p| &mut p.kind)
        {
            dir.children.remove(position);
        }
        Ok(())
    }

    /// Links a detached inode under `parent` as `name`.
    pub fn attach(
        &mut self,
        id: InodeId,
        parent_id: InodeId,
        name: Box<[u8]>,
    ) -> Result<(), String> {
        let position = {
            let parent = self
                .inodes
                .get(&parent_id)
                .and_then(Inode::as_dir)
                .ok_or("new parent is not a directory")?;
            match self.search(&parent.children, &name) {
                Ok(_) => return Err("destination exists".to_string()),
                Err(position) => position,
            }
        };
        if let Some(inode) = self.inodes.get_mut(&id) {
            inode.parent = parent_id;
            inode.name = name;
        }
        if let Some(InodeKind::Directory(dir)) =
            self.inodes.get_mut(&parent_id).map(|p| &mut p.kind)
        {
            dir.children.insert(position, id);
        }
        Ok(())
    }

    /// Removes `id` and everything below it; returns the removed files' block
    /// ids. The root cannot be removed.
    pub fn remove_subtree(&mut self, id: InodeId) -> Result<RemovedSubtree, String> {
        if id == ROOT_INODE_ID {
            return Err("the root cannot be removed".to_string());
        }
        self.detach(id)?;
        let mut removed = RemovedSubtree::default();
        let mut stack = vec![id];
        while let Some(next) = stack.pop() {
            let Some(inode) = self.inodes.remove(&next) else {
                continue;
            };
            match inode.kind {
                InodeKind::Directory(dir) => {
                    removed.directories += 1;
                    stack.extend(dir.children);
                }
                InodeKind::File(file) => {
                    removed.files += 1;
                    removed.blocks.extend(file.blocks);
                }
            }
        }
        Ok(removed)
    }

    /// Visits `id` and every inode below it, depth first, children in name
    /// order. Iterative: no tree is too deep for it.
    pub fn walk(&self, id: InodeId, visit: &mut impl FnMut(&Inode)) {
        let mut stack = vec![id];
        while let Some(next) = stack.pop() {
            let Some(inode) = self.inodes.get(&next) else {
                continue;
            };
            visit(inode);
            if let InodeKind::Directory(dir) = &inode.kind {
                stack.extend(dir.children.iter().rev());
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct RemovedSubtree {
    pub files: u64,
    pub directories: u64,
    pub blocks: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(ns: &mut Namespace, parent: InodeId, name: &str) -> InodeId {
        let id = ns.next_inode_id();
        let permission = Permission {
            owner: 0,
            group: 0,
            mode: 0o755,
        };
        ns.insert(Inode {
            id,
            parent,
            name: name.as_bytes().into(),
            mtime: 0,
            atime: 0,
            permission,
            kind: InodeKind::Directory(Directory::default()),
        })
        .expect("insert");
        id
    }

    #[test]
    fn resolve_walks_and_stops() {
        let mut ns = Namespace::new("root", "supergroup", 0o755, 0);
        let a = dir(&mut ns, ROOT_INODE_ID, "a");
        let b = dir(&mut ns, a, "b");
        dir(&mut ns, a, "0");
        dir(&mut ns, a, "z");
        assert_eq!(a, ROOT_INODE_ID + 1);
        let resolved = ns.resolve(&["a", "b"]).expect("resolves");
        assert_eq!(resolved.last(), Some(b));
        let resolved = ns.resolve(&["a", "x", "y"]).expect("resolves");
        assert_eq!(resolved.last(), None);
        assert_eq!(resolved.deepest(), a);
        assert_eq!(resolved.parent(), None);
        assert_eq!(ns.path_of(b), "/a/b");
        let names: Vec<_> = ns
            .get(a)
            .and_then(Inode::as_dir)
            .expect("dir")
            .children
            .iter()
            .map(|c| String::from_utf8_lossy(&ns.get(*c).expect("child").name).into_owned())
            .collect();
        assert_eq!(names, ["0", "b", "z"]);
        assert!(ns.is_ancestor_or_self(a, b));
        assert!(!ns.is_ancestor_or_self(b, a));
        let removed = ns.remove_subtree(a).expect("removes");
        assert_eq!(removed.directories, 4);
        assert_eq!(ns.inode_count(), 1);
    }

    #[test]
    fn names_sort_as_hdfs_does() {
        assert_eq!(compare_names(b"a", b"b"), Ordering::Less);
        assert_eq!(compare_names("é".as_bytes(), b"a"), Ordering::Less);
    }
}
