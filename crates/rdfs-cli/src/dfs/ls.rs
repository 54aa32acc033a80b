//! Commands that describe paths: `-ls`, `-stat`, `-du`, `-count`.

use std::io::Write;

use rdfs_common::acl::ACL_BIT;
use rdfs_common::protocol::FileStatus;

use super::format::{human, ls_date, octal, permission, stat_date};
use super::path::PathArg;
use super::shell::{CommandResult, Shell, parse_flags};

/// Column widths of `-ls`; they only grow during one command, as Hadoop's do.
struct Widths {
    replication: usize,
    length: usize,
    owner: usize,
    group: usize,
}

struct LsOptions {
    human: bool,
    paths_only: bool,
    recursive: bool,
    directory: bool,
    by_time: bool,
    by_size: bool,
    reverse: bool,
    atime: bool,
}

fn name_of(status: &FileStatus) -> String {
    String::from_utf8_lossy(&status.name).into_owned()
}

pub async fn ls(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(
        args,
        &["C", "d", "h", "R", "t", "S", "r", "u"],
        0,
        usize::MAX,
    )?;
    let options = LsOptions {
        human: parsed.has("h"),
        paths_only: parsed.has("C"),
        directory: parsed.has("d"),
        recursive: parsed.has("R") && !parsed.has("d"),
        by_time: parsed.has("t"),
        by_size: parsed.has("S") && !parsed.has("t"),
        reverse: parsed.has("r"),
        atime: parsed.has("u"),
    };
    let raw = if parsed.args.is_empty() {
        vec![".".to_string()]
    } else {
        parsed.args
    };
    let items = shell.expand(&raw).await;
    let mut widths = Widths {
        replication: 3,
        length: 10,
        owner: 0,
        group: 0,
    };
    let mut out = std::io::stdout().lock();
    for item in items {
        let Some(status) = shell.existing(&item).await else {
            continue;
        };
        if status.is_dir() && !options.directory {
            list_directory(shell, &item, &options, &mut widths, &mut out).await;
        } else {
            let batch = [(item, status)];
            adjust(&mut widths, &batch);
            print_line(&mut out, &batch[0].0, &batch[0].1, &options, &widths);
        }
    }
    let _ = out.flush();
    Ok(())
}

/// Lists a directory: one batch of children with a `Found N items` header,
/// or with `-R` every entry in pre-order (entry, then its subtree).
async fn list_directory(
    shell: &mut Shell,
    dir: &PathArg,
    options: &LsOptions,
    widths: &mut Widths,
    out: &mut impl Write,
) {
    let client = match shell.client(&dir.authority) {
        Ok(client) => client,
        Err(err) => return shell.fail(err),
    };
    let entries = match client.list(&dir.path).await {
        Ok(Some(entries)) => entries,
        Ok(None) => return shell.not_found(dir),
        Err(err) => return shell.fail(err),
    };
    let mut batch: Vec<(PathArg, FileStatus)> = entries
        .into_iter()
        .map(|s| (dir.child(&name_of(&s)), s))
        .collect();
    if !options.recursive {
        if !batch.is_empty() && !options.paths_only {
            let _ = writeln!(out, "Found {} items", batch.len());
        }
        let time = |s: &FileStatus| {
            if options.atime {
                s.access_time
            } else {
                s.modification_time
            }
        };
        if options.by_time {
            batch.sort_by(|a, b| {
                time(&b.1)
                    .cmp(&time(&a.1))
                    .then_with(|| a.0.path.cmp(&b.0.path))
            });
        } else if options.by_size {
            batch.sort_by(|a, b| {
                b.1.length
                    .cmp(&a.1.length)
                    .then_with(|| a.0.path.cmp(&b.0.path))
            });
        }
        if options.reverse {
            batch.reverse();
        }
    }
    if !options.paths_only {
        adjust(widths, &batch);
    }
    for (path, status) in &batch {
        print_line(out, path, status, options, widths);
        if options.recursive && status.is_dir() {
            Box::pin(list_directory(shell, path, options, widths, out)).await;
        }
    }
}

fn adjust(widths: &mut Widths, batch: &[(PathArg, FileStatus)]) {
    for (_, status) in batch {
        widths.replication = widths.replication.max(status.replication.to_string().len());
        widths.length = widths.length.max(status.length.to_string().len());
        widths.owner = widths.owner.max(status.owner.chars().count());
        widths.group = widths.group.max(status.group.chars().count());
    }
}

fn print_line(
    out: &mut impl Write,
    path: &PathArg,
    status: &FileStatus,
    options: &LsOptions,
    widths: &Widths,
) {
    if options.paths_only {
        let _ = writeln!(out, "{}", path.display());
        return;
    }
    let kind = if status.is_dir() { 'd' } else { '-' };
    let replication = if status.is_dir() {
        "-".to_string()
    } else {
        status.replication.to_string()
    };
    let size = if options.human {
        human(status.length)
    } else {
        status.length.to_string()
    };
    let time = if options.atime {
        status.access_time
    } else {
        status.modification_time
    };
    let owner = if widths.owner > 0 {
        format!("{:<w$} ", status.owner, w = widths.owner)
    } else {
        status.owner.clone()
    };
    let group = if widths.group > 0 {
        format!("{:<w$} ", status.group, w = widths.group)
    } else {
        status.group.clone()
    };
    // `+` after the permissions marks an ACL, as HDFS's ls shows it.
    let acl = if status.permission & ACL_BIT != 0 {
        '+'
    } else {
        ' '
    };
    let _ = writeln!(
        out,
        "{kind}{}{acl}{:>rw$} {owner}{group}{:>lw$} {} {}",
        permission(status.permission),
        replication,
        size,
        ls_date(time),
        path.display(),
        rw = widths.replication,
        lw = widths.length,
    );
}

pub async fn stat(shell: &mut Shell, mut args: Vec<String>) -> CommandResult {
    let recursive = args.first().is_some_and(|a| a == "-R");
    if recursive {
        args.remove(0);
    }
    let format = if args.first().is_some_and(|a| a.contains('%')) {
        args.remove(0)
    } else {
        "%y".to_string()
    };
    let parsed = parse_flags(args, &[], 1, usize::MAX)?;
    let items = shell.expand(&parsed.args).await;
    let mut out = std::io::stdout().lock();
    for item in items {
        let Some(status) = shell.existing(&item).await else {
            continue;
        };
        let _ = writeln!(out, "{}", render_stat(&format, &item, &status));
        if recursive && status.is_dir() {
            let mut stack = vec![item];
            while let Some(dir) = stack.pop() {
                let client = match shell.client(&dir.authority) {
                    Ok(c) => c,
                    Err(e) => {
                        shell.fail(e);
                        break;
                    }
                };
                match client.list(&dir.path).await {
                    Ok(Some(entries)) => {
                        let mut children = Vec::new();
                        for entry in entries {
                            let child = dir.child(&name_of(&entry));
                            let _ = writeln!(out, "{}", render_stat(&format, &child, &entry));
                            if entry.is_dir() {
                                children.push(child);
                            }
                        }
                        stack.extend(children.into_iter().rev());
                    }
                    Ok(None) => {}
                    Err(err) => shell.fail(err),
                }
            }
        }
    }
    let _ = out.flush();
    Ok(())
}

fn render_stat(format: &str, path: &PathArg, status: &FileStatus) -> String {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else { break };
        match spec {
            'a' => out.push_str(&octal(status.permission)),
            'A' => out.push_str(&permission(status.permission)),
            'b' => out.push_str(&status.length.to_string()),
            'F' => out.push_str(if status.is_dir() {
                "directory"
            } else {
                "regular file"
            }),
            'g' => out.push_str(&status.group),
            'n' => out.push_str(path.name()),
            'o' => out.push_str(&status.block_size.to_string()),
            'r' => out.push_str(&status.replication.to_string()),
            'u' => out.push_str(&status.owner),
            'x' => out.push_str(&stat_date(status.access_time)),
            'X' => out.push_str(&status.access_time.to_string()),
            'y' => out.push_str(&stat_date(status.modification_time)),
            'Y' => out.push_str(&status.modification_time.to_string()),
            other => out.push(other),
        }
    }
    out
}

pub async fn du(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &["s", "h", "v", "x"], 0, usize::MAX)?;
    let raw = if parsed.args.is_empty() {
        vec![".".to_string()]
    } else {
        parsed.args.clone()
    };
    let items = shell.expand(&raw).await;
    let size = |n: u64| {
        if parsed.has("h") {
            human(n)
        } else {
            n.to_string()
        }
    };
    let mut rows: Vec<[String; 3]> = Vec::new();
    for item in items {
        let Some(status) = shell.existing(&item).await else {
            continue;
        };
        let client = match shell.client(&item.authority) {
            Ok(c) => c,
            Err(e) => {
                shell.fail(e);
                continue;
            }
        };
        let targets: Vec<PathArg> = if status.is_dir() && !parsed.has("s") {
            match client.list(&item.path).await {
                Ok(entries) => entries
                    .unwrap_or_default()
                    .iter()
                    .map(|e| item.child(&name_of(e)))
                    .collect(),
                Err(err) => {
                    shell.fail(err);
                    continue;
                }
            }
        } else {
            vec![item]
        };
        for target in targets {
            match client.content_summary(&target.path).await {
                Ok(summary) => rows.push([
                    size(summary.length),
                    size(summary.space_consumed),
                    target.display(),
                ]),
                Err(err) => shell.fail(err),
            }
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    if parsed.has("v") {
        rows.insert(
            0,
            [
                "SIZE".into(),
                "DISK_SPACE_CONSUMED_WITH_ALL_REPLICAS".into(),
                "FULL_PATH_NAME".into(),
            ],
        );
    }
    let w0 = rows.iter().map(|r| r[0].chars().count()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r[1].chars().count()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for row in rows {
        let _ = writeln!(out, "{:<w0$}  {:<w1$}  {}", row[0], row[1], row[2]);
    }
    let _ = out.flush();
    Ok(())
}

pub async fn count(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &["q", "h", "v"], 1, usize::MAX)?;
    let size = |n: u64| {
        if parsed.has("h") {
            human(n)
        } else {
            n.to_string()
        }
    };
    let mut out = std::io::stdout().lock();
    if parsed.has("v") {
        let quota = if parsed.has("q") {
            format!(
                "{:>12} {:>15} {:>15} {:>15} ",
                "QUOTA", "REM_QUOTA", "SPACE_QUOTA", "REM_SPACE_QUOTA"
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{quota}{:>12} {:>12} {:>18} PATHNAME",
            "DIR_COUNT", "FILE_COUNT", "CONTENT_SIZE"
        );
    }
    let items = shell.expand(&parsed.args).await;
    for item in items {
        let client = match shell.client(&item.authority) {
            Ok(c) => c,
            Err(e) => {
                shell.fail(e);
                continue;
            }
        };
        let summary = match client.content_summary(&item.path).await {
            Ok(summary) => summary,
            Err(err) if err.is(rdfs_common::ExceptionKind::FileNotFound) => {
                shell.not_found(&item);
                continue;
            }
            Err(err) => {
                shell.fail(err);
                continue;
            }
        };
        let quota = if parsed.has("q") {
            let objects = summary.directory_count + summary.file_count;
            let (q, rq) = if summary.quota > 0 {
                (
                    size(summary.quota as u64),
                    size((summary.quota as u64).saturating_sub(objects)),
                )
            } else {
                ("none".into(), "inf".into())
            };
            let (sq, rsq) = if summary.space_quota >= 0 {
                (
                    size(summary.space_quota as u64),
                    size((summary.space_quota as u64).saturating_sub(summary.space_consumed)),
                )
            } else {
                ("none".into(), "inf".into())
            };
            format!("{q:>12} {rq:>15} {sq:>15} {rsq:>15} ")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{quota}{:>12} {:>12} {:>18} {}",
            size(summary.directory_count),
            size(summary.file_count),
            size(summary.length),
            item.display()
        );
    }
    let _ = out.flush();
    Ok(())
}
