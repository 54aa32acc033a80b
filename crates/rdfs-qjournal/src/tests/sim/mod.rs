//! A deterministic simulation of the quorum journal: the real writer,
//! recovery, tailing and journalnode code (`Journal`) run over simulated
//! disks and a simulated network on tokio's paused clock, one seed per run.
//! Everything a run does — its shape, its faults, the fate of each message
//! — comes from its seed, so a failing seed replays exactly:
//!
//! ```text
//! RDFS_SIM_SEED=1234 cargo test -p rdfs-qjournal seeded_runs -- --nocapture
//! ```
//!
//! prints that run's whole trace. `RDFS_SIM_SEEDS=N` runs N seeds (300 by
//! default, what CI runs) from `RDFS_SIM_SEED_BASE` (0 by default;
//! `random` picks one). The invariants are in `history`.

mod disk;
mod history;
mod net;
mod rng;
mod world;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

fn run_seed(seed: u64, echo: bool) -> world::Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime for the simulation");
    runtime.block_on(world::run(seed, echo))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn report(seed: u64, outcome: &world::Outcome) -> String {
    format!(
        "seed {seed} broke an invariant:\n  {}\nlast events:\n{}\nreplay with RDFS_SIM_SEED={seed} cargo test -p rdfs-qjournal seeded_runs -- --nocapture",
        outcome.violations.join("\n  "),
        outcome.trace.join("\n")
    )
}

#[test]
fn seeded_runs_keep_every_invariant() {
    if let Some(seed) = env_u64("RDFS_SIM_SEED") {
        let outcome = run_seed(seed, true);
        eprintln!(
            "seed {seed}: {} acknowledged txids, {} faults, {} epochs, {} reads",
            outcome.acked_txids, outcome.faults, outcome.epochs, outcome.reads
        );
        assert!(outcome.violations.is_empty(), "{}", report(seed, &outcome));
        return;
    }
    let count = env_u64("RDFS_SIM_SEEDS").unwrap_or(300);
    let base = match std::env::var("RDFS_SIM_SEED_BASE").as_deref() {
        Ok("random") => rdfs_common::time::now_ms().wrapping_mul(0x9e37_79b9),
        Ok(text) => text.trim().parse().unwrap_or(0),
        Err(_) => 0,
    };
    let next = AtomicU64::new(0);
    let failures: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    let totals = [
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ];
    let started = std::time::Instant::now();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    let seed = base.wrapping_add(i);
                    let outcome = run_seed(seed, false);
                    totals[0].fetch_add(outcome.acked_txids as u64, Ordering::Relaxed);
                    totals[1].fetch_add(outcome.faults, Ordering::Relaxed);
                    totals[2].fetch_add(outcome.epochs, Ordering::Relaxed);
                    totals[3].fetch_add(outcome.reads, Ordering::Relaxed);
                    if !outcome.violations.is_empty() {
                        let mut failures = failures.lock().expect("failures");
                        failures.push((seed, report(seed, &outcome)));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failures");
    eprintln!(
        "simulated {count} seeds from {base} in {:.1} s: {} acknowledged txids, {} faults, {} epochs, {} reads; {} seeds failed{}",
        started.elapsed().as_secs_f64(),
        totals[0].load(Ordering::Relaxed),
        totals[1].load(Ordering::Relaxed),
        totals[2].load(Ordering::Relaxed),
        totals[3].load(Ordering::Relaxed),
        failures.len(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(
                ": {:?}",
                failures.iter().map(|(seed, _)| *seed).collect::<Vec<_>>()
            )
        }
    );
    if let Some((_, first)) = failures.iter().min_by_key(|(seed, _)| *seed) {
        panic!("{first}");
    }
}
