//! Vercel Trace Drains: Vercel itself pushes OTLP/HTTP (JSON or protobuf)
//! for the projects a drain covers, signed with `x-vercel-signature`, the
//! lowercase hex HMAC-SHA1 of the raw request body under the drain's secret.
//!
//! A drain is named in the process config (`drains.<name>.secret` names a
//! credential in the secrets store, so the secret is rotated like an upstream
//! credential: during the grace period both the current and the previous
//! value verify). A delivery names its drain with the `drain` query
//! parameter (optional when exactly one drain is configured). A verified
//! delivery becomes a principal of provider [`PROVIDER`] whose subject is the
//! drain's name; policy then decides what it may publish (typically
//! `attribute_values: { vercel.projectId: [...] }`).
//!
//! HMAC comes from aws-lc-rs (the crypto provider of TLS and JWT);
//! `hmac::verify` compares in constant time.

use std::collections::BTreeMap;

use aws_lc_rs::hmac;
use serde::Deserialize;

use crate::identity::Principal;
use crate::secrets::{Secret, SecretStore};

/// The header Vercel signs drain deliveries with.
pub const SIGNATURE_HEADER: &str = "x-vercel-signature";
/// Provider name of a drain principal (in policy subjects and audit lines).
pub const PROVIDER: &str = "vercel-drain";
/// Query parameter that names the drain.
pub const DRAIN_PARAM: &str = "drain";

/// `drains.<name>` in the process config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainConfig {
    /// Name of the secrets-store credential holding the drain's signature secret.
    pub secret: String,
}

/// Config checks for the `drains` section (messages name `drains.<name>`).
pub fn validate(drains: &BTreeMap<String, DrainConfig>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, d) in drains {
        if !crate::secrets::valid_name(name) {
            out.push((
                name.clone(),
                format!("drains.{name}: a drain name uses letters, digits, '-', '_' and '.' only"),
            ));
        }
        if !crate::secrets::valid_name(&d.secret) {
            out.push((
                name.clone(),
                format!("drains.{name}.secret: not a valid credential name"),
            ));
        }
    }
    out
}

/// Why a drain delivery was refused (all answered 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainError {
    /// Not 40 hex digits, or more than one header.
    #[error("x-vercel-signature is not one hex HMAC-SHA1")]
    Malformed,
    /// The `drain` parameter is absent (with several drains) or names no drain.
    #[error("the request names no configured drain")]
    UnknownDrain,
    /// The drain's secret is not in the secrets store.
    #[error("drain {drain}: secret {secret} has no value in the secrets store")]
    SecretUnavailable { drain: String, secret: String },
    /// The signature matches neither the current nor the previous secret.
    #[error("drain {0}: signature does not match the body")]
    Mismatch(String),
    /// A drain signature on an endpoint that takes bearer tokens, or a bearer
    /// token on a drain endpoint.
    #[error("this endpoint does not accept this kind of credential")]
    WrongEndpoint,
}

impl DrainError {
    /// Stable reason code for audit and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DrainError::Malformed => "drain_signature_malformed",
            DrainError::UnknownDrain => "drain_unknown",
            DrainError::SecretUnavailable { .. } => "drain_secret_unavailable",
            DrainError::Mismatch(_) => "drain_signature_mismatch",
            DrainError::WrongEndpoint => "endpoint_auth_mismatch",
        }
    }
}

/// Which secret version verified a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// The current version.
    Current,
    /// The previous version, inside its grace period.
    Previous,
}

/// A verified drain delivery.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The drain's name.
    pub drain: String,
    /// Credential name of its secret.
    pub secret: String,
    /// Current version of that credential.
    pub version: u64,
    /// Which value matched.
    pub matched: Matched,
}

impl Verified {
    /// The identity policy sees: provider `vercel-drain`, subject and
    /// `drain` claim = the drain's name.
    pub fn principal(&self) -> Principal {
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), self.drain.clone().into());
        claims.insert("drain".into(), self.drain.clone().into());
        Principal::from_verified_claims(PROVIDER, PROVIDER, claims)
    }
}

/// The drain a request names: `?drain=<name>`, or the only drain configured.
pub fn drain_name<'a>(
    query: Option<&str>,
    drains: &'a BTreeMap<String, DrainConfig>,
) -> Result<(&'a String, &'a DrainConfig), DrainError> {
    let named = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == DRAIN_PARAM)
            .map(|(_, v)| v.into_owned())
    });
    match named {
        Some(n) => drains.get_key_value(&n).ok_or(DrainError::UnknownDrain),
        None if drains.len() == 1 => drains.iter().next().ok_or(DrainError::UnknownDrain),
        None => Err(DrainError::UnknownDrain),
    }
}

/// Parse the signature header value: exactly 40 hex digits (either case).
pub fn parse_signature(value: &[u8]) -> Result<[u8; 20], DrainError> {
    let text = std::str::from_utf8(value).map_err(|_| DrainError::Malformed)?;
    let text = text.trim();
    if text.len() != 40 {
        return Err(DrainError::Malformed);
    }
    let mut out = [0u8; 20];
    for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
        let hi = hex_digit(pair[0]).ok_or(DrainError::Malformed)?;
        let lo = hex_digit(pair[1]).ok_or(DrainError::Malformed)?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn key(secret: &Secret) -> hmac::Key {
    hmac::Key::new(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        secret.expose().as_bytes(),
    )
}

/// Lowercase hex HMAC-SHA1 of `body` under `secret` (what Vercel sends).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    hmac::sign(&k, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Verify a delivery for drain `name` against the current secret, then the
/// previous one while its grace period runs.
pub fn verify(
    store: &SecretStore,
    name: &str,
    cfg: &DrainConfig,
    signature: &[u8; 20],
    body: &[u8],
) -> Result<Verified, DrainError> {
    let cred = store
        .current(&cfg.secret)
        .ok_or_else(|| DrainError::SecretUnavailable {
            drain: name.to_string(),
            secret: cfg.secret.clone(),
        })?;
    let verified = |matched| Verified {
        drain: name.to_string(),
        secret: cfg.secret.clone(),
        version: cred.version,
        matched,
    };
    if hmac::verify(&key(&cred.value), body, signature).is_ok() {
        return Ok(verified(Matched::Current));
    }
    if let Some(prev) = &cred.previous
        && hmac::verify(&key(prev), body, signature).is_ok()
    {
        return Ok(verified(Matched::Previous));
    }
    Err(DrainError::Mismatch(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_parsing() {
        let sig = sign("s3cret", b"body");
        assert_eq!(sig.len(), 40);
        assert!(parse_signature(sig.as_bytes()).is_ok());
        assert!(parse_signature(sig.to_uppercase().as_bytes()).is_ok());
        assert_eq!(parse_signature(b"abc"), Err(DrainError::Malformed));
        assert_eq!(
            parse_signature(format!("{}zz", &sig[..38]).as_bytes()),
            Err(DrainError::Malformed)
        );
        assert_eq!(parse_signature(&[0xff; 40]), Err(DrainError::Malformed));
    }

    #[test]
    fn known_hmac_sha1_vector() {
        // RFC 2202 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn drain_is_named_by_query_or_alone() {
        let one = BTreeMap::from([("a".to_string(), DrainConfig { secret: "s".into() })]);
        assert_eq!(drain_name(None, &one).map(|(n, _)| n.as_str()), Ok("a"));
        assert_eq!(
            drain_name(Some("drain=a"), &one).map(|(n, _)| n.as_str()),
            Ok("a")
        );
        assert!(drain_name(Some("drain=b"), &one).is_err());
        let mut two = one.clone();
        two.insert("b".into(), DrainConfig { secret: "t".into() });
        assert_eq!(drain_name(None, &two).err(), Some(DrainError::UnknownDrain));
        assert_eq!(
            drain_name(Some("x=1&drain=b"), &two).map(|(n, _)| n.as_str()),
            Ok("b")
        );
    }
}
