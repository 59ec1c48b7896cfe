//! Token fuzzing support: fixed keys, static verifiers, structured tokens
//! and the soundness oracle.
//!
//! The keys in `fuzz/keys/` were made once with `openssl genpkey` (PKCS#8
//! DER) for fuzzing only; they sign nothing else. Fixed keys keep committed
//! seed tokens valid across runs.
//!
//! Two providers, both with keys from a static JWKS (no network):
//! - `main`: issuer [`ISSUER`] plus [`ALT_ISSUER`], audiences [`AUDIENCE`]
//!   and [`API_AUDIENCE`], required claim `tier` ∈ {gold, silver}; keys
//!   `es256`, `es384`, `rsa` (any RSA algorithm), `ed`, and a P-256 key
//!   without `kid` (so an ES256 token without `kid` is ambiguous);
//! - `cognito` (the Cognito preset): audience in `client_id`, `token_use:
//!   access`, RS256 only, one RSA key without `kid`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair};
use base64::Engine;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use serde_json::{Map, Value, json};
use spangate::identity::{AuthError, Identity, Preset, Principal, ProviderConfig};

use crate::json::Json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Primary issuer of the `main` provider.
pub const ISSUER: &str = "https://issuer.fuzz.example";
/// Additional issuer of the `main` provider.
pub const ALT_ISSUER: &str = "https://alt.fuzz.example";
/// Issuer of the `cognito` provider.
pub const COGNITO_ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Fuzz";
/// First audience of `main`.
pub const AUDIENCE: &str = "spangate";
/// Second audience of `main`.
pub const API_AUDIENCE: &str = "api://spangate";
/// App client of `cognito` (its `client_id` claim).
pub const COGNITO_CLIENT: &str = "fuzz-client";
/// Clock leeway of both providers (the default).
pub const LEEWAY_SECS: u64 = 30;
/// `exp` of the committed seed tokens: 2100-01-01.
pub const SEED_EXP: u64 = 4_102_444_800;

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Which key signs, with which algorithm.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// P-256, kid `es256`.
    Es256,
    /// P-384, kid `es384`.
    Es384,
    /// The second P-256 key, published without `kid`.
    Es256NoKid,
    /// RSA PKCS#1 v1.5, kid `rsa`.
    Rs256,
    /// RSA PKCS#1 v1.5 / SHA-384.
    Rs384,
    /// RSA PKCS#1 v1.5 / SHA-512.
    Rs512,
    /// RSA-PSS / SHA-256.
    Ps256,
    /// RSA-PSS / SHA-384.
    Ps384,
    /// RSA-PSS / SHA-512.
    Ps512,
    /// Ed25519, kid `ed`.
    EdDsa,
}

impl Signer {
    /// The JOSE `alg`.
    pub fn alg(self) -> &'static str {
        match self {
            Signer::Es256 | Signer::Es256NoKid => "ES256",
            Signer::Es384 => "ES384",
            Signer::Rs256 => "RS256",
            Signer::Rs384 => "RS384",
            Signer::Rs512 => "RS512",
            Signer::Ps256 => "PS256",
            Signer::Ps384 => "PS384",
            Signer::Ps512 => "PS512",
            Signer::EdDsa => "EdDSA",
        }
    }

    /// The `kid` of its key in the `main` JWKS, if it has one.
    pub fn kid(self) -> Option<&'static str> {
        match self {
            Signer::Es256 => Some("es256"),
            Signer::Es384 => Some("es384"),
            Signer::Es256NoKid => None,
            Signer::EdDsa => Some("ed"),
            _ => Some("rsa"),
        }
    }
}

/// The fixed fuzz keys.
pub struct Keys {
    p256: sig::EcdsaKeyPair,
    p256b: sig::EcdsaKeyPair,
    p384: sig::EcdsaKeyPair,
    rsa: sig::RsaKeyPair,
    ed: sig::Ed25519KeyPair,
    rng: SystemRandom,
}

impl Keys {
    /// Load the committed keys. Panics if a committed key file is broken
    /// (harness set-up, never fuzz input).
    pub fn load() -> Keys {
        let ec = |alg, der: &[u8]| sig::EcdsaKeyPair::from_pkcs8(alg, der).expect("fuzz EC key");
        Keys {
            p256: ec(
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                include_bytes!("../keys/p256.pk8"),
            ),
            p256b: ec(
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                include_bytes!("../keys/p256-b.pk8"),
            ),
            p384: ec(
                &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
                include_bytes!("../keys/p384.pk8"),
            ),
            rsa: sig::RsaKeyPair::from_pkcs8(include_bytes!("../keys/rsa2048.pk8"))
                .expect("fuzz RSA key"),
            ed: sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(include_bytes!(
                "../keys/ed25519.pk8"
            ))
            .expect("fuzz Ed25519 key"),
            rng: SystemRandom::new(),
        }
    }

    fn ec_jwk(kp: &sig::EcdsaKeyPair, crv: &str, n: usize) -> Map<String, Value> {
        let p = kp.public_key().as_ref();
        let mut m = Map::new();
        m.insert("kty".into(), json!("EC"));
        m.insert("crv".into(), json!(crv));
        m.insert("x".into(), json!(B64.encode(&p[1..1 + n])));
        m.insert("y".into(), json!(B64.encode(&p[1 + n..1 + 2 * n])));
        m
    }

    fn rsa_jwk(&self) -> Map<String, Value> {
        let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(self.rsa.public_key());
        let mut m = Map::new();
        m.insert("kty".into(), json!("RSA"));
        m.insert("n".into(), json!(B64.encode(&c.n)));
        m.insert("e".into(), json!(B64.encode(&c.e)));
        m
    }

    /// The `main` provider's JWKS (plus an `oct` key the parser must drop).
    pub fn main_jwks(&self) -> Vec<u8> {
        let with = |mut m: Map<String, Value>, extra: Value| {
            if let Value::Object(e) = extra {
                m.extend(e);
            }
            Value::Object(m)
        };
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
            "use": "sig", "x": B64.encode(self.ed.public_key().as_ref())});
        let doc = json!({"keys": [
            with(Self::ec_jwk(&self.p256, "P-256", 32), json!({"kid": "es256", "alg": "ES256", "use": "sig"})),
            with(Self::ec_jwk(&self.p384, "P-384", 48), json!({"kid": "es384", "alg": "ES384"})),
            with(self.rsa_jwk(), json!({"kid": "rsa", "use": "sig"})),
            ed,
            Value::Object(Self::ec_jwk(&self.p256b, "P-256", 32)),
            {"kty": "oct", "kid": "hmac", "alg": "HS256", "k": B64.encode(b"not-a-real-secret")},
        ]});
        doc.to_string().into_bytes()
    }

    /// The `cognito` provider's JWKS: the RSA key without `kid`.
    pub fn cognito_jwks(&self) -> Vec<u8> {
        let mut k = self.rsa_jwk();
        k.insert("alg".into(), json!("RS256"));
        json!({"keys": [k]}).to_string().into_bytes()
    }

    /// Sign `input` the way `signer`'s algorithm does (JWS signature bytes).
    pub fn sign(&self, signer: Signer, input: &[u8]) -> Vec<u8> {
        let ec = |kp: &sig::EcdsaKeyPair| {
            kp.sign(&self.rng, input)
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default()
        };
        let rsa = |alg: &'static dyn sig::RsaEncoding| {
            let mut out = vec![0u8; self.rsa.public_modulus_len()];
            match self.rsa.sign(alg, &self.rng, input, &mut out) {
                Ok(()) => out,
                Err(_) => Vec::new(),
            }
        };
        match signer {
            Signer::Es256 => ec(&self.p256),
            Signer::Es256NoKid => ec(&self.p256b),
            Signer::Es384 => ec(&self.p384),
            Signer::Rs256 => rsa(&sig::RSA_PKCS1_SHA256),
            Signer::Rs384 => rsa(&sig::RSA_PKCS1_SHA384),
            Signer::Rs512 => rsa(&sig::RSA_PKCS1_SHA512),
            Signer::Ps256 => rsa(&sig::RSA_PSS_SHA256),
            Signer::Ps384 => rsa(&sig::RSA_PSS_SHA384),
            Signer::Ps512 => rsa(&sig::RSA_PSS_SHA512),
            Signer::EdDsa => self.ed.sign(input).as_ref().to_vec(),
        }
    }

    /// A compact JWS of these header and payload bytes, signed by `signer`.
    pub fn token(&self, signer: Signer, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let signature = self.sign(signer, input.as_bytes());
        format!("{input}.{}", B64.encode(signature))
    }
}

fn provider_configs(cache_ttl: Duration) -> BTreeMap<String, ProviderConfig> {
    let mut main = ProviderConfig::new(ISSUER, vec![AUDIENCE.into(), API_AUDIENCE.into()]);
    main.additional_issuers = vec![ALT_ISSUER.into()];
    main.required_claims = BTreeMap::from([("tier".to_string(), json!(["gold", "silver"]))]);
    main.token_cache_ttl = cache_ttl;
    let mut cognito = ProviderConfig::new(COGNITO_ISSUER, vec![COGNITO_CLIENT.into()]);
    cognito.preset = Some(Preset::Cognito);
    cognito.token_cache_ttl = cache_ttl;
    BTreeMap::from([("main".to_string(), main), ("cognito".to_string(), cognito)])
}

/// The keys and two verifiers over the same providers: `fresh` never caches
/// (every call runs the whole verification), `cached` keeps verified tokens
/// (so a repeated token takes the cache-hit path).
pub struct Verifiers {
    /// The signing keys.
    pub keys: Keys,
    fresh: Arc<Identity>,
    cached: Arc<Identity>,
    rt: tokio::runtime::Runtime,
}

/// The process-wide verifiers (built on first use).
pub fn verifiers() -> &'static Verifiers {
    static V: OnceLock<Verifiers> = OnceLock::new();
    V.get_or_init(|| {
        let keys = Keys::load();
        let jwks = BTreeMap::from([
            ("main".to_string(), keys.main_jwks()),
            ("cognito".to_string(), keys.cognito_jwks()),
        ]);
        let build = |ttl| {
            Identity::with_static_jwks(&provider_configs(ttl), &jwks).expect("static identity")
        };
        Verifiers {
            fresh: build(Duration::ZERO),
            cached: build(Duration::from_secs(300)),
            keys,
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
        }
    })
}

fn time_dependent(r: &Result<Principal, AuthError>) -> bool {
    matches!(r, Err(AuthError::Expired | AuthError::NotYetValid))
}

impl Verifiers {
    /// Authenticate `token` with both verifiers (the cached one twice) and
    /// check they agree, unless the clock moved across an `exp`/`nbf` bound
    /// in between. Returns the uncached result.
    pub fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let fresh = self.rt.block_on(self.fresh.authenticate(token));
        let first = self.rt.block_on(self.cached.authenticate(token));
        let again = self.rt.block_on(self.cached.authenticate(token));
        for other in [&first, &again] {
            if !time_dependent(&fresh) && !time_dependent(other) {
                assert_eq!(&fresh, other, "cached verification disagrees");
            }
        }
        if let Ok(p) = &fresh {
            check_accepted(token, p);
        }
        fresh
    }
}

fn decode_segment(segment: &str) -> Option<Map<String, Value>> {
    let bytes = B64.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn numeric(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

fn contains(v: Option<&Value>, accepted: &[&str]) -> bool {
    match v {
        Some(Value::String(s)) => accepted.contains(&s.as_str()),
        Some(Value::Array(items)) => items
            .iter()
            .any(|i| i.as_str().is_some_and(|s| accepted.contains(&s))),
        _ => false,
    }
}

/// The soundness oracle: re-derive, independently of spangate's code, what
/// an accepted token must satisfy, and panic if it does not.
pub fn check_accepted(token: &str, p: &Principal) {
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3, "accepted token is not a compact JWS");
    let header = decode_segment(parts[0]).expect("accepted header is a JSON object");
    let claims = decode_segment(parts[1]).expect("accepted payload is a JSON object");
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    assert!(
        spangate::identity::ASYMMETRIC_ALGORITHMS.contains(&alg),
        "accepted alg {alg:?}"
    );
    assert!(!header.contains_key("crit"), "accepted a crit header");
    if let Some(t) = header.get("typ") {
        let t = t
            .as_str()
            .expect("accepted non-string typ")
            .to_ascii_lowercase();
        let t = t.trim();
        assert!(
            ["jwt", "at+jwt", "application/jwt", "application/at+jwt"].contains(&t),
            "accepted typ {t:?}"
        );
    }
    assert_eq!(&p.claims, &claims, "principal claims are not the token's");
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    assert_eq!(p.issuer, iss);
    let now = now_secs() as f64;
    let exp = numeric(claims.get("exp")).expect("accepted a token without numeric exp");
    // 5 s of slack for the time this check itself takes.
    assert!(
        exp + LEEWAY_SECS as f64 + 5.0 >= now,
        "accepted an expired token"
    );
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().expect("accepted non-numeric nbf");
        assert!(nbf <= now + LEEWAY_SECS as f64 + 5.0, "accepted before nbf");
    }
    match iss {
        ISSUER | ALT_ISSUER => {
            assert_eq!(p.provider, "main");
            assert!(contains(claims.get("aud"), &[AUDIENCE, API_AUDIENCE]));
            assert!(contains(claims.get("tier"), &["gold", "silver"]));
        }
        COGNITO_ISSUER => {
            assert_eq!(p.provider, "cognito");
            assert_eq!(alg, "RS256", "cognito accepts RS256 only");
            assert!(contains(claims.get("client_id"), &[COGNITO_CLIENT]));
            assert!(contains(claims.get("token_use"), &["access"]));
        }
        other => panic!("accepted unknown issuer {other:?}"),
    }
}

/// A value for one field: the valid default, absent, a named choice, or
/// any JSON at all.
#[derive(Arbitrary, Debug, Clone)]
pub enum Choice<T> {
    /// What a valid token has.
    Auto,
    /// Left out.
    Absent,
    /// A named choice.
    Pick(T),
    /// Any JSON value.
    Any(Json),
}

impl<T> Choice<T> {
    fn resolve(
        &self,
        auto: Option<Value>,
        pick: impl FnOnce(&T) -> Option<Value>,
    ) -> Option<Value> {
        match self {
            Choice::Auto => auto,
            Choice::Absent => None,
            Choice::Pick(t) => pick(t),
            Choice::Any(j) => Some(j.to_value()),
        }
    }
}

/// Named `alg` values.
#[derive(Arbitrary, Debug, Clone)]
pub enum AlgName {
    /// One of the signer algorithms.
    Of(Signer),
    /// Refused families and spellings.
    Hs256,
    /// `none`.
    None,
    /// `es256` (wrong case).
    LowerEs256,
    /// Any string.
    Text(String),
}

/// Named `kid` values.
#[derive(Arbitrary, Debug, Clone)]
pub enum KidName {
    /// The kid of another signer's key.
    Of(Signer),
    /// The `oct` key the JWKS parser drops.
    Hmac,
    /// Any string (usually unknown).
    Text(String),
}

/// Named `typ` values.
#[derive(Arbitrary, Debug, Clone)]
pub enum TypName {
    /// `JWT`.
    Jwt,
    /// `at+jwt`.
    AtJwt,
    /// `application/at+jwt`.
    AppAtJwt,
    /// `AT+JWT`.
    UpperAtJwt,
    /// Any string.
    Text(String),
}

/// Header fields naming key sources, which must never be used.
#[derive(Arbitrary, Debug, Clone)]
pub enum HeaderKey {
    /// `jku`.
    Jku,
    /// `x5u`.
    X5u,
    /// `jwk`.
    Jwk,
    /// `x5c`.
    X5c,
    /// `cty`.
    Cty,
    /// `zip`.
    Zip,
    /// `b64`.
    B64,
    /// Any name.
    Text(String),
}

/// The JOSE header.
#[derive(Arbitrary, Debug, Clone)]
pub struct HeaderSpec {
    /// `alg` (Auto: the signer's).
    pub alg: Choice<AlgName>,
    /// `kid` (Auto: the signer's key's).
    pub kid: Choice<KidName>,
    /// `typ` (Auto: `JWT`).
    pub typ: Choice<TypName>,
    /// `crit`, if present.
    pub crit: Option<Json>,
    /// Further fields.
    pub extra: Vec<(HeaderKey, Json)>,
}

/// Named issuers.
#[derive(Arbitrary, Debug, Clone)]
pub enum IssName {
    /// [`ISSUER`].
    Main,
    /// [`ALT_ISSUER`].
    Alt,
    /// [`COGNITO_ISSUER`].
    Cognito,
    /// [`ISSUER`] with a trailing slash (must not match).
    MainSlash,
    /// Any string.
    Text(String),
}

/// Named audiences.
#[derive(Arbitrary, Debug, Clone)]
pub enum AudName {
    /// [`AUDIENCE`].
    Main,
    /// [`API_AUDIENCE`].
    Api,
    /// [`COGNITO_CLIENT`].
    Cognito,
    /// Any string.
    Text(String),
}

impl AudName {
    fn value(&self) -> Value {
        match self {
            AudName::Main => json!(AUDIENCE),
            AudName::Api => json!(API_AUDIENCE),
            AudName::Cognito => json!(COGNITO_CLIENT),
            AudName::Text(s) => json!(s),
        }
    }
}

/// An audience claim: one string or a list.
#[derive(Arbitrary, Debug, Clone)]
pub enum AudSpec {
    /// One string.
    One(AudName),
    /// A list.
    List(Vec<AudName>),
}

/// How a NumericDate is written.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TimeForm {
    /// An integer.
    Int,
    /// A float with a fraction.
    Float,
    /// A decimal string (not a NumericDate).
    Text,
}

/// A time relative to now.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct TimeSpec {
    /// Seconds from now.
    pub offset: i32,
    /// How it is written.
    pub form: TimeForm,
}

impl TimeSpec {
    fn value(&self, now: u64) -> Value {
        let t = now as i64 + i64::from(self.offset);
        match self.form {
            TimeForm::Int => json!(t),
            TimeForm::Float => json!(t as f64 + 0.5),
            TimeForm::Text => json!(t.to_string()),
        }
    }
}

/// The claims.
#[derive(Arbitrary, Debug, Clone)]
pub struct ClaimsSpec {
    /// `iss` (Auto: [`ISSUER`]).
    pub iss: Choice<IssName>,
    /// `sub` (Auto: `fuzz-subject`).
    pub sub: Choice<String>,
    /// `aud` (Auto: [`AUDIENCE`]).
    pub aud: Choice<AudSpec>,
    /// `exp` (Auto: in an hour).
    pub exp: Choice<TimeSpec>,
    /// `nbf` (Auto: absent).
    pub nbf: Choice<TimeSpec>,
    /// `iat` (Auto: now).
    pub iat: Choice<TimeSpec>,
    /// `tier` (Auto: `gold` for `main`, absent for `cognito`).
    pub tier: Choice<String>,
    /// `client_id` (Auto: [`COGNITO_CLIENT`] for `cognito`).
    pub client_id: Choice<AudSpec>,
    /// `token_use` (Auto: `access` for `cognito`).
    pub token_use: Choice<String>,
    /// Further claims (may replace the ones above).
    pub extra: Vec<(String, Json)>,
}

/// What happens to the token after signing.
#[derive(Arbitrary, Debug, Clone)]
pub enum Mutation {
    /// Nothing.
    None,
    /// Spaces around the token (trimmed by the verifier; still valid).
    Pad {
        /// Leading spaces.
        before: u8,
        /// Trailing spaces.
        after: u8,
    },
    /// XOR a byte of the decoded signature.
    FlipSignature {
        /// Position (modulo the length).
        at: u16,
        /// Non-zero XOR mask (zero is made one).
        mask: u8,
    },
    /// XOR a byte of the decoded header.
    FlipHeader {
        /// Position (modulo the length).
        at: u16,
        /// Non-zero XOR mask.
        mask: u8,
    },
    /// XOR a byte of the decoded payload.
    FlipPayload {
        /// Position (modulo the length).
        at: u16,
        /// Non-zero XOR mask.
        mask: u8,
    },
    /// Cut the signature segment to this many characters.
    TruncateSignature(u16),
    /// Sign these raw bytes as the payload (any bytes, validly signed).
    RawPayload(Vec<u8>),
    /// Sign these raw bytes as the header.
    RawHeader(Vec<u8>),
    /// Append a further segment.
    ExtraSegment(String),
}

/// A whole structured token.
#[derive(Arbitrary, Debug, Clone)]
pub struct TokenSpec {
    /// Who signs.
    pub signer: Signer,
    /// The header.
    pub header: HeaderSpec,
    /// The claims.
    pub claims: ClaimsSpec,
    /// After signing.
    pub mutation: Mutation,
}

/// A built token, and whether its bytes are still exactly what was signed.
pub struct Built {
    /// The token.
    pub token: String,
    /// True when the header, payload or signature no longer match the signature.
    pub tampered: bool,
    /// The signed header's `alg`, if it is JSON with a string `alg`.
    pub header_alg: Option<String>,
}

fn flip(segment: &str, at: u16, mask: u8) -> String {
    let mut bytes = B64.decode(segment).unwrap_or_default();
    if bytes.is_empty() {
        bytes.push(0);
    }
    let i = usize::from(at) % bytes.len();
    bytes[i] ^= mask.max(1);
    B64.encode(bytes)
}

impl TokenSpec {
    /// The header object.
    pub fn header(&self) -> Map<String, Value> {
        let h = &self.header;
        let mut m = Map::new();
        let signer = self.signer;
        let alg = h.alg.resolve(Some(json!(signer.alg())), |a| {
            Some(match a {
                AlgName::Of(s) => json!(s.alg()),
                AlgName::Hs256 => json!("HS256"),
                AlgName::None => json!("none"),
                AlgName::LowerEs256 => json!("es256"),
                AlgName::Text(t) => json!(t),
            })
        });
        let kid = h.kid.resolve(signer.kid().map(|k| json!(k)), |k| match k {
            KidName::Of(s) => s.kid().map(|k| json!(k)),
            KidName::Hmac => Some(json!("hmac")),
            KidName::Text(t) => Some(json!(t)),
        });
        let typ = h.typ.resolve(Some(json!("JWT")), |t| {
            Some(json!(match t {
                TypName::Jwt => "JWT",
                TypName::AtJwt => "at+jwt",
                TypName::AppAtJwt => "application/at+jwt",
                TypName::UpperAtJwt => "AT+JWT",
                TypName::Text(t) => t.as_str(),
            }))
        });
        for (k, v) in [("alg", alg), ("kid", kid), ("typ", typ)] {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        }
        if let Some(c) = &h.crit {
            m.insert("crit".into(), c.to_value());
        }
        for (k, v) in &h.extra {
            let name = match k {
                HeaderKey::Jku => "jku",
                HeaderKey::X5u => "x5u",
                HeaderKey::Jwk => "jwk",
                HeaderKey::X5c => "x5c",
                HeaderKey::Cty => "cty",
                HeaderKey::Zip => "zip",
                HeaderKey::B64 => "b64",
                HeaderKey::Text(t) => t.as_str(),
            };
            m.insert(name.into(), v.to_value());
        }
        m
    }

    /// The claims object.
    pub fn claims(&self, now: u64) -> Map<String, Value> {
        let c = &self.claims;
        let iss = c.iss.resolve(Some(json!(ISSUER)), |i| {
            Some(match i {
                IssName::Main => json!(ISSUER),
                IssName::Alt => json!(ALT_ISSUER),
                IssName::Cognito => json!(COGNITO_ISSUER),
                IssName::MainSlash => json!(format!("{ISSUER}/")),
                IssName::Text(t) => json!(t),
            })
        });
        let cognito = iss.as_ref().and_then(Value::as_str) == Some(COGNITO_ISSUER);
        let aud_of = |a: &AudSpec| {
            Some(match a {
                AudSpec::One(n) => n.value(),
                AudSpec::List(l) => Value::Array(l.iter().map(AudName::value).collect()),
            })
        };
        let time = |t: &TimeSpec| Some(t.value(now));
        let fields = [
            ("iss", iss.clone()),
            (
                "sub",
                c.sub
                    .resolve(Some(json!("fuzz-subject")), |s| Some(json!(s))),
            ),
            ("aud", c.aud.resolve(Some(json!(AUDIENCE)), aud_of)),
            ("exp", c.exp.resolve(Some(json!(now + 3600)), time)),
            ("nbf", c.nbf.resolve(None, time)),
            ("iat", c.iat.resolve(Some(json!(now)), time)),
            (
                "tier",
                c.tier
                    .resolve((!cognito).then(|| json!("gold")), |s| Some(json!(s))),
            ),
            (
                "client_id",
                c.client_id
                    .resolve(cognito.then(|| json!(COGNITO_CLIENT)), aud_of),
            ),
            (
                "token_use",
                c.token_use
                    .resolve(cognito.then(|| json!("access")), |s| Some(json!(s))),
            ),
        ];
        let mut m = Map::new();
        for (k, v) in fields {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        }
        for (k, v) in &c.extra {
            m.insert(k.clone(), v.to_value());
        }
        m
    }

    /// Sign and mutate.
    pub fn build(&self, keys: &Keys, now: u64) -> Built {
        let mut header_bytes = Value::Object(self.header()).to_string().into_bytes();
        let mut payload_bytes = Value::Object(self.claims(now)).to_string().into_bytes();
        match &self.mutation {
            Mutation::RawPayload(raw) => payload_bytes = raw.clone(),
            Mutation::RawHeader(raw) => header_bytes = raw.clone(),
            _ => {}
        }
        let header_alg = serde_json::from_slice::<Value>(&header_bytes)
            .ok()
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_string));
        let token = keys.token(self.signer, &header_bytes, &payload_bytes);
        let seg: Vec<&str> = token.split('.').collect();
        let (h, p, s) = (seg[0], seg[1], seg[2]);
        let (token, tampered) = match &self.mutation {
            Mutation::None | Mutation::RawPayload(_) | Mutation::RawHeader(_) => (token, false),
            Mutation::Pad { before, after } => (
                format!(
                    "{}{token}{}",
                    " ".repeat(usize::from(*before % 8)),
                    " ".repeat(usize::from(*after % 8))
                ),
                false,
            ),
            Mutation::FlipSignature { at, mask } => {
                (format!("{h}.{p}.{}", flip(s, *at, *mask)), true)
            }
            Mutation::FlipHeader { at, mask } => (format!("{}.{p}.{s}", flip(h, *at, *mask)), true),
            Mutation::FlipPayload { at, mask } => {
                (format!("{h}.{}.{s}", flip(p, *at, *mask)), true)
            }
            Mutation::TruncateSignature(n) => {
                let n = usize::from(*n) % s.len().max(1);
                (format!("{h}.{p}.{}", &s[..n]), true)
            }
            Mutation::ExtraSegment(extra) => (format!("{token}.{extra}"), true),
        };
        Built {
            token,
            tampered,
            header_alg,
        }
    }
}
