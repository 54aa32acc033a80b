//! How inodes keep ACLs (HDFS's `AclStorage`): the owner, mask (or group)
//! and other entries live in the permission bits; only the named entries,
//! the unnamed group entry of an extended ACL and the default ACL are
//! stored, 32 bits each, in a side table keyed by inode. Inodes without an
//! ACL (nearly all) carry nothing but a clear [`ACL_BIT`].

use rdfs_common::acl::{self, AclEntry, AclScope, AclType};

use crate::namespace::{ACL_BIT, Inode, InodeId, Interner, MAX_INTERNED, Namespace};

const PERM_BITS: u32 = 7;
const TYPE_SHIFT: u32 = 3;
const SCOPE_SHIFT: u32 = 5;
const NAME_SHIFT: u32 = 6;

/// A stored entry: permission (3 bits), type (2), scope (1), then the
/// interned name plus one (0 for an unnamed entry).
pub type PackedEntry = u32;

fn kind_bits(kind: AclType) -> u32 {
    match kind {
        AclType::User => 0,
        AclType::Group => 1,
        AclType::Mask => 2,
        AclType::Other => 3,
    }
}

fn pack(entry: &AclEntry, interner: &mut Interner) -> PackedEntry {
    let name = if entry.name.is_empty() {
        0
    } else {
        (interner.intern(&entry.name) + 1).min(MAX_INTERNED)
    };
    let scope = u32::from(entry.scope == AclScope::Default);
    (name << NAME_SHIFT)
        | (scope << SCOPE_SHIFT)
        | (kind_bits(entry.kind) << TYPE_SHIFT)
        | (u32::from(entry.perm) & PERM_BITS)
}

/// The parts of a stored entry, without looking its name up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpacked {
    pub default: bool,
    pub kind: AclType,
    /// The interned name, `None` for an unnamed entry.
    pub name: Option<u32>,
    pub perm: u16,
}

pub fn unpack(packed: PackedEntry) -> Unpacked {
    let kind = match (packed >> TYPE_SHIFT) & 3 {
        0 => AclType::User,
        1 => AclType::Group,
        2 => AclType::Mask,
        _ => AclType::Other,
    };
    let name = packed >> NAME_SHIFT;
    Unpacked {
        default: (packed >> SCOPE_SHIFT) & 1 == 1,
        kind,
        name: (name != 0).then(|| name - 1),
        perm: (packed & PERM_BITS) as u16,
    }
}

fn entry_of(packed: PackedEntry, interner: &Interner) -> AclEntry {
    let parts = unpack(packed);
    AclEntry::new(
        if parts.default {
            AclScope::Default
        } else {
            AclScope::Access
        },
        parts.kind,
        parts.name.map_or("", |id| interner.name(id)),
        parts.perm as u8,
    )
}

impl Namespace {
    /// The whole ACL of an inode, as `getfacl` shows it: owner, the stored
    /// access entries, mask and other from the permission bits, then the
    /// default ACL. Permission bits alone give the three minimal entries.
    pub fn logical_acl(&self, inode: Inode<'_>) -> Vec<AclEntry> {
        acl::logical(inode.permission().mode, &self.stored_acl(inode))
    }

    /// The entries kept beside the permission bits (HDFS's `AclStatus`
    /// entries): named users and groups, the owning group's entry of an
    /// extended ACL, and the default ACL.
    pub fn stored_acl(&self, inode: Inode<'_>) -> Vec<AclEntry> {
        inode
            .acl_entries()
            .iter()
            .map(|p| entry_of(*p, &self.interner))
            .collect()
    }

    /// The default ACL of a directory (what its new children inherit).
    pub fn default_acl(&self, inode: Inode<'_>) -> Vec<AclEntry> {
        inode
            .acl_entries()
            .iter()
            .filter(|p| unpack(**p).default)
            .map(|p| entry_of(*p, &self.interner))
            .collect()
    }

    /// Gives inode `id` the ACL `entries` (validated and sorted): a
    /// minimal one is only permission bits; otherwise the owner, mask and
    /// other entries become the permission bits and the rest is stored.
    /// The sticky bit is kept.
    pub fn set_acl(&mut self, id: InodeId, entries: &[AclEntry]) -> Result<(), String> {
        let inode = self
            .get(id)
            .ok_or_else(|| format!("inode {id} does not exist"))?;
        let slot = inode.slot();
        let mut permission = inode.permission();
        let sticky = permission.mode & 0o1000;
        if entries.iter().any(|e| e.scope == AclScope::Default) && !inode.is_dir() {
            return Err(format!(
                "Invalid ACL: only directories may have a default ACL. Path: {}",
                self.path_of(id)
            ));
        }
        if acl::is_minimal(entries) {
            self.acls.remove(&slot);
            permission.mode = acl::mode_of(entries, sticky);
            return self.set_permission(id, permission);
        }
        let access: Vec<&AclEntry> = entries
            .iter()
            .filter(|e| e.scope == AclScope::Access)
            .collect();
        // Stored: the access entries between the owner's and the mask and
        // other (those three are the permission bits), and every default.
        let mut stored: Vec<PackedEntry> = Vec::with_capacity(entries.len());
        if access.len() > 3 {
            for entry in &access[1..access.len() - 2] {
                stored.push(pack(entry, &mut self.interner));
            }
        }
        for entry in entries.iter().filter(|e| e.scope == AclScope::Default) {
            stored.push(pack(entry, &mut self.interner));
        }
        self.acls.insert(slot, stored.into_boxed_slice());
        permission.mode = acl::mode_of(entries, sticky) | ACL_BIT;
        self.set_permission(id, permission)
    }

    /// Drops every ACL entry of `id`, keeping the owning group's entry as
    /// its group bits (`setfacl -b`).
    pub fn remove_acl(&mut self, id: InodeId) -> Result<(), String> {
        let inode = self
            .get(id)
            .ok_or_else(|| format!("inode {id} does not exist"))?;
        let logical = self.logical_acl(inode);
        let group = logical
            .iter()
            .find(|e| e.scope == AclScope::Access && e.kind == AclType::Group && e.name.is_empty())
            .map_or(0, |e| u16::from(e.perm));
        let slot = inode.slot();
        let mut permission = inode.permission();
        self.acls.remove(&slot);
        permission.mode = (permission.mode & !(ACL_BIT | 0o070)) | (group << 3);
        self.set_permission(id, permission)
    }

    /// Bytes held by stored ACL entries.
    pub fn acl_bytes(&self) -> usize {
        self.acls
            .values()
            .map(|entries| entries.len() * 4 + 16)
            .sum::<usize>()
            + self.acls.capacity() * 24
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::{NewInode, NewKind, Permission};

    fn namespace_with_dir() -> (Namespace, InodeId) {
        let mut ns = Namespace::new("root", "supergroup", 0o755, 0);
        let id = ns.next_inode_id().expect("id");
        ns.insert(NewInode {
            id,
            parent: rdfs_common::ids::ROOT_INODE_ID,
            name: b"d",
            permission: Permission {
                owner: 0,
                group: 1,
                mode: 0o1750,
            },
            mtime: 0,
            atime: 0,
            kind: NewKind::Directory,
        })
        .expect("insert");
        (ns, id)
    }

    #[test]
    fn an_acl_round_trips_through_the_bits_and_the_side_table() {
        let (mut ns, id) = namespace_with_dir();
        let spec = acl::parse_spec("user:bob:rwx,default:group:eng:r-x", true).expect("spec");
        let inode = ns.get(id).expect("inode");
        let merged = acl::merge(&ns.logical_acl(inode), &spec).expect("merge");
        ns.set_acl(id, &merged).expect("set");
        let inode = ns.get(id).expect("inode");
        assert_eq!(ns.logical_acl(inode), merged);
        let mode = inode.permission().mode;
        assert_eq!(mode & 0o7777, 0o1770, "mask in the group bits, sticky kept");
        assert_ne!(mode & ACL_BIT, 0);
        assert_eq!(ns.default_acl(inode).len(), 5);
        ns.remove_acl(id).expect("remove");
        let inode = ns.get(id).expect("inode");
        assert_eq!(
            inode.permission().mode,
            0o1750,
            "the group entry back in the bits"
        );
        assert!(inode.acl_entries().is_empty());
        assert!(ns.acls.is_empty());
    }

    #[test]
    fn packed_entries_keep_every_field() {
        let mut interner = Interner::default();
        let entry = AclEntry::new(AclScope::Default, AclType::Group, "eng", 5);
        let packed = pack(&entry, &mut interner);
        assert_eq!(entry_of(packed, &interner), entry);
        let unnamed = AclEntry::new(AclScope::Access, AclType::Other, "", 0);
        assert_eq!(entry_of(pack(&unnamed, &mut interner), &interner), unnamed);
    }
}
