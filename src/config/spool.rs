//! `upstreams.<name>.spool` and `upstreams.<name>.ack` in the process config.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Default number of batches in flight to one upstream from its spool.
pub const DEFAULT_WINDOW: usize = 4;
/// Most batches in flight the config accepts.
pub const MAX_WINDOW: usize = 64;
/// Default time the spool keeps delivering after shutdown starts.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);
/// Longest `fsync: interval(...)` accepted: an acknowledgement waits for it.
pub const MAX_FSYNC_INTERVAL: Duration = Duration::from_secs(1);

/// `upstreams.<name>.spool`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory of the on-disk spool; memory only when absent.
    pub dir: Option<PathBuf>,
    /// Bytes of queued records at most (bodies plus metadata).
    #[serde(deserialize_with = "crate::config::size::deserialize")]
    pub max_bytes: bytesize::ByteSize,
    /// A batch older than this is given up (audited `expired`).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// When an append is made durable: `always` (fsync before every
    /// acknowledgement, concurrent appends share one fsync) or
    /// `interval(5ms)` (at most one fsync per interval; acknowledgements
    /// still wait for the fsync that covers them).
    pub fsync: FsyncPolicy,
    /// Batches in flight to the upstream at once (ordered start, at-least-once).
    pub window: usize,
    /// How long delivery continues after shutdown starts.
    #[serde(with = "humantime_serde")]
    pub drain: Duration,
    /// Longest attempt timeout the spool grows to after an attempt timed out
    /// (default: 6 × the upstream's `timeout`).
    #[serde(with = "humantime_serde::option")]
    pub max_attempt_timeout: Option<Duration>,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: bytesize::ByteSize::mib(64),
            max_age: Duration::from_secs(600),
            fsync: FsyncPolicy::Always,
            window: DEFAULT_WINDOW,
            drain: DEFAULT_DRAIN,
            max_attempt_timeout: None,
        }
    }
}

impl SpoolConfig {
    /// Semantic checks; messages are relative to `upstreams.<name>.spool`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        if self.window == 0 || self.window > MAX_WINDOW {
            errors.push(("window", format!("window must be 1..={MAX_WINDOW}")));
        }
        if self.max_bytes.as_u64() == 0 {
            errors.push(("max_bytes", "max_bytes must be greater than zero".into()));
        }
        if let FsyncPolicy::Interval(d) = self.fsync
            && (d.is_zero() || d > MAX_FSYNC_INTERVAL)
        {
            errors.push((
                "fsync",
                "fsync interval must be between 1ms and 1s (acknowledgements wait for it)".into(),
            ));
        }
        if self.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            errors.push(("dir", "dir must not be empty".into()));
        }
        errors
    }
}

/// When appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync before acknowledging (concurrent appends share one).
    Always,
    /// At most one fsync per interval; acknowledgements wait for it.
    Interval(Duration),
}

impl FsyncPolicy {
    /// Parse `always` or `interval(5ms)`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s == "always" {
            return Some(Self::Always);
        }
        let inner = s.strip_prefix("interval(")?.strip_suffix(')')?;
        humantime::parse_duration(inner.trim())
            .ok()
            .map(Self::Interval)
    }
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "fsync must be `always` or `interval(DURATION)` such as interval(5ms), not {s:?}"
            ))
        })
    }
}

/// `upstreams.<name>.ack`: when the client gets its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// After the upstream answered (spool only when it could not take it).
    #[default]
    Upstream,
    /// As soon as the batch is durably in the spool (needs `spool.dir`).
    Spooled,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policies_parse() {
        assert_eq!(FsyncPolicy::parse("always"), Some(FsyncPolicy::Always));
        assert_eq!(
            FsyncPolicy::parse("interval(5ms)"),
            Some(FsyncPolicy::Interval(Duration::from_millis(5)))
        );
        assert_eq!(FsyncPolicy::parse("interval(5)"), None);
        assert_eq!(FsyncPolicy::parse("sometimes"), None);
    }
}
