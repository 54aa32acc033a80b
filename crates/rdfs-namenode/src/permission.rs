//! HDFS's permission model, as its `FSPermissionChecker` applies it: execute
//! on every directory a path passes through; read, write or execute on the
//! target, its parent or its nearest existing ancestor as each operation
//! requires; the sticky bit on removal; ownership for chmod and chown. The
//! superuser passes every check.
//!
//! Checks run under the namesystem lock, on the same resolved path the
//! operation then changes, so nothing can slip in between.

use smallvec::SmallVec;

use rdfs_common::acl::AclType;

use crate::acl_storage::unpack;
use crate::error::{NamenodeError, Result};
use crate::namespace::{ACL_BIT, Inode, InodeId, Namespace, Permission, Resolved, ThroughFile};

/// The sticky bit of a mode: in such a directory only an entry's owner (or
/// the directory's) may delete or rename it.
pub const STICKY: u16 = 0o1000;

/// Read, write and execute bits, as HDFS's `FsAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsAction(u8);

impl FsAction {
    pub const NONE: Self = Self(0);
    pub const EXECUTE: Self = Self(1);
    pub const WRITE: Self = Self(2);
    pub const WRITE_EXECUTE: Self = Self(3);
    pub const READ: Self = Self(4);
    pub const READ_EXECUTE: Self = Self(5);
    pub const READ_WRITE: Self = Self(6);
    pub const ALL: Self = Self(7);

    pub fn from_bits(bits: u16) -> Self {
        Self((bits & 7) as u8)
    }

    pub fn bits(self) -> u16 {
        u16::from(self.0)
    }

    pub fn implies(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The name HDFS prints in `access=` of a denial.
    pub fn name(self) -> &'static str {
        [
            "NONE",
            "EXECUTE",
            "WRITE",
            "WRITE_EXECUTE",
            "READ",
            "READ_EXECUTE",
            "READ_WRITE",
            "ALL",
        ][usize::from(self.0)]
    }
}

/// The nine `rwx` characters of a mode, with the sticky bit shown as `t`
/// (or `T` when others may not execute), as `ls` and HDFS's messages print.
pub fn mode_string(mode: u16) -> String {
    let mut out = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    if mode & STICKY != 0 {
        out.pop();
        out.push(if mode & 1 != 0 { 't' } else { 'T' });
    }
    out
}

/// What an operation needs, in `FSPermissionChecker.checkPermission`'s
/// terms. Every check also needs execute on each directory passed through.
#[derive(Debug, Clone, Copy)]
pub struct Required {
    /// Execute on every directory passed through (always, but for the
    /// ownership-only checks left when permissions are off).
    pub traverse: bool,
    /// The caller must own the target.
    pub owner: bool,
    /// On the nearest existing ancestor of the target (creating it).
    pub ancestor: Option<FsAction>,
    /// On the target's parent directory (removing it); with write, the
    /// parent's sticky bit applies.
    pub parent: Option<FsAction>,
    /// On the target itself, when it exists.
    pub access: Option<FsAction>,
    /// On every directory of the target's subtree (deleting it whole).
    pub subtree: Option<FsAction>,
    /// With `subtree`: empty directories need nothing.
    pub ignore_empty_dirs: bool,
}

impl Required {
    /// Only the way there: execute on every directory passed through.
    pub const TRAVERSE: Self = Self {
        traverse: true,
        owner: false,
        ancestor: None,
        parent: None,
        access: None,
        subtree: None,
        ignore_empty_dirs: false,
    };

    pub fn access(action: FsAction) -> Self {
        Self {
            access: Some(action),
            ..Self::TRAVERSE
        }
    }

    pub fn parent(action: FsAction) -> Self {
        Self {
            parent: Some(action),
            ..Self::TRAVERSE
        }
    }

    pub fn ancestor(action: FsAction) -> Self {
        Self {
            ancestor: Some(action),
            ..Self::TRAVERSE
        }
    }

    pub fn owner() -> Self {
        Self {
            owner: true,
            ..Self::TRAVERSE
        }
    }

    /// Removing a path: write on its parent (and the sticky bit), and
    /// everything on each non-empty directory below it.
    pub fn removal() -> Self {
        Self {
            parent: Some(FsAction::WRITE),
            subtree: Some(FsAction::ALL),
            ignore_empty_dirs: true,
            ..Self::TRAVERSE
        }
    }
}

/// Who is asking, as the checker needs it: the user and the groups the
/// namenode resolved for them.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
}

/// One caller's checks against one namespace. Owner and group names are
/// turned into the namespace's interned ids once, so each inode costs two
/// integer comparisons.
pub struct PermissionChecker<'a> {
    ns: &'a Namespace,
    user: &'a str,
    /// `None` when no inode is owned by this user name.
    user_id: Option<u32>,
    /// Inline for the few groups a user is in: no allocation per call.
    group_ids: SmallVec<[u32; 8]>,
}

impl<'a> PermissionChecker<'a> {
    pub fn new(ns: &'a Namespace, subject: Subject<'a>) -> Self {
        Self {
            ns,
            user: subject.user,
            user_id: ns.interner.lookup(subject.user),
            group_ids: subject
                .groups
                .iter()
                .filter_map(|g| ns.interner.lookup(g))
                .collect(),
        }
    }

    /// Checks `required` for the path `components`, resolved to `resolved`.
    /// In HDFS's order: traversal, sticky bit, ancestor, parent, target,
    /// subtree, owner; the first failure is the answer.
    pub fn check(
        &self,
        components: &[&str],
        resolved: &Resolved,
        required: Required,
    ) -> Result<()> {
        let depth = resolved.depth;
        // The deepest existing inode strictly above the target.
        let ancestor = (depth >= 1).then(|| (depth - 1).min(resolved.inodes.len() - 1));
        if let Some(ancestor) = ancestor.filter(|_| required.traverse) {
            for index in 0..=ancestor {
                self.require(components, index, resolved.inodes[index], FsAction::EXECUTE)?;
            }
        }
        let target = resolved.last().and_then(|id| self.ns.get(id));
        let parent = resolved.parent();
        if let (Some(parent_id), Some(target)) = (parent, target)
            && required.parent.is_some_and(|a| a.implies(FsAction::WRITE))
        {
            self.check_sticky(parent_id, target)?;
        }
        if let (Some(action), Some(ancestor)) = (required.ancestor, ancestor) {
            self.require(components, ancestor, resolved.inodes[ancestor], action)?;
        }
        if let (Some(action), Some(parent_id)) = (required.parent, parent) {
            self.require(components, depth - 1, parent_id, action)?;
        }
        if let (Some(action), Some(target)) = (required.access, target) {
            self.require(components, depth, target.id(), action)?;
        }
        if let (Some(action), Some(target)) = (required.subtree, target)
            && target.is_dir()
        {
            self.check_subtree(target.id(), action, true, required.ignore_empty_dirs)?;
        }
        if required.owner
            && let Some(target) = target
            && !self.owns(target)
        {
            return Err(NamenodeError::AccessControl(format!(
                "Permission denied. user={} is not the owner of inode={}",
                self.user,
                rdfs_common::path::join_components(components)
            )));
        }
        Ok(())
    }

    /// A path that runs through a file: the directories before the file
    /// must still be passable, so a caller learns nothing about what lies
    /// behind a directory it may not enter.
    pub fn check_through_file(&self, components: &[&str], through: &ThroughFile) -> Result<()> {
        let dirs = through.inodes.len().saturating_sub(1);
        for (index, id) in through.inodes.iter().take(dirs).enumerate() {
            self.require(components, index, *id, FsAction::EXECUTE)?;
        }
        Ok(())
    }

    /// `action` on every directory of the subtree at `root`, in HDFS's
    /// walk order; with `sticky`, a sticky directory's entries must be the
    /// caller's (or the directory must be).
    pub fn check_subtree(
        &self,
        root: InodeId,
        action: FsAction,
        sticky: bool,
        ignore_empty_dirs: bool,
    ) -> Result<()> {
        let Some(root_slot) = self.ns.slot_of(root) else {
            return Ok(());
        };
        let mut stack = vec![root_slot];
        while let Some(slot) = stack.pop() {
            let dir = self.ns.at(slot);
            let children = dir.children();
            if ignore_empty_dirs && children.is_empty() {
                continue;
            }
            if !self.permits(dir, action) {
                return Err(self.denied(&self.ns.path_of(dir.id()), dir, action));
            }
            let dir_sticky = sticky && dir.permission().mode & STICKY != 0;
            for &child_slot in children {
                let child = self.ns.at(child_slot);
                if dir_sticky && !self.owns(dir) && !self.owns(child) {
                    return Err(self.sticky_denied(dir, child));
                }
                if child.is_dir() {
                    stack.push(child_slot);
                }
            }
        }
        Ok(())
    }

    /// Whether the caller may do `action` to `inode`: the owner's bits if
    /// they own it, else the group's if they are in its group, else the
    /// others'. No class falls through to the next.
    pub fn permits(&self, inode: Inode<'_>, action: FsAction) -> bool {
        let permission = inode.permission();
        // Nearly every check is execute on a 755 directory: when all three
        // classes grant the action and no ACL can narrow it, whichever
        // class applies grants it.
        let every_class = action.bits() * 0o111;
        if permission.mode & ACL_BIT == 0 && permission.mode & every_class == every_class {
            return true;
        }
        if self.owns(inode) {
            return FsAction::from_bits(permission.mode >> 6).implies(action);
        }
        let stored = inode.acl_entries();
        if stored.first().is_some_and(|e| !unpack(*e).default) {
            return self.permits_by_acl(permission, stored, action);
        }
        let shift = if self.group_ids.contains(&permission.group) {
            3
        } else {
            0
        };
        FsAction::from_bits(permission.mode >> shift).implies(action)
    }

    /// HDFS's ACL evaluation for a caller who is not the owner: a named
    /// user entry decides alone; else any matching group entry that
    /// grants (each limited by the mask, which the group bits hold); a
    /// match that grants nothing denies; no match leaves the others'
    /// bits.
    fn permits_by_acl(&self, permission: Permission, stored: &[u32], action: FsAction) -> bool {
        let mask = (permission.mode >> 3) & 7;
        let mut matched = false;
        for entry in stored.iter().map(|e| unpack(*e)) {
            if entry.default {
                break;
            }
            match entry.kind {
                AclType::User if entry.name.is_some() && entry.name == self.user_id => {
                    return FsAction::from_bits(entry.perm & mask).implies(action);
                }
                AclType::Group => {
                    let group = entry.name.unwrap_or(permission.group);
                    if self.group_ids.contains(&group) {
                        if FsAction::from_bits(entry.perm & mask).implies(action) {
                            return true;
                        }
                        matched = true;
                    }
                }
                _ => {}
            }
        }
        !matched && FsAction::from_bits(permission.mode).implies(action)
    }

    fn owns(&self, inode: Inode<'_>) -> bool {
        self.user_id == Some(inode.permission().owner)
    }

    fn require(
        &self,
        components: &[&str],
        index: usize,
        id: InodeId,
        action: FsAction,
    ) -> Result<()> {
        let Some(inode) = self.ns.get(id) else {
            return Ok(());
        };
        if self.permits(inode, action) {
            return Ok(());
        }
        let path = rdfs_common::path::join_components(&components[..index.min(components.len())]);
        Err(self.denied(&path, inode, action))
    }

    fn check_sticky(&self, parent: InodeId, target: Inode<'_>) -> Result<()> {
        let Some(parent) = self.ns.get(parent) else {
            return Ok(());
        };
        if parent.permission().mode & STICKY == 0 || self.owns(parent) || self.owns(target) {
            return Ok(());
        }
        Err(self.sticky_denied(parent, target))
    }

    fn denied(&self, path: &str, inode: Inode<'_>, action: FsAction) -> NamenodeError {
        NamenodeError::AccessControl(format!(
            "Permission denied: user={}, access={}, inode=\"{path}\":{}",
            self.user,
            action.name(),
            describe(inode)
        ))
    }

    fn sticky_denied(&self, parent: Inode<'_>, child: Inode<'_>) -> NamenodeError {
        NamenodeError::AccessControl(format!(
            "Permission denied by sticky bit: user={}, path=\"{}\":{}, parent=\"{}\":{}",
            self.user,
            self.ns.path_of(child.id()),
            describe(child),
            self.ns.path_of(parent.id()),
            describe(parent)
        ))
    }
}

/// `owner:group:drwxr-xr-x`, as HDFS's messages describe an inode.
fn describe(inode: Inode<'_>) -> String {
    format!(
        "{}:{}:{}{}",
        inode.owner(),
        inode.group(),
        if inode.is_dir() { 'd' } else { '-' },
        mode_string(inode.permission().mode)
    )
}

/// HDFS's refusal of an operation only the superuser may run.
pub fn superuser_required(user: &str) -> NamenodeError {
    NamenodeError::AccessControl(format!(
        "Access denied for user {user}. Superuser privilege is required"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::{NewInode, NewKind, Permission};

    fn tree() -> Namespace {
        let mut ns = Namespace::new("root", "supergroup", 0o755, 0);
        let root = ns.interner.intern("root");
        let alice = ns.interner.intern("alice");
        let staff = ns.interner.intern("staff");
        let supergroup = ns.interner.intern("supergroup");
        let add = |ns: &mut Namespace, parent: InodeId, name: &str, owner, group, mode, dir| {
            let id = ns.next_inode_id().expect("id");
            ns.insert(NewInode {
                id,
                parent,
                name: name.as_bytes(),
                permission: Permission { owner, group, mode },
                mtime: 0,
                atime: 0,
                kind: if dir {
                    NewKind::Directory
                } else {
                    NewKind::File {
                        replication: 1,
                        block_size: 1024,
                        writer: None,
                    }
                },
            })
            .expect("insert");
            id
        };
        let root_id = rdfs_common::ids::ROOT_INODE_ID;
        let private = add(&mut ns, root_id, "private", root, supergroup, 0o700, true);
        add(&mut ns, private, "secret", root, supergroup, 0o644, false);
        let tmp = add(&mut ns, root_id, "tmp", root, supergroup, 0o1777, true);
        add(&mut ns, tmp, "hers", alice, staff, 0o644, false);
        add(&mut ns, tmp, "his", root, staff, 0o664, false);
        ns
    }

    fn check(
        ns: &Namespace,
        user: &str,
        groups: &[&str],
        path: &str,
        required: Required,
    ) -> Result<()> {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let checker = PermissionChecker::new(
            ns,
            Subject {
                user,
                groups: &groups,
            },
        );
        let components = rdfs_common::path::components(path).expect("path");
        match ns.resolve(&components) {
            Ok(resolved) => checker.check(&components, &resolved, required),
            Err(through) => checker.check_through_file(&components, &through),
        }
    }

    #[test]
    fn a_private_directory_cannot_be_entered_and_the_denial_names_it() {
        let ns = tree();
        let denied = check(
            &ns,
            "alice",
            &[],
            "/private/secret",
            Required::access(FsAction::READ),
        )
        .expect_err("denied");
        assert_eq!(
            denied.to_string(),
            "Permission denied: user=alice, access=EXECUTE, inode=\"/private\":root:supergroup:drwx------"
        );
        // A path through a file behind it says nothing about the file.
        let denied =
            check(&ns, "alice", &[], "/private/secret/x", Required::TRAVERSE).expect_err("denied");
        assert!(denied.to_string().contains("access=EXECUTE"), "{denied}");
        check(
            &ns,
            "root",
            &[],
            "/private/secret",
            Required::access(FsAction::READ),
        )
        .expect("the owner reads");
    }

    #[test]
    fn creating_needs_write_on_the_nearest_existing_ancestor() {
        let ns = tree();
        let denied = check(
            &ns,
            "alice",
            &[],
            "/new/deeper/file",
            Required::ancestor(FsAction::WRITE),
        )
        .expect_err("root is 755");
        assert_eq!(
            denied.to_string(),
            "Permission denied: user=alice, access=WRITE, inode=\"/\":root:supergroup:drwxr-xr-x"
        );
        check(
            &ns,
            "alice",
            &[],
            "/tmp/a/b",
            Required::ancestor(FsAction::WRITE),
        )
        .expect("/tmp is world-writable");
    }

    #[test]
    fn the_sticky_bit_keeps_others_entries_and_names_both_inodes() {
        let ns = tree();
        check(&ns, "alice", &[], "/tmp/hers", Required::removal()).expect("her own file");
        let denied =
            check(&ns, "alice", &["staff"], "/tmp/his", Required::removal()).expect_err("not hers");
        assert_eq!(
            denied.to_string(),
            "Permission denied by sticky bit: user=alice, path=\"/tmp/his\":root:staff:-rw-rw-r--, parent=\"/tmp\":root:supergroup:drwxrwxrwt"
        );
        check(&ns, "root", &[], "/tmp/hers", Required::removal()).expect("the directory's owner");
    }

    #[test]
    fn classes_do_not_fall_through_and_the_owner_check_names_the_path() {
        let ns = tree();
        check(
            &ns,
            "bob",
            &["staff"],
            "/tmp/his",
            Required::access(FsAction::WRITE),
        )
        .expect("the group may write");
        check(
            &ns,
            "bob",
            &[],
            "/tmp/his",
            Required::access(FsAction::WRITE),
        )
        .expect_err("others may not");
        let denied =
            check(&ns, "alice", &["staff"], "/tmp/his", Required::owner()).expect_err("owner");
        assert_eq!(
            denied.to_string(),
            "Permission denied. user=alice is not the owner of inode=/tmp/his"
        );
    }

    #[test]
    fn deleting_a_tree_needs_everything_on_each_non_empty_directory() {
        let ns = tree();
        let denied = check(&ns, "alice", &[], "/private", Required::removal()).expect_err("root's");
        assert!(
            denied.to_string().contains("access=WRITE, inode=\"/\""),
            "{denied}"
        );
        let denied = check(&ns, "root", &[], "/private", Required::removal());
        assert!(denied.is_ok(), "the owner may: {denied:?}");
    }

    #[test]
    fn mode_strings_show_the_sticky_bit() {
        assert_eq!(mode_string(0o755), "rwxr-xr-x");
        assert_eq!(mode_string(0o1777), "rwxrwxrwt");
        assert_eq!(mode_string(0o1770), "rwxrwx--T");
        assert_eq!(FsAction::READ_EXECUTE.name(), "READ_EXECUTE");
    }
}
