//! One call to every journalnode at once (HDFS's `QuorumCall`): the answers
//! are gathered as they come, and the caller stops waiting as soon as it has
//! what it needs — a majority of successes, or so many failures that a
//! majority is impossible, or a fatal answer — or when its time is up.

use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;

use crate::fault::JnError;

/// How many of `n` journalnodes make a majority.
pub(crate) fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Why [`QuorumCall::wait_for`] returned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// Enough successes.
    Succeeded,
    /// Too many failures for enough successes, or everyone answered.
    Failed,
    /// A failure the caller cannot go on after (index into `failures`).
    Fatal(usize),
    TimedOut,
}

type Answer<T> = (usize, Result<T, JnError>);

pub(crate) struct QuorumCall<'n, T> {
    names: &'n [String],
    pending: FuturesUnordered<BoxFuture<'static, Answer<T>>>,
    pub(crate) successes: Vec<(usize, T)>,
    pub(crate) failures: Vec<(usize, JnError)>,
    deadline: tokio::time::Instant,
    timeout: Duration,
    timed_out: bool,
}

impl<'n, T: Send + 'static> QuorumCall<'n, T> {
    /// Starts `calls[i]`, the call to `names[i]`, all at once.
    pub(crate) fn new(
        names: &'n [String],
        calls: Vec<BoxFuture<'static, Result<T, JnError>>>,
        timeout: Duration,
    ) -> Self {
        let pending = calls
            .into_iter()
            .enumerate()
            .map(|(i, call)| -> BoxFuture<'static, Answer<T>> {
                Box::pin(async move { (i, call.await) })
            })
            .collect();
        Self {
            names,
            pending,
            successes: Vec::new(),
            failures: Vec::new(),
            deadline: tokio::time::Instant::now() + timeout,
            timeout,
            timed_out: false,
        }
    }

    /// Waits for the next answer; false when none is left or time is up.
    pub(crate) async fn next(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        match tokio::time::timeout_at(self.deadline, self.pending.next()).await {
            Ok(Some((i, Ok(value)))) => {
                self.successes.push((i, value));
                true
            }
            Ok(Some((i, Err(err)))) => {
                self.failures.push((i, err));
                true
            }
            Ok(None) => false,
            Err(_) => {
                self.timed_out = true;
                false
            }
        }
    }

    /// Waits until `min_successes` succeeded, more than `max_failures`
    /// failed, an answer is `fatal`, or the deadline passes.
    pub(crate) async fn wait_for(
        &mut self,
        min_successes: usize,
        max_failures: usize,
        fatal: impl Fn(&JnError) -> bool,
    ) -> Waited {
        loop {
            if let Some(at) = self.failures.iter().position(|(_, err)| fatal(err)) {
                return Waited::Fatal(at);
            }
            if self.successes.len() >= min_successes {
                return Waited::Succeeded;
            }
            if self.failures.len() > max_failures {
                return Waited::Failed;
            }
            if self.pending.is_empty() {
                return Waited::Failed;
            }
            if !self.next().await {
                return if self.pending.is_empty() {
                    Waited::Failed
                } else {
                    Waited::TimedOut
                };
            }
        }
    }

    /// Waits for a majority of all journalnodes to succeed, failing as soon
    /// as that is impossible.
    pub(crate) async fn wait_for_majority(&mut self, fatal: impl Fn(&JnError) -> bool) -> Waited {
        let n = self.names.len();
        self.wait_for(majority(n), n - majority(n), fatal).await
    }

    /// Collects the answers still coming for up to `grace` more (never past
    /// the deadline), for calls where a fuller answer is worth a short wait.
    pub(crate) async fn linger(&mut self, grace: Duration) {
        let until = self.deadline.min(tokio::time::Instant::now() + grace);
        while !self.pending.is_empty() {
            match tokio::time::timeout_at(until, self.next()).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    }

    pub(crate) fn name(&self, index: usize) -> &str {
        &self.names[index]
    }

    /// Every journalnode that did not succeed, with why: `"jn1: ...; jn2:
    /// no answer within 2000 ms"` (or `"no answer yet"` when the call was
    /// decided before the deadline).
    pub(crate) fn errors(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        for (i, name) in self.names.iter().enumerate() {
            if self.successes.iter().any(|(at, _)| *at == i) {
                continue;
            }
            let why = match self.failures.iter().find(|(at, _)| *at == i) {
                Some((_, err)) => err.to_string(),
                None if self.timed_out => {
                    format!("no answer within {} ms", self.timeout.as_millis())
                }
                // The call was decided before this one answered.
                None => "no answer yet".to_string(),
            };
            out.push(format!("{name}: {why}"));
        }
        out.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after<T: Send + 'static>(
        ms: u64,
        result: Result<T, JnError>,
    ) -> BoxFuture<'static, Result<T, JnError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            result
        })
    }

    fn names() -> Vec<String> {
        vec!["jn1".into(), "jn2".into(), "jn3".into()]
    }

    #[tokio::test(start_paused = true)]
    async fn resolves_on_a_majority_without_waiting_for_the_slow_one() {
        let names = names();
        let mut call = QuorumCall::new(
            &names,
            vec![after(10, Ok(1)), after(20, Ok(2)), after(60_000, Ok(3))],
            Duration::from_secs(5),
        );
        let started = tokio::time::Instant::now();
        assert_eq!(call.wait_for_majority(|_| false).await, Waited::Succeeded);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(call.successes.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn fails_as_soon_as_a_majority_is_impossible_and_names_everyone() {
        let names = names();
        let mut call = QuorumCall::<u32>::new(
            &names,
            vec![
                after(10, Err(JnError::Rpc("refused".into()))),
                after(20, Err(JnError::Rpc("reset".into()))),
                after(60_000, Ok(3)),
            ],
            Duration::from_secs(5),
        );
        assert_eq!(call.wait_for_majority(|_| false).await, Waited::Failed);
        assert_eq!(
            call.errors(),
            "jn1: refused; jn2: reset; jn3: no answer yet"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_and_stops_on_a_fatal_answer() {
        let names = names();
        let mut call = QuorumCall::<u32>::new(
            &names,
            vec![after(10, Ok(1)), after(9_000, Ok(2)), after(9_000, Ok(3))],
            Duration::from_secs(2),
        );
        assert_eq!(call.wait_for_majority(|_| false).await, Waited::TimedOut);
        let mut call = QuorumCall::<u32>::new(
            &names,
            vec![
                after(10, Err(JnError::Rpc("fenced".into()))),
                after(20, Ok(2)),
                after(30, Ok(3)),
            ],
            Duration::from_secs(2),
        );
        assert_eq!(
            call.wait_for_majority(|e| e.to_string() == "fenced").await,
            Waited::Fatal(0)
        );
    }
}
