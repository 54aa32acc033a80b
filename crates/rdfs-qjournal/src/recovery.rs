//! Closing the segment a former writer left open (HDFS-3077's recovery, a
//! round of Paxos per segment): every journalnode of a majority reports its
//! copy of the segment and any recovery it accepted before (prepare); the
//! writer chooses one copy and makes a majority hold exactly it (accept),
//! then finalizes it.
//!
//! The choice guarantees that every edit a majority acknowledged survives:
//! such an edit is on at least one journalnode of any majority, and the
//! chosen copy is one that extends it. An edit no majority acknowledged may
//! survive or vanish, but once a recovery accepted it on a majority, every
//! later recovery chooses the same.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use rdfs_proto::{FetchSegmentRequest, PrepareRecoveryResponse, SegmentStateProto};

use crate::client::QuorumError;
use crate::fault::JnError;
use crate::logger::{Op, Reply};
use crate::segment::{self, TxId};
use crate::writer::QuorumWriter;

/// HDFS's SegmentRecoveryComparator, with the epoch that wrote each copy
/// instead of the journalnode's last writer: a copy beats no copy; a
/// finalized copy beats an in-progress one; among in-progress copies, the
/// one of the newest epoch (the epoch a recovery accepted it in, or the
/// epoch that wrote its edits) wins, then the longer. Copies of different
/// epochs may hold different edits under the same txids, so length alone
/// never decides between them.
fn compare(a: &PrepareRecoveryResponse, b: &PrepareRecoveryResponse) -> Result<Ordering, String> {
    let (sa, sb) = match (&a.segment_state, &b.segment_state) {
        (None, None) => return Ok(Ordering::Equal),
        (Some(_), None) => return Ok(Ordering::Greater),
        (None, Some(_)) => return Ok(Ordering::Less),
        (Some(sa), Some(sb)) => (sa, sb),
    };
    if sa.in_progress != sb.in_progress {
        return Ok(if sa.in_progress {
            Ordering::Less
        } else {
            Ordering::Greater
        });
    }
    if !sa.in_progress {
        if sa.last_txid != sb.last_txid {
            return Err(format!(
                "segment {} is finalized at txid {} on one journalnode and at {} on another",
                sa.first_txid, sa.last_txid, sb.last_txid
            ));
        }
        return Ok(Ordering::Equal);
    }
    let seen_a = a.accepted_in_epoch.max(sa.epoch);
    let seen_b = b.accepted_in_epoch.max(sb.epoch);
    Ok(seen_a.cmp(&seen_b).then(sa.last_txid.cmp(&sb.last_txid)))
}

/// The best of `responses` by [`compare`], with the journalnodes holding
/// that same copy, best first (where to fetch it from).
fn choose(
    responses: &[(usize, PrepareRecoveryResponse)],
) -> Result<Option<(SegmentStateProto, Vec<usize>)>, String> {
    let mut ranked: Vec<&(usize, PrepareRecoveryResponse)> = responses.iter().collect();
    let mut failed = None;
    ranked.sort_by(|a, b| {
        compare(&b.1, &a.1).unwrap_or_else(|why| {
            failed = Some(why);
            Ordering::Equal
        })
    });
    if let Some(why) = failed {
        return Err(why);
    }
    let Some(best) = ranked.first().and_then(|(_, r)| r.segment_state) else {
        return Ok(None);
    };
    let holders = ranked
        .iter()
        .filter(|(_, r)| {
            r.segment_state
                .as_ref()
                .is_some_and(|s| s.last_txid == best.last_txid && s.epoch == best.epoch)
        })
        .map(|(i, _)| *i)
        .collect();
    Ok(Some((best, holders)))
}

impl QuorumWriter {
    /// Recovers the last unfinalized segment (prepare/accept on a majority)
    /// and finalizes it; returns the last txid in the journal (0 if none).
    /// Afterwards every edit up to it is committed and readable.
    pub async fn recover(&self) -> Result<u64, QuorumError> {
        self.check_usable()?;
        if self.state.lock().recovered {
            return Err(QuorumError::Usage(format!(
                "the writer of epoch {} has already recovered the journal",
                self.epoch
            )));
        }
        let segment_txid = self.last_segment_txid;
        if segment_txid == 0 {
            self.recovered(0);
            tracing::info!(
                epoch = self.epoch,
                "the journal is empty: nothing to recover"
            );
            return Ok(0);
        }
        let timeout = self.client.recovery_timeout;
        let committed = self.state.lock().committed_txid;
        let calls = self.submit(&Op::Prepare { segment_txid }, committed, timeout);
        let prepared: Vec<(usize, PrepareRecoveryResponse)> = self
            .await_majority(calls, timeout, self.client.clock.now())
            .await?
            .into_iter()
            .filter_map(|(i, reply)| match reply {
                Reply::Prepared(response) => Some((i, response)),
                Reply::Done => None,
            })
            .collect();
        let Some((chosen, holders)) = choose(&prepared).map_err(QuorumError::Recovery)? else {
            // No journalnode of a majority holds an edit of the segment, so
            // none was acknowledged: the journal ends before it.
            let last = segment_txid - 1;
            self.recovered(last);
            tracing::info!(
                epoch = self.epoch,
                segment_txid,
                last,
                "the last segment holds no edits on a majority: nothing to recover"
            );
            return Ok(last);
        };
        let max_committed = prepared
            .iter()
            .map(|(_, r)| r.committed_txid)
            .max()
            .unwrap_or(0);
        if max_committed >= segment_txid && chosen.last_txid < max_committed {
            return Err(QuorumError::Recovery(format!(
                "chose segment {segment_txid} up to txid {}, but a journalnode saw txid {max_committed} committed",
                chosen.last_txid
            )));
        }
        tracing::info!(epoch = self.epoch, segment_txid, last = chosen.last_txid,
            from = %self.loggers[holders[0]].name(), responses = prepared.len(), "recovery chose a segment");
        let needs_edits: Vec<bool> = (0..self.loggers.len())
            .map(|i| {
                prepared
                    .iter()
                    .find(|(at, _)| *at == i)
                    .and_then(|(_, r)| r.segment_state.as_ref())
                    .is_none_or(|s| s.last_txid != chosen.last_txid || s.epoch != chosen.epoch)
            })
            .collect();
        let edits = if needs_edits.iter().any(|n| *n) {
            self.fetch_segment(&chosen, &holders).await
        } else {
            None
        };
        let accept_calls = {
            let info = self.info(committed);
            let deadline = tokio::time::Instant::now() + timeout;
            self.loggers
                .iter()
                .enumerate()
                .map(|(i, logger)| {
                    let op = Op::Accept {
                        chosen,
                        edits: if needs_edits[i] { edits.clone() } else { None },
                    };
                    logger.submit(op, info.clone(), deadline)
                })
                .collect()
        };
        self.await_majority(accept_calls, timeout, self.client.clock.now())
            .await?;
        let finalize = Op::Finalize {
            first: chosen.first_txid,
            last: chosen.last_txid,
        };
        let calls = self.submit(&finalize, committed, timeout);
        self.await_majority(calls, timeout, self.client.clock.now())
            .await?;
        self.recovered(chosen.last_txid);
        tracing::info!(
            epoch = self.epoch,
            first = chosen.first_txid,
            last = chosen.last_txid,
            "segment recovered and finalized"
        );
        Ok(chosen.last_txid)
    }

    fn recovered(&self, last_txid: TxId) {
        let mut st = self.state.lock();
        st.recovered = true;
        st.segment = None;
        st.last_txid = last_txid;
        st.committed_txid = st.committed_txid.max(last_txid);
    }

    /// The chosen segment's edits from the first of `holders` that can
    /// send them whole; `None` if none can (the journalnodes that lack it
    /// then refuse the accept, which a majority may survive).
    async fn fetch_segment(
        &self,
        chosen: &SegmentStateProto,
        holders: &[usize],
    ) -> Option<Arc<Vec<Bytes>>> {
        for &i in holders {
            let name = &self.client.jns.names[i];
            match tokio::time::timeout(self.client.recovery_timeout, self.fetch_from(i, chosen))
                .await
            {
                Ok(Ok(chunks)) => return Some(Arc::new(chunks)),
                Ok(Err(err)) => {
                    tracing::warn!(journalnode = %name, first = chosen.first_txid, error = %err,
                        "cannot fetch the recovered segment; trying another journalnode");
                }
                Err(_) => {
                    tracing::warn!(journalnode = %name, first = chosen.first_txid,
                        "fetching the recovered segment timed out; trying another journalnode");
                }
            }
        }
        None
    }

    async fn fetch_from(
        &self,
        i: usize,
        chosen: &SegmentStateProto,
    ) -> Result<Vec<Bytes>, JnError> {
        let committed = self.state.lock().committed_txid;
        let request = FetchSegmentRequest {
            info: Some(self.info(committed)),
            first_txid: chosen.first_txid,
            last_txid: chosen.last_txid,
        };
        let fetched = self.client.jns.peers[i].fetch_segment(request).await?;
        let mut chunks = Vec::new();
        let mut next = chosen.first_txid;
        for chunk in fetched {
            // The journalnode read the file after it planned the read: a
            // newer recovery may have replaced it with another epoch's copy
            // of the same length meanwhile.
            if !chunk.records.is_empty() && chunk.segment_epoch != chosen.epoch {
                return Err(JnError::BadReply(format!(
                    "sent segment {} as written in epoch {}, not the chosen epoch {}",
                    chosen.first_txid, chunk.segment_epoch, chosen.epoch
                )));
            }
            for record in segment::decode_records(&chunk.records).map_err(JnError::BadReply)? {
                if record.txid != next {
                    return Err(JnError::BadReply(format!(
                        "txid {} sent where {next} belongs",
                        record.txid
                    )));
                }
                next += 1;
            }
            if !chunk.records.is_empty() {
                chunks.push(Bytes::from(chunk.records));
            }
        }
        if next != chosen.last_txid + 1 {
            return Err(JnError::BadReply(format!(
                "segment {} sent up to txid {}, not {}",
                chosen.first_txid,
                next - 1,
                chosen.last_txid
            )));
        }
        Ok(chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journalnode's answer: its copy (last txid, in progress) written by
    /// `writer`, and the epoch it accepted a recovery in.
    fn response(state: Option<(u64, bool)>, accepted: u64, writer: u64) -> PrepareRecoveryResponse {
        PrepareRecoveryResponse {
            segment_state: state.map(|(last, in_progress)| SegmentStateProto {
                first_txid: 1,
                last_txid: last,
                in_progress,
                epoch: writer,
            }),
            accepted_in_epoch: accepted,
            last_writer_epoch: writer,
            committed_txid: 0,
        }
    }

    #[test]
    fn the_longest_copy_of_the_newest_epoch_wins() {
        let chosen = choose(&[
            (0, response(Some((10, true)), 0, 1)),
            (1, response(Some((7, true)), 0, 1)),
            (2, response(None, 0, 1)),
        ])
        .expect("consistent")
        .expect("chosen");
        assert_eq!(chosen.0.last_txid, 10);
        assert_eq!(chosen.1, vec![0]);
    }

    #[test]
    fn an_accepted_recovery_beats_a_longer_copy_of_an_older_epoch() {
        let chosen = choose(&[
            (0, response(Some((10, true)), 0, 1)),
            (1, response(Some((7, true)), 0, 1)),
            (2, response(Some((7, true)), 2, 1)),
        ])
        .expect("consistent")
        .expect("chosen");
        assert_eq!(chosen.0.last_txid, 7);
        assert_eq!(chosen.1[0], 2);
        assert!(chosen.1.contains(&1));
    }

    #[test]
    fn copies_of_different_epochs_are_ranked_by_epoch_before_length() {
        // Journalnode 0 kept a longer copy an old writer left; journalnodes
        // 1 and 2 hold what epoch 3 wrote over the same txids.
        let chosen = choose(&[
            (0, response(Some((9, true)), 0, 1)),
            (1, response(Some((5, true)), 0, 3)),
            (2, response(Some((5, true)), 0, 3)),
        ])
        .expect("consistent")
        .expect("chosen");
        assert_eq!((chosen.0.last_txid, chosen.0.epoch), (5, 3));
        assert_eq!(chosen.1, vec![1, 2]);
        // The same length from another epoch is another copy: it is not
        // one of the holders to fetch from.
        let chosen = choose(&[
            (0, response(Some((5, true)), 0, 1)),
            (1, response(Some((5, true)), 0, 3)),
        ])
        .expect("consistent")
        .expect("chosen");
        assert_eq!(chosen.0.epoch, 3);
        assert_eq!(chosen.1, vec![1]);
    }

    #[test]
    fn finalized_beats_in_progress_and_disagreeing_finalized_copies_are_an_error() {
        let chosen = choose(&[
            (0, response(Some((12, true)), 0, 3)),
            (1, response(Some((9, false)), 0, 1)),
        ])
        .expect("consistent")
        .expect("chosen");
        assert_eq!((chosen.0.last_txid, chosen.0.in_progress), (9, false));
        assert!(
            choose(&[
                (0, response(Some((12, false)), 0, 3)),
                (1, response(Some((9, false)), 0, 1)),
            ])
            .is_err()
        );
        assert!(choose(&[(0, response(None, 0, 1))]).expect("ok").is_none());
    }
}
