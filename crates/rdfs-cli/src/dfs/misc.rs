//! `-cat`, `-tail`, `-test`, `-help`/`-usage`.

use std::io::Write;
use std::time::Duration;

use rdfs_client::DfsInputStream;

use super::shell::{CommandResult, Shell, UsageError, parse_flags};
use super::usage;

/// Copies an input stream to stdout; a closed pipe (`| head`) ends quietly.
async fn pipe_to_stdout(shell: &mut Shell, input: &mut DfsInputStream) -> bool {
    let mut out = std::io::stdout().lock();
    loop {
        match input.read_chunk().await {
            Ok(Some(chunk)) => {
                if let Err(err) = out.write_all(&chunk) {
                    if err.kind() != std::io::ErrorKind::BrokenPipe {
                        shell.fail(err);
                    }
                    return false;
                }
            }
            Ok(None) => break,
            Err(err) => {
                let _ = out.flush();
                shell.fail(err);
                return true;
            }
        }
    }
    !matches!(out.flush(), Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe)
}

pub async fn cat(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &["ignoreCrc"], 1, usize::MAX)?;
    for item in shell.expand(&parsed.args).await {
        let Ok(status) = shell.stat(&item).await else {
            continue;
        };
        match status {
            None => shell.not_found(&item),
            Some(s) if s.is_dir() => shell.fail_path(&item.display(), "Is a directory"),
            Some(_) => {
                let Ok(client) = shell.client(&item.authority).map_err(|e| shell.fail(e)) else {
                    continue;
                };
                match client.open(&item.path).await {
                    Ok(mut input) => {
                        if !pipe_to_stdout(shell, &mut input).await {
                            return Ok(());
                        }
                    }
                    Err(err) => shell.fail(err),
                }
            }
        }
    }
    Ok(())
}

pub async fn tail(shell: &mut Shell, mut args: Vec<String>) -> CommandResult {
    let mut follow = false;
    let mut interval = Duration::from_secs(5);
    while let Some(first) = args.first().cloned() {
        match first.as_str() {
            "-f" => {
                follow = true;
                args.remove(0);
            }
            "-s" => {
                args.remove(0);
                let value = if args.is_empty() {
                    String::new()
                } else {
                    args.remove(0)
                };
                let ms: u64 = value
                    .parse()
                    .map_err(|_| UsageError(format!("For input string: \"{value}\"")))?;
                if ms == 0 {
                    return Err(UsageError("sleep interval must be positive".into()));
                }
                interval = Duration::from_millis(ms);
            }
            _ => break,
        }
    }
    let parsed = parse_flags(args, &[], 1, 1)?;
    let item = match shell.parse_path(&parsed.args[0]) {
        Ok(item) => item,
        Err(err) => {
            shell.fail(err);
            return Ok(());
        }
    };
    let Ok(status) = shell.stat(&item).await else {
        return Ok(());
    };
    match status {
        None => shell.not_found(&item),
        Some(s) if s.is_dir() => shell.fail_path(&item.display(), "Is a directory"),
        Some(_) => {
            let Ok(client) = shell.client(&item.authority).map_err(|e| shell.fail(e)) else {
                return Ok(());
            };
            let mut offset = None;
            loop {
                let mut input = match client.open(&item.path).await {
                    Ok(input) => input,
                    Err(err) => {
                        shell.fail(err);
                        return Ok(());
                    }
                };
                let start = offset.unwrap_or_else(|| input.len().saturating_sub(1024));
                if input.len() > start {
                    input.seek(start);
                    if !pipe_to_stdout(shell, &mut input).await {
                        return Ok(());
                    }
                }
                offset = Some(input.len().max(start));
                if !follow {
                    break;
                }
                tokio::time::sleep(interval).await;
            }
        }
    }
    Ok(())
}

pub async fn test(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let flags: Vec<&String> = args
        .iter()
        .take_while(|a| a.starts_with('-') && a.len() > 1)
        .collect();
    let paths = &args[flags.len()..];
    if let Some(bad) = flags
        .iter()
        .find(|f| !matches!(f.as_str(), "-e" | "-d" | "-f" | "-s" | "-z"))
    {
        return Err(UsageError(format!("Illegal option {bad}")));
    }
    match flags.len() {
        0 => return Err(UsageError("No test flag given".into())),
        1 => {}
        _ => return Err(UsageError("Only one test flag is allowed".into())),
    }
    if paths.is_empty() {
        return Err(UsageError(
            "Not enough arguments: expected 1 but got 0".into(),
        ));
    }
    if paths.len() > 1 {
        return Err(UsageError(format!(
            "Too many arguments: expected 1 but got {}",
            paths.len()
        )));
    }
    let flag = flags[0].as_str();
    let items = shell.expand(paths).await;
    let mut all_true = !items.is_empty();
    for item in items {
        let Ok(status) = shell.stat(&item).await else {
            return Ok(());
        };
        let holds = match (flag, status) {
            (_, None) => false,
            ("-e", Some(_)) => true,
            ("-d", Some(s)) => s.is_dir(),
            ("-f", Some(s)) => !s.is_dir(),
            ("-s", Some(s)) => s.length > 0,
            ("-z", Some(s)) => s.length == 0,
            _ => false,
        };
        all_true &= holds;
    }
    shell.exit_code = if all_true { 0 } else { 1 };
    Ok(())
}

pub fn help(args: Vec<String>) -> CommandResult {
    if args.is_empty() {
        print!("{}", usage::full());
        return Ok(());
    }
    for name in args {
        let dashed = if name.starts_with('-') {
            name.clone()
        } else {
            format!("-{name}")
        };
        match usage::find(&dashed) {
            Some(spec) => println!("{}", usage::instance(spec)),
            None => return Err(UsageError(format!("`{name}': Unknown command"))),
        }
    }
    Ok(())
}
