//! Identity: OIDC discovery, JWKS cache and refresh, JWT verification.
//! Produces a [`Principal`]; nothing after authentication reads auth headers.
//!
//! The flow for one bearer token, top to bottom:
//! 1. size cap (before any parsing) → `too_large`;
//! 2. verified-token cache (SHA-256 of the token) → a hit skips the signature,
//!    but still honours `exp + leeway` and the key still being published;
//! 3. parse the JOSE header and the *unverified* payload (strict JSON: one
//!    object, no duplicate member names), only to read `iss`;
//! 4. route to the one provider whose issuer equals `iss` exactly; the token is
//!    verified against that provider's keys only;
//! 5. header checks: `alg` in the provider's asymmetric set, no `crit`, no
//!    `b64: false`, no nested `cty: JWT`, `typ`;
//! 6. key by `kid` (an unknown kid triggers one single-flight, rate-limited
//!    refetch and then lands in a bounded negative cache; if that refetch
//!    fails, the answer is the retryable `provider_unavailable`);
//! 7. signature, then `exp`/`nbf`/`iat` (NumericDates, with leeway), audience,
//!    `sub` (a string), required claims.
//!
//! Tokens that are not JWTs go to the provider that has RFC 7662 introspection
//! configured (at most one may).
//!
//! Every provider runs a background task that discovers the IdP, fetches its
//! JWKS and refreshes it (honouring `Cache-Control: max-age` within bounds),
//! reads the discovery document again every `rediscovery_interval`, and
//! retries failures with jittered backoff. Start-up never waits on an IdP; tokens of a
//! provider without keys get [`AuthError::ProviderUnavailable`].

mod cache;
mod introspect;
mod keys;
mod presets;
mod provider;
mod strict_json;
mod verify;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

use crate::client::HttpClient;
use crate::secrets::SecretSource;

pub use presets::Preset;

use cache::TokenCache;
use provider::Provider;

/// Default clock leeway for `exp` / `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Lower bound of the JWKS refresh interval (a smaller `max-age` is raised to it).
pub const DEFAULT_JWKS_REFRESH_MIN: Duration = Duration::from_secs(5 * 60);
/// Upper bound of the JWKS refresh interval (a larger `max-age` is lowered to it).
pub const DEFAULT_JWKS_REFRESH_MAX: Duration = Duration::from_secs(24 * 3600);
/// Refresh interval when the JWKS response has no `max-age` (clamped to the bounds).
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(3600);
/// The discovery document is fetched again this often (a moved `jwks_uri` is
/// picked up without restart).
pub const DEFAULT_REDISCOVERY_INTERVAL: Duration = Duration::from_secs(3600);
/// Longest accepted `rediscovery_interval`.
pub const MAX_REDISCOVERY_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// At most one unknown-`kid` refetch per provider per this interval.
pub const DEFAULT_UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Bound of the per-provider negative cache of unknown key ids.
pub const DEFAULT_UNKNOWN_KID_CACHE_SIZE: u64 = 10_000;
/// First retry delay after a failed discovery / JWKS fetch.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Retry delays double up to this bound (jittered).
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(60);
/// Timeout of one discovery / JWKS / introspection request.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Tokens larger than this are refused before parsing.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest a verified token stays cached (never beyond its `exp`).
pub const DEFAULT_TOKEN_CACHE_TTL: Duration = Duration::from_secs(5 * 60);
/// Total weight (approximate bytes) of the verified-token cache.
pub const TOKEN_CACHE_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Longest an introspection result stays cached (never beyond its `exp`).
pub const DEFAULT_INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most keys taken from one JWKS document.
pub const MAX_JWKS_KEYS: usize = 64;

/// Every algorithm spangate can verify: asymmetric only. HS* and `none` are never accepted.
pub const ASYMMETRIC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// One OIDC provider (`providers.<name>` in the config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Exact issuer (`iss`) string; discovery runs against it unless `jwks_uri` is set.
    pub issuer: String,
    /// Accepted audiences (required; a provider without one is refused).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// IdP preset that sets the right defaults (okta, auth0, entra, vercel, cognito,
    /// keycloak, google, aws-iam).
    #[serde(default)]
    pub preset: Option<Preset>,
    /// Further exact `iss` values accepted for this provider (verified with its keys).
    #[serde(default)]
    pub additional_issuers: Vec<String>,
    /// Allowed signature algorithms (asymmetric only). Empty: those the discovery
    /// document advertises, intersected with the asymmetric set.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Clock leeway for `exp` / `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Claims that must be present with an exact value (or one of a list).
    #[serde(default)]
    pub required_claims: BTreeMap<String, serde_json::Value>,
    /// Require this JOSE `typ` (e.g. `at+jwt`). Default: `at+jwt`, `JWT` or none.
    #[serde(default)]
    pub require_typ: Option<String>,
    /// Claim that carries the audience (default `aud`; Cognito access tokens: `client_id`).
    #[serde(default)]
    pub audience_claim: Option<String>,
    /// Explicit JWKS URL: no discovery at all.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Allow plain http to a non-loopback IdP (logged at WARN).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Lower bound of the JWKS refresh interval.
    #[serde(default = "default_jwks_refresh_min", with = "humantime_serde")]
    pub jwks_refresh_min: Duration,
    /// Upper bound of the JWKS refresh interval.
    #[serde(default = "default_jwks_refresh_max", with = "humantime_serde")]
    pub jwks_refresh_max: Duration,
    /// How often the discovery document is fetched again (not with `jwks_uri`).
    /// A document whose `issuer` differs or whose `jwks_uri` breaks the https
    /// rule is refused and the previous one kept.
    #[serde(default = "default_rediscovery_interval", with = "humantime_serde")]
    pub rediscovery_interval: Duration,
    /// Minimum time between two unknown-`kid` refetches.
    #[serde(
        default = "default_unknown_kid_refetch_interval",
        with = "humantime_serde"
    )]
    pub unknown_kid_refetch_interval: Duration,
    /// Bound of the negative cache of unknown key ids.
    #[serde(default = "default_unknown_kid_cache_size")]
    pub unknown_kid_cache_size: u64,
    /// First retry delay after a failed fetch.
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Largest retry delay (delays double up to it, jittered).
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// Timeout of one IdP request.
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// Largest accepted token in bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Longest a verified token stays cached (`0s` disables the cache).
    #[serde(default = "default_token_cache_ttl", with = "humantime_serde")]
    pub token_cache_ttl: Duration,
    /// RFC 7662 introspection for opaque tokens.
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
}

/// RFC 7662 token introspection (`providers.<name>.introspection`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The introspection endpoint URL.
    pub endpoint: String,
    /// Client id for client authentication (HTTP Basic).
    pub client_id: String,
    /// Client secret source: `{ env: NAME }` or `{ file: path }`. Never logged.
    pub client_secret: SecretSource,
    /// Longest an introspection result stays cached (never beyond the token's `exp`).
    #[serde(default = "default_introspection_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
}

fn default_leeway() -> Duration {
    DEFAULT_LEEWAY
}
fn default_jwks_refresh_min() -> Duration {
    DEFAULT_JWKS_REFRESH_MIN
}
fn default_jwks_refresh_max() -> Duration {
    DEFAULT_JWKS_REFRESH_MAX
}
fn default_rediscovery_interval() -> Duration {
    DEFAULT_REDISCOVERY_INTERVAL
}
fn default_unknown_kid_refetch_interval() -> Duration {
    DEFAULT_UNKNOWN_KID_REFETCH_INTERVAL
}
fn default_unknown_kid_cache_size() -> u64 {
    DEFAULT_UNKNOWN_KID_CACHE_SIZE
}
fn default_retry_initial() -> Duration {
    DEFAULT_RETRY_INITIAL
}
fn default_retry_max() -> Duration {
    DEFAULT_RETRY_MAX
}
fn default_fetch_timeout() -> Duration {
    DEFAULT_FETCH_TIMEOUT
}
fn default_max_token_bytes() -> usize {
    DEFAULT_MAX_TOKEN_BYTES
}
fn default_token_cache_ttl() -> Duration {
    DEFAULT_TOKEN_CACHE_TTL
}
fn default_introspection_cache_ttl() -> Duration {
    DEFAULT_INTROSPECTION_CACHE_TTL
}

impl ProviderConfig {
    /// A provider with every default, for code and tests that build configs.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            preset: None,
            additional_issuers: Vec::new(),
            algorithms: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            required_claims: BTreeMap::new(),
            require_typ: None,
            audience_claim: None,
            jwks_uri: None,
            allow_insecure_http: false,
            jwks_refresh_min: DEFAULT_JWKS_REFRESH_MIN,
            jwks_refresh_max: DEFAULT_JWKS_REFRESH_MAX,
            rediscovery_interval: DEFAULT_REDISCOVERY_INTERVAL,
            unknown_kid_refetch_interval: DEFAULT_UNKNOWN_KID_REFETCH_INTERVAL,
            unknown_kid_cache_size: DEFAULT_UNKNOWN_KID_CACHE_SIZE,
            retry_initial: DEFAULT_RETRY_INITIAL,
            retry_max: DEFAULT_RETRY_MAX,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            token_cache_ttl: DEFAULT_TOKEN_CACHE_TTL,
            introspection: None,
        }
    }

    /// Problems with this provider's config, as messages (empty = valid).
    pub fn validate(&self) -> Vec<String> {
        match presets::resolve("provider", self) {
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        }
    }
}

/// A verified identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// Provider name from the config.
    pub provider: String,
    /// Verified `iss`.
    pub issuer: String,
    /// Verified `sub` (empty if the token has none).
    pub subject: String,
    /// All verified claims of the token.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// `exp` (seconds since the epoch), if present.
    pub expires_at: Option<u64>,
    /// Fingerprint of the token (never the token).
    pub token_fingerprint: String,
    /// Claims the IdP did not put in the token because they were too large
    /// (OIDC aggregated/distributed claims: the keys of `_claim_names`, e.g.
    /// `groups` for an Entra groups overage; Entra's `hasgroups: true` also
    /// yields `groups`). A rule that needs one of these claims should deny with
    /// a reason naming the overage rather than treat the claim as absent.
    pub claims_overage: Vec<String>,
}

impl Principal {
    /// A principal from claims that were already verified (by this module, or
    /// by hand in tests and the dev tools): `iss`-independent fields are
    /// derived from the claims as authentication would (`sub`, `exp`,
    /// `claims_overage`); the fingerprint is empty.
    pub fn from_verified_claims(
        provider: &str,
        issuer: &str,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> Principal {
        let mut p = verify::principal_from_claims(provider, issuer.to_string(), claims);
        p.token_fingerprint = String::new();
        p
    }
}

/// Why authentication failed. `reason()` is the stable, low-cardinality code
/// that goes to audit lines and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer token at all.
    #[error("no bearer token")]
    Missing,
    /// Not a JWT we can parse (and no introspection for opaque tokens).
    #[error("malformed token")]
    Malformed,
    /// Over the size cap; refused before parsing.
    #[error("token too large")]
    TooLarge,
    /// `exp` (plus leeway) is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` (minus leeway) is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` matches no configured provider.
    #[error("unknown issuer")]
    BadIssuer,
    /// No configured audience in the audience claim.
    #[error("audience not accepted")]
    BadAudience,
    /// JOSE `typ` not accepted.
    #[error("token type not accepted")]
    BadType,
    /// No published key with this `kid`.
    #[error("signing key not found")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `alg` not in the provider's set, symmetric, `none`, or not the key's algorithm.
    #[error("algorithm not allowed")]
    AlgNotAllowed,
    /// A required claim is missing or has another value (also: no numeric `exp`).
    #[error("required claim missing or wrong")]
    BadClaims,
    /// The header lists a `crit` extension we do not understand (RFC 7515 §4.1.11).
    #[error("unsupported critical header")]
    UnsupportedCrit,
    /// The provider has no keys yet (IdP down at start) or its introspection endpoint failed.
    #[error("identity provider unavailable")]
    ProviderUnavailable {
        /// When to try again.
        retry_after: Duration,
    },
    /// The introspection endpoint says the token is not active.
    #[error("token inactive")]
    IntrospectionInactive,
}

impl AuthError {
    /// Stable reason code for audit lines and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::TooLarge => "too_large",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::BadIssuer => "bad_issuer",
            AuthError::BadAudience => "bad_audience",
            AuthError::BadType => "bad_type",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::AlgNotAllowed => "alg_not_allowed",
            AuthError::BadClaims => "bad_claims",
            AuthError::UnsupportedCrit => "unsupported_crit",
            AuthError::ProviderUnavailable { .. } => "provider_unavailable",
            AuthError::IntrospectionInactive => "introspection_inactive",
        }
    }
}

/// Per-provider state for readiness and status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderStatus {
    /// Provider name.
    pub name: String,
    /// Configured issuer.
    pub issuer: String,
    /// `starting` (no attempt finished yet), `ready`, `degraded` (serving the
    /// last good keys after a failed refresh) or `unavailable` (no keys).
    pub state: &'static str,
    /// Number of usable keys.
    pub keys: usize,
    /// Last discovery / JWKS error (no secrets in it).
    pub last_error: Option<String>,
    /// Unix time of the last successful JWKS fetch.
    pub last_refresh: Option<u64>,
    /// Allowed algorithms in force.
    pub algorithms: Vec<String>,
    /// Preset in use, if any.
    pub preset: Option<Preset>,
    /// JWKS URL in use (from the config, or the last accepted discovery document).
    pub jwks_uri: Option<String>,
    /// Why the last re-discovery failed or was refused (the previous
    /// `jwks_uri` stays in use); `None` after a good one.
    pub discovery_error: Option<String>,
}

/// Check every provider and the rules across them (no two providers with the
/// same issuer, at most one with introspection). Messages are prefixed with
/// `providers.<name>`. `Identity::start` applies the same checks.
pub fn validate_providers(providers: &BTreeMap<String, ProviderConfig>) -> Vec<String> {
    resolve_all(providers).1
}

fn resolve_all(
    providers: &BTreeMap<String, ProviderConfig>,
) -> (Vec<provider::ProviderSpec>, Vec<String>) {
    let mut errors = Vec::new();
    let mut specs: Vec<provider::ProviderSpec> = Vec::new();
    for (name, cfg) in providers {
        match presets::resolve(name, cfg) {
            Ok(spec) => specs.push(spec),
            Err(es) => errors.extend(es.into_iter().map(|e| format!("providers.{name}: {e}"))),
        }
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let mut introspecting: Option<&str> = None;
    for spec in &specs {
        for iss in &spec.issuers {
            if let Some(other) = seen.get(iss.as_str()) {
                errors.push(format!(
                    "providers.{}: issuer {iss:?} is also used by providers.{other}; a token must route to exactly one provider",
                    spec.name
                ));
            } else {
                seen.insert(iss, &spec.name);
            }
        }
        if spec.introspection.is_some() {
            match introspecting {
                Some(other) => errors.push(format!(
                    "providers.{}: introspection is also configured on providers.{other}; opaque tokens must route to exactly one provider",
                    spec.name
                )),
                None => introspecting = Some(&spec.name),
            }
        }
    }
    (specs, errors)
}

/// All configured providers.
pub struct Identity {
    providers: Vec<Arc<Provider>>,
    by_issuer: HashMap<String, usize>,
    opaque: Option<usize>,
    max_token_bytes: usize,
    cache: Arc<TokenCache>,
    verifications: Arc<AtomicU64>,
    ready_rx: tokio::sync::watch::Receiver<u64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Identity {
    /// Build the providers and start their background discovery/refresh on the
    /// current tokio runtime. Never waits on an IdP.
    pub fn start(
        providers: &BTreeMap<String, ProviderConfig>,
        client: HttpClient,
    ) -> Result<Arc<Identity>, Vec<String>> {
        Self::assemble(providers, client, true)
    }

    /// Providers whose keys are fixed JWKS documents (`jwks` by provider
    /// name), with no network at all: no discovery, no refresh, an unknown
    /// `kid` is refused without a refetch, and introspection is refused.
    /// Same validation and verification as [`Identity::start`]; needs no
    /// tokio runtime. For fuzzing and offline token checks.
    pub fn with_static_jwks(
        providers: &BTreeMap<String, ProviderConfig>,
        jwks: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Arc<Identity>, Vec<String>> {
        let mut errors: Vec<String> = providers
            .iter()
            .filter(|(_, c)| c.introspection.is_some())
            .map(|(name, _)| format!("providers.{name}: introspection needs the network"))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let client = crate::client::HttpClient::new(crate::client::ClientOptions::default())
            .map_err(|e| vec![e.to_string()])?;
        let id = Self::assemble(providers, client, false)?;
        for p in &id.providers {
            let Some(doc) = jwks.get(&p.spec.name) else {
                errors.push(format!("providers.{}: no JWKS given", p.spec.name));
                continue;
            };
            if let Err(e) = p.install_static(doc) {
                errors.push(format!("providers.{}: {e}", p.spec.name));
            }
        }
        if errors.is_empty() {
            Ok(id)
        } else {
            Err(errors)
        }
    }

    /// Build the providers; `spawn` starts their background discovery/refresh
    /// tasks (which needs a tokio runtime).
    fn assemble(
        providers: &BTreeMap<String, ProviderConfig>,
        client: HttpClient,
        spawn: bool,
    ) -> Result<Arc<Identity>, Vec<String>> {
        let (specs, mut errors) = resolve_all(providers);
        let mut by_issuer: HashMap<String, usize> = HashMap::new();
        let mut opaque = None;
        for (i, spec) in specs.iter().enumerate() {
            for iss in &spec.issuers {
                by_issuer.entry(iss.clone()).or_insert(i);
            }
            if spec.introspection.is_some() && opaque.is_none() {
                opaque = Some(i);
            }
        }
        let mut secrets = Vec::new();
        for spec in &specs {
            match &spec.introspection {
                Some(i) => match introspect::load_secret(&i.secret_source) {
                    Ok(s) => secrets.push(Some(s)),
                    Err(e) => {
                        errors.push(format!(
                            "providers.{}.introspection.client_secret: {e}",
                            spec.name
                        ));
                        secrets.push(None);
                    }
                },
                None => secrets.push(None),
            }
        }
        let runtime = tokio::runtime::Handle::try_current();
        if spawn && runtime.is_err() {
            errors.push("identity must be started inside a tokio runtime".into());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let max_token_bytes = specs
            .iter()
            .map(|s| s.max_token_bytes)
            .max()
            .unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
        let cache = Arc::new(TokenCache::new(TOKEN_CACHE_MAX_BYTES));
        let verifications = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = tokio::sync::watch::channel(0u64);
        let ready_tx = Arc::new(ready_tx);
        let mut out = Vec::new();
        let mut tasks = Vec::new();
        for (i, (spec, secret)) in specs.into_iter().zip(secrets).enumerate() {
            if spec.insecure_http {
                tracing::warn!(provider = %spec.name, issuer = %spec.issuer,
                    "allow_insecure_http: keys for this provider are fetched over plain http");
            }
            let p = Arc::new(Provider::new(
                i,
                spec,
                secret,
                client.clone(),
                cache.clone(),
                ready_tx.clone(),
            ));
            if let (true, Ok(rt)) = (spawn, &runtime) {
                tasks.push(rt.spawn(provider::run(p.clone())));
            }
            out.push(p);
        }
        Ok(Arc::new(Identity {
            providers: out,
            by_issuer,
            opaque,
            max_token_bytes,
            cache,
            verifications,
            ready_rx,
            tasks,
        }))
    }

    /// Verify a bearer token (without the `Bearer ` prefix).
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        verify::authenticate(self, token).await
    }

    /// [`Identity::authenticate`] for the request path: hashes the token
    /// once and returns its fingerprint too (for the audit line, whatever
    /// the outcome).
    pub(crate) async fn authenticate_with_fingerprint(
        &self,
        token: &str,
    ) -> (String, Result<Arc<Principal>, AuthError>) {
        let hash = cache::token_hash(token);
        let fp = crate::fingerprint_of_sha256(&hash);
        (
            fp,
            verify::authenticate_hashed(self, token, Some(hash)).await,
        )
    }

    /// Each provider's state.
    pub fn status(&self) -> Vec<ProviderStatus> {
        self.providers.iter().map(|p| p.status()).collect()
    }

    /// True when every provider has keys (or, for an introspection-only
    /// provider, keys are not needed).
    pub fn ready(&self) -> bool {
        self.providers.iter().all(|p| p.has_keys())
    }

    /// Wait (bounded) until every provider has keys, for `dev` and tests.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready_rx.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.ready() {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return self.ready(),
            }
        }
    }

    /// How many signature verifications ran (cache hits do not count). For tests and metrics.
    pub fn signature_verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Number of JWKS fetches each provider made (by provider name).
    pub fn jwks_fetches(&self) -> BTreeMap<String, u64> {
        self.providers
            .iter()
            .map(|p| (p.spec.name.clone(), p.jwks_fetches()))
            .collect()
    }

    /// Verified tokens currently cached (for tests and metrics).
    pub fn cached_tokens(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Stop the background discovery/refresh tasks. Also done on drop.
    pub fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::idp::{DevIdp, DevIdpOptions};
    use serde_json::json;

    #[tokio::test]
    async fn static_jwks_verifies_without_any_fetch() {
        let idp = DevIdp::start(DevIdpOptions::default()).await.expect("idp");
        let providers = BTreeMap::from([(
            "dev".to_string(),
            ProviderConfig::new(idp.issuer(), vec![idp.audience()]),
        )]);
        let jwks = json!({"keys": [idp.current_public_jwk()]}).to_string();
        let id = Identity::with_static_jwks(
            &providers,
            &BTreeMap::from([("dev".to_string(), jwks.into_bytes())]),
        )
        .expect("static identity");
        assert!(id.ready());
        let token = idp.mint(json!({"sub": "static"}));
        let p = id.authenticate(&token).await.expect("valid token");
        assert_eq!(p.subject, "static");
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": "not-published"});
        let other = idp.mint_with_header(header, json!({"sub": "static"}));
        assert_eq!(id.authenticate(&other).await, Err(AuthError::UnknownKey));
        assert_eq!(idp.jwks_fetches(), 0);
        assert_eq!(idp.discovery_fetches(), 0);
    }

    #[test]
    fn static_jwks_refuses_missing_keys_and_introspection() {
        let cfg = ProviderConfig::new("https://issuer.example", vec!["aud".into()]);
        let providers = BTreeMap::from([("a".to_string(), cfg.clone())]);
        let errors = Identity::with_static_jwks(&providers, &BTreeMap::new())
            .err()
            .unwrap_or_default();
        assert_eq!(errors, vec!["providers.a: no JWKS given".to_string()]);
        let bad = BTreeMap::from([("a".to_string(), br#"{"keys":[]}"#.to_vec())]);
        assert!(Identity::with_static_jwks(&providers, &bad).is_err());
        let mut intro = cfg;
        intro.introspection = Some(IntrospectionConfig {
            endpoint: "https://issuer.example/introspect".into(),
            client_id: "c".into(),
            client_secret: SecretSource::Env("UNUSED_SECRET".into()),
            cache_ttl: DEFAULT_INTROSPECTION_CACHE_TTL,
        });
        let errors = Identity::with_static_jwks(
            &BTreeMap::from([("a".to_string(), intro)]),
            &BTreeMap::new(),
        )
        .err()
        .unwrap_or_default();
        assert_eq!(
            errors,
            vec!["providers.a: introspection needs the network".to_string()]
        );
    }
}
