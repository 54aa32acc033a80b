//! A journal that keeps records in memory: for tests and for in-process
//! benchmarks that measure the namespace without disk.

use futures::future::BoxFuture;
use parking_lot::Mutex;

use super::{EditRecord, Journal, JournalError, Op, TxId};

#[derive(Debug, Default)]
pub struct MemoryJournal {
    records: Mutex<Vec<EditRecord>>,
}

impl MemoryJournal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn records(&self) -> Vec<EditRecord> {
        self.records.lock().clone()
    }
}

impl Journal for MemoryJournal {
    fn append(&self, op: Op) -> Result<TxId, JournalError> {
        let mut records = self.records.lock();
        let txid = records.len() as TxId + 1;
        records.push(EditRecord { txid, op: Some(op) });
        Ok(txid)
    }

    fn sync(&self, _txid: TxId) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async { Ok(()) })
    }

    fn last_txid(&self) -> TxId {
        self.records.lock().len() as TxId
    }

    fn roll(&self) -> BoxFuture<'_, Result<TxId, JournalError>> {
        Box::pin(async move { Ok(self.last_txid() + 1) })
    }
}
