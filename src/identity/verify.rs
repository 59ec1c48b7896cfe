//! JWT verification: the checks of one token, in the order documented in
//! [`super`]. The payload is read unverified only to find `iss`; nothing else
//! of it is trusted before the signature verifies.
//!
//! Header fields that name key sources (`jku`, `x5u`, `jwk`, `x5c`) are never
//! used: keys come only from the provider's JWKS.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::cache::{CachedToken, TokenHash, token_hash};
use super::keys::MAX_KID_LEN;
use super::presets::normalise_typ;
use super::provider::{ProviderSpec, Refetch};
use super::{ASYMMETRIC_ALGORITHMS, AuthError, Identity, Principal};

/// Seconds since the epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The three segments of a compact JWS, if the token has that shape.
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    signing_input: &'a str,
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn split_jwt(token: &str) -> Option<Parts<'_>> {
    let mut it = token.split('.');
    let header = it.next()?;
    let payload = it.next()?;
    let signature = it.next()?;
    if it.next().is_some() || header.is_empty() || payload.is_empty() {
        return None;
    }
    if !is_b64url(header) || !is_b64url(payload) || !is_b64url(signature) {
        return None;
    }
    let signing_input = &token[..header.len() + 1 + payload.len()];
    Some(Parts {
        header,
        payload,
        signature,
        signing_input,
    })
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Malformed)?;
    // One JSON object, no duplicate member names at any depth.
    super::strict_json::parse_object(&bytes).ok_or(AuthError::Malformed)
}

/// Latest NumericDate accepted: 9999-12-31T23:59:59Z. Anything later is a
/// broken or hostile token (and would overflow signed 64-bit time downstream).
pub(crate) const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// A JSON number usable as a NumericDate (RFC 7519 §2: seconds, possibly
/// fractional, truncated here); negative, non-numeric or later than
/// [`MAX_NUMERIC_DATE`] is `None`.
fn numeric_date(v: &Value) -> Option<u64> {
    let secs = match v.as_u64() {
        Some(n) => n,
        None => {
            let f = v.as_f64()?;
            if !(f.is_finite() && f >= 0.0 && f <= MAX_NUMERIC_DATE as f64) {
                return None;
            }
            f as u64
        }
    };
    (secs <= MAX_NUMERIC_DATE).then_some(secs)
}

/// A value for the JOSE `typ` / `cty` parameters that names a JWT (RFC 7519 §5.2).
fn names_jwt(v: &Value) -> bool {
    v.as_str().is_some_and(|t| normalise_typ(t) == "jwt")
}

/// The whole authentication of one bearer token.
pub(crate) async fn authenticate(id: &Identity, token: &str) -> Result<Principal, AuthError> {
    authenticate_hashed(id, token, None)
        .await
        .map(Arc::unwrap_or_clone)
}

/// [`authenticate`] with the SHA-256 of `token` already computed by the
/// caller (ignored, and recomputed, if `token` has whitespace to trim).
pub(crate) async fn authenticate_hashed(
    id: &Identity,
    token: &str,
    hash: Option<TokenHash>,
) -> Result<Arc<Principal>, AuthError> {
    // Optional whitespace around the token (RFC 9110 OWS) is not part of it;
    // Unicode whitespace is not trimmed (and makes the token malformed).
    let untrimmed = token.len();
    let token = token.trim_ascii();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    // Before any parsing.
    if token.len() > id.max_token_bytes {
        return Err(AuthError::TooLarge);
    }
    let hash = match hash {
        Some(h) if token.len() == untrimmed => h,
        _ => token_hash(token),
    };
    if let Some(hit) = id.cache.get(&hash) {
        if let Some(p) = id.providers.get(hit.provider) {
            if hit.exp.saturating_add(hit.leeway) < now_secs() {
                id.cache.invalidate(&hash);
                return Err(AuthError::Expired);
            }
            if p.key_published(hit.kid.as_deref()) {
                return Ok(Arc::clone(&hit.principal));
            }
        }
        id.cache.invalidate(&hash);
    }

    let Some(parts) = split_jwt(token) else {
        // Not a JWT: an opaque token, for the provider with introspection.
        return match id.opaque.and_then(|i| id.providers.get(i)) {
            Some(p) => match &p.introspector {
                Some(intro) => intro.introspect(&p.spec, token, hash).await.map(Arc::new),
                None => Err(AuthError::Malformed),
            },
            None => Err(AuthError::Malformed),
        };
    };

    let header = decode_object(parts.header)?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(AuthError::Malformed)?;
    // HS*, `none` and anything unknown are refused before any key is looked at.
    if !ASYMMETRIC_ALGORITHMS.contains(&alg_name) {
        return Err(AuthError::AlgNotAllowed);
    }
    let alg: Algorithm = alg_name.parse().map_err(|_| AuthError::AlgNotAllowed)?;
    // We implement no JWS extension, so any `crit` is one we do not understand.
    // `b64: false` (RFC 7797, unencoded payload) changes what the signature
    // covers; it is refused even without `crit`, where RFC 7797 requires it.
    if header.contains_key("crit") {
        return Err(AuthError::UnsupportedCrit);
    }
    if header.get("b64").is_some_and(|b| b != &Value::Bool(true)) {
        return Err(AuthError::UnsupportedCrit);
    }
    // A nested JWT (`cty: JWT`, RFC 7519 §5.2) is never unwrapped: the outer
    // signature would vouch for a token we do not verify.
    if header.get("cty").is_some_and(names_jwt) {
        return Err(AuthError::BadType);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(AuthError::Malformed),
    };
    let typ = match header.get("typ") {
        None => None,
        // A media type has no surrounding whitespace; only its case is free.
        Some(Value::String(t)) if t.trim() == t => Some(normalise_typ(t)),
        Some(_) => return Err(AuthError::BadType),
    };

    // Unverified payload: read only to route by `iss`.
    let claims = decode_object(parts.payload)?;
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(AuthError::BadIssuer)?;
    let p = id
        .by_issuer
        .get(iss)
        .and_then(|i| id.providers.get(*i))
        .ok_or(AuthError::BadIssuer)?;
    let spec = &p.spec;
    if token.len() > spec.max_token_bytes {
        return Err(AuthError::TooLarge);
    }
    let Some(mut snap) = p.snapshot() else {
        return Err(AuthError::ProviderUnavailable {
            retry_after: p.retry_after(),
        });
    };
    if !snap.algorithms.contains(&alg) {
        return Err(AuthError::AlgNotAllowed);
    }
    check_typ(spec, typ.as_deref())?;

    let key = match kid {
        Some(kid) => match snap.keys.get(kid) {
            Some(k) => k.clone(),
            None => {
                if kid.len() > MAX_KID_LEN || p.known_unknown(kid) {
                    return Err(AuthError::UnknownKey);
                }
                let outcome = p.refetch_for_unknown_kid().await;
                if let Some(s) = p.snapshot() {
                    snap = s;
                }
                match (snap.keys.get(kid), outcome) {
                    (Some(k), _) => k.clone(),
                    // Checked against a fresh key set: the kid is not published.
                    (None, Refetch::Fresh) => {
                        p.remember_unknown(kid);
                        return Err(AuthError::UnknownKey);
                    }
                    // The key set is recent (the rate limit held the fetch back
                    // after a successful one).
                    (None, Refetch::Limited) => return Err(AuthError::UnknownKey),
                    // The IdP could not be asked: the key may be real and newer
                    // than ours, so the answer is retryable, not a 401.
                    (None, Refetch::Failed) => {
                        return Err(AuthError::ProviderUnavailable {
                            retry_after: p.unknown_kid_retry_after(),
                        });
                    }
                }
            }
        },
        None => snap
            .keys
            .sole_compatible(alg)
            .cloned()
            .ok_or(AuthError::UnknownKey)?,
    };
    // The JWK's type, curve and algorithm must agree with the token's `alg`.
    if !key.compatible(alg) {
        return Err(AuthError::AlgNotAllowed);
    }

    id.verifications.fetch_add(1, Ordering::Relaxed);
    match jsonwebtoken::crypto::verify(
        parts.signature,
        parts.signing_input.as_bytes(),
        &key.key,
        alg,
    ) {
        Ok(true) => {}
        Ok(false) | Err(_) => return Err(AuthError::BadSignature),
    }

    // Signature good: now the claims can be judged.
    let now = now_secs();
    let exp = check_times(spec, &claims, now)?;
    let exp = exp.ok_or(AuthError::BadClaims)?;
    check_audience(spec, &claims)?;
    check_required(spec, &claims)?;
    let principal = Arc::new(build_principal(spec, iss.to_string(), claims, token));

    let remaining = Duration::from_secs(exp.saturating_add(spec.leeway).saturating_sub(now));
    let ttl = remaining.min(spec.token_cache_ttl);
    id.cache.insert(
        hash,
        CachedToken::new(
            p.index,
            key.kid.clone(),
            exp,
            spec.leeway,
            Arc::clone(&principal),
            ttl,
            token.len(),
        ),
    );
    Ok(principal)
}

fn check_typ(spec: &ProviderSpec, typ: Option<&str>) -> Result<(), AuthError> {
    match (&spec.require_typ, typ) {
        (Some(req), Some(t)) if req == t => Ok(()),
        (Some(_), _) => Err(AuthError::BadType),
        (None, None) => Ok(()),
        (None, Some("at+jwt" | "jwt")) => Ok(()),
        (None, Some(_)) => Err(AuthError::BadType),
    }
}

/// `exp` / `nbf` with leeway. Returns `exp` if present.
pub(crate) fn check_times(
    spec: &ProviderSpec,
    claims: &Map<String, Value>,
    now: u64,
) -> Result<Option<u64>, AuthError> {
    let exp = match claims.get("exp") {
        None => None,
        Some(v) => Some(numeric_date(v).ok_or(AuthError::BadClaims)?),
    };
    // `iat` is not judged, but when present it must be a NumericDate too.
    if let Some(v) = claims.get("iat")
        && numeric_date(v).is_none()
    {
        return Err(AuthError::BadClaims);
    }
    if let Some(exp) = exp
        && exp.saturating_add(spec.leeway) < now
    {
        return Err(AuthError::Expired);
    }
    if let Some(v) = claims.get("nbf") {
        let nbf = numeric_date(v).ok_or(AuthError::BadClaims)?;
        if nbf > now.saturating_add(spec.leeway) {
            return Err(AuthError::NotYetValid);
        }
    }
    Ok(exp)
}

/// The audience claim (string or array of strings) must contain a configured audience.
pub(crate) fn check_audience(
    spec: &ProviderSpec,
    claims: &Map<String, Value>,
) -> Result<(), AuthError> {
    let ok = match claims.get(&spec.audience_claim) {
        Some(Value::String(a)) => spec.audiences.iter().any(|x| x == a),
        // RFC 7519 §4.1.3: an array of strings. Any other member makes the
        // whole claim malformed, not merely "one audience that does not match".
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| spec.audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadAudience)
    }
}

/// `sub`, if present, is a string; every required claim is present with one
/// of its accepted values (an array claim matches when it contains one of them).
pub(crate) fn check_required(
    spec: &ProviderSpec,
    claims: &Map<String, Value>,
) -> Result<(), AuthError> {
    // `sub` is what policy and audit name the caller by: a string or nothing.
    if claims.get("sub").is_some_and(|s| !s.is_string()) {
        return Err(AuthError::BadClaims);
    }
    for (name, accepted) in &spec.required_claims {
        let ok = match claims.get(name) {
            None => false,
            Some(Value::Array(items)) => items.iter().any(|i| accepted.contains(i)),
            Some(v) => accepted.contains(v),
        };
        if !ok {
            return Err(AuthError::BadClaims);
        }
    }
    Ok(())
}

/// The verified identity.
pub(crate) fn build_principal(
    spec: &ProviderSpec,
    issuer: String,
    claims: Map<String, Value>,
    token: &str,
) -> Principal {
    let mut p = principal_from_claims(&spec.name, issuer, claims);
    p.token_fingerprint = crate::fingerprint(token.as_bytes());
    p
}

/// A principal from verified claims (no fingerprint yet).
pub(crate) fn principal_from_claims(
    provider: &str,
    issuer: String,
    claims: Map<String, Value>,
) -> Principal {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let expires_at = claims.get("exp").and_then(numeric_date);
    let mut overage: Vec<String> = claims
        .get("_claim_names")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    if claims.get("hasgroups") == Some(&Value::Bool(true)) {
        overage.push("groups".into());
    }
    overage.sort();
    overage.dedup();
    Principal {
        provider: provider.to_string(),
        issuer,
        subject,
        claims,
        expires_at,
        token_fingerprint: String::new(),
        claims_overage: overage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_requires_three_b64url_segments() {
        assert!(split_jwt("a.b.c").is_some());
        assert!(split_jwt("a.b.").is_some());
        assert!(split_jwt("a.b").is_none());
        assert!(split_jwt("a.b.c.d.e").is_none());
        assert!(split_jwt(".b.c").is_none());
        assert!(split_jwt("a+/.b.c").is_none());
        assert!(split_jwt("opaque-token-value").is_none());
    }

    #[test]
    fn principal_from_claims_derives_fields() {
        let claims = serde_json::json!({"sub": "s", "exp": 10, "hasgroups": true,
            "_claim_names": {"groups": "a", "roles": "b"}});
        let Value::Object(m) = claims else {
            unreachable!()
        };
        let p = crate::identity::Principal::from_verified_claims("okta", "https://i", m);
        assert_eq!(p.subject, "s");
        assert_eq!(p.expires_at, Some(10));
        assert_eq!(
            p.claims_overage,
            vec!["groups".to_string(), "roles".to_string()]
        );
        assert_eq!(p.provider, "okta");
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(numeric_date(&serde_json::json!(10)), Some(10));
        assert_eq!(numeric_date(&serde_json::json!(10.7)), Some(10));
        assert_eq!(numeric_date(&serde_json::json!(-1)), None);
        assert_eq!(numeric_date(&serde_json::json!("10")), None);
        assert_eq!(numeric_date(&serde_json::json!(-0.5)), None);
        assert_eq!(
            numeric_date(&serde_json::json!(MAX_NUMERIC_DATE)),
            Some(MAX_NUMERIC_DATE)
        );
        assert_eq!(numeric_date(&serde_json::json!(MAX_NUMERIC_DATE + 1)), None);
        assert_eq!(numeric_date(&serde_json::json!(u64::MAX)), None);
        assert_eq!(numeric_date(&serde_json::json!(i64::MIN)), None);
        assert_eq!(numeric_date(&serde_json::json!(1e300)), None);
        assert_eq!(numeric_date(&serde_json::json!(2.5e9)), Some(2_500_000_000));
    }
}
