//! POSIX ACLs as HDFS has them: entries, their text form (`user:bob:r-x`,
//! `default:group::rwx`), and the changes `setfacl` asks for (HDFS's
//! `AclTransformation`): merge (`-m`), remove entries (`-x`), replace
//! (`--set`), remove the default ACL (`-k`), each recalculating the mask
//! as HDFS does and validating the result with HDFS's messages. Shared by
//! the namenode, which stores and enforces ACLs, and the shell, which
//! parses and prints them.

use std::cmp::Ordering;
use std::fmt;

/// Set in a file status's permission when the inode has an ACL (Hadoop's
/// `FsPermissionExtension` ACL bit).
pub const ACL_BIT: u16 = 1 << 12;

/// Most entries an ACL may have, as in HDFS.
pub const MAX_ENTRIES: usize = 32;

/// Whether an entry governs access to the inode itself or is the default
/// that new children inherit (directories only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclScope {
    Access,
    Default,
}

/// Who an entry is for, in HDFS's sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclType {
    User,
    Group,
    Mask,
    Other,
}

impl AclType {
    fn text(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::Mask => "mask",
            Self::Other => "other",
        }
    }
}

/// One ACL entry. An empty `name` is the unnamed entry (the owner for
/// `user::`, the owning group for `group::`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AclEntry {
    pub scope: AclScope,
    pub kind: AclType,
    pub name: String,
    /// `rwx` bits, 0..=7.
    pub perm: u8,
}

/// An ACL or ACL spec HDFS would refuse, with HDFS's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AclError(pub String);

fn invalid(message: impl Into<String>) -> AclError {
    AclError(message.into())
}

/// `rwx` for permission bits.
pub fn perm_symbol(perm: u8) -> String {
    [(4, 'r'), (2, 'w'), (1, 'x')]
        .iter()
        .map(|(bit, c)| if perm & bit != 0 { *c } else { '-' })
        .collect()
}

impl AclEntry {
    pub fn new(scope: AclScope, kind: AclType, name: &str, perm: u8) -> Self {
        Self {
            scope,
            kind,
            name: name.to_string(),
            perm: perm & 7,
        }
    }

    /// Scope, type and name: what makes two entries the same entry.
    fn key(&self) -> (AclScope, AclType, &str) {
        (self.scope, self.kind, &self.name)
    }

    fn is_named(&self) -> bool {
        !self.name.is_empty()
    }

    /// Parses one entry of a spec: `[default:]type:[name][:perm]`, the
    /// permission required unless `with_perm` is false (`-x` specs).
    pub fn parse(text: &str, with_perm: bool) -> Result<Self, AclError> {
        let mut fields: Vec<&str> = text.split(':').collect();
        let scope = if fields
            .first()
            .is_some_and(|f| f.eq_ignore_ascii_case("default"))
        {
            fields.remove(0);
            AclScope::Default
        } else {
            AclScope::Access
        };
        let kind = match fields.first().map(|f| f.to_ascii_lowercase()).as_deref() {
            Some("user") => AclType::User,
            Some("group") => AclType::Group,
            Some("mask") => AclType::Mask,
            Some("other") => AclType::Other,
            _ => return Err(invalid(format!("Invalid type of acl in <aclSpec> :{text}"))),
        };
        let name = fields.get(1).copied().unwrap_or("");
        let perm = match (with_perm, fields.len()) {
            (true, 3) => parse_perm(fields[2])
                .ok_or_else(|| invalid(format!("Invalid permission in <aclSpec> : {text}")))?,
            (false, 1 | 2) => 0,
            (false, 3) if fields[2].is_empty() => 0,
            _ => return Err(invalid(format!("Invalid <aclSpec> : {text}"))),
        };
        Ok(Self::new(scope, kind, name, perm))
    }
}

fn parse_perm(text: &str) -> Option<u8> {
    let bytes = text.as_bytes();
    if bytes.len() != 3 {
        return None;
    }
    let mut perm = 0;
    for (byte, (bit, letter)) in bytes.iter().zip([(4, b'r'), (2, b'w'), (1, b'x')]) {
        match *byte {
            b if b == letter => perm |= bit,
            b'-' => {}
            _ => return None,
        }
    }
    Some(perm)
}

impl fmt::Display for AclEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scope == AclScope::Default {
            f.write_str("default:")?;
        }
        write!(
            f,
            "{}:{}:{}",
            self.kind.text(),
            self.name,
            perm_symbol(self.perm)
        )
    }
}

/// HDFS's order: access before default; user, group, mask, other; the
/// unnamed entry before named ones, names in order.
pub fn compare(a: &AclEntry, b: &AclEntry) -> Ordering {
    (a.scope, a.kind, a.is_named(), &a.name).cmp(&(b.scope, b.kind, b.is_named(), &b.name))
}

/// A comma-separated spec (`user:bob:rwx,default:other::---`).
pub fn parse_spec(text: &str, with_perm: bool) -> Result<Vec<AclEntry>, AclError> {
    let entries = text
        .split(',')
        .filter(|e| !e.is_empty())
        .map(|e| AclEntry::parse(e, with_perm))
        .collect::<Result<Vec<_>, _>>()?;
    if entries.len() > MAX_ENTRIES {
        return Err(invalid(format!(
            "Invalid ACL: ACL spec has {} entries, which exceeds maximum of {MAX_ENTRIES}.",
            entries.len()
        )));
    }
    Ok(entries)
}

/// The three entries permission bits alone stand for.
pub fn minimal(mode: u16) -> Vec<AclEntry> {
    let bits = |shift: u16| ((mode >> shift) & 7) as u8;
    vec![
        AclEntry::new(AclScope::Access, AclType::User, "", bits(6)),
        AclEntry::new(AclScope::Access, AclType::Group, "", bits(3)),
        AclEntry::new(AclScope::Access, AclType::Other, "", bits(0)),
    ]
}

/// The whole ACL from permission bits and the stored entries (HDFS's
/// `AclUtil.getAclFromPermAndEntries`): the owner from the bits, the
/// stored access entries, the mask (or, with no access entries stored, the
/// group) and other from the bits, then the default ACL.
pub fn logical(mode: u16, stored: &[AclEntry]) -> Vec<AclEntry> {
    if stored.is_empty() {
        return minimal(mode);
    }
    let bits = |shift: u16| ((mode >> shift) & 7) as u8;
    let mut out = vec![AclEntry::new(AclScope::Access, AclType::User, "", bits(6))];
    let access: Vec<&AclEntry> = stored
        .iter()
        .filter(|e| e.scope == AclScope::Access)
        .collect();
    let group_kind = if access.is_empty() {
        AclType::Group
    } else {
        AclType::Mask
    };
    out.extend(access.into_iter().cloned());
    out.push(AclEntry::new(AclScope::Access, group_kind, "", bits(3)));
    out.push(AclEntry::new(AclScope::Access, AclType::Other, "", bits(0)));
    out.extend(
        stored
            .iter()
            .filter(|e| e.scope == AclScope::Default)
            .cloned(),
    );
    out.sort_by(compare);
    out
}

/// `getfacl`'s lines for a whole ACL: each entry, with `#effective:` after
/// the ones its scope's mask limits.
pub fn getfacl_lines(acl: &[AclEntry]) -> Vec<String> {
    let mask = |scope: AclScope| {
        acl.iter()
            .find(|e| e.scope == scope && e.kind == AclType::Mask)
            .map(|e| e.perm)
    };
    acl.iter()
        .map(|entry| {
            let limited = matches!(entry.kind, AclType::Group)
                || (entry.kind == AclType::User && entry.is_named());
            match mask(entry.scope) {
                Some(mask) if limited && entry.perm & mask != entry.perm => {
                    format!("{entry}\t#effective:{}", perm_symbol(entry.perm & mask))
                }
                _ => entry.to_string(),
            }
        })
        .collect()
}

/// Whether `acl` is no more than permission bits (three access entries).
pub fn is_minimal(acl: &[AclEntry]) -> bool {
    acl.len() == 3 && acl.iter().all(|e| e.scope == AclScope::Access)
}

/// What a change to an ACL starts from: the entries kept, the masks
/// kept or given, and which scopes and masks the spec touched.
#[derive(Default)]
struct Builder {
    entries: Vec<AclEntry>,
    /// A mask for each scope: kept from the ACL or given by the spec.
    masks: [Option<AclEntry>; 2],
    mask_dirty: [bool; 2],
    scope_dirty: [bool; 2],
}

fn index(scope: AclScope) -> usize {
    match scope {
        AclScope::Access => 0,
        AclScope::Default => 1,
    }
}

impl Builder {
    fn keep(&mut self, entry: &AclEntry) {
        if entry.kind == AclType::Mask {
            self.masks[index(entry.scope)] = Some(entry.clone());
        } else {
            self.entries.push(entry.clone());
        }
    }

    fn take_from_spec(&mut self, entry: &AclEntry) {
        let scope = index(entry.scope);
        self.scope_dirty[scope] = true;
        if entry.kind == AclType::Mask {
            self.masks[scope] = Some(entry.clone());
            self.mask_dirty[scope] = true;
        } else {
            self.entries.push(entry.clone());
        }
    }

    /// Copies the owner, group and other entries of the access ACL into a
    /// default ACL that lacks them.
    fn copy_defaults_if_needed(&mut self) {
        if !self.entries.iter().any(|e| e.scope == AclScope::Default) {
            return;
        }
        for kind in [AclType::User, AclType::Group, AclType::Other] {
            let has = |scope: AclScope| {
                self.entries
                    .iter()
                    .find(|e| e.scope == scope && e.kind == kind && !e.is_named())
                    .cloned()
            };
            if has(AclScope::Default).is_none()
                && let Some(access) = has(AclScope::Access)
            {
                self.entries.push(AclEntry {
                    scope: AclScope::Default,
                    ..access
                });
            }
        }
    }

    /// Adds each scope's mask: the one given or kept, else the union of
    /// what it masks when it is needed or existed.
    fn calculate_masks(&mut self) -> Result<(), AclError> {
        for scope in [AclScope::Access, AclScope::Default] {
            let i = index(scope);
            let in_scope: Vec<&AclEntry> =
                self.entries.iter().filter(|e| e.scope == scope).collect();
            if in_scope.is_empty() {
                continue;
            }
            let needed = in_scope.iter().any(|e| e.is_named());
            let union = in_scope
                .iter()
                .filter(|e| e.kind == AclType::Group || e.is_named())
                .fold(0, |acc, e| acc | e.perm);
            let provided = self.masks[i].clone();
            if provided.is_none() && needed && self.mask_dirty[i] {
                return Err(invalid(
                    "Invalid ACL: mask is required and cannot be deleted.",
                ));
            }
            match provided {
                Some(mask) if !self.scope_dirty[i] || self.mask_dirty[i] => {
                    self.entries.push(mask);
                }
                Some(_) => self
                    .entries
                    .push(AclEntry::new(scope, AclType::Mask, "", union)),
                None if needed => self
                    .entries
                    .push(AclEntry::new(scope, AclType::Mask, "", union)),
                None => {}
            }
        }
        Ok(())
    }

    fn finish(mut self, masks: bool) -> Result<Vec<AclEntry>, AclError> {
        if masks {
            self.copy_defaults_if_needed();
            self.calculate_masks()?;
        }
        validate(self.entries)
    }
}

/// Sorts `entries` and checks them as HDFS's `buildAndValidateAcl` does.
pub fn validate(mut entries: Vec<AclEntry>) -> Result<Vec<AclEntry>, AclError> {
    if entries.len() > MAX_ENTRIES {
        return Err(invalid(format!(
            "Invalid ACL: ACL has {} entries, which exceeds maximum of {MAX_ENTRIES}.",
            entries.len()
        )));
    }
    entries.sort_by(compare);
    for pair in entries.windows(2) {
        if pair[0].key() == pair[1].key() {
            return Err(invalid(
                "Invalid ACL: multiple entries with same scope, type and name.",
            ));
        }
    }
    for entry in &entries {
        if entry.is_named() && matches!(entry.kind, AclType::Mask | AclType::Other) {
            return Err(invalid(format!(
                "Invalid ACL: this entry type must not have a name: {entry}."
            )));
        }
    }
    let has = |scope: AclScope, kind: AclType| {
        entries
            .iter()
            .any(|e| e.scope == scope && e.kind == kind && !e.is_named())
    };
    let base = |scope| {
        has(scope, AclType::User) && has(scope, AclType::Group) && has(scope, AclType::Other)
    };
    if !base(AclScope::Access) {
        return Err(invalid(
            "Invalid ACL: the user, group and other entries are required.",
        ));
    }
    if entries.iter().any(|e| e.scope == AclScope::Default) && !base(AclScope::Default) {
        return Err(invalid(
            "Invalid default ACL: the user, group and other entries are required.",
        ));
    }
    Ok(entries)
}

/// `setfacl -m`: entries of `spec` replace the same entries or are added.
pub fn merge(existing: &[AclEntry], spec: &[AclEntry]) -> Result<Vec<AclEntry>, AclError> {
    let mut builder = Builder::default();
    for entry in existing {
        match spec.iter().find(|s| s.key() == entry.key()) {
            Some(replacement) => builder.take_from_spec(replacement),
            None => builder.keep(entry),
        }
    }
    for entry in spec {
        if !existing.iter().any(|e| e.key() == entry.key()) {
            builder.take_from_spec(entry);
        }
    }
    builder.finish(true)
}

/// `setfacl -x`: removes the entries `spec` names.
pub fn remove_entries(existing: &[AclEntry], spec: &[AclEntry]) -> Result<Vec<AclEntry>, AclError> {
    let mut builder = Builder::default();
    for entry in existing {
        if spec.iter().any(|s| s.key() == entry.key()) {
            let scope = index(entry.scope);
            builder.scope_dirty[scope] = true;
            if entry.kind == AclType::Mask {
                builder.mask_dirty[scope] = true;
            }
        } else {
            builder.keep(entry);
        }
    }
    builder.finish(true)
}

/// `setfacl --set`: `spec` replaces each scope it names; a scope it does
/// not name is kept.
pub fn replace(existing: &[AclEntry], spec: &[AclEntry]) -> Result<Vec<AclEntry>, AclError> {
    let mut builder = Builder::default();
    for entry in spec {
        builder.take_from_spec(entry);
    }
    for entry in existing {
        if !builder.scope_dirty[index(entry.scope)] {
            builder.keep(entry);
        }
    }
    builder.finish(true)
}

/// `setfacl -k`: the access entries only.
pub fn remove_default(existing: &[AclEntry]) -> Result<Vec<AclEntry>, AclError> {
    let entries = existing
        .iter()
        .filter(|e| e.scope == AclScope::Access)
        .cloned()
        .collect();
    validate(entries)
}

/// The access entries a new child gets from its parent's default ACL,
/// filtered by the mode it was created with, and (for a directory) the
/// default ACL it inherits; `None` when the parent has no default ACL.
/// As HDFS's `copyINodeDefaultAcl`: owner, mask (or group, for a minimal
/// default ACL) and other are limited by the mode; named entries are
/// copied as they are.
pub fn inherited(parent_default: &[AclEntry], mode: u16, is_dir: bool) -> Option<Vec<AclEntry>> {
    if parent_default.is_empty() {
        return None;
    }
    let minimal_default = parent_default.len() == 3;
    let bits = |shift: u16| ((mode >> shift) & 7) as u8;
    let mut entries: Vec<AclEntry> = parent_default
        .iter()
        .map(|d| {
            let perm = match (d.kind, d.is_named()) {
                (AclType::User, false) => d.perm & bits(6),
                (AclType::Mask, _) => d.perm & bits(3),
                (AclType::Group, false) if minimal_default => d.perm & bits(3),
                (AclType::Other, _) => d.perm & bits(0),
                _ => d.perm,
            };
            AclEntry::new(AclScope::Access, d.kind, &d.name, perm)
        })
        .collect();
    if is_dir {
        entries.extend(parent_default.iter().cloned());
    }
    entries.sort_by(compare);
    Some(entries)
}

/// The mode an ACL shows in its permission bits: owner, mask (the group
/// entry when there is no mask) and other; `sticky` kept.
pub fn mode_of(acl: &[AclEntry], sticky: u16) -> u16 {
    let perm = |kind: AclType| {
        acl.iter()
            .find(|e| e.scope == AclScope::Access && e.kind == kind && !e.is_named())
            .map(|e| u16::from(e.perm))
    };
    let group = perm(AclType::Mask).or(perm(AclType::Group)).unwrap_or(0);
    (perm(AclType::User).unwrap_or(0) << 6)
        | (group << 3)
        | perm(AclType::Other).unwrap_or(0)
        | sticky
}

impl From<&AclEntry> for rdfs_proto::editlog::AclEntry {
    fn from(entry: &AclEntry) -> Self {
        Self {
            default_scope: entry.scope == AclScope::Default,
            kind: match entry.kind {
                AclType::User => 0,
                AclType::Group => 1,
                AclType::Mask => 2,
                AclType::Other => 3,
            },
            name: entry.name.clone(),
            perm: u32::from(entry.perm),
        }
    }
}

impl TryFrom<&rdfs_proto::editlog::AclEntry> for AclEntry {
    type Error = AclError;

    fn try_from(entry: &rdfs_proto::editlog::AclEntry) -> Result<Self, AclError> {
        let kind = match entry.kind {
            0 => AclType::User,
            1 => AclType::Group,
            2 => AclType::Mask,
            3 => AclType::Other,
            other => return Err(invalid(format!("unknown ACL entry type {other}"))),
        };
        if entry.perm > 7 {
            return Err(invalid(format!(
                "ACL permission {} out of range",
                entry.perm
            )));
        }
        let scope = if entry.default_scope {
            AclScope::Default
        } else {
            AclScope::Access
        };
        Ok(Self::new(scope, kind, &entry.name, entry.perm as u8))
    }
}

/// ACL entries from their wire form.
pub fn from_wire(entries: &[rdfs_proto::editlog::AclEntry]) -> Result<Vec<AclEntry>, AclError> {
    entries.iter().map(AclEntry::try_from).collect()
}

/// ACL entries in their wire form.
pub fn to_wire(entries: &[AclEntry]) -> Vec<rdfs_proto::editlog::AclEntry> {
    entries.iter().map(Into::into).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(text: &str) -> Vec<AclEntry> {
        let mut entries = parse_spec(text, true).expect("spec");
        entries.sort_by(compare);
        entries
    }

    fn text(entries: &[AclEntry]) -> String {
        entries
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn specs_parse_and_print_as_hdfs_writes_them() {
        let entries = parse_spec("user:bob:r-x,default:group::rwx,mask::r--", true).expect("spec");
        assert_eq!(text(&entries), "user:bob:r-x,default:group::rwx,mask::r--");
        assert_eq!(
            parse_spec("user:bob", false).expect("-x spec")[0],
            AclEntry::new(AclScope::Access, AclType::User, "bob", 0)
        );
        assert!(parse_spec("user:bob:rwz", true).is_err());
        assert!(parse_spec("people:bob:rwx", true).is_err());
        assert!(parse_spec("user:bob", true).is_err());
    }

    #[test]
    fn adding_a_named_entry_adds_a_mask_of_what_it_masks() {
        let merged = merge(&minimal(0o750), &acl("user:bob:rwx")).expect("merge");
        assert_eq!(
            text(&merged),
            "user::rwx,user:bob:rwx,group::r-x,mask::rwx,other::---"
        );
        assert_eq!(mode_of(&merged, 0), 0o770);
        // An explicit mask wins.
        let merged = merge(&merged, &acl("mask::r--")).expect("merge");
        assert!(text(&merged).contains("mask::r--"), "{}", text(&merged));
    }

    #[test]
    fn default_entries_get_owner_group_and_other_from_the_access_acl() {
        let merged = merge(&minimal(0o755), &acl("default:user:bob:rwx")).expect("merge");
        assert_eq!(
            text(&merged),
            "user::rwx,group::r-x,other::r-x,default:user::rwx,default:user:bob:rwx,default:group::r-x,default:mask::rwx,default:other::r-x"
        );
        assert_eq!(
            text(&remove_default(&merged).expect("-k")),
            "user::rwx,group::r-x,other::r-x"
        );
    }

    #[test]
    fn removing_entries_recalculates_or_refuses() {
        let extended = merge(&minimal(0o750), &acl("user:bob:rwx,group:eng:r--")).expect("merge");
        let fewer =
            remove_entries(&extended, &parse_spec("user:bob", false).expect("spec")).expect("-x");
        assert_eq!(
            text(&fewer),
            "user::rwx,group::r-x,group:eng:r--,mask::r-x,other::---"
        );
        let refused = remove_entries(&extended, &parse_spec("mask::", false).expect("spec"))
            .expect_err("mask needed");
        assert_eq!(
            refused.0,
            "Invalid ACL: mask is required and cannot be deleted."
        );
        let refused = remove_entries(&extended, &parse_spec("user::", false).expect("spec"))
            .expect_err("owner needed");
        assert_eq!(
            refused.0,
            "Invalid ACL: the user, group and other entries are required."
        );
    }

    #[test]
    fn set_replaces_the_scopes_it_names() {
        let with_default = merge(&minimal(0o755), &acl("default:user:bob:rwx")).expect("merge");
        let set = replace(&with_default, &acl("user::rw-,group::r--,other::---")).expect("--set");
        assert!(
            text(&set).starts_with("user::rw-,group::r--,other::---,default:"),
            "{}",
            text(&set)
        );
        let refused = replace(&minimal(0o755), &acl("user:bob:rwx")).expect_err("no base");
        assert_eq!(
            refused.0,
            "Invalid ACL: the user, group and other entries are required."
        );
        let duplicate = validate(acl("user::rwx,user::r--,group::---,other::---"));
        assert!(duplicate.is_err());
        let named_mask = validate(acl("user::rwx,group::---,mask:x:rwx,other::---"));
        assert_eq!(
            named_mask.expect_err("named mask").0,
            "Invalid ACL: this entry type must not have a name: mask:x:rwx."
        );
    }

    #[test]
    fn children_inherit_the_default_acl_limited_by_their_mode() {
        let parent = acl(
            "default:user::rwx,default:user:bob:rwx,default:group::r-x,default:mask::rwx,default:other::r-x",
        );
        let file = inherited(&parent, 0o644, false).expect("inherits");
        assert_eq!(
            text(&file),
            "user::rw-,user:bob:rwx,group::r-x,mask::r--,other::r--"
        );
        let dir = inherited(&parent, 0o755, true).expect("inherits");
        assert_eq!(
            dir.iter().filter(|e| e.scope == AclScope::Default).count(),
            5
        );
        assert!(inherited(&[], 0o644, false).is_none());
    }
}
