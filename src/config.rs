//! Process configuration (`spangate.yaml`): file types with defaults, then
//! validation that collects every error with its file:line.
//!
//! Each module owns the config types of its own area (`identity::ProviderConfig`,
//! `secrets::SecretsConfig`, `admin::AdminConfig`); this module holds the top
//! level, the listener, upstreams and audit settings. Sections whose module
//! sits above the shared state (admin, spool) keep their types in `config/`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod admin;
pub mod size;
pub mod spool;

use crate::config::admin::AdminConfig;
use crate::identity::ProviderConfig;
use crate::secrets::SecretsConfig;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:4318";
pub const DEFAULT_MAX_BODY: u64 = 16 * 1024 * 1024;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MEMORY_BUDGET: u64 = 128 * 1024 * 1024;
pub const DEFAULT_OVERLOAD_WAIT: Duration = Duration::from_secs(1);
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CREDENTIAL_HEADER: &str = "lightstep-access-token";
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(3600);
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_RESERVED_FDS: u64 = 128;
pub const DEFAULT_H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 256;
pub const DEFAULT_POLICIES_QUIET_PERIOD: Duration = Duration::from_secs(2);

/// The whole process config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The OTLP/HTTP listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// The admin listener (loopback by default).
    #[serde(default)]
    pub admin: AdminConfig,
    /// OIDC providers by name; a token is routed to a provider by its `iss`.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Upstream OTLP endpoints by name; policy endpoints refer to these names.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Credential store and bootstrap values.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// Fleet state shared through Redis (unset: single node).
    #[serde(default)]
    pub state: crate::state::StateConfig,
    /// Directory of policy YAML files (relative to the config file).
    #[serde(default = "default_policies")]
    pub policies: PathBuf,
    /// How long the policy directory must stay unchanged after a change
    /// before the watcher reloads it (a file written in pieces is never
    /// loaded half-written).
    #[serde(default = "default_policies_quiet_period", with = "humantime_serde")]
    pub policies_quiet_period: Duration,
    /// Audit log destination.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The Prometheus metrics listener.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Vercel Trace Drains by name: the secrets-store credential that signs
    /// each drain's deliveries.
    #[serde(default)]
    pub drains: BTreeMap<String, crate::drains::DrainConfig>,
    /// How many deployments per project (and projects) spangate remembers.
    #[serde(default)]
    pub deployments: crate::deployments::DeploymentsConfig,
}

fn default_policies() -> PathBuf {
    PathBuf::from("policies")
}

fn default_policies_quiet_period() -> Duration {
    DEFAULT_POLICIES_QUIET_PERIOD
}

/// The OTLP/HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind; HTTP/1.1 and HTTP/2 (h2c, or h2 via ALPN with TLS) on one port.
    pub listen: SocketAddr,
    /// Optional TLS termination (the gRPC listener uses it too).
    pub tls: Option<TlsConfig>,
    /// Address of the OTLP/gRPC listener (HTTP/2; h2c, or h2 via ALPN with
    /// TLS); absent = no gRPC.
    pub grpc_listen: Option<SocketAddr>,
    /// Body cap, measured after decompression (e.g. `16MiB`).
    #[serde(deserialize_with = "size::deserialize")]
    pub max_body: bytesize::ByteSize,
    /// Time allowed from accept to the first complete request head: TLS
    /// handshake, protocol detection (the HTTP/2 preface and SETTINGS) and
    /// the HTTP/1 head all count. Also bounds each later HTTP/1 head.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time allowed for the whole request, upstream included (bounds the
    /// request body as well).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/2 with GOAWAY).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A connection older than this is asked to close (HTTP/2 GOAWAY, HTTP/1
    /// `Connection: close` on the next response); requests in flight finish
    /// within `request_timeout`.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// Maximum concurrent connections. When full, the connection idle the
    /// longest is closed to admit a new one; with none idle, new connections
    /// wait in the accept queue.
    pub max_connections: usize,
    /// Open files kept out of `max_connections` for upstream and IdP
    /// connections, the spool, the audit file and the admin listener's own
    /// connections come on top. Start-up refuses a `max_connections` that
    /// does not fit the open-file limit with this reserve.
    pub reserved_fds: u64,
    /// HTTP/2 keep-alive PING interval; a connection whose PING is not
    /// answered within `h2_keepalive_timeout` is closed.
    #[serde(with = "humantime_serde")]
    pub h2_keepalive_interval: Duration,
    /// Time allowed for a PING answer.
    #[serde(with = "humantime_serde")]
    pub h2_keepalive_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// Most rate-limit keys (identities) tracked at once; idle keys expire.
    pub rate_limit_keys: u64,
    /// Memory for request bodies in flight, all requests together (decoded
    /// batches and re-encoded bodies included); at least `max_body`.
    #[serde(deserialize_with = "size::deserialize")]
    pub memory_budget: bytesize::ByteSize,
    /// How long a request waits for room in `memory_budget` before a
    /// retryable 503 `overloaded`.
    #[serde(with = "humantime_serde")]
    pub overload_wait: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default"),
            tls: None,
            grpc_listen: None,
            max_body: bytesize::ByteSize::b(DEFAULT_MAX_BODY),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            reserved_fds: DEFAULT_RESERVED_FDS,
            h2_keepalive_interval: DEFAULT_H2_KEEPALIVE_INTERVAL,
            h2_keepalive_timeout: DEFAULT_H2_KEEPALIVE_TIMEOUT,
            h2_max_concurrent_streams: DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            rate_limit_keys: 100_000,
            memory_budget: bytesize::ByteSize::b(DEFAULT_MEMORY_BUDGET),
            overload_wait: DEFAULT_OVERLOAD_WAIT,
        }
    }
}

/// PEM certificate chain and private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// One upstream OTLP endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Full URL of the trace endpoint, e.g. `https://ingest.lightstep.com/traces/otlp/v0.9`.
    pub url: url::Url,
    /// Header that carries the injected credential.
    #[serde(default = "default_credential_header")]
    pub credential_header: String,
    /// Timeout for one upstream attempt.
    #[serde(default = "default_upstream_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra PEM CA bundle trusted for this upstream (in addition to webpki roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Allow plain http:// to a non-loopback host (logged loudly).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Queue batches through an upstream outage and answer the client 200
    /// (for exporters that never retry); off when absent. See `spool`.
    #[serde(default)]
    pub spool: Option<crate::config::spool::SpoolConfig>,
    /// When the client is answered: `upstream` (after the upstream answered)
    /// or `spooled` (once the batch is durably spooled; needs `spool.dir`).
    #[serde(default)]
    pub ack: crate::config::spool::AckMode,
}

fn default_credential_header() -> String {
    DEFAULT_CREDENTIAL_HEADER.to_string()
}
fn default_upstream_timeout() -> Duration {
    DEFAULT_UPSTREAM_TIMEOUT
}

/// `metrics:`: a listener of its own that serves only `GET /metrics`
/// (read-only aggregate numbers, no token), so Prometheus can scrape it
/// while the admin API stays on loopback. Off when `listen` is absent; the
/// admin listener's `/metrics` serves the same text either way.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address to bind, e.g. `0.0.0.0:9464`.
    pub listen: Option<SocketAddr>,
}

/// Where audit lines go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// A file to append JSON lines to; stdout when unset.
    pub file: Option<PathBuf>,
}

/// A config error with its location.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub location: Option<(usize, usize)>,
    pub message: String,
    /// Keys leading to the offending node (for the location).
    pub yaml_path: Vec<String>,
}

impl ConfigError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.display().to_string(),
            location: None,
            message: message.into(),
            yaml_path: Vec::new(),
        }
    }

    fn at(file: &Path, yaml_path: &[&str], message: String) -> Self {
        Self {
            yaml_path: yaml_path.iter().map(|s| s.to_string()).collect(),
            ..Self::new(file, message)
        }
    }
}

/// Errors of a whole config load (all of them, not just the first).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl Config {
    /// Read, parse and validate a config file. Relative paths inside it are
    /// resolved against the file's directory; messages and resolved paths
    /// are absolute.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let path = absolute.as_path();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![ConfigError::new(path, format!("cannot read: {e}"))]))?;
        let mut cfg = Self::parse(path, &text)?;
        if let Some(dir) = path.parent() {
            cfg.resolve_relative(dir);
        }
        Ok(cfg)
    }

    /// Parse and validate config text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        if let Some(at) = crate::policy::locate::flow_too_deep(text) {
            return Err(ConfigErrors(vec![ConfigError {
                file: path.display().to_string(),
                location: Some(at),
                message: crate::policy::locate::flow_too_deep_message(),
                yaml_path: Vec::new(),
            }]));
        }
        let cfg: Config = serde_yaml::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.display().to_string(),
                location: e.location().map(|l| (l.line(), l.column())),
                message: yaml_message(&e),
                yaml_path: Vec::new(),
            }])
        })?;
        let mut errors = cfg.validate(path);
        if errors.is_empty() {
            return Ok(cfg);
        }
        // Semantic errors carry the YAML path of the offending node; the
        // policy loader's position index turns it into line:column.
        let index = crate::policy::locate::YamlIndex::build(text);
        for e in &mut errors {
            if !e.yaml_path.is_empty() {
                let segs: Vec<crate::policy::locate::Seg> =
                    e.yaml_path.iter().map(|k| k.as_str().into()).collect();
                let pos = index.key(&segs);
                e.location = Some((pos.line, pos.column));
            }
        }
        Err(ConfigErrors(errors))
    }

    fn resolve_relative(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !dir.as_os_str().is_empty() {
                let joined = dir.join(&*p);
                // Normalises `./` away when `dir` is absolute (as `load` makes it).
                *p = std::path::absolute(&joined).unwrap_or(joined);
            }
        };
        fix(&mut self.policies);
        if let Some(tls) = &mut self.server.tls {
            fix(&mut tls.cert_file);
            fix(&mut tls.key_file);
        }
        for up in self.upstreams.values_mut() {
            if let Some(ca) = &mut up.ca_file {
                fix(ca);
            }
            if let Some(dir) = up.spool.as_mut().and_then(|s| s.dir.as_mut()) {
                fix(dir);
            }
        }
        if let Some(f) = &mut self.audit.file {
            fix(f);
        }
        self.secrets.resolve_relative(dir);
        self.state.resolve_relative(dir);
    }

    /// Semantic checks that serde cannot express. Never panics.
    pub fn validate(&self, path: &Path) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |at: &[&str], m: String| errors.push(ConfigError::at(path, at, m));
        if self.server.max_body.as_u64() == 0 {
            err(
                &["server", "max_body"],
                "server.max_body must be greater than zero".into(),
            );
        }
        if self.server.max_connections == 0 {
            err(
                &["server", "max_connections"],
                "server.max_connections must be at least 1".into(),
            );
        }
        for (key, d) in [
            ("header_timeout", self.server.header_timeout),
            ("request_timeout", self.server.request_timeout),
            ("idle_timeout", self.server.idle_timeout),
            ("max_connection_age", self.server.max_connection_age),
            ("h2_keepalive_interval", self.server.h2_keepalive_interval),
            ("h2_keepalive_timeout", self.server.h2_keepalive_timeout),
        ] {
            if d.is_zero() {
                err(
                    &["server", key],
                    format!("server.{key} must be longer than 0s"),
                );
            }
        }
        if self.server.h2_max_concurrent_streams == 0 {
            err(
                &["server", "h2_max_concurrent_streams"],
                "server.h2_max_concurrent_streams must be at least 1".into(),
            );
        }
        if self.policies_quiet_period > Duration::from_secs(300) {
            err(
                &["policies_quiet_period"],
                "policies_quiet_period must be at most 5m".into(),
            );
        }
        if self.server.memory_budget < self.server.max_body {
            err(
                &["server", "memory_budget"],
                format!(
                    "server.memory_budget ({}) must be at least server.max_body ({})",
                    self.server.memory_budget, self.server.max_body
                ),
            );
        }
        // Per-provider and cross-provider checks; messages name `providers.<name>`.
        for m in crate::identity::validate_providers(&self.providers) {
            let name = m
                .strip_prefix("providers.")
                .and_then(|r| r.split([':', '.']).next())
                .filter(|n| self.providers.contains_key(*n));
            match name {
                Some(n) => err(&["providers", n], m.clone()),
                None => err(&["providers"], m),
            }
        }
        for (name, up) in &self.upstreams {
            match up.url.scheme() {
                "https" => {}
                "http" if up.allow_insecure_http || is_loopback_url(&up.url) => {}
                "http" => err(
                    &["upstreams", name, "url"],
                    format!(
                        "upstreams.{name}.url: plain http to a non-loopback host; use https or set allow_insecure_http: true"
                    ),
                ),
                s => err(
                    &["upstreams", name, "url"],
                    format!("upstreams.{name}.url: unsupported scheme {s:?}"),
                ),
            }
            if let Some(sp) = &up.spool {
                for (key, m) in sp.validate() {
                    err(
                        &["upstreams", name, "spool", key],
                        format!("upstreams.{name}.spool.{key}: {m}"),
                    );
                }
                if let Some(dir) = &sp.dir
                    && let Some((other, _)) = self.upstreams.iter().find(|(o, u)| {
                        o.as_str() < name.as_str()
                            && u.spool.as_ref().and_then(|s| s.dir.as_ref()) == Some(dir)
                    })
                {
                    err(
                        &["upstreams", name, "spool", "dir"],
                        format!(
                            "upstreams.{name}.spool.dir: {} is already the spool of upstream {other}",
                            dir.display()
                        ),
                    );
                }
            }
            if up.ack == crate::config::spool::AckMode::Spooled
                && up.spool.as_ref().and_then(|s| s.dir.as_ref()).is_none()
            {
                err(
                    &["upstreams", name, "ack"],
                    format!(
                        "upstreams.{name}.ack: spooled needs a durable spool (set upstreams.{name}.spool.dir)"
                    ),
                );
            }
            if http::HeaderName::from_bytes(up.credential_header.as_bytes()).is_err() {
                err(
                    &["upstreams", name, "credential_header"],
                    format!("upstreams.{name}.credential_header: not a valid header name"),
                );
            }
        }
        if let Some(m) = self.metrics.listen
            && m.port() != 0
            && (m == self.server.listen || self.admin.listen.tcp() == Some(m))
        {
            err(
                &["metrics", "listen"],
                format!("metrics.listen ({m}) must differ from server.listen and admin.listen"),
            );
        }
        for m in self.secrets.validate() {
            err(&["secrets"], format!("secrets: {m}"));
        }
        for m in self.state.validate() {
            err(&["state"], format!("state: {m}"));
        }
        for m in self.admin.validate() {
            err(&["admin"], format!("admin: {m}"));
        }
        for (name, m) in crate::drains::validate(&self.drains) {
            err(&["drains", &name], m);
        }
        for m in self.deployments.validate() {
            err(&["deployments"], m);
        }
        errors
    }
}

/// serde_yaml's message without its trailing ` at line L column C` (the
/// error already starts with `file:line:column`).
pub fn yaml_message(e: &serde_yaml::Error) -> String {
    let m = e.to_string();
    match (e.location(), m.rfind(" at line ")) {
        (Some(_), Some(at)) if m[at..].contains(" column ") => m[..at].to_string(),
        _ => m,
    }
}

/// True when the URL's host is a loopback address or `localhost`.
pub fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/spangate.yaml");
        let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.server.listen.port(), 4318);
        assert_eq!(
            cfg.admin.listen.tcp().expect("tcp").ip().to_string(),
            "127.0.0.1"
        );
        assert!(cfg.upstreams.contains_key("lightstep"));
        assert!(cfg.secrets.bootstrap.contains_key("lightstep-prod"));
    }

    #[test]
    fn state_redis_section_is_validated_with_locations() {
        let ok = "state:\n  redis:\n    url: redis://r:6379\n    encryption_key: { env: K }\n";
        let cfg = Config::parse(Path::new("t.yaml"), ok).unwrap();
        let r = cfg.state.redis.expect("redis");
        assert_eq!(r.key_prefix, crate::state::DEFAULT_KEY_PREFIX);
        assert_eq!(r.on_state_unavailable, crate::state::OnUnavailable::Local);
        for (bad, want) in [
            (
                "state:\n  redis:\n    url: http://r\n    encryption_key: { env: K }\n",
                "unsupported scheme",
            ),
            (
                "state:\n  redis:\n    url: redis://u:pw@r\n    encryption_key: { env: K }\n",
                "must not hold credentials",
            ),
            (
                "state:\n  redis:\n    url: redis://r\n    key_prefix: \"a{b}\"\n    encryption_key: { env: K }\n",
                "key_prefix",
            ),
            ("state:\n  redis:\n    url: redis://r\n", "encryption_key"),
            (
                "state:\n  redis:\n    url: redis://r\n    encryption_key: { env: K }\n    on_state_unavailable: open\n",
                "unknown variant",
            ),
        ] {
            let err = Config::parse(Path::new("t.yaml"), bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want) && err.starts_with("t.yaml:"), "{err}");
            assert!(!err.contains("pw"), "{err}");
        }
    }

    #[test]
    fn defaults_are_safe() {
        let cfg = Config::parse(Path::new("t.yaml"), "{}").unwrap();
        assert_eq!(cfg.server.max_body.as_u64(), DEFAULT_MAX_BODY);
        assert!(
            cfg.admin.listen.tcp().expect("tcp").ip().is_loopback(),
            "admin is loopback by default"
        );
        assert!(cfg.providers.is_empty());
    }

    #[test]
    fn secret_sources_take_one_of_env_or_file() {
        let ok = "secrets:\n  bootstrap:\n    a: { env: A }\n    b: { file: /run/b }\n";
        let cfg = Config::parse(Path::new("t.yaml"), ok).unwrap();
        assert_eq!(cfg.secrets.bootstrap.len(), 2);
        for bad in [
            "secrets:\n  bootstrap:\n    a: { env: A, file: /b }\n",
            "secrets:\n  bootstrap:\n    a: {}\n",
            "secrets:\n  bootstrap:\n    a: { value: plain }\n",
        ] {
            let err = Config::parse(Path::new("t.yaml"), bad)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("t.yaml:"), "{err}");
        }
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let err = Config::parse(
            Path::new("c.yaml"),
            "server:\n  listen: 1.2.3.4:1\n  bogus: 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("c.yaml:3:"), "{err}");
        let err = Config::parse(
            Path::new("c.yaml"),
            "providers:\n  p: { issuer: \"https://idp.example.com\", audiences: [] }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("audiences") && err.starts_with("c.yaml:2:3:"),
            "{err}"
        );
        let err = Config::parse(
            Path::new("c.yaml"),
            "upstreams:\n  u: { url: \"http://ingest.example.com/v1/traces\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("plain http") && err.starts_with("c.yaml:2:"),
            "{err}"
        );
    }

    #[test]
    fn ack_spooled_needs_a_spool_dir_and_spool_keys_are_checked() {
        let err = Config::parse(
            Path::new("c.yaml"),
            "upstreams:\n  u:\n    url: \"http://127.0.0.1:1/v1/traces\"\n    ack: spooled\n    spool: { max_bytes: 1MiB }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("c.yaml:4:") && err.contains("spool.dir"),
            "{err}"
        );
        let err = Config::parse(
            Path::new("c.yaml"),
            "upstreams:\n  u:\n    url: \"http://127.0.0.1:1/v1/traces\"\n    spool:\n      dir: /tmp/x\n      window: 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("c.yaml:6:") && err.contains("window"),
            "{err}"
        );
        let err = Config::parse(
            Path::new("c.yaml"),
            "upstreams:\n  u:\n    url: \"http://127.0.0.1:1/v1/traces\"\n    spool: { dir: /tmp/x, fsync: often }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("interval(DURATION)"), "{err}");
        let ok = Config::parse(
            Path::new("c.yaml"),
            "upstreams:\n  u:\n    url: \"http://127.0.0.1:1/v1/traces\"\n    ack: spooled\n    spool: { dir: /tmp/x, fsync: interval(5ms), window: 8 }\n",
        )
        .unwrap();
        let sp = ok.upstreams["u"].spool.as_ref().unwrap();
        assert_eq!(sp.window, 8);
    }
}
