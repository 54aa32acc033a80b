//! Hadoop's generic options, accepted by every command before its own
//! arguments: `-D key=value` (or `-Dkey=value`), `-fs URI`, `-conf FILE`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use rdfs_common::config::{Config, default_fs_authority, parse_override};

#[derive(Debug, Default)]
pub struct GenericOptions {
    pub conf: Option<PathBuf>,
    pub overrides: Vec<(String, String)>,
}

impl GenericOptions {
    /// Takes the generic options from the front of `args`, leaving the rest.
    pub fn parse(args: Vec<String>) -> Result<(Self, Vec<String>)> {
        let mut options = GenericOptions::default();
        let mut iter = args.into_iter().peekable();
        let mut rest = Vec::new();
        while let Some(arg) = iter.next() {
            match arg.as_str() {
                "-D" => {
                    let value = iter.next().context("-D needs key=value")?;
                    options.overrides.push(parse_override(&value)?);
                }
                "-fs" => {
                    let value = iter
                        .next()
                        .context("-fs needs a filesystem URI, e.g. hdfs://namenode:8020")?;
                    options.overrides.push(("fs.default_fs".into(), value));
                }
                "-conf" => {
                    let value = iter.next().context("-conf needs a configuration file")?;
                    options.conf = Some(PathBuf::from(value));
                }
                _ if arg.starts_with("-D") && arg.len() > 2 => {
                    options.overrides.push(parse_override(&arg[2..])?);
                }
                _ => {
                    rest.push(arg);
                    rest.extend(iter);
                    break;
                }
            }
        }
        Ok((options, rest))
    }

    /// Takes generic options from anywhere in `args` (daemons and admin
    /// tools, whose own options never clash with them).
    pub fn parse_anywhere(args: Vec<String>) -> Result<(Self, Vec<String>)> {
        let mut options = GenericOptions::default();
        let mut rest = Vec::new();
        let mut iter = args.into_iter();
        while let Some(arg) = iter.next() {
            if matches!(arg.as_str(), "-D" | "-fs" | "-conf")
                || (arg.starts_with("-D") && arg.len() > 2)
            {
                let mut pair = vec![arg.clone()];
                if !(arg.starts_with("-D") && arg.len() > 2) {
                    pair.push(
                        iter.next()
                            .with_context(|| format!("{arg} needs a value"))?,
                    );
                }
                let (parsed, leftover) = Self::parse(pair)?;
                debug_assert!(leftover.is_empty());
                options.conf = parsed.conf.or(options.conf);
                options.overrides.extend(parsed.overrides);
            } else {
                rest.push(arg);
            }
        }
        Ok((options, rest))
    }

    /// Loads the configuration: `-conf`, else `$RDFS_CONF`, else the
    /// defaults; then the `-D` overrides. Warnings go to the log.
    pub fn load(&self) -> Result<Config> {
        let file = self
            .conf
            .clone()
            .or_else(|| std::env::var_os("RDFS_CONF").map(PathBuf::from));
        if let Some(file) = &file
            && !file.exists()
        {
            bail!("configuration file {} not found", file.display());
        }
        let loaded = Config::load(file.as_deref(), &self.overrides)?;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        // Every connection this process makes or takes from here on.
        rdfs_common::tls::configure(&loaded.config.security)?;
        Ok(loaded.config)
    }
}

/// The user the client acts as: `client.user`, `$HADOOP_USER_NAME`, or the
/// login user, as Hadoop's simple authentication decides.
/// The `host:port` of the namenode that `fs.default_fs` names.
pub fn namenode_authority(config: &Config) -> Result<String> {
    default_fs_authority(&config.fs.default_fs).ok_or_else(|| {
        anyhow::anyhow!(
            "fs.default_fs = '{}' is not an hdfs://host:port URI",
            config.fs.default_fs
        )
    })
}

/// The namenodes `fs.default_fs` names: every namenode of the HA
/// nameservice it names, else the one at its `host:port`.
pub fn namenode_addresses(config: &Config) -> Result<Vec<String>> {
    let authority = namenode_authority(config)?;
    Ok(config
        .namenodes_for(&authority)?
        .into_iter()
        .map(|nn| nn.address)
        .collect())
}

/// The absolute path an operator's path argument names: the path part of
/// an `hdfs://host:port/...` URI, or a path relative to the user's home.
pub fn absolute_path(config: &Config, raw: &str) -> String {
    match raw.strip_prefix("hdfs://") {
        Some(rest) => rest
            .find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string()),
        None => rdfs_common::path::normalize(&format!("/user/{}", client_user(config)), raw),
    }
}

/// With `HADOOP_PROXY_USER` set, the client acts as that user, the user
/// it would otherwise be becoming the real user behind it (Hadoop's proxy
/// user, which the namenode's `hadoop.proxyuser.*` rules must allow).
pub fn client_user(config: &Config) -> String {
    proxied_user().unwrap_or_else(|| login_user(config))
}

/// The user a process is before any proxying: `client.user`,
/// `$HADOOP_USER_NAME`, the user a client certificate names (with TLS on),
/// or the login user. The namenode's superuser.
pub fn login_user(config: &Config) -> String {
    if !config.client.user.is_empty() {
        return config.client.user.clone();
    }
    std::env::var("HADOOP_USER_NAME")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            rdfs_common::tls::current()
                .filter(|tls| tls.identity.role == rdfs_common::tls::Role::Client)
                .map(|tls| tls.identity.name.clone())
        })
        .unwrap_or_else(rdfs_common::config::login_user)
}

fn proxied_user() -> Option<String> {
    std::env::var("HADOOP_PROXY_USER")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The client settings `config` describes, with the real user set when the
/// client acts for another user.
pub fn client_settings(config: &Config) -> rdfs_client::ClientSettings {
    let mut settings = rdfs_client::ClientSettings::from_config(config);
    if proxied_user().is_some() {
        settings.real_user = Some(login_user(config));
    }
    settings
}

/// A runtime for a command-line tool.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn generic_options_come_first() {
        let (options, rest) = GenericOptions::parse(args(&[
            "-D",
            "dfs.replication=2",
            "-Ddfs.blocksize=1m",
            "-fs",
            "hdfs://h:1",
            "-ls",
            "-D",
            "x",
        ]))
        .expect("parses");
        assert_eq!(rest, args(&["-ls", "-D", "x"]));
        assert_eq!(options.overrides.len(), 3);
        assert_eq!(
            options.overrides[2],
            ("fs.default_fs".to_string(), "hdfs://h:1".to_string())
        );
        assert!(GenericOptions::parse(args(&["-D"])).is_err());
    }
}
