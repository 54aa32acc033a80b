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

use super::{EditRecord, Journal, JournalError, Op, TxId};

#[derive(Debug)]
pub struct MemoryJournal {
    records: Mutex<Vec<EditRecord>>,
    /// The last durable txid, and whether syncs are held.
    durable: watch::Sender<(TxId, bool)>,
}

impl Default for MemoryJournal {
    fn default() -> Self {
        Self {
            records: Mutex::new(Vec::new()),
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
    fn append(&self, op: Op) -> Result<TxId, JournalError> {
        let mut records = self.records.lock();
        let txid = records.len() as TxId + 1;
        records.push(EditRecord { txid, op: Some(op) });
        Ok(txid)
    }

    fn sync(&self, txid: TxId) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            let mut watcher = self.durable.subscribe();
            loop {
                let (durable, held) = *watcher.borrow_and_update();
                if durable >= txid {
                    return Ok(());
                }
                if !held {
                    let last = self.last_txid();
                    self.durable
                        .send_modify(|(durable, _)| *durable = (*durable).max(last));
                    continue;
                }
                if watcher.changed().await.is_err() {
                    return Err(JournalError::Failed("the journal was dropped".into()));
                }
            }
        })
    }

    fn last_txid(&self) -> TxId {
        self.records.lock().len() as TxId
    }

    fn roll(&self) -> BoxFuture<'_, Result<TxId, JournalError>> {
        Box::pin(async move { Ok(self.last_txid() + 1) })
    }
}
