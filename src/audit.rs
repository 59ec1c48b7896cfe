//! Audit: one JSON line per request (allowed or denied) and per admin action.
//! Lines never contain a token or secret value, only fingerprints.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Lines queued for the background writer at most. Past that, the request
/// that emits a line writes it itself (counted as `overflow`): a burst slows
/// down instead of losing audit lines.
pub const QUEUE_LINES: usize = 16 * 1024;

/// Where audit lines go. Cheap to clone.
///
/// Two modes. [`Audit::to_writer`] writes each line synchronously under a
/// mutex (tests read lines right after a response). [`Audit::background`]
/// (what `serve` uses for stdout and files) hands each serialized line to a
/// dedicated writer thread through a bounded queue, so the request task never
/// waits on the write syscall; the thread wakes at most once per [`LINGER`]
/// under load and writes whatever has queued up in one `write`. When the queue is full the
/// emitting task writes the line itself, so no line is ever dropped for lack
/// of room; only a failing writer loses lines, and those are counted.
/// [`Audit::flush`] waits until every line emitted so far is written (shutdown
/// calls it). A `kill -9` can lose what is still queued (milliseconds of lines).
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

struct Inner {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
    queue: Option<SyncSender<Msg>>,
    stats: Arc<Counters>,
}

enum Msg {
    Line(Vec<u8>),
    Flush(mpsc::Sender<()>),
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    overflow: AtomicU64,
    failed: AtomicU64,
}

/// Audit line counters (for metrics and status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuditStats {
    /// Lines written.
    pub written: u64,
    /// Lines the emitting request wrote itself because the queue was full.
    pub overflow: u64,
    /// Lines lost because the writer failed (disk full, closed pipe).
    pub failed: u64,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Audit")
    }
}

impl Audit {
    pub fn stdout() -> Self {
        Self::to_writer(Box::new(std::io::stdout()))
    }

    /// Append to a file (created with mode 0600 when new).
    pub fn file(path: &Path) -> std::io::Result<Self> {
        Ok(Self::to_writer(Box::new(open_append(path)?)))
    }

    /// Synchronous: each line is written and flushed before `emit` returns.
    pub fn to_writer(w: Box<dyn Write + Send>) -> Self {
        Self {
            inner: Arc::new(Inner {
                sink: Arc::new(Mutex::new(w)),
                queue: None,
                stats: Arc::default(),
            }),
        }
    }

    /// Off the request path: lines go through a bounded queue to a writer
    /// thread (see the type's docs).
    pub fn background(w: Box<dyn Write + Send>) -> std::io::Result<Self> {
        let sink = Arc::new(Mutex::new(w));
        let stats = Arc::new(Counters::default());
        let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUE_LINES);
        let (thread_sink, thread_stats) = (sink.clone(), stats.clone());
        std::thread::Builder::new()
            .name("spangate-audit".into())
            .spawn(move || writer_loop(rx, &thread_sink, &thread_stats))?;
        Ok(Self {
            inner: Arc::new(Inner {
                sink,
                queue: Some(tx),
                stats,
            }),
        })
    }

    /// Background writer to stdout.
    pub fn background_stdout() -> std::io::Result<Self> {
        Self::background(Box::new(std::io::stdout()))
    }

    /// Background writer appending to a file (mode 0600 when new).
    pub fn background_file(path: &Path) -> std::io::Result<Self> {
        Self::background(Box::new(open_append(path)?))
    }

    /// Write one record as a JSON line, with `time` first.
    pub fn emit<T: Serialize>(&self, record: &T) {
        let Some(line) = serialize_line(record) else {
            return;
        };
        let line = match &self.inner.queue {
            None => line,
            Some(tx) => match tx.try_send(Msg::Line(line)) {
                Ok(()) => return,
                Err(TrySendError::Full(Msg::Line(line)))
                | Err(TrySendError::Disconnected(Msg::Line(line))) => {
                    self.inner.stats.overflow.fetch_add(1, Ordering::Relaxed);
                    line
                }
                Err(_) => return,
            },
        };
        let mut sink = self.inner.sink.lock().unwrap_or_else(|p| p.into_inner());
        write_lines(&mut **sink, &line, 1, &self.inner.stats);
    }

    /// Write one record now, bypassing the queue: for rare lines that a
    /// caller may read right after the call returns (admin actions, policy
    /// reloads), so they are on disk when the admin API answers.
    pub fn emit_now<T: Serialize>(&self, record: &T) {
        let Some(line) = serialize_line(record) else {
            return;
        };
        let mut sink = self.inner.sink.lock().unwrap_or_else(|p| p.into_inner());
        write_lines(&mut **sink, &line, 1, &self.inner.stats);
    }

    /// Wait until every line emitted before this call is written (a no-op for
    /// a synchronous audit). Called at shutdown.
    pub fn flush(&self) {
        if let Some(tx) = &self.inner.queue {
            let (ack, done) = mpsc::channel();
            if tx.send(Msg::Flush(ack)).is_ok() {
                let _ = done.recv();
            }
        }
    }

    /// Counters of written, overflowed and lost lines.
    pub fn stats(&self) -> AuditStats {
        let s = &self.inner.stats;
        AuditStats {
            written: s.written.load(Ordering::Relaxed),
            overflow: s.overflow.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// `{"time":"…",<the record's own fields>}` plus a newline, serialized
/// straight into bytes (no intermediate JSON tree). A record that is not a
/// JSON object is kept under `record`.
fn serialize_line<T: Serialize>(record: &T) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(now_rfc3339().as_bytes());
    out.extend_from_slice(b"\"");
    let start = out.len();
    if let Err(e) = serde_json::to_writer(&mut out, record) {
        tracing::error!(error = %e, "audit record could not be serialized");
        return None;
    }
    match out.get(start) {
        Some(b'{') if out.len() == start + 2 => out.truncate(start), // `{}`
        Some(b'{') => out[start] = b',',
        _ => {
            let value = out.split_off(start);
            out.extend_from_slice(b",\"record\":");
            out.extend_from_slice(&value);
            out.push(b'}');
        }
    }
    if out.last() != Some(&b'}') {
        out.push(b'}');
    }
    out.push(b'\n');
    Some(out)
}

fn write_lines(sink: &mut dyn Write, bytes: &[u8], lines: u64, stats: &Counters) {
    match sink.write_all(bytes).and_then(|_| sink.flush()) {
        Ok(()) => {
            stats.written.fetch_add(lines, Ordering::Relaxed);
        }
        Err(e) => {
            let before = stats.failed.fetch_add(lines, Ordering::Relaxed);
            // Once per 1000 lost lines, so a dead disk cannot flood the log.
            if before.is_multiple_of(1000) {
                tracing::error!(error = %e, lost_lines = before + lines, "audit write failed");
            }
        }
    }
}

/// How long the writer thread lets lines gather after it wakes up. Waking the
/// thread per line costs a context switch (and a futex wake on the request
/// path) per request; lingering turns that into one wake-up per interval under
/// load. A line waits at most this long before its `write` (a `flush` request
/// skips the wait).
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// The writer thread: wait for a line, let more gather for [`LINGER`], take
/// what has queued up, write it in one go; exits when every `Audit` handle is
/// gone. While it sleeps, senders enqueue without waking anyone.
fn writer_loop(rx: mpsc::Receiver<Msg>, sink: &Mutex<Box<dyn Write + Send>>, stats: &Counters) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut acks = Vec::new();
    while let Ok(first) = rx.recv() {
        if matches!(first, Msg::Line(_)) {
            std::thread::sleep(LINGER);
        }
        let mut lines = 0u64;
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Line(l) => {
                    buf.extend_from_slice(&l);
                    lines += 1;
                }
                Msg::Flush(ack) => acks.push(ack),
            }
            next = if buf.len() < 256 * 1024 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if lines > 0 {
            let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
            write_lines(&mut **s, &buf, lines, stats);
            buf.clear();
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// Current time as RFC 3339 with milliseconds (UTC).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A shared in-memory audit sink, for tests and `spangate dev --demo`.
#[derive(Clone, Default)]
pub struct MemorySink(pub Arc<Mutex<Vec<u8>>>);

impl MemorySink {
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for MemorySink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The audit line of one OTLP request. Built up stage by stage by the proxy
/// and written once, whatever the outcome.
#[derive(Debug, Default, Serialize)]
pub struct RequestAudit {
    pub kind: &'static str,
    /// `http` or `grpc` (OTLP requests).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub transport: &'static str,
    pub request_id: String,
    pub remote: String,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Fingerprint of the bearer token (never the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_fp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `traces`, `metrics` or `logs` (the endpoint's signal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<&'static str>,
    /// `allow`, `partial`, `deny` or `error`.
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Role of the deciding binding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Stable reason code (`allowed`, `expired`, `explicit_deny`, `upstream_timeout`, ...).
    pub reason: &'static str,
    /// HTTP status (for gRPC: the status OTLP/HTTP would have answered).
    pub status: u16,
    /// gRPC status code answered (gRPC requests only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<i32>,
    /// Decompressed request body size.
    pub bytes: usize,
    pub spans: usize,
    pub spans_dropped: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<DropCount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// The upstream's gRPC status code (gRPC upstreams only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_grpc_status: Option<i32>,
    #[serde(skip_serializing_if = "is_zero")]
    pub upstream_attempts: u32,
    /// Upstream requests the batch was split into, to fit the upstream's
    /// request limit (absent when it went as one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_pieces: Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub credential_fallback: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<serde_json::Value>,
    /// Deployments (`project/deployment`) this batch's resources were linked to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<String>,
    /// Deployment attributes stripped because their project is not the
    /// token's: one note per resource, naming the keys and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deployment_stripped: Vec<String>,
    /// Trace Drain deliveries: which secret version verified the signature
    /// (`current` or `previous`, during a rotation's grace period).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_secret: Option<&'static str>,
    /// Internal detail for operators (never a token or secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub duration_ms: f64,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Spans dropped for one reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DropCount {
    pub reason: String,
    pub spans: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Rec {
        kind: &'static str,
        n: u32,
    }

    #[derive(Serialize)]
    struct Empty {}

    fn parse(text: &str) -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).expect("each audit line is one JSON object"))
            .collect()
    }

    #[test]
    fn lines_start_with_time_and_keep_every_field() {
        let sink = MemorySink::default();
        let audit = Audit::to_writer(Box::new(sink.clone()));
        audit.emit(&Rec { kind: "otlp", n: 7 });
        audit.emit(&Empty {});
        audit.emit(&"not an object");
        let text = sink.text();
        assert!(text.starts_with("{\"time\":\""), "{text}");
        let lines = parse(&text);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["kind"], "otlp");
        assert_eq!(lines[0]["n"], 7);
        assert!(lines[1]["time"].is_string());
        assert_eq!(lines[1].as_object().map(|m| m.len()), Some(1));
        assert_eq!(lines[2]["record"], "not an object");
        assert_eq!(audit.stats().written, 3);
    }

    #[test]
    fn background_writes_every_line_in_order_by_flush() {
        let sink = MemorySink::default();
        let audit = Audit::background(Box::new(sink.clone())).expect("writer thread");
        let clones: Vec<Audit> = (0..4).map(|_| audit.clone()).collect();
        std::thread::scope(|s| {
            for (t, a) in clones.iter().enumerate() {
                s.spawn(move || {
                    for n in 0..5_000u32 {
                        a.emit(&Rec {
                            kind: "otlp",
                            n: (t as u32) * 10_000 + n,
                        });
                    }
                });
            }
        });
        audit.flush();
        let lines = parse(&sink.text());
        assert_eq!(lines.len(), 20_000, "no line lost");
        let stats = audit.stats();
        assert_eq!(stats.written, 20_000);
        assert_eq!(stats.failed, 0);
        // Per emitting thread, lines keep their order unless a full queue
        // made a line overtake (counted as overflow).
        if stats.overflow == 0 {
            for t in 0..4u64 {
                let ns: Vec<u64> = lines
                    .iter()
                    .filter_map(|l| l["n"].as_u64())
                    .filter(|n| n / 10_000 == t)
                    .collect();
                assert!(ns.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_writer_counts_lost_lines() {
        let audit = Audit::background(Box::new(Broken)).expect("writer thread");
        for n in 0..10 {
            audit.emit(&Rec { kind: "otlp", n });
        }
        audit.flush();
        let stats = audit.stats();
        assert_eq!(stats.failed, 10);
        assert_eq!(stats.written, 0);
    }
}
