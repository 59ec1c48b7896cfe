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
//! - when that refetch fails (or the rate limit holds it back and the most
//!   recent fetch failed), the kid cannot be judged: the token gets
//!   `provider_unavailable` (retryable) instead of `unknown_key`;
//! - when keys leave the JWKS, verified tokens signed by them are dropped from
//!   the token cache.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Longest `Retry-After` handed out for an unknown kid the IdP could not confirm.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

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
    pub rediscovery_interval: Duration,
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
    /// Why the last re-discovery failed or was refused (`None` after a good one).
    discovery_error: Option<String>,
}

/// Outcome of an unknown-`kid` refetch request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refetch {
    /// A JWKS fetch (ours, or a concurrent one we waited on) succeeded: the
    /// key set in force is fresh, a kid missing from it is unknown.
    Fresh,
    /// The fetch failed, or the rate limit forbade one while the most recent
    /// fetch had failed: we cannot tell whether the kid is real.
    Failed,
    /// The rate limit forbade a fetch and the most recent one succeeded: the
    /// key set is at most `unknown_kid_refetch_interval` old.
    Limited,
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
    /// Did the most recent JWKS fetch (background or on demand) succeed?
    last_fetch_ok: AtomicBool,
    /// Keys installed once from a fixed document (`install_static`): the
    /// set is final, so an unknown kid is unknown, with no refetch.
    static_keys: AtomicBool,
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
            last_fetch_ok: AtomicBool::new(false),
            static_keys: AtomicBool::new(false),
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
    /// limited (at most one on-demand fetch per `unknown_kid_refetch_interval`,
    /// whatever its outcome, so a failing IdP cannot be hammered either).
    ///
    /// Every caller goes through the fetch lock, so one that arrives while a
    /// fetch is in flight (on demand or background) waits for it and judges
    /// its kid by that fetch's outcome, not by the one before.
    pub async fn refetch_for_unknown_kid(&self) -> Refetch {
        if self.static_keys.load(Ordering::Acquire) {
            return Refetch::Fresh;
        }
        let attempts_before = self.fetch_attempts.load(Ordering::Acquire);
        let _guard = self.fetch_lock.lock().await;
        if self.fetch_attempts.load(Ordering::Acquire) != attempts_before {
            // Someone fetched while we waited: use their result.
            return self.last_outcome();
        }
        {
            let mut last = lock(&self.last_on_demand);
            let now = Instant::now();
            if let Some(t) = *last
                && now.duration_since(t) < self.spec.unknown_kid_interval
            {
                return self.limited();
            }
            *last = Some(now);
        }
        let target = lock(&self.target).clone();
        let Some(target) = target else {
            return Refetch::Failed;
        };
        match self.fetch_locked(&target).await {
            Ok(_) => Refetch::Fresh,
            Err(e) => {
                tracing::warn!(provider = %self.spec.name, error = %e, "unknown-kid JWKS refetch failed; keeping the last good keys, the token gets 503");
                let mut m = lock(&self.meta);
                m.last_ok = false;
                m.last_error = Some(e);
                Refetch::Failed
            }
        }
    }

    fn last_outcome(&self) -> Refetch {
        if self.last_fetch_ok.load(Ordering::Acquire) {
            Refetch::Fresh
        } else {
            Refetch::Failed
        }
    }

    fn limited(&self) -> Refetch {
        if self.last_fetch_ok.load(Ordering::Acquire) {
            Refetch::Limited
        } else {
            Refetch::Failed
        }
    }

    /// When a client whose kid could not be checked (the refetch failed)
    /// should try again: when the next on-demand refetch is allowed, or the
    /// next background attempt, whichever comes first (at least 1 s).
    pub fn unknown_kid_retry_after(&self) -> Duration {
        let now = Instant::now();
        let on_demand = lock(&self.last_on_demand)
            .map(|t| (t + self.spec.unknown_kid_interval).saturating_duration_since(now))
            .unwrap_or(Duration::ZERO);
        let background = lock(&self.meta)
            .next_attempt
            .map(|n| n.saturating_duration_since(now));
        let wait = match background {
            Some(b) => on_demand.min(b),
            None => on_demand,
        };
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Duration::from_secs(secs.clamp(1, MAX_RETRY_AFTER.as_secs()))
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
        self.last_fetch_ok.store(result.is_ok(), Ordering::Release);
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
        self.static_keys.store(true, Ordering::Release);
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
        let added = match &old {
            Some(o) => set.kids().any(|k| !o.keys.contains(k)),
            None => true,
        };
        self.snapshot.store(Some(Arc::new(Snapshot {
            keys: set,
            algorithms,
        })));
        // A kid we refused may be in the new set.
        if added {
            self.negative.invalidate_all();
        }
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
            tracing::warn!(provider = %self.spec.name, error = %error, retry_in = %crate::logging::human(retry_in), "JWKS refresh failed; serving the last good keys");
        } else {
            tracing::warn!(provider = %self.spec.name, error = %error, retry_in = %crate::logging::human(retry_in), "identity provider unavailable; its tokens get 503 until keys are fetched");
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
        // The document is fetched and checked here rather than by
        // `openidconnect`'s `discover_async`, which also fetches the JWKS the
        // document names before we could refuse a plain-http `jwks_uri`.
        use openidconnect::core::CoreProviderMetadata;
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.spec.issuer.trim_end_matches('/')
        );
        let resp = self
            .client
            .get(&url, self.spec.fetch_timeout)
            .await
            .map_err(|e| format!("discovery: {}", error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("discovery: HTTP {}", resp.status().as_u16()));
        }
        let meta: CoreProviderMetadata = serde_json::from_slice(resp.body())
            .map_err(|e| format!("discovery: not a valid OpenID provider document: {e}"))?;
        // OIDC Discovery §4.3: the issuer must be exactly the one configured.
        if meta.issuer().as_str() != self.spec.issuer {
            return Err(format!(
                "discovery: the document names issuer {:?}, not {:?}; refused",
                clip(meta.issuer().as_str(), 200),
                self.spec.issuer
            ));
        }
        let jwks_uri = meta.jwks_uri().url().clone();
        super::presets::check_fetch_url(&jwks_uri, self.spec.insecure_http)
            .map_err(|e| format!("discovery jwks_uri: {}", clip(&e, 300)))?;
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

    /// Fetch the discovery document again. A document that fails the checks
    /// of the first discovery (exact `issuer`, https `jwks_uri`, an asymmetric
    /// algorithm) is refused and the previous target kept. Returns true when
    /// the target changed.
    async fn rediscover(&self) -> bool {
        match self.resolve_target().await {
            Ok(t) => {
                lock(&self.meta).discovery_error = None;
                let mut cur = lock(&self.target);
                let changed = cur
                    .as_ref()
                    .is_none_or(|c| c.jwks_uri != t.jwks_uri || c.algorithms != t.algorithms);
                if changed {
                    tracing::info!(provider = %self.spec.name, jwks_uri = %t.jwks_uri,
                        "discovery document changed; using its jwks_uri and algorithms");
                }
                *cur = Some(t);
                changed
            }
            Err(e) => {
                tracing::warn!(provider = %self.spec.name, error = %e,
                    "re-discovery failed or the document was refused; keeping the previous jwks_uri");
                lock(&self.meta).discovery_error = Some(e);
                false
            }
        }
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
            jwks_uri: lock(&self.target).as_ref().map(|t| t.jwks_uri.clone()),
            discovery_error: m.discovery_error.clone(),
        }
    }
}

/// At most `n` characters of an IdP-supplied string, for messages and status.
fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
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

/// The background task of one provider: discover, then refresh the JWKS
/// forever, and look at the discovery document again every
/// `rediscovery_interval` (and before retrying a failed JWKS fetch: the JWKS
/// may have moved).
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
    *lock(&p.target) = Some(target);
    let discovering = p.spec.jwks_uri.is_none();
    let mut next_discovery = Instant::now() + p.spec.rediscovery_interval;
    let mut next_jwks = Instant::now();
    loop {
        if discovering && Instant::now() >= next_discovery {
            next_discovery = Instant::now() + p.spec.rediscovery_interval;
            if p.rediscover().await {
                // A new jwks_uri (or algorithm set): fetch its keys now.
                next_jwks = Instant::now();
            }
        }
        if Instant::now() >= next_jwks {
            let target = lock(&p.target).clone();
            let result = match &target {
                Some(t) => {
                    let _guard = p.fetch_lock.lock().await;
                    p.fetch_locked(t).await
                }
                None => Err("no jwks_uri resolved".to_string()),
            };
            match result {
                Ok(max_age) => {
                    backoff.reset();
                    let d = max_age.unwrap_or(DEFAULT_JWKS_REFRESH).clamp(
                        p.spec.refresh_min,
                        p.spec.refresh_max.max(p.spec.refresh_min),
                    );
                    lock(&p.meta).next_attempt = Some(Instant::now() + d);
                    next_jwks = Instant::now() + d;
                }
                Err(e) => {
                    let d = backoff.next_delay();
                    p.record_failure(e, d);
                    next_jwks = Instant::now() + d;
                    // The JWKS may have moved: read the discovery document
                    // again before the retry (bounded by the same backoff).
                    next_discovery = next_discovery.min(next_jwks);
                }
            }
        }
        let wake = if discovering {
            next_jwks.min(next_discovery)
        } else {
            next_jwks
        };
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
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
