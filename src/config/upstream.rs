//! `upstreams.<name>`: one OTLP backend spangate forwards to.
//!
//! An upstream is either spelled out (`url`, `credential_header`, optional
//! `paths`) or named by a `preset` (`lightstep`, `honeycomb`,
//! `grafana-cloud`, `newrelic`, `dynatrace`, `datadog`, `otlp`) that knows
//! the backend's credential header and auth scheme, its per-signal paths,
//! whether it takes OTLP/gRPC, and its request size limit. Everything a
//! preset sets can be overridden where it makes sense (`paths`,
//! `max_request_bytes`, the header of `otlp`); what would contradict the
//! backend (gRPC to an HTTP-only backend, a second credential header) is a
//! config error at file:line.
//!
//! The resolution (`target`, `credential_value`, `max_request_bytes`) is
//! pure and cheap, so the forwarder calls it per batch and
//! `spangate config check` prints the same answers.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::otlp::Signal;
use crate::secrets::Secret;

/// Header of an upstream without a preset and without `credential_header`.
pub const DEFAULT_CREDENTIAL_HEADER: &str = "lightstep-access-token";
/// Timeout of one upstream attempt unless `timeout` says otherwise.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// `protocol`: how batches travel to the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/HTTP (`POST <url>` with a protobuf or JSON body).
    #[default]
    Http,
    /// OTLP/gRPC (`Export` over HTTP/2, protobuf).
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// `preset`: a backend whose auth shape, paths and limits are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Lightstep / ServiceNow Cloud Observability.
    Lightstep,
    Honeycomb,
    GrafanaCloud,
    Newrelic,
    Dynatrace,
    Datadog,
    /// Any OTLP backend: standard paths, `Authorization: Bearer` by default.
    Otlp,
}

/// How the credential is written into its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    /// The value as is.
    Plain,
    /// `<scheme> <value>` (e.g. `Bearer`, `Api-Token`).
    Scheme(String),
    /// `Basic base64(<user>:<value>)`.
    Basic { user: String },
}

/// What a preset knows about its backend.
#[derive(Debug, Clone, Copy)]
pub struct PresetInfo {
    pub name: &'static str,
    /// Credential header (lowercase).
    pub header: &'static str,
    /// Default base URL (None: the operator must give `url`).
    pub default_url: Option<&'static str>,
    /// Path prefix used when `url` has no path.
    pub default_prefix: &'static str,
    /// Accepts OTLP/gRPC.
    pub grpc: bool,
    /// Accepts only protobuf bodies (OTLP/JSON clients are converted).
    pub protobuf_only: bool,
    /// Fixed extra headers the backend documents.
    pub extra_headers: &'static [(&'static str, &'static str)],
}

impl Preset {
    pub const ALL: [Preset; 7] = [
        Preset::Lightstep,
        Preset::Honeycomb,
        Preset::GrafanaCloud,
        Preset::Newrelic,
        Preset::Dynatrace,
        Preset::Datadog,
        Preset::Otlp,
    ];

    /// The table entry (documented in `docs/upstreams.md`).
    pub fn info(self) -> PresetInfo {
        let base = PresetInfo {
            name: "",
            header: "authorization",
            default_url: None,
            default_prefix: "",
            grpc: true,
            protobuf_only: false,
            extra_headers: &[],
        };
        match self {
            Preset::Lightstep => PresetInfo {
                name: "lightstep",
                header: "lightstep-access-token",
                default_url: Some("https://ingest.lightstep.com"),
                ..base
            },
            Preset::Honeycomb => PresetInfo {
                name: "honeycomb",
                header: "x-honeycomb-team",
                default_url: Some("https://api.honeycomb.io"),
                ..base
            },
            Preset::GrafanaCloud => PresetInfo {
                name: "grafana-cloud",
                default_prefix: "/otlp",
                grpc: false,
                ..base
            },
            Preset::Newrelic => PresetInfo {
                name: "newrelic",
                header: "api-key",
                default_url: Some("https://otlp.nr-data.net"),
                ..base
            },
            Preset::Dynatrace => PresetInfo {
                name: "dynatrace",
                default_prefix: "/api/v2/otlp",
                grpc: false,
                protobuf_only: true,
                ..base
            },
            Preset::Datadog => PresetInfo {
                name: "datadog",
                header: "dd-api-key",
                default_url: Some("https://otlp.datadoghq.com"),
                grpc: false,
                protobuf_only: true,
                extra_headers: &[("dd-protocol", "otlp")],
                ..base
            },
            Preset::Otlp => PresetInfo {
                name: "otlp",
                ..base
            },
        }
    }

    /// The auth scheme the backend documents (`user` is Grafana Cloud's
    /// instance id).
    pub fn scheme(self, user: Option<&str>) -> AuthScheme {
        match self {
            Preset::Lightstep | Preset::Honeycomb | Preset::Newrelic | Preset::Datadog => {
                AuthScheme::Plain
            }
            Preset::GrafanaCloud => AuthScheme::Basic {
                user: user.unwrap_or_default().to_string(),
            },
            Preset::Dynatrace => AuthScheme::Scheme("Api-Token".into()),
            Preset::Otlp => AuthScheme::Scheme("Bearer".into()),
        }
    }

    /// Path of `signal` after the prefix.
    pub fn suffix(self, signal: Signal) -> &'static str {
        match (self, signal) {
            (Preset::Lightstep, Signal::Traces) => "/traces/otlp/v0.9",
            (Preset::Lightstep, Signal::Metrics) => "/metrics/otlp/v0.9",
            (Preset::Lightstep, Signal::Logs) => "/logs/otlp/v0.9",
            (_, Signal::Traces) => "/v1/traces",
            (_, Signal::Metrics) => "/v1/metrics",
            (_, Signal::Logs) => "/v1/logs",
        }
    }

    /// The request size limit the backend documents for `signal`, in bytes
    /// of the uncompressed protobuf request (None: none documented).
    pub fn max_request_bytes(self, signal: Signal) -> Option<u64> {
        match (self, signal) {
            // "Payloads must be 1 MB (10^6 bytes) or less."
            (Preset::Newrelic, _) => Some(1_000_000),
            // Traces: 8 MB per request; metrics: 4 MB uncompressed.
            (Preset::Dynatrace, Signal::Traces) => Some(8_000_000),
            (Preset::Dynatrace, _) => Some(4_000_000),
            _ => None,
        }
    }
}

/// `paths`: explicit per-signal paths (absolute, replacing the derived ones).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalPaths {
    pub traces: Option<String>,
    pub metrics: Option<String>,
    pub logs: Option<String>,
}

impl SignalPaths {
    fn get(&self, signal: Signal) -> Option<&str> {
        match signal {
            Signal::Traces => self.traces.as_deref(),
            Signal::Metrics => self.metrics.as_deref(),
            Signal::Logs => self.logs.as_deref(),
        }
    }
    fn is_empty(&self) -> bool {
        self.traces.is_none() && self.metrics.is_none() && self.logs.is_none()
    }
}

/// One upstream OTLP endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Without a preset: the full URL of the traces endpoint, e.g.
    /// `https://ingest.lightstep.com/traces/otlp/v0.9` (for `protocol: grpc`,
    /// `https://host:port`). With a preset: the backend's base URL (optional
    /// where the preset has a default).
    #[serde(default)]
    pub url: Option<url::Url>,
    /// A known backend: credential header, auth scheme, paths, limits.
    #[serde(default)]
    pub preset: Option<Preset>,
    /// `http` (default) or `grpc`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Per-signal path overrides (OTLP/HTTP only).
    #[serde(default)]
    pub paths: SignalPaths,
    /// Header that carries the injected credential (default: the preset's,
    /// else `lightstep-access-token`). Only `otlp` and no preset take it.
    #[serde(default)]
    pub credential_header: Option<String>,
    /// A word written before the credential (`Bearer`): `<scheme> <value>`.
    /// Only `otlp` and no preset take it.
    #[serde(default)]
    pub credential_scheme: Option<String>,
    /// Grafana Cloud's numeric instance id (the Basic auth user).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Largest request sent upstream (uncompressed protobuf); bigger
    /// batches are split. Default: the preset's documented limit, else none.
    #[serde(default, deserialize_with = "crate::config::size::deserialize_opt")]
    pub max_request_bytes: Option<bytesize::ByteSize>,
    /// Timeout for one upstream attempt.
    #[serde(default = "default_upstream_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra PEM CA bundle trusted for this upstream (in addition to webpki roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Allow plain http:// to a non-loopback host (logged loudly); for gRPC
    /// this is h2c (HTTP/2 without TLS).
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
    /// What the request path needs from this config in ready form, worked
    /// out once on first use (the config never changes after load).
    #[serde(skip)]
    prepared: std::sync::OnceLock<Prepared>,
}

/// An upstream's per-signal target URIs and credential header name, parsed
/// once instead of on every forwarded request.
#[derive(Debug, Clone, Default)]
struct Prepared {
    /// By signal, in [`Signal::ALL`] order; `None` when there is no target
    /// for the signal (or it is not a valid URI).
    targets: [Option<http::Uri>; 3],
    /// `None` when the configured name is not a valid header name (refused
    /// by config validation before any request).
    header: Option<http::HeaderName>,
}

fn default_upstream_timeout() -> Duration {
    DEFAULT_UPSTREAM_TIMEOUT
}

/// Errors building the credential header value (never carry the value).
#[derive(Debug, thiserror::Error)]
pub enum CredentialValueError {
    #[error("the credential is not a valid header value")]
    InvalidValue,
}

impl UpstreamConfig {
    /// A plain OTLP/HTTP upstream at `url` (tests, `spangate dev`).
    pub fn http(url: url::Url) -> Self {
        UpstreamConfig {
            url: Some(url),
            preset: None,
            protocol: Protocol::Http,
            paths: SignalPaths::default(),
            credential_header: None,
            credential_scheme: None,
            instance_id: None,
            max_request_bytes: None,
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
            ca_file: None,
            allow_insecure_http: false,
            spool: None,
            ack: crate::config::spool::AckMode::default(),
            prepared: std::sync::OnceLock::new(),
        }
    }

    /// The base URL: `url`, or the preset's default.
    pub fn base_url(&self) -> Option<url::Url> {
        if let Some(u) = &self.url {
            return Some(u.clone());
        }
        self.preset?
            .info()
            .default_url
            .and_then(|u| url::Url::parse(u).ok())
    }

    /// The header that carries the credential (lowercase).
    pub fn credential_header(&self) -> String {
        match (&self.credential_header, self.preset) {
            (Some(h), _) => h.to_ascii_lowercase(),
            (None, Some(p)) => p.info().header.to_string(),
            (None, None) => DEFAULT_CREDENTIAL_HEADER.to_string(),
        }
    }

    /// How the credential is written into its header.
    pub fn auth_scheme(&self) -> AuthScheme {
        if let Some(s) = &self.credential_scheme {
            return AuthScheme::Scheme(s.clone());
        }
        match self.preset {
            // A custom header on `otlp` carries the bare value.
            Some(Preset::Otlp) if self.credential_header.is_some() => AuthScheme::Plain,
            Some(p) => p.scheme(self.instance_id.as_deref()),
            None => AuthScheme::Plain,
        }
    }

    /// The credential header's value for `secret`: marked sensitive, its
    /// bytes (and the intermediate buffers) wiped when dropped.
    pub fn credential_value(
        &self,
        secret: &Secret,
    ) -> Result<http::HeaderValue, CredentialValueError> {
        let raw: Zeroizing<Vec<u8>> = match self.auth_scheme() {
            AuthScheme::Plain => {
                return secret
                    .header_value()
                    .map_err(|_| CredentialValueError::InvalidValue);
            }
            AuthScheme::Scheme(s) => {
                let mut v = Zeroizing::new(Vec::with_capacity(s.len() + 1 + secret.expose().len()));
                v.extend_from_slice(s.as_bytes());
                v.push(b' ');
                v.extend_from_slice(secret.expose().as_bytes());
                v
            }
            AuthScheme::Basic { user } => {
                let mut pair =
                    Zeroizing::new(Vec::with_capacity(user.len() + 1 + secret.expose().len()));
                pair.extend_from_slice(user.as_bytes());
                pair.push(b':');
                pair.extend_from_slice(secret.expose().as_bytes());
                let encoded =
                    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*pair));
                let mut v = Zeroizing::new(Vec::with_capacity(6 + encoded.len()));
                v.extend_from_slice(b"Basic ");
                v.extend_from_slice(encoded.as_bytes());
                v
            }
        };
        let mut v = http::HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(raw))
            .map_err(|_| CredentialValueError::InvalidValue)?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// Fixed extra headers of the preset.
    pub fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        self.preset.map(|p| p.info().extra_headers).unwrap_or(&[])
    }

    /// Whether bodies must be protobuf (gRPC, or a protobuf-only backend).
    pub fn protobuf_only(&self) -> bool {
        self.protocol == Protocol::Grpc || self.preset.is_some_and(|p| p.info().protobuf_only)
    }

    /// Largest request for `signal` (None: unlimited).
    pub fn max_request_bytes(&self, signal: Signal) -> Option<usize> {
        let b = match self.max_request_bytes {
            Some(b) => Some(b.as_u64()),
            None => self.preset.and_then(|p| p.max_request_bytes(signal)),
        }?;
        usize::try_from(b).ok()
    }

    /// The full URL a batch of `signal` goes to: for OTLP/HTTP the endpoint
    /// URL, for OTLP/gRPC the base plus the `Export` method path. None when
    /// this upstream has no target for the signal (an upstream without a
    /// preset whose `url` is not a standard `/v1/traces` URL, and no
    /// `paths.<signal>`).
    pub fn target(&self, signal: Signal) -> Option<String> {
        self.target_string(signal)
    }

    /// [`UpstreamConfig::target`] as a request URI, parsed once per
    /// upstream and signal (the request path's form: a clone shares the
    /// parsed bytes).
    pub fn target_uri(&self, signal: Signal) -> Option<http::Uri> {
        let i = Signal::ALL.iter().position(|s| *s == signal)?;
        self.prepared().targets.get(i)?.clone()
    }

    /// [`UpstreamConfig::credential_header`] as a header name, parsed once.
    pub fn credential_header_name(&self) -> Option<http::HeaderName> {
        self.prepared().header.clone()
    }

    fn prepared(&self) -> &Prepared {
        self.prepared.get_or_init(|| Prepared {
            targets: Signal::ALL.map(|s| self.target_string(s).and_then(|t| t.parse().ok())),
            header: http::HeaderName::from_bytes(self.credential_header().as_bytes()).ok(),
        })
    }

    fn target_string(&self, signal: Signal) -> Option<String> {
        let base = self.base_url()?;
        let mut u = base.clone();
        if self.protocol == Protocol::Grpc {
            u.set_path(grpc_method(signal));
            u.set_query(None);
            return Some(u.to_string());
        }
        let path = if let Some(p) = self.paths.get(signal) {
            p.to_string()
        } else if let Some(preset) = self.preset {
            let prefix = base.path().trim_end_matches('/');
            let prefix = if prefix.is_empty() {
                preset.info().default_prefix
            } else {
                prefix
            };
            format!("{prefix}{}", preset.suffix(signal))
        } else {
            // No preset: `url` is the traces endpoint; the other signals
            // are its siblings when it has a standard shape (`/v1/traces`,
            // or Lightstep's `/traces/otlp/v0.9`).
            let p = base.path();
            match signal {
                Signal::Traces => p.to_string(),
                s => {
                    if let Some(prefix) = p.strip_suffix("/v1/traces") {
                        format!("{prefix}/v1/{}", s.as_str())
                    } else {
                        let prefix = p.strip_suffix("/traces/otlp/v0.9")?;
                        format!("{prefix}/{}/otlp/v0.9", s.as_str())
                    }
                }
            }
        };
        u.set_path(&path);
        Some(u.to_string())
    }

    /// Semantic checks of upstream `name`: (key under the upstream, message).
    pub fn validate(&self, name: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let info = self.preset.map(Preset::info);
        let Some(url) = self.base_url() else {
            let m = match info {
                Some(i) => format!(
                    "upstreams.{name}: preset {} needs url (the base URL of your {} endpoint)",
                    i.name,
                    match self.preset {
                        Some(Preset::GrafanaCloud) =>
                            "stack's OTLP gateway, e.g. https://otlp-gateway-prod-us-east-0.grafana.net/otlp",
                        Some(Preset::Dynatrace) =>
                            "environment, e.g. https://abc12345.live.dynatrace.com",
                        _ => "backend's OTLP",
                    }
                ),
                None => format!("upstreams.{name}: url is required (or set a preset)"),
            };
            out.push(("url", m));
            return out;
        };
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure_http || crate::config::is_loopback_url(&url) => {}
            "http" => out.push((
                "url",
                format!(
                    "upstreams.{name}.url: plain http to a non-loopback host; use https or set allow_insecure_http: true"
                ),
            )),
            s => out.push((
                "url",
                format!("upstreams.{name}.url: unsupported scheme {s:?}"),
            )),
        }
        if self.protocol == Protocol::Grpc {
            if let Some(i) = info
                && !i.grpc
            {
                out.push((
                    "protocol",
                    format!(
                        "upstreams.{name}.protocol: {} does not accept OTLP/gRPC; use protocol: http",
                        i.name
                    ),
                ));
            }
            if !self.paths.is_empty() {
                out.push((
                    "paths",
                    format!(
                        "upstreams.{name}.paths: OTLP/gRPC uses the standard Export method paths; paths apply to protocol: http only"
                    ),
                ));
            }
            if !matches!(url.path(), "" | "/") {
                out.push((
                    "url",
                    format!(
                        "upstreams.{name}.url: for protocol: grpc give scheme, host and port only (e.g. https://ingest.lightstep.com:443), not the path {:?}",
                        url.path()
                    ),
                ));
            }
        }
        for s in Signal::ALL {
            if let Some(p) = self.paths.get(s)
                && !p.starts_with('/')
            {
                out.push((
                    "paths",
                    format!(
                        "upstreams.{name}.paths.{}: must be an absolute path starting with /",
                        s.as_str()
                    ),
                ));
            }
        }
        match (self.preset, &self.instance_id) {
            (Some(Preset::GrafanaCloud), None) => out.push((
                "preset",
                format!(
                    "upstreams.{name}: preset grafana-cloud needs instance_id (your stack's numeric instance id, the Basic auth user)"
                ),
            )),
            (Some(Preset::GrafanaCloud), Some(id))
                if id.is_empty() || id.contains(':') || id.chars().any(char::is_control) =>
            {
                out.push((
                    "instance_id",
                    format!("upstreams.{name}.instance_id: must be non-empty, without ':'"),
                ))
            }
            (Some(Preset::GrafanaCloud), Some(_)) => {}
            (_, Some(_)) => out.push((
                "instance_id",
                format!("upstreams.{name}.instance_id: only preset grafana-cloud takes it"),
            )),
            (_, None) => {}
        }
        if let Some(i) = info
            && i.name != "otlp"
        {
            if self.credential_header.is_some() {
                out.push((
                    "credential_header",
                    format!(
                        "upstreams.{name}.credential_header: preset {} sends the credential in {}; remove credential_header (or use preset otlp)",
                        i.name, i.header
                    ),
                ));
            }
            if self.credential_scheme.is_some() {
                out.push((
                    "credential_scheme",
                    format!(
                        "upstreams.{name}.credential_scheme: preset {} sets its own auth scheme; remove credential_scheme (or use preset otlp)",
                        i.name
                    ),
                ));
            }
        }
        if let Some(h) = &self.credential_header
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            out.push((
                "credential_header",
                format!("upstreams.{name}.credential_header: not a valid header name"),
            ));
        }
        if let Some(s) = &self.credential_scheme
            && (s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()))
        {
            out.push((
                "credential_scheme",
                format!(
                    "upstreams.{name}.credential_scheme: one word of visible ASCII, e.g. Bearer"
                ),
            ));
        }
        if self.max_request_bytes.is_some_and(|b| b.as_u64() < 1024) {
            out.push((
                "max_request_bytes",
                format!("upstreams.{name}.max_request_bytes: must be at least 1KiB"),
            ));
        }
        out
    }
}

/// The OTLP/gRPC method path of `signal`.
pub fn grpc_method(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> UpstreamConfig {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    fn value(up: &UpstreamConfig, token: &str) -> String {
        let v = up.credential_value(&Secret::new(token.into())).unwrap();
        assert!(v.is_sensitive(), "credential header marked sensitive");
        v.to_str().unwrap().to_string()
    }

    /// The targets by signal; checks on the way that the parsed forms the
    /// request path uses (built once per upstream) say the same.
    fn targets(up: &UpstreamConfig) -> [Option<String>; 3] {
        let header = up.credential_header_name().map(|h| h.to_string());
        assert_eq!(header.as_deref(), Some(up.credential_header().as_str()));
        Signal::ALL.map(|s| {
            let t = up.target(s);
            let uri = up.target_uri(s).map(|u| u.to_string());
            assert_eq!(
                uri,
                t.as_ref()
                    .and_then(|t| t.parse::<http::Uri>().ok())
                    .map(|u| u.to_string())
            );
            assert_eq!(uri.is_some(), t.is_some(), "{t:?}");
            t
        })
    }

    #[test]
    fn lightstep_preset() {
        let up = parse("preset: lightstep");
        assert!(up.validate("u").is_empty(), "{:?}", up.validate("u"));
        assert_eq!(up.credential_header(), "lightstep-access-token");
        assert_eq!(value(&up, "tok"), "tok");
        assert_eq!(
            targets(&up),
            [
                Some("https://ingest.lightstep.com/traces/otlp/v0.9".into()),
                Some("https://ingest.lightstep.com/metrics/otlp/v0.9".into()),
                Some("https://ingest.lightstep.com/logs/otlp/v0.9".into()),
            ]
        );
        assert_eq!(up.max_request_bytes(Signal::Traces), None);
        let grpc = parse(
            "{ preset: lightstep, protocol: grpc, url: \"https://ingest.lightstep.com:443\" }",
        );
        assert!(grpc.validate("u").is_empty(), "{:?}", grpc.validate("u"));
        assert_eq!(
            targets(&grpc),
            [
                Some("https://ingest.lightstep.com/opentelemetry.proto.collector.trace.v1.TraceService/Export".into()),
                Some("https://ingest.lightstep.com/opentelemetry.proto.collector.metrics.v1.MetricsService/Export".into()),
                Some("https://ingest.lightstep.com/opentelemetry.proto.collector.logs.v1.LogsService/Export".into()),
            ]
        );
        assert!(grpc.protobuf_only());
    }

    #[test]
    fn honeycomb_preset() {
        let up = parse("{ preset: honeycomb, protocol: grpc }");
        assert!(up.validate("u").is_empty());
        assert_eq!(up.credential_header(), "x-honeycomb-team");
        assert_eq!(value(&up, "hc-key"), "hc-key");
        let http = parse("{ preset: honeycomb, url: \"https://api.eu1.honeycomb.io\" }");
        assert_eq!(
            targets(&http),
            [
                Some("https://api.eu1.honeycomb.io/v1/traces".into()),
                Some("https://api.eu1.honeycomb.io/v1/metrics".into()),
                Some("https://api.eu1.honeycomb.io/v1/logs".into()),
            ]
        );
        assert!(!http.protobuf_only());
    }

    #[test]
    fn grafana_cloud_preset_is_basic_auth_of_instance_and_token() {
        let up = parse(
            "{ preset: grafana-cloud, instance_id: \"123456\", url: \"https://otlp-gateway-prod-us-east-0.grafana.net/otlp\" }",
        );
        assert!(up.validate("u").is_empty(), "{:?}", up.validate("u"));
        assert_eq!(up.credential_header(), "authorization");
        // base64("123456:glc_tok")
        assert_eq!(value(&up, "glc_tok"), "Basic MTIzNDU2OmdsY190b2s=");
        assert_eq!(
            targets(&up),
            [
                Some("https://otlp-gateway-prod-us-east-0.grafana.net/otlp/v1/traces".into()),
                Some("https://otlp-gateway-prod-us-east-0.grafana.net/otlp/v1/metrics".into()),
                Some("https://otlp-gateway-prod-us-east-0.grafana.net/otlp/v1/logs".into()),
            ]
        );
        // The gateway host alone gets the /otlp prefix.
        let bare = parse(
            "{ preset: grafana-cloud, instance_id: \"1\", url: \"https://otlp-gateway-prod-eu-west-0.grafana.net\" }",
        );
        assert_eq!(
            bare.target(Signal::Logs).unwrap(),
            "https://otlp-gateway-prod-eu-west-0.grafana.net/otlp/v1/logs"
        );
    }

    #[test]
    fn newrelic_preset_limits_requests_to_one_megabyte() {
        let up = parse("preset: newrelic");
        assert!(up.validate("u").is_empty());
        assert_eq!(up.credential_header(), "api-key");
        assert_eq!(value(&up, "nr-license"), "nr-license");
        assert_eq!(
            targets(&up),
            [
                Some("https://otlp.nr-data.net/v1/traces".into()),
                Some("https://otlp.nr-data.net/v1/metrics".into()),
                Some("https://otlp.nr-data.net/v1/logs".into()),
            ]
        );
        for s in Signal::ALL {
            assert_eq!(up.max_request_bytes(s), Some(1_000_000));
        }
        let over = parse("{ preset: newrelic, max_request_bytes: 512KiB }");
        assert_eq!(over.max_request_bytes(Signal::Traces), Some(512 * 1024));
    }

    #[test]
    fn dynatrace_preset_is_api_token_over_http_protobuf() {
        let up = parse("{ preset: dynatrace, url: \"https://abc12345.live.dynatrace.com\" }");
        assert!(up.validate("u").is_empty());
        assert_eq!(up.credential_header(), "authorization");
        assert_eq!(value(&up, "dt0c01.x"), "Api-Token dt0c01.x");
        assert_eq!(
            targets(&up),
            [
                Some("https://abc12345.live.dynatrace.com/api/v2/otlp/v1/traces".into()),
                Some("https://abc12345.live.dynatrace.com/api/v2/otlp/v1/metrics".into()),
                Some("https://abc12345.live.dynatrace.com/api/v2/otlp/v1/logs".into()),
            ]
        );
        assert!(up.protobuf_only());
        assert_eq!(up.max_request_bytes(Signal::Traces), Some(8_000_000));
        assert_eq!(up.max_request_bytes(Signal::Metrics), Some(4_000_000));
    }

    #[test]
    fn datadog_preset() {
        let up = parse("preset: datadog");
        assert!(up.validate("u").is_empty());
        assert_eq!(up.credential_header(), "dd-api-key");
        assert_eq!(value(&up, "dd-key"), "dd-key");
        assert_eq!(up.extra_headers(), &[("dd-protocol", "otlp")]);
        assert_eq!(
            targets(&up),
            [
                Some("https://otlp.datadoghq.com/v1/traces".into()),
                Some("https://otlp.datadoghq.com/v1/metrics".into()),
                Some("https://otlp.datadoghq.com/v1/logs".into()),
            ]
        );
        assert!(up.protobuf_only());
    }

    #[test]
    fn otlp_preset_is_bearer_by_default_and_takes_a_custom_header() {
        let up = parse("{ preset: otlp, url: \"https://collector.example.com:4318\" }");
        assert!(up.validate("u").is_empty());
        assert_eq!(up.credential_header(), "authorization");
        assert_eq!(value(&up, "t"), "Bearer t");
        assert_eq!(
            up.target(Signal::Metrics).unwrap(),
            "https://collector.example.com:4318/v1/metrics"
        );
        let custom =
            parse("{ preset: otlp, url: \"https://c.example.com\", credential_header: X-Api-Key }");
        assert_eq!(custom.credential_header(), "x-api-key");
        assert_eq!(value(&custom, "t"), "t");
        let scheme =
            parse("{ preset: otlp, url: \"https://c.example.com\", credential_scheme: Token }");
        assert_eq!(value(&scheme, "t"), "Token t");
    }

    #[test]
    fn no_preset_keeps_the_full_url_and_derives_standard_siblings() {
        let up = parse("url: \"https://ingest.lightstep.com/traces/otlp/v0.9\"");
        assert_eq!(up.credential_header(), DEFAULT_CREDENTIAL_HEADER);
        assert_eq!(
            targets(&up),
            [
                Some("https://ingest.lightstep.com/traces/otlp/v0.9".into()),
                Some("https://ingest.lightstep.com/metrics/otlp/v0.9".into()),
                Some("https://ingest.lightstep.com/logs/otlp/v0.9".into()),
            ]
        );
        let other = parse("url: \"https://h.example.com/ingest\"");
        assert_eq!(
            targets(&other),
            [Some("https://h.example.com/ingest".into()), None, None]
        );
        let std = parse("url: \"http://127.0.0.1:4318/v1/traces\"");
        assert_eq!(
            std.target(Signal::Logs).unwrap(),
            "http://127.0.0.1:4318/v1/logs"
        );
        let paths = parse("{ url: \"https://h.example.com/x\", paths: { metrics: /m, logs: /l } }");
        assert_eq!(
            targets(&paths),
            [
                Some("https://h.example.com/x".into()),
                Some("https://h.example.com/m".into()),
                Some("https://h.example.com/l".into()),
            ]
        );
    }

    #[test]
    fn explicit_paths_override_a_presets() {
        let up = parse("{ preset: lightstep, paths: { logs: /v1/logs } }");
        assert_eq!(
            up.target(Signal::Logs).unwrap(),
            "https://ingest.lightstep.com/v1/logs"
        );
        assert_eq!(
            up.target(Signal::Traces).unwrap(),
            "https://ingest.lightstep.com/traces/otlp/v0.9"
        );
    }

    #[test]
    fn contradictions_are_refused_with_the_key() {
        for (yaml, key, want) in [
            (
                "{ preset: dynatrace, url: \"https://a.live.dynatrace.com\", protocol: grpc }",
                "protocol",
                "does not accept OTLP/gRPC",
            ),
            (
                "{ preset: grafana-cloud, url: \"https://g.grafana.net\", protocol: grpc, instance_id: \"1\" }",
                "protocol",
                "does not accept OTLP/gRPC",
            ),
            (
                "{ preset: datadog, protocol: grpc }",
                "protocol",
                "does not accept OTLP/gRPC",
            ),
            (
                "{ preset: grafana-cloud, url: \"https://g.grafana.net\" }",
                "preset",
                "needs instance_id",
            ),
            ("preset: grafana-cloud", "url", "needs url"),
            ("preset: dynatrace", "url", "needs url"),
            (
                "{ preset: honeycomb, instance_id: \"1\" }",
                "instance_id",
                "only preset grafana-cloud",
            ),
            (
                "{ preset: lightstep, credential_header: x-token }",
                "credential_header",
                "lightstep-access-token",
            ),
            (
                "{ preset: newrelic, credential_scheme: Bearer }",
                "credential_scheme",
                "own auth scheme",
            ),
            (
                "{ preset: lightstep, protocol: grpc, url: \"https://ingest.lightstep.com/traces/otlp/v0.9\" }",
                "url",
                "host and port only",
            ),
            (
                "{ preset: honeycomb, protocol: grpc, paths: { traces: /x } }",
                "paths",
                "protocol: http only",
            ),
            (
                "{ preset: honeycomb, paths: { traces: x } }",
                "paths",
                "absolute path",
            ),
            (
                "{ preset: honeycomb, max_request_bytes: 10 }",
                "max_request_bytes",
                "at least 1KiB",
            ),
            (
                "{ url: \"http://ingest.example.com/v1/traces\" }",
                "url",
                "plain http",
            ),
            ("{ protocol: grpc }", "url", "url is required"),
        ] {
            let errs = parse(yaml).validate("u");
            assert!(
                errs.iter().any(|(k, m)| *k == key && m.contains(want)),
                "{yaml}: want {key}: {want}, got {errs:?}"
            );
        }
    }
}
