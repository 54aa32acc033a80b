//! A multi-process mini-cluster: the real `rdfs` binary started as a
//! namenode and datanodes on 127.0.0.1 with ephemeral ports and temporary
//! directories, killed when dropped.

#![allow(dead_code)]

pub mod ha;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdfs_client::{ClientSettings, DfsClient};
use rdfs_common::config::Config;
use rdfs_proto as pb;

/// The binary under test.
pub fn rdfs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rdfs"))
}

/// The user a test cluster's daemons and commands run as, which makes it
/// the cluster's superuser (the user the namenode runs as); tests of
/// permissions run commands as other users with [`MiniCluster::dfs_as`].
pub const SUPERUSER: &str = "tester";

/// `rdfs`, run as [`SUPERUSER`].
pub fn rdfs_command() -> Command {
    let mut command = Command::new(rdfs_bin());
    command.env("HADOOP_USER_NAME", SUPERUSER);
    command
}

/// A running daemon process; SIGKILLed and reaped when dropped.
pub struct Daemon {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// SIGKILL, then wait for the process to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The result of running a command.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code,
            0,
            "command failed\nstdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr
        );
        self
    }
}

pub struct Builder {
    datanodes: usize,
    block_size: u64,
    replication: u32,
    extra: Vec<String>,
    name_dirs: Option<Vec<PathBuf>>,
    conf_file: Option<String>,
    tls: bool,
}

impl Builder {
    pub fn datanodes(mut self, n: usize) -> Self {
        self.datanodes = n;
        self
    }

    pub fn block_size(mut self, bytes: u64) -> Self {
        self.block_size = bytes;
        self
    }

    pub fn replication(mut self, n: u32) -> Self {
        self.replication = n;
        self
    }

    /// The namenode's name directories (default: one in the cluster's temp dir).
    pub fn name_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.name_dirs = Some(dirs);
        self
    }

    /// Another `-D key=value` for every process.
    pub fn conf(mut self, key: &str, value: &str) -> Self {
        self.extra.push(format!("{key}={value}"));
        self
    }

    /// A TOML configuration file every process reads (`-conf`, under the
    /// `-D` settings), at [`MiniCluster::conf_file`]: what a test rewrites
    /// to see a daemon reload it.
    pub fn conf_file(mut self, toml: &str) -> Self {
        self.conf_file = Some(toml.to_string());
        self
    }

    /// Mutual TLS everywhere: a CA in the cluster's dir, a certificate for
    /// the namenode (`nn`), one the datanodes share (`dn`), and the
    /// superuser's client certificate, which every command uses.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    pub fn start(self) -> MiniCluster {
        let dir = tempfile::Builder::new()
            .prefix("rdfs-mini-")
            .tempdir()
            .expect("temp dir");
        let mut conf = vec![
            format!("dfs.block_size={}", self.block_size),
            format!("dfs.replication={}", self.replication),
            "dfs.heartbeat_interval_ms=300".to_string(),
            "namenode.stale_interval_ms=3000".to_string(),
            "namenode.dead_interval_ms=6000".to_string(),
            "namenode.safemode_extension_ms=0".to_string(),
            "client.socket_timeout_ms=10000".to_string(),
            "client.connect_timeout_ms=3000".to_string(),
            "datanode.socket_timeout_ms=10000".to_string(),
            // Tests share one disk; durability of every replica is not what they check.
            "datanode.sync_on_close=false".to_string(),
            // Every test runs with block tokens, so each block operation
            // (reads, pipelines, recovery, re-replication) proves it
            // carries a valid one. HDFS's default is off.
            "security.block_access_token_enable=true".to_string(),
        ];
        conf.extend(self.extra);
        let name_dirs = self
            .name_dirs
            .unwrap_or_else(|| vec![dir.path().join("namenode")]);
        let tls_dir = self.tls.then(|| {
            let ca = dir.path().join("ca");
            let ca_arg = ca.display().to_string();
            run_ok(&["ca", "init", "-dir", &ca_arg]);
            for (role, name) in [
                ("namenode", "nn"),
                ("datanode", "dn"),
                ("client", SUPERUSER),
            ] {
                run_ok(&["ca", "issue", "-dir", &ca_arg, "-role", role, "-name", name]);
            }
            conf.extend([
                "security.tls_enabled=true".to_string(),
                format!("security.tls_ca_file={}", ca.join("ca.pem").display()),
                format!(
                    "security.tls_cert_file={}",
                    ca.join(format!("{SUPERUSER}.pem")).display()
                ),
                format!(
                    "security.tls_key_file={}",
                    ca.join(format!("{SUPERUSER}-key.pem")).display()
                ),
            ]);
            ca
        });
        let conf_file = self.conf_file.map(|text| {
            let path = dir.path().join("rdfs.toml");
            std::fs::write(&path, text).expect("write the configuration file");
            path
        });
        let mut cluster = MiniCluster {
            tls_dir,
            conf_file,
            name_dirs,
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime"),
            dir,
            conf,
            namenode: None,
            nn_addr: String::new(),
            datanodes: Vec::new(),
        };
        cluster.format_namenode();
        cluster.start_namenode();
        for _ in 0..self.datanodes {
            cluster.add_datanode();
        }
        cluster.wait_live_datanodes(self.datanodes);
        cluster
    }
}

pub struct MiniCluster {
    pub name_dirs: Vec<PathBuf>,
    runtime: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    conf: Vec<String>,
    /// The `-conf` file every process reads, when the test gave one.
    pub conf_file: Option<PathBuf>,
    /// The CA and certificates of a cluster over mutual TLS.
    pub tls_dir: Option<PathBuf>,
    pub namenode: Option<Daemon>,
    pub nn_addr: String,
    pub datanodes: Vec<Option<Daemon>>,
}

fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl MiniCluster {
    pub fn builder() -> Builder {
        Builder {
            datanodes: 3,
            block_size: 1024 * 1024,
            replication: 3,
            extra: Vec::new(),
            name_dirs: None,
            conf_file: None,
            tls: false,
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The first name directory (where the address file is written).
    pub fn name_dir(&self) -> PathBuf {
        self.name_dirs[0].clone()
    }

    fn name_dirs_arg(&self) -> String {
        let dirs: Vec<String> = self
            .name_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        format!("namenode.name_dirs={}", dirs.join(","))
    }

    pub fn data_dirs(&self, index: usize) -> Vec<PathBuf> {
        vec![
            self.path(&format!("datanode{index}/data1")),
            self.path(&format!("datanode{index}/data2")),
        ]
    }

    /// `-D` settings for a process to present certificate `name` (from
    /// [`Self::tls_dir`]); none without TLS.
    pub fn cert_args(&self, name: &str) -> Vec<String> {
        let Some(dir) = &self.tls_dir else {
            return Vec::new();
        };
        vec![
            "-D".to_string(),
            format!(
                "security.tls_cert_file={}",
                dir.join(format!("{name}.pem")).display()
            ),
            "-D".to_string(),
            format!(
                "security.tls_key_file={}",
                dir.join(format!("{name}-key.pem")).display()
            ),
        ]
    }

    fn conf_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(file) = &self.conf_file {
            args.push("-conf".to_string());
            args.push(file.display().to_string());
        }
        for kv in &self.conf {
            args.push("-D".to_string());
            args.push(kv.clone());
        }
        if !self.nn_addr.is_empty() {
            args.push("-D".to_string());
            args.push(format!("fs.default_fs=hdfs://{}", self.nn_addr));
        }
        args
    }

    fn spawn(&self, name: &str, args: &[String]) -> Daemon {
        spawn_daemon(self.dir.path(), name, args, "info")
    }

    fn format_namenode(&self) {
        let mut args = vec!["namenode".to_string(), "-format".to_string()];
        args.extend(self.conf_args());
        args.extend(self.cert_args("nn"));
        args.extend(["-D".to_string(), self.name_dirs_arg()]);
        args.extend([
            "-D".to_string(),
            "namenode.rpc_address=127.0.0.1:0".to_string(),
        ]);
        let output = rdfs_command().args(&args).output().expect("format");
        assert!(
            output.status.success(),
            "format failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn start_namenode(&mut self) {
        let address_file = self.name_dir().join("namenode.addresses");
        let _ = std::fs::remove_file(&address_file);
        // Reuse the port of an earlier run so datanodes find the namenode again.
        let rpc = if self.nn_addr.is_empty() {
            "127.0.0.1:0".to_string()
        } else {
            self.nn_addr.clone()
        };
        let mut args = vec!["namenode".to_string()];
        args.extend(self.conf_args());
        args.extend(self.cert_args("nn"));
        args.extend(["-D".to_string(), self.name_dirs_arg()]);
        args.extend(["-D".to_string(), format!("namenode.rpc_address={rpc}")]);
        let daemon = self.spawn("namenode", &args);
        let addr = wait_for(
            "the namenode's address file",
            Duration::from_secs(20),
            || {
                std::fs::read_to_string(&address_file)
                    .ok()
                    .and_then(|text| {
                        text.lines()
                            .find_map(|l| l.strip_prefix("rpc=").map(str::to_string))
                    })
            },
        );
        self.nn_addr = addr;
        self.namenode = Some(daemon);
    }

    /// SIGKILLs the namenode.
    pub fn stop_namenode(&mut self) {
        if let Some(namenode) = self.namenode.take() {
            namenode.kill();
        }
    }

    /// SIGTERMs the namenode and waits for it to exit; its exit code.
    pub fn stop_namenode_gracefully(&mut self) -> Option<i32> {
        let mut namenode = self.namenode.take()?;
        namenode.signal(libc::SIGTERM);
        namenode.wait_exit(Duration::from_secs(30))
    }

    /// Everything the namenode processes of this cluster have logged.
    pub fn namenode_log(&self) -> String {
        std::fs::read_to_string(self.path("namenode.log")).unwrap_or_default()
    }

    /// Starts the namenode without waiting for it (for tests that expect it
    /// to fail).
    pub fn spawn_namenode(&self) -> Daemon {
        let mut args = vec!["namenode".to_string()];
        args.extend(self.conf_args());
        args.extend(self.cert_args("nn"));
        args.extend(["-D".to_string(), self.name_dirs_arg()]);
        args.extend([
            "-D".to_string(),
            "namenode.rpc_address=127.0.0.1:0".to_string(),
        ]);
        self.spawn("namenode", &args)
    }

    /// Starts one more datanode; returns its index.
    pub fn add_datanode(&mut self) -> usize {
        let index = self.datanodes.len();
        self.datanodes.push(None);
        self.start_datanode(index);
        index
    }

    pub fn start_datanode(&mut self, index: usize) {
        let daemon = self.spawn_datanode(index);
        self.datanodes[index] = Some(daemon);
    }

    /// Starts datanode `index` without waiting for it (for tests that
    /// expect it to fail).
    pub fn spawn_datanode(&self, index: usize) -> Daemon {
        self.spawn_datanode_with(index, &self.cert_args("dn"))
    }

    /// Starts datanode `index` with extra arguments last (another
    /// certificate, TLS off), without waiting for it.
    pub fn spawn_datanode_with(&self, index: usize, extra: &[String]) -> Daemon {
        let dirs: Vec<String> = self
            .data_dirs(index)
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        let mut args = vec!["datanode".to_string()];
        args.extend(self.conf_args());
        args.extend([
            "-D".to_string(),
            format!("datanode.data_dirs={}", dirs.join(",")),
        ]);
        args.extend([
            "-D".to_string(),
            "datanode.xfer_address=127.0.0.1:0".to_string(),
        ]);
        args.extend(extra.iter().cloned());
        self.spawn(&format!("datanode{index}"), &args)
    }

    /// SIGKILLs a datanode.
    pub fn kill_datanode(&mut self, index: usize) {
        if let Some(daemon) = self.datanodes[index].take() {
            daemon.kill();
        }
    }

    /// The `ip:port` datanode `index` serves transfers on (from the address
    /// file it writes at start-up).
    pub fn datanode_addr(&self, index: usize) -> String {
        let file = self.data_dirs(index)[0].join("datanode.addresses");
        wait_for(
            "the datanode's address file",
            Duration::from_secs(20),
            || {
                std::fs::read_to_string(&file).ok().and_then(|text| {
                    text.lines()
                        .find_map(|l| l.strip_prefix("xfer=").map(str::to_string))
                })
            },
        )
    }

    /// Where the replicas of every block of `path` are: for each block, the
    /// datanode indexes holding its replica files on disk.
    pub fn replica_holders(&self, path: &str) -> Vec<Vec<usize>> {
        self.block_ids(path)
            .into_iter()
            .map(|id| {
                let mut holders: Vec<usize> = self
                    .replica_files(id)
                    .into_iter()
                    .map(|(dn, _, _)| dn)
                    .collect();
                holders.sort_unstable();
                holders
            })
            .collect()
    }

    /// `rdfs fsck <path> -files -blocks -locations` when every block has
    /// `replicas` live replicas and the verdict is HEALTHY.
    pub fn fsck_all_blocks_have(&self, path: &str, replicas: u32) -> Option<String> {
        let run = self.rdfs("fsck", &[path, "-files", "-blocks", "-locations"]);
        let text = run.stdout();
        let blocks: Vec<&str> = text.lines().filter(|l| l.contains(" len=")).collect();
        let healthy = text.contains("is HEALTHY")
            && !blocks.is_empty()
            && blocks
                .iter()
                .all(|l| l.contains(&format!(" Live_repl={replicas} ")))
            && text.contains("Under-replicated blocks:\t0")
            && text.contains("Over-replicated blocks:\t0")
            && text.contains("Mis-replicated blocks:\t\t0");
        healthy.then_some(text)
    }

    pub fn datanode(&self, index: usize) -> &Daemon {
        self.datanodes[index].as_ref().expect("datanode running")
    }

    pub fn client(&self) -> DfsClient {
        let mut config = Config::default();
        config.client.socket_timeout_ms = 10_000;
        config.client.connect_timeout_ms = 3_000;
        let _context = self.runtime.enter();
        DfsClient::new(
            &self.nn_addr,
            "tester",
            ClientSettings::from_config(&config),
        )
        .expect("client")
    }

    pub fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    pub fn live_datanodes(&self) -> usize {
        if self.tls_dir.is_some() {
            // The test process has no TLS of its own: ask through `rdfs`.
            let run = self.rdfs("dfsadmin", &["-report", "-live"]);
            return run
                .stdout()
                .lines()
                .find_map(|line| {
                    line.strip_prefix("Live datanodes (")
                        .and_then(|rest| rest.split(')').next())
                        .and_then(|n| n.parse().ok())
                })
                .unwrap_or(0);
        }
        let client = self.client();
        self.block_on(client.datanode_report(pb::DatanodeReportType::DatanodeReportLive))
            .map(|d| d.len())
            .unwrap_or(0)
    }

    pub fn wait_live_datanodes(&self, n: usize) {
        wait_for(
            &format!("{n} live datanodes"),
            Duration::from_secs(30),
            || (self.live_datanodes() == n).then_some(()),
        );
    }

    /// Runs `rdfs <args>` against this cluster (generic options after the
    /// command name, as Hadoop expects them).
    pub fn rdfs(&self, command: &str, args: &[&str]) -> Run {
        self.rdfs_with_stdin(command, args, None)
    }

    pub fn rdfs_with_stdin(&self, command: &str, args: &[&str], stdin: Option<&[u8]>) -> Run {
        self.rdfs_env(command, args, stdin, &[])
    }

    /// `rdfs dfs` as another user than the superuser.
    pub fn dfs_as(&self, user: &str, args: &[&str]) -> Run {
        self.rdfs_env("dfs", args, None, &[("HADOOP_USER_NAME", user)])
    }

    /// `rdfs <command>` with extra environment (another user, a proxy).
    pub fn rdfs_env(
        &self,
        command: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> Run {
        let mut cmd = rdfs_command();
        cmd.arg(command)
            .args(self.conf_args())
            .args(args)
            .envs(env.iter().copied());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rdfs");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input).expect("write stdin");
        }
        Run::from(child.wait_with_output().expect("rdfs output"))
    }

    pub fn dfs(&self, args: &[&str]) -> Run {
        self.rdfs("dfs", args)
    }

    /// Starts `rdfs <command> <args>` in the background with its stdin
    /// piped (for a writer the test feeds, kills or pauses).
    pub fn spawn_rdfs(&self, command: &str, args: &[&str]) -> Child {
        rdfs_command()
            .arg(command)
            .args(self.conf_args())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rdfs")
    }

    /// Replicas being written: (datanode index, block file, its length).
    pub fn rbw_replicas(&self) -> Vec<(usize, PathBuf, u64)> {
        let mut found = Vec::new();
        for index in 0..self.datanodes.len() {
            for dir in self.data_dirs(index) {
                for path in walk(&dir) {
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    let in_rbw = path
                        .parent()
                        .and_then(|p| p.file_name())
                        .is_some_and(|n| n == "rbw");
                    if in_rbw && name.starts_with("blk_") && !name.ends_with(".meta") {
                        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                        found.push((index, path, len));
                    }
                }
            }
        }
        found
    }

    /// Every replica file of `block_id` on disk: (datanode index, block
    /// file, meta file).
    pub fn replica_files(&self, block_id: i64) -> Vec<(usize, PathBuf, PathBuf)> {
        let mut found = Vec::new();
        for index in 0..self.datanodes.len() {
            for dir in self.data_dirs(index) {
                for path in walk(&dir) {
                    if path.file_name().and_then(|n| n.to_str()) == Some(&format!("blk_{block_id}"))
                        && path.to_string_lossy().contains("finalized")
                    {
                        let meta = std::fs::read_dir(path.parent().expect("parent"))
                            .expect("dir")
                            .filter_map(Result::ok)
                            .map(|e| e.path())
                            .find(|p| {
                                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                                name.starts_with(&format!("blk_{block_id}_"))
                                    && name.ends_with(".meta")
                            })
                            .expect("meta file");
                        found.push((index, path.clone(), meta));
                    }
                }
            }
        }
        found
    }

    /// The block ids of a file, in order.
    pub fn block_ids(&self, path: &str) -> Vec<i64> {
        let client = self.client();
        let located = self
            .block_on(client.get_block_locations(path, 0, u64::MAX))
            .expect("locations");
        located.blocks.iter().map(|b| b.block.block_id).collect()
    }

    /// The figure of one line of `dfsadmin -report` (e.g. "Blocks with corrupt replicas").
    pub fn report_value(&self, label: &str) -> u64 {
        let run = self.rdfs("dfsadmin", &["-report"]);
        run.stdout()
            .lines()
            .find_map(|line| {
                line.trim()
                    .strip_prefix(&format!("{label}: "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no '{label}' in dfsadmin -report:\n{}", run.stdout()))
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
        wait_for(what, timeout, || condition().then_some(()));
    }
}

/// Starts `rdfs <args>` as daemon `name`, logging to `<dir>/<name>.log`.
/// Starts `rdfs <args>` logging into `<dir>/<name>.log` at `log_filter`
/// (an `RDFS_LOG` value).
pub fn spawn_daemon(dir: &Path, name: &str, args: &[String], log_filter: &str) -> Daemon {
    let log = dir.join(format!("{name}.log"));
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log file");
    let child = rdfs_command()
        .args(args)
        .env("RDFS_LOG", log_filter)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("spawn rdfs");
    Daemon {
        name: name.to_string(),
        child,
        log,
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// What a process holds, read from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcUsage {
    pub fds: usize,
    /// TCP connections (IPv4 and IPv6) its descriptors refer to, listening
    /// sockets excluded.
    pub tcp: usize,
    pub close_wait: usize,
    pub rss_kb: u64,
    pub threads: u64,
}

/// The descriptors, TCP connections, memory and threads of `pid`.
pub fn proc_usage(pid: i32) -> ProcUsage {
    let mut socket_inodes = std::collections::HashSet::new();
    let mut fds = 0;
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in entries.filter_map(Result::ok) {
            fds += 1;
            if let Ok(target) = std::fs::read_link(entry.path()) {
                let target = target.to_string_lossy().into_owned();
                if let Some(inode) = target
                    .strip_prefix("socket:[")
                    .and_then(|t| t.strip_suffix(']'))
                {
                    socket_inodes.insert(inode.to_string());
                }
            }
        }
    }
    let (mut tcp, mut close_wait) = (0, 0);
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if fields.len() < 10 || !socket_inodes.contains(fields[9]) {
                continue;
            }
            match fields[3] {
                "0A" => {}
                "08" => {
                    tcp += 1;
                    close_wait += 1;
                }
                _ => tcp += 1,
            }
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    ProcUsage {
        fds,
        tcp,
        close_wait,
        rss_kb: field("VmRSS:"),
        threads: field("Threads:"),
    }
}

/// Deterministic pseudo-random bytes, so failures are reproducible.
/// Everything `path` holds, read through `client`.
pub async fn read_file(client: &rdfs_client::DfsClient, path: &str) -> Result<Vec<u8>, String> {
    let mut input = client.open(path).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(chunk) = input.read_chunk().await.map_err(|e| e.to_string())? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A small deterministic generator for schedules and workloads: a seed
/// replays a run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform enough in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A number from the environment (a longer or other randomized run), or
/// the default CI runs.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Insists `run` failed and said `message` on stderr.
#[track_caller]
pub fn refused(run: &Run, message: &str) {
    assert_ne!(run.code, 0, "expected a refusal, got success: {run:?}");
    assert!(
        run.stderr.contains(message),
        "expected {message:?} in stderr: {}",
        run.stderr
    );
}

/// Runs `rdfs <args>` and insists it succeeds.
pub fn run_ok(args: &[&str]) -> Run {
    let run = Run::from(rdfs_command().args(args).output().expect("run rdfs"));
    run.ok();
    run
}

pub fn write_local(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write local file");
    path
}

/// A tmpfs of `size`, unmounted when dropped.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(path: std::path::PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs to fill a disk; it needs root (CAP_SYS_ADMIN)"
        );
        Tmpfs(path)
    }

    /// Fills the filesystem to the last byte.
    pub fn fill(&self) {
        let mut file = std::fs::File::create(self.0.join("filler")).expect("filler");
        let chunk = vec![0xffu8; 64 * 1024];
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
        let _ = std::io::Write::write_all(&mut file, &chunk[..1]);
        while let Ok(1) = std::io::Write::write(&mut file, &[0]) {}
    }

    pub fn free(&self) {
        let _ = std::fs::remove_file(self.0.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
