//! Upstream spool: keep permitted batches through an upstream outage, for
//! exporters that cannot retry.
//!
//! `@vercel/otel` never retries and never reads the status code, so when the
//! upstream is down for the length of a request, a 502 loses that batch for
//! good. With `upstreams.<name>.spool` set, a batch the upstream could not
//! take (unreachable, timed out, 429/5xx after the in-request retries, or
//! the injected credential refused) is queued in memory instead and the
//! client gets a 200; a background task delivers the queue in order with
//! backoff, injecting the credential current *at delivery time* (so a
//! rotation fixes a refused credential). Every spooled batch ends in exactly
//! one `kind: "spool"` audit line: `delivered`, `rejected` (the upstream
//! answered a non-retryable status), `expired` (older than `max_age`) or
//! `lost` (still queued at shutdown after the flush). Bounded by bytes: when
//! the spool is full, the client gets the upstream error as before.
//! Not durable: a restart loses what is queued (and says so, per batch).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::{Notify, watch};

pub use crate::config::spool::SpoolConfig;
use crate::error::ProxyError;
use crate::forward::{self as upstream, retryable};
use crate::metrics::SpanLabels;
use crate::otlp::Encoding;
use crate::shared::Shared;

/// Longest wait between delivery attempts while the upstream stays down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First wait after a failed delivery.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How long the spool keeps delivering after shutdown starts.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// One queued batch: everything needed to forward it later, and to audit it.
#[derive(Debug, Clone)]
pub struct Spooled {
    /// The body as it would have been forwarded (uncompressed).
    pub body: Bytes,
    pub encoding: Encoding,
    pub gzip: bool,
    pub user_agent: Option<HeaderValue>,
    /// Credential *name*: the value is read at delivery time.
    pub credential: String,
    pub request_id: String,
    pub endpoint: String,
    pub provider: Option<String>,
    pub subject: Option<String>,
    pub spans: usize,
    pub enqueued: Instant,
}

/// Metrics of all spools.
#[derive(Clone, Default)]
pub struct SpoolMetrics {
    /// Bytes queued, all spools.
    pub bytes: Gauge,
    /// Batches by upstream and outcome (spooled, full, delivered, rejected, expired, lost).
    pub batches: Family<SpoolLabels, Counter>,
}

/// Labels of `spangate_spool_batches_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpoolLabels {
    pub upstream: String,
    pub outcome: &'static str,
}

impl SpoolMetrics {
    /// Register with the process registry.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "spool_bytes",
            "Bytes of batches queued for an unavailable upstream",
            self.bytes.clone(),
        );
        registry.register(
            "spool_batches",
            "Spooled batches by upstream and outcome (spooled, full, delivered, rejected, expired, lost)",
            self.batches.clone(),
        );
    }

    /// Create the outcome series of `upstream` with zero values.
    pub fn precreate(&self, upstream: &str) {
        for outcome in SPOOL_OUTCOMES {
            let _ = self.batches.get_or_create(&SpoolLabels {
                upstream: upstream.to_string(),
                outcome,
            });
        }
    }

    fn count(&self, upstream: &str, outcome: &'static str) {
        self.batches
            .get_or_create(&SpoolLabels {
                upstream: upstream.to_string(),
                outcome,
            })
            .inc();
    }
}

/// Depth of one spool at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolDepth {
    pub batches: usize,
    pub bytes: u64,
    /// Age of the oldest queued batch.
    pub oldest: Option<Duration>,
}

/// Outcomes of `spangate_spool_batches_total`.
pub const SPOOL_OUTCOMES: [&str; 6] = [
    "spooled",
    "full",
    "delivered",
    "rejected",
    "expired",
    "lost",
];

/// The spool had no room (or is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("spool full")]
pub struct SpoolFull;

/// The spool of one upstream.
pub struct Spool {
    upstream: String,
    config: SpoolConfig,
    queue: Mutex<VecDeque<Spooled>>,
    bytes: AtomicU64,
    closed: AtomicBool,
    wake: Notify,
    metrics: SpoolMetrics,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("upstream", &self.upstream)
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The `kind: "spool"` audit line of one batch's final outcome.
#[derive(Debug, Serialize)]
struct SpoolAudit<'a> {
    kind: &'static str,
    request_id: &'a str,
    endpoint: &'a str,
    upstream: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    result: &'static str,
    spans: usize,
    bytes: usize,
    credential: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_status: Option<u16>,
    delivery_attempts: u32,
    queued_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Spool {
    /// An empty spool for `upstream`.
    pub fn new(upstream: &str, config: SpoolConfig, metrics: SpoolMetrics) -> Self {
        Self {
            upstream: upstream.to_string(),
            config,
            queue: Mutex::new(VecDeque::new()),
            bytes: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
            metrics,
        }
    }

    /// Queue a batch; refused when the spool is full or shut down.
    pub fn try_push(&self, item: Spooled) -> Result<(), SpoolFull> {
        let len = item.body.len() as u64;
        let mut q = lock(&self.queue);
        let used = self.bytes.load(Ordering::Relaxed);
        if self.closed.load(Ordering::Acquire) || used + len > self.config.max_bytes.as_u64() {
            drop(q);
            self.metrics.count(&self.upstream, "full");
            return Err(SpoolFull);
        }
        q.push_back(item);
        self.bytes.fetch_add(len, Ordering::Relaxed);
        drop(q);
        self.metrics
            .bytes
            .inc_by(i64::try_from(len).unwrap_or(i64::MAX));
        self.metrics.count(&self.upstream, "spooled");
        self.wake.notify_one();
        Ok(())
    }

    /// Batches queued now.
    pub fn len(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Queue depth now (for the spool gauges).
    pub fn depth(&self) -> SpoolDepth {
        let q = lock(&self.queue);
        SpoolDepth {
            batches: q.len(),
            bytes: self.bytes.load(Ordering::Relaxed),
            oldest: q.front().map(|i| i.enqueued.elapsed()),
        }
    }

    /// The upstream this spool belongs to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Its configuration.
    pub fn config(&self) -> &SpoolConfig {
        &self.config
    }

    /// What `/admin/v1/status` shows of this spool.
    pub fn status(&self) -> serde_json::Value {
        let q = lock(&self.queue);
        serde_json::json!({
            "batches": q.len(),
            "bytes": self.bytes.load(Ordering::Relaxed),
            "max_bytes": self.config.max_bytes.as_u64(),
            "oldest_ms": q.front().map(|i| u64::try_from(i.enqueued.elapsed().as_millis()).unwrap_or(u64::MAX)),
        })
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn front(&self) -> Option<Spooled> {
        lock(&self.queue).front().cloned()
    }

    fn pop_front(&self) -> Option<Spooled> {
        let item = lock(&self.queue).pop_front()?;
        let len = item.body.len() as u64;
        self.bytes.fetch_sub(len, Ordering::Relaxed);
        self.metrics
            .bytes
            .dec_by(i64::try_from(len).unwrap_or(i64::MAX));
        Some(item)
    }

    /// Deliver the queue until shutdown, then flush for at most
    /// [`SHUTDOWN_FLUSH`] and audit what is left as `lost`.
    pub async fn run(self: Arc<Self>, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        // Shutdown is `true` sent, or the sender gone (the app dropped).
        let mut stopping = *shutdown.borrow();
        while !stopping {
            let Some(item) = self.front() else {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    r = shutdown.changed() => stopping = r.is_err() || *shutdown.borrow(),
                }
                continue;
            };
            attempts += 1;
            match self.deliver(&shared, &item, attempts, None).await {
                Delivery::Done => {
                    attempts = 0;
                    backoff = FIRST_BACKOFF;
                }
                Delivery::Retry => {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        r = shutdown.changed() => stopping = r.is_err() || *shutdown.borrow(),
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        // Shutdown: refuse new batches, flush what we can, account for the rest.
        self.closed.store(true, Ordering::Release);
        let until = Instant::now() + SHUTDOWN_FLUSH;
        while let Some(item) = self.front() {
            if Instant::now() >= until {
                break;
            }
            attempts += 1;
            if let Delivery::Retry = self.deliver(&shared, &item, attempts, Some(until)).await {
                break;
            }
            attempts = 0;
        }
        while let Some(item) = self.pop_front() {
            tracing::error!(upstream = %self.upstream, request_id = %item.request_id, spans = item.spans,
                "spooled batch lost at shutdown (upstream still unavailable)");
            self.finish(&shared, &item, "lost", None, None, attempts, None);
        }
    }

    /// One delivery attempt of the front item; pops it unless it is to be retried.
    async fn deliver(
        &self,
        shared: &Shared,
        item: &Spooled,
        attempts: u32,
        until: Option<Instant>,
    ) -> Delivery {
        if item.enqueued.elapsed() > self.config.max_age {
            self.pop_front();
            tracing::error!(upstream = %self.upstream, request_id = %item.request_id, spans = item.spans,
                "spooled batch expired before the upstream took it");
            self.finish(shared, item, "expired", None, None, attempts, None);
            return Delivery::Done;
        }
        let Some(credential) = shared.secrets.current(&item.credential) else {
            return Delivery::Retry;
        };
        let Some(config) = shared.config.upstreams.get(&self.upstream) else {
            return Delivery::Retry;
        };
        let mut deadline = Instant::now() + config.timeout * upstream::MAX_ATTEMPTS;
        if let Some(u) = until {
            deadline = deadline.min(u);
        }
        let job = upstream::Forward {
            name: &self.upstream,
            config,
            body: item.body.clone(),
            encoding: item.encoding,
            gzip: item.gzip,
            user_agent: item.user_agent.as_ref(),
            request_id: &item.request_id,
            credential: &credential,
            deadline,
        };
        let result =
            upstream::forward(shared.upstream_client(&self.upstream), &shared.metrics, job).await;
        if result.used_previous {
            shared.metrics.credential_fallbacks.inc();
            shared.secrets.record_fallback();
        }
        // The same test that put the batch here decides whether to keep it.
        if spoolable(&result.outcome) {
            return Delivery::Retry;
        }
        self.pop_front();
        let version = Some(credential.version);
        match result.outcome {
            Ok(answer) if answer.status.is_success() => {
                shared
                    .metrics
                    .spans
                    .get_or_create(&SpanLabels {
                        endpoint: item.endpoint.clone(),
                        outcome: "forwarded",
                    })
                    .inc_by(item.spans as u64);
                let status = Some(answer.status.as_u16());
                self.finish(shared, item, "delivered", status, version, attempts, None);
            }
            Ok(answer) => {
                tracing::error!(upstream = %self.upstream, request_id = %item.request_id,
                    status = answer.status.as_u16(), spans = item.spans,
                    "upstream rejected a spooled batch");
                let status = Some(answer.status.as_u16());
                self.finish(shared, item, "rejected", status, version, attempts, None);
            }
            Err(e) => {
                let detail = Some(e.to_string());
                self.finish(shared, item, "rejected", None, version, attempts, detail);
            }
        }
        Delivery::Done
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        shared: &Shared,
        item: &Spooled,
        result: &'static str,
        upstream_status: Option<u16>,
        credential_version: Option<u64>,
        attempts: u32,
        detail: Option<String>,
    ) {
        self.metrics.count(&self.upstream, result);
        shared.audit.emit(&SpoolAudit {
            kind: "spool",
            request_id: &item.request_id,
            endpoint: &item.endpoint,
            upstream: &self.upstream,
            provider: item.provider.as_deref(),
            subject: item.subject.as_deref(),
            result,
            spans: item.spans,
            bytes: item.body.len(),
            credential: &item.credential,
            credential_version,
            upstream_status,
            delivery_attempts: attempts,
            queued_ms: u64::try_from(item.enqueued.elapsed().as_millis()).unwrap_or(u64::MAX),
            detail,
        });
    }
}

enum Delivery {
    /// The item left the queue (delivered, rejected or expired).
    Done,
    /// Keep it and try again after a backoff.
    Retry,
}

/// Should a forwarding outcome be spooled rather than answered?
pub fn spoolable(outcome: &Result<upstream::Answer, ProxyError>) -> bool {
    match outcome {
        Ok(a) => retryable(a.status),
        Err(e) => matches!(
            e,
            ProxyError::UpstreamUnavailable(_)
                | ProxyError::UpstreamTimeout
                | ProxyError::UpstreamAuthFailed
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: usize) -> Spooled {
        Spooled {
            body: Bytes::from(vec![0u8; n]),
            encoding: Encoding::Protobuf,
            gzip: false,
            user_agent: None,
            credential: "c".into(),
            request_id: "r".into(),
            endpoint: "traces".into(),
            provider: None,
            subject: None,
            spans: 1,
            enqueued: Instant::now(),
        }
    }

    #[test]
    fn the_spool_is_bounded_in_bytes_and_fifo() {
        let m = SpoolMetrics::default();
        let s = Spool::new(
            "up",
            SpoolConfig {
                max_bytes: bytesize::ByteSize::b(100),
                max_age: Duration::from_secs(1),
            },
            m.clone(),
        );
        s.try_push(item(60)).expect("fits");
        s.try_push(item(40)).expect("fits exactly");
        assert!(s.try_push(item(1)).is_err(), "full");
        assert_eq!(m.bytes.get(), 100);
        assert_eq!(s.pop_front().map(|i| i.body.len()), Some(60));
        assert_eq!(m.bytes.get(), 40);
        s.try_push(item(60)).expect("room again");
        assert_eq!(s.len(), 2);
        s.closed.store(true, Ordering::Release);
        s.pop_front();
        assert!(s.try_push(item(1)).is_err(), "closed at shutdown");
    }

    #[test]
    fn only_upstream_unavailability_is_spooled() {
        let ans = |code: u16| {
            Ok(upstream::Answer {
                status: http::StatusCode::from_u16(code).unwrap(),
                content_type: None,
                retry_after: None,
                body: Bytes::new(),
            })
        };
        for code in [429, 502, 503, 504] {
            assert!(spoolable(&ans(code)), "{code}");
        }
        for code in [200, 400, 401, 403, 404, 413, 500] {
            assert!(!spoolable(&ans(code)), "{code}");
        }
        assert!(spoolable(&Err(ProxyError::UpstreamTimeout)));
        assert!(spoolable(&Err(ProxyError::UpstreamAuthFailed)));
        assert!(spoolable(&Err(ProxyError::UpstreamUnavailable("x".into()))));
        assert!(!spoolable(&Err(ProxyError::UpstreamUnknown("x".into()))));
    }
}
