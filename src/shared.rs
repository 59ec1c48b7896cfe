//! The handles every listener and background task shares: identity, policy,
//! secrets, clients, audit, metrics, limits, budget and spools.
//!
//! It sits beneath `proxy`, `admin` and `spool` (which read it) and is built
//! by `app` (which only wires), so no data-path module imports upward.

use std::sync::Arc;

use crate::audit::Audit;
use crate::client::HttpClient;
use crate::config::Config;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::policy::PolicyHolder;
use crate::secrets::SecretStore;

/// State shared by the proxy and admin listeners.
pub struct Shared {
    pub config: Config,
    pub identity: Arc<Identity>,
    pub policy: Arc<PolicyHolder>,
    pub secrets: Arc<SecretStore>,
    pub client: HttpClient,
    /// Client per upstream: the shared stack, or one that also trusts the
    /// upstream's own `ca_file` (that CA is trusted for that upstream only).
    pub upstream_clients: std::collections::BTreeMap<String, HttpClient>,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
    pub limiter: crate::ratelimit::RateLimiter,
    /// Memory for request bodies in flight, all requests together.
    pub budget: crate::budget::MemoryBudget,
    /// Deployments seen per project (the deployment link).
    pub deployments: Arc<crate::deployments::DeploymentTracker>,
    /// Spool per upstream that has `spool` configured.
    pub spools: std::collections::BTreeMap<String, Arc<crate::spool::Spool>>,
    /// Fleet state in Redis, when `state.redis` is configured.
    pub fleet: Option<Arc<crate::state::Fleet>>,
}

impl Shared {
    /// Where credential changes go: Redis for a fleet, else the local store.
    pub fn credentials(&self) -> crate::state::CredentialBackend {
        match &self.fleet {
            Some(f) => crate::state::CredentialBackend::Redis(Arc::clone(f)),
            None => crate::state::CredentialBackend::Embedded(Arc::clone(&self.secrets)),
        }
    }

    /// Check the per-identity rate limits: fleet-wide when a fleet is
    /// configured, else in this process.
    pub async fn check_rate(
        &self,
        key: &str,
        spec: &crate::ratelimit::RateSpec,
        spans: u32,
        bytes: u32,
    ) -> Result<(), crate::ratelimit::RateLimited> {
        match &self.fleet {
            Some(f) => f.check_rate(key, spec, spans, bytes).await,
            None => self.limiter.check(key, spec, spans, bytes),
        }
    }

    /// The client for an upstream (the shared one if it has no own CA).
    pub fn upstream_client(&self, name: &str) -> &HttpClient {
        self.upstream_clients.get(name).unwrap_or(&self.client)
    }
}
