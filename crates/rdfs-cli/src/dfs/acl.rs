//! `-getfacl [-R] <path>` and
//! `-setfacl [-R] [{-b|-k} {-m|-x <acl_spec>} <path>]|[--set <acl_spec> <path>]`,
//! printed and parsed as HDFS's `AclCommands`.

use std::io::Write;

use rdfs_common::acl::{self, AclEntry, AclScope};
use rdfs_proto as pb;

use super::modify::walk;
use super::shell::{CommandResult, Shell, UsageError};

pub async fn getfacl(shell: &mut Shell, mut args: Vec<String>) -> CommandResult {
    let recursive = args.first().is_some_and(|a| a == "-R");
    if recursive {
        args.remove(0);
    }
    if args.is_empty() {
        return Err(UsageError("<path> is missing".into()));
    }
    let mut out = std::io::stdout().lock();
    for item in shell.expand(&args).await {
        let Some(status) = shell.existing(&item).await else {
            continue;
        };
        for (path, _) in walk(shell, item, status, recursive).await {
            let Ok(client) = shell.client(&path.authority).map_err(|e| shell.fail(e)) else {
                continue;
            };
            match client.get_acl(&path.path).await {
                Ok(view) => {
                    let mut text = format!(
                        "# file: {}\n# owner: {}\n# group: {}\n",
                        path.display(),
                        view.owner,
                        view.group
                    );
                    if view.sticky {
                        let other_exec = view.permission & 1 != 0;
                        text.push_str(if other_exec {
                            "# flags: --t\n"
                        } else {
                            "# flags: --T\n"
                        });
                    }
                    for line in acl::getfacl_lines(&view.entries) {
                        text.push_str(&line);
                        text.push('\n');
                    }
                    text.push('\n');
                    let _ = out.write_all(text.as_bytes());
                }
                Err(err) => shell.fail(err),
            }
        }
    }
    let _ = out.flush();
    Ok(())
}

/// What `-setfacl` was asked to do.
#[derive(Debug, Clone, PartialEq)]
struct SetfaclArgs {
    recursive: bool,
    change: pb::AclChange,
    entries: Vec<AclEntry>,
    paths: Vec<String>,
}

fn parse_setfacl(args: Vec<String>) -> Result<SetfaclArgs, UsageError> {
    let mut recursive = false;
    let mut change = None;
    let mut entries = Vec::new();
    let mut rest = args.into_iter();
    let mut paths = Vec::new();
    let spec = |text: Option<String>, with_perm: bool| {
        let text = text.ok_or_else(|| UsageError("Missing ACL spec".into()))?;
        acl::parse_spec(&text, with_perm).map_err(|e| UsageError(e.0))
    };
    while let Some(arg) = rest.next() {
        let next = match arg.as_str() {
            "-R" => {
                recursive = true;
                continue;
            }
            "-b" => pb::AclChange::AclRemoveAll,
            "-k" => pb::AclChange::AclRemoveDefault,
            "-m" => {
                entries = spec(rest.next(), true)?;
                pb::AclChange::AclModify
            }
            "-x" => {
                entries = spec(rest.next(), false)?;
                pb::AclChange::AclRemoveEntries
            }
            "--set" => {
                entries = spec(rest.next(), true)?;
                pb::AclChange::AclSet
            }
            _ if arg.starts_with('-') && arg.len() > 1 => {
                return Err(UsageError(format!("Illegal option {arg}")));
            }
            _ => {
                paths.push(arg);
                continue;
            }
        };
        if change.replace(next).is_some() {
            return Err(UsageError(
                "Specified flags contains both remove and modify flags".into(),
            ));
        }
    }
    let change =
        change.ok_or_else(|| UsageError("One of -b, -k, -m, -x or --set is required".into()))?;
    if paths.is_empty() {
        return Err(UsageError("<path> is missing".into()));
    }
    if paths.len() > 1 {
        return Err(UsageError("Too many arguments".into()));
    }
    Ok(SetfaclArgs {
        recursive,
        change,
        entries,
        paths,
    })
}

pub async fn setfacl(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let request = parse_setfacl(args)?;
    for item in shell.expand(&request.paths).await {
        let Some(status) = shell.existing(&item).await else {
            continue;
        };
        for (path, status) in walk(shell, item, status, request.recursive).await {
            // Files cannot have a default ACL: a recursive change leaves
            // those entries to the directories, as HDFS does.
            let entries: Vec<AclEntry> = if status.is_dir() {
                request.entries.clone()
            } else {
                request
                    .entries
                    .iter()
                    .filter(|e| e.scope == AclScope::Access)
                    .cloned()
                    .collect()
            };
            let change = if !status.is_dir() && request.change == pb::AclChange::AclRemoveDefault {
                continue;
            } else {
                request.change
            };
            let Ok(client) = shell.client(&path.authority).map_err(|e| shell.fail(e)) else {
                continue;
            };
            if let Err(err) = client.change_acl(&path.path, change, &entries).await {
                shell.fail(err);
                if !request.recursive {
                    break;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn setfacl_arguments_parse_as_hdfs_takes_them() {
        let parsed = parse_setfacl(args(&["-R", "-m", "user:bob:r-x", "/d"])).expect("parse");
        assert!(parsed.recursive);
        assert_eq!(parsed.change, pb::AclChange::AclModify);
        assert_eq!(parsed.entries.len(), 1);
        let parsed = parse_setfacl(args(&["-x", "user:bob", "/d"])).expect("-x");
        assert_eq!(parsed.change, pb::AclChange::AclRemoveEntries);
        assert!(parse_setfacl(args(&["-b", "-m", "user:bob:rwx", "/d"])).is_err());
        assert!(parse_setfacl(args(&["-m", "user:bob:rwq", "/d"])).is_err());
        assert!(parse_setfacl(args(&["/d"])).is_err());
        assert_eq!(
            parse_setfacl(args(&["--set", "user::rwx,group::---,other::---", "/d"]))
                .expect("--set")
                .change,
            pb::AclChange::AclSet
        );
    }
}
