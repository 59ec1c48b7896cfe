//! Shared test harness for the admin tests: a real admin server on
//! 127.0.0.1:0 over a real `Shared`, an in-process OTLP upstream that accepts
//! only some tokens, audit capture and log capture.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use spangate::admin::auth::{
    Actor, AdminAuthError, AdminAuthenticator, AdminCaller, AuthFuture, Permission, sha256_hex,
};
use spangate::admin::{AdminExtras, serve_with};
use spangate::audit::{Audit, MemorySink};
use spangate::client::{ClientOptions, HttpClient};
use spangate::config::Config;
use spangate::identity::Identity;
use spangate::metrics::Metrics;
use spangate::policy::PolicyHolder;
use spangate::reload::{Precheck, Reloader, ReloaderHandle, spawn_with};
use spangate::secrets::SecretStore;
use spangate::shared::Shared;
use tokio::sync::watch;

/// The bootstrap admin token used by every harness.
pub const BOOTSTRAP: &str = "bootstrap-admin-token-7c1d0e";

// ---------- log capture ----------

/// The audit module's in-memory sink, as a `tracing` writer.
#[derive(Clone, Default)]
pub struct LogBuf(pub spangate::audit::MemorySink);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = spangate::audit::MemorySink;
    fn make_writer(&'a self) -> Self::Writer {
        self.0.clone()
    }
}

/// Every log line of this test process (all levels, spangate at TRACE).
pub fn logs() -> &'static LogBuf {
    static LOGS: OnceLock<LogBuf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(sub);
        buf
    })
}

pub fn log_text() -> String {
    logs().0.text()
}

// ---------- upstream ----------

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub content_type: Option<String>,
    pub token: Option<String>,
    pub body: Bytes,
}

/// An in-process OTLP upstream that answers 200 for accepted tokens and 401
/// (or a configured status) otherwise.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<Hit>>>,
    accepted: Arc<Mutex<HashSet<String>>>,
    reject_status: u16,
}

impl Upstream {
    pub async fn start(accepted: &[&str]) -> Upstream {
        Self::start_with(accepted, 401).await
    }

    pub async fn start_with(accepted: &[&str], reject_status: u16) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let accepted: Arc<Mutex<HashSet<String>>> =
            Arc::new(Mutex::new(accepted.iter().map(|s| s.to_string()).collect()));
        let (h, a) = (Arc::clone(&hits), Arc::clone(&accepted));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (h, a) = (Arc::clone(&h), Arc::clone(&a));
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (h, a) = (Arc::clone(&h), Arc::clone(&a));
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let token = parts
                                .headers
                                .get("lightstep-access-token")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            let ok = token
                                .as_ref()
                                .is_some_and(|t| a.lock().expect("lock").contains(t));
                            h.lock().expect("lock").push(Hit {
                                path: parts.uri.path().to_string(),
                                content_type: parts
                                    .headers
                                    .get("content-type")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string),
                                token,
                                body,
                            });
                            let status = if ok { 200 } else { reject_status };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            hits,
            accepted,
            reject_status,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/traces/otlp/v0.9", self.addr)
    }

    pub fn accept(&self, token: &str) {
        self.accepted
            .lock()
            .expect("lock")
            .insert(token.to_string());
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("lock").clone()
    }
}

/// An address on which nothing listens.
pub async fn dead_addr() -> SocketAddr {
    // Bound but never listening: a connect is refused, and the port stays
    // reserved for the life of the test process, so a parallel test cannot
    // pick it up and answer (a dropped listener's port can be reused at once).
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let a = s.local_addr().expect("addr");
    std::mem::forget(s);
    a
}

// ---------- test authenticator ----------

/// Tokens → (actor, permissions), standing in for OIDC principals.
#[derive(Default)]
pub struct StaticAuth {
    pub tokens: HashMap<String, (Actor, BTreeSet<Permission>)>,
}

impl StaticAuth {
    pub fn with(mut self, token: &str, subject: &str, perms: &[Permission]) -> Self {
        self.tokens.insert(
            token.to_string(),
            (
                Actor::Oidc {
                    provider: "okta".into(),
                    subject: subject.into(),
                    token_fingerprint: spangate::fingerprint(token.as_bytes()),
                },
                perms.iter().copied().collect(),
            ),
        );
        self
    }
}

impl AdminAuthenticator for StaticAuth {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        Box::pin(async move {
            if token == BOOTSTRAP {
                return Ok(AdminCaller {
                    actor: Actor::BootstrapToken,
                    permissions: Permission::ALL.into_iter().collect(),
                });
            }
            match self.tokens.get(token) {
                Some((actor, perms)) => Ok(AdminCaller {
                    actor: actor.clone(),
                    permissions: perms.clone(),
                }),
                None => Err(AdminAuthError::Invalid("bad_signature")),
            }
        })
    }
}

// ---------- the admin server ----------

pub struct Options {
    pub upstreams: Vec<(String, String)>,
    pub persistent: bool,
    pub extra_yaml: String,
    /// Extra lines under `admin:` (each indented by two spaces).
    pub admin_yaml: String,
    pub extras: AdminExtras,
    /// Build the reloader with this precheck (and hand it to the admin server).
    pub precheck: Option<Precheck>,
    /// Start the file watcher and SIGHUP handler too.
    pub spawn_reloader: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            upstreams: Vec::new(),
            persistent: true,
            extra_yaml: String::new(),
            admin_yaml: String::new(),
            extras: AdminExtras::default(),
            precheck: None,
            spawn_reloader: false,
        }
    }
}

pub struct Harness {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub audit: MemorySink,
    pub shutdown: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
    pub dir: tempfile::TempDir,
    pub policies: PathBuf,
    pub http: HttpClient,
    pub reloader: Arc<Reloader>,
    pub reload_handle: Option<ReloaderHandle>,
}

impl Harness {
    pub async fn start(opts: Options) -> Harness {
        logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).expect("policies dir");
        std::fs::write(policies.join("base.yaml"), "endpoints: {}\n").expect("policy file");
        let mut yaml = format!(
            "admin:\n  listen: 127.0.0.1:0\n  bootstrap_token_sha256: {}\n{}policies: {}\n",
            sha256_hex(BOOTSTRAP),
            opts.admin_yaml,
            policies.display()
        );
        if opts.persistent {
            yaml.push_str(&format!(
                "secrets:\n  store: {}\n",
                dir.path().join("secrets.json").display()
            ));
        }
        if !opts.upstreams.is_empty() {
            yaml.push_str("upstreams:\n");
            for (name, url) in &opts.upstreams {
                yaml.push_str(&format!("  {name}: {{ url: \"{url}\" }}\n"));
            }
        }
        yaml.push_str(&opts.extra_yaml);
        let config = Config::parse(&dir.path().join("spangate.yaml"), &yaml).expect("config");
        let client = HttpClient::new(ClientOptions::default()).expect("client");
        let identity = Identity::start(&config.providers, client.clone()).expect("identity");
        let policy = Arc::new(PolicyHolder::load(&config.policies).expect("policy"));
        let secrets = SecretStore::open(&config.secrets).expect("secrets");
        let sink = MemorySink::default();
        let shared = Arc::new(Shared {
            config,
            identity,
            policy,
            secrets,
            client: client.clone(),
            upstream_clients: Default::default(),
            audit: Audit::to_writer(Box::new(sink.clone())),
            metrics: Arc::new(Metrics::default()),
            limiter: spangate::ratelimit::RateLimiter::new(1000),
            budget: spangate::budget::MemoryBudget::new(1 << 20, Default::default()),
            deployments: Arc::new(spangate::deployments::DeploymentTracker::new(
                &Default::default(),
            )),
            spools: Default::default(),
            fleet: None,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind admin");
        let addr = listener.local_addr().expect("addr");
        let reloader = match opts.precheck {
            Some(p) => Reloader::with_precheck(Arc::clone(&shared.policy), shared.audit.clone(), p),
            None => Reloader::new(Arc::clone(&shared.policy), shared.audit.clone()),
        };
        let reload_handle = opts
            .spawn_reloader
            .then(|| spawn_with(Arc::clone(&reloader)));
        let mut extras = opts.extras;
        extras.reloader = Some(Arc::clone(&reloader));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(serve_with(listener, Arc::clone(&shared), rx, extras));
        Harness {
            addr,
            shared,
            audit: sink,
            shutdown: tx,
            task,
            dir,
            policies,
            http: client,
            reloader,
            reload_handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One admin call; returns status, headers and the JSON body (Null when not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, http::HeaderMap, serde_json::Value) {
        let raw = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.call_raw(method, path, token, raw).await
    }

    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, http::HeaderMap, serde_json::Value) {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.url(), path))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        let resp = self
            .http
            .send(req, Duration::from_secs(20), 4 << 20)
            .await
            .expect("admin call");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
        RESPONSES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(body.to_string());
        (status, headers, body)
    }

    /// One admin call over a fresh connection from `source` (any 127.0.0.0/8
    /// address on Linux, so tests can act as distinct peers), with explicit
    /// headers and a body (`chunked`: sent without Content-Length).
    pub async fn call_from(
        &self,
        source: std::net::IpAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        chunked: bool,
    ) -> Reply {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind(SocketAddr::new(source, 0))
            .expect("bind source address");
        let stream = sock.connect(self.addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let frames: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> =
            if body.is_empty() {
                Vec::new()
            } else {
                body.chunks(8 * 1024)
                    .map(|c| Ok(hyper::body::Frame::data(Bytes::copy_from_slice(c))))
                    .collect()
            };
        let body: http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible> = if chunked
        {
            http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
        } else {
            Full::new(Bytes::from(body)).boxed()
        };
        let req = req.body(body).expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
            .await
            .expect("answer in time")
            .expect("send");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
            .await
            .expect("body in time")
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        RESPONSES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(json.to_string());
        Reply {
            status,
            headers,
            body: json,
            raw: bytes,
        }
    }

    /// Audit lines whose `request_id` is `id`.
    pub fn audit_for(&self, id: &str) -> Vec<serde_json::Value> {
        self.audit
            .lines()
            .into_iter()
            .filter(|l| l["request_id"] == id)
            .collect()
    }

    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        self.audit.lines()
    }

    /// Assert that none of `values` appears in any log line, audit line or
    /// response body seen so far in this process.
    pub fn assert_never_leaked(&self, values: &[&str]) {
        let logs = log_text();
        let audit = self.audit.text();
        let responses = RESPONSES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n");
        for v in values {
            assert!(!logs.contains(v), "value leaked into logs");
            assert!(!audit.contains(v), "value leaked into audit");
            assert!(!responses.contains(v), "value leaked into a response");
        }
    }

    pub async fn stop(self) {
        if let Some(h) = self.reload_handle {
            h.stop();
        }
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

static RESPONSES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A response of [`Harness::call_from`].
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: serde_json::Value,
    pub raw: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `x-request-id` header (every admin response has one).
    pub fn request_id(&self) -> String {
        self.header("x-request-id")
            .expect("x-request-id header")
            .to_string()
    }
}

/// 127.0.0.1, the default peer.
pub const PEER_1: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
/// 127.0.0.2: a second peer (Linux routes all of 127.0.0.0/8 to loopback).
pub const PEER_2: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
/// 127.0.0.3: a third peer.
pub const PEER_3: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

/// Poll `f` every 20 ms until it is true or `limit` passes.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
