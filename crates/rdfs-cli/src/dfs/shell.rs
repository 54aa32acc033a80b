//! What every `dfs` command shares: clients per namenode, option parsing in
//! Hadoop's style, argument expansion (globs), and error reporting.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;

use rdfs_client::{ClientError, ClientSettings, DfsClient};
use rdfs_common::config::{Config, default_fs_authority};
use rdfs_common::protocol::FileStatus;

use super::path::{PathArg, is_glob};
use super::usage::{self, CommandSpec};

/// A usage error: printed with the command's dash, the usage block and the
/// command's usage line, exit 255.
#[derive(Debug)]
pub struct UsageError(pub String);

pub type CommandResult = Result<(), UsageError>;

pub struct Shell {
    settings: ClientSettings,
    /// For the namenodes of an HA nameservice a path names.
    config: Config,
    user: String,
    pub default_authority: String,
    pub cwd: String,
    clients: HashMap<String, DfsClient>,
    /// The command's name as typed, without its dash (`put`, `copyFromLocal`).
    pub name: String,
    errors: u32,
    /// The exit code when no error was printed (`-test` sets it).
    pub exit_code: u8,
}

/// Flags and positional arguments of a command.
pub struct Parsed {
    flags: HashSet<String>,
    pub args: Vec<String>,
}

impl Parsed {
    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(flag)
    }
}

/// Hadoop's `CommandFormat`: whole-word flags before the arguments, then
/// between `min` and `max` arguments.
pub fn parse_flags(
    args: Vec<String>,
    allowed: &[&str],
    min: usize,
    max: usize,
) -> Result<Parsed, UsageError> {
    let mut flags = HashSet::new();
    let mut rest = args.into_iter().peekable();
    while let Some(arg) = rest.peek() {
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        if arg == "--" {
            rest.next();
            break;
        }
        let name = &arg[1..];
        if !allowed.contains(&name) {
            return Err(UsageError(format!("Illegal option {arg}")));
        }
        flags.insert(name.to_string());
        rest.next();
    }
    let args: Vec<String> = rest.collect();
    if args.len() < min {
        return Err(UsageError(format!(
            "Not enough arguments: expected {min} but got {}",
            args.len()
        )));
    }
    if args.len() > max {
        return Err(UsageError(format!(
            "Too many arguments: expected {max} but got {}",
            args.len()
        )));
    }
    Ok(Parsed { flags, args })
}

/// The first line of an error, as the shell prints it.
pub fn first_line(err: &impl Display) -> String {
    err.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

impl Shell {
    pub fn new(config: Config, command: &str) -> Result<Self, String> {
        let default_authority = default_fs_authority(&config.fs.default_fs).ok_or_else(|| {
            format!(
                "fs.default_fs = '{}' is not an hdfs://host:port URI",
                config.fs.default_fs
            )
        })?;
        let user = crate::generic::client_user(&config);
        Ok(Self {
            settings: crate::generic::client_settings(&config),
            config: config.clone(),
            cwd: format!("/user/{user}"),
            user,
            default_authority,
            clients: HashMap::new(),
            name: command.trim_start_matches('-').to_string(),
            errors: 0,
            exit_code: 0,
        })
    }

    pub async fn run(&mut self, spec: &CommandSpec, args: Vec<String>) -> u8 {
        use super::{acl, copy, ls, misc, modify};
        let result = match spec.name {
            "-ls" => ls::ls(self, args).await,
            "-mkdir" => modify::mkdir(self, args).await,
            "-put" | "-copyFromLocal" => copy::put(self, args).await,
            "-get" | "-copyToLocal" => copy::get(self, args).await,
            "-cp" => copy::cp(self, args).await,
            "-mv" => modify::mv(self, args).await,
            "-cat" => misc::cat(self, args).await,
            "-tail" => misc::tail(self, args).await,
            "-rm" => modify::rm(self, args).await,
            "-expunge" => modify::expunge(self, args).await,
            "-rmdir" => modify::rmdir(self, args).await,
            "-stat" => ls::stat(self, args).await,
            "-du" => ls::du(self, args).await,
            "-count" => ls::count(self, args).await,
            "-test" => misc::test(self, args).await,
            "-touchz" => modify::touchz(self, args).await,
            "-chmod" => modify::chmod(self, args).await,
            "-getfacl" => acl::getfacl(self, args).await,
            "-setfacl" => acl::setfacl(self, args).await,
            "-chown" => modify::chown(self, args, false).await,
            "-chgrp" => modify::chown(self, args, true).await,
            "-setrep" => modify::setrep(self, args).await,
            "-truncate" => modify::truncate(self, args).await,
            "-appendToFile" => copy::append_to_file(self, args).await,
            "-help" | "-usage" => misc::help(args),
            other => Err(UsageError(format!("{other}: Unknown command"))),
        };
        match result {
            Ok(()) if self.errors > 0 => 1,
            Ok(()) => self.exit_code,
            Err(UsageError(message)) => {
                eprintln!("{}: {message}", spec.name);
                eprint!("{}", usage::full());
                eprintln!("{}", usage::instance(spec));
                255
            }
        }
    }

    /// Reports a failure for one path: `<cmd>: <message>`.
    pub fn fail(&mut self, message: impl Display) {
        self.errors += 1;
        eprintln!("{}: {}", self.name, first_line(&message));
    }

    /// `<cmd>: `path': <what>`, Hadoop's PathIOException text.
    pub fn fail_path(&mut self, path: &str, what: &str) {
        self.fail(format!("`{path}': {what}"));
    }

    pub fn not_found(&mut self, path: &PathArg) {
        self.fail_path(&path.typed, "No such file or directory");
    }

    pub fn client(&mut self, authority: &str) -> Result<DfsClient, ClientError> {
        if let Some(client) = self.clients.get(authority) {
            return Ok(client.clone());
        }
        let namenodes: Vec<String> = self
            .config
            .namenodes_for(authority)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?
            .into_iter()
            .map(|nn| nn.address)
            .collect();
        let client = DfsClient::new_nameservice(&namenodes, &self.user, self.settings.clone())?;
        self.clients.insert(authority.to_string(), client.clone());
        Ok(client)
    }

    /// This client's own trash interval, used when the namenode sets none.
    pub fn trash_interval(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.config.fs.trash_interval_minutes * 60.0)
            .unwrap_or_default()
    }

    pub fn parse_path(&self, arg: &str) -> Result<PathArg, String> {
        PathArg::parse(arg, &self.default_authority, &self.cwd)
    }

    /// The status of a path; errors are reported and give `Err(())`.
    pub async fn stat(&mut self, path: &PathArg) -> Result<Option<FileStatus>, ()> {
        let client = self.client(&path.authority).map_err(|e| self.fail(e))?;
        client
            .get_file_info(&path.path)
            .await
            .map_err(|e| self.fail(e))
    }

    /// The status of a path that must exist; a missing one is reported with
    /// Hadoop's "No such file or directory".
    pub async fn existing(&mut self, path: &PathArg) -> Option<FileStatus> {
        match self.stat(path).await {
            Ok(Some(status)) => Some(status),
            Ok(None) => {
                self.not_found(path);
                None
            }
            Err(()) => None,
        }
    }

    /// Parses every argument and expands globs, reporting patterns that
    /// match nothing and arguments that cannot be parsed first, as Hadoop
    /// does. Missing plain paths are kept: the command reports them.
    pub async fn expand(&mut self, args: &[String]) -> Vec<PathArg> {
        self.expand_reporting(args, true).await
    }

    /// As [`Shell::expand`], but patterns matching nothing are dropped
    /// silently (`-rm -f`).
    pub async fn expand_quietly(&mut self, args: &[String]) -> Vec<PathArg> {
        self.expand_reporting(args, false).await
    }

    async fn expand_reporting(&mut self, args: &[String], report_missing: bool) -> Vec<PathArg> {
        let mut out = Vec::new();
        for arg in args {
            let parsed = match self.parse_path(arg) {
                Ok(parsed) => parsed,
                Err(err) => {
                    self.fail(err);
                    continue;
                }
            };
            if !is_glob(&parsed.path) {
                out.push(parsed);
                continue;
            }
            match self.glob(&parsed).await {
                Ok(matches) if matches.is_empty() => {
                    if report_missing {
                        self.fail_path(arg, "No such file or directory");
                    }
                }
                Ok(matches) => out.extend(matches),
                Err(err) => self.fail(err),
            }
        }
        out
    }

    async fn glob(&mut self, pattern: &PathArg) -> Result<Vec<PathArg>, String> {
        let client = self.client(&pattern.authority).map_err(|e| e.to_string())?;
        let components: Vec<&str> = pattern.path.split('/').filter(|c| !c.is_empty()).collect();
        let mut current = vec!["/".to_string()];
        for (index, component) in components.iter().enumerate() {
            let last = index + 1 == components.len();
            let mut next = Vec::new();
            if !is_glob(component) {
                for dir in &current {
                    next.push(rdfs_common::path::child(dir, component));
                }
            } else {
                let matcher = globset::GlobBuilder::new(component)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| format!("Illegal file pattern: {e}"))?
                    .compile_matcher();
                for dir in &current {
                    let Some(entries) = client.list(dir).await.map_err(|e| e.to_string())? else {
                        continue;
                    };
                    for entry in entries {
                        if !last && !entry.is_dir() {
                            continue;
                        }
                        let name = String::from_utf8_lossy(&entry.name).into_owned();
                        if !name.is_empty() && matcher.is_match(&name) {
                            next.push(rdfs_common::path::child(dir, &name));
                        }
                    }
                }
            }
            current = next;
        }
        let mut matches = Vec::new();
        for path in current {
            if client
                .get_file_info(&path)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                matches.push(pattern.with_path(path));
            }
        }
        matches.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(matches)
    }
}
