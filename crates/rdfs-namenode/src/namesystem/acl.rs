//! POSIX ACLs (HDFS's `FSDirAclOp`): each change is the owner's (or the
//! superuser's) to make, computed from the inode's whole ACL by
//! [`rdfs_common::acl`] and logged as the whole new ACL, so replay does not
//! depend on how it was computed.

use rdfs_common::acl::{self, AclEntry, AclError};
use rdfs_common::path;
use rdfs_proto::editlog as edit;

use super::access::PathUse;
use super::{Caller, Locked, Namesystem};
use crate::edit_log::Op;
use crate::error::{NamenodeError, Result};
use crate::permission::Required;

/// A change `setfacl` asks for.
#[derive(Debug, Clone)]
pub enum AclChange {
    /// `-m`: merge these entries.
    Modify(Vec<AclEntry>),
    /// `-x`: remove the entries these name.
    RemoveEntries(Vec<AclEntry>),
    /// `-k`: drop the default ACL.
    RemoveDefault,
    /// `-b`: drop every entry but the owner's, group's and others'.
    RemoveAll,
    /// `--set`: replace the scopes these entries name.
    Set(Vec<AclEntry>),
}

/// What `getfacl` needs (HDFS's `AclStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclStatus {
    pub owner: String,
    pub group: String,
    pub sticky: bool,
    /// Permission bits (the group bits are the mask of an extended ACL).
    pub permission: u16,
    /// The stored entries: named users and groups, the owning group's entry
    /// of an extended ACL, and the default ACL.
    pub entries: Vec<AclEntry>,
}

fn acl_error(err: AclError) -> NamenodeError {
    NamenodeError::Acl(err.0)
}

impl Namesystem {
    fn check_acls_enabled(&self) -> Result<()> {
        if self.config.acls_enabled {
            Ok(())
        } else {
            Err(NamenodeError::Acl(
                "The ACL operation has been rejected.  Support for ACLs has been disabled by setting dfs.namenode.acls.enabled to false."
                    .into(),
            ))
        }
    }

    pub fn get_acl_status(&self, caller: &Caller, src: &str) -> Result<AclStatus> {
        self.check_acls_enabled()?;
        let components = path::components(src)?;
        let state = self.state.read();
        let ns = &state.fs.namespace;
        let resolved =
            self.resolve_checked(ns, caller, &components, Required::TRAVERSE, PathUse::Access)?;
        let inode = resolved
            .last()
            .and_then(|id| ns.get(id))
            .ok_or_else(|| NamenodeError::FileNotFound(format!("cannot find {src}")))?;
        let mode = inode.permission().mode;
        let entries = ns.stored_acl(inode);
        Ok(AclStatus {
            owner: inode.owner().to_string(),
            group: inode.group().to_string(),
            sticky: mode & 0o1000 != 0,
            permission: mode & 0o7777,
            entries,
        })
    }

    /// Applies `change` to the ACL of `src`.
    pub async fn change_acl(&self, caller: &Caller, src: &str, change: AclChange) -> Result<()> {
        self.check_acls_enabled()?;
        let components = path::components(src)?;
        let txid = {
            let mut state = self.state.write();
            self.check_writable(&state, || format!("Cannot modify ACL entries on {src}"))?;
            let Locked { fs, .. } = &mut *state;
            let resolved = self.resolve_checked(
                &fs.namespace,
                caller,
                &components,
                Required::owner(),
                PathUse::Access,
            )?;
            let inode = resolved
                .last()
                .and_then(|id| fs.namespace.get(id))
                .ok_or_else(|| {
                    NamenodeError::FileNotFound(format!("Directory/File does not exist {src}"))
                })?;
            let id = inode.id();
            let is_dir = inode.is_dir();
            let existing = fs.namespace.logical_acl(inode);
            let entries = match &change {
                AclChange::Modify(spec) => acl::merge(&existing, spec).map_err(acl_error)?,
                AclChange::RemoveEntries(spec) => {
                    acl::remove_entries(&existing, spec).map_err(acl_error)?
                }
                AclChange::RemoveDefault => acl::remove_default(&existing).map_err(acl_error)?,
                AclChange::RemoveAll => Vec::new(),
                AclChange::Set(spec) => acl::replace(&existing, spec).map_err(acl_error)?,
            };
            if !is_dir && entries.iter().any(|e| e.scope == acl::AclScope::Default) {
                return Err(NamenodeError::Acl(format!(
                    "Invalid ACL: only directories may have a default ACL. Path: {src}"
                )));
            }
            self.log(
                fs,
                Op::SetAcl(edit::SetAcl {
                    inode_id: id,
                    entries: acl::to_wire(&entries),
                }),
            )?
        };
        self.sync(Some(txid)).await
    }
}
