//! One provider at run time: its resolved spec, its current key snapshot, and
//! the background task that discovers the IdP and keeps the JWKS fresh.
//!
//! Key lifecycle:
//! - the background task refreshes the JWKS every `max-age` (clamped to
//!   `jwks_refresh_min ..= jwks_refresh_max`), retrying failures with jittered
//!   exponential backoff; a failed refresh keeps the last good key set;
//! - an unknown `kid` triggers at most one refetch per
//!   `unknown_kid_refetch_interval`, single-flight (concurrent requests wait on
//!   the same fetch); a kid still unknown afterwards goes to a bounded negative
//!   cache, cleared whenever the key set changes;
//! - when keys leave the JWKS, verified tokens signed by them are dropped from
//!   the token cache.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;

use super::cache::TokenCache;
use super::introspect::{IntrospectionSpec, Introspector};
use super::keys::{self, KeySet};
use super::{DEFAULT_JWKS_REFRESH, Preset, ProviderStatus};
use crate::client::{HttpClient, error_chain};
use crate::secrets::Secret;

/// A provider's config after presets and validation.
#[derive(Debug, Clone)]
pub(crate) struct ProviderSpec {
    pub name: String,
    pub preset: Option<Preset>,
    /// Primary issuer (discovery runs against it).
    pub issuer: String,
    /// Every exact `iss` accepted (primary first).
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub audience_claim: String,
    /// Fixed algorithm set, or `None` to take it from discovery.
    pub algorithms: Option<Vec<Algorithm>>,
    pub leeway: u64,
    /// (claim, accepted values)
    pub required_claims: Vec<(String, Vec<serde_json::Value>)>,
    /// Normalised required `typ` (lowercase, no `application/`).
    pub require_typ: Option<String>,
    pub jwks_uri: Option<String>,
    pub insecure_http: bool,
    pub refresh_min: Duration,
    pub refresh_max: Duration,
    pub unknown_kid_interval: Duration,
    pub unknown_kid_cache_size: u64,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub fetch_timeout: Duration,
    pub max_token_bytes: usize,
    pub token_cache_ttl: Duration,
    pub introspection: Option<IntrospectionSpec>,
}

/// Keys and algorithms in force, swapped atomically.
pub(crate) struct Snapshot {
    pub keys: KeySet,
    pub algorithms: Vec<Algorithm>,
}

#[derive(Default)]
struct Meta {
    attempted: bool,
    last_ok: bool,
    last_error: Option<String>,
    last_refresh: Option<SystemTime>,
    next_attempt: Option<Instant>,
    algorithms: Option<Vec<Algorithm>>,
}

/// Where keys come from, once resolved (after discovery, or from config).
#[derive(Clone)]
struct Target {
    jwks_uri: String,
    algorithms: Vec<Algorithm>,
}

/// A provider at run time.
pub(crate) struct Provider {
    pub index: usize,
    pub spec: ProviderSpec,
    client: HttpClient,
    pub cache: Arc<TokenCache>,
    snapshot: ArcSwapOption<Snapshot>,
    meta: Mutex<Meta>,
    target: Mutex<Option<Target>>,
    fetch_lock: tokio::sync::Mutex<()>,
    fetch_attempts: AtomicU64,
    jwks_fetches: AtomicU64,
    last_on_demand: Mutex<Option<Instant>>,
    negative: moka::sync::Cache<String, ()>,
    ready_tx: Arc<tokio::sync::watch::Sender<u64>>,
    pub introspector: Option<Introspector>,
}

impl Provider {
    pub fn new(
        index: usize,
        spec: ProviderSpec,
        secret: Option<Secret>,
        client: HttpClient,
        cache: Arc<TokenCache>,
        ready_tx: Arc<tokio::sync::watch::Sender<u64>>,
    ) -> Self {
        let negative = moka::sync::Cache::builder()
            .max_capacity(spec.unknown_kid_cache_size.max(1))
            .time_to_live(spec.refresh_max)
            .build();
        let introspector = match (&spec.introspection, secret) {
            (Some(i), Some(secret)) => Some(Introspector::new(
                i.clone(),
                secret,
                spec.fetch_timeout,
                client.clone(),
            )),
            _ => None,
        };
        Self {
            index,
            spec,
            client,
            cache,
            snapshot: ArcSwapOption::empty(),
            meta: Mutex::new(Meta::default()),
            target: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            fetch_attempts: AtomicU64::new(0),
            jwks_fetches: AtomicU64::new(0),
            last_on_demand: Mutex::new(None),
            negative,
            ready_tx,
            introspector,
        }
    }

    /// The key snapshot in force, if any keys were ever fetched.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.load_full()
    }

    /// Does this provider have keys?
    pub fn has_keys(&self) -> bool {
        self.snapshot.load().is_some()
    }

    /// JWKS fetches made so far (ours; discovery's own fetch not counted).
    pub fn jwks_fetches(&self) -> u64 {
        self.jwks_fetches.load(Ordering::Relaxed)
    }

    /// Is `kid` in the key set in force? (Keyless keys count as `None`.)
    pub fn key_published(&self, kid: Option<&str>) -> bool {
        match (self.snapshot.load().as_ref(), kid) {
            (Some(s), Some(kid)) => s.keys.contains(kid),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// When a client should try again while the provider has no keys.
    pub fn retry_after(&self) -> Duration {
        let next = lock(&self.meta).next_attempt;
        let wait = next
            .map(|n| n.saturating_duration_since(Instant::now()))
            .unwrap_or(self.spec.retry_initial);
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Duration::from_secs(secs.clamp(1, self.spec.retry_max.as_secs().max(1)))
    }

    /// Has this kid been checked against fresh keys and found missing?
    pub fn known_unknown(&self, kid: &str) -> bool {
        self.negative.contains_key(kid)
    }

    /// Remember a kid that is not in the (fresh) key set.
    pub fn remember_unknown(&self, kid: &str) {
        if kid.len() <= keys::MAX_KID_LEN {
            self.negative.insert(kid.to_string(), ());
        }
    }

    /// An unknown `kid` arrived: refetch the JWKS once, single-flight and rate
    /// limited. Returns true when a fetch (ours or a concurrent one) completed,
    /// so the key set in force is fresh; false when the rate limit forbade one.
    pub async fn refetch_for_unknown_kid(&self) -> bool {
        if !self.on_demand_allowed() {
            return false;
        }
        let attempts_before = self.fetch_attempts.load(Ordering::Acquire);
        let _guard = self.fetch_lock.lock().await;
        if self.fetch_attempts.load(Ordering::Acquire) != attempts_before {
            // Someone fetched while we waited: use their result.
            return true;
        }
        {
            let mut last = lock(&self.last_on_demand);
            let now = Instant::now();
            if let Some(t) = *last
                && now.duration_since(t) < self.spec.unknown_kid_interval
            {
                return false;
            }
            *last = Some(now);
        }
        let target = lock(&self.target).clone();
        let Some(target) = target else { return false };
        match self.fetch_locked(&target).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(provider = %self.spec.name, error = %e, "unknown-kid JWKS refetch failed; keeping the last good keys");
                let mut m = lock(&self.meta);
                m.last_ok = false;
                m.last_error = Some(e);
                false
            }
        }
    }

    fn on_demand_allowed(&self) -> bool {
        match *lock(&self.last_on_demand) {
            Some(t) => t.elapsed() >= self.spec.unknown_kid_interval,
            None => true,
        }
    }

    /// Fetch and install the JWKS; the caller holds `fetch_lock`.
    async fn fetch_locked(&self, target: &Target) -> Result<Option<Duration>, String> {
        self.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        let result = async {
            let resp = self
                .client
                .get(&target.jwks_uri, self.spec.fetch_timeout)
                .await
                .map_err(|e| format!("JWKS fetch: {}", error_chain(&e)))?;
            if !resp.status().is_success() {
                return Err(format!("JWKS fetch: HTTP {}", resp.status().as_u16()));
            }
            let max_age = keys::max_age(resp.headers());
            let set = keys::parse_jwks(resp.body())?;
            Ok((set, max_age))
        }
        .await;
        self.fetch_attempts.fetch_add(1, Ordering::Release);
        let (set, max_age) = result?;
        self.install(set, target.algorithms.clone());
        Ok(max_age)
    }

    /// Install a fixed JWKS document once, instead of fetching one (no fetch
    /// target is ever set, so an unknown `kid` is refused without a refetch).
    /// Algorithms: the configured ones, else every asymmetric one.
    pub fn install_static(&self, jwks: &[u8]) -> Result<(), String> {
        let set = keys::parse_jwks(jwks)?;
        let algorithms = self
            .spec
            .algorithms
            .clone()
            .unwrap_or_else(super::presets::all_asymmetric);
        self.install(set, algorithms);
        Ok(())
    }

    fn install(&self, set: KeySet, algorithms: Vec<Algorithm>) {
        let old = self.snapshot.load_full();
        let removed: HashSet<String> = match &old {
            Some(o) => o
                .keys
                .kids()
                .filter(|k| !set.contains(k))
                .cloned()
                .collect(),
            None => HashSet::new(),
        };
        let count = set.len();
        self.snapshot.store(Some(Arc::new(Snapshot {
            keys: set,
            algorithms,
        })));
        // A kid we refused may be in the new set.
        self.negative.invalidate_all();
        if !removed.is_empty() {
            tracing::info!(provider = %self.spec.name, removed = removed.len(), "signing keys left the JWKS; dropping tokens they verified");
            self.cache.invalidate_kids(self.index, removed);
        }
        {
            let mut m = lock(&self.meta);
            m.attempted = true;
            m.last_ok = true;
            m.last_error = None;
            m.last_refresh = Some(SystemTime::now());
        }
        tracing::debug!(provider = %self.spec.name, keys = count, "JWKS installed");
        self.ready_tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    fn record_failure(&self, error: String, retry_in: Duration) {
        let had_keys = self.has_keys();
        {
            let mut m = lock(&self.meta);
            m.attempted = true;
            m.last_ok = false;
            m.last_error = Some(error.clone());
            m.next_attempt = Some(Instant::now() + retry_in);
        }
        if had_keys {
            tracing::warn!(provider = %self.spec.name, error = %error, retry_in = ?retry_in, "JWKS refresh failed; serving the last good keys");
        } else {
            tracing::warn!(provider = %self.spec.name, error = %error, retry_in = ?retry_in, "identity provider unavailable; its tokens get 503 until keys are fetched");
        }
        self.ready_tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Resolve the JWKS URL and algorithms: from config, or by OIDC discovery.
    async fn resolve_target(&self) -> Result<Target, String> {
        if let Some(uri) = &self.spec.jwks_uri {
            let algorithms = self
                .spec
                .algorithms
                .clone()
                .unwrap_or_else(super::presets::all_asymmetric);
            return Ok(Target {
                jwks_uri: uri.clone(),
                algorithms,
            });
        }
        use openidconnect::core::CoreProviderMetadata;
        let issuer = openidconnect::IssuerUrl::new(self.spec.issuer.clone())
            .map_err(|e| format!("issuer URL: {e}"))?;
        let fut = CoreProviderMetadata::discover_async(issuer, &self.client);
        let meta = tokio::time::timeout(self.spec.fetch_timeout * 3, fut)
            .await
            .map_err(|_| "discovery timed out".to_string())?
            .map_err(|e| format!("discovery: {}", discovery_error(&e)))?;
        let jwks_uri = meta.jwks_uri().url().clone();
        super::presets::check_fetch_url(&jwks_uri, self.spec.insecure_http)
            .map_err(|e| format!("discovery jwks_uri: {e}"))?;
        let algorithms = match &self.spec.algorithms {
            Some(a) => a.clone(),
            None => {
                let advertised: Vec<Algorithm> = meta
                    .id_token_signing_alg_values_supported()
                    .iter()
                    .filter_map(|a| serde_json::to_value(a).ok())
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .filter(|s| super::ASYMMETRIC_ALGORITHMS.contains(&s.as_str()))
                    .filter_map(|s| s.parse::<Algorithm>().ok())
                    .collect();
                if advertised.is_empty() {
                    return Err(
                        "discovery advertises no asymmetric signing algorithm; set `algorithms`"
                            .into(),
                    );
                }
                advertised
            }
        };
        lock(&self.meta).algorithms = Some(algorithms.clone());
        Ok(Target {
            jwks_uri: jwks_uri.to_string(),
            algorithms,
        })
    }

    /// Status for readiness and the admin API.
    pub fn status(&self) -> ProviderStatus {
        let snap = self.snapshot.load_full();
        let m = lock(&self.meta);
        let state = match (&snap, m.attempted, m.last_ok) {
            (Some(_), _, true) => "ready",
            (Some(_), _, false) => "degraded",
            (None, false, _) => "starting",
            (None, true, _) => "unavailable",
        };
        let algorithms = snap
            .as_ref()
            .map(|s| s.algorithms.clone())
            .or_else(|| m.algorithms.clone())
            .or_else(|| self.spec.algorithms.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|a| format!("{a:?}"))
            .collect();
        ProviderStatus {
            name: self.spec.name.clone(),
            issuer: self.spec.issuer.clone(),
            state,
            keys: snap.as_ref().map(|s| s.keys.len()).unwrap_or(0),
            last_error: m.last_error.clone(),
            last_refresh: m
                .last_refresh
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            algorithms,
            preset: self.spec.preset,
        }
    }
}

fn discovery_error<E: std::error::Error + 'static>(e: &openidconnect::DiscoveryError<E>) -> String {
    match e {
        openidconnect::DiscoveryError::Response(status, _, msg) => {
            format!("HTTP {}: {msg}", status.as_u16())
        }
        other => error_chain(other),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Jittered exponential backoff: `initial`, doubling up to `max`; each delay is
/// drawn uniformly from [d/2, d].
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        let mut b = [0u8; 4];
        let frac = if aws_lc_rs::rand::fill(&mut b).is_ok() {
            f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
        } else {
            1.0
        };
        d.mul_f64(0.5 + 0.5 * frac)
    }
}

/// The background task of one provider: resolve, then refresh forever.
pub(crate) async fn run(p: Arc<Provider>) {
    let mut backoff = Backoff::new(p.spec.retry_initial, p.spec.retry_max);
    let target = loop {
        match p.resolve_target().await {
            Ok(t) => break t,
            Err(e) => {
                let d = backoff.next_delay();
                p.record_failure(e, d);
                tokio::time::sleep(d).await;
            }
        }
    };
    *lock(&p.target) = Some(target.clone());
    loop {
        let result = {
            let _guard = p.fetch_lock.lock().await;
            p.fetch_locked(&target).await
        };
        let delay = match result {
            Ok(max_age) => {
                backoff.reset();
                let d = max_age.unwrap_or(DEFAULT_JWKS_REFRESH).clamp(
                    p.spec.refresh_min,
                    p.spec.refresh_max.max(p.spec.refresh_min),
                );
                lock(&p.meta).next_attempt = Some(Instant::now() + d);
                d
            }
            Err(e) => {
                let d = backoff.next_delay();
                p.record_failure(e, d);
                d
            }
        };
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_max_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut caps = Vec::new();
        for _ in 0..10 {
            let d = b.next_delay();
            caps.push(d);
        }
        assert!(caps[0] >= Duration::from_millis(500) && caps[0] <= Duration::from_secs(1));
        assert!(caps[1] >= Duration::from_secs(1) && caps[1] <= Duration::from_secs(2));
        for d in &caps {
            assert!(*d <= Duration::from_secs(60));
        }
        assert!(caps[9] >= Duration::from_secs(30));
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
