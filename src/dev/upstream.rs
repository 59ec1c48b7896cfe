//! A recording OTLP upstream for `spangate dev` and tests: a real HTTP server
//! on loopback that keeps what it received (bounded), answers like an OTLP
//! endpoint, and can be told to fail, hang, or accept only certain tokens.
//!
//! It speaks OTLP/HTTP and OTLP/gRPC on the same port (HTTP/1.1 and h2c, or
//! TLS): a request with `content-type: application/grpc` is a gRPC `Export`
//! call, recorded with its message unframed, and answered with a framed
//! response and `grpc-status` in the trailers (or a trailers-only error).

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::forward::grpc;
use crate::otlp::code;

/// Most requests kept in memory.
pub const MAX_RECORDED: usize = 10_000;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    /// The body after gunzip (as sent when not gzip).
    pub body: Bytes,
    /// `content-encoding` (HTTP) or `grpc-encoding` (gRPC).
    pub content_encoding: Option<String>,
    /// Arrived as an OTLP/gRPC call (`path` is the method path).
    pub grpc: bool,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How the upstream answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// 200 with an empty export response in the request's content type.
    Accept,
    /// This status with an OTLP-ish body (and `Retry-After: 1` for 429/503).
    Status(u16),
    /// Never answer (until the client gives up).
    Hang,
    /// Accept, but answer only after this long (a slow-but-working backend).
    Delay(Duration),
    /// To a gRPC call: this gRPC status (with a `google.rpc.RetryInfo` of
    /// this delay when given). To an HTTP request: the status's OTLP/HTTP
    /// equivalent.
    Grpc {
        code: i32,
        retry_delay: Option<Duration>,
    },
    /// Answer the next `n` requests per the inner behaviour, then accept.
    Times(u32, Box<Behavior>),
    /// Accept with a partial success: this many items rejected, this message.
    Partial { rejected: i64, message: String },
}

/// The gRPC status a plain HTTP [`Behavior::Status`] stands for, and
/// whether it carries a RetryInfo (as spangate's own gRPC answers do).
fn grpc_of_http(status: u16) -> (i32, Option<Duration>) {
    match status {
        429 => (code::RESOURCE_EXHAUSTED, Some(Duration::from_secs(1))),
        503 => (code::UNAVAILABLE, Some(Duration::from_secs(1))),
        s => (
            grpc::code_of_http(
                StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            ),
            None,
        ),
    }
}

struct State {
    received: Mutex<VecDeque<Received>>,
    behavior: Mutex<Behavior>,
    /// (header, accepted values): other values get 401.
    accept_only: Mutex<Option<(String, HashSet<String>)>>,
    events: broadcast::Sender<Received>,
    /// Connections accepted so far.
    connections: std::sync::atomic::AtomicU64,
}

/// A running recording upstream.
#[derive(Clone)]
pub struct RecordingUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    _shutdown: Arc<watch::Sender<bool>>,
}

impl RecordingUpstream {
    /// Bind `addr` (use 127.0.0.1:0) and serve in the background.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with_tls(addr, None).await
    }

    /// Like [`RecordingUpstream::start`], terminating TLS with `tls` when given
    /// (so the proxy's upstream TLS and CA handling are exercised for real).
    pub async fn start_with_tls(
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let l = TcpListener::bind(addr).await?;
        let addr = l.local_addr()?;
        let (events, _) = broadcast::channel(256);
        let state = Arc::new(State {
            received: Mutex::new(VecDeque::new()),
            behavior: Mutex::new(Behavior::Accept),
            accept_only: Mutex::new(None),
            events,
            connections: std::sync::atomic::AtomicU64::new(0),
        });
        let (tx, rx) = watch::channel(false);
        tokio::spawn(serve(l, tls, state.clone(), rx));
        Ok(Self {
            addr,
            state,
            _shutdown: Arc::new(tx),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}` (loopback also when bound to `0.0.0.0`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", super::idp::local_addr(self.addr), path)
    }

    /// Everything received so far (oldest first).
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).iter().cloned().collect()
    }

    /// Everything received so far, removed from the recorder in one step.
    pub fn take(&self) -> Vec<Received> {
        lock(&self.state.received).drain(..).collect()
    }

    pub fn clear(&self) {
        lock(&self.state.received).clear();
    }

    /// Connections accepted so far (a pooled HTTP/2 client keeps one).
    pub fn connections(&self) -> u64 {
        self.state
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A live feed of received requests.
    pub fn subscribe(&self) -> broadcast::Receiver<Received> {
        self.state.events.subscribe()
    }

    pub fn set_behavior(&self, b: Behavior) {
        *lock(&self.state.behavior) = b;
    }

    /// Answer 401 unless `header` carries one of `values`; `None` accepts all.
    pub fn accept_only(&self, header: &str, values: Option<&[&str]>) {
        *lock(&self.state.accept_only) = values.map(|v| {
            (
                header.to_ascii_lowercase(),
                v.iter().map(|s| s.to_string()).collect(),
            )
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Accept loop: HTTP/1.1 and HTTP/2 (h2c or TLS), one task per
/// connection, all ended when the upstream is dropped.
async fn serve(
    l: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (tcp, _) = tokio::select! {
            r = l.accept() => match r {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        state
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (state, builder, tls, mut stop) = (
            state.clone(),
            builder.clone(),
            tls.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            match tls {
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! { _ = conn => {}, _ = stop.changed() => {} }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), svc);
                    tokio::select! { _ = conn => {}, _ = stop.changed() => {} }
                }
            }
        });
    }
}

/// Response body of the recording upstream: the gRPC listener's (at most
/// one data frame, then trailers when there are any).
pub type UpBody = crate::proxy::grpc::GrpcBody;

/// The behaviour for this request (a `Times` counts down).
fn next_behavior(state: &State) -> Behavior {
    let mut b = lock(&state.behavior);
    match &mut *b {
        Behavior::Times(0, _) => Behavior::Accept,
        Behavior::Times(n, inner) => {
            *n -= 1;
            (**inner).clone()
        }
        other => other.clone(),
    }
}

/// Record a request (HTTP or gRPC) as it arrived; returns whether it carries
/// a value `accept_only` admits (always, when unset). A refused request is
/// recorded too: tests read what was sent, not only what was taken.
fn record(
    state: &State,
    parts: http::request::Parts,
    body: Bytes,
    content_encoding: Option<String>,
    grpc: bool,
) -> bool {
    let rec = Received {
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        body,
        content_encoding,
        grpc,
        at: Instant::now(),
    };
    let authorized = match &*lock(&state.accept_only) {
        None => true,
        Some((h, ok)) => rec.header(h).is_some_and(|v| ok.contains(v)),
    };
    {
        let mut q = lock(&state.received);
        if q.len() >= MAX_RECORDED {
            q.pop_front();
        }
        q.push_back(rec.clone());
    }
    let _ = state.events.send(rec);
    authorized
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<UpBody> {
    let is_grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with(grpc::CONTENT_TYPE));
    if is_grpc {
        return handle_grpc(state, req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(collected) = Limited::new(body, 64 << 20).collect().await else {
        return reply(StatusCode::BAD_REQUEST, None, Bytes::new());
    };
    let raw = collected.to_bytes();
    let content_encoding = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = if content_encoding.as_deref() == Some("gzip") {
        let mut out = Vec::new();
        match flate2::read::GzDecoder::new(&raw[..])
            .take(64 << 20)
            .read_to_end(&mut out)
        {
            Ok(_) => Bytes::from(out),
            Err(_) => return reply(StatusCode::BAD_REQUEST, None, Bytes::new()),
        }
    } else {
        raw
    };
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if !record(state, parts, body, content_encoding, false) {
        return reply(StatusCode::UNAUTHORIZED, ct.as_deref(), Bytes::new());
    }
    match next_behavior(state) {
        Behavior::Accept => {
            let body = if ct
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json"))
            {
                Bytes::from_static(b"{}")
            } else {
                Bytes::new()
            };
            reply(StatusCode::OK, ct.as_deref(), body)
        }
        Behavior::Status(code) => http_status(code, ct.as_deref()),
        Behavior::Grpc { code, .. } => {
            http_status(grpc::http_of_code(code, true).as_u16(), ct.as_deref())
        }
        Behavior::Times(..) => reply(StatusCode::OK, ct.as_deref(), Bytes::new()),
        Behavior::Partial { rejected, message } => {
            let enc = crate::otlp::Encoding::from_content_type(ct.as_deref())
                .unwrap_or(crate::otlp::Encoding::Protobuf);
            reply(
                StatusCode::OK,
                Some(enc.content_type()),
                crate::otlp::export_response(enc, rejected, &message),
            )
        }
        Behavior::Hang => {
            std::future::pending::<()>().await;
            reply(StatusCode::OK, None, Bytes::new())
        }
        Behavior::Delay(d) => {
            tokio::time::sleep(d).await;
            reply(StatusCode::OK, ct.as_deref(), Bytes::new())
        }
    }
}

fn http_status(code: u16, ct: Option<&str>) -> Response<UpBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = reply(status, ct, Bytes::new());
    if matches!(code, 429 | 503) {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// A gRPC `Export` call.
async fn handle_grpc(state: &State, req: Request<Incoming>) -> Response<UpBody> {
    let (parts, body) = req.into_parts();
    let Ok(collected) = Limited::new(body, 64 << 20).collect().await else {
        return grpc_status(code::INVALID_ARGUMENT, "body too large", None);
    };
    let raw = collected.to_bytes();
    let encoding = parts
        .headers
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(message) = grpc::unframe(&raw, encoding.as_deref()).filter(|_| {
        // Exactly one message in a unary call.
        raw.len() >= 5
    }) else {
        return grpc_status(code::INVALID_ARGUMENT, "not one gRPC message", None);
    };
    if !record(state, parts, message, encoding, true) {
        return grpc_status(code::UNAUTHENTICATED, "unknown access token", None);
    }
    let answer = |msg: &[u8]| {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let mut resp = Response::new(UpBody::new(grpc::frame(msg, false), Some(trailers)));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(grpc::CONTENT_TYPE),
        );
        resp
    };
    // An empty Export*ServiceResponse.
    let accept = || answer(&[]);
    match next_behavior(state) {
        Behavior::Accept | Behavior::Times(..) => accept(),
        Behavior::Partial { rejected, message } => answer(&crate::otlp::export_response(
            crate::otlp::Encoding::Protobuf,
            rejected,
            &message,
        )),
        Behavior::Status(s) => {
            let (code, delay) = grpc_of_http(s);
            grpc_status(code, "refused by the recording upstream", delay)
        }
        Behavior::Grpc { code, retry_delay } => {
            grpc_status(code, "refused by the recording upstream", retry_delay)
        }
        Behavior::Hang => {
            std::future::pending::<()>().await;
            accept()
        }
        Behavior::Delay(d) => {
            tokio::time::sleep(d).await;
            accept()
        }
    }
}

/// A trailers-only gRPC answer.
fn grpc_status(code: i32, message: &str, retry_delay: Option<Duration>) -> Response<UpBody> {
    let mut resp = Response::new(UpBody::default());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(grpc::CONTENT_TYPE),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&message.replace(' ', "%20")) {
        h.insert("grpc-message", v);
    }
    if let Some(d) = retry_delay {
        h.insert(
            "grpc-status-details-bin",
            grpc::retry_info_header(code, message, d),
        );
    }
    resp
}

fn reply(status: StatusCode, content_type: Option<&str>, body: Bytes) -> Response<UpBody> {
    let mut resp = Response::new(UpBody::new(body, None));
    *resp.status_mut() = status;
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}
