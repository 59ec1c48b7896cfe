//! Listeners: HTTP/1.1 and HTTP/2 on one port (h2c by prior knowledge, h2 by
//! ALPN under TLS), with a header-read timeout, a connection cap and graceful
//! shutdown. Shared by the OTLP listener and the admin listener.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use super::RespBody;
use crate::config::TlsConfig;

/// Errors loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS config: {0}")]
    Config(String),
}

/// Build a rustls acceptor from PEM files, advertising h2 and http/1.1.
pub fn tls_acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    crate::install_crypto_provider();
    let file_err = |p: &Path, e: &dyn std::fmt::Display| TlsError::File {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert_file)
        .map_err(|e| file_err(&cfg.cert_file, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&cfg.cert_file, &e))?;
    if certs.is_empty() {
        return Err(file_err(&cfg.cert_file, &"no certificate found"));
    }
    let key =
        PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| file_err(&cfg.key_file, &e))?;
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// Connection-level settings (see `server:` in the config).
#[derive(Clone)]
pub struct ListenerOptions {
    pub tls: Option<TlsAcceptor>,
    /// From accept to the first complete request head (TLS, protocol
    /// detection, HTTP/2 preface and SETTINGS included); each later HTTP/1 head.
    pub header_timeout: Duration,
    /// No request in flight for this long: the connection is closed.
    pub idle_timeout: Duration,
    /// A connection this old is asked to close.
    pub max_connection_age: Duration,
    /// How long requests in flight may take once a connection is asked to close.
    pub close_grace: Duration,
    pub max_connections: usize,
    pub h2_keepalive_interval: Duration,
    pub h2_keepalive_timeout: Duration,
    pub h2_max_concurrent_streams: u32,
}

impl ListenerOptions {
    /// The OTLP listener's options from `server:`.
    pub fn from_config(server: &crate::config::ServerConfig, tls: Option<TlsAcceptor>) -> Self {
        Self {
            tls,
            header_timeout: server.header_timeout,
            idle_timeout: server.idle_timeout,
            max_connection_age: server.max_connection_age,
            close_grace: server.request_timeout,
            max_connections: server.max_connections,
            h2_keepalive_interval: server.h2_keepalive_interval,
            h2_keepalive_timeout: server.h2_keepalive_timeout,
            h2_max_concurrent_streams: server.h2_max_concurrent_streams,
        }
    }
}

/// How long an evicted idle connection may take to say goodbye (GOAWAY).
const EVICT_GRACE: Duration = Duration::from_secs(1);
/// Accept back-off on EMFILE/ENFILE and similar: doubles from the first
/// value up to the second.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));
/// Accept errors are logged at most once per this interval, with a count.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What one connection is doing, shared between its task, its requests and
/// the accept loop.
#[derive(Debug)]
struct Activity {
    /// Requests whose response is not produced yet.
    in_flight: usize,
    /// Requests started so far.
    started: u64,
    /// Since when nothing is in flight (accept time before the first request).
    idle_since: Instant,
    /// Chosen for eviction: no longer a candidate, no longer counted as a slot.
    evicting: bool,
}

#[derive(Debug)]
struct ConnShared {
    activity: Mutex<Activity>,
    /// Activity changed: the connection task recomputes its deadline.
    wake: Notify,
    /// The accept loop wants this connection's slot.
    evict: Notify,
    /// The accept loop's wake-up: this connection went idle (evictable).
    listener_wake: Arc<Notify>,
}

impl ConnShared {
    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every open connection of one listener, for the connection cap and for
/// evicting the one idle the longest when the listener is full.
#[derive(Debug, Default)]
struct Registry {
    conns: Mutex<(u64, HashMap<u64, Arc<ConnShared>>)>,
    /// A connection ended or went idle.
    changed: Arc<Notify>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, Arc<ConnShared>>)> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, now: Instant) -> (u64, Arc<ConnShared>) {
        let conn = Arc::new(ConnShared {
            activity: Mutex::new(Activity {
                in_flight: 0,
                started: 0,
                idle_since: now,
                evicting: false,
            }),
            wake: Notify::new(),
            evict: Notify::new(),
            listener_wake: Arc::clone(&self.changed),
        });
        let mut g = self.lock();
        g.0 += 1;
        let id = g.0;
        g.1.insert(id, Arc::clone(&conn));
        (id, conn)
    }

    fn remove(&self, id: u64) {
        self.lock().1.remove(&id);
        self.changed.notify_one();
    }

    fn len(&self) -> usize {
        self.lock().1.len()
    }

    /// Connections that hold a slot (those being evicted do not).
    fn slots_used(&self) -> usize {
        self.lock()
            .1
            .values()
            .filter(|c| !c.activity().evicting)
            .count()
    }

    /// True when a new connection can be admitted: a free slot, or an idle
    /// connection to evict.
    fn can_admit(&self, max: usize) -> bool {
        let g = self.lock();
        let mut used = 0;
        let mut idle = false;
        for c in g.1.values() {
            let a = c.activity();
            if a.evicting {
                continue;
            }
            used += 1;
            idle |= a.in_flight == 0;
        }
        used < max || idle
    }

    /// Ask the connection idle the longest to close; false when none is idle.
    fn evict_oldest_idle(&self) -> bool {
        let g = self.lock();
        let oldest =
            g.1.values()
                .filter_map(|c| {
                    let a = c.activity();
                    (!a.evicting && a.in_flight == 0).then_some((a.idle_since, c))
                })
                .min_by_key(|(since, _)| *since)
                .map(|(_, c)| Arc::clone(c));
        drop(g);
        match oldest {
            Some(c) => {
                c.activity().evicting = true;
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Marks a request in flight on its connection until dropped.
struct InFlight(Arc<ConnShared>);

impl InFlight {
    fn start(conn: &Arc<ConnShared>) -> InFlight {
        {
            let mut a = conn.activity();
            a.in_flight += 1;
            a.started += 1;
        }
        conn.wake.notify_one();
        InFlight(Arc::clone(conn))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut a = self.0.activity();
            a.in_flight = a.in_flight.saturating_sub(1);
            if a.in_flight == 0 {
                a.idle_since = Instant::now();
            }
        }
        self.0.wake.notify_one();
        // A full listener waiting for an evictable connection may go on.
        self.0.listener_wake.notify_one();
    }
}

/// Accept errors, counted and logged at most once per interval.
struct AcceptErrors {
    backoff: Duration,
    count: u64,
    last_log: Option<Instant>,
}

impl AcceptErrors {
    fn new() -> Self {
        Self {
            backoff: ACCEPT_BACKOFF.0,
            count: 0,
            last_log: None,
        }
    }

    /// Note one error; returns how long to pause before accepting again.
    fn failed(&mut self, e: &std::io::Error) -> Option<Duration> {
        use std::io::ErrorKind;
        // The peer gave up between SYN and accept: nothing is wrong here.
        if matches!(
            e.kind(),
            ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
        ) {
            tracing::debug!(error = %e, "accept: peer went away");
            return None;
        }
        self.count += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_INTERVAL)
        {
            tracing::warn!(error = %e, errors = self.count, backoff_ms = self.backoff.as_millis() as u64,
                "accept failing (open-file limit or kernel resources); backing off");
            self.last_log = Some(now);
            self.count = 0;
        }
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF.1);
        Some(pause)
    }

    fn succeeded(&mut self) {
        self.backoff = ACCEPT_BACKOFF.0;
    }
}

/// Accept connections until `shutdown` flips to true, then drain in-flight
/// requests (bounded by `drain`).
///
/// Every connection carries one deadline at a time, recomputed whenever its
/// activity changes:
/// * before its first request: accept + `header_timeout` (TLS handshake,
///   protocol detection and the first head all count); when it passes the
///   connection is dropped;
/// * with no request in flight: idle since + `idle_timeout`; when it passes
///   the connection is shut down gracefully (HTTP/2: GOAWAY);
/// * always: accept + `max_connection_age`, graceful as well.
///
/// A graceful close that does not finish within `close_grace` (or
/// [`EVICT_GRACE`] for an evicted idle connection) is dropped. When all
/// `max_connections` slots are taken, the connection idle the longest is
/// evicted to admit a new one; with none idle the accept waits.
pub async fn serve<S, F, B>(
    listener: TcpListener,
    opts: ListenerOptions,
    handler: S,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) where
    S: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let registry = Arc::new(Registry::default());
    let max = opts.max_connections.max(1);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(opts.h2_keepalive_interval))
        .keep_alive_timeout(opts.h2_keepalive_timeout)
        .max_concurrent_streams(opts.h2_max_concurrent_streams);
    let builder = Arc::new(builder);
    let mut errors = AcceptErrors::new();
    'accept: loop {
        // Room for one more: a free slot, or an idle connection to evict.
        while !registry.can_admit(max) {
            tokio::select! {
                _ = shutdown.changed() => break 'accept,
                _ = registry.changed.notified() => {}
            }
        }
        let (stream, remote) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if let Some(pause) = errors.failed(&e) {
                        // Out of files: an idle connection's file is better
                        // spent on a new one.
                        registry.evict_oldest_idle();
                        tokio::select! {
                            _ = shutdown.changed() => break,
                            _ = tokio::time::sleep(pause) => {}
                        }
                    }
                    continue;
                }
            },
        };
        errors.succeeded();
        if registry.slots_used() >= max && !registry.evict_oldest_idle() {
            // The idle connection we counted on got busy meanwhile.
            tracing::debug!(%remote, "listener full; closing the new connection");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (id, conn) = registry.add(Instant::now());
        let task = ConnTask {
            builder: builder.clone(),
            opts: opts.clone(),
            conn,
            shutdown: shutdown.clone(),
            drain,
        };
        let handler = handler.clone();
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            task.run(stream, remote, handler).await;
            registry.remove(id);
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(drain, async {
        while registry.len() > 0 {
            registry.changed.notified().await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}

/// One accepted connection and what it needs to run.
struct ConnTask {
    builder: Arc<auto::Builder<TokioExecutor>>,
    opts: ListenerOptions,
    conn: Arc<ConnShared>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
}

impl ConnTask {
    async fn run<S, F, B>(mut self, stream: TcpStream, remote: SocketAddr, handler: S)
    where
        S: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let accepted = Instant::now();
        let first_deadline = accepted + self.opts.header_timeout;
        // tower-http around the handler: credentials are marked sensitive
        // before anything could log a header, and a panic (always a bug)
        // becomes a 500 for that request instead of a dropped connection.
        let conn = Arc::clone(&self.conn);
        let svc = tower::ServiceBuilder::new()
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(SetSensitiveRequestHeadersLayer::new(
                sensitive_request_headers(),
            ))
            .service_fn(move |req| {
                let in_flight = InFlight::start(&conn);
                let fut = handler(req, remote);
                async move {
                    let resp = fut.await;
                    drop(in_flight);
                    resp
                }
            });
        let svc = TowerToHyperService::new(svc);
        match self.opts.tls.clone() {
            None => self.serve_io(TokioIo::new(stream), svc, accepted).await,
            Some(acceptor) => {
                let handshake = tokio::time::timeout_at(first_deadline, acceptor.accept(stream));
                let tls = tokio::select! {
                    r = handshake => r,
                    _ = self.conn.evict.notified() => return,
                    _ = self.shutdown.changed() => return,
                };
                match tls {
                    Ok(Ok(tls_stream)) => {
                        self.serve_io(TokioIo::new(tls_stream), svc, accepted).await
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            }
        }
    }

    /// Serve HTTP on `io` under the connection's deadlines (see [`serve`]).
    async fn serve_io<I, Svc, B>(&mut self, io: TokioIo<I>, svc: Svc, accepted: Instant)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        Svc: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Send
            + 'static,
        Svc::Future: Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let o = &self.opts;
        let age_deadline = accepted + o.max_connection_age;
        let conn = self.builder.serve_connection(io, svc);
        tokio::pin!(conn);
        // Set once a graceful close has begun: drop the connection then.
        let mut hard_deadline: Option<Instant> = None;
        if *self.shutdown.borrow() {
            conn.as_mut().graceful_shutdown();
            hard_deadline = Some(Instant::now() + self.drain);
        }
        loop {
            let (deadline, why) = match hard_deadline {
                Some(d) => (d, Expiry::Grace),
                None => {
                    let a = self.conn.activity();
                    if a.in_flight > 0 {
                        (age_deadline, Expiry::Age)
                    } else if a.started == 0 {
                        let d = accepted + o.header_timeout;
                        if d <= age_deadline {
                            (d, Expiry::FirstRequest)
                        } else {
                            (age_deadline, Expiry::Age)
                        }
                    } else {
                        let d = a.idle_since + o.idle_timeout;
                        if d <= age_deadline {
                            (d, Expiry::Idle)
                        } else {
                            (age_deadline, Expiry::Age)
                        }
                    }
                }
            };
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with error");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(deadline) => match why {
                    // Nothing useful ever arrived (silence, a partial
                    // preface or head): drop it.
                    Expiry::FirstRequest | Expiry::Grace => return,
                    Expiry::Idle | Expiry::Age => {
                        conn.as_mut().graceful_shutdown();
                        let grace = if why == Expiry::Idle { EVICT_GRACE } else { o.close_grace };
                        hard_deadline = Some(Instant::now() + grace);
                    }
                },
                _ = self.conn.wake.notified() => {}
                _ = self.conn.evict.notified() => {
                    if self.conn.activity().started == 0 {
                        return;
                    }
                    conn.as_mut().graceful_shutdown();
                    hard_deadline = Some(Instant::now() + EVICT_GRACE);
                }
                r = self.shutdown.changed(), if hard_deadline.is_none() => {
                    let _ = r;
                    conn.as_mut().graceful_shutdown();
                    hard_deadline = Some(Instant::now() + self.drain);
                }
            }
        }
    }
}

/// Which deadline a connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    FirstRequest,
    Idle,
    Age,
    Grace,
}

/// Request headers that carry credentials.
fn sensitive_request_headers() -> [http::HeaderName; 4] {
    [
        http::header::AUTHORIZATION,
        http::header::PROXY_AUTHORIZATION,
        http::header::COOKIE,
        http::HeaderName::from_static("lightstep-access-token"),
    ]
}

/// A handler panicked: answer 500 and say so once at ERROR (the payload is
/// our own message, never request data).
fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response<RespBody> {
    let detail = err
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(panic = %detail, "request handler panicked (bug): answered 500");
    let mut resp = Response::new(RespBody::new(bytes::Bytes::from_static(
        b"internal error\n",
    )));
    *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_and_reset() {
        let mut e = AcceptErrors::new();
        let emfile = std::io::Error::from_raw_os_error(24);
        let pauses: Vec<u64> = (0..6)
            .filter_map(|_| e.failed(&emfile))
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(pauses, vec![100, 200, 400, 800, 1000, 1000]);
        // Logged once in the interval; the rest only counted.
        assert_eq!(e.count, 5);
        let aborted = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(e.failed(&aborted), None, "a peer that gave up is no error");
        e.succeeded();
        assert_eq!(e.failed(&emfile), Some(Duration::from_millis(100)));
    }

    #[test]
    fn registry_evicts_the_oldest_idle_and_never_a_busy_one() {
        let r = Registry::default();
        let t0 = Instant::now();
        let (_, busy) = r.add(t0);
        let _guard = InFlight::start(&busy);
        let (_, old) = r.add(t0 + Duration::from_secs(1));
        let (_, young) = r.add(t0 + Duration::from_secs(2));
        assert!(r.can_admit(4));
        assert!(r.can_admit(3), "full, but an idle one can go");
        assert!(r.evict_oldest_idle());
        assert!(old.activity().evicting && !young.activity().evicting);
        assert_eq!(r.slots_used(), 2);
        assert!(r.evict_oldest_idle());
        assert!(young.activity().evicting);
        assert!(
            !r.evict_oldest_idle(),
            "the busy connection is never evicted"
        );
        assert!(!busy.activity().evicting);
        assert!(!r.can_admit(1));
    }
}
