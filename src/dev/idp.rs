//! In-process OIDC issuer for `spangate dev` and tests: a real HTTP server on
//! 127.0.0.1 serving discovery, a JWKS (with `Cache-Control: max-age`), a token
//! endpoint for named demo identities, and an RFC 7662 introspection endpoint.
//! Keys are real (aws-lc-rs: ES256, ES384, RS256, PS256, EdDSA), can be
//! rotated and retired, and the whole issuer
//! can misbehave like a real IdP ([`Outage`]: 503, 500, a body that is not
//! JSON, or connections closed unanswered).
//!
//! Endpoints, under the issuer path (`issuer_path`, default empty):
//! - `GET  /.well-known/openid-configuration`
//! - `GET  /jwks`
//! - `POST /token` (form `identity=<name>`) or `GET /token?identity=<name>`;
//!   add `format=opaque` for an opaque token that only introspection knows
//! - `POST /token` with `grant_type=client_credentials` (RFC 6749 §4.4), the
//!   request OAuth client libraries send (the OpenTelemetry Collector's
//!   `oauth2client` extension, Go's `clientcredentials`): the client id names
//!   a demo identity, the secret is [`DevIdpOptions::client_secret`], sent
//!   with HTTP Basic (`client_secret_basic`, id and secret form-encoded) or
//!   as `client_id`/`client_secret` form fields (`client_secret_post`);
//!   optional `scope` lands in the token's `scope` claim and `audience` (or
//!   `resource`) replaces its `aud`
//! - `POST /introspect` (HTTP Basic client authentication, form `token=...`)

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// Most opaque tokens remembered by the dev issuer.
const MAX_OPAQUE: usize = 100_000;

/// Signing algorithm of the dev issuer's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevKeyAlg {
    /// ECDSA P-256 / SHA-256.
    #[default]
    Es256,
    /// ECDSA P-384 / SHA-384.
    Es384,
    /// RSA 2048 PKCS#1 v1.5 / SHA-256.
    Rs256,
    /// RSA 2048 PSS / SHA-256.
    Ps256,
    /// Ed25519 (`EdDSA`, RFC 8037).
    EdDsa,
}

impl DevKeyAlg {
    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            DevKeyAlg::Es256 => "ES256",
            DevKeyAlg::Es384 => "ES384",
            DevKeyAlg::Rs256 => "RS256",
            DevKeyAlg::Ps256 => "PS256",
            DevKeyAlg::EdDsa => "EdDSA",
        }
    }
}

/// How the dev issuer misbehaves, to test a real IdP's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outage {
    /// Serve normally.
    #[default]
    None,
    /// `503 Service Unavailable` on every endpoint.
    Unavailable,
    /// `500 Internal Server Error` on every endpoint.
    ServerError,
    /// `200` with a body that is not JSON on every endpoint.
    BadJson,
    /// Accept connections and close them without an answer (transport error).
    Drop,
}

impl Outage {
    fn code(self) -> u8 {
        match self {
            Outage::None => 0,
            Outage::Unavailable => 1,
            Outage::ServerError => 2,
            Outage::BadJson => 3,
            Outage::Drop => 4,
        }
    }

    fn from_code(c: u8) -> Outage {
        match c {
            1 => Outage::Unavailable,
            2 => Outage::ServerError,
            3 => Outage::BadJson,
            4 => Outage::Drop,
            _ => Outage::None,
        }
    }
}

/// Options of [`DevIdp::start`].
#[derive(Debug, Clone)]
pub struct DevIdpOptions {
    /// Where to bind (default `127.0.0.1:0`; give a port to come up on a known one).
    pub addr: SocketAddr,
    /// Key algorithm.
    pub alg: DevKeyAlg,
    /// Named demo identities: claims per name, served by the token endpoint.
    pub identities: BTreeMap<String, Value>,
    /// `aud` put into minted tokens that have none.
    pub audience: String,
    /// Lifetime of minted tokens (`exp = iat + token_ttl` unless given).
    pub token_ttl: Duration,
    /// `Cache-Control: max-age` of the JWKS response (`None`: no header).
    pub jwks_max_age: Option<Duration>,
    /// Path of the issuer under the server root, e.g. `/oauth2/default` (default empty).
    pub issuer_path: String,
    /// Use this exact issuer string instead of the server URL (for tokens shaped
    /// like a real IdP's; verifiers then use `jwks_uri` without discovery).
    pub issuer_override: Option<String>,
    /// Serve requests from the start (false: 503 until `set_available(true)`).
    pub available: bool,
    /// Client id and secret accepted by the introspection endpoint.
    pub introspection_client: Option<(String, String)>,
    /// Secret every demo identity accepts as an OAuth client in the
    /// `client_credentials` grant (`None`: the grant is refused).
    pub client_secret: Option<String>,
}

impl Default for DevIdpOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            alg: DevKeyAlg::Es256,
            identities: BTreeMap::new(),
            audience: "spangate".into(),
            token_ttl: Duration::from_secs(3600),
            jwks_max_age: Some(Duration::from_secs(300)),
            issuer_path: String::new(),
            issuer_override: None,
            available: true,
            introspection_client: None,
            client_secret: None,
        }
    }
}

enum Signer {
    Ec(sig::EcdsaKeyPair),
    Rsa(sig::RsaKeyPair, &'static sig::RsaSignatureEncoding),
    Ed(sig::Ed25519KeyPair),
}

struct DevKey {
    kid: String,
    alg: DevKeyAlg,
    signer: Signer,
    jwk: Value,
}

impl DevKey {
    fn generate(alg: DevKeyAlg) -> std::io::Result<DevKey> {
        let err = |m: &str| std::io::Error::other(format!("dev idp key generation: {m}"));
        let rng = SystemRandom::new();
        let mut kid_bytes = [0u8; 8];
        aws_lc_rs::rand::fill(&mut kid_bytes).map_err(|_| err("rng"))?;
        let kid = kid_bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let (signer, jwk) = match alg {
            DevKeyAlg::Es256 | DevKeyAlg::Es384 => {
                let (salg, crv, n) = if alg == DevKeyAlg::Es256 {
                    (&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
                } else {
                    (&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)
                };
                let doc = sig::EcdsaKeyPair::generate_pkcs8(salg, &rng).map_err(|_| err("ec"))?;
                let kp = sig::EcdsaKeyPair::from_pkcs8(salg, doc.as_ref())
                    .map_err(|_| err("ec pkcs8"))?;
                let point = kp.public_key().as_ref().to_vec();
                if point.len() != 1 + 2 * n {
                    return Err(err("ec point"));
                }
                let jwk = json!({
                    "kty": "EC", "crv": crv, "use": "sig", "alg": alg.name(), "kid": kid,
                    "x": B64.encode(&point[1..1 + n]), "y": B64.encode(&point[1 + n..]),
                });
                (Signer::Ec(kp), jwk)
            }
            DevKeyAlg::Rs256 | DevKeyAlg::Ps256 => {
                let kp = sig::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| err("rsa"))?;
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key());
                let jwk = json!({
                    "kty": "RSA", "use": "sig", "alg": alg.name(), "kid": kid,
                    "n": B64.encode(&c.n), "e": B64.encode(&c.e),
                });
                let encoding = if alg == DevKeyAlg::Rs256 {
                    &sig::RSA_PKCS1_SHA256
                } else {
                    &sig::RSA_PSS_SHA256
                };
                (Signer::Rsa(kp, encoding), jwk)
            }
            DevKeyAlg::EdDsa => {
                let doc = sig::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| err("ed25519"))?;
                let kp = sig::Ed25519KeyPair::from_pkcs8(doc.as_ref())
                    .map_err(|_| err("ed25519 pkcs8"))?;
                let jwk = json!({
                    "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
                    "x": B64.encode(kp.public_key().as_ref()),
                });
                (Signer::Ed(kp), jwk)
            }
        };
        Ok(DevKey {
            kid,
            alg,
            signer,
            jwk,
        })
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Ec(kp) => kp
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
            Signer::Rsa(kp, encoding) => {
                let mut out = vec![0u8; kp.public_modulus_len()];
                match kp.sign(*encoding, &rng, msg, &mut out) {
                    Ok(()) => out,
                    Err(_) => Vec::new(),
                }
            }
            Signer::Ed(kp) => kp.sign(msg).as_ref().to_vec(),
        }
    }
}

struct State {
    /// Published keys; the last one is current.
    keys: Vec<Arc<DevKey>>,
    opaque: HashMap<String, Value>,
    /// Paths (under the issuer path) serving the JWKS; the first is advertised.
    jwks_paths: Vec<String>,
    /// Further JWKs published as given (hostile or broken key sets).
    extra_jwks: Vec<Value>,
    /// Fields merged over the discovery document (to misbehave).
    discovery_patch: serde_json::Map<String, Value>,
    /// Requests per path (bounded).
    requests: HashMap<String, usize>,
}

struct Shared {
    opts: DevIdpOptions,
    addr: SocketAddr,
    state: Mutex<State>,
    outage: AtomicU8,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    token_requests: AtomicUsize,
    introspections: AtomicUsize,
    dropped_connections: AtomicUsize,
}

/// The address a client on this machine uses for a listener bound to
/// `addr`: loopback in place of an unspecified address (`0.0.0.0`, `::`).
pub fn local_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}

impl Shared {
    /// The issuer's base URL; loopback when bound to an unspecified address,
    /// so `iss`, discovery and the JWKS URL name an address that answers.
    fn base_url(&self) -> String {
        format!("http://{}", local_addr(self.addr))
    }

    fn issuer(&self) -> String {
        match &self.opts.issuer_override {
            Some(i) => i.clone(),
            None => format!("{}{}", self.base_url(), self.opts.issuer_path),
        }
    }

    fn jwks_uri(&self) -> String {
        let path = lock(&self.state)
            .jwks_paths
            .first()
            .cloned()
            .unwrap_or_else(|| "/jwks".into());
        self.endpoint(path.trim_start_matches('/'))
    }

    fn endpoint(&self, name: &str) -> String {
        format!(
            "{}{}/{name}",
            self.base_url(),
            self.opts.issuer_path.trim_end_matches('/')
        )
    }

    fn fill_claims(&self, claims: Value) -> Value {
        let mut c = match claims {
            Value::Object(o) => o,
            _ => serde_json::Map::new(),
        };
        let now = now_secs();
        c.entry("iss").or_insert_with(|| json!(self.issuer()));
        c.entry("aud").or_insert_with(|| json!(self.opts.audience));
        c.entry("iat").or_insert_with(|| json!(now));
        c.entry("exp")
            .or_insert_with(|| json!(now + self.opts.token_ttl.as_secs()));
        c.retain(|_, v| !v.is_null());
        Value::Object(c)
    }

    fn mint_with_header(&self, header: Value, claims: Value) -> String {
        let key = lock(&self.state).keys.last().cloned();
        let Some(key) = key else { return String::new() };
        let mut h = serde_json::Map::new();
        h.insert("alg".into(), json!(key.alg.name()));
        h.insert("kid".into(), json!(key.kid));
        h.insert("typ".into(), json!("at+jwt"));
        if let Value::Object(o) = header {
            for (k, v) in o {
                h.insert(k, v);
            }
        }
        h.retain(|_, v| !v.is_null());
        let claims = self.fill_claims(claims);
        let input = format!(
            "{}.{}",
            B64.encode(Value::Object(h.clone()).to_string()),
            B64.encode(claims.to_string())
        );
        let signature = if h.get("alg") == Some(&json!("none")) {
            Vec::new()
        } else {
            key.sign(input.as_bytes())
        };
        format!("{input}.{}", B64.encode(signature))
    }

    fn mint_opaque(&self, claims: Value) -> String {
        let mut b = [0u8; 32];
        let _ = aws_lc_rs::rand::fill(&mut b);
        let token = format!("opq_{}", B64.encode(b));
        let claims = self.fill_claims(claims);
        let mut st = lock(&self.state);
        if st.opaque.len() >= MAX_OPAQUE {
            st.opaque.clear();
        }
        st.opaque.insert(token.clone(), claims);
        token
    }
}

struct Guard {
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

/// A running dev issuer. Cheap to clone; the server stops when the last clone drops.
#[derive(Clone)]
pub struct DevIdp {
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

impl std::fmt::Debug for DevIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIdp")
            .field("issuer", &self.issuer())
            .finish()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DevIdp {
    /// Bind and serve on the current tokio runtime.
    pub async fn start(opts: DevIdpOptions) -> std::io::Result<DevIdp> {
        let key = DevKey::generate(opts.alg)?;
        let listener = tokio::net::TcpListener::bind(opts.addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            outage: AtomicU8::new(if opts.available {
                Outage::None.code()
            } else {
                Outage::Unavailable.code()
            }),
            opts,
            addr,
            state: Mutex::new(State {
                keys: vec![Arc::new(key)],
                opaque: HashMap::new(),
                jwks_paths: vec!["/jwks".to_string()],
                extra_jwks: Vec::new(),
                discovery_patch: serde_json::Map::new(),
                requests: HashMap::new(),
            }),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            token_requests: AtomicUsize::new(0),
            introspections: AtomicUsize::new(0),
            dropped_connections: AtomicUsize::new(0),
        });
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(serve(listener, shared.clone(), rx));
        Ok(DevIdp {
            shared,
            _guard: Arc::new(Guard { shutdown: tx, task }),
        })
    }

    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT` (the server root).
    pub fn base_url(&self) -> String {
        self.shared.base_url()
    }

    /// The issuer (`iss` of minted tokens), e.g. `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> String {
        self.shared.issuer()
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        self.shared.jwks_uri()
    }

    /// The token endpoint URL.
    pub fn token_endpoint(&self) -> String {
        self.shared.endpoint("token")
    }

    /// The introspection endpoint URL.
    pub fn introspection_endpoint(&self) -> String {
        self.shared.endpoint("introspect")
    }

    /// The default audience of minted tokens.
    pub fn audience(&self) -> String {
        self.shared.opts.audience.clone()
    }

    /// The `kid` of the current signing key.
    pub fn current_kid(&self) -> String {
        lock(&self.shared.state)
            .keys
            .last()
            .map(|k| k.kid.clone())
            .unwrap_or_default()
    }

    /// The public JWK of the current signing key.
    pub fn current_public_jwk(&self) -> Value {
        lock(&self.shared.state)
            .keys
            .last()
            .map(|k| k.jwk.clone())
            .unwrap_or(Value::Null)
    }

    /// Sign a token with the current key. Fills `iss`, `aud` (if absent),
    /// `iat` and `exp` (`iat + token_ttl`) unless given; a claim given as
    /// `null` is left out. Header: `alg`, `kid`, `typ: at+jwt`.
    pub fn mint(&self, claims: Value) -> String {
        self.shared.mint_with_header(json!({}), claims)
    }

    /// Like [`mint`](Self::mint), with header fields overridden (for hostile
    /// tokens): any field given replaces the default, `null` removes it. The
    /// signature is always made with the current key, except for `alg: none`,
    /// which gets an empty signature.
    pub fn mint_with_header(&self, header: Value, claims: Value) -> String {
        self.shared.mint_with_header(header, claims)
    }

    /// An opaque token known only to the introspection endpoint, with these
    /// claims (filled like [`mint`](Self::mint)).
    pub fn mint_opaque(&self, claims: Value) -> String {
        self.shared.mint_opaque(claims)
    }

    /// Revoke an opaque token (introspection then says `active: false`).
    pub fn revoke(&self, token: &str) {
        lock(&self.shared.state).opaque.remove(token);
    }

    /// A new current signing key (same algorithm); old keys stay published.
    /// Returns the new `kid`.
    pub fn rotate_key(&self) -> String {
        match DevKey::generate(self.shared.opts.alg) {
            Ok(k) => {
                let kid = k.kid.clone();
                lock(&self.shared.state).keys.push(Arc::new(k));
                kid
            }
            Err(_) => self.current_kid(),
        }
    }

    /// Unpublish every key but the current one.
    pub fn retire_old_keys(&self) {
        let mut st = lock(&self.shared.state);
        let n = st.keys.len();
        if n > 1 {
            st.keys.drain(..n - 1);
        }
    }

    /// JWKS requests served (including failed ones while down).
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Discovery requests served (including failed ones while down).
    pub fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Publish this JWK as given, after the issuer's own keys (for hostile or
    /// broken key sets: small RSA keys, `use: enc`, wrong `alg`, ...).
    pub fn publish_jwk(&self, jwk: Value) {
        lock(&self.shared.state).extra_jwks.push(jwk);
    }

    /// Stop publishing the JWKs added with [`publish_jwk`](Self::publish_jwk).
    pub fn unpublish_extra_jwks(&self) {
        lock(&self.shared.state).extra_jwks.clear();
    }

    /// Sign `msg` with the current key (its own algorithm); the raw
    /// signature bytes (ECDSA: fixed-size `r || s`).
    pub fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
        let key = lock(&self.shared.state).keys.last().cloned();
        key.map(|k| k.sign(msg)).unwrap_or_default()
    }

    /// A compact JWS over exactly these header and payload bytes (no JSON
    /// re-encoding: duplicate keys, odd whitespace, non-JSON all survive),
    /// signed with the current key.
    pub fn sign_compact(&self, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let sig = self.sign_bytes(input.as_bytes());
        format!("{input}.{}", B64.encode(sig))
    }

    /// Serve the JWKS at `path` (under the issuer path, e.g. `/v2/keys`) and
    /// advertise it in discovery. With `keep_old`, the previous paths keep
    /// serving it too (an IdP migrating with overlap); without, they answer 404.
    pub fn move_jwks(&self, path: &str, keep_old: bool) {
        let path = format!("/{}", path.trim_start_matches('/'));
        let mut st = lock(&self.shared.state);
        if !keep_old {
            st.jwks_paths.clear();
        }
        st.jwks_paths.retain(|p| *p != path);
        st.jwks_paths.insert(0, path);
    }

    /// Merge these fields over the discovery document from now on (e.g. a
    /// wrong `issuer`, or a `jwks_uri` elsewhere); `{}` restores it.
    pub fn set_discovery_patch(&self, patch: Value) {
        lock(&self.shared.state).discovery_patch = match patch {
            Value::Object(o) => o,
            _ => serde_json::Map::new(),
        };
    }

    /// Requests received for this exact URL path (e.g. `/v2/keys`), whatever
    /// the answer was.
    pub fn requests_to(&self, path: &str) -> usize {
        lock(&self.shared.state)
            .requests
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Requests whose connection was closed unanswered ([`Outage::Drop`]).
    pub fn dropped_connections(&self) -> usize {
        self.shared.dropped_connections.load(Ordering::SeqCst)
    }

    /// Token endpoint requests.
    pub fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// Introspection requests.
    pub fn introspections(&self) -> usize {
        self.shared.introspections.load(Ordering::SeqCst)
    }

    /// Up (serve) or down (503 on every endpoint).
    pub fn set_available(&self, up: bool) {
        self.set_outage(if up {
            Outage::None
        } else {
            Outage::Unavailable
        });
    }

    /// Misbehave in one of the ways a real IdP does (or serve again with
    /// [`Outage::None`]).
    pub fn set_outage(&self, outage: Outage) {
        self.shared.outage.store(outage.code(), Ordering::SeqCst);
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move {
                    if Outage::from_code(shared.outage.load(Ordering::SeqCst)) == Outage::Drop {
                        count_request(&shared, req.uri().path());
                        shared.dropped_connections.fetch_add(1, Ordering::SeqCst);
                        // An error from the service makes hyper close the
                        // connection without an answer.
                        return Err(std::io::Error::other("dev idp: dropping the connection"));
                    }
                    Ok(handle(&shared, req).await)
                }
            });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder.serve_connection(io, svc);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.wait_for(|s| *s) => {}
            }
        });
    }
}

fn json_response(
    status: u16,
    body: &Value,
    extra: Option<(&str, String)>,
) -> http::Response<Full<Bytes>> {
    let mut b = http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some((k, v)) = extra {
        b = b.header(k, v);
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}

async fn read_form(req: http::Request<Incoming>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    if let Ok(body) = Limited::new(req.into_body(), 16 * 1024).collect().await {
        let body = body.to_bytes();
        out.extend(url::form_urlencoded::parse(&body).into_owned());
    }
    out
}

/// The client id and secret of a token request: HTTP Basic (RFC 6749
/// §2.3.1: each part form-encoded, then base64) or form fields.
fn client_auth(basic: Option<&str>, form: &HashMap<String, String>) -> Option<(String, String)> {
    if let Some(b) = basic {
        let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (id, secret) = text.split_once(':')?;
        let dec = |s: &str| -> String {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        return Some((dec(id), dec(secret)));
    }
    Some((
        form.get("client_id")?.clone(),
        form.get("client_secret")?.clone(),
    ))
}

/// `grant_type=client_credentials`: a token for the demo identity named by
/// the client id, when the client secret is right.
fn client_credentials(
    shared: &Shared,
    basic: Option<&str>,
    form: &HashMap<String, String>,
) -> http::Response<Full<Bytes>> {
    let invalid_client = || {
        let mut r = json_response(401, &json!({"error": "invalid_client"}), None);
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"spangate-dev\""),
        );
        r
    };
    let Some(want) = &shared.opts.client_secret else {
        return json_response(400, &json!({"error": "unauthorized_client"}), None);
    };
    let Some((id, secret)) = client_auth(basic, form) else {
        return invalid_client();
    };
    use subtle::ConstantTimeEq;
    let secret_ok = bool::from(secret.as_bytes().ct_eq(want.as_bytes()));
    let claims = shared.opts.identities.get(&id).cloned();
    let (true, Some(Value::Object(mut claims))) = (secret_ok, claims) else {
        return invalid_client();
    };
    claims.entry("azp").or_insert_with(|| json!(id));
    claims.entry("client_id").or_insert_with(|| json!(id));
    let scope = form.get("scope").filter(|s| !s.is_empty());
    if let Some(scope) = scope {
        claims.insert("scope".into(), json!(scope));
    }
    if let Some(aud) = form.get("audience").or_else(|| form.get("resource")) {
        claims.insert("aud".into(), json!(aud));
    }
    let token = shared.mint_with_header(json!({}), Value::Object(claims));
    let mut body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": shared.opts.token_ttl.as_secs(),
    });
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    json_response(200, &body, None)
}

/// Most distinct paths whose requests are counted.
const MAX_COUNTED_PATHS: usize = 1024;

fn count_request(shared: &Shared, path: &str) {
    let prefix = shared.opts.issuer_path.trim_end_matches('/');
    let rel = path.strip_prefix(prefix).unwrap_or("");
    let is_jwks = {
        let mut st = lock(&shared.state);
        if st.requests.len() < MAX_COUNTED_PATHS || st.requests.contains_key(path) {
            *st.requests.entry(path.to_string()).or_insert(0) += 1;
        }
        st.jwks_paths.iter().any(|p| p == rel)
    };
    if is_jwks {
        shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    }
    match rel {
        "/.well-known/openid-configuration" => {
            shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
        }
        "/token" => {
            shared.token_requests.fetch_add(1, Ordering::SeqCst);
        }
        "/introspect" => {
            shared.introspections.fetch_add(1, Ordering::SeqCst);
        }
        _ => {}
    }
}

async fn handle(shared: &Arc<Shared>, req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
    let idp = shared;
    let prefix = shared.opts.issuer_path.trim_end_matches('/');
    let path = req.uri().path().to_string();
    let rel = path.strip_prefix(prefix).unwrap_or("");
    count_request(shared, &path);
    match Outage::from_code(shared.outage.load(Ordering::SeqCst)) {
        Outage::None | Outage::Drop => {}
        Outage::Unavailable => {
            return json_response(503, &json!({"error": "temporarily_unavailable"}), None);
        }
        Outage::ServerError => {
            return json_response(500, &json!({"error": "server_error"}), None);
        }
        Outage::BadJson => {
            return http::Response::builder()
                .status(200)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from_static(b"<html>maintenance</html>")))
                .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())));
        }
    }
    match rel {
        "/.well-known/openid-configuration" => {
            let algs: Vec<&str> = {
                let st = lock(&shared.state);
                let mut a: Vec<&str> = st.keys.iter().map(|k| k.alg.name()).collect();
                a.dedup();
                a
            };
            let doc = json!({
                "issuer": idp.issuer(),
                "authorization_endpoint": idp.endpoint("authorize"),
                "token_endpoint": idp.endpoint("token"),
                "introspection_endpoint": idp.endpoint("introspect"),
                "jwks_uri": idp.jwks_uri(),
                "response_types_supported": ["code", "token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": algs,
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "grant_types_supported": ["client_credentials"],
            });
            let mut doc = doc;
            if let Value::Object(d) = &mut doc {
                for (k, v) in lock(&shared.state).discovery_patch.iter() {
                    d.insert(k.clone(), v.clone());
                }
            }
            json_response(200, &doc, None)
        }
        rel if lock(&shared.state).jwks_paths.iter().any(|p| p == rel) => {
            let keys: Vec<Value> = {
                let st = lock(&shared.state);
                st.keys
                    .iter()
                    .map(|k| k.jwk.clone())
                    .chain(st.extra_jwks.iter().cloned())
                    .collect()
            };
            let cc = shared
                .opts
                .jwks_max_age
                .map(|d| ("cache-control", format!("public, max-age={}", d.as_secs())));
            json_response(200, &json!({ "keys": keys }), cc)
        }
        "/token" => {
            let basic = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .map(str::to_string);
            let form = read_form(req).await;
            match form.get("grant_type").map(String::as_str) {
                None => {}
                Some("client_credentials") => {
                    return client_credentials(shared, basic.as_deref(), &form);
                }
                Some(_) => {
                    return json_response(400, &json!({"error": "unsupported_grant_type"}), None);
                }
            }
            let name = form.get("identity").cloned().unwrap_or_default();
            let Some(claims) = shared.opts.identities.get(&name).cloned() else {
                return json_response(
                    400,
                    &json!({"error": "invalid_request", "error_description": "unknown identity"}),
                    None,
                );
            };
            let token = if form.get("format").map(String::as_str) == Some("opaque") {
                shared.mint_opaque(claims)
            } else {
                shared.mint_with_header(json!({}), claims)
            };
            json_response(
                200,
                &json!({"access_token": token, "token_type": "Bearer", "expires_in": shared.opts.token_ttl.as_secs()}),
                None,
            )
        }
        "/introspect" => {
            if req.method() != http::Method::POST {
                return json_response(405, &json!({"error": "invalid_request"}), None);
            }
            let authorized = match &shared.opts.introspection_client {
                Some((id, secret)) => {
                    let got = req
                        .headers()
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Basic "))
                        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                        .unwrap_or_default();
                    let enc = |s: &str| {
                        url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                    };
                    let want = format!("{}:{}", enc(id), enc(secret));
                    use subtle::ConstantTimeEq;
                    bool::from(got.as_slice().ct_eq(want.as_bytes()))
                }
                None => false,
            };
            if !authorized {
                return json_response(401, &json!({"error": "invalid_client"}), None);
            }
            let form = read_form(req).await;
            let token = form.get("token").cloned().unwrap_or_default();
            let claims = lock(&shared.state).opaque.get(&token).cloned();
            let body = match claims {
                Some(Value::Object(mut c)) => {
                    let live = c
                        .get("exp")
                        .and_then(Value::as_u64)
                        .is_none_or(|e| e >= now_secs());
                    if live {
                        c.insert("active".into(), json!(true));
                        Value::Object(c)
                    } else {
                        json!({"active": false})
                    }
                }
                _ => json!({"active": false}),
            };
            json_response(200, &body, None)
        }
        _ => json_response(404, &json!({"error": "not_found"}), None),
    }
}
