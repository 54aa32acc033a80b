//! The namesystem's permission checks, operation by operation, in HDFS's
//! order: traversal before existence, the nearest existing ancestor for
//! creation, the parent and the sticky bit for removal and renames.

use std::sync::Arc;

use rdfs_common::ExceptionKind;
use rdfs_namenode::edit_log::MemoryJournal;
use rdfs_namenode::namesystem::{Caller, Namesystem};

mod common;

use common::user;

/// The superuser, under a name of its own so ownership shows.
fn caller() -> Caller {
    Caller::new("hdfs", Arc::from(Vec::new()), true, "10.0.0.1")
}

fn namesystem() -> Namesystem {
    common::namesystem_with(Arc::new(MemoryJournal::new()), common::config())
}

fn denied<T: std::fmt::Debug>(result: rdfs_namenode::error::Result<T>) -> String {
    let err = result.expect_err("should be refused");
    assert_eq!(err.kind(), ExceptionKind::AccessControl, "{err}");
    err.to_string()
}

/// `/private` (root's, 700) with a file, `/open` (777) and alice's home.
async fn tree(ns: &Namesystem) -> (Caller, Caller) {
    let root = caller();
    ns.mkdirs(&root, "/private", 0o700, true)
        .await
        .expect("mkdir");
    ns.create(
        &root,
        "/private/f",
        0o644,
        "c",
        false,
        false,
        1,
        common::BLOCK,
    )
    .await
    .expect("create");
    ns.complete("/private/f", "c", None, 0)
        .await
        .expect("close");
    ns.mkdirs(&root, "/open", 0o777, true).await.expect("mkdir");
    ns.mkdirs(&root, "/home/alice", 0o755, true)
        .await
        .expect("mkdir");
    ns.set_owner(&root, "/home/alice", Some("alice"), Some("alice"))
        .await
        .expect("chown");
    (user("alice", &["alice"]), user("bob", &["bob"]))
}

#[tokio::test]
async fn a_directory_one_may_not_enter_hides_even_whether_paths_exist() {
    let ns = namesystem();
    let (alice, _) = tree(&ns).await;
    for path in ["/private/f", "/private/missing", "/private/f/below"] {
        let message = denied(ns.get_file_info(&alice, path));
        assert!(
            message.contains("access=EXECUTE, inode=\"/private\""),
            "{path}: {message}"
        );
    }
    denied(ns.get_block_locations(&alice, "/private/f", 0, 1));
    denied(ns.get_content_summary(&alice, "/private"));
    denied(ns.get_listing(&alice, "/private", b"", false));
    assert!(
        ns.get_file_info(&caller(), "/private/f")
            .expect("root")
            .is_some()
    );
}

#[tokio::test]
async fn creating_and_removing_need_write_where_hdfs_says() {
    let ns = namesystem();
    let (alice, bob) = tree(&ns).await;
    // Creating under root's 755 directory: refused, naming it.
    let message = denied(ns.mkdirs(&alice, "/new/deep", 0o755, true).await);
    assert!(message.contains("access=WRITE, inode=\"/\""), "{message}");
    // In her home, and what she makes is hers.
    ns.create(
        &alice,
        "/home/alice/f",
        0o644,
        "a",
        false,
        false,
        1,
        common::BLOCK,
    )
    .await
    .expect("her own");
    ns.complete("/home/alice/f", "a", None, 0)
        .await
        .expect("close");
    let status = ns
        .get_file_info(&alice, "/home/alice/f")
        .expect("info")
        .expect("exists");
    assert_eq!(
        (status.owner.as_str(), status.group.as_str()),
        ("alice", "alice")
    );
    // bob may neither overwrite nor delete it, nor take it away.
    denied(
        ns.create(
            &bob,
            "/home/alice/f",
            0o644,
            "b",
            true,
            false,
            1,
            common::BLOCK,
        )
        .await,
    );
    denied(ns.delete(&bob, "/home/alice/f", false).await);
    denied(ns.rename(&bob, "/home/alice/f", "/open/f").await);
    denied(ns.set_replication(&bob, "/home/alice/f", 2).await);
    denied(ns.set_times(&bob, "/home/alice/f", Some(1), None).await);
    denied(ns.append(&bob, "/home/alice/f", "b").await.map(|_| ()));
    // Deleting a path that is not there still needs write on its parent.
    denied(ns.delete(&bob, "/home/alice/missing", false).await);
    assert!(
        !ns.delete(&alice, "/home/alice/missing", false)
            .await
            .expect("false")
    );
    // Renaming into a directory checks the name it would take there.
    ns.mkdirs(&alice, "/home/alice/d", 0o755, false)
        .await
        .expect("mkdir");
    let message = denied(ns.rename(&alice, "/home/alice/f", "/private").await);
    assert!(message.contains("inode=\"/private\""), "{message}");
    assert!(
        ns.rename(&alice, "/home/alice/f", "/home/alice/d")
            .await
            .expect("into d")
    );
    assert!(
        ns.get_file_info(&alice, "/home/alice/d/f")
            .expect("info")
            .is_some()
    );
}

#[tokio::test]
async fn ownership_rules_for_chmod_and_chown() {
    let ns = namesystem();
    let (alice, bob) = tree(&ns).await;
    let message = denied(ns.set_permission(&bob, "/home/alice", 0o777).await);
    assert_eq!(
        message,
        "Permission denied. user=bob is not the owner of inode=/home/alice"
    );
    ns.set_permission(&alice, "/home/alice", 0o700)
        .await
        .expect("owner");
    let staff = user("alice", &["alice", "staff"]);
    ns.set_owner(&staff, "/home/alice", None, Some("staff"))
        .await
        .expect("a group she is in");
    assert_eq!(
        denied(
            ns.set_owner(&alice, "/home/alice", None, Some("wheel"))
                .await
        ),
        "User alice does not belong to wheel"
    );
    assert_eq!(
        denied(ns.set_owner(&alice, "/home/alice", Some("bob"), None).await),
        "User alice is not a super user (non-super user cannot change owner)."
    );
}

#[tokio::test]
async fn with_permissions_off_only_ownership_is_checked() {
    let config = rdfs_namenode::namesystem::NamesystemConfig {
        permissions_enabled: false,
        ..common::config()
    };
    let ns = common::namesystem_with(Arc::new(MemoryJournal::new()), config);
    let (alice, bob) = tree(&ns).await;
    assert!(
        ns.get_file_info(&alice, "/private/f")
            .expect("off")
            .is_some()
    );
    assert!(ns.delete(&bob, "/private/f", false).await.expect("off"));
    denied(ns.set_permission(&bob, "/home/alice", 0o777).await);
    ns.set_permission(&alice, "/home/alice", 0o777)
        .await
        .expect("owner");
}

#[tokio::test]
async fn acl_entries_grant_access_and_default_acls_stay_on_directories() {
    use rdfs_common::acl::parse_spec;
    use rdfs_namenode::namesystem::AclChange;

    let ns = namesystem();
    let (alice, bob) = tree(&ns).await;
    let root = caller();
    assert!(denied(ns.get_file_info(&bob, "/private/f")).contains("access=EXECUTE"));
    let spec = |text: &str| parse_spec(text, true).expect("spec");
    ns.change_acl(&root, "/private", AclChange::Modify(spec("user:bob:r-x")))
        .await
        .expect("modify");
    assert!(ns.get_file_info(&bob, "/private/f").expect("bob").is_some());
    assert!(denied(ns.get_file_info(&alice, "/private/f")).contains("user=alice"));

    // The mask limits the named entry.
    ns.change_acl(&root, "/private", AclChange::Modify(spec("mask::r--")))
        .await
        .expect("mask");
    denied(ns.get_file_info(&bob, "/private/f"));

    // Only directories take a default ACL, whatever front door asks.
    let err = ns
        .change_acl(
            &root,
            "/private/f",
            AclChange::Set(spec("user::rw-,group::r--,other::---,default:user:bob:rwx")),
        )
        .await
        .expect_err("a file has no default ACL");
    assert_eq!(err.kind(), ExceptionKind::Acl, "{err}");
    assert!(
        err.to_string()
            .starts_with("Invalid ACL: only directories may have a default ACL"),
        "{err}"
    );
    assert_eq!(
        denied(ns.change_acl(&bob, "/private", AclChange::RemoveAll).await),
        "Permission denied. user=bob is not the owner of inode=/private"
    );
    ns.change_acl(&root, "/private", AclChange::RemoveAll)
        .await
        .expect("-b");
    let status = ns.get_acl_status(&root, "/private").expect("status");
    assert!(status.entries.is_empty());
    assert_eq!(status.permission, 0o700);
}

#[tokio::test]
async fn with_acls_disabled_acl_calls_are_refused_as_hdfs_refuses_them() {
    let config = rdfs_namenode::namesystem::NamesystemConfig {
        acls_enabled: false,
        ..common::config()
    };
    let ns = common::namesystem_with(Arc::new(MemoryJournal::new()), config);
    let err = ns.get_acl_status(&caller(), "/").expect_err("disabled");
    assert_eq!(err.kind(), ExceptionKind::Acl);
    assert!(
        err.to_string()
            .contains("dfs.namenode.acls.enabled to false"),
        "{err}"
    );
}
