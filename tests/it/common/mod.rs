//! Test harness: the whole app on port 0 against the in-process dev IdP and
//! a recording upstream, all on 127.0.0.1.
#![allow(dead_code)]

pub mod cli;
pub mod fleet;
pub mod load;
pub mod redis;
pub mod vercel;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use spangate::audit::{Audit, MemorySink};
use spangate::client::{HttpClient, OutBody};
use spangate::config::Config;
use spangate::dev::idp::{DevIdp, DevIdpOptions};
use spangate::dev::upstream::RecordingUpstream;

pub const LIGHTSTEP_TOKEN: &str = "ls-test-token-3f9a1c";
pub const AUDIENCE: &str = "spangate";

/// Knobs for one harness.
pub struct Options {
    /// Policy files (name, YAML); `None` = the repo's `policies/`.
    pub policies: Option<Vec<(&'static str, String)>>,
    /// Extra YAML appended under `server:`.
    pub server_extra: String,
    /// Upstream attempt timeout.
    pub upstream_timeout: &'static str,
    /// Point the upstream at a closed port instead of the recorder.
    pub upstream_down: bool,
    /// Extra YAML lines under `admin:` (indented two spaces).
    pub admin_extra: String,
    /// Extra YAML lines under `secrets:` (indented two spaces).
    pub secrets_extra: String,
    /// Extra YAML lines under `providers.dev:` (indented four spaces).
    pub provider_extra: String,
    /// Start the dev IdP unavailable (503 on every endpoint).
    pub idp_down: bool,
    /// Reuse this directory (config, policies, token file, store) instead of a new one.
    pub reuse_dir: Option<PathBuf>,
    /// Use this upstream URL instead of the recorder's plain-http one.
    pub upstream_url: Option<String>,
    /// Extra flow-map fields for `upstreams.lightstep` (e.g. `, ca_file: "x"`).
    pub upstream_extra: String,
    /// `admin.listen` (default `127.0.0.1:0`).
    pub admin_listen: Option<String>,
    /// Use this policy directory as it is (overrides `policies`).
    pub policies_dir: Option<PathBuf>,
    /// Extra entries of the `secrets.bootstrap` flow map (e.g. `, drain: { file: "x" }`).
    pub bootstrap_extra: String,
    /// Extra top-level YAML (e.g. `drains:`), appended at the end.
    pub top_extra: String,
    /// The dev IdP's signing algorithm (Vercel-shaped tokens are RS256).
    pub idp_alg: spangate::dev::idp::DevKeyAlg,
    /// The upstream speaks OTLP/gRPC (`protocol: grpc` to the recorder, h2c).
    pub upstream_grpc: bool,
    /// `server.max_body`.
    pub max_body: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            policies: None,
            server_extra: String::new(),
            upstream_timeout: "2s",
            upstream_down: false,
            admin_extra: String::new(),
            secrets_extra: String::new(),
            provider_extra: String::new(),
            idp_down: false,
            reuse_dir: None,
            upstream_url: None,
            upstream_extra: String::new(),
            policies_dir: None,
            admin_listen: None,
            bootstrap_extra: String::new(),
            top_extra: String::new(),
            idp_alg: spangate::dev::idp::DevKeyAlg::Es256,
            upstream_grpc: false,
            max_body: "64KiB",
        }
    }
}

pub struct Harness {
    pub idp: DevIdp,
    pub upstream: RecordingUpstream,
    pub app: spangate::app::App,
    pub audit: MemorySink,
    pub client: HttpClient,
    pub dir: tempfile::TempDir,
}

pub fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

pub fn demo_identities() -> std::collections::BTreeMap<String, Value> {
    spangate::dev::demo_identities()
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Harness {
        match Self::try_start(opts).await {
            Ok(h) => h,
            Err(e) => panic!("harness failed to start: {e}"),
        }
    }

    pub async fn try_start(opts: Options) -> Result<Harness, String> {
        let idp = DevIdp::start(DevIdpOptions {
            audience: AUDIENCE.to_string(),
            identities: demo_identities(),
            available: !opts.idp_down,
            alg: opts.idp_alg,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        let upstream = RecordingUpstream::start("127.0.0.1:0".parse().unwrap())
            .await
            .map_err(|e| e.to_string())?;
        Self::start_app(opts, idp, upstream).await
    }

    /// Start the app against an existing IdP and upstream (e.g. for a restart).
    pub async fn start_app(
        opts: Options,
        idp: DevIdp,
        upstream: RecordingUpstream,
    ) -> Result<Harness, String> {
        let dir = match &opts.reuse_dir {
            Some(d) => tempfile::Builder::new()
                .tempdir_in(d)
                .map_err(|e| e.to_string())?,
            None => tempfile::tempdir().map_err(|e| e.to_string())?,
        };
        let base = opts
            .reuse_dir
            .clone()
            .unwrap_or_else(|| dir.path().to_path_buf());
        let policies = match (&opts.policies_dir, &opts.policies) {
            (Some(d), _) => d.clone(),
            (None, None) => repo_policies(),
            (None, Some(files)) => {
                let p = dir.path().join("policies");
                std::fs::create_dir_all(&p).unwrap();
                for (name, text) in files {
                    std::fs::write(p.join(name), text).unwrap();
                }
                p
            }
        };
        let token_file = base.join("ls-token");
        std::fs::write(&token_file, format!("{LIGHTSTEP_TOKEN}\n")).unwrap();
        let up_url = if opts.upstream_down {
            // Bound but never listening: connects are refused and the port
            // stays reserved for this test process (a dropped listener's port
            // could be taken and answered by a parallel test).
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = s.local_addr().unwrap();
            std::mem::forget(s);
            format!("http://{addr}/traces/otlp/v0.9")
        } else if let Some(u) = &opts.upstream_url {
            u.clone()
        } else if opts.upstream_grpc {
            upstream.url("")
        } else {
            upstream.url("/traces/otlp/v0.9")
        };
        let text = format!(
            r#"
server:
  listen: 127.0.0.1:0
  max_body: {max_body}
{server_extra}
admin:
  listen: "{admin_listen}"
{admin_extra}
providers:
  dev:
    issuer: "{issuer}"
    audiences: [{AUDIENCE}]
{provider_extra}
upstreams:
  lightstep: {{ url: "{up_url}", timeout: {timeout}{upstream_extra} }}
secrets:
  bootstrap: {{ lightstep-prod: {{ file: "{token_file}" }}{bootstrap_extra} }}
{secrets_extra}
policies: "{policies}"
{top_extra}
"#,
            admin_listen = opts.admin_listen.as_deref().unwrap_or("127.0.0.1:0"),
            server_extra = opts.server_extra,
            max_body = opts.max_body,
            admin_extra = opts.admin_extra,
            provider_extra = opts.provider_extra,
            secrets_extra = opts.secrets_extra,
            upstream_extra = if opts.upstream_grpc {
                format!(", protocol: grpc{}", opts.upstream_extra)
            } else {
                opts.upstream_extra.clone()
            },
            bootstrap_extra = opts.bootstrap_extra,
            top_extra = opts.top_extra,
            issuer = idp.issuer(),
            timeout = opts.upstream_timeout,
            token_file = token_file.display(),
            policies = policies.display(),
        );
        let config = Config::parse(Path::new("test.yaml"), &text).map_err(|e| e.to_string())?;
        let audit = MemorySink::default();
        let app = spangate::app::build(config, Audit::to_writer(Box::new(audit.clone())))
            .await
            .map_err(|e| e.to_string())?;
        if !opts.idp_down {
            assert!(
                app.shared
                    .identity
                    .wait_ready(Duration::from_secs(10))
                    .await,
                "IdP not ready"
            );
        }
        let client = HttpClient::new(Default::default()).unwrap();
        Ok(Harness {
            idp,
            upstream,
            app,
            audit,
            client,
            dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.app.proxy_addr, path)
    }

    /// A token for one of the demo identities.
    pub fn token(&self, identity: &str) -> String {
        let claims = demo_identities().remove(identity).expect("demo identity");
        self.idp.mint(claims)
    }

    /// A token with these claims merged over the `edge-prod` identity.
    pub fn token_with(&self, extra: Value) -> String {
        let mut claims = demo_identities().remove("edge-prod").unwrap();
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        self.idp.mint(claims)
    }

    /// POST a body to the proxy.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> http::Response<Bytes> {
        let mut req =
            http::Request::post(self.url(path)).header(http::header::CONTENT_TYPE, content_type);
        if let Some(t) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(OutBody::new(body.into())).unwrap();
        self.client
            .send(req, Duration::from_secs(30), 4 << 20)
            .await
            .expect("proxy answered")
    }

    /// POST a small OTLP/JSON batch from `service` with `token`.
    pub async fn send_json(&self, token: Option<&str>, service: &str) -> http::Response<Bytes> {
        let body = spangate::dev::sample_batch_json(service, 2);
        self.post("/v1/traces", token, "application/json", body, &[])
            .await
    }

    /// The audit lines so far.
    pub fn audit_lines(&self) -> Vec<Value> {
        self.audit.lines()
    }

    /// The last audit line.
    pub fn last_audit(&self) -> Value {
        self.audit.lines().last().cloned().unwrap_or(json!({}))
    }

    pub async fn stop(self) {
        self.app.shutdown().await;
    }
}

/// SHA-256 hex of a string (for `admin.bootstrap_token_sha256`).
pub fn sha256_hex(s: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Harness {
    /// Call the admin API with a bearer token.
    pub async fn admin(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.app.admin_addr, path));
        if let Some(t) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let resp = self
            .client
            .send(
                req.body(OutBody::new(body)).unwrap(),
                Duration::from_secs(30),
                1 << 20,
            )
            .await
            .expect("admin answered");
        let status = resp.status().as_u16();
        let v = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
        (status, v)
    }
}

/// The shipped policies with the demo rate limit raised out of the way, for
/// tests that send load (the limiter stays in the path).
pub fn shipped_policies_unthrottled() -> Vec<(&'static str, String)> {
    shipped_policies_with_rate(
        "rate: { requests_per_second: 1000000, spans_per_second: 1000000000, burst: 2 }",
    )
}

/// The shipped policies with every `rate:` line replaced by `rate`.
pub fn shipped_policies_with_rate(rate: &str) -> Vec<(&'static str, String)> {
    ["endpoints.yaml", "edge.yaml"]
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(repo_policies().join(name)).unwrap();
            let text = text
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("rate:") {
                        format!("      {rate}")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            (name, text)
        })
        .collect()
}

impl Harness {
    /// GET or otherwise call `url` with no body: status, content type, body text.
    pub async fn fetch(&self, url: &str, method: http::Method) -> (u16, String, String) {
        let req = http::Request::builder()
            .method(method)
            .uri(url)
            .body(OutBody::new(Bytes::new()))
            .unwrap();
        let resp = self
            .client
            .send(req, Duration::from_secs(10), 4 << 20)
            .await
            .expect("listener answered");
        let ct = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (
            resp.status().as_u16(),
            ct,
            String::from_utf8_lossy(resp.body()).into_owned(),
        )
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.app.admin_addr);
        let (status, _, text) = self.fetch(&url, http::Method::GET).await;
        assert_eq!(status, 200, "{text}");
        text
    }

    /// The credential header (`lightstep-access-token`) of the last request
    /// the upstream received.
    pub fn last_injected(&self) -> Option<String> {
        self.upstream
            .received()
            .last()
            .and_then(|r| r.header("lightstep-access-token").map(str::to_string))
    }

    /// Ask the admin API to reload the policy directory.
    pub async fn reload_policies(&self, admin_token: &str) -> (u16, Value) {
        self.admin(
            http::Method::POST,
            "/admin/v1/policies/reload",
            Some(admin_token),
            None,
        )
        .await
    }

    /// Rotate the credential `name` through the admin API with `body`.
    pub async fn rotate(&self, name: &str, admin_token: &str, body: Value) -> (u16, Value) {
        self.admin(
            http::Method::POST,
            &format!("/admin/v1/secrets/{name}/rotate"),
            Some(admin_token),
            Some(body),
        )
        .await
    }
}

/// A dev IdP on an ephemeral port that mints the demo identities for
/// [`AUDIENCE`].
pub async fn demo_idp() -> DevIdp {
    DevIdp::start(DevIdpOptions {
        audience: AUDIENCE.to_string(),
        identities: demo_identities(),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Files beside a config for the real binary in `dir`: the shipped policies
/// (unthrottled) under `policies/` and the Lightstep credential in
/// `ls-token`. Returns both paths, for the config to name.
pub fn binary_config_dir(dir: &Path) -> (PathBuf, PathBuf) {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for (name, text) in shipped_policies_unthrottled() {
        std::fs::write(policies.join(name), text).unwrap();
    }
    let token_file = dir.join("ls-token");
    std::fs::write(&token_file, LIGHTSTEP_TOKEN).unwrap();
    (policies, token_file)
}

/// Wait (bounded by `limit`) until `cond` holds; returns whether it did.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait (bounded: 30 s) until `pred` holds; panics naming `what` if it
/// never does.
pub async fn until(what: &str, pred: impl FnMut() -> bool) {
    if !wait_until(Duration::from_secs(30), pred).await {
        panic!("timed out waiting for {what}");
    }
}

/// Poll `probe` (an async check, e.g. an admin call) every 25 ms, bounded by
/// `limit`, until it yields a value.
pub async fn poll<T>(limit: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
