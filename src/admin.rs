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
    AdminConfig, AdminListen, DEFAULT_ADMIN_LISTEN, DEFAULT_BODY_TIMEOUT, DEFAULT_GRACE,
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
        /// The address (`host:port` or `unix:/path`).
        addr: String,
        /// The OS error.
        reason: String,
    },
}

/// A bound admin listener: TCP, or a Unix domain socket (removed again when
/// the admin API stops).
#[derive(Debug)]
pub enum AdminListener {
    /// TCP (loopback unless allowed otherwise).
    Tcp(TcpListener),
    /// A Unix domain socket at `path`.
    #[cfg(unix)]
    Unix {
        /// The listener.
        listener: tokio::net::UnixListener,
        /// Its path.
        path: std::path::PathBuf,
    },
}

impl From<TcpListener> for AdminListener {
    fn from(l: TcpListener) -> Self {
        AdminListener::Tcp(l)
    }
}

impl AdminListener {
    /// The TCP address, if this is a TCP listener.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            AdminListener::Tcp(l) => l.local_addr().ok(),
            #[cfg(unix)]
            AdminListener::Unix { .. } => None,
        }
    }

    /// `host:port` or `unix:/path`.
    pub fn describe(&self) -> String {
        match self {
            AdminListener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp".into()),
            #[cfg(unix)]
            AdminListener::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }
}

/// Who is calling the admin API, as the kernel tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminPeer {
    /// A TCP peer address.
    Tcp(SocketAddr),
    /// A Unix-socket peer's credentials (`SO_PEERCRED`).
    Unix {
        /// User id.
        uid: u32,
        /// Group id.
        gid: u32,
        /// Process id, when the OS reports one.
        pid: Option<i32>,
    },
}

impl From<SocketAddr> for AdminPeer {
    fn from(a: SocketAddr) -> Self {
        AdminPeer::Tcp(a)
    }
}

impl AdminPeer {
    /// The key failed authentications are counted under.
    pub fn throttle_key(&self) -> throttle::PeerKey {
        match self {
            AdminPeer::Tcp(a) => throttle::PeerKey::of(a.ip()),
            AdminPeer::Unix { uid, .. } => throttle::PeerKey::Uid(*uid),
        }
    }

    /// `ip:port`, or `unix:uid=U,gid=G,pid=P` (audit `remote`).
    pub fn describe(&self) -> String {
        match self {
            AdminPeer::Tcp(a) => a.to_string(),
            AdminPeer::Unix { uid, gid, pid } => match pid {
                Some(p) => format!("unix:uid={uid},gid={gid},pid={p}"),
                None => format!("unix:uid={uid},gid={gid}"),
            },
        }
    }
}

/// Bind the admin listener: a TCP address (refusing a non-loopback one
/// unless allowed) or a Unix socket created with `admin.socket_mode`.
pub async fn bind(cfg: &AdminConfig) -> Result<AdminListener, AdminBindError> {
    match &cfg.listen {
        AdminListen::Tcp(addr) => {
            check_loopback(*addr, cfg.allow_non_loopback)?;
            TcpListener::bind(addr)
                .await
                .map(AdminListener::Tcp)
                .map_err(|e| AdminBindError::Bind {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })
        }
        #[cfg(unix)]
        AdminListen::Unix(path) => bind_unix(path, cfg.socket_mode().unwrap_or(0o600)),
        #[cfg(not(unix))]
        AdminListen::Unix(path) => Err(AdminBindError::Bind {
            addr: format!("unix:{}", path.display()),
            reason: "Unix sockets are not supported on this platform".into(),
        }),
    }
}

/// Bind a Unix socket with `mode` without a window in which it is reachable
/// with looser permissions: bind under a temporary name, set the mode, then
/// rename it into place. A stale socket at `path` is replaced; any other
/// kind of file there is an error.
#[cfg(unix)]
fn bind_unix(path: &std::path::Path, mode: u32) -> Result<AdminListener, AdminBindError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let err = |reason: String| AdminBindError::Bind {
        addr: format!("unix:{}", path.display()),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .map_err(|e| err(format!("cannot replace stale socket: {e}")))?,
        Ok(_) => return Err(err("a file that is not a socket is in the way".into())),
        Err(_) => {}
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = tokio::net::UnixListener::bind(&tmp).map_err(|e| err(e.to_string()))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e.to_string()));
    }
    Ok(AdminListener::Unix {
        listener,
        path: path.to_path_buf(),
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
pub async fn serve(
    listener: impl Into<AdminListener>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    serve_with(listener, shared, shutdown, AdminExtras::default()).await
}

/// [`serve`] with explicit wiring.
pub async fn serve_with(
    listener: impl Into<AdminListener>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    extras: AdminExtras,
) {
    let listener = listener.into();
    if let AdminListener::Tcp(l) = &listener {
        let local = match l.local_addr() {
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
    }
    let maintenance = shared.secrets.spawn_maintenance(shutdown.clone());
    let state = Arc::new(handlers::AdminState::new(shared, extras, shutdown.clone()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tracing::info!(listen = %listener.describe(), "admin API listening");
    let mut accept_pause = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            r = shutdown.changed() => { if r.is_err() { break } continue }
        };
        let accepted = tokio::select! {
            r = accept(&listener) => r,
            r = shutdown.changed() => { if r.is_err() { break } continue }
        };
        let (io, peer) = match accepted {
            Ok(x) => {
                accept_pause = Duration::from_millis(100);
                x
            }
            Err(e) => {
                // EMFILE and friends: back off (100 ms doubling to 1 s).
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(accept_pause).await;
                accept_pause = (accept_pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        match io {
            AdminIo::Tcp(s) => spawn_conn(s, peer, &state, &graceful, permit),
            #[cfg(unix)]
            AdminIo::Unix(s) => spawn_conn(s, peer, &state, &graceful, permit),
        }
    }
    #[cfg(unix)]
    if let AdminListener::Unix { path, .. } = &listener {
        let _ = std::fs::remove_file(path);
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

/// An accepted admin connection.
enum AdminIo {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &AdminListener) -> std::io::Result<(AdminIo, AdminPeer)> {
    match listener {
        AdminListener::Tcp(l) => {
            let (s, a) = l.accept().await?;
            Ok((AdminIo::Tcp(s), AdminPeer::Tcp(a)))
        }
        #[cfg(unix)]
        AdminListener::Unix { listener, .. } => {
            let (s, _) = listener.accept().await?;
            // The kernel's word on who connected (SO_PEERCRED); a peer we
            // cannot identify is not served.
            let cred = s.peer_cred()?;
            let peer = AdminPeer::Unix {
                uid: cred.uid(),
                gid: cred.gid(),
                pid: cred.pid(),
            };
            Ok((AdminIo::Unix(s), peer))
        }
    }
}

fn spawn_conn<I>(
    io: I,
    peer: AdminPeer,
    state: &Arc<handlers::AdminState>,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let st = Arc::clone(state);
    let svc = service_fn(move |req| {
        let st = Arc::clone(&st);
        async move { Ok::<_, std::convert::Infallible>(st.handle(req, peer).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BODY + 16 * 1024)
        .serve_connection(TokioIo::new(io), svc);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        let _ = conn.await;
        drop(permit);
    });
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
