//! The metrics listener (`metrics.listen`) and the gauges read from live
//! state at scrape time.
//!
//! The listener serves only `GET /metrics` (and `/healthz`): read-only,
//! aggregate, low-cardinality numbers, so it needs no token and can be
//! exposed to the cluster's Prometheus while the admin API stays on
//! loopback. Nothing it prints is a secret: credentials appear by name and
//! version number only.
//!
//! [`StateCollector`] adds what is cheaper to read when scraped than to
//! keep current on every change: each identity provider's state and JWKS
//! freshness, each credential's current version and age, and each spool's
//! depth and oldest batch.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::proxy::listener::{self, ListenerOptions};

/// Concurrent connections of the metrics listener (counted in the
/// open-file budget at start).
pub const MAX_CONNECTIONS: usize = 64;
use crate::secrets::SecretStore;
use crate::spool::Spool;

/// Default address of the metrics listener in the shipped configs
/// (9464: the port OpenTelemetry's Prometheus exporters use).
pub const DEFAULT_METRICS_PORT: u16 = 9464;

/// Content type of the exposition (prometheus-client writes OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Provider states, one-hot in `spangate_identity_provider_state`.
pub const PROVIDER_STATES: [&str; 4] = ["starting", "ready", "degraded", "unavailable"];

/// Reads identity, credential and spool state on every scrape.
pub struct StateCollector {
    pub identity: Arc<Identity>,
    pub secrets: Arc<SecretStore>,
    pub spools: Vec<Arc<Spool>>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCollector")
            .field("spools", &self.spools.len())
            .finish_non_exhaustive()
    }
}

/// One labelled family of gauges.
fn gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, &format!("{help}."), None, MetricType::Gauge)?;
    for (labels, value) in series {
        let m = family.encode_family(&labels)?;
        ConstGauge::new(value).encode(m)?;
    }
    Ok(())
}

/// One labelled family of counters.
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, &format!("{help}."), None, MetricType::Counter)?;
    for (labels, value) in series {
        let m = family.encode_family(&labels)?;
        ConstCounter::new(value).encode(m)?;
    }
    Ok(())
}

impl Collector for StateCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = SystemTime::now();

        // Identity providers.
        let providers = self.identity.status();
        let fetches = self.identity.jwks_fetches();
        gauges(
            &mut e,
            "identity_provider_state",
            "1 for the provider's current state (starting, ready, degraded: serving the last good keys after a failed refresh, unavailable: no keys), 0 for the others",
            providers.iter().flat_map(|p| {
                PROVIDER_STATES.iter().map(move |s| {
                    (
                        [("provider", p.name.as_str()), ("state", *s)],
                        f64::from(u8::from(p.state == *s)),
                    )
                })
            }),
        )?;
        gauges(
            &mut e,
            "identity_jwks_keys",
            "Usable signing keys of the provider",
            providers
                .iter()
                .map(|p| ([("provider", p.name.as_str())], p.keys as f64)),
        )?;
        gauges(
            &mut e,
            "identity_jwks_last_success_timestamp_seconds",
            "Unix time of the provider's last successful JWKS fetch (0: none yet)",
            providers.iter().map(|p| {
                (
                    [("provider", p.name.as_str())],
                    p.last_refresh.unwrap_or(0) as f64,
                )
            }),
        )?;
        counters(
            &mut e,
            "identity_jwks_fetches",
            "JWKS fetches by provider (scheduled refreshes and unknown-key refetches)",
            providers.iter().map(|p| {
                (
                    [("provider", p.name.as_str())],
                    fetches.get(&p.name).copied().unwrap_or(0),
                )
            }),
        )?;
        let verifications = ConstCounter::new(self.identity.signature_verifications());
        let m = e.encode_descriptor(
            "identity_signature_verifications",
            "Token signature verifications (verified-token cache hits do not count).",
            None,
            MetricType::Counter,
        )?;
        verifications.encode(m)?;

        // Credentials: names and version numbers only, never values.
        let current = self.secrets.current_versions();
        gauges(
            &mut e,
            "credential_current_version",
            "Version number of the credential's current value",
            current
                .iter()
                .map(|c| ([("credential", c.name.as_str())], c.version as f64)),
        )?;
        gauges(
            &mut e,
            "credential_age_seconds",
            "Seconds since the credential's current version became current",
            current.iter().map(|c| {
                (
                    [("credential", c.name.as_str())],
                    now.duration_since(c.since)
                        .unwrap_or(Duration::ZERO)
                        .as_secs_f64(),
                )
            }),
        )?;
        let c = self.secrets.counters();
        counters(
            &mut e,
            "credential_operations",
            "Successful credential operations (rotate, rollback, retire, expire: a previous version retired at the end of its grace or not_after)",
            [
                ([("operation", "rotate")], c.rotations),
                ([("operation", "rollback")], c.rollbacks),
                ([("operation", "retire")], c.retirements),
                ([("operation", "expire")], c.expirations),
            ],
        )?;
        counters(
            &mut e,
            "credential_rotation_failures",
            "Rotations refused because the upstream probe rejected the new value (upstream_rejected) or could not reach the upstream (upstream_unavailable)",
            [
                ([("reason", "upstream_rejected")], c.verify_rejections),
                ([("reason", "upstream_unavailable")], c.verify_unavailable),
            ],
        )?;

        // Spools.
        let depths: Vec<_> = self.spools.iter().map(|s| (s, s.depth())).collect();
        gauges(
            &mut e,
            "spool_queued_batches",
            "Batches queued for delivery, by upstream",
            depths
                .iter()
                .map(|(s, d)| ([("upstream", s.upstream())], d.batches as f64)),
        )?;
        gauges(
            &mut e,
            "spool_queued_bytes",
            "Bytes queued for delivery, by upstream",
            depths
                .iter()
                .map(|(s, d)| ([("upstream", s.upstream())], d.bytes as f64)),
        )?;
        gauges(
            &mut e,
            "spool_max_bytes",
            "The spool's byte limit (upstreams.<name>.spool.max_bytes)",
            depths.iter().map(|(s, _)| {
                (
                    [("upstream", s.upstream())],
                    s.config().max_bytes.as_u64() as f64,
                )
            }),
        )?;
        gauges(
            &mut e,
            "spool_oldest_age_seconds",
            "Age of the oldest queued batch (0 when the spool is empty)",
            depths.iter().map(|(s, d)| {
                (
                    [("upstream", s.upstream())],
                    d.oldest.unwrap_or(Duration::ZERO).as_secs_f64(),
                )
            }),
        )?;
        gauges(
            &mut e,
            "spool_max_age_seconds",
            "Age at which a queued batch is given up (upstreams.<name>.spool.max_age)",
            depths.iter().map(|(s, _)| {
                (
                    [("upstream", s.upstream())],
                    s.config().max_age.as_secs_f64(),
                )
            }),
        )
    }
}

/// Serve `GET /metrics` on `l` until `shutdown`.
pub async fn serve(l: TcpListener, metrics: Arc<Metrics>, shutdown: watch::Receiver<bool>) {
    let handler = move |req: Request<Incoming>, _remote: SocketAddr| {
        let metrics = metrics.clone();
        async move { Ok::<_, Infallible>(respond(&metrics, req.method(), req.uri().path())) }
    };
    let opts = ListenerOptions {
        max_connections: MAX_CONNECTIONS,
        ..ListenerOptions::from_config(&crate::config::ServerConfig::default(), None)
    };
    listener::serve(l, opts, handler, shutdown, Duration::from_secs(1)).await;
}

fn respond(metrics: &Metrics, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(metrics.encode())));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        ),
    }
}
