//! Copies: `-put`/`-copyFromLocal` (local or stdin to rdfs), `-get`/
//! `-copyToLocal` (rdfs to local) and `-cp` (within rdfs). As in Hadoop,
//! each file is written to `<target>._COPYING_` and renamed into place only
//! once complete, so a failed copy never leaves a partial file under the
//! target's name; directories are copied recursively. `-appendToFile`
//! appends local files or stdin to one rdfs file.
//!
//! `-put` and `-appendToFile` from stdin take `-hflush` or `-hsync` (rdfs
//! additions): whatever arrives on stdin is flushed to the datanodes as soon
//! as it is read, so readers see it while the file is still open. Such a
//! `-put` writes the target directly, without the `._COPYING_` name.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use rdfs_client::{CreateOptions, DfsInputStream};
use rdfs_common::protocol::FileStatus;

use super::path::PathArg;
use super::progress;
use super::shell::{CommandResult, Shell, UsageError, first_line, parse_flags};

const COPYING_SUFFIX: &str = "._COPYING_";
const LOCAL_READ_SIZE: usize = 1024 * 1024;

/// Where bytes come from.
enum Source {
    /// Read on a blocking thread straight into the buffer that becomes the
    /// packets (tokio's File would copy every byte once more).
    Local(std::sync::Arc<std::fs::File>),
    Stdin(tokio::io::Stdin),
    Remote(Box<DfsInputStream>),
}

impl Source {
    /// The next bytes; with `eager`, whatever one read returns, else a full
    /// buffer unless the input ends first.
    async fn next(&mut self, buf: &mut Vec<u8>, eager: bool) -> Result<Option<Bytes>, String> {
        let reader: &mut (dyn AsyncRead + Unpin + Send) = match self {
            Source::Remote(input) => return input.read_chunk().await.map_err(|e| e.to_string()),
            Source::Local(file) => return read_local(std::sync::Arc::clone(file)).await,
            Source::Stdin(stdin) => stdin,
        };
        buf.resize(LOCAL_READ_SIZE, 0);
        let mut filled = 0;
        // Fill whole buffers so packets stay full even from slow pipes.
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    if eager {
                        break;
                    }
                }
                Err(err) => return Err(err.to_string()),
            }
        }
        if filled == 0 {
            Ok(None)
        } else {
            Ok(Some(Bytes::copy_from_slice(&buf[..filled])))
        }
    }
}

/// Up to [`LOCAL_READ_SIZE`] bytes of `file`, or `None` at its end.
async fn read_local(file: std::sync::Arc<std::fs::File>) -> Result<Option<Bytes>, String> {
    let data = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut data = Vec::with_capacity(LOCAL_READ_SIZE);
        (&*file)
            .take(LOCAL_READ_SIZE as u64)
            .read_to_end(&mut data)
            .map(|_| data)
    })
    .await
    .map_err(|e| format!("local read failed: {e}"))?
    .map_err(|e| e.to_string())?;
    Ok((!data.is_empty()).then(|| Bytes::from(data)))
}

struct CopyOptions {
    overwrite: bool,
    preserve: bool,
    direct: bool,
    flush: Option<Flush>,
}

/// Flushing what stdin delivers as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    Hflush,
    Hsync,
}

impl Flush {
    fn from_flags(parsed: &super::shell::Parsed) -> Result<Option<Self>, UsageError> {
        match (parsed.has("hflush"), parsed.has("hsync")) {
            (true, true) => Err(UsageError("-hflush and -hsync exclude each other".into())),
            (true, false) => Ok(Some(Self::Hflush)),
            (false, true) => Ok(Some(Self::Hsync)),
            (false, false) => Ok(None),
        }
    }

    async fn apply(self, out: &mut rdfs_client::DfsOutputStream) -> Result<(), String> {
        match self {
            Self::Hflush => out.hflush().await,
            Self::Hsync => out.hsync().await,
        }
        .map_err(|e| e.to_string())
    }
}

/// Streams `source` into a new rdfs file at `target`.
async fn write_remote(
    shell: &mut Shell,
    mut source: Source,
    size: Option<u64>,
    target: &PathArg,
    options: &CopyOptions,
    preserve: Option<&FileStatus>,
) {
    let client = match shell.client(&target.authority) {
        Ok(c) => c,
        Err(e) => return shell.fail(e),
    };
    match client.get_file_info(&target.path).await {
        Ok(Some(existing)) if existing.is_dir() || !options.overwrite => {
            return shell.fail_path(&target.display(), "File exists");
        }
        Ok(_) => {}
        Err(err) => return shell.fail(err),
    }
    let temp = if options.direct {
        target.path.clone()
    } else {
        format!("{}{COPYING_SUFFIX}", target.path)
    };
    let bar = progress::transfer(&target.display(), size);
    let result: Result<(), String> = async {
        let create = CreateOptions {
            overwrite: true,
            create_parent: true,
            ..Default::default()
        };
        let mut out = client
            .create(&temp, create)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        while let Some(chunk) = source.next(&mut buf, options.flush.is_some()).await? {
            let len = chunk.len() as u64;
            out.write_bytes(chunk).await.map_err(|e| e.to_string())?;
            if let Some(flush) = options.flush {
                flush.apply(&mut out).await?;
            }
            bar.inc(len);
        }
        out.close().await.map_err(|e| e.to_string())?;
        if !options.direct {
            if client
                .get_file_info(&target.path)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                client
                    .delete(&target.path, false)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if !client
                .rename(&temp, &target.path)
                .await
                .map_err(|e| e.to_string())?
            {
                return Err(format!("`{}': Input/output error", target.display()));
            }
        }
        if let Some(status) = preserve {
            client
                .set_times(
                    &target.path,
                    Some(status.modification_time),
                    Some(status.access_time),
                )
                .await
                .map_err(|e| e.to_string())?;
            client
                .set_permission(&target.path, status.permission & 0o7777)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    .await;
    bar.finish_and_clear();
    if let Err(err) = result {
        if !options.direct {
            let _ = client.delete(&temp, false).await;
        }
        shell.fail(err);
    }
}

/// Streams `source` into a new local file at `target`.
async fn write_local(
    shell: &mut Shell,
    mut source: Source,
    size: Option<u64>,
    target: &Path,
    shown: &str,
    overwrite: bool,
) {
    if let Ok(meta) = tokio::fs::metadata(target).await
        && (meta.is_dir() || !overwrite)
    {
        return shell.fail_path(shown, "File exists");
    }
    let mut temp = target.as_os_str().to_owned();
    temp.push(COPYING_SUFFIX);
    let temp = PathBuf::from(temp);
    let bar = progress::transfer(shown, size);
    let result: Result<(), String> = async {
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| format!("`{}': {e}", temp.display()))?;
        let mut buf = Vec::new();
        while let Some(chunk) = source.next(&mut buf, false).await? {
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("`{}': {e}", temp.display()))?;
            bar.inc(chunk.len() as u64);
        }
        file.flush().await.map_err(|e| e.to_string())?;
        file.sync_all().await.map_err(|e| e.to_string())?;
        tokio::fs::rename(&temp, target)
            .await
            .map_err(|e| format!("`{shown}': {e}"))?;
        Ok(())
    }
    .await;
    bar.finish_and_clear();
    if let Err(err) = result {
        let _ = tokio::fs::remove_file(&temp).await;
        shell.fail(err);
    }
}

/// Makes sure `target` is a directory, creating it if missing; false (with
/// the error reported) when it is a file or cannot be created.
async fn ensure_remote_dir(shell: &mut Shell, target: &PathArg) -> bool {
    let Ok(client) = shell.client(&target.authority).map_err(|e| shell.fail(e)) else {
        return false;
    };
    match client.get_file_info(&target.path).await {
        Ok(Some(existing)) if !existing.is_dir() => {
            shell.fail_path(&target.display(), "File exists");
            false
        }
        Ok(Some(_)) => true,
        Ok(None) => client
            .mkdirs(&target.path, 0o777, true)
            .await
            .map_err(|err| shell.fail(err))
            .is_ok(),
        Err(err) => {
            shell.fail(err);
            false
        }
    }
}

/// Refuses to copy or move a directory onto or into itself, with Hadoop's
/// words for each case.
pub(super) fn into_itself(shell: &mut Shell, source: &PathArg, target: &PathArg) -> bool {
    if target.path == source.path {
        shell.fail(format!(
            "`{}' to `{}': are identical",
            source.display(),
            target.qualified()
        ));
        return true;
    }
    if rdfs_common::path::is_ancestor_or_self(&source.path, &target.path) {
        shell.fail(format!(
            "`{}' to `{}': is a subdirectory of itself",
            source.display(),
            target.display()
        ));
        return true;
    }
    false
}

/// Splits `<src> ... <dst>`; one argument means the destination `.`.
fn sources_and_destination(mut args: Vec<String>) -> (Vec<String>, String) {
    if args.len() == 1 {
        return (args, ".".to_string());
    }
    let dst = args.pop().unwrap_or_else(|| ".".to_string());
    (args, dst)
}

/// Resolves the rdfs destination of a copy and checks it as Hadoop's
/// `CommandWithDestination` does. `None` when the copy cannot proceed.
pub(super) async fn remote_destination(
    shell: &mut Shell,
    dst: &str,
    sources: usize,
) -> Option<(PathArg, Option<FileStatus>)> {
    let matches = shell.expand(&[dst.to_string()]).await;
    let dst = match matches.len() {
        0 => return None,
        1 => matches.into_iter().next()?,
        _ => {
            shell.fail_path(dst, "Too many matches");
            return None;
        }
    };
    let status = shell.stat(&dst).await.ok()?;
    if sources > 1 {
        match &status {
            None => {
                shell.not_found(&dst);
                return None;
            }
            Some(s) if !s.is_dir() => {
                shell.fail_path(&dst.display(), "Is not a directory");
                return None;
            }
            Some(_) => {}
        }
    } else if status.is_none() {
        let parent = dst.parent();
        match shell.stat(&parent).await.ok()? {
            // A file as parent: the namenode's refusal says it best.
            Some(_) => {}
            None => {
                let qualified = dst.qualified();
                let qualified = qualified.trim_end_matches('/');
                shell.fail(format!(
                    "`{}': No such file or directory: `{qualified}'",
                    dst.typed
                ));
                return None;
            }
        }
    }
    Some((dst, status))
}

/// The file a source lands in: inside the destination when that is a
/// directory (or written like one), else the destination itself.
pub(super) fn remote_target(dst: &PathArg, dst_status: Option<&FileStatus>, name: &str) -> PathArg {
    if dst_status.is_some_and(FileStatus::is_dir) || dst.looks_like_dir() {
        dst.child(name)
    } else {
        dst.clone()
    }
}

pub async fn put(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(
        args,
        &["f", "p", "d", "l", "hflush", "hsync"],
        1,
        usize::MAX,
    )?;
    let flush = Flush::from_flags(&parsed)?;
    let options = CopyOptions {
        overwrite: parsed.has("f"),
        preserve: parsed.has("p"),
        direct: parsed.has("d") || flush.is_some(),
        flush,
    };
    let (sources, dst) = sources_and_destination(parsed.args);
    if flush.is_some() && !(sources.len() == 1 && sources[0] == "-") {
        return Err(UsageError(
            "-hflush and -hsync apply to stdin (-) only".into(),
        ));
    }
    if sources.len() == 1 && sources[0] == "-" {
        // Hadoop skips the destination checks for stdin and creates parents.
        let Ok(dst) = shell.parse_path(&dst).map_err(|e| shell.fail(e)) else {
            return Ok(());
        };
        let Ok(status) = shell.stat(&dst).await else {
            return Ok(());
        };
        let target = remote_target(&dst, status.as_ref(), "-");
        write_remote(
            shell,
            Source::Stdin(tokio::io::stdin()),
            None,
            &target,
            &options,
            None,
        )
        .await;
        return Ok(());
    }
    if sources.iter().any(|s| s == "-") {
        return Err(UsageError(
            "stdin (-) must be the sole input argument when present".into(),
        ));
    }
    let Some((dst, dst_status)) = remote_destination(shell, &dst, sources.len()).await else {
        return Ok(());
    };
    for source in sources {
        let local = PathBuf::from(&source);
        let Ok(meta) = tokio::fs::metadata(&local).await else {
            shell.fail_path(&source, "No such file or directory");
            continue;
        };
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| source.clone());
        let target = remote_target(&dst, dst_status.as_ref(), &name);
        put_path(shell, &local, &source, meta, &target, &options).await;
    }
    Ok(())
}

async fn put_path(
    shell: &mut Shell,
    local: &Path,
    shown: &str,
    meta: std::fs::Metadata,
    target: &PathArg,
    options: &CopyOptions,
) {
    if meta.is_dir() {
        if !ensure_remote_dir(shell, target).await {
            return;
        }
        let mut entries = match tokio::fs::read_dir(local).await {
            Ok(entries) => entries,
            Err(err) => return shell.fail(format!("`{shown}': {err}")),
        };
        let mut children = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            children.push(entry.path());
        }
        children.sort();
        for child in children {
            let name = child
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let child_shown = format!("{shown}/{name}");
            match tokio::fs::metadata(&child).await {
                Ok(meta) => {
                    Box::pin(put_path(
                        shell,
                        &child,
                        &child_shown,
                        meta,
                        &target.child(&name),
                        options,
                    ))
                    .await
                }
                Err(err) => shell.fail(format!("`{child_shown}': {err}")),
            }
        }
        return;
    }
    let file = match std::fs::File::open(local) {
        Ok(file) => std::sync::Arc::new(file),
        Err(err) => return shell.fail(format!("`{shown}': {}", first_line(&err))),
    };
    let preserve = options.preserve.then(|| local_status(&meta));
    write_remote(
        shell,
        Source::Local(file),
        Some(meta.len()),
        target,
        options,
        preserve.as_ref(),
    )
    .await;
}

/// The times and mode of a local file, for `-p`.
fn local_status(meta: &std::fs::Metadata) -> FileStatus {
    use std::os::unix::fs::MetadataExt;
    FileStatus {
        file_type: rdfs_common::protocol::FileType::File,
        name: Vec::new(),
        length: meta.len(),
        permission: (meta.mode() & 0o7777) as u16,
        owner: String::new(),
        group: String::new(),
        modification_time: (meta.mtime().max(0) as u64) * 1000,
        access_time: (meta.atime().max(0) as u64) * 1000,
        replication: 0,
        block_size: 0,
        file_id: 0,
        children_num: 0,
        locations: None,
    }
}

pub async fn get(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &["f", "p", "crc", "ignoreCrc"], 1, usize::MAX)?;
    let overwrite = parsed.has("f");
    let (sources, dst) = sources_and_destination(parsed.args);
    let dst_path = PathBuf::from(&dst);
    let dst_meta = tokio::fs::metadata(&dst_path).await.ok();
    if sources.len() > 1 {
        match &dst_meta {
            None => {
                shell.fail_path(&dst, "No such file or directory");
                return Ok(());
            }
            Some(meta) if !meta.is_dir() => {
                shell.fail_path(&dst, "Is not a directory");
                return Ok(());
            }
            Some(_) => {}
        }
    } else if let Some(meta) = &dst_meta {
        if !meta.is_dir() && !overwrite {
            shell.fail_path(&dst, "File exists");
            return Ok(());
        }
    } else {
        let parent = dst_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            let absolute = std::path::absolute(&dst_path).unwrap_or(dst_path.clone());
            shell.fail(format!(
                "`{dst}': No such file or directory: `file://{}'",
                absolute.display()
            ));
            return Ok(());
        }
    }
    let dst_is_dir = dst_meta.as_ref().is_some_and(|m| m.is_dir())
        || dst.ends_with('/')
        || dst == "."
        || dst == "..";
    for source in shell.expand(&sources).await {
        let Some(status) = shell.existing(&source).await else {
            continue;
        };
        let (target, shown) = if dst_is_dir {
            let name = source.name().to_string();
            let shown = if dst == "." {
                name.clone()
            } else {
                format!("{}/{name}", dst.trim_end_matches('/'))
            };
            (dst_path.join(&name), shown)
        } else {
            (dst_path.clone(), dst.clone())
        };
        get_path(shell, &source, &status, &target, &shown, overwrite).await;
    }
    Ok(())
}

async fn get_path(
    shell: &mut Shell,
    source: &PathArg,
    status: &FileStatus,
    target: &Path,
    shown: &str,
    overwrite: bool,
) {
    let Ok(client) = shell.client(&source.authority).map_err(|e| shell.fail(e)) else {
        return;
    };
    if status.is_dir() {
        if let Err(err) = tokio::fs::create_dir_all(target).await {
            return shell.fail(format!("`{shown}': {err}"));
        }
        let entries = match client.list(&source.path).await {
            Ok(entries) => entries.unwrap_or_default(),
            Err(err) => return shell.fail(err),
        };
        for entry in entries {
            let name = String::from_utf8_lossy(&entry.name).into_owned();
            Box::pin(get_path(
                shell,
                &source.child(&name),
                &entry,
                &target.join(&name),
                &format!("{shown}/{name}"),
                overwrite,
            ))
            .await;
        }
        return;
    }
    match client.open(&source.path).await {
        Ok(input) => {
            let size = input.len();
            write_local(
                shell,
                Source::Remote(Box::new(input)),
                Some(size),
                target,
                shown,
                overwrite,
            )
            .await;
        }
        Err(err) => shell.fail(err),
    }
}

pub async fn cp(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &["f", "p", "d"], 2, usize::MAX)?;
    let options = CopyOptions {
        overwrite: parsed.has("f"),
        preserve: parsed.has("p"),
        direct: parsed.has("d"),
        flush: None,
    };
    let (sources, dst) = sources_and_destination(parsed.args);
    let sources = shell.expand(&sources).await;
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
        let target = remote_target(&dst, dst_status.as_ref(), source.name());
        if status.is_dir()
            && source.authority == target.authority
            && into_itself(shell, &source, &target)
        {
            continue;
        }
        cp_path(shell, &source, &status, &target, &options).await;
    }
    Ok(())
}

async fn cp_path(
    shell: &mut Shell,
    source: &PathArg,
    status: &FileStatus,
    target: &PathArg,
    options: &CopyOptions,
) {
    let Ok(client) = shell.client(&source.authority).map_err(|e| shell.fail(e)) else {
        return;
    };
    if status.is_dir() {
        if !ensure_remote_dir(shell, target).await {
            return;
        }
        let entries = match client.list(&source.path).await {
            Ok(entries) => entries.unwrap_or_default(),
            Err(err) => return shell.fail(err),
        };
        for entry in entries {
            let name = String::from_utf8_lossy(&entry.name).into_owned();
            Box::pin(cp_path(
                shell,
                &source.child(&name),
                &entry,
                &target.child(&name),
                options,
            ))
            .await;
        }
        return;
    }
    match client.open(&source.path).await {
        Ok(input) => {
            let size = input.len();
            let preserve = options.preserve.then_some(status);
            write_remote(
                shell,
                Source::Remote(Box::new(input)),
                Some(size),
                target,
                options,
                preserve,
            )
            .await;
        }
        Err(err) => shell.fail(err),
    }
}

/// `-appendToFile <localsrc> ... <dst>`: appends each source (a local file,
/// or `-` for stdin) to `dst`, creating it when missing.
pub async fn append_to_file(shell: &mut Shell, args: Vec<String>) -> CommandResult {
    let parsed = parse_flags(args, &["hflush", "hsync"], 2, usize::MAX)?;
    let flush = Flush::from_flags(&parsed)?;
    let (sources, dst) = sources_and_destination(parsed.args);
    let stdin = sources.iter().any(|s| s == "-");
    if stdin && sources.len() > 1 {
        return Err(UsageError(
            "stdin (-) must be the sole input argument when present".into(),
        ));
    }
    if flush.is_some() && !stdin {
        return Err(UsageError(
            "-hflush and -hsync apply to stdin (-) only".into(),
        ));
    }
    let mut inputs = Vec::new();
    for source in &sources {
        if source == "-" {
            inputs.push(Source::Stdin(tokio::io::stdin()));
            continue;
        }
        match tokio::fs::File::open(source).await {
            Ok(file) if file.metadata().await.is_ok_and(|m| m.is_dir()) => {
                shell.fail_path(source, "Is a directory");
                return Ok(());
            }
            Ok(file) => inputs.push(Source::Local(std::sync::Arc::new(file.into_std().await))),
            Err(err) => {
                let what = if err.kind() == std::io::ErrorKind::NotFound {
                    "No such file or directory".to_string()
                } else {
                    first_line(&err)
                };
                shell.fail_path(source, &what);
                return Ok(());
            }
        }
    }
    let Ok(dst) = shell.parse_path(&dst).map_err(|e| shell.fail(e)) else {
        return Ok(());
    };
    let Ok(status) = shell.stat(&dst).await else {
        return Ok(());
    };
    if status.as_ref().is_some_and(FileStatus::is_dir) {
        shell.fail_path(&dst.display(), "Is a directory");
        return Ok(());
    }
    let client = match shell.client(&dst.authority) {
        Ok(c) => c,
        Err(e) => {
            shell.fail(e);
            return Ok(());
        }
    };
    let result: Result<(), String> = async {
        let mut out = match status {
            Some(_) => client.append(&dst.path).await,
            None => {
                client
                    .create(
                        &dst.path,
                        CreateOptions {
                            create_parent: false,
                            ..Default::default()
                        },
                    )
                    .await
            }
        }
        .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        for mut input in inputs {
            while let Some(chunk) = input.next(&mut buf, flush.is_some()).await? {
                out.write_bytes(chunk).await.map_err(|e| e.to_string())?;
                if let Some(flush) = flush {
                    flush.apply(&mut out).await?;
                }
            }
        }
        out.close().await.map_err(|e| e.to_string())
    }
    .await;
    if let Err(err) = result {
        shell.fail(err);
    }
    Ok(())
}
