//! JWKS parsing into verification keys, key/algorithm compatibility, and
//! `Cache-Control: max-age`.
//!
//! Only asymmetric signing keys are kept: `oct` keys, encryption keys
//! (`use` other than `sig`, or `key_ops` without `verify`), unknown key types
//! and curves, RSA keys under 2048 or over 8192 bits or with an exponent that
//! is not odd and >= 3, EC points off their curve, and Ed25519 keys of small
//! order are dropped (each with a WARN line naming its `kid`), so no symmetric
//! secret and no degenerate key can ever be selected for verification.

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

/// Parse a JWKS document. Unusable keys are skipped, each with a WARN line
/// naming its `kid` and why; a document with no usable key at all is an error
/// (the caller keeps its last good set).
pub(crate) fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        keys: Vec<serde_json::Value>,
    }
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
    if raw.keys.len() > MAX_JWKS_KEYS {
        tracing::warn!(
            keys = raw.keys.len(),
            read = MAX_JWKS_KEYS,
            "JWKS has more keys than spangate reads; the rest are ignored"
        );
    }
    let mut set = KeySet::default();
    for value in raw.keys.into_iter().take(MAX_JWKS_KEYS) {
        let kid = log_kid(&value);
        let key = match parse_key(value) {
            Ok(k) => k,
            Err(Skip::Routine(why)) => {
                tracing::debug!(kid = %kid, reason = why, "JWKS key ignored");
                continue;
            }
            Err(Skip::Suspect(why)) => {
                tracing::warn!(kid = %kid, reason = why, "JWKS key ignored");
                continue;
            }
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

/// The `kid` of a JWK for a log line: at most 64 characters, escaped.
fn log_kid(value: &serde_json::Value) -> String {
    match value.get("kid") {
        Some(serde_json::Value::String(k)) => {
            k.chars().take(64).flat_map(char::escape_debug).collect()
        }
        Some(_) => "<not a string>".into(),
        None => "<none>".into(),
    }
}

/// Largest accepted RSA modulus, in bytes (8192 bits, as aws-lc verifies).
const MAX_RSA_MODULUS_BYTES: usize = 1024;

/// Why a JWK is not used for verification.
#[derive(Debug, PartialEq, Eq)]
enum Skip {
    /// Normal in a real JWKS (encryption keys, algorithms or curves spangate
    /// does not verify with): logged at DEBUG.
    Routine(&'static str),
    /// A broken or dangerous key (published secret, weak or degenerate key,
    /// `alg` contradicting the key): logged at WARN, an operator should look.
    Suspect(&'static str),
}

impl Skip {
    #[cfg(test)]
    fn reason(&self) -> &'static str {
        match self {
            Skip::Routine(r) | Skip::Suspect(r) => r,
        }
    }
}

/// One JWK, or why it is not used for verification.
fn parse_key(value: serde_json::Value) -> Result<VerifyKey, Skip> {
    use Skip::{Routine, Suspect};
    // RFC 7517 §4.2 / §4.3: a key meant for something else is never used to
    // verify, whichever of `use` / `key_ops` says so.
    if let Some(u) = value.get("use")
        && u.as_str() != Some("sig")
    {
        return Err(Routine("`use` is not \"sig\""));
    }
    if let Some(ops) = value.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !verify {
            return Err(Routine("`key_ops` does not include \"verify\""));
        }
    }
    let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
    match (field("kty"), field("crv")) {
        (Some("oct"), _) => return Err(Suspect("symmetric key in a public key set")),
        (Some("RSA"), _) | (Some("EC"), Some("P-256" | "P-384")) => {}
        (Some("OKP"), Some("Ed25519")) => {}
        (Some("EC" | "OKP"), _) => return Err(Routine("unsupported curve")),
        _ => return Err(Routine("unknown key type")),
    }
    if let Some(alg) = value.get("alg") {
        match alg.as_str() {
            Some(a) if super::ASYMMETRIC_ALGORITHMS.contains(&a) => {}
            Some(a) if a.starts_with("HS") || a == "none" => {
                return Err(Suspect("`alg` names a symmetric algorithm or none"));
            }
            _ => return Err(Routine("`alg` is not one spangate verifies with")),
        }
    }
    let jwk: Jwk =
        serde_json::from_value(value).map_err(|_| Suspect("not a JWK spangate can read"))?;
    let alg = match &jwk.common.key_algorithm {
        Some(ka) => {
            let name = serde_json::to_value(ka).map_err(|_| Suspect("unreadable `alg`"))?;
            let name = name.as_str().ok_or(Suspect("unreadable `alg`"))?;
            Some(
                name.parse::<Algorithm>()
                    .map_err(|_| Suspect("unreadable `alg`"))?,
            )
        }
        None => None,
    };
    let (family, curve) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = base64_url_decode(&p.n).ok_or(Skip::Suspect("RSA modulus is not base64url"))?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(Skip::Suspect("RSA key under 2048 bits"));
            }
            if significant > MAX_RSA_MODULUS_BYTES {
                return Err(Skip::Suspect("RSA key over 8192 bits"));
            }
            let e =
                base64_url_decode(&p.e).ok_or(Skip::Suspect("RSA exponent is not base64url"))?;
            if !rsa_exponent_ok(&e) {
                return Err(Skip::Suspect(
                    "RSA exponent is not an odd number of at least 3 and at most 2^32",
                ));
            }
            (AlgorithmFamily::Rsa, None)
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (verify_alg, len): (
                &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
                usize,
            ) = match p.curve {
                EllipticCurve::P256 => (&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, 32),
                EllipticCurve::P384 => (&aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED, 48),
                _ => return Err(Skip::Routine("unsupported curve")),
            };
            let x = base64_url_decode(&p.x).ok_or(Skip::Suspect("EC x is not base64url"))?;
            let y = base64_url_decode(&p.y).ok_or(Skip::Suspect("EC y is not base64url"))?;
            if x.len() != len || y.len() != len {
                return Err(Skip::Suspect(
                    "EC coordinates of the wrong length for the curve",
                ));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            aws_lc_rs::signature::ParsedPublicKey::new(verify_alg, &point)
                .map_err(|_| Skip::Suspect("EC point is not on the curve"))?;
            (AlgorithmFamily::Ec, Some(p.curve.clone()))
        }
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => {
                let x =
                    base64_url_decode(&p.x).ok_or(Skip::Suspect("Ed25519 x is not base64url"))?;
                let x: [u8; 32] = x
                    .try_into()
                    .map_err(|_| Skip::Suspect("Ed25519 key is not 32 bytes"))?;
                if ed25519_small_order(&x) {
                    return Err(Skip::Suspect(
                        "Ed25519 key of small order (any signature would verify)",
                    ));
                }
                aws_lc_rs::signature::ParsedPublicKey::new(&aws_lc_rs::signature::ED25519, x)
                    .map_err(|_| Skip::Suspect("Ed25519 key is not a curve point"))?;
                (AlgorithmFamily::Ed, Some(EllipticCurve::Ed25519))
            }
            _ => return Err(Skip::Routine("unsupported curve")),
        },
        // `kty` was checked above: parameters that do not fit it are broken.
        _ => return Err(Skip::Suspect("key parameters do not match its `kty`")),
    };
    if let Some(a) = alg
        && a.family() != family
    {
        return Err(Skip::Suspect("`alg` does not fit the key type"));
    }
    let key =
        DecodingKey::from_jwk(&jwk).map_err(|_| Skip::Suspect("not a JWK spangate can read"))?;
    Ok(VerifyKey {
        kid: jwk.common.key_id.clone().filter(|k| k.len() <= MAX_KID_LEN),
        family,
        curve,
        alg,
        key,
    })
}

/// RSA public exponent: odd, at least 3, at most 2^32 (e = 1 would make
/// every message its own signature).
fn rsa_exponent_ok(e: &[u8]) -> bool {
    let e: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
    if e.is_empty() || e.len() > 5 {
        return false;
    }
    let value = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    value >= 3 && value % 2 == 1 && value <= 1 << 32
}

/// Encodings of the Ed25519 points of small order (orders 1, 2, 4, 8), and
/// their non-canonical forms, as listed by libsodium (`has_small_order`). The
/// sign bit (top bit of the last byte) is ignored when comparing.
const ED25519_SMALL_ORDER: [[u8; 32]; 7] = [
    // 0 (order 4)
    [0; 32],
    // 1 (order 1)
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    // order 8
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    // order 8
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    // p - 1 (order 2)
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // p (= 0, order 4), non-canonical
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // p + 1 (= 1, order 1), non-canonical
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

fn base64_url_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

fn ed25519_small_order(x: &[u8; 32]) -> bool {
    ED25519_SMALL_ORDER
        .iter()
        .any(|bad| bad[..31] == x[..31] && bad[31] == x[31] & 0x7f)
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

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn ok_key() -> serde_json::Value {
        ec_key("ok")
    }

    #[test]
    fn small_order_ed25519_keys_are_dropped() {
        use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
        // Why it matters: aws-lc accepts these keys, and then the signature
        // (R = identity, S = 0) verifies for many messages.
        let mut sig = [0u8; 64];
        sig[0] = 1;
        for a in &ED25519_SMALL_ORDER[..5] {
            let key = UnparsedPublicKey::new(&ED25519, a);
            let forged = (0..200u32).any(|m| key.verify(&m.to_le_bytes(), &sig).is_ok());
            assert!(forged, "small-order entry {a:02x?} admits forgeries");
        }
        for a in &ED25519_SMALL_ORDER {
            for sign in [0u8, 0x80] {
                let mut x = *a;
                x[31] |= sign;
                let jwk = json!({"kty":"OKP","crv":"Ed25519","kid":"s","x": b64(&x)});
                assert!(parse_key(jwk).is_err(), "{x:02x?}");
            }
        }
        // A real key is kept.
        let kp = aws_lc_rs::signature::Ed25519KeyPair::generate().expect("keygen");
        use aws_lc_rs::signature::KeyPair;
        let jwk =
            json!({"kty":"OKP","crv":"Ed25519","kid":"ok","x": b64(kp.public_key().as_ref())});
        assert!(parse_key(jwk).is_ok());
    }

    #[test]
    fn degenerate_rsa_keys_are_dropped() {
        let kp = aws_lc_rs::signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("keygen");
        use aws_lc_rs::signature::KeyPair;
        let c = aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key());
        let rsa = |n: &[u8], e: &[u8]| json!({"kty":"RSA","kid":"r","n": b64(n), "e": b64(e)});
        assert!(parse_key(rsa(&c.n, &c.e)).is_ok());
        for e in [
            &[1u8][..],
            &[0, 1],
            &[2],
            &[0x01, 0x00, 0x00],
            &[],
            &[1, 0, 0, 0, 0, 1],
        ] {
            assert!(parse_key(rsa(&c.n, e)).is_err(), "e = {e:?}");
        }
        assert!(parse_key(rsa(&c.n[..128], &c.e)).is_err(), "1024-bit");
        assert!(
            parse_key(rsa(&[0xff; 1025], &c.e)).is_err(),
            "over 8192 bits"
        );
        let mut padded = vec![0u8; 8];
        padded.extend_from_slice(&c.n);
        assert!(
            parse_key(rsa(&padded, &c.e)).is_ok(),
            "leading zeros do not count"
        );
    }

    #[test]
    fn key_ops_and_use_must_allow_verification() {
        let with = |k: &str, v: serde_json::Value| {
            let mut j = ok_key();
            j[k] = v;
            j
        };
        assert!(parse_key(ok_key()).is_ok());
        assert!(parse_key(with("key_ops", json!(["verify"]))).is_ok());
        assert!(parse_key(with("key_ops", json!(["sign", "verify"]))).is_ok());
        for ops in [
            json!([]),
            json!(["sign"]),
            json!(["encrypt"]),
            json!("verify"),
            json!([1]),
        ] {
            assert!(parse_key(with("key_ops", ops.clone())).is_err(), "{ops}");
        }
        for u in [json!("enc"), json!("SIG"), json!(1), json!(null)] {
            assert!(parse_key(with("use", u.clone())).is_err(), "{u}");
        }
    }

    #[test]
    fn ec_points_must_be_on_their_curve_and_alg_must_fit() {
        let mut j = ok_key();
        let mut y = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(j["y"].as_str().expect("y"))
                .expect("b64")
        };
        y[31] ^= 1;
        j["y"] = json!(b64(&y));
        assert_eq!(
            parse_key(j).err().map(|e| e.reason()),
            Some("EC point is not on the curve")
        );
        let mut j = ok_key();
        j["x"] = json!(b64(&[1u8; 31]));
        assert!(parse_key(j).is_err());
        let mut j = ok_key();
        j["crv"] = json!("P-384");
        assert!(parse_key(j).is_err());
        let mut j = ok_key();
        j["alg"] = json!("RS256");
        assert_eq!(
            parse_key(j).err(),
            Some(Skip::Suspect("`alg` does not fit the key type"))
        );
        let mut j = ok_key();
        j["alg"] = json!("HS256");
        assert!(parse_key(j).is_err());
    }

    #[test]
    fn kids_in_log_lines_are_bounded_and_escaped() {
        assert_eq!(log_kid(&json!({"kid": "k\n1"})), "k\\n1");
        assert_eq!(log_kid(&json!({"kid": "x".repeat(500)})).len(), 64);
        assert_eq!(log_kid(&json!({"kid": 5})), "<not a string>");
        assert_eq!(log_kid(&json!({})), "<none>");
    }

    #[test]
    fn routine_skips_and_suspect_keys_are_told_apart() {
        let routine = [
            json!({"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}),
            json!({"kty":"RSA","alg":"RSA-OAEP-256","n":"AQAB","e":"AQAB"}),
            json!({"kty":"EC","crv":"P-521","x":"AA","y":"AA"}),
            json!({"kty":"EC","crv":"P-256","alg":"ES512","x":"AA","y":"AA"}),
            json!({"kty":"OKP","crv":"X25519","x":"AA"}),
            json!({"kty":"ML-DSA","pub":"AA"}),
            json!({"n":"AQAB"}),
        ];
        for j in routine {
            assert!(matches!(parse_key(j.clone()), Err(Skip::Routine(_))), "{j}");
        }
        let suspect = [
            json!({"kty":"oct","k":"c2VjcmV0"}),
            json!({"kty":"RSA","n":"AQAB","e":"AQAB"}),
            json!({"kty":"RSA","alg":"HS256","n":"AQAB","e":"AQAB"}),
            json!({"kty":"EC","crv":"P-256","x":"AA","y":"AA"}),
            json!({"kty":"RSA","n":"!!","e":"AQAB"}),
            json!({"kty":"RSA","n":5,"e":"AQAB"}),
        ];
        for j in suspect {
            assert!(matches!(parse_key(j.clone()), Err(Skip::Suspect(_))), "{j}");
        }
    }
}
