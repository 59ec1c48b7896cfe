//! RFC 7662 token introspection for opaque (non-JWT) tokens.
//!
//! The client authenticates with HTTP Basic (`client_id` + secret from env or
//! file; the secret is a [`Secret`] and never logged). Results are cached by
//! the SHA-256 of the token, never beyond the token's `exp` nor `cache_ttl`;
//! inactive answers are cached too (so a repeated bad token costs the IdP one
//! call), and concurrent calls to the IdP are bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use moka::Expiry;
use serde_json::Value;

use super::cache::TokenHash;
use super::provider::ProviderSpec;
use super::verify::{build_principal, check_audience, check_required, check_times, now_secs};
use super::{AuthError, Principal};
use crate::client::{HttpClient, error_chain};
use crate::secrets::{Secret, SecretSource};

/// Most concurrent introspection calls per provider.
const MAX_CONCURRENT: usize = 16;
/// Largest introspection response read.
const MAX_RESPONSE: usize = 64 * 1024;
/// Retry-After given when the introspection endpoint fails.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

/// Resolved introspection settings.
#[derive(Debug, Clone)]
pub(crate) struct IntrospectionSpec {
    pub endpoint: String,
    pub client_id: String,
    pub secret_source: SecretSource,
    pub cache_ttl: Duration,
}

/// Read the client secret from its source. Errors never contain the value.
pub(crate) fn load_secret(source: &SecretSource) -> Result<Secret, String> {
    let value = match source {
        SecretSource::Env(name) => {
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?
        }
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?
            .trim_end_matches(['\r', '\n'])
            .to_string(),
    };
    if value.is_empty() {
        return Err("client secret is empty".into());
    }
    Ok(Secret::new(value))
}

#[derive(Clone)]
enum Outcome {
    Active(Box<Principal>),
    Inactive,
}

struct Entry {
    outcome: Outcome,
    ttl: Duration,
}

struct PerEntry;
impl Expiry<TokenHash, Arc<Entry>> for PerEntry {
    fn expire_after_create(
        &self,
        _k: &TokenHash,
        v: &Arc<Entry>,
        _at: Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The introspection client of one provider.
pub(crate) struct Introspector {
    spec: IntrospectionSpec,
    secret: Secret,
    timeout: Duration,
    client: HttpClient,
    cache: moka::sync::Cache<TokenHash, Arc<Entry>>,
    limit: tokio::sync::Semaphore,
}

impl Introspector {
    pub fn new(
        spec: IntrospectionSpec,
        secret: Secret,
        timeout: Duration,
        client: HttpClient,
    ) -> Self {
        Self {
            spec,
            secret,
            timeout,
            client,
            cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .expire_after(PerEntry)
                .build(),
            limit: tokio::sync::Semaphore::new(MAX_CONCURRENT),
        }
    }

    fn basic_auth(&self) -> String {
        // RFC 6749 §2.3.1: form-urlencode id and secret before Basic encoding.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let raw = zeroize::Zeroizing::new(format!(
            "{}:{}",
            enc(&self.spec.client_id),
            enc(self.secret.expose())
        ));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
        )
    }

    /// Introspect an opaque token.
    pub async fn introspect(
        &self,
        pspec: &ProviderSpec,
        token: &str,
        hash: TokenHash,
    ) -> Result<Principal, AuthError> {
        if let Some(hit) = self.cache.get(&hash) {
            return match &hit.outcome {
                Outcome::Active(p) => {
                    // The entry never outlives exp + leeway, but check anyway.
                    if let Some(exp) = p.expires_at
                        && exp.saturating_add(pspec.leeway) < now_secs()
                    {
                        return Err(AuthError::Expired);
                    }
                    Ok((**p).clone())
                }
                Outcome::Inactive => Err(AuthError::IntrospectionInactive),
            };
        }
        let _permit = self
            .limit
            .acquire()
            .await
            .map_err(|_| AuthError::ProviderUnavailable {
                retry_after: UNAVAILABLE_RETRY,
            })?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let unavailable = AuthError::ProviderUnavailable {
            retry_after: UNAVAILABLE_RETRY,
        };
        let auth = http::HeaderValue::from_str(&self.basic_auth()).map(|mut v| {
            v.set_sensitive(true);
            v
        });
        let Ok(auth) = auth else {
            return Err(unavailable);
        };
        let req = http::Request::post(&self.spec.endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::AUTHORIZATION, auth)
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else {
            return Err(unavailable);
        };
        let resp = match self.client.send(req, self.timeout, MAX_RESPONSE).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(provider = %pspec.name, error = %error_chain(&e), "introspection request failed");
                return Err(unavailable);
            }
        };
        if !resp.status().is_success() {
            if resp.status() == http::StatusCode::UNAUTHORIZED
                || resp.status() == http::StatusCode::FORBIDDEN
            {
                tracing::error!(provider = %pspec.name, status = resp.status().as_u16(),
                    "introspection endpoint refused our client credentials; check client_id / client_secret");
            } else {
                tracing::warn!(provider = %pspec.name, status = resp.status().as_u16(), "introspection endpoint error");
            }
            return Err(unavailable);
        }
        let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(resp.body()) else {
            tracing::warn!(provider = %pspec.name, "introspection response is not a JSON object");
            return Err(unavailable);
        };
        let now = now_secs();
        if claims.get("active") != Some(&Value::Bool(true)) {
            self.cache.insert(
                hash,
                Arc::new(Entry {
                    outcome: Outcome::Inactive,
                    ttl: self.spec.cache_ttl,
                }),
            );
            return Err(AuthError::IntrospectionInactive);
        }
        let iss = match claims.get("iss") {
            None => pspec.issuer.clone(),
            Some(Value::String(i)) if pspec.issuers.contains(i) => i.clone(),
            Some(_) => return Err(AuthError::BadIssuer),
        };
        let exp = check_times(pspec, &claims, now)?;
        check_audience(pspec, &claims)?;
        check_required(pspec, &claims)?;
        let principal = build_principal(pspec, iss, claims, token);
        let mut ttl = self.spec.cache_ttl;
        if let Some(exp) = exp {
            ttl = ttl.min(Duration::from_secs(exp.saturating_sub(now)));
        }
        if !ttl.is_zero() {
            self.cache.insert(
                hash,
                Arc::new(Entry {
                    outcome: Outcome::Active(Box::new(principal.clone())),
                    ttl,
                }),
            );
        }
        Ok(principal)
    }
}
