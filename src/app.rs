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
    #[error("policy directory {0} is invalid:\n{1}")]
    Policy(String, crate::policy::PolicyErrors),
    // The wrapped errors are printed in the message and are not `source()`s:
    // `{:#}` at the binary edge would print them a second time.
    #[error("secrets: {0}")]
    Secrets(crate::secrets::SecretsError),
    #[error("TLS: {0}")]
    Tls(listener::TlsError),
    #[error("HTTP client: {0}")]
    Client(crate::client::ClientError),
    #[error("audit file: {0}")]
    Audit(std::io::Error),
    #[error("{0}")]
    State(#[from] crate::state::redis::FleetError),
    #[error("admin listener: {0}")]
    AdminBind(crate::admin::AdminBindError),
    #[error("{0}")]
    Nofile(#[from] crate::proxy::nofile::NofileError),
    #[error("{0}")]
    Spool(crate::spool::SpoolOpenError),
    #[error("cannot bind {what} on {addr}: {err}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        err: std::io::Error,
    },
}

impl From<crate::secrets::SecretsError> for StartError {
    fn from(e: crate::secrets::SecretsError) -> Self {
        StartError::Secrets(e)
    }
}
impl From<listener::TlsError> for StartError {
    fn from(e: listener::TlsError) -> Self {
        StartError::Tls(e)
    }
}
impl From<crate::client::ClientError> for StartError {
    fn from(e: crate::client::ClientError) -> Self {
        StartError::Client(e)
    }
}
impl From<crate::admin::AdminBindError> for StartError {
    fn from(e: crate::admin::AdminBindError) -> Self {
        StartError::AdminBind(e)
    }
}

/// A running app.
pub struct App {
    pub proxy_addr: SocketAddr,
    /// The OTLP/gRPC listener's address, when `server.grpc_listen` is set.
    pub grpc_addr: Option<SocketAddr>,
    /// The admin listener's TCP address (0.0.0.0:0 when it is a Unix socket).
    pub admin_addr: SocketAddr,
    /// The admin listener's Unix socket, when `admin.listen` is `unix:/path`.
    pub admin_socket: Option<std::path::PathBuf>,
    /// The metrics listener, when `metrics.listen` is set.
    pub metrics_addr: Option<SocketAddr>,
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
        // gRPC upstreams get an HTTP/2-only client of their own (one
        // multiplexed connection); the others share one unless they trust
        // an extra CA.
        let grpc = up.protocol == crate::config::upstream::Protocol::Grpc;
        let c = match (&up.ca_file, grpc) {
            (None, false) => client.clone(),
            (ca, _) => HttpClient::new(ClientOptions {
                extra_ca_file: ca.as_deref(),
                http2_only: grpc,
                ..Default::default()
            })?,
        };
        upstream_clients.insert(name.clone(), c);
    }
    // The policy comes first: an invalid policy refuses start-up with file:line.
    let policy = PolicyHolder::load_in(
        &config.policies,
        Some(crate::policy::LintContext::upstream_targets(&config)),
    )
    .map_err(|e| StartError::Policy(config.policies.display().to_string(), e))?;
    let secrets = SecretStore::open(&config.secrets)?;
    // Never waits on an IdP: discovery and JWKS run in the background.
    let identity =
        Identity::start(&config.providers, client.clone()).map_err(StartError::Identity)?;

    // Every connection is a file: the configured connections must fit the
    // open-file limit with room for upstreams, the IdP and the admin API.
    let scrape = if config.metrics.listen.is_some() {
        crate::scrape::MAX_CONNECTIONS
    } else {
        0
    };
    crate::proxy::nofile::ensure(
        config.server.max_connections,
        crate::admin::MAX_CONNECTIONS + scrape,
        config.server.reserved_fds,
    )?;
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
    // A Unix-socket admin listener has no TCP address: `admin_addr` is then
    // the unspecified 0.0.0.0:0 and `admin_socket` names the path.
    let admin_socket = match &config.admin.listen {
        crate::config::admin::AdminListen::Unix(p) => Some(p.clone()),
        crate::config::admin::AdminListen::Tcp(_) => None,
    };
    let admin_addr = admin_listener
        .local_addr()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));

    let rate_limit_keys = config.server.rate_limit_keys;
    let opts = ListenerOptions::from_config(&config.server, tls);
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(bind("metrics listener", addr).await?),
        None => None,
    };
    let metrics_addr = match (&metrics_listener, config.metrics.listen) {
        (Some(l), Some(addr)) => Some(local_addr(l, addr)?),
        _ => None,
    };
    let policy = Arc::new(policy);
    let fleet = match &config.state.redis {
        Some(r) => Some(crate::state::Fleet::new(
            r,
            Arc::clone(&secrets),
            Arc::clone(&policy),
            config.server.rate_limit_keys,
        )?),
        None => None,
    };
    let mut metrics = Metrics::default();
    if let Some(f) = &fleet {
        f.metrics().register(metrics.registry_mut());
    }
    let spool_metrics = crate::spool::SpoolMetrics::default();
    spool_metrics.register(metrics.registry_mut());
    let deployments = Arc::new(crate::deployments::DeploymentTracker::new(
        &config.deployments,
    ));
    metrics
        .registry_mut()
        .register_collector(Box::new(crate::deployments::DeploymentCollector(
            deployments.clone(),
        )));
    // Open spools before serving: what a previous run left on disk is
    // recovered (torn tails cut and audited) and replayed first.
    let mut spools: std::collections::BTreeMap<String, Arc<crate::spool::Spool>> =
        std::collections::BTreeMap::new();
    for (name, up) in &config.upstreams {
        if let Some(cfg) = up.spool.clone() {
            spool_metrics.precreate(name);
            let spool =
                crate::spool::Spool::open(name, cfg, up.ack, spool_metrics.clone(), audit.clone())
                    .map_err(StartError::Spool)?;
            spools.insert(name.clone(), Arc::new(spool));
        }
    }
    // Every family with its known label values at zero, before the first event.
    let current = policy.current();
    metrics.precreate(
        current
            .endpoints()
            .iter()
            .map(|e| (e.name.as_str(), e.signal.as_str())),
        config.upstreams.keys().map(String::as_str),
    );
    metrics
        .memory_budget_bytes
        .set(i64::try_from(config.server.memory_budget.as_u64()).unwrap_or(i64::MAX));
    metrics
        .registry_mut()
        .register_collector(Box::new(crate::scrape::StateCollector {
            identity: identity.clone(),
            secrets: secrets.clone(),
            spools: spools.values().cloned().collect(),
        }));
    let metrics = Arc::new(metrics);
    let budget = crate::budget::MemoryBudget::new(
        config.server.memory_budget.as_u64(),
        metrics.inflight_body_bytes.clone(),
    );
    let shared = Arc::new(Shared {
        config,
        identity,
        policy,
        secrets,
        client,
        upstream_clients,
        audit,
        metrics,
        limiter: crate::ratelimit::RateLimiter::new(rate_limit_keys),
        budget,
        deployments,
        spools,
        fleet,
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
    if let Some(f) = &shared.fleet {
        tasks.extend(f.spawn(rx.clone()));
    }
    for (name, spool) in &shared.spools {
        let Some(up) = shared.config.upstreams.get(name) else {
            continue;
        };
        let deps = crate::spool::SpoolDeps {
            name: name.clone(),
            client: shared.upstream_client(name).clone(),
            secrets: shared.secrets.clone(),
            metrics: shared.metrics.clone(),
            audit: shared.audit.clone(),
            upstream: up.clone(),
            policy: shared.policy.clone(),
        };
        tasks.push(tokio::spawn(spool.clone().run(deps, rx.clone())));
    }
    // Policy hot reload: file watcher and SIGHUP share one reloader with the admin API.
    let reloader = crate::reload::spawn_reloader(
        shared.policy.clone(),
        shared.audit.clone(),
        shared.config.policies_quiet_period,
    );
    reloader
        .reloader()
        .count_into(shared.metrics.policy_reloads.clone());
    // Endpoints a reload adds get their zero series too.
    let s = Arc::downgrade(&shared);
    reloader.reloader().after_reload(Box::new(move || {
        if let Some(s) = s.upgrade() {
            let set = s.policy.current();
            s.metrics.precreate(
                set.endpoints()
                    .iter()
                    .map(|e| (e.name.as_str(), e.signal.as_str())),
                s.config.upstreams.keys().map(String::as_str),
            );
        }
    }));
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
        rx.clone(),
        extras,
    )));
    if let Some(l) = metrics_listener {
        tasks.push(tokio::spawn(crate::scrape::serve(
            l,
            shared.metrics.clone(),
            rx.clone(),
        )));
    }

    let metrics_at = metrics_addr.map(|a| format!("http://{a}/metrics"));
    // The bound addresses (port 0 resolved), which scripts read off this line.
    let admin_at = match &admin_socket {
        Some(p) => format!("unix:{}", p.display()),
        None => admin_addr.to_string(),
    };
    let grpc_at = grpc_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
    tracing::info!(otlp = %proxy_addr, otlp_grpc = %grpc_at, admin = %admin_at,
        metrics = %metrics_at.as_deref().unwrap_or("admin listener only"),
        policy_dir = %shared.policy.dir().display(), "spangate listening");
    Ok(App {
        proxy_addr,
        grpc_addr,
        admin_addr,
        admin_socket,
        metrics_addr,
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
