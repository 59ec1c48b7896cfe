//! JWKS parsing into verification keys, key/algorithm compatibility, and
//! `Cache-Control: max-age`.
//!
//! Only asymmetric signing keys are kept: `oct` keys, encryption keys
//! (`use: enc`), unknown key types and RSA keys under 2048 bits are dropped,
//! so no symmetric secret can ever be selected for verification.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::MAX_JWKS_KEYS;

/// Smallest accepted RSA modulus, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// Longest accepted `kid` (longer ones are never looked up or cached).
pub(crate) const MAX_KID_LEN: usize = 256;

/// One public key usable for verification.
pub(crate) struct VerifyKey {
    /// `kid`, if the JWK had one.
    pub kid: Option<String>,
    family: AlgorithmFamily,
    curve: Option<EllipticCurve>,
    /// The JWK's `alg`, if it had one: then only that algorithm may use it.
    alg: Option<Algorithm>,
    /// The key itself.
    pub key: DecodingKey,
}

impl VerifyKey {
    /// May a token signed with `alg` be verified with this key? The key type,
    /// the curve and (when the JWK names one) the algorithm must all agree.
    pub fn compatible(&self, alg: Algorithm) -> bool {
        if alg.family() != self.family {
            return false;
        }
        if let Some(a) = self.alg
            && a != alg
        {
            return false;
        }
        match (alg, &self.curve) {
            (Algorithm::ES256, Some(EllipticCurve::P256)) => true,
            (Algorithm::ES384, Some(EllipticCurve::P384)) => true,
            (Algorithm::ES256 | Algorithm::ES384, _) => false,
            (Algorithm::EdDSA, Some(EllipticCurve::Ed25519)) => true,
            (Algorithm::EdDSA, _) => false,
            _ => true,
        }
    }
}

/// The usable keys of one JWKS document.
#[derive(Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    no_kid: Vec<Arc<VerifyKey>>,
}

impl KeySet {
    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.no_kid.len()
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.by_kid.get(kid)
    }

    /// Is a key with this `kid` published?
    pub fn contains(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// All key ids.
    pub fn kids(&self) -> impl Iterator<Item = &String> {
        self.by_kid.keys()
    }

    /// For a token without `kid`: the single key compatible with `alg`, if
    /// exactly one is (ambiguity is refused rather than tried key by key).
    pub fn sole_compatible(&self, alg: Algorithm) -> Option<&Arc<VerifyKey>> {
        let mut found = None;
        for k in self.by_kid.values().chain(self.no_kid.iter()) {
            if k.compatible(alg) {
                if found.is_some() {
                    return None;
                }
                found = Some(k);
            }
        }
        found
    }
}

/// Parse a JWKS document. Unusable keys are skipped; a document with no
/// usable key at all is an error (the caller keeps its last good set).
pub(crate) fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        keys: Vec<serde_json::Value>,
    }
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
    let mut set = KeySet::default();
    for value in raw.keys.into_iter().take(MAX_JWKS_KEYS) {
        let Some(key) = parse_key(value) else {
            continue;
        };
        match key.kid.clone() {
            Some(kid) => {
                set.by_kid.entry(kid).or_insert_with(|| Arc::new(key));
            }
            None => set.no_kid.push(Arc::new(key)),
        }
    }
    if set.len() == 0 {
        return Err("JWKS has no usable asymmetric signing key".to_string());
    }
    Ok(set)
}

fn parse_key(value: serde_json::Value) -> Option<VerifyKey> {
    if let Some(u) = value.get("use")
        && u.as_str() != Some("sig")
    {
        return None;
    }
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    let alg = match &jwk.common.key_algorithm {
        Some(ka) => {
            let name = serde_json::to_value(ka).ok()?;
            let name = name.as_str()?;
            if !super::ASYMMETRIC_ALGORITHMS.contains(&name) {
                return None;
            }
            Some(name.parse::<Algorithm>().ok()?)
        }
        None => None,
    };
    let (family, curve) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = base64_url_decode(&p.n)?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return None;
            }
            (AlgorithmFamily::Rsa, None)
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 | EllipticCurve::P384 => {
                (AlgorithmFamily::Ec, Some(p.curve.clone()))
            }
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => (AlgorithmFamily::Ed, Some(EllipticCurve::Ed25519)),
            _ => return None,
        },
        // Symmetric and unknown key types are never usable.
        _ => return None,
    };
    if let Some(a) = alg
        && a.family() != family
    {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id.clone().filter(|k| k.len() <= MAX_KID_LEN),
        family,
        curve,
        alg,
        key,
    })
}

fn base64_url_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// `max-age` of a `Cache-Control` header; `None` when absent, unparsable, or
/// when `no-cache` / `no-store` is present.
pub(crate) fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut out = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let value = value.to_str().ok()?;
        for directive in value.split(',') {
            let d = directive.trim();
            let lower = d.to_ascii_lowercase();
            if lower == "no-cache" || lower == "no-store" {
                return None;
            }
            if let Some(v) = lower.strip_prefix("max-age=") {
                out = v
                    .trim_matches('"')
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_secs);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ec_key(kid: &str) -> serde_json::Value {
        // A real P-256 point (generated once with aws-lc-rs).
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .expect("keygen");
        let kp = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            doc.as_ref(),
        )
        .expect("parse");
        use aws_lc_rs::signature::KeyPair;
        use base64::Engine;
        let p = kp.public_key().as_ref();
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        json!({"kty":"EC","crv":"P-256","kid":kid,"alg":"ES256","use":"sig",
            "x": b.encode(&p[1..33]), "y": b.encode(&p[33..65])})
    }

    #[test]
    fn symmetric_and_encryption_keys_are_dropped() {
        let doc = json!({"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"hmac","alg":"HS256"},
            ec_key("enc").as_object().map(|o| { let mut o = o.clone(); o.insert("use".into(), json!("enc")); o }).unwrap_or_default(),
            ec_key("good"),
            {"kty":"RSA","n":"AQAB","e":"AQAB","kid":"tiny"},
            {"kty":"weird","kid":"x"},
        ]});
        let set = parse_jwks(doc.to_string().as_bytes()).expect("one usable key");
        assert_eq!(set.len(), 1);
        assert!(set.contains("good"));
        assert!(!set.contains("hmac"));
        assert!(!set.contains("enc"));
        assert!(!set.contains("tiny"));
    }

    #[test]
    fn empty_or_unusable_set_is_an_error() {
        assert!(parse_jwks(br#"{"keys":[]}"#).is_err());
        assert!(parse_jwks(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#).is_err());
        assert!(parse_jwks(b"not json").is_err());
    }

    #[test]
    fn ec_key_is_compatible_only_with_its_curve_and_alg() {
        let doc = json!({"keys":[ec_key("k")]});
        let set = parse_jwks(doc.to_string().as_bytes()).expect("set");
        let k = set.get("k").expect("key");
        assert!(k.compatible(Algorithm::ES256));
        assert!(!k.compatible(Algorithm::ES384));
        assert!(!k.compatible(Algorithm::RS256));
        assert!(!k.compatible(Algorithm::HS256));
    }

    #[test]
    fn cache_control_max_age() {
        let mut h = http::HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert(
            http::header::CACHE_CONTROL,
            "public, max-age=3600, must-revalidate".parse().unwrap(),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(3600)));
        h.insert(
            http::header::CACHE_CONTROL,
            "no-store, max-age=60".parse().unwrap(),
        );
        assert_eq!(max_age(&h), None);
        h.insert(http::header::CACHE_CONTROL, "max-age=abc".parse().unwrap());
        assert_eq!(max_age(&h), None);
    }
}
