//! Commands that change the namespace: `-mkdir`, `-mv`, `-rm`, `-rmdir`,
//! `-touchz`, `-chmod`, `-chown`, `-chgrp`, `-setrep`, `-truncate`.

use std::io::Write;

use rdfs_client::CreateOptions;
use rdfs_common::protocol::FileStatus;

use super::copy::{into_itself, remote_destination, remote_target};
use super::path::PathArg;
use super::shell::{CommandResult, Shell, UsageError, parse_flags};

pub async fn mkdir(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &["p"], 1, usize::MAX)?;
    let parents = parsed.has("p");
    for item in shell.expand(&parsed.args).await {
        let Ok(status) = shell.stat(&item).await else {
            continue;
        };
        match status {
            Some(s) if s.is_dir() => {
                if !parents {
                    shell.fail_path(&item.typed, "File exists");
                }
                continue;
            }
            Some(_) => {
                shell.fail_path(&item.typed, "Is not a directory");
                continue;
            }
            None => {}
        }
        if !parents && item.path != "/" {
            let parent = item.parent();
            match shell.stat(&parent).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    shell.fail_path(&parent.qualified(), "No such file or directory");
                    continue;
                }
                Err(()) => continue,
            }
        }
        let Ok(client) = shell.client(&item.authority).map_err(|e| shell.fail(e)) else {
            continue;
        };
        match client.mkdirs(&item.path, 0o777, parents).await {
            Ok(true) => {}
            Ok(false) => shell.fail_path(&item.typed, "Input/output error"),
            Err(err) => shell.fail(err),
        }
    }
    Ok(())
}

pub async fn mv(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let mut parsed = parse_flags(args, &[], 2, usize::MAX)?;
    let dst = parsed.args.pop().unwrap_or_default();
    let sources = shell.expand(&parsed.args).await;
    if sources.is_empty() {
        return Ok(());
    }
    let Some((dst, dst_status)) = remote_destination(shell, &dst, sources.len()).await else {
        return Ok(());
    };
    for source in sources {
        let Some(status) = shell.existing(&source).await else {
            continue;
        };
        if source.authority != dst.authority {
            shell.fail_path(&source.display(), "Does not match target filesystem");
            continue;
        }
        let target = remote_target(&dst, dst_status.as_ref(), source.name());
        if status.is_dir() && into_itself(shell, &source, &target) {
            continue;
        }
        if target.path != source.path {
            match shell.stat(&target).await {
                Ok(Some(_)) => {
                    shell.fail_path(&target.display(), "File exists");
                    continue;
                }
                Ok(None) => {}
                Err(()) => continue,
            }
        }
        let Ok(client) = shell.client(&source.authority).map_err(|e| shell.fail(e)) else {
            continue;
        };
        match client.rename(&source.path, &target.path).await {
            Ok(true) => {}
            Ok(false) => shell.fail_path(&source.display(), "Input/output error"),
            Err(err) => shell.fail(err),
        }
    }
    Ok(())
}

pub async fn rm(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &["f", "r", "R", "skipTrash", "safely"], 1, usize::MAX)?;
    let force = parsed.has("f");
    let recursive = parsed.has("r") || parsed.has("R");
    let skip_trash = parsed.has("skipTrash");
    let items = if force {
        shell.expand_quietly(&parsed.args).await
    } else {
        shell.expand(&parsed.args).await
    };
    let mut out = std::io::stdout().lock();
    for item in items {
        let Ok(status) = shell.stat(&item).await else {
            continue;
        };
        let Some(status) = status else {
            if !force {
                shell.not_found(&item);
            }
            continue;
        };
        if status.is_dir() && !recursive {
            shell.fail_path(&item.display(), "Is a directory");
            continue;
        }
        let Ok(client) = shell.client(&item.authority).map_err(|e| shell.fail(e)) else {
            continue;
        };
        if !skip_trash {
            match trash(shell, &client, &item).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => {
                    shell.fail(err);
                    continue;
                }
            }
        }
        match client.delete(&item.path, recursive).await {
            Ok(true) => {
                let _ = writeln!(out, "Deleted {}", item.display());
            }
            Ok(false) => shell.fail_path(&item.display(), "Input/output error"),
            Err(err) => shell.fail(err),
        }
    }
    let _ = out.flush();
    Ok(())
}

/// Moves `item` into the user's trash when the trash is on; whether it
/// did (a path already in the trash is deleted outright, as in HDFS).
async fn trash(
    shell: &Shell,
    client: &rdfs_client::DfsClient,
    item: &super::path::PathArg,
) -> Result<bool, rdfs_client::ClientError> {
    if client
        .trash_interval(shell.trash_interval())
        .await?
        .is_zero()
    {
        return Ok(false);
    }
    let Some(target) = client.move_to_trash(&item.path).await? else {
        return Ok(false);
    };
    // HDFS logs this line; it goes to stderr so stdout stays the listing
    // of deletions scripts read.
    eprintln!(
        "Moved: '{}' to trash at: hdfs://{}{target}",
        item.qualified(),
        item.authority
    );
    Ok(true)
}

/// `-expunge [-immediate]`: checkpoints the user's trash and deletes the
/// checkpoints older than the trash interval (all of them, with
/// `-immediate`).
pub async fn expunge(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &["immediate"], 0, 0)?;
    let immediate = parsed.has("immediate");
    let authority = shell.default_authority.clone();
    let Ok(client) = shell.client(&authority).map_err(|e| shell.fail(e)) else {
        return Ok(());
    };
    let interval = match client.trash_interval(shell.trash_interval()).await {
        Ok(interval) => interval,
        Err(err) => {
            shell.fail(err);
            return Ok(());
        }
    };
    match client.expunge(interval, immediate).await {
        Ok(done) => {
            let base = format!("hdfs://{authority}");
            if let Some(created) = done.created {
                println!("Created trash checkpoint: {base}{created}");
            }
            for deleted in done.deleted {
                println!("Deleted trash checkpoint: {base}{deleted}");
            }
        }
        Err(err) => shell.fail(err),
    }
    Ok(())
}

pub async fn rmdir(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &["-ignore-fail-on-non-empty"], 1, usize::MAX)?;
    let ignore_non_empty = parsed.has("-ignore-fail-on-non-empty");
    for item in shell.expand(&parsed.args).await {
        let Some(status) = shell.existing(&item).await else {
            continue;
        };
        if !status.is_dir() {
            shell.fail_path(&item.display(), "Is not a directory");
            continue;
        }
        if status.children_num > 0 {
            if !ignore_non_empty {
                shell.fail_path(&item.display(), "Directory is not empty");
            }
            continue;
        }
        let Ok(client) = shell.client(&item.authority).map_err(|e| shell.fail(e)) else {
            continue;
        };
        match client.delete(&item.path, false).await {
            Ok(true) => {}
            Ok(false) => shell.fail_path(&item.display(), "Input/output error"),
            Err(err) => shell.fail(err),
        }
    }
    Ok(())
}

pub async fn touchz(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &[], 1, usize::MAX)?;
    for item in shell.expand(&parsed.args).await {
        let Ok(status) = shell.stat(&item).await else {
            continue;
        };
        match status {
            Some(s) if s.is_dir() => {
                shell.fail_path(&item.display(), "Is a directory");
                continue;
            }
            Some(s) if s.length > 0 => {
                shell.fail_path(&item.display(), "Not a zero-length file");
                continue;
            }
            Some(_) => {}
            None => match shell.stat(&item.parent()).await {
                Ok(Some(p)) if p.is_dir() => {}
                Ok(_) => {
                    shell.fail(format!(
                        "`{}': No such file or directory: `{}'",
                        item.typed,
                        item.qualified()
                    ));
                    continue;
                }
                Err(()) => continue,
            },
        }
        let Ok(client) = shell.client(&item.authority).map_err(|e| shell.fail(e)) else {
            continue;
        };
        let options = CreateOptions {
            overwrite: true,
            create_parent: false,
            ..Default::default()
        };
        let result = match client.create(&item.path, options).await {
            Ok(out) => out.close().await,
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            shell.fail(err);
        }
    }
    Ok(())
}

/// A `-chmod` mode: octal, or symbolic clauses such as `u+x,go-w`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Octal(u16),
    Symbolic(Vec<(u16, char, String)>),
}

fn parse_mode(text: &str) -> Option<Mode> {
    let trimmed = text.trim().trim_start_matches('+');
    if (3..=4).contains(&trimmed.len()) && trimmed.chars().all(|c| c.is_digit(8)) {
        if trimmed.len() == 4 && !matches!(trimmed.as_bytes()[0], b'0' | b'1') {
            return None;
        }
        return u16::from_str_radix(trimmed, 8).ok().map(Mode::Octal);
    }
    let mut clauses = Vec::new();
    for clause in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let who_end = clause
            .find(|c: char| !"ugoa".contains(c))
            .unwrap_or(clause.len());
        let who = &clause[..who_end];
        let mut rest = &clause[who_end..];
        let mask = if who.is_empty() || who.contains('a') {
            0o7777
        } else {
            let mut mask = 0;
            if who.contains('u') {
                mask |= 0o4700;
            }
            if who.contains('g') {
                mask |= 0o2070;
            }
            if who.contains('o') {
                mask |= 0o1007;
            }
            mask
        };
        if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let op = rest.chars().next()?;
            if !"+-=".contains(op) {
                return None;
            }
            rest = &rest[1..];
            let perms_end = rest
                .find(|c: char| !"rwxXt".contains(c))
                .unwrap_or(rest.len());
            let perms = &rest[..perms_end];
            if perms.is_empty() && op != '=' {
                return None;
            }
            clauses.push((mask, op, perms.to_string()));
            rest = &rest[perms_end..];
        }
    }
    (!clauses.is_empty()).then_some(Mode::Symbolic(clauses))
}

fn apply_mode(mode: &Mode, old: u16, is_dir: bool) -> u16 {
    match mode {
        Mode::Octal(value) => *value,
        Mode::Symbolic(clauses) => {
            let mut current = old;
            for (mask, op, perms) in clauses {
                let mut bits = 0u16;
                for p in perms.chars() {
                    bits |= match p {
                        'r' => 0o444,
                        'w' => 0o222,
                        'x' => 0o111,
                        'X' if is_dir || current & 0o111 != 0 => 0o111,
                        't' => 0o1000,
                        _ => 0,
                    };
                }
                let bits = bits & mask;
                current = match op {
                    '+' => current | bits,
                    '-' => current & !bits,
                    _ => (current & !(mask & 0o1777)) | bits,
                };
            }
            current
        }
    }
}

/// Every path under the arguments (the arguments first), for `-R`.
pub(super) async fn walk(
    shell: &mut Shell,
    item: PathArg,
    status: FileStatus,
    recursive: bool,
) -> Vec<(PathArg, FileStatus)> {
    let mut out = Vec::new();
    let mut stack = vec![(item, status)];
    while let Some((path, status)) = stack.pop() {
        let is_dir = status.is_dir();
        out.push((path.clone(), status));
        if recursive && is_dir {
            let Ok(client) = shell.client(&path.authority).map_err(|e| shell.fail(e)) else {
                continue;
            };
            match client.list(&path.path).await {
                Ok(Some(entries)) => {
                    for entry in entries.into_iter().rev() {
                        let name = String::from_utf8_lossy(&entry.name).into_owned();
                        stack.push((path.child(&name), entry));
                    }
                }
                Ok(None) => {}
                Err(err) => shell.fail(err),
            }
        }
    }
    out
}

pub async fn chmod(shell: &mut Shell, mut args: Vec<String>) -> CommandResult {
    let recursive = args.first().is_some_and(|a| a == "-R");
    if recursive {
        args.remove(0);
    }
    if args.len() < 2 {
        return Err(UsageError(format!(
            "Not enough arguments: expected 2 but got {}",
            args.len()
        )));
    }
    let spec = args.remove(0);
    let Some(mode) = parse_mode(&spec) else {
        return Err(UsageError(format!(
            "chmod : mode '{spec}' does not match the expected pattern."
        )));
    };
    for item in shell.expand(&args).await {
        let Some(status) = shell.existing(&item).await else {
            continue;
        };
        for (path, status) in walk(shell, item, status, recursive).await {
            // Without the ACL bit, which is not part of the mode.
            let current = status.permission & 0o7777;
            let new = apply_mode(&mode, current, status.is_dir());
            if new == current {
                continue;
            }
            let Ok(client) = shell.client(&path.authority).map_err(|e| shell.fail(e)) else {
                continue;
            };
            if let Err(err) = client.set_permission(&path.path, new).await {
                shell.fail(format!(
                    "changing permissions of '{}': {err}",
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-+_./@".contains(c))
}

pub async fn chown(shell: &mut Shell, mut args: Vec<String>, group_only: bool) -> CommandResult {
    let recursive = args.first().is_some_and(|a| a == "-R");
    if recursive {
        args.remove(0);
    }
    if args.len() < 2 {
        return Err(UsageError(format!(
            "Not enough arguments: expected 2 but got {}",
            args.len()
        )));
    }
    let spec = args.remove(0);
    let (owner, group) = if group_only {
        if spec.is_empty() || !valid_name(&spec) {
            return Err(UsageError(format!(
                "'{spec}' does not match expected pattern for group"
            )));
        }
        (None, Some(spec.clone()))
    } else {
        let (owner, group) = match spec.split_once(':') {
            Some((o, g)) => (o, Some(g)),
            None => (spec.as_str(), None),
        };
        if !valid_name(owner) || group.is_some_and(|g| !valid_name(g)) {
            return Err(UsageError(format!(
                "'{spec}' does not match expected pattern for [owner][:group]."
            )));
        }
        let owner = Some(owner.to_string()).filter(|o| !o.is_empty());
        let group = group.map(str::to_string).filter(|g| !g.is_empty());
        if owner.is_none() && group.is_none() {
            return Err(UsageError(format!(
                "'{spec}' does not specify owner or group."
            )));
        }
        (owner, group)
    };
    let verb = if group_only {
        "changing group of"
    } else {
        "changing ownership of"
    };
    for item in shell.expand(&args).await {
        let Some(status) = shell.existing(&item).await else {
            continue;
        };
        for (path, status) in walk(shell, item, status, recursive).await {
            let new_owner = owner.as_deref().filter(|o| *o != status.owner);
            let new_group = group.as_deref().filter(|g| *g != status.group);
            if new_owner.is_none() && new_group.is_none() {
                continue;
            }
            let Ok(client) = shell.client(&path.authority).map_err(|e| shell.fail(e)) else {
                continue;
            };
            if let Err(err) = client.set_owner(&path.path, new_owner, new_group).await {
                shell.fail(format!("{verb} '{}': {err}", path.display()));
            }
        }
    }
    Ok(())
}

pub async fn setrep(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &["R", "w"], 2, usize::MAX)?;
    let wait = parsed.has("w");
    let mut args = parsed.args;
    let text = args.remove(0);
    let replication: u32 = match text.parse::<u16>() {
        Ok(value) => u32::from(value),
        Err(_) => {
            eprintln!("setrep: Illegal replication, a positive integer expected");
            return Err(UsageError(format!("For input string: \"{text}\"")));
        }
    };
    if replication < 1 {
        return Err(UsageError("replication must be >= 1".into()));
    }
    let mut out = std::io::stdout().lock();
    let mut set = Vec::new();
    for item in shell.expand(&args).await {
        let Some(status) = shell.existing(&item).await else {
            continue;
        };
        for (path, status) in walk(shell, item, status, true).await {
            if status.is_dir() {
                continue;
            }
            let Ok(client) = shell.client(&path.authority).map_err(|e| shell.fail(e)) else {
                continue;
            };
            match client.set_replication(&path.path, replication).await {
                Ok(true) => {
                    let _ = writeln!(out, "Replication {replication} set: {}", path.display());
                    set.push(path);
                }
                Ok(false) => shell.fail_path(&path.display(), "Input/output error"),
                Err(err) => shell.fail(err),
            }
        }
    }
    if wait && !set.is_empty() {
        let _ = writeln!(
            out,
            "Waiting for the replication of {} file(s) to reach {replication}. \
             WARNING: the waiting time may be long for DECREASING the number of replications.",
            set.len()
        );
        for path in set {
            let _ = write!(out, "Waiting for {} ...", path.display());
            let _ = out.flush();
            let Ok(client) = shell.client(&path.authority).map_err(|e| shell.fail(e)) else {
                continue;
            };
            match wait_for_replication(&client, &path.path, replication, &mut out).await {
                Ok(()) => {
                    let _ = writeln!(out, " done");
                }
                Err(err) => {
                    let _ = writeln!(out);
                    shell.fail(err);
                }
            }
        }
    }
    let _ = out.flush();
    Ok(())
}

/// Polls the file's block locations until every block has exactly
/// `replication` replicas (HDFS's `setrep -w`), printing a dot a second.
async fn wait_for_replication(
    client: &rdfs_client::DfsClient,
    path: &str,
    replication: u32,
    out: &mut impl Write,
) -> Result<(), rdfs_client::ClientError> {
    let poll = std::time::Duration::from_millis(250);
    let mut waited = std::time::Duration::ZERO;
    loop {
        let located = client.get_block_locations(path, 0, u64::MAX).await?;
        let done = located
            .blocks
            .iter()
            .all(|b| b.locations.len() == replication as usize);
        if done {
            return Ok(());
        }
        tokio::time::sleep(poll).await;
        waited += poll;
        if waited.as_millis().is_multiple_of(1000) {
            let _ = write!(out, ".");
            let _ = out.flush();
        }
    }
}

/// `-truncate [-w] <length> <path> ...`: cuts files to `length` bytes. A
/// cut in the middle of a block finishes once the datanodes have cut their
/// replicas; `-w` waits for that.
pub async fn truncate(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &["w"], 2, usize::MAX)?;
    let wait = parsed.has("w");
    let mut args = parsed.args;
    let text = args.remove(0);
    let new_length: u64 = match text.parse::<i64>() {
        Ok(value) if value >= 0 => value as u64,
        Ok(value) => {
            return Err(UsageError(format!(
                "Cannot truncate to a negative file size: {value}."
            )));
        }
        Err(_) => {
            return Err(UsageError(
                "Illegal length, a non-negative integer expected".into(),
            ));
        }
    };
    let mut out = std::io::stdout().lock();
    let mut waiting = Vec::new();
    for item in shell.expand(&args).await {
        let Some(status) = shell.existing(&item).await else {
            continue;
        };
        if status.is_dir() {
            shell.fail_path(&item.display(), "Is a directory");
            continue;
        }
        if new_length > status.length {
            shell.fail(format!(
                "Cannot truncate to a larger file size. Current size: {}, truncate size: {new_length}.",
                status.length
            ));
            continue;
        }
        let Ok(client) = shell.client(&item.authority).map_err(|e| shell.fail(e)) else {
            continue;
        };
        match client.truncate(&item.path, new_length).await {
            Ok(true) => {
                let _ = writeln!(out, "Truncated {} to length: {new_length}", item.display());
            }
            Ok(false) if wait => waiting.push((item, client)),
            Ok(false) => {
                let _ = writeln!(
                    out,
                    "Truncating {} to length: {new_length}. You can either wait for the file to close or use the -w option to wait for the truncate to complete.",
                    item.display()
                );
            }
            Err(err) => shell.fail(err),
        }
    }
    for (item, client) in waiting {
        let _ = writeln!(out, "Waiting for {} ...", item.display());
        let _ = out.flush();
        loop {
            match client.is_under_construction(&item.path).await {
                Ok(false) => {
                    let _ = writeln!(out, "Truncated {} to length: {new_length}", item.display());
                    break;
                }
                Ok(true) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
                Err(err) => {
                    shell.fail(err);
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

    #[test]
    fn chmod_modes() {
        assert_eq!(parse_mode("755"), Some(Mode::Octal(0o755)));
        assert_eq!(parse_mode("1777"), Some(Mode::Octal(0o1777)));
        assert_eq!(parse_mode("999"), None);
        assert_eq!(parse_mode("64"), None);
        let m = parse_mode("u+x,go-w").expect("symbolic");
        assert_eq!(apply_mode(&m, 0o666, false), 0o744);
        let m = parse_mode("a=r").expect("symbolic");
        assert_eq!(apply_mode(&m, 0o777, false), 0o444);
        let m = parse_mode("+X").expect("symbolic");
        assert_eq!(apply_mode(&m, 0o644, true), 0o755);
        assert_eq!(apply_mode(&m, 0o644, false), 0o644);
        let m = parse_mode("o+t").expect("sticky");
        assert_eq!(apply_mode(&m, 0o777, true), 0o1777);
        assert_eq!(parse_mode("u"), None);
        assert_eq!(parse_mode("q+x"), None);
    }
}
