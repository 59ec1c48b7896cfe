//! `spangate dev`: the zero-setup default. An embedded OIDC issuer, a
//! recording upstream and the proxy, all on loopback, with the example
//! policies. Tests reuse the issuer and the upstream.

pub mod idp;
pub mod report;
pub mod upstream;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use serde_json::json;

use crate::audit::{Audit, MemorySink};
use crate::config::Config;
use crate::dev::idp::{DevIdp, DevIdpOptions};
use crate::dev::upstream::RecordingUpstream;

/// Audience the dev issuer puts in its tokens and the dev provider accepts.
pub const DEV_AUDIENCE: &str = "spangate";
/// Credential name the example policies inject.
pub const DEV_CREDENTIAL: &str = "lightstep-prod";
/// Client secret of every demo identity in the dev issuer's
/// `client_credentials` grant (the client id is the identity's name). Not a
/// secret: the dev issuer mints tokens for anyone anyway.
pub const DEV_CLIENT_SECRET: &str = "spangate-dev-secret";
/// Path of the recording upstream (Lightstep's OTLP/HTTP path).
pub const UPSTREAM_PATH: &str = "/traces/otlp/v0.9";

/// The example policies, embedded so `spangate dev` needs no files.
pub const EMBEDDED_POLICIES: &[(&str, &str)] = &[
    ("endpoints.yaml", include_str!("../policies/endpoints.yaml")),
    ("edge.yaml", include_str!("../policies/edge.yaml")),
];

/// Flags of `spangate dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Address the OTLP listener and the dev issuer bind (the two a client
    /// needs) unless their own flags say otherwise; the admin API and the
    /// recording upstream stay on loopback. `0.0.0.0` makes them reachable
    /// from outside (e.g. `docker run -p 4318:4318 -p 9400:9400`): for a
    /// first look only, since the dev issuer mints tokens for anyone who asks.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// OTLP/HTTP listener [default: HOST:4318].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// OTLP/gRPC listener [default: HOST:4317].
    #[arg(long)]
    pub grpc_listen: Option<SocketAddr>,
    /// Admin listener [default: 127.0.0.1:9901].
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Embedded OIDC issuer [default: HOST:9400].
    #[arg(long)]
    pub idp_listen: Option<SocketAddr>,
    /// Recording upstream [default: 127.0.0.1:9411].
    #[arg(long)]
    pub upstream_listen: Option<SocketAddr>,
    /// Prometheus metrics listener (`GET /metrics`, no token) [default: 127.0.0.1:9464].
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Policy directory (default: the embedded example policies).
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// Deliver to the recording upstream over OTLP/gRPC (h2c) instead of
    /// OTLP/HTTP: the same recorder takes both.
    #[arg(long)]
    pub upstream_grpc: bool,
    /// Send an allowed and two denied batches through, print each decision,
    /// and exit 0 only if all behaved as the policy says. Uses ephemeral
    /// loopback ports (the address flags are ignored).
    #[arg(long)]
    pub demo: bool,
}

/// Default ports of the dev listeners.
pub const DEV_PORTS: DevPorts = DevPorts {
    otlp: 4318,
    grpc: 4317,
    admin: 9901,
    idp: 9400,
    upstream: 9411,
    metrics: 9464,
};

/// Ports of the four dev listeners.
#[derive(Debug, Clone, Copy)]
pub struct DevPorts {
    /// OTLP/HTTP.
    pub otlp: u16,
    /// OTLP/gRPC.
    pub grpc: u16,
    /// Admin API.
    pub admin: u16,
    /// Dev OIDC issuer.
    pub idp: u16,
    /// Recording upstream.
    pub upstream: u16,
    /// Prometheus metrics.
    pub metrics: u16,
}

impl Default for DevArgs {
    fn default() -> Self {
        DevArgs {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            listen: None,
            grpc_listen: None,
            admin_listen: None,
            idp_listen: None,
            upstream_listen: None,
            metrics_listen: None,
            policies: None,
            upstream_grpc: false,
            demo: false,
        }
    }
}

impl DevArgs {
    /// Ephemeral loopback ports for every listener (tests, `--demo`).
    pub fn ephemeral() -> Self {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        DevArgs {
            listen: Some(any),
            grpc_listen: Some(any),
            admin_listen: Some(any),
            idp_listen: Some(any),
            upstream_listen: Some(any),
            metrics_listen: Some(any),
            ..DevArgs::default()
        }
    }

    fn or_host(&self, addr: Option<SocketAddr>, port: u16) -> SocketAddr {
        addr.unwrap_or(SocketAddr::new(self.host, port))
    }

    /// OTLP/HTTP listener address.
    pub fn otlp_addr(&self) -> SocketAddr {
        self.or_host(self.listen, DEV_PORTS.otlp)
    }

    /// OTLP/gRPC listener address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.or_host(self.grpc_listen, DEV_PORTS.grpc)
    }

    /// Admin listener address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listen
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, DEV_PORTS.admin)))
    }

    /// Dev issuer address.
    pub fn idp_addr(&self) -> SocketAddr {
        self.or_host(self.idp_listen, DEV_PORTS.idp)
    }

    /// Recording upstream address.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.upstream_listen
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, DEV_PORTS.upstream)))
    }

    /// Metrics listener address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listen
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, DEV_PORTS.metrics)))
    }

    /// Whether any listener binds beyond loopback.
    pub fn exposed(&self) -> bool {
        [
            self.otlp_addr(),
            self.grpc_addr(),
            self.admin_addr(),
            self.idp_addr(),
            self.upstream_addr(),
            self.metrics_addr(),
        ]
        .iter()
        .any(|a| !a.ip().is_loopback())
    }
}

/// How a local client reaches `addr`: an unspecified bind address
/// (`0.0.0.0`, `::`) is reached through `localhost` (the published port of
/// a container, or this machine).
pub fn reachable(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// The demo identities the dev issuer mints tokens for.
pub fn demo_identities() -> BTreeMap<String, serde_json::Value> {
    let edge = |env: &str| {
        json!({
            "sub": format!("owner:team_demo:project:checkout:environment:{env}"),
            "owner_id": "team_demo",
            "project": "checkout",
            "project_id": "prj_checkout",
            "environment": env,
        })
    };
    BTreeMap::from([
        ("edge-prod".to_string(), edge("production")),
        ("edge-dev".to_string(), edge("development")),
        (
            "contractor".to_string(),
            json!({"sub": "contractor-42", "owner_id": "team_demo", "project": "checkout",
                   "project_id": "prj_checkout", "environment": "production"}),
        ),
        (
            "admin".to_string(),
            json!({"sub": "alice", "groups": ["platform-admins"], "email": "alice@example.com"}),
        ),
    ])
}

/// Everything `spangate dev` runs, started and wired.
pub struct DevStack {
    pub idp: DevIdp,
    pub upstream: RecordingUpstream,
    pub app: crate::app::App,
    /// Dev-only Lightstep token the proxy injects (a throwaway value).
    pub lightstep_token_fp: String,
    _scratch: Scratch,
}

/// A private scratch directory removed on drop.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch_dir() -> anyhow::Result<Scratch> {
    let dir = std::env::temp_dir().join(format!("spangate-dev-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(Scratch(dir))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .with_context(|| format!("write {}", path.display()))
}

/// Start the issuer, the upstream and the proxy on the given addresses.
pub async fn start(args: &DevArgs, audit: Audit) -> anyhow::Result<DevStack> {
    let scratch = scratch_dir()?;
    let idp = DevIdp::start(DevIdpOptions {
        addr: args.idp_addr(),
        audience: DEV_AUDIENCE.to_string(),
        identities: demo_identities(),
        // Vercel-shaped: RS256 tokens with owner/project/environment claims.
        alg: crate::dev::idp::DevKeyAlg::Rs256,
        client_secret: Some(DEV_CLIENT_SECRET.to_string()),
        ..Default::default()
    })
    .await
    .with_context(|| format!("dev issuer on {}", args.idp_addr()))?;
    let upstream = RecordingUpstream::start(args.upstream_addr())
        .await
        .with_context(|| format!("recording upstream on {}", args.upstream_addr()))?;

    let policies = match &args.policies {
        Some(p) => p.clone(),
        None => {
            let dir = scratch.0.join("policies");
            std::fs::create_dir_all(&dir)?;
            for (name, text) in EMBEDDED_POLICIES {
                write_private(&dir.join(name), text)?;
            }
            dir
        }
    };
    // A throwaway upstream token, so the injection is visible end to end.
    let token = format!("dev-lightstep-{}", uuid::Uuid::new_v4().simple());
    let token_file = scratch.0.join("lightstep-token");
    write_private(&token_file, &token)?;
    let config_text = format!(
        r#"
server: {{ listen: "{listen}", grpc_listen: "{grpc}" }}
admin: {{ listen: "{admin}", allow_non_loopback: {admin_exposed} }}
metrics: {{ listen: "{metrics}" }}
providers:
  dev: {{ issuer: "{issuer}", audiences: [{aud}], preset: vercel }}
upstreams:
  lightstep: {{ url: "{up}", credential_header: lightstep-access-token{protocol} }}
secrets:
  bootstrap: {{ {cred}: {{ file: "{token_file}" }} }}
policies: "{policies}"
"#,
        listen = args.otlp_addr(),
        grpc = args.grpc_addr(),
        admin = args.admin_addr(),
        // Only when --admin-listen names a non-loopback address itself.
        admin_exposed = !args.admin_addr().ip().is_loopback(),
        metrics = args.metrics_addr(),
        issuer = idp.issuer(),
        aud = DEV_AUDIENCE,
        up = if args.upstream_grpc {
            upstream.url("")
        } else {
            upstream.url(UPSTREAM_PATH)
        },
        protocol = if args.upstream_grpc {
            ", protocol: grpc"
        } else {
            ""
        },
        cred = DEV_CREDENTIAL,
        token_file = token_file.display(),
        policies = policies.display(),
    );
    let config = Config::parse(Path::new("<spangate dev>"), &config_text)?;
    let app = crate::app::build(config, audit).await?;
    app.shared
        .identity
        .wait_ready(Duration::from_secs(10))
        .await;
    Ok(DevStack {
        idp,
        upstream,
        app,
        lightstep_token_fp: crate::fingerprint(token.as_bytes()),
        _scratch: scratch,
    })
}

/// A small OTLP/JSON batch from `service`.
pub fn sample_batch_json(service: &str, spans: usize) -> String {
    let spans: Vec<_> = (0..spans)
        .map(|i| {
            json!({
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": format!("{:016x}", 0xeee1_9b7e_c3c1_0000_u64 + i as u64),
                "name": format!("GET /checkout/{i}"),
                "kind": 2,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000100000000",
                "attributes": [{"key": "http.route", "value": {"stringValue": "/checkout"}}]
            })
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "scopeSpans": [{"scope": {"name": "spangate-dev"}, "spans": spans}]
        }]
    })
    .to_string()
}

/// Entry point of `spangate dev`.
pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    if args.demo {
        let args = DevArgs {
            policies: args.policies,
            upstream_grpc: args.upstream_grpc,
            ..DevArgs::ephemeral()
        };
        return demo(&args).await;
    }
    if args.exposed() {
        eprintln!("{EXPOSED_WARNING}");
    }
    let stack = start(&args, Audit::stdout()).await?;
    print_banner(&stack, args.exposed());
    // What arrives upstream, per batch: services, span names, stamped
    // identity and the injected credential version.
    let printer = tokio::spawn(report::print_feed(
        stack.upstream.subscribe(),
        stack.app.shared.clone(),
        Box::new(std::io::stderr()),
    ));
    wait_ctrl_c().await;
    printer.abort();
    stack.app.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Printed (stderr) when a dev listener binds beyond loopback.
pub const EXPOSED_WARNING: &str = "\
WARNING: spangate dev is listening beyond loopback. Its dev identity provider
WARNING: mints a valid token for any demo identity (including the admin one)
WARNING: to ANYONE who can reach it. This is for a first look (for example in a
WARNING: container on your laptop) only: never on a shared network, never in
WARNING: production. Production runs `spangate serve` with a real issuer.";

fn print_banner(s: &DevStack, exposed: bool) {
    let otlp = format!("http://{}/v1/traces", reachable(s.app.proxy_addr));
    let grpc = s
        .app
        .grpc_addr
        .map_or_else(|| "off".to_string(), |a| format!("http://{}", reachable(a)));
    let idp = format!("http://{}", reachable(s.idp.addr()));
    let admin = reachable(s.app.admin_addr);
    let up = format!("http://{}{UPSTREAM_PATH}", reachable(s.upstream.addr()));
    let body = sample_batch_json("checkout", 2);
    let where_ = if exposed {
        "listeners are exposed beyond loopback (see the warning above); the\n\
         addresses below are as seen from this machine or through published container ports."
    } else {
        "everything is on loopback and nothing leaves this machine."
    };
    eprintln!(
        r#"
spangate dev is running; {where_}
  OTLP/HTTP  {otlp}
  OTLP/gRPC  {grpc}   (OTEL_EXPORTER_OTLP_PROTOCOL=grpc)
  admin      http://{admin}   (/healthz, /admin/v1/...)
  metrics    {metrics}   (Prometheus text, no token)
  dev IdP    {idp}   identities: edge-prod, edge-dev, contractor, admin
  upstream   {up}   (records what it receives; the proxy injects a dev token sha256:{fp})

Get a token for a demo identity and send a batch:
  TOKEN=$(curl -s -d identity=edge-prod {idp}/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -i {otlp} -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{body}'
Try identity=edge-dev (no binding: 403) and identity=contractor (explicit deny: 403).

Any OpenTelemetry SDK or the Collector:
  export OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={otlp}
  export OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf
  export OTEL_EXPORTER_OTLP_TRACES_HEADERS="Authorization=Bearer $TOKEN"
  export OTEL_SERVICE_NAME=checkout
or over gRPC:
  export OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={grpc}
  export OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc

Rotate the upstream token through the admin API (the demo identity "admin" holds
secrets:rotate through the example policy; the proxy keeps serving throughout):
  export SPANGATE_ADMIN_TOKEN=$(curl -s -d identity=admin {idp}/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  spangate secrets list --admin http://{admin}
  echo "dev-lightstep-rotated" | spangate secrets rotate lightstep-prod --grace 5m --admin http://{admin}
{admin_note}
Audit lines (one per batch) follow on stdout. For each batch the upstream receives,
stderr shows its services, first span names, span count, the identity attributes
spangate stamped and the credential version it injected. Ctrl-C stops.
"#,
        metrics = s
            .app
            .metrics_addr
            .map(|a| format!("http://{}/metrics", reachable(a)))
            .unwrap_or_else(|| format!("http://{admin}/metrics")),
        fp = s.lightstep_token_fp,
        admin_note = if exposed {
            "(The admin API stays on loopback. In a container, run the spangate commands inside it:\n\
             docker exec -e SPANGATE_ADMIN_TOKEN <container> spangate secrets list --admin http://..., and\n\
             pipe the new value into docker exec -i.)\n"
        } else {
            ""
        },
    );
}

/// One scripted demo case.
struct Case {
    identity: &'static str,
    service: &'static str,
    want_status: u16,
    want_forwarded: bool,
}

async fn demo(args: &DevArgs) -> anyhow::Result<ExitCode> {
    let sink = MemorySink::default();
    let stack = start(args, Audit::to_writer(Box::new(sink.clone()))).await?;
    let client = crate::client::HttpClient::new(Default::default())?;
    let url = format!("http://{}/v1/traces", stack.app.proxy_addr);
    let cases = [
        Case {
            identity: "edge-prod",
            service: "checkout",
            want_status: 200,
            want_forwarded: true,
        },
        Case {
            identity: "edge-dev",
            service: "checkout",
            want_status: 403,
            want_forwarded: false,
        },
        Case {
            identity: "contractor",
            service: "checkout",
            want_status: 403,
            want_forwarded: false,
        },
    ];
    let mut ok = true;
    for case in &cases {
        let before = stack.upstream.received().len();
        let claims = demo_identities()
            .remove(case.identity)
            .with_context(|| format!("no demo identity {}", case.identity))?;
        let token = stack.idp.mint(claims);
        let req = http::Request::post(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(crate::client::OutBody::new(Bytes::from(sample_batch_json(
                case.service,
                3,
            ))))?;
        let resp = client.send(req, Duration::from_secs(10), 1 << 20).await?;
        let forwarded = stack.upstream.received().len() > before;
        let line = sink.lines().last().cloned().unwrap_or_default();
        let injected = stack.upstream.received().last().and_then(|r| {
            r.header("lightstep-access-token")
                .map(|v| crate::fingerprint(v.as_bytes()))
        });
        let good = resp.status().as_u16() == case.want_status
            && forwarded == case.want_forwarded
            && (!forwarded || injected.as_deref() == Some(stack.lightstep_token_fp.as_str()));
        ok &= good;
        crate::cli::out(format_args!(
            "{} {:<11} service={:<9} -> {} decision={} rule={} reason={}{}",
            if good { "ok  " } else { "FAIL" },
            case.identity,
            case.service,
            resp.status().as_u16(),
            line["decision"].as_str().unwrap_or("?"),
            line["rule"].as_str().unwrap_or("-"),
            line["reason"].as_str().unwrap_or("?"),
            if forwarded {
                format!(
                    ", forwarded with lightstep-access-token sha256:{}",
                    injected.unwrap_or_default()
                )
            } else {
                ", nothing forwarded".to_string()
            },
        ))?;
    }
    stack.app.shutdown().await;
    crate::cli::out(if ok { "demo passed" } else { "demo FAILED" })?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
