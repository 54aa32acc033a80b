//! `rdfs bench io`: TestDFSIO-like throughput against a running cluster.
//!
//! `-write` writes `-files N` files of `-size S` bytes each, concurrently
//! (one task per file), to `<dir>/io_data/test_io_<i>`; `-read` reads them
//! back, concurrently; `-clean` deletes `<dir>`. A write is timed from
//! create through close (the last packet acknowledged by the pipeline and
//! the file completed on the namenode), a read from open through the last
//! byte. The summary gives the aggregate throughput (all bytes over the
//! wall time of the whole run) and the per-file throughputs, in MB/s with
//! MB = 10^6 bytes, and ends with a `figure io_write_mbps ...` line
//! (`io_read_mbps` for reads) for scripts.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::task::JoinSet;

use rdfs_client::{CreateOptions, DfsClient};

use crate::generic::GenericOptions;

use super::{Options, cluster_client};

const USAGE: &str = "usage: rdfs bench io -write|-read|-clean [-files N] [-size S] [-replication R] [-blockSize B] [-dir PATH]";

const DEFAULT_DIR: &str = "/benchmarks/TestDFSIO";
const DEFAULT_SIZE: u64 = 1 << 30;

/// Bytes handed to one `write` call.
const SLICE: usize = 1 << 20;
/// Distinct slice starts in the data buffer (its length is one more slice).
const SLICES: usize = 8;

const MB: f64 = 1e6;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Write,
    Read,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Write => "write",
            Mode::Read => "read",
        }
    }
}

pub(super) fn run(args: &[String], generic: &GenericOptions) -> Result<()> {
    let options = Options::parse(
        args,
        &["files", "size", "replication", "blockSize", "dir"],
        &["write", "read", "clean"],
    )
    .with_context(|| USAGE.to_string())?;
    let dir = options
        .value("dir")
        .unwrap_or(DEFAULT_DIR)
        .trim_end_matches('/')
        .to_string();
    if !dir.starts_with('/') {
        bail!("-dir {dir}: give an absolute path");
    }
    let mode = match (
        options.has("write"),
        options.has("read"),
        options.has("clean"),
    ) {
        (true, false, false) => Some(Mode::Write),
        (false, true, false) => Some(Mode::Read),
        (false, false, true) => None,
        _ => bail!("give exactly one of -write, -read, -clean\n{USAGE}"),
    };
    let files = options.number("files", 1).context("-files")?;
    if files == 0 {
        bail!("-files must be at least 1");
    }
    let size = options.number("size", DEFAULT_SIZE).context("-size")?;
    let config = generic.load()?;
    let replication = match options.value("replication") {
        Some(text) => {
            let r: u32 = text
                .parse()
                .with_context(|| format!("-replication {text}: not a number"))?;
            if r == 0 {
                bail!("-replication must be at least 1");
            }
            r
        }
        None => config.dfs.replication,
    };
    let block_size = options
        .number("blockSize", config.dfs.block_size.0)
        .context("-blockSize")?;
    if block_size == 0 {
        bail!("-blockSize must be positive");
    }

    let runtime = crate::generic::runtime()?;
    runtime.block_on(async move {
        let client = cluster_client(&config)?;
        match mode {
            None => clean(&client, &dir).await,
            Some(Mode::Write) => {
                let setup = WriteSetup {
                    files,
                    size,
                    replication,
                    block_size,
                };
                let report = write(&client, &dir, &setup).await?;
                report.print(Mode::Write, replication, block_size);
                Ok(())
            }
            Some(Mode::Read) => {
                let (report, replication, block_size) = read(&client, &dir, files).await?;
                report.print(Mode::Read, replication, block_size);
                Ok(())
            }
        }
    })
}

fn data_dir(dir: &str) -> String {
    format!("{dir}/io_data")
}

fn file_path(dir: &str, index: u64) -> String {
    format!("{}/test_io_{index}", data_dir(dir))
}

async fn clean(client: &DfsClient, dir: &str) -> Result<()> {
    let deleted = client
        .delete(dir, true)
        .await
        .with_context(|| format!("deleting {dir}"))?;
    if deleted {
        println!("deleted {dir}");
    } else {
        println!("{dir} did not exist");
    }
    Ok(())
}

struct WriteSetup {
    files: u64,
    size: u64,
    replication: u32,
    block_size: u64,
}

/// What the files of one run took.
struct Report {
    /// Bytes of each file.
    bytes: Vec<u64>,
    /// Time of each file.
    times: Vec<Duration>,
    /// Wall time of the whole run.
    wall: Duration,
}

async fn write(client: &DfsClient, dir: &str, setup: &WriteSetup) -> Result<Report> {
    // Generated before timing starts: pseudo-random, so neither zeros nor
    // anything a compressing layer could shrink.
    let data: Arc<[u8]> = random_bytes(SLICE * (SLICES + 1), 0x9e37_79b9_7f4a_7c15).into();
    // As TestDFSIO: files of an earlier run go first, outside the timing.
    let data_dir = data_dir(dir);
    client
        .delete(&data_dir, true)
        .await
        .with_context(|| format!("deleting the old {data_dir}"))?;
    client
        .mkdirs(&data_dir, 0o755, true)
        .await
        .with_context(|| format!("creating {data_dir}"))?;

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for index in 0..setup.files {
        let client = client.clone();
        let data = Arc::clone(&data);
        let path = file_path(dir, index);
        let (size, replication, block_size) = (setup.size, setup.replication, setup.block_size);
        tasks.spawn(async move {
            let file_started = Instant::now();
            let options = CreateOptions {
                overwrite: true,
                create_parent: true,
                replication: Some(replication),
                block_size: Some(block_size),
                ..CreateOptions::default()
            };
            let mut out = client
                .create(&path, options)
                .await
                .with_context(|| format!("creating {path}"))?;
            let mut written = 0;
            while written < size {
                let range = next_slice(index, written, size);
                let len = range.len() as u64;
                out.write(&data[range])
                    .await
                    .with_context(|| format!("writing {path} at offset {written}"))?;
                written += len;
            }
            out.close()
                .await
                .with_context(|| format!("closing {path} after {written} bytes"))?;
            Ok::<_, anyhow::Error>((index, written, file_started.elapsed()))
        });
    }
    let report = collect(tasks, setup.files, "write").await?;
    Ok(Report {
        wall: started.elapsed(),
        ..report
    })
}

/// Reads the files back; also returns the replication and block size of
/// the first.
async fn read(client: &DfsClient, dir: &str, files: u64) -> Result<(Report, u32, u64)> {
    // The files must be there before timing starts.
    let mut lengths = Vec::with_capacity(files as usize);
    let mut first = None;
    for index in 0..files {
        let path = file_path(dir, index);
        let status = client
            .get_file_info(&path)
            .await
            .with_context(|| format!("looking up {path}"))?;
        let Some(status) = status else {
            bail!(
                "{path} does not exist: run `rdfs bench io -write -files {files}` (with the same -dir) first"
            );
        };
        if status.is_dir() {
            bail!("{path} is a directory, not a file written by -write");
        }
        first.get_or_insert((status.replication, status.block_size));
        lengths.push(status.length);
    }
    let (replication, block_size) = first.unwrap_or_default();

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (index, expected) in (0..files).zip(lengths) {
        let client = client.clone();
        let path = file_path(dir, index);
        tasks.spawn(async move {
            let file_started = Instant::now();
            let mut input = client
                .open(&path)
                .await
                .with_context(|| format!("opening {path}"))?;
            let mut read = 0u64;
            while let Some(chunk) = input
                .read_chunk()
                .await
                .with_context(|| format!("reading {path} at offset {read}"))?
            {
                read += chunk.len() as u64;
            }
            let elapsed = file_started.elapsed();
            if read != expected {
                bail!("read {read} bytes of {path}, whose length is {expected}");
            }
            Ok((index, read, elapsed))
        });
    }
    let report = collect(tasks, files, "read").await?;
    Ok((
        Report {
            wall: started.elapsed(),
            ..report
        },
        replication,
        block_size,
    ))
}

/// Waits for every file's task; the first failure aborts the others.
async fn collect(
    mut tasks: JoinSet<Result<(u64, u64, Duration)>>,
    files: u64,
    what: &str,
) -> Result<Report> {
    let mut bytes = vec![0; files as usize];
    let mut times = vec![Duration::ZERO; files as usize];
    while let Some(joined) = tasks.join_next().await {
        let (index, done, took) =
            joined.with_context(|| format!("a {what} task ended abnormally"))??;
        bytes[index as usize] = done;
        times[index as usize] = took;
    }
    Ok(Report {
        bytes,
        times,
        wall: Duration::ZERO,
    })
}

/// The part of the data buffer that file `index` writes at offset
/// `written` of its `size` bytes: whole slices cycling through the buffer
/// from a start that differs between files, so files differ too.
fn next_slice(index: u64, written: u64, size: u64) -> Range<usize> {
    let shift = (index.wrapping_mul(65_537) % SLICE as u64) as usize;
    let nth = (written / SLICE as u64 % SLICES as u64) as usize;
    let start = shift + nth * SLICE;
    let len = (size - written).min(SLICE as u64) as usize;
    start..start + len
}

/// `len` bytes of xorshift64* output.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The figures of a run, in MB/s (MB = 10^6 bytes).
#[derive(Debug, PartialEq)]
struct Figures {
    total_bytes: u64,
    /// All bytes over the wall time of the run.
    aggregate: f64,
    /// Per-file throughputs.
    mean: f64,
    min: f64,
    max: f64,
    std_dev: f64,
    /// All bytes over the sum of the per-file times (TestDFSIO's
    /// "Throughput mb/sec").
    summed_time: f64,
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    let secs = time.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 / MB / secs
    } else {
        0.0
    }
}

impl Report {
    fn figures(&self) -> Figures {
        let total_bytes: u64 = self.bytes.iter().sum();
        let rates: Vec<f64> = self
            .bytes
            .iter()
            .zip(&self.times)
            .map(|(&b, &t)| mb_per_s(b, t))
            .collect();
        let n = rates.len().max(1) as f64;
        let mean = rates.iter().sum::<f64>() / n;
        let variance = rates.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / n;
        Figures {
            total_bytes,
            aggregate: mb_per_s(total_bytes, self.wall),
            mean,
            min: rates.iter().copied().fold(f64::INFINITY, f64::min),
            max: rates.iter().copied().fold(0.0, f64::max),
            std_dev: variance.sqrt(),
            summed_time: mb_per_s(total_bytes, self.times.iter().sum()),
        }
    }

    fn print(&self, mode: Mode, replication: u32, block_size: u64) {
        let f = self.figures();
        let mut times = self.times.clone();
        times.sort_unstable();
        let per_file = match (self.bytes.iter().min(), self.bytes.iter().max()) {
            (Some(lo), Some(hi)) if lo == hi => {
                format!("{lo} ({:.1} MiB)", *lo as f64 / 1048576.0)
            }
            (Some(lo), Some(hi)) => format!("{lo} to {hi}"),
            _ => "0".to_string(),
        };
        println!("----- rdfs bench io : {} -----", mode.name());
        println!("files:                 {}", self.bytes.len());
        println!("bytes per file:        {per_file}");
        println!("replication:           {replication}");
        println!(
            "block size:            {block_size} ({:.1} MiB)",
            block_size as f64 / 1048576.0
        );
        println!("total MB processed:    {:.1}", f.total_bytes as f64 / MB);
        println!(
            "aggregate throughput:  {:.1} MB/s   (total bytes / wall time of the whole run)",
            f.aggregate
        );
        println!(
            "per-file throughput:   mean {:.1} MB/s, min {:.1}, max {:.1}, std dev {:.1}",
            f.mean, f.min, f.max, f.std_dev
        );
        println!(
            "summed-time throughput: {:.1} MB/s   (total bytes / sum of per-file times, TestDFSIO's \"Throughput\")",
            f.summed_time
        );
        println!(
            "per-file time:         p50 {:.2} s, max {:.2} s",
            super::percentile(&times, 0.5).as_secs_f64(),
            times.last().copied().unwrap_or_default().as_secs_f64()
        );
        println!("test exec time:        {:.2} s", self.wall.as_secs_f64());
        println!("figure io_{}_mbps {:.1} MB/s", mode.name(), f.aggregate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_follow_testdfsio() {
        let report = Report {
            bytes: vec![100_000_000, 100_000_000],
            times: vec![Duration::from_secs(1), Duration::from_secs(4)],
            wall: Duration::from_secs(4),
        };
        let f = report.figures();
        assert_eq!(f.total_bytes, 200_000_000);
        assert!((f.aggregate - 50.0).abs() < 1e-9);
        assert!((f.mean - 62.5).abs() < 1e-9);
        assert!((f.min - 25.0).abs() < 1e-9);
        assert!((f.max - 100.0).abs() < 1e-9);
        assert!((f.std_dev - 37.5).abs() < 1e-9);
        assert!((f.summed_time - 40.0).abs() < 1e-9);
    }

    #[test]
    fn slices_cover_the_file_within_the_buffer() {
        let buffer = SLICE * (SLICES + 1);
        for index in [0, 1, 7, 1000] {
            let size = 20 * SLICE as u64 + 12_345;
            let mut written = 0;
            while written < size {
                let range = next_slice(index, written, size);
                assert!(!range.is_empty() && range.end <= buffer);
                written += range.len() as u64;
            }
            assert_eq!(written, size);
        }
        assert_ne!(next_slice(0, 0, 10).start, next_slice(1, 0, 10).start);
    }

    #[test]
    fn data_is_not_trivially_compressible() {
        let data = random_bytes(1 << 16, 42);
        assert_eq!(data.len(), 1 << 16);
        let mut counts = [0u32; 256];
        for &b in &data {
            counts[b as usize] += 1;
        }
        // Every byte value appears, none much more often than 256 times.
        assert!(counts.iter().all(|&c| c > 128 && c < 400));
    }
}
