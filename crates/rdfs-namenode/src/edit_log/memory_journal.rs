//! A journal that keeps records in memory: for tests and for in-process
//! benchmarks that measure the namespace without disk.
//!
//! Syncs complete at once, unless a test holds them
//! ([`MemoryJournal::hold_syncs`]) to see what the namenode does while an
//! edit is not durable yet, and what a crash then would keep
//! ([`MemoryJournal::durable_records`]).

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{EditRecord, Journal, JournalError, Op, RpcId, TxId, record};

#[derive(Debug)]
pub struct MemoryJournal {
    records: Mutex<Vec<EditRecord>>,
    /// The last txid appended, or applied from elsewhere (a standby's).
    last: Mutex<TxId>,
    /// The last durable txid, and whether syncs are held.
    durable: watch::Sender<(TxId, bool)>,
}

impl Default for MemoryJournal {
    fn default() -> Self {
        Self {
            records: Mutex::new(Vec::new()),
            last: Mutex::new(0),
            durable: watch::Sender::new((0, false)),
        }
    }
}

impl MemoryJournal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn records(&self) -> Vec<EditRecord> {
        self.records.lock().clone()
    }

    /// From now on no edit becomes durable until [`Self::release_syncs`]:
    /// callers of `sync` wait.
    pub fn hold_syncs(&self) {
        self.durable.send_modify(|(_, held)| *held = true);
    }

    /// Makes everything appended durable and lets syncs complete again.
    pub fn release_syncs(&self) {
        let last = self.last_txid();
        self.durable.send_modify(|(durable, held)| {
            *durable = (*durable).max(last);
            *held = false;
        });
    }

    /// What a crash now would keep.
    pub fn durable_records(&self) -> Vec<EditRecord> {
        let durable = self.durable.borrow().0;
        self.records
            .lock()
            .iter()
            .filter(|r| r.txid <= durable)
            .cloned()
            .collect()
    }
}

impl Journal for MemoryJournal {
    fn append(&self, op: Op, rpc: Option<&RpcId>) -> Result<TxId, JournalError> {
        let mut last = self.last.lock();
        *last += 1;
        self.records.lock().push(record(*last, op, rpc));
        Ok(*last)
    }

    fn sync(&self, txid: TxId) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            let mut watcher = self.durable.subscribe();
            loop {
                let (durable, held) = *watcher.borrow_and_update();
                if durable >= txid {
                    return Ok(());
                }
                if !held && txid <= self.last_txid() {
                    let last = self.last_txid();
                    self.durable
                        .send_modify(|(durable, _)| *durable = (*durable).max(last));
                    continue;
                }
                // Held, or a txid not appended yet: wait for it.
                if watcher.changed().await.is_err() {
                    return Err(JournalError::Failed("the journal was dropped".into()));
                }
            }
        })
    }

    fn last_txid(&self) -> TxId {
        *self.last.lock()
    }

    fn note_applied(&self, txid: TxId) {
        let mut last = self.last.lock();
        *last = (*last).max(txid);
        self.durable
            .send_modify(|(durable, _)| *durable = (*durable).max(txid));
    }

    fn roll(&self) -> BoxFuture<'_, Result<TxId, JournalError>> {
        Box::pin(async move { Ok(self.last_txid() + 1) })
    }
}
