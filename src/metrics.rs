//! Prometheus metrics. Labels are low-cardinality by construction: endpoint
//! names come from policy, reasons are the fixed codes of `error` and `identity`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    /// `traces`, `metrics`, `logs`, or `-` before routing.
    pub signal: &'static str,
    pub decision: &'static str,
    pub reason: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpanLabels {
    pub endpoint: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
    pub outcome: &'static str,
}

/// Labels of `spangate_admin_requests_total`: fixed action names and results.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdminLabels {
    pub action: &'static str,
    pub result: &'static str,
}

/// Labels of `spangate_admin_auth_throttled_total`: `peer` or `global`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabels {
    pub scope: &'static str,
}

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub spans: Family<SpanLabels, Counter>,
    pub upstream_attempts: Family<UpstreamLabels, Counter>,
    pub request_duration: Histogram,
    pub credential_fallbacks: Counter,
    /// Bytes reserved in the request memory budget (`budget`).
    pub inflight_body_bytes: Gauge,
    /// Authenticated admin calls by action and result.
    pub admin_requests: Family<AdminLabels, Counter>,
    /// Admin calls refused by the failed-authentication throttle.
    pub admin_auth_throttled: Family<ThrottleLabels, Counter>,
    /// Admin authentication lockouts started.
    pub admin_auth_lockouts: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("spangate");
        let requests = Family::<RequestLabels, Counter>::default();
        let spans = Family::<SpanLabels, Counter>::default();
        let upstream_attempts = Family::<UpstreamLabels, Counter>::default();
        let request_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let credential_fallbacks = Counter::default();
        let inflight_body_bytes = Gauge::default();
        registry.register(
            "inflight_body_bytes",
            "Bytes of request bodies, decoded batches and re-encoded bodies held in memory (server.memory_budget)",
            inflight_body_bytes.clone(),
        );
        registry.register(
            "requests",
            "OTLP requests by endpoint, decision, reason and status",
            requests.clone(),
        );
        registry.register(
            "spans",
            "Spans by endpoint and outcome (forwarded, dropped, denied)",
            spans.clone(),
        );
        registry.register(
            "upstream_attempts",
            "Upstream attempts by upstream and outcome",
            upstream_attempts.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to response",
            request_duration.clone(),
        );
        registry.register(
            "credential_fallbacks",
            "Upstream retries with the previous credential during a rotation grace period",
            credential_fallbacks.clone(),
        );
        let admin_requests = Family::<AdminLabels, Counter>::default();
        let admin_auth_throttled = Family::<ThrottleLabels, Counter>::default();
        let admin_auth_lockouts = Counter::default();
        registry.register(
            "admin_requests",
            "Authenticated admin API calls by action and result",
            admin_requests.clone(),
        );
        registry.register(
            "admin_auth_throttled",
            "Admin API calls refused by the failed-authentication throttle, by scope",
            admin_auth_throttled.clone(),
        );
        registry.register(
            "admin_auth_lockouts",
            "Admin authentication lockouts started (a peer reached the failure limit)",
            admin_auth_lockouts.clone(),
        );
        Self {
            registry,
            requests,
            spans,
            upstream_attempts,
            request_duration,
            credential_fallbacks,
            inflight_body_bytes,
            admin_requests,
            admin_auth_throttled,
            admin_auth_lockouts,
        }
    }
}

impl Metrics {
    /// Registry for other modules to add their metrics at start-up.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}
