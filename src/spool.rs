//! Upstream spool: keep permitted batches through an upstream outage (and,
//! with `ack: spooled`, answer the exporter as soon as a batch is durable).
//!
//! `@vercel/otel` never retries and never reads the status code: whatever
//! spangate acknowledges, spangate alone must deliver. Per upstream, with
//! `upstreams.<name>.spool`:
//! - **where**: memory only, or with `dir` an on-disk segment log (see
//!   `log`) of CRC-framed, versioned records (`record`) plus a ledger;
//! - **when a batch enters**: `ack: upstream` spools what the upstream could
//!   not take after the in-request attempts; `ack: spooled` appends every
//!   permitted batch and answers 200 only after the fsync that covers it
//!   (group commit: `fsync: always` shares one fsync among concurrent
//!   appends, `interval(d)` makes at most one per `d`);
//! - **delivery** (`run`): one task per upstream starts batches in order,
//!   up to `window` in flight, with the credential current *at delivery
//!   time* and the original `x-request-id`; after a failure it probes with
//!   one batch at a time and backs off (honouring `Retry-After`);
//! - **at-least-once**: a batch leaves the queue only on a 2xx, a
//!   non-retryable answer (dead letter), `max_age` or a purge. A timed-out
//!   attempt may have been processed: it counts as a possible duplicate and
//!   the attempt timeout jumps to `max_attempt_timeout` (halving back after
//!   answers faster than a quarter of it), so a slow-but-working upstream is not hammered and
//!   duplicates stay within what was in flight;
//! - **shutdown**: delivery goes on for `drain`, then what is left stays on
//!   disk (audited `kept`) or, memory only, is audited `lost`.
//!
//! Every batch that leaves the queue gets exactly one `kind: "spool"` audit
//! line: `delivered`, `dead_lettered`, `expired`, `purged`, `kept`, `lost`.
//!
//! This module takes only what delivery needs ([`SpoolDeps`]), not the
//! shared handles, so it sits beneath them.

pub mod log;
pub mod record;

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::HeaderValue;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinSet;

use crate::audit::Audit;
use crate::client::HttpClient;
use crate::config::UpstreamConfig;
pub use crate::config::spool::{AckMode, FsyncPolicy, SpoolConfig};
use crate::error::ProxyError;
use crate::forward::{self as upstream, retryable};
use crate::metrics::{Metrics, SpanLabels};
use crate::otlp::Encoding;
use crate::secrets::SecretStore;
use log::{Appender, Ledger, Loc, Position};

/// Longest wait between delivery attempts while the upstream stays down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First wait after a failed delivery.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// `Retry-After` sent with a refusal because the spool is full.
pub const FULL_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Most dead letters listed by inspect.
const INSPECT_MAX: usize = 1000;

/// One queued batch: everything needed to forward it later, and to audit it.
#[derive(Debug, Clone)]
pub struct Spooled {
    /// The body as it would have been forwarded (identity stamped, uncompressed).
    pub body: Bytes,
    pub encoding: Encoding,
    /// Send `Content-Encoding: gzip` (compressed at delivery).
    pub gzip: bool,
    /// The OTLP signal, which picks the upstream's target (`/v1/metrics`
    /// ...). None only for records of format 1, written before it was
    /// stored: delivery then looks it up by endpoint name in the policy.
    pub signal: Option<crate::otlp::Signal>,
    pub user_agent: Option<HeaderValue>,
    /// Credential *name*: the value is read at delivery time.
    pub credential: String,
    pub request_id: String,
    pub endpoint: String,
    pub provider: Option<String>,
    pub subject: Option<String>,
    pub spans: usize,
    /// Wall-clock enqueue time (ms since the Unix epoch): survives restarts.
    pub enqueued_ms: u64,
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Spooled {
    fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.enqueued_ms))
    }
}

/// What delivery needs from the process: nothing more.
#[derive(Clone)]
pub struct SpoolDeps {
    /// Upstream name (metrics and logs).
    pub name: String,
    pub client: HttpClient,
    pub secrets: Arc<SecretStore>,
    pub metrics: Arc<Metrics>,
    pub audit: Audit,
    pub upstream: UpstreamConfig,
    /// The policy, for the signal of a spooled batch's endpoint.
    pub policy: Arc<crate::policy::PolicyHolder>,
}

/// Metrics of all spools.
#[derive(Clone, Default)]
pub struct SpoolMetrics {
    /// Bytes queued (records, dead letters included), by upstream.
    pub bytes: Family<UpstreamLabel, Gauge>,
    /// Batches by upstream and outcome.
    pub batches: Family<SpoolLabels, Counter>,
    /// Deliveries that may have reached the upstream twice (timed-out
    /// attempts resent, batches replayed after a crash while in flight).
    pub possible_duplicates: Family<UpstreamLabel, Counter>,
    /// Bytes cut from corrupt or torn segment tails at start.
    pub discarded_bytes: Family<UpstreamLabel, Counter>,
}

/// Label of per-upstream spool metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    pub upstream: String,
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
            "Bytes held by the spool (queued and dead-lettered records)",
            self.bytes.clone(),
        );
        registry.register(
            "spool_batches",
            "Spooled batches by upstream and outcome (spooled, full, delivered, dead_lettered, expired, purged, replayed, kept, lost)",
            self.batches.clone(),
        );
        registry.register(
            "spool_possible_duplicates",
            "Deliveries that may have reached the upstream more than once",
            self.possible_duplicates.clone(),
        );
        registry.register(
            "spool_discarded_bytes",
            "Bytes cut from corrupt or torn spool segments at start",
            self.discarded_bytes.clone(),
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
        let l = Self::label(upstream);
        let _ = self.bytes.get_or_create(&l);
        let _ = self.possible_duplicates.get_or_create(&l);
        let _ = self.discarded_bytes.get_or_create(&l);
    }

    fn count(&self, upstream: &str, outcome: &'static str) {
        self.batches
            .get_or_create(&SpoolLabels {
                upstream: upstream.to_string(),
                outcome,
            })
            .inc();
    }

    fn label(upstream: &str) -> UpstreamLabel {
        UpstreamLabel {
            upstream: upstream.to_string(),
        }
    }
}

/// Depth of one spool at one instant (read by the scrape-time collector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolDepth {
    pub batches: usize,
    pub bytes: u64,
    /// Age of the oldest queued batch.
    pub oldest: Option<Duration>,
}

/// Outcomes of `spangate_spool_batches_total`.
pub const SPOOL_OUTCOMES: [&str; 9] = [
    "spooled",
    "full",
    "delivered",
    "dead_lettered",
    "expired",
    "purged",
    "replayed",
    "kept",
    "lost",
];

/// Why the spool did not take a batch. Every refusal is a retryable 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolRefused {
    #[error("spool full ({used} of {max} bytes)")]
    Full { used: u64, max: u64 },
    #[error("spool disk write failed: {0}")]
    Disk(String),
    #[error("spool closed (shutting down)")]
    Closed,
}

impl SpoolRefused {
    /// Reason code for audit and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SpoolRefused::Full { .. } => "spool_full",
            SpoolRefused::Disk(_) => "spool_disk",
            SpoolRefused::Closed => "spool_closed",
        }
    }
}

/// Why an admin operation on a spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolOpError {
    #[error("spool disk operation failed: {0}")]
    Io(#[from] io::Error),
    #[error("the spool writer has stopped")]
    Stopped,
}

/// Could not open a spool directory.
#[derive(Debug, thiserror::Error)]
#[error("spool of upstream {upstream} at {dir}: {err}")]
pub struct SpoolOpenError {
    pub upstream: String,
    pub dir: String,
    pub err: io::Error,
}

/// One queued batch in the index.
#[derive(Debug)]
struct Entry {
    seq: u64,
    /// Body empty when `loc` is set (it is read back from disk).
    item: Spooled,
    loc: Option<Loc>,
    bytes: u64,
    in_flight: bool,
    attempts: u32,
}

/// One dead letter in the index.
#[derive(Debug)]
struct Dead {
    item: Spooled,
    bytes: u64,
    status: Option<u16>,
}

#[derive(Debug, Default)]
struct State {
    entries: VecDeque<Entry>,
    dead: VecDeque<Dead>,
    dead_bytes: u64,
    /// Bytes of entries, dead letters and appends not yet durable.
    bytes: u64,
    /// Highest sequence durable and indexed.
    last_seq: u64,
    /// Every sequence at or below it is finished.
    watermark: u64,
    /// Highest sequence finished (may be above `watermark`: batches finish
    /// out of order within the window).
    high: u64,
    /// Disk segments with unfinished records: id → last sequence.
    segments: std::collections::BTreeMap<u64, u64>,
    active_segment: u64,
    /// The delivery task has stopped: appends are kept (disk) or refused.
    stopped: bool,
}

impl State {
    /// What the ledger records: the watermark, the newest finished batch,
    /// and the queued batches older than it (the holes: in flight or
    /// waiting for a retry; at most a window's worth in steady delivery).
    fn position(&self) -> Position {
        let high = self.high.max(self.watermark);
        Position {
            watermark: self.watermark,
            high,
            holes: self
                .entries
                .iter()
                .map(|e| e.seq)
                .take_while(|s| *s < high)
                // One more than a slot holds tells the ledger to lower `high`.
                .take(log::MAX_HOLES + 1)
                .collect(),
        }
    }
}

/// Commands to the disk writer thread.
enum Cmd {
    Append {
        frame: Vec<u8>,
        item: Spooled,
        reply: oneshot::Sender<io::Result<()>>,
    },
    DeadLetter {
        frame: Vec<u8>,
        item: Spooled,
        status: Option<u16>,
        reply: oneshot::Sender<io::Result<()>>,
    },
    ReplayDead {
        reply: oneshot::Sender<io::Result<usize>>,
    },
    Purge {
        dead: bool,
        reply: oneshot::Sender<io::Result<Vec<Spooled>>>,
    },
}

struct Disk {
    dir: PathBuf,
    tx: Mutex<mpsc::Sender<Cmd>>,
    ledger: Arc<Mutex<Ledger>>,
}

/// Shared between the spool handle, its delivery task and its writer thread.
struct Inner {
    upstream: String,
    config: SpoolConfig,
    ack: AckMode,
    state: Mutex<State>,
    wake: Notify,
    metrics: SpoolMetrics,
    audit: Audit,
}

/// The spool of one upstream.
pub struct Spool {
    inner: Arc<Inner>,
    disk: Option<Arc<Disk>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("upstream", &self.inner.upstream)
            .finish_non_exhaustive()
    }
}

/// The `kind: "spool"` audit line of one batch's outcome.
#[derive(Debug, Serialize)]
struct SpoolAudit<'a> {
    kind: &'static str,
    request_id: &'a str,
    endpoint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<&'static str>,
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

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Inner {
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        item: &Spooled,
        bytes: u64,
        result: &'static str,
        upstream_status: Option<u16>,
        credential_version: Option<u64>,
        attempts: u32,
        detail: Option<String>,
    ) {
        self.metrics.count(&self.upstream, result);
        self.audit.emit(&SpoolAudit {
            kind: "spool",
            request_id: &item.request_id,
            endpoint: &item.endpoint,
            signal: item.signal.map(crate::otlp::Signal::as_str),
            upstream: &self.upstream,
            provider: item.provider.as_deref(),
            subject: item.subject.as_deref(),
            result,
            spans: item.spans,
            bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
            credential: &item.credential,
            credential_version,
            upstream_status,
            delivery_attempts: attempts,
            queued_ms: u64::try_from(item.age().as_millis()).unwrap_or(u64::MAX),
            detail,
        });
    }

    /// Refresh the bytes gauge (depth and oldest age are read at scrape time).
    fn gauges(&self, st: &State) {
        let l = SpoolMetrics::label(&self.upstream);
        self.metrics.bytes.get_or_create(&l).set(gauge(st.bytes));
    }
}

impl Spool {
    /// A memory-only spool for `upstream`.
    pub fn memory(
        upstream: &str,
        config: SpoolConfig,
        metrics: SpoolMetrics,
        audit: Audit,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                upstream: upstream.to_string(),
                config,
                ack: AckMode::Upstream,
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                metrics,
                audit,
            }),
            disk: None,
            closed: AtomicBool::new(false),
        }
    }

    /// Open the spool of `upstream`: on disk when `config.dir` is set
    /// (recovering what is there, with one audit line per cut tail), in
    /// memory otherwise. Blocking file I/O: call before serving.
    pub fn open(
        upstream: &str,
        config: SpoolConfig,
        ack: AckMode,
        metrics: SpoolMetrics,
        audit: Audit,
    ) -> Result<Self, SpoolOpenError> {
        let Some(dir) = config.dir.clone() else {
            let mut s = Self::memory(upstream, config, metrics, audit);
            if let Some(inner) = Arc::get_mut(&mut s.inner) {
                inner.ack = ack;
            }
            return Ok(s);
        };
        let err = |err| SpoolOpenError {
            upstream: upstream.to_string(),
            dir: dir.display().to_string(),
            err,
        };
        std::fs::create_dir_all(dir.join("dead")).map_err(err)?;
        let (ledger, finished, ledger_reset) = Ledger::open(&dir.join("ledger")).map_err(err)?;
        let rec = log::recover(&dir, &finished).map_err(err)?;
        let dead = log::recover(&dir.join("dead"), &Position::default()).map_err(err)?;
        let appender = Appender::create(&dir, rec.next_segment).map_err(err)?;
        let dead_appender = Appender::create(&dir.join("dead"), dead.next_segment).map_err(err)?;
        let inner = Arc::new(Inner {
            upstream: upstream.to_string(),
            config,
            ack,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            metrics,
            audit,
        });
        if ledger_reset {
            tracing::warn!(upstream, dir = %dir.display(),
                "spool ledger unreadable: everything on disk will be re-delivered (duplicates possible)");
        }
        for d in rec.discarded.iter().chain(dead.discarded.iter()) {
            tracing::warn!(upstream, segment = %d.segment, offset = d.offset, bytes = d.bytes,
                reason = %d.reason, "spool segment cut at its last good record");
            inner
                .metrics
                .discarded_bytes
                .get_or_create(&SpoolMetrics::label(upstream))
                .inc_by(d.bytes);
            inner.audit.emit(&serde_json::json!({
                "kind": "spool",
                "result": "recovered",
                "upstream": upstream,
                "segment": d.segment,
                "offset": d.offset,
                "discarded_bytes": d.bytes,
                "detail": d.reason,
            }));
        }
        {
            let mut st = lock(&inner.state);
            st.watermark = rec.watermark;
            st.high = finished.high.max(finished.watermark);
            st.last_seq = rec.next_seq - 1;
            st.segments = rec.segments;
            st.active_segment = appender.id;
            for (seq, loc, item) in rec.records {
                st.bytes += loc.len;
                st.entries.push_back(Entry {
                    seq,
                    item,
                    loc: Some(loc),
                    bytes: loc.len,
                    in_flight: false,
                    attempts: 0,
                });
            }
            for (_, loc, item) in dead.records {
                st.bytes += loc.len;
                st.dead_bytes += loc.len;
                st.dead.push_back(Dead {
                    item,
                    bytes: loc.len,
                    status: None,
                });
            }
            if !st.entries.is_empty() {
                tracing::info!(
                    upstream,
                    batches = st.entries.len(),
                    bytes = st.bytes,
                    "spool: replaying batches found on disk"
                );
                // Whatever was in flight at the crash may reach the upstream again.
                let window = inner.config.window.min(st.entries.len()) as u64;
                inner
                    .metrics
                    .possible_duplicates
                    .get_or_create(&SpoolMetrics::label(upstream))
                    .inc_by(window);
            }
            inner.gauges(&st);
        }
        let (tx, rx) = mpsc::channel();
        let disk = Arc::new(Disk {
            dir: dir.clone(),
            tx: Mutex::new(tx),
            ledger: Arc::new(Mutex::new(ledger)),
        });
        let writer = Writer {
            inner: inner.clone(),
            dir: dir.clone(),
            ledger: disk.ledger.clone(),
            main: appender,
            dead: dead_appender,
            next_seq: rec.next_seq,
            dead_seq: dead.next_seq,
            last_sync: Instant::now(),
        };
        std::thread::Builder::new()
            .name(format!("spool-{upstream}"))
            .spawn(move || writer.run(rx))
            .map_err(err)?;
        Ok(Self {
            inner,
            disk: Some(disk),
            closed: AtomicBool::new(false),
        })
    }

    /// The upstream this spool belongs to.
    pub fn upstream(&self) -> &str {
        &self.inner.upstream
    }

    /// Its configuration.
    pub fn config(&self) -> &SpoolConfig {
        &self.inner.config
    }

    /// Queue depth now (for the spool gauges).
    pub fn depth(&self) -> SpoolDepth {
        let st = lock(&self.inner.state);
        SpoolDepth {
            batches: st.entries.len(),
            bytes: st.entries.iter().map(|e| e.bytes).sum(),
            oldest: st.entries.front().map(|e| e.item.age()),
        }
    }

    /// The acknowledgement mode of its upstream.
    pub fn ack(&self) -> AckMode {
        self.inner.ack
    }

    /// True when records reach the disk.
    pub fn durable(&self) -> bool {
        self.disk.is_some()
    }

    /// Add a batch; `Ok` only once it is stored (on disk: written and
    /// covered by an fsync). Refused when full, on a disk error, or when a
    /// memory-only spool has stopped delivering.
    pub async fn append(&self, item: Spooled) -> Result<(), SpoolRefused> {
        let inner = &self.inner;
        let frame = self.disk.as_ref().map(|_| record::encode(0, &item));
        let len = frame
            .as_ref()
            .map_or(item.body.len() as u64, |f| f.len() as u64);
        {
            let mut st = lock(&inner.state);
            if self.closed.load(Ordering::Acquire) {
                drop(st);
                inner.metrics.count(&inner.upstream, "full");
                return Err(SpoolRefused::Closed);
            }
            let max = inner.config.max_bytes.as_u64();
            if st.bytes + len > max {
                let used = st.bytes;
                drop(st);
                inner.metrics.count(&inner.upstream, "full");
                return Err(SpoolRefused::Full { used, max });
            }
            st.bytes += len;
            if self.disk.is_none() {
                st.last_seq += 1;
                let seq = st.last_seq;
                st.entries.push_back(Entry {
                    seq,
                    item,
                    loc: None,
                    bytes: len,
                    in_flight: false,
                    attempts: 0,
                });
                inner.gauges(&st);
                drop(st);
                inner.metrics.count(&inner.upstream, "spooled");
                inner.wake.notify_one();
                return Ok(());
            }
        }
        let (Some(disk), Some(frame)) = (&self.disk, frame) else {
            return Err(SpoolRefused::Closed);
        };
        let (reply, rx) = oneshot::channel();
        let mut meta = item;
        meta.body = Bytes::new();
        let sent = lock(&disk.tx)
            .send(Cmd::Append {
                frame,
                item: meta,
                reply,
            })
            .is_ok();
        let result = if sent {
            rx.await
                .unwrap_or_else(|_| Err(io::Error::other("spool writer stopped")))
        } else {
            Err(io::Error::other("spool writer stopped"))
        };
        match result {
            Ok(()) => {
                inner.metrics.count(&inner.upstream, "spooled");
                Ok(())
            }
            Err(e) => {
                lock(&inner.state).bytes -= len;
                inner.metrics.count(&inner.upstream, "full");
                tracing::error!(upstream = %inner.upstream, error = %e,
                    "spool append failed: batch refused with a retryable 503");
                Err(SpoolRefused::Disk(e.to_string()))
            }
        }
    }

    /// Batches queued now.
    pub fn len(&self) -> usize {
        lock(&self.inner.state).entries.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What `/admin/v1/status` shows of this spool.
    pub fn status(&self) -> serde_json::Value {
        let c = &self.inner.config;
        let st = lock(&self.inner.state);
        self.inner.gauges(&st);
        serde_json::json!({
            "storage": if self.disk.is_some() { "disk" } else { "memory" },
            "dir": c.dir.as_ref().map(|d| d.display().to_string()),
            "ack": match self.inner.ack { AckMode::Upstream => "upstream", AckMode::Spooled => "spooled" },
            "fsync": match c.fsync {
                FsyncPolicy::Always => "always".to_string(),
                FsyncPolicy::Interval(d) => format!("interval({})", humantime::format_duration(d)),
            },
            "batches": st.entries.len(),
            "in_flight": st.entries.iter().filter(|e| e.in_flight).count(),
            "bytes": st.bytes,
            "max_bytes": c.max_bytes.as_u64(),
            "oldest_ms": st.entries.front().map(|e| u64::try_from(e.item.age().as_millis()).unwrap_or(u64::MAX)),
            "dead_letters": st.dead.len(),
            "dead_letter_bytes": st.dead_bytes,
            "window": c.window,
            "delivering": !st.stopped,
        })
    }

    /// The oldest `limit` queued batches and dead letters (metadata only).
    pub fn inspect(&self, limit: usize) -> serde_json::Value {
        let limit = limit.min(INSPECT_MAX);
        let view = |item: &Spooled, bytes: u64| {
            serde_json::json!({
                "request_id": item.request_id,
                "endpoint": item.endpoint,
                // null: a record from before signals were stored (looked up
                // by endpoint at delivery).
                "signal": item.signal.map(crate::otlp::Signal::as_str),
                "provider": item.provider,
                "subject": item.subject,
                "credential": item.credential,
                "spans": item.spans,
                "bytes": bytes,
                "age_ms": u64::try_from(item.age().as_millis()).unwrap_or(u64::MAX),
            })
        };
        let st = lock(&self.inner.state);
        let queued: Vec<_> = st
            .entries
            .iter()
            .take(limit)
            .map(|e| {
                let mut v = view(&e.item, e.bytes);
                v["seq"] = e.seq.into();
                v["attempts"] = e.attempts.into();
                v["in_flight"] = e.in_flight.into();
                v
            })
            .collect();
        let dead: Vec<_> = st
            .dead
            .iter()
            .take(limit)
            .map(|d| {
                let mut v = view(&d.item, d.bytes);
                v["upstream_status"] = d.status.into();
                v
            })
            .collect();
        serde_json::json!({
            "upstream": self.inner.upstream,
            "batches": st.entries.len(),
            "dead_letters": st.dead.len(),
            "queued": queued,
            "dead": dead,
        })
    }

    /// Move every dead letter back to the end of the queue (fresh `max_age`).
    pub async fn replay_dead(&self) -> Result<usize, SpoolOpError> {
        let inner = &self.inner;
        let n = match &self.disk {
            Some(disk) => {
                let (reply, rx) = oneshot::channel();
                lock(&disk.tx)
                    .send(Cmd::ReplayDead { reply })
                    .map_err(|_| SpoolOpError::Stopped)?;
                rx.await.map_err(|_| SpoolOpError::Stopped)??
            }
            None => {
                let mut st = lock(&inner.state);
                let dead: Vec<Dead> = st.dead.drain(..).collect();
                st.dead_bytes = 0;
                let n = dead.len();
                for mut d in dead {
                    st.last_seq += 1;
                    d.item.enqueued_ms = now_ms();
                    let seq = st.last_seq;
                    st.entries.push_back(Entry {
                        seq,
                        item: d.item,
                        loc: None,
                        bytes: d.bytes,
                        in_flight: false,
                        attempts: 0,
                    });
                }
                inner.gauges(&st);
                n
            }
        };
        for _ in 0..n {
            inner.metrics.count(&inner.upstream, "replayed");
        }
        inner.wake.notify_one();
        Ok(n)
    }

    /// Drop every queued batch (or every dead letter), one audit line each.
    pub async fn purge(&self, dead: bool) -> Result<usize, SpoolOpError> {
        let inner = &self.inner;
        let items: Vec<(Spooled, u64)> = match &self.disk {
            Some(disk) => {
                let (reply, rx) = oneshot::channel();
                lock(&disk.tx)
                    .send(Cmd::Purge { dead, reply })
                    .map_err(|_| SpoolOpError::Stopped)?;
                rx.await
                    .map_err(|_| SpoolOpError::Stopped)??
                    .into_iter()
                    .map(|i| (i, 0))
                    .collect()
            }
            None => {
                let mut st = lock(&inner.state);
                let out: Vec<(Spooled, u64)> = if dead {
                    st.dead_bytes = 0;
                    st.dead.drain(..).map(|d| (d.item, d.bytes)).collect()
                } else {
                    let w = st.last_seq;
                    st.watermark = w;
                    st.high = w;
                    st.entries.drain(..).map(|e| (e.item, e.bytes)).collect()
                };
                st.bytes -= out.iter().map(|(_, b)| b).sum::<u64>();
                inner.gauges(&st);
                out
            }
        };
        for (item, bytes) in &items {
            inner.finish(
                item,
                *bytes,
                "purged",
                None,
                None,
                0,
                Some(
                    if dead {
                        "dead letter purged"
                    } else {
                        "purged by an operator"
                    }
                    .into(),
                ),
            );
        }
        Ok(items.len())
    }

    /// Deliver the queue until shutdown, then for at most `drain`; what is
    /// left stays on disk (audited `kept`) or, in memory, is audited `lost`.
    pub async fn run(self: Arc<Self>, deps: SpoolDeps, mut shutdown: watch::Receiver<bool>) {
        let inner = self.inner.clone();
        let base_timeout = deps.upstream.timeout;
        let max_timeout = inner
            .config
            .max_attempt_timeout
            .unwrap_or(base_timeout * 6)
            .max(base_timeout);
        let mut attempt_timeout = base_timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut retry_at: Option<Instant> = None;
        let mut healthy = true;
        let mut in_flight: JoinSet<AttemptResult> = JoinSet::new();
        let mut stopping = *shutdown.borrow();
        let mut drain_until = stopping.then(|| Instant::now() + inner.config.drain);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            // Start what the window allows, oldest first.
            let limit = if healthy { inner.config.window } else { 1 };
            while in_flight.len() < limit && retry_at.is_none_or(|t| Instant::now() >= t) {
                let Some((seq, item, loc, attempts)) = self.next_pending() else {
                    break;
                };
                if item.age() > inner.config.max_age {
                    if let Some(e) = self.remove(seq) {
                        tracing::error!(upstream = %inner.upstream, request_id = %item.request_id,
                            spans = item.spans, "spooled batch expired before the upstream took it");
                        inner.finish(&e.item, e.bytes, "expired", None, None, attempts, None);
                    }
                    continue;
                }
                let deps = deps.clone();
                let dir = self.disk.as_ref().map(|d| d.dir.clone());
                let timeout = attempt_timeout;
                in_flight.spawn(attempt(deps, dir, seq, item, loc, timeout));
            }
            let idle = in_flight.is_empty() && self.is_empty();
            if stopping && idle {
                break;
            }
            tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let Ok(done) = done else { continue };
                    let started = done.elapsed;
                    match self.settle(&deps, done).await {
                        Settled::Delivered => {
                            healthy = true;
                            backoff = FIRST_BACKOFF;
                            // Shrink back only after clearly fast answers.
                            if started < attempt_timeout / 4 {
                                attempt_timeout = (attempt_timeout / 2).max(base_timeout);
                            }
                        }
                        Settled::Retry { retry_after, timed_out } => {
                            healthy = false;
                            if timed_out {
                                attempt_timeout = max_timeout;
                            }
                            let wait = retry_after.map_or(backoff, |r| r.max(backoff));
                            let at = Instant::now() + wait;
                            retry_at = Some(retry_at.map_or(at, |t| t.max(at)));
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                        Settled::Gone => {}
                    }
                }
                _ = inner.wake.notified() => {}
                _ = tick.tick() => {
                    inner.gauges(&lock(&inner.state));
                }
                _ = sleep_until(retry_at), if retry_at.is_some() => retry_at = None,
                r = shutdown.changed(), if !stopping => {
                    if r.is_err() || *shutdown.borrow() {
                        stopping = true;
                        drain_until = Some(Instant::now() + inner.config.drain);
                    }
                }
                _ = sleep_until(drain_until), if drain_until.is_some() => break,
            }
        }
        in_flight.abort_all();
        while in_flight.join_next().await.is_some() {}
        let left: Vec<(Spooled, u64, u32)> = {
            let mut st = lock(&inner.state);
            st.stopped = true;
            if self.disk.is_none() {
                self.closed.store(true, Ordering::Release);
                let out: Vec<_> = st
                    .entries
                    .drain(..)
                    .map(|e| (e.item, e.bytes, e.attempts))
                    .collect();
                st.bytes -= out.iter().map(|(_, b, _)| b).sum::<u64>();
                out
            } else {
                st.entries
                    .iter_mut()
                    .map(|e| {
                        e.in_flight = false;
                        (e.item.clone(), e.bytes, e.attempts)
                    })
                    .collect()
            }
        };
        let (result, detail) = if self.disk.is_some() {
            (
                "kept",
                "left on disk at shutdown; delivered after the next start",
            )
        } else {
            ("lost", "memory-only spool: still queued at shutdown")
        };
        if !left.is_empty() {
            if self.disk.is_some() {
                tracing::warn!(upstream = %inner.upstream, batches = left.len(), "spool: batches kept on disk at shutdown");
            } else {
                tracing::error!(upstream = %inner.upstream, batches = left.len(),
                    "spooled batches lost at shutdown (memory-only spool, upstream still unavailable)");
            }
        }
        for (item, bytes, attempts) in &left {
            inner.finish(
                item,
                *bytes,
                result,
                None,
                None,
                *attempts,
                Some(detail.into()),
            );
        }
        if let Some(disk) = &self.disk
            && let Err(e) = lock(&disk.ledger).sync()
        {
            tracing::warn!(upstream = %inner.upstream, error = %e, "spool ledger sync failed at shutdown");
        }
        inner.gauges(&lock(&inner.state));
    }

    /// The oldest batch not in flight, marked in flight.
    fn next_pending(&self) -> Option<(u64, Spooled, Option<Loc>, u32)> {
        let mut st = lock(&self.inner.state);
        let e = st.entries.iter_mut().find(|e| !e.in_flight)?;
        e.in_flight = true;
        e.attempts += 1;
        Some((e.seq, e.item.clone(), e.loc, e.attempts))
    }

    /// Take a batch out of the queue and record it finished in the ledger
    /// (whatever its place: a batch finished behind one still in flight is
    /// not re-sent after a crash), then delete segments the watermark passed.
    fn remove(&self, seq: u64) -> Option<Entry> {
        let inner = &self.inner;
        let mut st = lock(&inner.state);
        let idx = st.entries.binary_search_by_key(&seq, |e| e.seq).ok()?;
        let e = st.entries.remove(idx)?;
        st.bytes -= e.bytes;
        st.high = st.high.max(seq);
        let w = st.entries.front().map_or(st.last_seq, |f| f.seq - 1);
        let mut gone = Vec::new();
        if w > st.watermark {
            st.watermark = w;
            if self.disk.is_some() {
                let active = st.active_segment;
                gone = st
                    .segments
                    .iter()
                    .filter(|(id, last)| **id != active && **last <= w)
                    .map(|(id, _)| *id)
                    .collect();
                for id in &gone {
                    st.segments.remove(id);
                }
            }
        }
        if let Some(disk) = &self.disk {
            let position = st.position();
            if let Err(err) = lock(&disk.ledger).write(&position) {
                tracing::warn!(upstream = %inner.upstream, error = %err,
                    "spool ledger write failed (delivered batches may be re-sent after a restart)");
            }
        }
        inner.gauges(&st);
        drop(st);
        if let Some(disk) = &self.disk
            && !gone.is_empty()
        {
            // The ledger covers these records before their segment goes.
            let _ = lock(&disk.ledger).sync();
            for id in gone {
                let _ = std::fs::remove_file(disk.dir.join(log::segment_name(id)));
            }
        }
        Some(e)
    }

    async fn settle(&self, deps: &SpoolDeps, done: AttemptResult) -> Settled {
        let inner = &self.inner;
        let release = |st: &mut State| {
            if let Ok(i) = st.entries.binary_search_by_key(&done.seq, |e| e.seq) {
                st.entries[i].in_flight = false;
            }
        };
        let retry = |timed_out: bool, retry_after: Option<Duration>| {
            release(&mut lock(&inner.state));
            if timed_out {
                // The upstream may have processed it: a resend may duplicate.
                inner
                    .metrics
                    .possible_duplicates
                    .get_or_create(&SpoolMetrics::label(&inner.upstream))
                    .inc();
            }
            Settled::Retry {
                retry_after,
                timed_out,
            }
        };
        match done.outcome {
            AttemptOutcome::Retry {
                timed_out,
                retry_after,
            } => retry(timed_out, retry_after),
            AttemptOutcome::Delivered { status, version } => {
                let Some(e) = self.remove(done.seq) else {
                    return Settled::Gone;
                };
                deps.metrics
                    .spans
                    .get_or_create(&SpanLabels {
                        endpoint: e.item.endpoint.clone(),
                        outcome: "forwarded",
                    })
                    .inc_by(e.item.spans as u64);
                inner.finish(
                    &e.item,
                    e.bytes,
                    "delivered",
                    Some(status),
                    Some(version),
                    e.attempts,
                    None,
                );
                Settled::Delivered
            }
            AttemptOutcome::Dead {
                status,
                version,
                detail,
                item,
            } => {
                if let Err(err) = self.dead_letter(*item, status).await {
                    // Not stored as a dead letter: keep it queued rather than lose it.
                    tracing::error!(upstream = %inner.upstream, error = %err,
                        "spool: cannot write a dead letter; the batch stays queued");
                    return retry(false, None);
                }
                let Some(e) = self.remove(done.seq) else {
                    return Settled::Gone;
                };
                tracing::error!(upstream = %inner.upstream, request_id = %e.item.request_id,
                    status = status.unwrap_or(0), spans = e.item.spans,
                    "upstream refused a spooled batch: moved to the dead-letter area");
                inner.finish(
                    &e.item,
                    e.bytes,
                    "dead_lettered",
                    status,
                    version,
                    e.attempts,
                    detail,
                );
                Settled::Delivered
            }
        }
    }

    /// Store a dead letter (disk: appended and fsync'ed by the writer).
    async fn dead_letter(&self, item: Spooled, status: Option<u16>) -> io::Result<()> {
        let inner = &self.inner;
        match &self.disk {
            None => {
                let mut st = lock(&inner.state);
                let bytes = item.body.len() as u64;
                st.bytes += bytes;
                st.dead_bytes += bytes;
                st.dead.push_back(Dead {
                    item,
                    bytes,
                    status,
                });
                Ok(())
            }
            Some(disk) => {
                let frame = record::encode(0, &item);
                let mut meta = item;
                meta.body = Bytes::new();
                let (reply, rx) = oneshot::channel();
                lock(&disk.tx)
                    .send(Cmd::DeadLetter {
                        frame,
                        item: meta,
                        status,
                        reply,
                    })
                    .map_err(|_| io::Error::other("spool writer stopped"))?;
                rx.await
                    .unwrap_or_else(|_| Err(io::Error::other("spool writer stopped")))
            }
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

enum Settled {
    Delivered,
    Retry {
        retry_after: Option<Duration>,
        timed_out: bool,
    },
    /// The batch was no longer queued (purged meanwhile).
    Gone,
}

struct AttemptResult {
    seq: u64,
    elapsed: Duration,
    outcome: AttemptOutcome,
}

enum AttemptOutcome {
    Delivered {
        status: u16,
        version: u64,
    },
    Retry {
        timed_out: bool,
        retry_after: Option<Duration>,
    },
    Dead {
        status: Option<u16>,
        version: Option<u64>,
        detail: Option<String>,
        item: Box<Spooled>,
    },
}

/// One delivery attempt: read the body back, inject the current credential,
/// send once with `timeout`.
async fn attempt(
    deps: SpoolDeps,
    dir: Option<PathBuf>,
    seq: u64,
    mut item: Spooled,
    loc: Option<Loc>,
    timeout: Duration,
) -> AttemptResult {
    let started = Instant::now();
    let result = |outcome| AttemptResult {
        seq,
        elapsed: started.elapsed(),
        outcome,
    };
    let retry = AttemptOutcome::Retry {
        timed_out: false,
        retry_after: None,
    };
    if let (Some(dir), Some(loc)) = (dir, loc) {
        match tokio::task::spawn_blocking(move || log::read(&dir, loc)).await {
            Ok(Ok(full)) => item.body = full.body,
            Ok(Err(e)) => {
                tracing::error!(request_id = %item.request_id, error = %e, "spool: cannot read a record back");
                return result(retry);
            }
            Err(_) => return result(retry),
        }
    }
    let Some(credential) = deps.secrets.current(&item.credential) else {
        return result(retry);
    };
    let job = upstream::Forward {
        name: &deps.name,
        config: &deps.upstream,
        signal: item.signal.unwrap_or_else(|| {
            // A format 1 record does not carry its signal: it is the
            // endpoint's in the current policy (traces if the endpoint is gone).
            deps.policy
                .current()
                .endpoints()
                .iter()
                .find(|e| e.name == item.endpoint)
                .map_or(crate::otlp::Signal::Traces, |e| e.signal)
        }),
        body: item.body.clone(),
        encoding: item.encoding,
        gzip: item.gzip,
        user_agent: item.user_agent.as_ref(),
        request_id: &item.request_id,
        credential: &credential,
        deadline: Instant::now() + timeout,
        attempt_timeout: timeout,
        max_attempts: 1,
    };
    let r = upstream::forward(&deps.client, &deps.metrics, job).await;
    if r.used_previous {
        deps.metrics.credential_fallbacks.inc();
        deps.secrets.record_fallback();
    }
    let version = credential.version;
    let outcome = match r.outcome {
        Ok(a) if a.status.is_success() => AttemptOutcome::Delivered {
            status: a.status.as_u16(),
            version,
        },
        Ok(a) if retryable(a.status) => AttemptOutcome::Retry {
            timed_out: false,
            retry_after: a
                .retry_after
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(MAX_BACKOFF.as_secs()))),
        },
        Ok(a) => AttemptOutcome::Dead {
            status: Some(a.status.as_u16()),
            version: Some(version),
            detail: None,
            item: Box::new(item),
        },
        Err(ProxyError::UpstreamTimeout) => AttemptOutcome::Retry {
            timed_out: true,
            retry_after: None,
        },
        Err(e) if spoolable(&Err(clone_kind(&e))) => retry,
        Err(e) => AttemptOutcome::Dead {
            status: None,
            version: Some(version),
            detail: Some(e.to_string()),
            item: Box::new(item),
        },
    };
    result(outcome)
}

fn clone_kind(e: &ProxyError) -> ProxyError {
    match e {
        ProxyError::UpstreamUnavailable(s) => ProxyError::UpstreamUnavailable(s.clone()),
        ProxyError::UpstreamTimeout => ProxyError::UpstreamTimeout,
        ProxyError::UpstreamAuthFailed => ProxyError::UpstreamAuthFailed,
        _ => ProxyError::UpstreamUnknown(String::new()),
    }
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

/// The disk writer: owns the active segments, assigns sequence numbers,
/// group-commits appends and indexes them once durable.
struct Writer {
    inner: Arc<Inner>,
    /// Not the `Disk` (it holds the sender: the thread ends when the spool drops).
    dir: PathBuf,
    ledger: Arc<Mutex<Ledger>>,
    main: Appender,
    dead: Appender,
    next_seq: u64,
    /// Sequence of the next dead letter (dead letters number their own).
    dead_seq: u64,
    last_sync: Instant,
}

type AppendReply = oneshot::Sender<io::Result<()>>;

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut stash: VecDeque<Cmd> = VecDeque::new();
        loop {
            let cmd = match stash.pop_front() {
                Some(c) => c,
                None => match rx.recv() {
                    Ok(c) => c,
                    Err(_) => return,
                },
            };
            match cmd {
                Cmd::Append { frame, item, reply } => {
                    self.group((frame, item, reply), &rx, &mut stash)
                }
                Cmd::DeadLetter {
                    frame,
                    item,
                    status,
                    reply,
                } => {
                    let r = self.append_dead(frame, item, status);
                    let _ = reply.send(r);
                }
                Cmd::ReplayDead { reply } => {
                    let _ = reply.send(self.replay_dead());
                }
                Cmd::Purge { dead, reply } => {
                    let _ = reply.send(self.purge(dead));
                }
            }
        }
    }

    /// Write `first` and every append that arrives before the group's fsync
    /// is due, fsync once, then index and acknowledge them all.
    fn group(
        &mut self,
        first: (Vec<u8>, Spooled, AppendReply),
        rx: &mpsc::Receiver<Cmd>,
        stash: &mut VecDeque<Cmd>,
    ) {
        let start_len = self.main.len;
        let start_segment = self.main.id;
        let mut done: Vec<(u64, Loc, Spooled, AppendReply)> = Vec::new();
        let due = match self.inner.config.fsync {
            FsyncPolicy::Always => Instant::now(),
            FsyncPolicy::Interval(d) => (self.last_sync + d).max(Instant::now()),
        };
        let mut next = Some(first);
        loop {
            if let Some((mut frame, item, reply)) = next.take() {
                log::stamp_seq(&mut frame, self.next_seq);
                match self.main.write(&frame) {
                    Ok(loc) => {
                        done.push((self.next_seq, loc, item, reply));
                        self.next_seq += 1;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            let now = Instant::now();
            let msg = if now >= due {
                rx.try_recv().ok()
            } else {
                rx.recv_timeout(due - now).ok()
            };
            match msg {
                Some(Cmd::Append { frame, item, reply }) => next = Some((frame, item, reply)),
                Some(other) => {
                    stash.push_back(other);
                    if Instant::now() >= due {
                        break;
                    }
                }
                None if Instant::now() >= due => break,
                None => {}
            }
        }
        // `interval(d)` spaces fsyncs d apart start to start: an append
        // waits at most d plus one fsync, not d after the previous fsync ended.
        self.last_sync = Instant::now();
        let synced = self.main.sync();
        if let Err(e) = synced {
            // What the page cache holds is not to be trusted: undo the group.
            if self.main.id == start_segment {
                let _ = self.main.truncate(start_len);
            }
            self.next_seq -= done.len() as u64;
            for (_, _, _, reply) in done {
                let _ = reply.send(Err(io::Error::new(e.kind(), e.to_string())));
            }
            return;
        }
        {
            let mut st = lock(&self.inner.state);
            let stopped = st.stopped;
            for (seq, loc, item, _) in &done {
                st.last_seq = *seq;
                st.segments.insert(loc.segment, *seq);
                // Reserved at append as the same frame length.
                st.entries.push_back(Entry {
                    seq: *seq,
                    item: item.clone(),
                    loc: Some(*loc),
                    bytes: loc.len,
                    in_flight: false,
                    attempts: 0,
                });
                if stopped {
                    self.inner.audit.emit(&serde_json::json!({
                        "kind": "spool", "result": "kept", "upstream": self.inner.upstream,
                        "request_id": item.request_id, "detail": "spooled during shutdown; delivered after the next start",
                    }));
                }
            }
            self.inner.gauges(&st);
        }
        for (_, _, _, reply) in done {
            let _ = reply.send(Ok(()));
        }
        self.inner.wake.notify_one();
        if let Err(e) = self.main.roll_if_full() {
            tracing::error!(upstream = %self.inner.upstream, error = %e, "spool: cannot start a new segment");
        } else {
            lock(&self.inner.state).active_segment = self.main.id;
        }
    }

    fn append_dead(
        &mut self,
        mut frame: Vec<u8>,
        item: Spooled,
        status: Option<u16>,
    ) -> io::Result<()> {
        log::stamp_seq(&mut frame, self.dead_seq);
        self.dead_seq += 1;
        let len = frame.len() as u64;
        let before = self.dead.len;
        self.dead.write(&frame)?;
        if let Err(e) = self.dead.sync() {
            let _ = self.dead.truncate(before);
            return Err(e);
        }
        let mut st = lock(&self.inner.state);
        st.bytes += len;
        st.dead_bytes += len;
        st.dead.push_back(Dead {
            item,
            bytes: len,
            status,
        });
        drop(st);
        self.dead.roll_if_full()
    }

    fn dead_dir(&self) -> PathBuf {
        self.dir.join("dead")
    }

    fn replay_dead(&mut self) -> io::Result<usize> {
        let dir = self.dead_dir();
        let rec = log::recover(&dir, &Position::default())?;
        let mut frames = Vec::new();
        for (_, loc, _) in &rec.records {
            let mut item = log::read(&dir, *loc)?;
            item.enqueued_ms = now_ms();
            frames.push(item);
        }
        let n = frames.len();
        let mut done = Vec::new();
        for item in frames {
            let mut frame = record::encode(0, &item);
            log::stamp_seq(&mut frame, self.next_seq);
            let loc = self.main.write(&frame)?;
            let mut meta = item;
            meta.body = Bytes::new();
            done.push((self.next_seq, loc, meta));
            self.next_seq += 1;
        }
        self.main.sync()?;
        {
            let mut st = lock(&self.inner.state);
            st.bytes -= st.dead_bytes;
            st.dead_bytes = 0;
            st.dead.clear();
            for (seq, loc, item) in done {
                st.last_seq = seq;
                st.bytes += loc.len;
                st.segments.insert(loc.segment, seq);
                st.entries.push_back(Entry {
                    seq,
                    item,
                    loc: Some(loc),
                    bytes: loc.len,
                    in_flight: false,
                    attempts: 0,
                });
            }
            self.inner.gauges(&st);
        }
        self.reset_dead()?;
        Ok(n)
    }

    /// Delete every dead segment and start a fresh one.
    fn reset_dead(&mut self) -> io::Result<()> {
        let dir = self.dead_dir();
        let next = self.dead.id + 1;
        for id in log::list_segments(&dir)? {
            std::fs::remove_file(dir.join(log::segment_name(id)))?;
        }
        self.dead = Appender::create(&dir, next)?;
        Ok(())
    }

    fn purge(&mut self, dead: bool) -> io::Result<Vec<Spooled>> {
        if dead {
            let items: Vec<Spooled> = {
                let mut st = lock(&self.inner.state);
                st.bytes -= st.dead_bytes;
                st.dead_bytes = 0;
                st.dead.drain(..).map(|d| d.item).collect()
            };
            self.reset_dead()?;
            return Ok(items);
        }
        let items: Vec<Spooled> = {
            let mut st = lock(&self.inner.state);
            let freed: u64 = st.entries.iter().map(|e| e.bytes).sum();
            st.bytes -= freed;
            st.watermark = st.last_seq;
            st.high = st.last_seq;
            st.segments.clear();
            let w = st.watermark;
            lock(&self.ledger).write(&Position::upto(w))?;
            lock(&self.ledger).sync()?;
            let items = st.entries.drain(..).map(|e| e.item).collect();
            self.inner.gauges(&st);
            items
        };
        let next = self.main.id + 1;
        for id in log::list_segments(&self.dir)? {
            std::fs::remove_file(self.dir.join(log::segment_name(id)))?;
        }
        self.main = Appender::create(&self.dir, next)?;
        lock(&self.inner.state).active_segment = self.main.id;
        Ok(items)
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
            signal: Some(crate::otlp::Signal::Traces),
            user_agent: None,
            credential: "c".into(),
            request_id: format!("r{n}"),
            endpoint: "traces".into(),
            provider: None,
            subject: None,
            spans: 1,
            enqueued_ms: now_ms(),
        }
    }

    fn cfg(max: u64, dir: Option<PathBuf>) -> SpoolConfig {
        SpoolConfig {
            max_bytes: bytesize::ByteSize::b(max),
            dir,
            ..Default::default()
        }
    }

    fn audit() -> Audit {
        Audit::to_writer(Box::new(std::io::sink()))
    }

    #[tokio::test]
    async fn the_memory_spool_is_bounded_in_bytes_and_fifo() {
        let m = SpoolMetrics::default();
        let s = Spool::memory("up", cfg(100, None), m.clone(), audit());
        s.append(item(60)).await.expect("fits");
        s.append(item(40)).await.expect("fits exactly");
        assert!(matches!(
            s.append(item(1)).await,
            Err(SpoolRefused::Full {
                used: 100,
                max: 100
            })
        ));
        let (seq, first, _, _) = s.next_pending().unwrap();
        assert_eq!(first.body.len(), 60);
        s.remove(seq);
        s.append(item(60)).await.expect("room again");
        assert_eq!(s.len(), 2);
        s.closed.store(true, Ordering::Release);
        assert_eq!(s.append(item(1)).await, Err(SpoolRefused::Closed));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_finished_behind_one_in_flight_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Spool::open(
                "up",
                cfg(1 << 20, Some(dir.path().to_path_buf())),
                AckMode::Spooled,
                SpoolMetrics::default(),
                audit(),
            )
            .unwrap()
        };
        let s = open();
        for n in 1..=10 {
            s.append(item(n)).await.unwrap();
        }
        // Window of 3: 1, 2, 3 start; 2 and 3 finish while 1 hangs; the
        // window slides on through 9, which all finish; 10 never starts.
        let mut started: Vec<u64> = (0..3).map(|_| s.next_pending().unwrap().0).collect();
        assert_eq!(started, vec![1, 2, 3]);
        assert_eq!(started.remove(0), 1, "stays in flight");
        for _ in 4..=9 {
            let done = started.remove(0);
            assert!(s.remove(done).is_some());
            started.push(s.next_pending().unwrap().0);
        }
        for done in started {
            assert!(s.remove(done).is_some());
        }
        assert_eq!(s.len(), 2, "1 in flight, 10 queued");
        // kill -9 now: the ledger was written (not fsync'ed) after each.
        drop(s);
        let s = open();
        let left: Vec<String> = std::iter::from_fn(|| s.next_pending())
            .map(|(_, it, _, _)| it.request_id)
            .collect();
        assert_eq!(
            left,
            vec!["r1", "r10"],
            "only the batch in flight and the unstarted one"
        );
        // Finishing them moves the watermark past every hole.
        s.remove(1);
        s.remove(10);
        drop(s);
        assert!(open().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disk_appends_survive_a_reopen_and_acks_advance_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let d = Some(dir.path().to_path_buf());
        let s = Spool::open(
            "up",
            cfg(1 << 20, d.clone()),
            AckMode::Spooled,
            SpoolMetrics::default(),
            audit(),
        )
        .unwrap();
        for n in 1..=5 {
            s.append(item(n * 10)).await.unwrap();
        }
        let (seq, _, _, _) = s.next_pending().unwrap();
        s.remove(seq);
        drop(s);
        let s = Spool::open(
            "up",
            cfg(1 << 20, d.clone()),
            AckMode::Spooled,
            SpoolMetrics::default(),
            audit(),
        )
        .unwrap();
        assert_eq!(s.len(), 4, "the delivered one is not replayed");
        let (_, it, loc, _) = s.next_pending().unwrap();
        assert_eq!(it.request_id, "r20");
        assert_eq!(log::read(dir.path(), loc.unwrap()).unwrap().body.len(), 20);
        // Group commit within an interval: concurrent appends all land.
        let mut c = cfg(1 << 20, Some(dir.path().join("iv")));
        c.fsync = FsyncPolicy::Interval(Duration::from_millis(5));
        let s = Arc::new(
            Spool::open(
                "iv",
                c.clone(),
                AckMode::Spooled,
                SpoolMetrics::default(),
                audit(),
            )
            .unwrap(),
        );
        let mut tasks = Vec::new();
        for n in 0..20 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move { s.append(item(100 + n)).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        drop(s);
        let s = Spool::open("iv", c, AckMode::Spooled, SpoolMetrics::default(), audit()).unwrap();
        assert_eq!(s.len(), 20);
        // Full: refused, nothing evicted.
        let small = Spool::open(
            "x",
            cfg(10, Some(dir.path().join("x"))),
            AckMode::Spooled,
            SpoolMetrics::default(),
            audit(),
        )
        .unwrap();
        assert!(matches!(
            small.append(item(5)).await,
            Err(SpoolRefused::Full { .. })
        ));
    }
}
