//! Permissions, groups and proxy users on a real cluster, through the
//! `rdfs` commands as different users: what HDFS's permission model lets
//! an ordinary user do, refuses them with HDFS's messages, and lets the
//! superuser (the user the namenode runs as) do anyway.

use crate::harness::{MiniCluster, Run, SUPERUSER, refused, write_local};

/// Groups come from config here so the test does not depend on the
/// machine's user database; `rdfs groups` shows what the namenode sees.
const GROUPS: &str = "dr.who=;alice=alice,staff;bob=bob,staff;carol=carol;hue=hue";

fn cluster() -> MiniCluster {
    MiniCluster::builder()
        .datanodes(1)
        .replication(1)
        .conf("security.group_mapping_overrides", GROUPS)
        .conf("security.proxy_users.hue.hosts", "127.0.0.1")
        .conf("security.proxy_users.hue.groups", "staff")
        .start()
}

fn listing_line(cluster: &MiniCluster, user: &str, path: &str) -> String {
    let run = cluster.dfs_as(user, &["-ls", "-d", path]);
    run.ok();
    run.stdout().trim().to_string()
}

#[test]
fn ordinary_users_are_held_to_permissions_and_the_superuser_is_not() {
    let cluster = cluster();
    let local = write_local(cluster.path("").as_path(), "data", b"secret bytes\n");
    let local = local.to_str().expect("path");
    cluster
        .dfs(&["-mkdir", "-p", "/data", "/user/alice", "/tmp"])
        .ok();
    cluster.dfs(&["-put", local, "/data/secret"]).ok();
    cluster.dfs(&["-chmod", "700", "/data"]).ok();
    cluster.dfs(&["-chmod", "1777", "/tmp"]).ok();
    cluster.dfs(&["-chown", "alice:alice", "/user/alice"]).ok();

    // Root's private directory: no way in for alice.
    let denied = format!(
        "Permission denied: user=alice, access=EXECUTE, inode=\"/data\":{SUPERUSER}:supergroup:drwx------"
    );
    refused(&cluster.dfs_as("alice", &["-cat", "/data/secret"]), &denied);
    refused(
        &cluster.dfs_as("alice", &["-put", local, "/data/mine"]),
        &denied,
    );
    refused(
        &cluster.dfs_as("alice", &["-mv", "/data/secret", "/user/alice/stolen"]),
        &denied,
    );
    refused(&cluster.dfs_as("alice", &["-rm", "/data/secret"]), &denied);
    refused(
        &cluster.dfs_as("alice", &["-ls", "/data"]),
        "Permission denied: user=alice, access=READ_EXECUTE, inode=\"/data\"",
    );
    refused(
        &cluster.dfs_as("alice", &["-rm", "-r", "-skipTrash", "/data"]),
        &format!(
            "Permission denied: user=alice, access=WRITE, inode=\"/\":{SUPERUSER}:supergroup:drwxr-xr-x"
        ),
    );
    // Nothing was changed by the refusals.
    assert_eq!(
        cluster.dfs(&["-cat", "/data/secret"]).ok().stdout(),
        "secret bytes\n"
    );
    assert!(cluster.dfs(&["-test", "-e", "/user/alice/stolen"]).code != 0);

    // Her own home: everything, and what she makes is hers.
    cluster
        .dfs_as("alice", &["-put", local, "/user/alice/f"])
        .ok();
    let line = listing_line(&cluster, "alice", "/user/alice/f");
    assert!(line.starts_with("-rw-r--r--"), "umask 022: {line}");
    assert!(line.contains(" alice alice "), "owner and group: {line}");
    cluster
        .dfs_as("alice", &["-mv", "/user/alice/f", "/user/alice/g"])
        .ok();
    assert_eq!(
        cluster
            .dfs_as("alice", &["-cat", "/user/alice/g"])
            .ok()
            .stdout(),
        "secret bytes\n"
    );
    cluster.dfs_as("alice", &["-mkdir", "/user/alice/d"]).ok();
    cluster
        .dfs_as("alice", &["-rm", "-r", "/user/alice/d"])
        .ok();

    // A sticky, world-writable /tmp: each removes only their own.
    cluster.dfs_as("bob", &["-put", local, "/tmp/bobs"]).ok();
    cluster.dfs_as("alice", &["-put", local, "/tmp/hers"]).ok();
    refused(
        &cluster.dfs_as("alice", &["-rm", "/tmp/bobs"]),
        "Permission denied by sticky bit: user=alice, path=\"/tmp/bobs\":bob:supergroup:-rw-r--r--, parent=\"/tmp\"",
    );
    refused(
        &cluster.dfs_as("alice", &["-mv", "/tmp/bobs", "/tmp/taken"]),
        "Permission denied by sticky bit",
    );
    cluster.dfs_as("alice", &["-rm", "/tmp/hers"]).ok();

    // Giving files away is the superuser's; an owner may pick a group she
    // is in.
    refused(
        &cluster.dfs_as("alice", &["-chown", "bob", "/user/alice/g"]),
        "User alice is not a super user (non-super user cannot change owner).",
    );
    refused(
        &cluster.dfs_as("alice", &["-chgrp", "carol", "/user/alice/g"]),
        "User alice does not belong to carol",
    );
    cluster
        .dfs_as("alice", &["-chgrp", "staff", "/user/alice/g"])
        .ok();
    refused(
        &cluster.dfs_as("bob", &["-chmod", "777", "/user/alice/g"]),
        "Permission denied. user=bob is not the owner of inode=/user/alice/g",
    );

    // A recursive change reports each refusal and goes on, as hdfs dfs
    // does.
    cluster
        .dfs_as(
            "alice",
            &["-mkdir", "-p", "/user/alice/r/a", "/user/alice/r/b"],
        )
        .ok();
    cluster.dfs(&["-chown", "bob", "/user/alice/r/a"]).ok();
    refused(
        &cluster.dfs_as("alice", &["-chmod", "-R", "700", "/user/alice/r"]),
        "Permission denied. user=alice is not the owner of inode=/user/alice/r/a",
    );
    for (path, mode) in [
        ("/user/alice/r", "drwx------"),
        ("/user/alice/r/a", "drwxr-xr-x"),
        ("/user/alice/r/b", "drwx------"),
    ] {
        let line = listing_line(&cluster, SUPERUSER, path);
        assert!(line.starts_with(mode), "{path}: {line}");
    }

    // The superuser passes every check.
    cluster.dfs(&["-cat", "/data/secret"]).ok();
    cluster.dfs(&["-rm", "/tmp/bobs"]).ok();
    cluster.dfs(&["-chown", "bob:staff", "/user/alice/g"]).ok();

    // A client's umask shapes what it creates.
    cluster
        .rdfs_env(
            "dfs",
            &[
                "-D",
                "fs.permissions.umask-mode=077",
                "-mkdir",
                "/user/alice/private",
            ],
            None,
            &[("HADOOP_USER_NAME", "alice")],
        )
        .ok();
    let line = listing_line(&cluster, "alice", "/user/alice/private");
    assert!(line.starts_with("drwx------"), "umask 077: {line}");

    // Administration is the superuser's.
    refused(
        &cluster.rdfs_env(
            "dfsadmin",
            &["-report"],
            None,
            &[("HADOOP_USER_NAME", "alice")],
        ),
        "Access denied for user alice. Superuser privilege is required",
    );
    cluster.rdfs("dfsadmin", &["-report"]).ok();
    assert_eq!(
        cluster.rdfs("groups", &["alice", "carol"]).ok().stdout(),
        "alice : alice staff\ncarol : carol\n"
    );
}

#[test]
fn a_proxy_user_acts_only_for_the_users_its_rules_allow() {
    let cluster = cluster();
    let local = write_local(cluster.path("").as_path(), "data", b"via hue\n");
    let local = local.to_str().expect("path");
    cluster
        .dfs(&["-mkdir", "-p", "/user/alice", "/user/carol"])
        .ok();
    cluster.dfs(&["-chown", "alice:alice", "/user/alice"]).ok();
    cluster.dfs(&["-chown", "carol:carol", "/user/carol"]).ok();
    let as_hue_for = |user: &str, args: &[&str]| {
        cluster.rdfs_env(
            "dfs",
            args,
            None,
            &[("HADOOP_USER_NAME", "hue"), ("HADOOP_PROXY_USER", user)],
        )
    };
    // alice is in staff, which hue may act for: the file is alice's.
    as_hue_for("alice", &["-put", local, "/user/alice/f"]).ok();
    let line = listing_line(&cluster, "alice", "/user/alice/f");
    assert!(line.contains(" alice alice "), "acted as alice: {line}");
    // carol is not.
    refused(
        &as_hue_for("carol", &["-put", local, "/user/carol/f"]),
        "User: hue is not allowed to impersonate carol",
    );
    assert!(cluster.dfs(&["-test", "-e", "/user/carol/f"]).code != 0);
    // Nor may anyone without a rule act for others.
    refused(
        &cluster.rdfs_env(
            "dfs",
            &["-ls", "/user/alice"],
            None,
            &[("HADOOP_USER_NAME", "bob"), ("HADOOP_PROXY_USER", "alice")],
        ),
        "User: bob is not allowed to impersonate alice",
    );
}

#[test]
fn proxy_rules_reload_from_the_configuration_file_on_request() {
    let rules = |groups: &str| {
        format!(
            "[security]\ngroup_mapping_overrides = \"{GROUPS}\"\n\n\
             [security.proxy_users.hue]\nhosts = \"127.0.0.1\"\ngroups = \"{groups}\"\n"
        )
    };
    let cluster = MiniCluster::builder()
        .datanodes(0)
        .conf_file(&rules("staff"))
        .start();
    let file = cluster.conf_file.clone().expect("configuration file");
    let hue_lists_as = |user: &str| {
        cluster.rdfs_env(
            "dfs",
            &["-ls", "/"],
            None,
            &[("HADOOP_USER_NAME", "hue"), ("HADOOP_PROXY_USER", user)],
        )
    };
    hue_lists_as("alice").ok();
    refused(
        &hue_lists_as("carol"),
        "User: hue is not allowed to impersonate carol",
    );

    // New rules take effect only when the superuser asks for them.
    std::fs::write(&file, rules("carol")).expect("rewrite the configuration");
    hue_lists_as("alice").ok();
    refused(
        &cluster.rdfs_env(
            "dfsadmin",
            &["-refreshSuperUserGroupsConfiguration"],
            None,
            &[("HADOOP_USER_NAME", "alice")],
        ),
        "Access denied for user alice. Superuser privilege is required",
    );
    hue_lists_as("alice").ok();
    cluster
        .rdfs("dfsadmin", &["-refreshSuperUserGroupsConfiguration"])
        .ok();
    hue_lists_as("carol").ok();
    refused(
        &hue_lists_as("alice"),
        "User: hue is not allowed to impersonate alice",
    );

    // A file that no longer parses is refused and the rules stay (the
    // command itself is pointed at the namenode without reading it).
    std::fs::write(&file, "[security\n").expect("break the configuration");
    let broken = Run::from(
        crate::harness::rdfs_command()
            .args(["dfsadmin", "-D"])
            .arg(format!("fs.default_fs=hdfs://{}", cluster.nn_addr))
            .arg("-refreshSuperUserGroupsConfiguration")
            .output()
            .expect("spawn rdfs"),
    );
    refused(&broken, "cannot read the configuration");
    std::fs::write(&file, rules("carol")).expect("repair the configuration");
    hue_lists_as("carol").ok();
}

#[test]
fn removed_files_wait_in_the_trash_with_their_blocks_until_expunged_or_emptied() {
    // The emptier checkpoints every 15 s and drops checkpoints older than
    // 15 s; the steps before it first runs take a few seconds, and each
    // check below holds whoever (shell or emptier) moved things on.
    let cluster = MiniCluster::builder()
        .datanodes(1)
        .replication(1)
        .conf("security.group_mapping_overrides", GROUPS)
        .conf("fs.trash.interval", "0.25")
        .start();
    let local = write_local(cluster.path("").as_path(), "data", b"kept a while\n");
    let local = local.to_str().expect("path");
    cluster.dfs(&["-mkdir", "-p", "/user/alice"]).ok();
    cluster.dfs(&["-chown", "alice:alice", "/user/alice"]).ok();
    for name in ["f1", "f2", "f3"] {
        cluster
            .dfs_as("alice", &["-put", local, &format!("/user/alice/{name}")])
            .ok();
    }
    let blocks = cluster.block_ids("/user/alice/f1");
    let in_trash = |name: &str| {
        let run = cluster.dfs_as("alice", &["-ls", "-R", "/user/alice/.Trash"]);
        run.code == 0 && run.stdout().contains(&format!("/user/alice/{name}\n"))
    };

    let moved = cluster.dfs_as("alice", &["-rm", "/user/alice/f1"]);
    moved.ok();
    assert!(
        moved.stderr.contains("to trash at: hdfs://127.0.0.1:")
            && moved
                .stderr
                .contains("/user/alice/.Trash/Current/user/alice/f1"),
        "{}",
        moved.stderr
    );
    assert!(cluster.dfs(&["-test", "-e", "/user/alice/f1"]).code != 0);
    assert!(in_trash("f1"), "f1 waits in the trash");
    for block in &blocks {
        assert!(
            !cluster.replica_files(*block).is_empty(),
            "a trashed file keeps its blocks"
        );
    }
    // The trash cannot go into itself, and -skipTrash deletes at once.
    refused(
        &cluster.dfs_as("alice", &["-rm", "-r", "/user/alice"]),
        "as it contains the trash. Consider using -skipTrash option",
    );
    cluster
        .dfs_as("alice", &["-rm", "-skipTrash", "/user/alice/f3"])
        .ok();
    assert!(!in_trash("f3"));

    // -expunge -immediate empties it, and the blocks go.
    let expunged = cluster.dfs_as("alice", &["-expunge", "-immediate"]);
    expunged.ok();
    assert!(
        expunged.stdout().contains("Deleted trash checkpoint"),
        "{}",
        expunged.stdout()
    );
    assert!(!in_trash("f1"), "expunged");
    cluster.wait_until(
        "the expunged file's replicas to be deleted",
        std::time::Duration::from_secs(30),
        || blocks.iter().all(|b| cluster.replica_files(*b).is_empty()),
    );

    // The namenode's emptier does the same on its own.
    let blocks = cluster.block_ids("/user/alice/f2");
    cluster.dfs_as("alice", &["-rm", "/user/alice/f2"]).ok();
    assert!(in_trash("f2"));
    cluster.wait_until(
        "the emptier to checkpoint and expire the trash",
        std::time::Duration::from_secs(60),
        || !in_trash("f2"),
    );
    cluster.wait_until(
        "the emptied file's replicas to be deleted",
        std::time::Duration::from_secs(30),
        || blocks.iter().all(|b| cluster.replica_files(*b).is_empty()),
    );
    assert!(
        cluster.namenode_log().contains("created trash checkpoint"),
        "the emptier logs its work"
    );
}

#[test]
fn acls_grant_what_the_bits_do_not_and_default_acls_shape_new_files() {
    let mut cluster = cluster();
    let local = write_local(cluster.path("").as_path(), "data", b"the plan\n");
    let local = local.to_str().expect("path");
    cluster.dfs(&["-mkdir", "/proj"]).ok();
    cluster.dfs(&["-put", local, "/proj/plan"]).ok();
    cluster.dfs(&["-chmod", "750", "/proj"]).ok();
    cluster.dfs(&["-chmod", "640", "/proj/plan"]).ok();
    refused(
        &cluster.dfs_as("carol", &["-cat", "/proj/plan"]),
        "Permission denied: user=carol, access=EXECUTE, inode=\"/proj\"",
    );

    // A named entry lets carol in, limited by the mask.
    cluster
        .dfs(&["-setfacl", "-m", "user:carol:r-x", "/proj"])
        .ok();
    cluster
        .dfs(&["-setfacl", "-m", "user:carol:rw-", "/proj/plan"])
        .ok();
    assert_eq!(
        cluster
            .dfs_as("carol", &["-cat", "/proj/plan"])
            .ok()
            .stdout(),
        "the plan\n"
    );
    let line = listing_line(&cluster, SUPERUSER, "/proj/plan");
    assert!(
        line.starts_with("-rw-rw----+"),
        "the + and the mask: {line}"
    );
    assert_eq!(
        cluster.dfs(&["-getfacl", "/proj/plan"]).ok().stdout(),
        format!(
            "# file: /proj/plan\n# owner: {SUPERUSER}\n# group: supergroup\nuser::rw-\nuser:carol:rw-\ngroup::r--\nmask::rw-\nother::---\n\n"
        )
    );
    cluster.dfs(&["-setfacl", "-m", "mask::---", "/proj"]).ok();
    refused(
        &cluster.dfs_as("carol", &["-cat", "/proj/plan"]),
        "Permission denied: user=carol, access=EXECUTE, inode=\"/proj\"",
    );
    cluster.dfs(&["-setfacl", "-m", "mask::r-x", "/proj"]).ok();

    // Only the owner changes an ACL, and HDFS's rules hold.
    refused(
        &cluster.dfs_as("carol", &["-setfacl", "-m", "user:carol:rwx", "/proj"]),
        "Permission denied. user=carol is not the owner of inode=/proj",
    );
    refused(
        &cluster.dfs(&["-setfacl", "-x", "mask::", "/proj"]),
        "Invalid ACL: mask is required and cannot be deleted.",
    );
    // As HDFS's shell does, default entries given for a file are dropped.
    let plan_acl = cluster.dfs(&["-getfacl", "/proj/plan"]).ok().stdout();
    cluster
        .dfs(&["-setfacl", "-m", "default:user:carol:rwx", "/proj/plan"])
        .ok();
    assert_eq!(
        cluster.dfs(&["-getfacl", "/proj/plan"]).ok().stdout(),
        plan_acl
    );

    // A default ACL shapes what is created below, with the creator's mode
    // (umask 022) limiting the owner, the mask and the others.
    cluster
        .dfs(&["-setfacl", "-m", "default:user:carol:rwx", "/proj"])
        .ok();
    cluster.dfs(&["-put", local, "/proj/new"]).ok();
    assert_eq!(
        cluster.dfs(&["-getfacl", "/proj/new"]).ok().stdout(),
        format!(
            "# file: /proj/new\n# owner: {SUPERUSER}\n# group: supergroup\nuser::rw-\nuser:carol:rwx\t#effective:r--\ngroup::r-x\t#effective:r--\nmask::r--\nother::---\n\n"
        )
    );
    cluster.dfs(&["-mkdir", "/proj/sub"]).ok();
    let sub = cluster.dfs(&["-getfacl", "/proj/sub"]).ok().stdout();
    assert!(
        sub.contains("default:user:carol:rwx\n"),
        "directories inherit the default too: {sub}"
    );

    // ACLs survive a restart, from the edit log and from an image.
    let before = cluster.dfs(&["-getfacl", "-R", "/proj"]).ok().stdout();
    cluster.rdfs("dfsadmin", &["-safemode", "enter"]).ok();
    cluster.rdfs("dfsadmin", &["-saveNamespace"]).ok();
    cluster.rdfs("dfsadmin", &["-safemode", "leave"]).ok();
    cluster
        .dfs(&["-setfacl", "-m", "group:staff:r--", "/proj/plan"])
        .ok();
    let before_restart = cluster.dfs(&["-getfacl", "-R", "/proj"]).ok().stdout();
    assert_ne!(before, before_restart);
    cluster.stop_namenode();
    cluster.start_namenode();
    cluster.rdfs("dfsadmin", &["-safemode", "wait"]).ok();
    assert_eq!(
        cluster.dfs(&["-getfacl", "-R", "/proj"]).ok().stdout(),
        before_restart
    );

    // -b leaves the bits.
    cluster.dfs(&["-setfacl", "-b", "/proj/plan"]).ok();
    let line = listing_line(&cluster, SUPERUSER, "/proj/plan");
    assert!(line.starts_with("-rw-r----- "), "no ACL left: {line}");
}
