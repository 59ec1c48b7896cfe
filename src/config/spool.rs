//! `upstreams.<name>.spool` in the process config.

use std::time::Duration;

use serde::Deserialize;

/// `upstreams.<name>.spool`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Bytes of queued bodies (uncompressed) at most.
    #[serde(deserialize_with = "crate::config::size::deserialize")]
    pub max_bytes: bytesize::ByteSize,
    /// A batch older than this is given up (audited `expired`).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_bytes: bytesize::ByteSize::mib(64),
            max_age: Duration::from_secs(600),
        }
    }
}
