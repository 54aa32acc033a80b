//! A cluster over mutual TLS: every daemon and command presents a
//! certificate from the cluster's CA (`rdfs ca`), datanodes without one —
//! or with one from another CA, or of another role — cannot register, and
//! a client certificate is the user it names.

use std::time::Duration;

use crate::harness::{MiniCluster, SUPERUSER, refused, run_ok, write_local};

/// `-D` settings that make a command present certificate `name`.
fn as_cert(cluster: &MiniCluster, name: &str) -> Vec<String> {
    cluster.cert_args(name)
}

#[test]
fn only_holders_of_the_clusters_certificates_get_in() {
    let mut cluster = MiniCluster::builder()
        .datanodes(1)
        .replication(1)
        .tls()
        .start();
    let ca = cluster.tls_dir.clone().expect("a TLS cluster has a CA");
    let ca_arg = ca.display().to_string();

    // Data moves over TLS end to end: client, namenode, datanode.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let local = write_local(cluster.dir.path(), "secret", &data);
    cluster
        .dfs(&["-put", local.to_str().expect("utf-8"), "/over-tls"])
        .ok();
    assert_eq!(cluster.dfs(&["-cat", "/over-tls"]).stdout, data);

    // A client without TLS is told the server requires it.
    let plain = cluster.rdfs("dfs", &["-D", "security.tls_enabled=false", "-ls", "/"]);
    refused(&plain, "requires TLS");

    // Datanodes that may not register: one without TLS, one whose
    // certificate comes from another CA, one holding a client certificate.
    let foreign = cluster.dir.path().join("foreign-ca");
    let foreign_arg = foreign.display().to_string();
    run_ok(&["ca", "init", "-dir", &foreign_arg]);
    run_ok(&[
        "ca",
        "issue",
        "-dir",
        &foreign_arg,
        "-role",
        "datanode",
        "-name",
        "dn",
    ]);
    run_ok(&[
        "ca", "issue", "-dir", &ca_arg, "-role", "client", "-name", "alice",
    ]);
    let attempts: Vec<(&str, Vec<String>)> = vec![
        (
            "requires TLS",
            vec!["-D".into(), "security.tls_enabled=false".into()],
        ),
        (
            "refused this client's certificate",
            vec![
                "-D".into(),
                format!(
                    "security.tls_cert_file={}",
                    foreign.join("dn.pem").display()
                ),
                "-D".into(),
                format!(
                    "security.tls_key_file={}",
                    foreign.join("dn-key.pem").display()
                ),
            ],
        ),
        (
            "the datanode protocol is for certificates of role datanode; this one is client 'alice'",
            as_cert(&cluster, "alice"),
        ),
    ];
    for (why, args) in attempts {
        let index = cluster.datanodes.len();
        cluster.datanodes.push(None);
        let daemon = cluster.spawn_datanode_with(index, &args);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !daemon.log_text().contains("; retrying") {
            assert!(
                std::time::Instant::now() < deadline,
                "datanode {index} never reported its refused registration: {}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = daemon.log_text();
        assert!(
            log.contains(why),
            "datanode {index} does not say {why:?}: {log}"
        );
        assert_eq!(cluster.live_datanodes(), 1, "datanode {index} registered");
        daemon.kill();
    }
    // The namenode names the peers it turned away.
    let log = cluster.namenode_log();
    assert!(
        log.contains("a peer connected without TLS to this TLS port"),
        "{log}"
    );
    assert!(log.contains("TLS handshake failed"), "{log}");

    // A client certificate is its holder's user (with no other user
    // named, the one a command acts as): alice is no superuser, and may
    // not claim to be anyone else.
    let alice = as_cert(&cluster, "alice");
    let as_alice = |args: &[&str], claimed: &str| {
        let mut all: Vec<&str> = alice.iter().map(String::as_str).collect();
        all.extend_from_slice(&args[1..]);
        cluster.rdfs_env(args[0], &all, None, &[("HADOOP_USER_NAME", claimed)])
    };
    refused(
        &as_alice(&["dfsadmin", "-report"], ""),
        "Access denied for user alice. Superuser privilege is required",
    );
    refused(
        &as_alice(&["dfs", "-ls", "/over-tls"], SUPERUSER),
        &format!("User: alice is not allowed to impersonate {SUPERUSER}"),
    );
    let mine = as_alice(&["dfs", "-mkdir", "-p", "/user/alice/mine"], "");
    refused(&mine, "Permission denied: user=alice, access=WRITE");
    as_alice(&["dfs", "-ls", "/over-tls"], "").ok();
    cluster.rdfs("dfsadmin", &["-report"]).ok();
}

#[test]
fn a_tls_client_told_when_the_server_speaks_plaintext() {
    let tls = MiniCluster::builder().datanodes(0).tls().start();
    let plain = MiniCluster::builder().datanodes(0).start();
    let ca = tls.tls_dir.clone().expect("CA");
    let cert = |file: &str| ca.join(file).display().to_string();
    let run = crate::harness::Run::from(
        crate::harness::rdfs_command()
            .args(["dfs", "-D", "security.tls_enabled=true"])
            .args(["-D", &format!("security.tls_ca_file={}", cert("ca.pem"))])
            .args([
                "-D",
                &format!(
                    "security.tls_cert_file={}",
                    cert(&format!("{SUPERUSER}.pem"))
                ),
            ])
            .args([
                "-D",
                &format!(
                    "security.tls_key_file={}",
                    cert(&format!("{SUPERUSER}-key.pem"))
                ),
            ])
            .args(["-fs", &format!("hdfs://{}", plain.nn_addr), "-ls", "/"])
            .output()
            .expect("run rdfs"),
    );
    refused(&run, "may have TLS off");
    let log = plain.namenode_log();
    assert!(
        log.contains("a peer began a TLS handshake, but TLS is off here"),
        "{log}"
    );
}
