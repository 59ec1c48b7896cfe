//! Admin API: a second listener (loopback by default) over the same secrets
//! store and policy set. JSON over HTTP/1.1, hand-routed on hyper 1.
//!
//! | method | path | permission |
//! |---|---|---|
//! | GET | `/healthz` | none |
//! | GET | `/readyz` | none |
//! | GET | `/metrics` | none (when a metrics encoder is wired) |
//! | GET | `/admin/v1/status` | `status:read` |
//! | GET | `/admin/v1/secrets` | `secrets:read` |
//! | GET | `/admin/v1/secrets/{name}` | `secrets:read` |
//! | POST | `/admin/v1/secrets/{name}/rotate` | `secrets:rotate` |
//! | POST | `/admin/v1/secrets/{name}/rollback` | `secrets:rotate` |
//! | DELETE | `/admin/v1/secrets/{name}/versions/{v}` | `secrets:rotate` |
//! | POST | `/admin/v1/policies/reload` | `policy:reload` |
//! | POST | `/admin/v1/policies/validate` | `policy:validate` |
//! | GET | `/admin/v1/spools` | `status:read` |
//! | GET | `/admin/v1/spools/{upstream}` | `status:read` |
//! | POST | `/admin/v1/spools/{upstream}/replay-dead` | `spool:manage` |
//! | POST | `/admin/v1/spools/{upstream}/purge` | `spool:manage` |
//!
//! Every authenticated endpoint writes one audit line per call, refused calls
//! included (see [`handlers`]), with the same `request_id` as the response's
//! `x-request-id`. Failed authentication is throttled per peer and globally
//! before any token is checked (see [`throttle`]). GET endpoints also answer
//! HEAD; other methods get 405 with `Allow`; non-empty bodies must be
//! `application/json` (415), at most [`MAX_BODY`] (413) and arrive within
//! `admin.body_timeout` (408). Every response is `Cache-Control: no-store`.

pub mod auth;
pub mod client;
pub mod handlers;
pub mod respond;
pub mod throttle;
pub mod verify;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use crate::config::admin::{
    AdminConfig, DEFAULT_ADMIN_LISTEN, DEFAULT_BODY_TIMEOUT, DEFAULT_GRACE,
};
use crate::policy::PolicySet;
use crate::reload::Reloader;
use crate::shared::Shared;
use auth::{AdminAuthenticator, PermissionsFn};

/// Largest admin request body.
pub const MAX_BODY: usize = 64 * 1024;
/// Concurrent admin connections; more wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 64;
/// Time allowed to read a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the admin listener cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum AdminBindError {
    /// A non-loopback address without `allow_non_loopback: true`.
    #[error(
        "admin listen address {0} is not loopback; set admin.allow_non_loopback: true to allow it"
    )]
    NonLoopback(SocketAddr),
    /// The OS refused the bind.
    #[error("cannot bind the admin listener on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        reason: String,
    },
}

/// Bind the admin listener, refusing a non-loopback address unless allowed.
pub async fn bind(cfg: &AdminConfig) -> Result<TcpListener, AdminBindError> {
    check_loopback(cfg.listen, cfg.allow_non_loopback)?;
    TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| AdminBindError::Bind {
            addr: cfg.listen,
            reason: e.to_string(),
        })
}

fn check_loopback(addr: SocketAddr, allowed: bool) -> Result<(), AdminBindError> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if allowed {
        tracing::warn!(listen = %addr, "admin API listens on a non-loopback address (allow_non_loopback: true)");
        return Ok(());
    }
    Err(AdminBindError::NonLoopback(addr))
}

/// Renders the Prometheus/OpenMetrics text for `GET /metrics`.
pub type MetricsEncoder = Arc<dyn Fn() -> String + Send + Sync>;
/// Renders the running policy set's version for status.
pub type PolicyVersionFn = Arc<dyn Fn(&PolicySet) -> String + Send + Sync>;

/// Optional wiring for [`serve_with`]; every field has a default.
#[derive(Default, Clone)]
pub struct AdminExtras {
    /// Authenticates callers. Default: [`auth::DefaultAuthenticator`]
    /// (bootstrap token, then OIDC via `shared.identity` + `permissions`).
    pub authenticator: Option<Arc<dyn AdminAuthenticator>>,
    /// Admin permissions of an OIDC principal. Default: [`auth::permissions_of`].
    pub permissions: Option<PermissionsFn>,
    /// The reloader shared with the file watcher and SIGHUP
    /// ([`crate::reload::ReloaderHandle::reloader`]). Default: a private one.
    pub reloader: Option<Arc<Reloader>>,
    /// `GET /metrics` body. Default: none (404 `metrics_unavailable`).
    pub metrics: Option<MetricsEncoder>,
    /// Policy version shown in status. Default: none.
    pub policy_version: Option<PolicyVersionFn>,
}

/// Serve the admin API on `listener` until `shutdown` turns true (or its
/// sender is dropped), then drain connections (at most 5 s). Also runs the
/// secrets maintenance task (grace expiry) for as long as it serves.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    serve_with(listener, shared, shutdown, AdminExtras::default()).await
}

/// [`serve`] with explicit wiring.
pub async fn serve_with(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    extras: AdminExtras,
) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "admin listener has no local address; admin API not started");
            return;
        }
    };
    if let Err(e) = check_loopback(local, shared.config.admin.allow_non_loopback) {
        tracing::error!(error = %e, "admin API not started");
        return;
    }
    let maintenance = shared.secrets.spawn_maintenance(shutdown.clone());
    let state = Arc::new(handlers::AdminState::new(shared, extras, shutdown.clone()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tracing::info!(listen = %local, "admin API listening");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            r = shutdown.changed() => { if r.is_err() { break } continue }
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            r = shutdown.changed() => { if r.is_err() { break } continue }
        };
        let st = Arc::clone(&state);
        let svc = service_fn(move |req| {
            let st = Arc::clone(&st);
            async move { Ok::<_, std::convert::Infallible>(st.handle(req, peer).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_BODY + 16 * 1024)
            .serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {
            tracing::warn!("admin connections still open after 5s; closing");
        }
    }
    maintenance.abort();
    tracing::info!("admin API stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_opt_in() {
        let mut cfg = AdminConfig {
            listen: "0.0.0.0:9901".parse().expect("addr"),
            ..Default::default()
        };
        assert_eq!(cfg.validate().len(), 1);
        cfg.allow_non_loopback = true;
        assert!(cfg.validate().is_empty());
        assert!(AdminConfig::default().validate().is_empty());
        assert_eq!(
            AdminConfig::default().listen.to_string(),
            DEFAULT_ADMIN_LISTEN
        );
    }

    #[test]
    fn bootstrap_hash_must_be_a_sha256() {
        let cfg = AdminConfig {
            bootstrap_token_sha256: Some("my-plain-token".into()),
            ..Default::default()
        };
        assert_eq!(cfg.validate().len(), 1);
        assert!(!cfg.validate()[0].contains("my-plain-token"));
        let cfg = AdminConfig {
            bootstrap_token_sha256: Some(auth::sha256_hex("t")),
            ..Default::default()
        };
        assert!(cfg.validate().is_empty());
        assert!(cfg.bootstrap_hash().is_some());
    }
}
