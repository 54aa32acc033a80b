//! [`FailoverChannel`]: the transport under every namenode call. It holds
//! one lazily connected channel per namenode of a nameservice and sends each
//! request to the namenode believed active, moving on to the next when a
//! namenode answers that it is standby or cannot be reached. Every call site
//! (the lease renewer and the write path included) fails over without
//! knowing it, as HDFS's failover proxy does.
//!
//! Failover works below tonic's codec, on HTTP/2 requests. A request body is
//! one encoded message (ClientNamenode has no client-streaming calls), so it
//! is buffered and can be sent again. A standby namenode rejects a call in
//! its handler, which tonic sends as a trailers-only response: `grpc-status`
//! and the `x-rdfs-exception` metadata arrive in the response headers before
//! any body. The decision is therefore made on the headers alone, and a
//! response that did start (a server-streaming fsck, say) passes through
//! untouched. A namenode must thus refuse a streaming call as standby from
//! its handler, not from inside the stream.
//!
//! Retrying after a connection broke mid-call may send a request twice: the
//! namenode may have executed it before the connection went. A retry is the
//! same HTTP/2 request, headers included, so it carries the call's client id
//! and call id: the namenode answers a retried create, append, rename,
//! delete, truncate or updatePipeline from its retry cache (a standby that
//! took over answers from the edits it tailed), addBlock and complete are
//! idempotent by their arguments, and reads are idempotent anyway.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tonic::transport::Channel;
use tower_service::Service;

use rdfs_common::exception::{EXCEPTION_METADATA_KEY, ExceptionKind};

use crate::client::ClientSettings;
use crate::error::{ClientError, Result};

/// How long one attempt waits when the settings allow no time at all;
/// a zero timeout would fail every call without sending it.
const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1);

/// A `tower` service that sends each gRPC request to the namenodes of one
/// nameservice in turn until one serves it. Cheap to clone; clones share
/// the connections and the belief of which namenode is active.
#[derive(Clone)]
pub(crate) struct FailoverChannel {
    shared: Arc<Shared>,
}

struct Shared {
    namenodes: Vec<Namenode>,
    /// Index of the namenode believed active: where each call starts.
    active: AtomicUsize,
    /// Requests one call may send, over all namenodes, before it fails.
    max_attempts: u32,
    sleep_base: Duration,
    sleep_max: Duration,
    /// How long an attempt waits for response headers, so that a namenode
    /// that accepts connections but never answers (SIGSTOPped, wedged) is
    /// treated as unreachable rather than hanging the call.
    attempt_timeout: Duration,
    /// How long a call keeps retrying a namenode that answers
    /// RetriableException; those answers do not count against the attempts.
    retriable_wait: Duration,
}

struct Namenode {
    addr: String,
    channel: Channel,
}

/// Why one attempt did not serve the call.
enum Failure {
    /// The namenode answered `StandbyException` (its message kept).
    Standby(String),
    /// It answered `RetriableException`: it cannot serve the call yet (an
    /// active just promoted, still in its start-up safe mode) and asks to
    /// be tried again after a pause, as HDFS clients do.
    Retriable(String),
    /// No answer: refused, reset, timed out, or the address did not resolve.
    Unreachable(String),
}

impl Failure {
    fn what(&self) -> &'static str {
        match self {
            Self::Standby(_) => "standby",
            Self::Retriable(_) => "not ready yet",
            Self::Unreachable(_) => "unreachable",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Self::Standby(detail) | Self::Retriable(detail) | Self::Unreachable(detail) => detail,
        }
    }
}

impl FailoverChannel {
    /// Channels to `addrs` (`host:port` each), connecting on first use with
    /// the same transport tuning and timeouts as every rdfs client channel.
    /// Must be called within a tokio runtime.
    pub(crate) fn new<S: AsRef<str>>(addrs: &[S], settings: &ClientSettings) -> Result<Self> {
        if addrs.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no namenode address given".to_string(),
            ));
        }
        let mut namenodes = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let addr = addr.as_ref();
            let channel = rdfs_common::grpc::endpoint(addr, settings.connect_timeout)
                .map_err(|e| {
                    ClientError::InvalidArgument(format!("bad namenode address '{addr}': {e}"))
                })?
                .timeout(settings.socket_timeout)
                .connect_lazy();
            namenodes.push(Namenode {
                addr: addr.to_string(),
                channel,
            });
        }
        Ok(Self {
            shared: Arc::new(Shared {
                namenodes,
                active: AtomicUsize::new(0),
                max_attempts: settings.failover_max_attempts.max(1),
                sleep_base: settings.failover_sleep_base,
                sleep_max: settings.failover_sleep_max,
                attempt_timeout: settings.socket_timeout.max(MIN_ATTEMPT_TIMEOUT),
                retriable_wait: settings.retriable_wait,
            }),
        })
    }

    /// The namenode calls go to first: the last one that served a call.
    pub(crate) fn active_addr(&self) -> &str {
        let shared = &self.shared;
        let index = shared.active.load(Ordering::Acquire) % shared.namenodes.len();
        &shared.namenodes[index].addr
    }
}

impl Service<http::Request<Body>> for FailoverChannel {
    type Response = http::Response<Body>;
    /// Always a [`tonic::Status`], which tonic hands to the caller as is.
    type Error = tonic::Status;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        // Which namenode serves a request is only decided in `call`, which
        // waits for that namenode's channel to be ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { shared.call(request).await })
    }
}

impl Shared {
    async fn call(
        &self,
        request: http::Request<Body>,
    ) -> std::result::Result<http::Response<Body>, tonic::Status> {
        let (parts, body) = request.into_parts();
        // The body was encoded here, so a failure to read it is ours, not a
        // namenode's: pass it on without trying anyone.
        let body = body.collect().await?.to_bytes();
        let count = self.namenodes.len();
        let mut answers: Vec<Option<Failure>> = (0..count).map(|_| None).collect();
        let mut attempts = 0u32;
        let mut round = 0u32;
        let mut not_ready_since: Option<tokio::time::Instant> = None;
        loop {
            // Each round starts at the namenode believed active now; another
            // call may have found the active one meanwhile.
            let first = self.active.load(Ordering::Acquire) % count;
            for step in 0..count {
                let index = (first + step) % count;
                attempts += 1;
                let attempt = http::Request::from_parts(parts.clone(), replayable(&body));
                let failure = match self.attempt(index, attempt).await {
                    Ok(response) => {
                        self.active.store(index, Ordering::Release);
                        return Ok(response);
                    }
                    Err(failure) => failure,
                };
                if let Failure::Retriable(_) = failure {
                    // The active one asked to be tried again after a pause:
                    // the others are no better, and it stays the one
                    // believed active.
                    attempts -= 1;
                    answers[index] = Some(failure);
                    let since = *not_ready_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= self.retriable_wait {
                        return Err(self.give_up(attempts + 1, &answers, index));
                    }
                    break;
                }
                // A TLS mismatch is configuration, not a passing fault.
                let exhausted = attempts >= self.max_attempts
                    || rdfs_common::tls::is_mismatch(failure.detail());
                let next = (index + 1) % count;
                // Move the shared belief on, so calls that start now skip
                // the failed namenode; only the call that moves it logs.
                let moved = count > 1
                    && self
                        .active
                        .compare_exchange(index, next, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok();
                if step + 1 < count && !exhausted {
                    self.log_failover(index, next, &failure, moved);
                }
                answers[index] = Some(failure);
                if exhausted {
                    return Err(self.give_up(attempts, &answers, index));
                }
            }
            let pause = self.pause(round);
            self.log_retry(&answers, pause, attempts, round);
            tokio::time::sleep(pause).await;
            round = round.saturating_add(1);
        }
    }

    /// Sends `request` to namenode `index`: its response, unless it is a
    /// standby's refusal (and there is another namenode to ask) or none came.
    async fn attempt(
        &self,
        index: usize,
        request: http::Request<Body>,
    ) -> std::result::Result<http::Response<Body>, Failure> {
        let mut channel = self.namenodes[index].channel.clone();
        let sent = tokio::time::timeout(self.attempt_timeout, async move {
            std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
            channel.call(request).await
        })
        .await;
        match sent {
            Err(_elapsed) => Err(Failure::Unreachable(format!(
                "no answer within {} ms",
                self.attempt_timeout.as_millis()
            ))),
            Ok(Err(error)) => Err(Failure::Unreachable(rdfs_common::tls::explain(
                &self.namenodes[index].addr,
                &error_chain(&error),
            ))),
            Ok(Ok(response)) => match refusal(&response) {
                // A lone namenode's standby answer is final: there is nobody
                // else to ask, and waiting on it would only delay the error.
                Some((ExceptionKind::Standby, message)) if self.namenodes.len() > 1 => {
                    Err(Failure::Standby(message))
                }
                Some((ExceptionKind::Retriable, message)) => Err(Failure::Retriable(message)),
                _ => Ok(response),
            },
        }
    }

    fn log_failover(&self, from: usize, to: usize, failure: &Failure, moved: bool) {
        let (from, to) = (&self.namenodes[from].addr, &self.namenodes[to].addr);
        let (what, detail) = (failure.what(), failure.detail());
        match failure {
            // Another call already moved on from this namenode and said so.
            _ if !moved => tracing::debug!(%detail, "namenode {from} is {what}; trying {to}"),
            Failure::Standby(_) | Failure::Retriable(_) => {
                tracing::info!(%detail, "namenode {from} is {what}; trying {to}")
            }
            Failure::Unreachable(_) => {
                tracing::info!(%detail, "namenode {from} is {what}; trying {to}")
            }
        }
    }

    /// Logs a full round of failures; the first of a call at info, later
    /// ones quietly, so a namenode restart costs one line per call. (Info,
    /// not warn: failing over is what HA clients do; a call that gives up
    /// reports its error to the caller.)
    fn log_retry(&self, answers: &[Option<Failure>], pause: Duration, attempts: u32, round: u32) {
        let summary = summarize(&self.namenodes, answers);
        let pause_ms = pause.as_millis();
        let max = self.max_attempts;
        if round == 0 {
            tracing::info!(
                attempts,
                max_attempts = max,
                "{summary}; retrying in {pause_ms} ms"
            );
        } else {
            tracing::debug!(
                attempts,
                max_attempts = max,
                "{summary}; retrying in {pause_ms} ms"
            );
        }
    }

    /// The pause after the `round`th full round of failures: the base
    /// doubling up to the maximum, within ±10% so that clients that failed
    /// together do not all come back at the same instant.
    fn pause(&self, round: u32) -> Duration {
        let nominal = self
            .sleep_base
            .saturating_mul(1u32 << round.min(20))
            .min(self.sleep_max);
        let spread = u64::try_from(nominal.as_millis() / 5).unwrap_or(u64::MAX);
        let jitter = Duration::from_millis(rand::random_range(0..=spread));
        nominal.saturating_sub(nominal / 10) + jitter
    }

    /// The error of a call no namenode served, naming every namenode tried
    /// and its last answer. It keeps the kind of the last failure: a
    /// `StandbyException` when the last namenode tried was standby, else a
    /// transport failure.
    fn give_up(&self, attempts: u32, answers: &[Option<Failure>], last: usize) -> tonic::Status {
        let summary = summarize(&self.namenodes, answers);
        let message = format!("{summary} (gave up after {attempts} attempts)");
        match answers[last] {
            Some(Failure::Standby(_)) => ExceptionKind::Standby.status(message),
            Some(Failure::Retriable(_)) => ExceptionKind::Retriable.status(message),
            _ => tonic::Status::unavailable(message),
        }
    }
}

/// "a:1 is standby: ...; b:2 is unreachable: ..." for the namenodes tried.
fn summarize(namenodes: &[Namenode], answers: &[Option<Failure>]) -> String {
    namenodes
        .iter()
        .zip(answers)
        .filter_map(|(namenode, answer)| {
            let answer = answer.as_ref()?;
            Some(format!(
                "{} is {}: {}",
                namenode.addr,
                answer.what(),
                answer.detail()
            ))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A fresh body over the buffered request, for one attempt.
fn replayable(body: &Bytes) -> Body {
    Body::new(Full::new(body.clone()))
}

/// A standby's or a not-yet-ready namenode's refusal, if `response` is
/// one: its kind and message. Only a trailers-only response has
/// `grpc-status` among its headers; its metadata (our exception kind)
/// travels there too.
fn refusal(response: &http::Response<Body>) -> Option<(ExceptionKind, String)> {
    let headers = response.headers();
    headers.get("grpc-status")?;
    let kind = headers.get(EXCEPTION_METADATA_KEY)?.to_str().ok()?;
    let kind = ExceptionKind::from_name(kind)
        .filter(|k| matches!(k, ExceptionKind::Standby | ExceptionKind::Retriable))?;
    let message = headers
        .get("grpc-message")
        .map(|value| percent_decode(value.as_bytes()))
        .unwrap_or_else(|| kind.name().to_string());
    Some((kind, message))
}

/// Decodes a `grpc-message` header, which gRPC percent-encodes. A malformed
/// escape is kept as it is: this is peer input and only goes into messages.
fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some((&byte, tail)) = rest.split_first() {
        let escaped = (byte == b'%')
            .then(|| tail.get(..2))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                rest = &tail[2..];
            }
            None => {
                out.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An error with its causes, as tonic's transport errors say only
/// "transport error" at the top and the useful part (connection refused,
/// DNS failure) further down.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut link = Some(error);
    while let Some(cause) = link {
        let text = cause.to_string();
        // Links that say nothing beyond "this failed" are left out.
        let vague = text == "transport error" && cause.source().is_some();
        if !vague && parts.last() != Some(&text) {
            parts.push(text);
        }
        link = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(base_ms: u64, max_ms: u64) -> Shared {
        Shared {
            namenodes: Vec::new(),
            active: AtomicUsize::new(0),
            max_attempts: 1,
            sleep_base: Duration::from_millis(base_ms),
            sleep_max: Duration::from_millis(max_ms),
            attempt_timeout: Duration::from_secs(1),
            retriable_wait: Duration::from_secs(1),
        }
    }

    #[test]
    fn pauses_double_up_to_the_maximum_within_ten_percent() {
        let policy = shared(50, 500);
        let within = |pause: Duration, nominal: u64| {
            let ms = pause.as_millis() as u64;
            (nominal * 9 / 10..=nominal * 11 / 10).contains(&ms)
        };
        for _ in 0..100 {
            assert!(within(policy.pause(0), 50));
            assert!(within(policy.pause(1), 100));
            assert!(within(policy.pause(3), 400));
            assert!(within(policy.pause(4), 500));
            assert!(within(policy.pause(u32::MAX), 500));
        }
        assert_eq!(shared(0, 0).pause(7), Duration::ZERO);
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode(b"a%20b"), "a b");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
        assert_eq!(percent_decode(b"%C3%A9t%C3%A9"), "été");
    }
}
