//! Thin, safe wrappers over the few Linux calls std does not offer.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Starts writeback of `[offset, offset + len)` without waiting for it, so a
/// replica being written never accumulates a large backlog of dirty pages
/// and its final sync is short.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the fd is
    // valid for the lifetime of `file`. A failure is harmless (the final
    // fdatasync still makes the data durable), so the result is ignored.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Asks the kernel to start reading `[offset, offset + len)` into the page
/// cache without waiting (HDFS's datanode readahead), so a sequential read
/// keeps the disk busy ahead of the reader. A failure only loses the hint.
pub fn will_need(file: &File, offset: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::WillNeed,
    );
}

/// Space on the filesystem holding `path`: (capacity, available to us).
pub fn disk_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(path)?;
    let fragment = stat.f_frsize.max(1);
    Ok((
        stat.f_blocks.saturating_mul(fragment),
        stat.f_bavail.saturating_mul(fragment),
    ))
}

/// This machine's host name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
