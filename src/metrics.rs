//! Prometheus metrics. Labels are low-cardinality by construction: endpoint
//! names come from policy, reasons are the fixed codes of `error` and `identity`.
//!
//! Every family is registered at start and its known label values are
//! created with zero values ([`Metrics::precreate`]), so dashboards and
//! alerts see a series before the first event. Process metrics
//! ([`process`]) and `spangate_build_info` sit beside the `spangate_` ones;
//! state read at scrape time (identity providers, credentials, spools) is
//! added by `scrape::StateCollector`.

pub mod process;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Outcomes of `spangate_spans_total`.
pub const SPAN_OUTCOMES: [&str; 3] = ["forwarded", "dropped", "denied"];

/// Admin actions that need authentication (`spangate_admin_requests_total`).
pub const ADMIN_ACTIONS: [&str; 8] = [
    "status.read",
    "secrets.list",
    "secrets.read",
    "secrets.rotate",
    "secrets.rollback",
    "secrets.retire",
    "policy.reload",
    "policy.validate",
];

/// Results of `spangate_admin_requests_total`.
pub const ADMIN_RESULTS: [&str; 6] = [
    "ok",
    "unauthenticated",
    "forbidden",
    "refused",
    "throttled",
    "error",
];

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

/// Labels of `spangate_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub target_os: &'static str,
    pub target_arch: &'static str,
}

/// Labels of `spangate_policy_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub trigger: &'static str,
    pub result: &'static str,
}

/// Policy reload attempts by trigger and result.
pub type ReloadCounter = Family<ReloadLabels, Counter>;

/// All metrics of the process.
pub struct Metrics {
    /// Root registry: process metrics and the `spangate_` sub-registry.
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
    /// `server.memory_budget` in bytes (constant).
    pub memory_budget_bytes: Gauge,
    /// Policy reload attempts by trigger (`watch`, `signal`, `admin`) and result.
    pub policy_reloads: ReloadCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector::new()));
        let registry = root.sub_registry_with_prefix("spangate");
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                target_os: std::env::consts::OS,
                target_arch: std::env::consts::ARCH,
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the labels carry the spangate version and platform",
            build_info,
        );
        let policy_reloads = ReloadCounter::default();
        registry.register(
            "policy_reloads",
            "Policy reload attempts by trigger (watch, signal, admin) and result (ok, error: the last good policy stays in force)",
            policy_reloads.clone(),
        );
        let memory_budget_bytes = Gauge::default();
        registry.register(
            "memory_budget_bytes",
            "The configured memory budget for request bodies (server.memory_budget)",
            memory_budget_bytes.clone(),
        );
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
            registry: root,
            requests,
            spans,
            upstream_attempts,
            request_duration,
            credential_fallbacks,
            inflight_body_bytes,
            admin_requests,
            admin_auth_throttled,
            admin_auth_lockouts,
            memory_budget_bytes,
            policy_reloads,
        }
    }
}

impl Metrics {
    /// Registry (prefix `spangate_`) for other modules to add their metrics at start-up.
    pub fn registry_mut(&mut self) -> &mut Registry {
        self.registry.sub_registry_with_prefix("spangate")
    }

    /// Create every known series with a zero value: the request outcomes of
    /// each endpoint (and of requests refused before routing, endpoint `-`),
    /// span outcomes per endpoint, attempt outcomes per upstream and the
    /// admin actions.
    /// `endpoints` are (name, signal) pairs.
    pub fn precreate<'a>(
        &self,
        endpoints: impl IntoIterator<Item = (&'a str, &'static str)>,
        upstreams: impl IntoIterator<Item = &'a str>,
    ) {
        for (decision, reason, status) in crate::error::outcomes_before_routing() {
            let _ = self.requests.get_or_create(&RequestLabels {
                endpoint: "-".into(),
                signal: "-",
                decision,
                reason,
                status,
            });
        }
        for (endpoint, signal) in endpoints {
            for (decision, reason, status) in crate::error::outcomes_after_routing() {
                let _ = self.requests.get_or_create(&RequestLabels {
                    endpoint: endpoint.to_string(),
                    signal,
                    decision,
                    reason,
                    status,
                });
            }
            for outcome in SPAN_OUTCOMES {
                let _ = self.spans.get_or_create(&SpanLabels {
                    endpoint: endpoint.to_string(),
                    outcome,
                });
            }
        }
        for upstream in upstreams {
            for outcome in crate::forward::ATTEMPT_OUTCOMES {
                let _ = self.upstream_attempts.get_or_create(&UpstreamLabels {
                    upstream: upstream.to_string(),
                    outcome,
                });
            }
        }
        for action in ADMIN_ACTIONS {
            for result in ADMIN_RESULTS {
                let _ = self
                    .admin_requests
                    .get_or_create(&AdminLabels { action, result });
            }
        }
        for trigger in ["watch", "signal", "admin"] {
            for result in ["ok", "error"] {
                let _ = self
                    .policy_reloads
                    .get_or_create(&ReloadLabels { trigger, result });
            }
        }
        for scope in ["peer", "global"] {
            let _ = self
                .admin_auth_throttled
                .get_or_create(&ThrottleLabels { scope });
        }
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
