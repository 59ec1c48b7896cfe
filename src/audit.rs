//! Audit: one JSON line per request (allowed or denied) and per admin action.
//! Lines never contain a token or secret value, only fingerprints.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Where audit lines go. Cheap to clone; writes are serialized per line.
#[derive(Clone)]
pub struct Audit {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
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
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        Ok(Self::to_writer(Box::new(opts.open(path)?)))
    }

    pub fn to_writer(w: Box<dyn Write + Send>) -> Self {
        Self {
            sink: Arc::new(Mutex::new(w)),
        }
    }

    /// Write one record as a JSON line, with `time` prepended.
    pub fn emit<T: Serialize>(&self, record: &T) {
        let mut value = match serde_json::to_value(record) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(other) => {
                let mut m = serde_json::Map::new();
                m.insert("record".into(), other);
                m
            }
            Err(e) => {
                tracing::error!(error = %e, "audit record could not be serialized");
                return;
            }
        };
        let mut line = serde_json::Map::new();
        line.insert("time".into(), now_rfc3339().into());
        line.append(&mut value);
        let mut text = serde_json::Value::Object(line).to_string();
        text.push('\n');
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = sink.write_all(text.as_bytes()).and_then(|_| sink.flush()) {
            tracing::error!(error = %e, "audit write failed");
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
    /// `allow`, `partial`, `deny` or `error`.
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Role of the deciding binding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Stable reason code (`allowed`, `expired`, `explicit_deny`, `upstream_timeout`, ...).
    pub reason: &'static str,
    pub status: u16,
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
    #[serde(skip_serializing_if = "is_zero")]
    pub upstream_attempts: u32,
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
