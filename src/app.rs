//! Wires the process: builds shared state, binds listeners, spawns tasks, and
//! returns the bound addresses plus a shutdown handle (so tests run the whole
//! app on port 0).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::Audit;
use crate::client::{ClientOptions, HttpClient};
use crate::config::Config;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::policy::PolicyHolder;
use crate::proxy::listener::{self, ListenerOptions};
use crate::secrets::SecretStore;
use crate::shared::Shared;

/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the app could not start. Every message names the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("identity providers: {}", .0.join("; "))]
    Identity(Vec<String>),
    #[error("policy {0} is invalid:\n{1}")]
    Policy(String, crate::policy::PolicyErrors),
    #[error("secrets: {0}")]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error("TLS: {0}")]
    Tls(#[from] listener::TlsError),
    #[error("HTTP client: {0}")]
    Client(#[from] crate::client::ClientError),
    #[error("audit file: {0}")]
    Audit(std::io::Error),
    #[error("admin listener: {0}")]
    AdminBind(#[from] crate::admin::AdminBindError),
    #[error("cannot bind {what} on {addr}: {err}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        err: std::io::Error,
    },
}

/// A running app.
pub struct App {
    pub proxy_addr: SocketAddr,
    /// The OTLP/gRPC listener's address, when `server.grpc_listen` is set.
    pub grpc_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    reloader: Option<crate::reload::ReloaderHandle>,
}

impl App {
    /// Stop accepting, drain in-flight requests, and wait for the listeners.
    pub async fn shutdown(mut self) {
        if let Some(r) = self.reloader.take() {
            r.stop();
        }
        self.shared.identity.shutdown();
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.shared.audit.flush();
    }

    /// Wait until the listeners exit (they exit only on shutdown).
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        self.shared.audit.flush();
    }

    /// A handle that triggers shutdown from elsewhere (signal handlers).
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Build everything from a validated config and start serving.
pub async fn build(config: Config, audit: Audit) -> Result<App, StartError> {
    crate::install_crypto_provider();
    let client = HttpClient::new(ClientOptions::default())?;
    let mut upstream_clients = std::collections::BTreeMap::new();
    for (name, up) in &config.upstreams {
        let c = match &up.ca_file {
            Some(ca) => HttpClient::new(ClientOptions {
                extra_ca_file: Some(ca),
                ..Default::default()
            })?,
            None => client.clone(),
        };
        upstream_clients.insert(name.clone(), c);
    }
    // The policy comes first: an invalid policy refuses start-up with file:line.
    let policy = PolicyHolder::load(&config.policies)
        .map_err(|e| StartError::Policy(config.policies.display().to_string(), e))?;
    let secrets = SecretStore::open(&config.secrets)?;
    // Never waits on an IdP: discovery and JWKS run in the background.
    let identity =
        Identity::start(&config.providers, client.clone()).map_err(StartError::Identity)?;

    let tls = match &config.server.tls {
        Some(t) => Some(listener::tls_acceptor(t)?),
        None => None,
    };
    let proxy_listener = bind("OTLP listener", config.server.listen).await?;
    let admin_listener = crate::admin::bind(&config.admin).await?;
    let proxy_addr = local_addr(&proxy_listener, config.server.listen)?;
    let grpc_listener = match config.server.grpc_listen {
        Some(addr) => {
            let l = bind("OTLP/gRPC listener", addr).await?;
            let bound = local_addr(&l, addr)?;
            Some((l, bound))
        }
        None => None,
    };
    let grpc_addr = grpc_listener.as_ref().map(|(_, a)| *a);
    let admin_addr = local_addr(&admin_listener, config.admin.listen)?;

    let rate_limit_keys = config.server.rate_limit_keys;
    let opts = ListenerOptions {
        tls,
        header_timeout: config.server.header_timeout,
        max_connections: config.server.max_connections,
    };
    let mut metrics = Metrics::default();
    let spool_metrics = crate::spool::SpoolMetrics::default();
    spool_metrics.register(metrics.registry_mut());
    let metrics = Arc::new(metrics);
    let spools = config
        .upstreams
        .iter()
        .filter_map(|(name, up)| {
            let cfg = up.spool.clone()?;
            let spool = crate::spool::Spool::new(name, cfg, spool_metrics.clone());
            Some((name.clone(), Arc::new(spool)))
        })
        .collect();
    let budget = crate::budget::MemoryBudget::new(
        config.server.memory_budget.as_u64(),
        metrics.inflight_body_bytes.clone(),
    );
    let shared = Arc::new(Shared {
        config,
        identity,
        policy: Arc::new(policy),
        secrets,
        client,
        upstream_clients,
        audit,
        metrics,
        limiter: crate::ratelimit::RateLimiter::new(rate_limit_keys),
        budget,
        spools,
    });
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let s = shared.clone();
    let handler = move |req, remote| crate::proxy::handle(s.clone(), req, remote);
    if let Some((l, _)) = grpc_listener {
        let s = shared.clone();
        let grpc_handler = move |req, remote| crate::proxy::grpc::handle(s.clone(), req, remote);
        tasks.push(tokio::spawn(listener::serve(
            l,
            opts.clone(),
            grpc_handler,
            rx.clone(),
            DRAIN_TIMEOUT,
        )));
    }
    tasks.push(tokio::spawn(listener::serve(
        proxy_listener,
        opts,
        handler,
        rx.clone(),
        DRAIN_TIMEOUT,
    )));
    for spool in shared.spools.values() {
        tasks.push(tokio::spawn(spool.clone().run(shared.clone(), rx.clone())));
    }
    // Policy hot reload: file watcher and SIGHUP share one reloader with the admin API.
    let reloader = crate::reload::spawn_reloader(shared.policy.clone(), shared.audit.clone());
    let metrics = shared.metrics.clone();
    let extras = crate::admin::AdminExtras {
        reloader: Some(reloader.reloader()),
        metrics: Some(Arc::new(move || metrics.encode())),
        policy_version: Some(Arc::new(|set: &crate::policy::PolicySet| {
            set.version().to_string()
        })),
        ..Default::default()
    };
    tasks.push(tokio::spawn(crate::admin::serve_with(
        admin_listener,
        shared.clone(),
        rx,
        extras,
    )));

    tracing::info!(otlp = %proxy_addr, otlp_grpc = ?grpc_addr, admin = %admin_addr, policy_dir = %shared.policy.dir().display(), "spangate listening");
    Ok(App {
        proxy_addr,
        grpc_addr,
        admin_addr,
        shared,
        shutdown,
        tasks,
        reloader: Some(reloader),
    })
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| StartError::Bind { what, addr, err })
}

fn local_addr(l: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    l.local_addr().map_err(|err| StartError::Bind {
        what: "listener",
        addr,
        err,
    })
}
