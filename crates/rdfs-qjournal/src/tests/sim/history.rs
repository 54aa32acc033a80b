//! What a run did, and the invariants checked against it as it goes:
//!
//! - every txid acknowledged to a writer keeps the bytes it was
//!   acknowledged with, in every later view (no second acknowledgement of
//!   it with other bytes, no reader handed other bytes, present at the end);
//! - no two finalized segments disagree about a txid;
//! - each epoch has at most one writer whose appends succeed;
//! - a reader never sees an edit that no majority of journalnodes held.

use std::collections::{BTreeMap, BTreeSet};

use crate::segment::TxId;

pub(crate) struct History {
    journalnodes: usize,
    /// Bytes acknowledged to a writer, by txid, with the epoch.
    acked: BTreeMap<TxId, (Vec<u8>, u64)>,
    /// The writer whose appends succeeded in each epoch.
    epoch_writers: BTreeMap<u64, String>,
    /// Bytes any reader was handed, by txid.
    read: BTreeMap<TxId, Vec<u8>>,
    /// Which journalnodes ever made each (txid, bytes) durable.
    held: BTreeMap<(TxId, Vec<u8>), BTreeSet<usize>>,
    /// Bytes of every txid in a finalized segment anywhere.
    finalized: BTreeMap<TxId, Vec<u8>>,
    /// The bytes of each finalized segment file by name, as first seen.
    finalized_files: BTreeMap<String, (String, Vec<u8>)>,
    pub(crate) violations: Vec<String>,
    pub(crate) acked_batches: u64,
    pub(crate) reads: u64,
    pub(crate) faults: u64,
    pub(crate) epochs: u64,
}

impl History {
    pub(crate) fn new(journalnodes: usize) -> Self {
        Self {
            journalnodes,
            acked: BTreeMap::new(),
            epoch_writers: BTreeMap::new(),
            read: BTreeMap::new(),
            held: BTreeMap::new(),
            finalized: BTreeMap::new(),
            finalized_files: BTreeMap::new(),
            violations: Vec::new(),
            acked_batches: 0,
            reads: 0,
            faults: 0,
            epochs: 0,
        }
    }

    pub(crate) fn violation(&mut self, what: String) {
        if self.violations.len() < 20 {
            self.violations.push(what);
        }
    }

    /// A batch a majority acknowledged to `writer` of `epoch`.
    pub(crate) fn acked(&mut self, writer: &str, epoch: u64, records: &[(TxId, Vec<u8>)]) {
        self.acked_batches += 1;
        match self.epoch_writers.get(&epoch) {
            Some(other) if other != writer => {
                let other = other.clone();
                self.violation(format!(
                    "epoch {epoch} had appends acknowledged to two writers: {other} and {writer}"
                ));
            }
            Some(_) => {}
            None => {
                self.epoch_writers.insert(epoch, writer.to_string());
            }
        }
        for (txid, bytes) in records {
            if let Some((before, before_epoch)) = self.acked.get(txid)
                && before != bytes
            {
                let before_epoch = *before_epoch;
                self.violation(format!(
                    "txid {txid} was acknowledged in epoch {before_epoch}, then acknowledged again with other bytes in epoch {epoch}: the first acknowledgement was lost"
                ));
                continue;
            }
            self.acked.insert(*txid, (bytes.clone(), epoch));
        }
    }

    /// Journalnode `node` made `records` durable.
    pub(crate) fn held(&mut self, node: usize, records: &[(TxId, Vec<u8>)]) {
        for (txid, bytes) in records {
            self.held
                .entry((*txid, bytes.clone()))
                .or_default()
                .insert(node);
        }
    }

    /// A reader was handed `records`.
    pub(crate) fn saw(&mut self, reader: &str, records: &[(TxId, Vec<u8>)]) {
        self.reads += 1;
        let majority = self.journalnodes / 2 + 1;
        for (txid, bytes) in records {
            if let Some((acked, epoch)) = self.acked.get(txid)
                && acked != bytes
            {
                let epoch = *epoch;
                self.violation(format!(
                    "{reader} read txid {txid} with bytes other than those acknowledged in epoch {epoch}"
                ));
            }
            match self.read.get(txid) {
                Some(before) if before != bytes => {
                    self.violation(format!(
                        "{reader} read txid {txid} with bytes other than an earlier reader got"
                    ));
                }
                Some(_) => {}
                None => {
                    self.read.insert(*txid, bytes.clone());
                }
            }
            let holders = self
                .held
                .get(&(*txid, bytes.clone()))
                .map_or(0, BTreeSet::len);
            if holders < majority {
                self.violation(format!(
                    "{reader} read txid {txid}, which only {holders} journalnodes ever held (a majority is {majority})"
                ));
            }
        }
    }

    /// Journalnode `node` holds the finalized segment `file` with `bytes`
    /// holding `records`.
    pub(crate) fn finalized(
        &mut self,
        node: &str,
        file: &str,
        bytes: &[u8],
        records: &[(TxId, Vec<u8>)],
    ) {
        for (txid, record) in records {
            match self.finalized.get(txid) {
                Some(before) if before != record => {
                    self.violation(format!(
                        "{node} finalized txid {txid} (in {file}) with bytes other than another finalized copy"
                    ));
                }
                Some(_) => {}
                None => {
                    self.finalized.insert(*txid, record.clone());
                }
            }
        }
        match self.finalized_files.get(file) {
            Some((first, before)) if before != bytes => {
                let first = first.clone();
                self.violation(format!(
                    "{node} and {first} hold {file} with different bytes"
                ));
            }
            Some(_) => {}
            None => {
                self.finalized_files
                    .insert(file.to_string(), (node.to_string(), bytes.to_vec()));
            }
        }
    }

    /// The end of a run: the journal as the last writer recovered it must
    /// hold every acknowledged edit.
    pub(crate) fn check_final(&mut self, last_txid: TxId, log: &BTreeMap<TxId, Vec<u8>>) {
        let lost: Vec<TxId> = self
            .acked
            .keys()
            .copied()
            .filter(|txid| !log.contains_key(txid))
            .take(10)
            .collect();
        if !lost.is_empty() {
            self.violation(format!(
                "acknowledged txids {lost:?} are missing from the journal recovered up to txid {last_txid}"
            ));
        }
        let read_past: Vec<TxId> = self
            .read
            .keys()
            .copied()
            .filter(|txid| *txid > last_txid)
            .take(10)
            .collect();
        if !read_past.is_empty() {
            self.violation(format!(
                "readers saw txids {read_past:?}, past the end of the recovered journal ({last_txid})"
            ));
        }
    }

    pub(crate) fn acked_count(&self) -> usize {
        self.acked.len()
    }
}
