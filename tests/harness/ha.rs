//! An HA mini-cluster: three journalnodes, two namenodes and datanodes, each
//! a real `rdfs` process on 127.0.0.1. Namenode and journalnode ports are
//! picked before start-up because every process must know them all.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdfs_client::{ClientSettings, DfsClient};
use rdfs_common::config::Config;

use super::{Daemon, Run, rdfs_command, spawn_daemon, wait_for};

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

pub struct HaCluster {
    pub dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    conf: Vec<String>,
    /// `RDFS_LOG` of the namenodes.
    namenode_log_filter: String,
    pub nn_ports: Vec<u16>,
    pub jn_ports: Vec<u16>,
    pub namenodes: Vec<Option<Daemon>>,
    pub journalnodes: Vec<Option<Daemon>>,
    pub datanodes: Vec<Option<Daemon>>,
}

pub struct HaBuilder {
    datanodes: usize,
    extra: Vec<String>,
    namenode_log_filter: String,
}

impl HaBuilder {
    pub fn datanodes(mut self, n: usize) -> Self {
        self.datanodes = n;
        self
    }

    pub fn conf(mut self, key: &str, value: &str) -> Self {
        self.extra.push(format!("{key}={value}"));
        self
    }

    /// Namenodes log each renewal of their leadership lease, with when it
    /// ends on the wall clock.
    pub fn log_leases(mut self) -> Self {
        self.namenode_log_filter = "info,rdfs_namenode::lease=debug".to_string();
        self
    }

    pub fn start(self) -> HaCluster {
        let dir = tempfile::Builder::new()
            .prefix("rdfs-ha-")
            .tempdir()
            .expect("temp dir");
        let nn_ports = vec![free_port(), free_port()];
        let jn_ports = vec![free_port(), free_port(), free_port()];
        let namenodes: Vec<String> = nn_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("nn{i}=127.0.0.1:{p}"))
            .collect();
        let journal: Vec<String> = jn_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut conf = vec![
            "dfs.block_size=1048576".to_string(),
            "dfs.replication=3".to_string(),
            "dfs.heartbeat_interval_ms=300".to_string(),
            "namenode.stale_interval_ms=3000".to_string(),
            "namenode.dead_interval_ms=6000".to_string(),
            "namenode.safemode_extension_ms=0".to_string(),
            "client.socket_timeout_ms=5000".to_string(),
            "client.connect_timeout_ms=2000".to_string(),
            "datanode.socket_timeout_ms=10000".to_string(),
            "datanode.sync_on_close=false".to_string(),
            // Every test runs with block tokens, so each block operation
            // (reads, pipelines, recovery, re-replication) proves it
            // carries a valid one. HDFS's default is off.
            "security.block_access_token_enable=true".to_string(),
            "ha.nameservice=ns".to_string(),
            format!("ha.namenodes={}", namenodes.join(",")),
            format!("ha.shared_edits_dir=qjournal://{}/ns", journal.join(";")),
            "fs.default_fs=hdfs://ns".to_string(),
            "ha.lease_timeout_ms=2000".to_string(),
            "ha.lease_renew_interval_ms=250".to_string(),
            "ha.health_check_interval_ms=100".to_string(),
            "ha.tail_edits_period_ms=100".to_string(),
            "ha.journal_timeout_ms=1000".to_string(),
            "client.failover_max_attempts=60".to_string(),
        ];
        conf.extend(self.extra);
        let mut cluster = HaCluster {
            dir,
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime"),
            conf,
            namenode_log_filter: self.namenode_log_filter,
            nn_ports,
            jn_ports,
            namenodes: vec![None, None],
            journalnodes: vec![None, None, None],
            datanodes: Vec::new(),
        };
        for i in 0..3 {
            cluster.start_journalnode(i);
        }
        cluster.run_namenode_step(0, "-format").ok();
        cluster.start_namenode(0);
        cluster.wait_active();
        cluster.run_namenode_step(1, "-bootstrapStandby").ok();
        cluster.start_namenode(1);
        for _ in 0..self.datanodes {
            cluster.add_datanode();
        }
        cluster.wait_live_datanodes(self.datanodes);
        cluster
    }
}

impl HaCluster {
    pub fn builder() -> HaBuilder {
        HaBuilder {
            datanodes: 3,
            extra: Vec::new(),
            namenode_log_filter: "info".to_string(),
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn conf_args(&self) -> Vec<String> {
        self.conf
            .iter()
            .flat_map(|kv| ["-D".to_string(), kv.clone()])
            .collect()
    }

    fn spawn(&self, name: &str, args: &[String]) -> Daemon {
        spawn_daemon(self.dir.path(), name, args, "info")
    }

    fn namenode_args(&self, index: usize) -> Vec<String> {
        let mut args = self.conf_args();
        args.extend([
            "-D".to_string(),
            format!(
                "namenode.name_dirs={}",
                self.path(&format!("nn{index}")).display()
            ),
            "-D".to_string(),
            format!("namenode.rpc_address=127.0.0.1:{}", self.nn_ports[index]),
            "-D".to_string(),
            format!("ha.namenode_id=nn{index}"),
        ]);
        args
    }

    /// Runs `rdfs namenode <step>` (-format, -bootstrapStandby, ...) for
    /// namenode `index`.
    pub fn run_namenode_step(&self, index: usize, step: &str) -> Run {
        let mut args = vec!["namenode".to_string(), step.to_string()];
        args.extend(self.namenode_args(index));
        let output = rdfs_command().args(&args).output().expect("namenode step");
        let run = Run::from(output);
        assert_eq!(run.code, 0, "namenode {step} failed: {}", run.stderr);
        run
    }

    pub fn start_namenode(&mut self, index: usize) {
        let args: Vec<String> = std::iter::once("namenode".to_string())
            .chain(self.namenode_args(index))
            .collect();
        let daemon = spawn_daemon(
            self.dir.path(),
            &format!("nn{index}"),
            &args,
            &self.namenode_log_filter,
        );
        self.namenodes[index] = Some(daemon);
        let port = self.nn_ports[index];
        wait_for(
            &format!("namenode nn{index} to listen"),
            Duration::from_secs(20),
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
    }

    pub fn kill_namenode(&mut self, index: usize) {
        if let Some(daemon) = self.namenodes[index].take() {
            daemon.kill();
        }
    }

    pub fn namenode(&self, index: usize) -> &Daemon {
        self.namenodes[index].as_ref().expect("namenode running")
    }

    pub fn namenode_log(&self, index: usize) -> String {
        std::fs::read_to_string(self.path(&format!("nn{index}.log"))).unwrap_or_default()
    }

    pub fn journal_dir(&self, index: usize) -> PathBuf {
        self.path(&format!("jn{index}"))
    }

    pub fn start_journalnode(&mut self, index: usize) {
        let mut args = vec!["journalnode".to_string()];
        args.extend(self.conf_args());
        args.extend([
            "-D".to_string(),
            format!(
                "journalnode.edits_dir={}",
                self.journal_dir(index).display()
            ),
            "-D".to_string(),
            format!("journalnode.rpc_address=127.0.0.1:{}", self.jn_ports[index]),
        ]);
        let daemon = self.spawn(&format!("jn{index}"), &args);
        self.journalnodes[index] = Some(daemon);
        let port = self.jn_ports[index];
        wait_for(
            &format!("journalnode jn{index} to listen"),
            Duration::from_secs(20),
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
    }

    pub fn kill_journalnode(&mut self, index: usize) {
        if let Some(daemon) = self.journalnodes[index].take() {
            daemon.kill();
        }
    }

    pub fn journalnode(&self, index: usize) -> &Daemon {
        self.journalnodes[index]
            .as_ref()
            .expect("journalnode running")
    }

    pub fn add_datanode(&mut self) -> usize {
        let index = self.datanodes.len();
        self.datanodes.push(None);
        self.start_datanode(index);
        index
    }

    /// Starts datanode `index` (again) on its data dirs.
    pub fn start_datanode(&mut self, index: usize) {
        let d = self.path(&format!("dn{index}"));
        let mut args = vec!["datanode".to_string()];
        args.extend(self.conf_args());
        args.extend([
            "-D".to_string(),
            format!(
                "datanode.data_dirs={},{}",
                d.join("data1").display(),
                d.join("data2").display()
            ),
            "-D".to_string(),
            "datanode.xfer_address=127.0.0.1:0".to_string(),
        ]);
        let daemon = self.spawn(&format!("dn{index}"), &args);
        self.datanodes[index] = Some(daemon);
    }

    pub fn kill_datanode(&mut self, index: usize) {
        if let Some(daemon) = self.datanodes[index].take() {
            daemon.kill();
        }
    }

    /// The finalized edit segments of journalnode `index`, by file name.
    pub fn finalized_segments(&self, index: usize) -> Vec<(String, Vec<u8>)> {
        let dir = self.journal_dir(index).join("ns").join("current");
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = e.file_name().to_str()?.to_string();
                        (name.starts_with("edits_") && !name.starts_with("edits_inprogress"))
                            .then(|| Some((name, std::fs::read(e.path()).ok()?)))?
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Runs `rdfs <command> <args>` against the nameservice.
    pub fn rdfs(&self, command: &str, args: &[&str]) -> Run {
        let output = rdfs_command()
            .arg(command)
            .args(self.conf_args())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn rdfs");
        Run::from(output)
    }

    pub fn dfs(&self, args: &[&str]) -> Run {
        self.rdfs("dfs", args)
    }

    pub fn haadmin(&self, args: &[&str]) -> Run {
        self.rdfs("haadmin", args)
    }

    /// `rdfs haadmin` as another user than the superuser.
    pub fn haadmin_as(&self, user: &str, args: &[&str]) -> Run {
        let output = rdfs_command()
            .arg("haadmin")
            .args(self.conf_args())
            .args(args)
            .env("HADOOP_USER_NAME", user)
            .stdin(Stdio::null())
            .output()
            .expect("spawn rdfs");
        Run::from(output)
    }

    /// `haadmin -getServiceState` of each namenode ("active", "standby", or
    /// the error when it cannot be reached).
    pub fn states(&self) -> Vec<String> {
        (0..self.nn_ports.len())
            .map(|i| {
                let run = self.haadmin(&["-getServiceState", &format!("nn{i}")]);
                if run.code == 0 {
                    run.stdout().trim().to_string()
                } else {
                    format!("unreachable: {}", run.stderr.trim())
                }
            })
            .collect()
    }

    /// Waits until exactly one namenode is active; its index.
    pub fn wait_active(&self) -> usize {
        wait_for("an active namenode", Duration::from_secs(30), || {
            let states = self.states();
            let active: Vec<usize> = states
                .iter()
                .enumerate()
                .filter(|(_, s)| *s == "active")
                .map(|(i, _)| i)
                .collect();
            (active.len() == 1).then(|| active[0])
        })
    }

    /// Waits until namenode `index` reports `state`.
    pub fn wait_state(&self, index: usize, state: &str, timeout: Duration) {
        wait_for(&format!("nn{index} to be {state}"), timeout, || {
            (self.states()[index] == state).then_some(())
        });
    }

    pub fn live_datanodes(&self) -> usize {
        let run = self.rdfs("dfsadmin", &["-report", "-live"]);
        run.stdout()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Live datanodes (")
                    .and_then(|r| r.strip_suffix("):"))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn wait_live_datanodes(&self, n: usize) {
        wait_for(
            &format!("{n} live datanodes"),
            Duration::from_secs(30),
            || (self.live_datanodes() >= n).then_some(()),
        );
    }

    /// A client of the nameservice, failing over between the namenodes.
    pub fn client(&self) -> DfsClient {
        let mut config = Config::default();
        config.client.socket_timeout_ms = 5_000;
        config.client.connect_timeout_ms = 2_000;
        config.client.failover_max_attempts = 60;
        let addrs: Vec<String> = self
            .nn_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let _context = self.runtime.enter();
        DfsClient::new_nameservice(&addrs, "tester", ClientSettings::from_config(&config))
            .expect("client")
    }

    pub fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
