//! Where operations meet the permission checker: each resolves its path and
//! checks what it needs under the lock it then changes the namespace in.

use super::{Caller, Namesystem};
use crate::error::{NamenodeError, Result};
use crate::namespace::{InodeId, Namespace, Resolved};
use crate::permission::{FsAction, PermissionChecker, Required, Subject};

/// What a path through a file is called: creating operations get HDFS's
/// ParentNotDirectoryException, others its AccessControlException.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathUse {
    Create,
    Access,
    /// A lookup, for which a path through a file simply does not exist.
    Lookup,
}

impl Namesystem {
    /// The checker for `caller`, or `None` when no check applies (the
    /// superuser).
    fn checker<'a>(&self, ns: &'a Namespace, caller: &'a Caller) -> Option<PermissionChecker<'a>> {
        (!caller.superuser).then(|| {
            PermissionChecker::new(
                ns,
                Subject {
                    user: &caller.user,
                    groups: &caller.groups,
                },
            )
        })
    }

    /// What is left of `required` when permissions are off: ownership, which
    /// HDFS checks for chmod and chown regardless.
    fn effective(&self, required: Required) -> Required {
        if self.config.permissions_enabled {
            required
        } else {
            Required {
                traverse: false,
                owner: required.owner,
                ..Required::TRAVERSE
            }
        }
    }

    /// Resolves `components` and checks `required` on the result. A path
    /// that runs through a file fails, after the directories before the
    /// file were checked for traversal.
    pub(super) fn resolve_checked(
        &self,
        ns: &Namespace,
        caller: &Caller,
        components: &[&str],
        required: Required,
        path_use: PathUse,
    ) -> Result<Resolved> {
        let required = self.effective(required);
        let checker = self.checker(ns, caller);
        match ns.resolve(components) {
            Ok(resolved) => {
                if let Some(checker) = &checker {
                    checker.check(components, &resolved, required)?;
                }
                Ok(resolved)
            }
            Err(through) => {
                if let Some(checker) = &checker
                    && required.traverse
                {
                    checker.check_through_file(components, &through)?;
                }
                let message = format!("{} (is not a directory)", through.path);
                Err(match path_use {
                    PathUse::Create => NamenodeError::ParentNotDirectory(message),
                    PathUse::Access => NamenodeError::AccessControl(message),
                    PathUse::Lookup => NamenodeError::FileNotFound(message),
                })
            }
        }
    }

    /// Checks `required` on a path [`Self::resolve_checked`] resolved and
    /// checked for traversal (a second check once the operation knows what
    /// the target is).
    pub(super) fn check_resolved(
        &self,
        ns: &Namespace,
        caller: &Caller,
        components: &[&str],
        resolved: &Resolved,
        required: Required,
    ) -> Result<()> {
        let required = Required {
            traverse: false,
            ..self.effective(required)
        };
        match self.checker(ns, caller) {
            Some(checker) => checker.check(components, resolved, required),
            None => Ok(()),
        }
    }

    /// `action` on every directory below and including `root`, without the
    /// sticky rule (what a content summary or fsck reads).
    pub(super) fn check_subtree(
        &self,
        ns: &Namespace,
        caller: &Caller,
        root: InodeId,
        action: FsAction,
    ) -> Result<()> {
        if !self.config.permissions_enabled {
            return Ok(());
        }
        match self.checker(ns, caller) {
            Some(checker) => checker.check_subtree(root, action, false, false),
            None => Ok(()),
        }
    }
}
