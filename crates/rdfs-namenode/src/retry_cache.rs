//! HDFS's retry cache: the outcome of every at-most-once call (create,
//! append, rename, delete, truncate, updatePipeline), so a call retried
//! after its answer was lost — a dropped connection, a failover — gets the
//! answer of the first attempt instead of running again: `rm` must not
//! report a missing file it deleted itself, and an append must not reopen a
//! file twice.
//!
//! A call names itself with the client's id (16 random bytes per client)
//! and a call id; retries repeat both. The first attempt takes a [`Ticket`];
//! once it has logged its edit it records its outcome with that edit's txid,
//! and a retry answers with the outcome only after that txid is durable (the
//! first attempt may still be waiting for it). An attempt that fails, or
//! goes away before it logged anything, leaves no entry: a retry runs anew.
//! The edit carries the call's ids, so a standby applying it records the
//! outcome too and answers retries once it has taken over.
//!
//! Entries expire after `dfs.namenode.retrycache.expirytime.millis` and the
//! cache holds at most a configured number of them, the oldest going first.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use rdfs_common::protocol::FileStatus;

use crate::edit_log::{RpcId, TxId};
use crate::namesystem::AppendResult;

/// What an at-most-once call answered. The large answers are boxed: most
/// entries are a bare success, and each entry is as large as the largest.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    Bool(bool),
    Status(Box<FileStatus>),
    Append(Box<AppendResult>),
}

#[derive(Debug)]
enum Slot {
    /// The first attempt is running; retries wait for it.
    Running(watch::Sender<()>),
    /// It logged `txid` and answers `outcome` once that is durable.
    Done { outcome: Outcome, txid: TxId },
}

#[derive(Debug, Default)]
struct Inner {
    slots: HashMap<RpcId, Slot>,
    /// Finished entries, oldest first, with when they expire.
    order: VecDeque<(Instant, RpcId)>,
}

/// Settings of the retry cache.
#[derive(Debug, Clone, Copy)]
pub struct RetryCacheConfig {
    pub enabled: bool,
    pub expiry: Duration,
    pub max_entries: usize,
}

#[derive(Debug)]
pub struct RetryCache {
    config: RetryCacheConfig,
    inner: Arc<Mutex<Inner>>,
}

/// What a call finds when it looks itself up.
pub enum Lookup {
    /// Nobody ran it yet: run it, and record the outcome with the ticket.
    Run(Ticket),
    /// An earlier attempt answered this, once `txid` is durable.
    Answered { outcome: Outcome, txid: TxId },
}

/// The right, and duty, to record a call's outcome. Dropped without
/// [`Ticket::succeeded`], it clears the way for a retry to run anew.
#[must_use]
pub struct Ticket {
    inner: Option<Arc<Mutex<Inner>>>,
    rpc: RpcId,
    expiry: Duration,
    max_entries: usize,
}

impl RetryCache {
    pub fn new(config: RetryCacheConfig) -> Self {
        Self {
            config,
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    /// Looks `rpc` up; waits while a first attempt of it is running. A
    /// call without ids, or with the cache disabled, always runs.
    pub async fn lookup(&self, rpc: Option<&RpcId>) -> Lookup {
        let Some(rpc) = rpc.filter(|_| self.config.enabled) else {
            return Lookup::Run(Ticket {
                inner: None,
                rpc: RpcId::default(),
                expiry: self.config.expiry,
                max_entries: 0,
            });
        };
        loop {
            let mut running = {
                let mut inner = self.inner.lock();
                inner.expire(Instant::now());
                match inner.slots.get(rpc) {
                    None => {
                        inner
                            .slots
                            .insert(rpc.clone(), Slot::Running(watch::Sender::new(())));
                        return Lookup::Run(Ticket {
                            inner: Some(Arc::clone(&self.inner)),
                            rpc: rpc.clone(),
                            expiry: self.config.expiry,
                            max_entries: self.config.max_entries,
                        });
                    }
                    Some(Slot::Done { outcome, txid }) => {
                        return Lookup::Answered {
                            outcome: outcome.clone(),
                            txid: *txid,
                        };
                    }
                    Some(Slot::Running(done)) => done.subscribe(),
                }
            };
            // Woken when the first attempt records its outcome or gives up.
            let _ = running.changed().await;
        }
    }

    /// Records the outcome of a call another namenode ran, from its edit
    /// (a standby tailing, a namenode replaying its log).
    pub fn record(&self, rpc: &RpcId, outcome: Outcome, txid: TxId) {
        if !self.config.enabled {
            return;
        }
        let mut inner = self.inner.lock();
        inner.finish(
            rpc,
            outcome,
            txid,
            Instant::now() + self.config.expiry,
            self.config.max_entries,
        );
    }

    /// Entries held (running ones included).
    pub fn len(&self) -> usize {
        self.inner.lock().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the entries take, roughly: what the closing note of the
    /// namespace-safety issue measures.
    pub fn memory(&self) -> usize {
        let inner = self.inner.lock();
        // A hash table slot holds the pair and a control byte, and is
        // between 7/8 and 7/16 full.
        let table = inner.slots.capacity() * (std::mem::size_of::<(RpcId, Slot)>() + 1);
        let payload: usize = inner
            .slots
            .values()
            .map(|slot| match slot {
                Slot::Done {
                    outcome: Outcome::Status(status),
                    ..
                } => std::mem::size_of::<FileStatus>() + status_heap_bytes(status),
                Slot::Done {
                    outcome: Outcome::Append(result),
                    ..
                } => {
                    std::mem::size_of::<AppendResult>()
                        + status_heap_bytes(&result.status)
                        + result.block.as_ref().map_or(0, |b| b.locations.len() * 256)
                }
                _ => 0,
            })
            .sum();
        table + inner.order.capacity() * std::mem::size_of::<(Instant, RpcId)>() + payload
    }
}

fn status_heap_bytes(status: &FileStatus) -> usize {
    status.name.len() + status.owner.len() + status.group.len()
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while let Some((expires, _)) = self.order.front() {
            if *expires > now {
                break;
            }
            if let Some((_, rpc)) = self.order.pop_front() {
                // A call ids reused after expiry may be running again.
                if matches!(self.slots.get(&rpc), Some(Slot::Done { .. })) {
                    self.slots.remove(&rpc);
                }
            }
        }
    }

    fn finish(
        &mut self,
        rpc: &RpcId,
        outcome: Outcome,
        txid: TxId,
        expires: Instant,
        max_entries: usize,
    ) {
        if let Some(Slot::Running(done)) =
            self.slots.insert(rpc.clone(), Slot::Done { outcome, txid })
        {
            done.send_replace(());
        }
        self.order.push_back((expires, rpc.clone()));
        while self.order.len() > max_entries {
            if let Some((_, oldest)) = self.order.pop_front()
                && matches!(self.slots.get(&oldest), Some(Slot::Done { .. }))
            {
                self.slots.remove(&oldest);
            }
        }
    }
}

impl Ticket {
    /// The call logged `txid` and answers `outcome`; a retry gets the same
    /// once `txid` is durable.
    pub fn succeeded(mut self, outcome: &Outcome, txid: TxId) {
        if let Some(inner) = self.inner.take() {
            inner.lock().finish(
                &self.rpc,
                outcome.clone(),
                txid,
                Instant::now() + self.expiry,
                self.max_entries,
            );
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let mut inner = inner.lock();
            if let Some(Slot::Running(done)) = inner.slots.remove(&self.rpc) {
                done.send_replace(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize) -> RetryCache {
        RetryCache::new(RetryCacheConfig {
            enabled: true,
            expiry: Duration::from_secs(600),
            max_entries,
        })
    }

    fn rpc(call_id: i32) -> RpcId {
        RpcId {
            client_id: [7; 16],
            call_id,
        }
    }

    #[tokio::test]
    async fn a_retry_gets_the_first_answer_and_waits_while_it_runs() {
        let cache = Arc::new(cache(10));
        let Lookup::Run(ticket) = cache.lookup(Some(&rpc(1))).await else {
            panic!("the first attempt runs");
        };
        let retry = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                match cache.lookup(Some(&rpc(1))).await {
                    Lookup::Answered { outcome, txid } => (outcome, txid),
                    Lookup::Run(_) => panic!("the retry must not run again"),
                }
            })
        };
        tokio::task::yield_now().await;
        ticket.succeeded(&Outcome::Bool(true), 42);
        assert_eq!(retry.await.expect("retry"), (Outcome::Bool(true), 42));
    }

    #[tokio::test]
    async fn a_failed_or_abandoned_attempt_lets_the_retry_run() {
        let cache = cache(10);
        let Lookup::Run(ticket) = cache.lookup(Some(&rpc(2))).await else {
            panic!("runs");
        };
        drop(ticket);
        assert!(matches!(cache.lookup(Some(&rpc(2))).await, Lookup::Run(_)));
        assert!(matches!(cache.lookup(None).await, Lookup::Run(_)));
    }

    #[test]
    fn a_bare_success_costs_about_a_hundred_bytes() {
        let cache = cache(1 << 20);
        let n = 100_000;
        for call in 0..n {
            cache.record(&rpc(call), Outcome::Bool(true), call as u64);
        }
        let per_entry = cache.memory() / n as usize;
        eprintln!(
            "retry cache: {per_entry} bytes per entry ({} bytes of slot)",
            std::mem::size_of::<(RpcId, Slot)>()
        );
        assert!(per_entry < 160, "{per_entry} bytes per entry");
    }

    #[tokio::test]
    async fn entries_are_bounded_oldest_first() {
        let cache = cache(2);
        for call in 0..3 {
            cache.record(&rpc(call), Outcome::Done, call as u64);
        }
        assert_eq!(cache.len(), 2);
        assert!(matches!(cache.lookup(Some(&rpc(0))).await, Lookup::Run(_)));
        assert!(matches!(
            cache.lookup(Some(&rpc(2))).await,
            Lookup::Answered { txid: 2, .. }
        ));
    }
}
