//! Identity: OIDC discovery, JWKS cache and refresh, JWT verification.
//! Produces a [`Principal`]; nothing after authentication reads auth headers.
//!
//! SKELETON: interface only; the identity work fills this in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::client::HttpClient;

/// One OIDC provider (`providers.<name>` in the config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Exact issuer (`iss`) string.
    pub issuer: String,
    /// Accepted audiences (required; a provider without one is refused).
    #[serde(default)]
    pub audiences: Vec<String>,
}

impl ProviderConfig {
    /// Problems with this provider's config, as messages (empty = valid).
    pub fn validate(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.audiences.is_empty() {
            out.push("audiences must not be empty (an empty audience would accept any token)".into());
        }
        out
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
}

/// Why authentication failed. `reason()` is the stable, low-cardinality code
/// that goes to audit lines and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token too large")]
    TooLarge,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("unknown issuer")]
    BadIssuer,
    #[error("audience not accepted")]
    BadAudience,
    #[error("token type not accepted")]
    BadType,
    #[error("signing key not found")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("algorithm not allowed")]
    AlgNotAllowed,
    #[error("required claim missing or wrong")]
    BadClaims,
    #[error("identity provider unavailable")]
    ProviderUnavailable { retry_after: Duration },
    #[error("token inactive")]
    IntrospectionInactive,
}

impl AuthError {
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
            AuthError::ProviderUnavailable { .. } => "provider_unavailable",
            AuthError::IntrospectionInactive => "introspection_inactive",
        }
    }
}

/// Per-provider state for readiness and status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderStatus {
    pub name: String,
    pub issuer: String,
    pub state: &'static str,
    pub keys: usize,
    pub last_error: Option<String>,
}

/// All configured providers.
pub struct Identity {
    _client: HttpClient,
    _providers: BTreeMap<String, ProviderConfig>,
}

impl Identity {
    /// Build the providers and start their background discovery/refresh.
    /// Never waits on an IdP.
    pub fn start(
        providers: &BTreeMap<String, ProviderConfig>,
        client: HttpClient,
    ) -> Result<Arc<Identity>, Vec<String>> {
        Ok(Arc::new(Identity {
            _client: client,
            _providers: providers.clone(),
        }))
    }

    /// Verify a bearer token (without the `Bearer ` prefix).
    pub async fn authenticate(&self, _token: &str) -> Result<Principal, AuthError> {
        Err(AuthError::BadIssuer)
    }

    /// Each provider's state.
    pub fn status(&self) -> Vec<ProviderStatus> {
        Vec::new()
    }

    /// Wait (bounded) until every provider has keys, for `dev` and tests.
    pub async fn wait_ready(&self, _timeout: Duration) -> bool {
        true
    }
}
