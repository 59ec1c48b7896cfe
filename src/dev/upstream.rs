//! A recording OTLP upstream for `spangate dev` and tests: a real HTTP server
//! on loopback that keeps what it received (bounded), answers like an OTLP
//! endpoint, and can be told to fail, hang, or accept only certain tokens.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::proxy::listener::{self, ListenerOptions};

/// Most requests kept in memory.
pub const MAX_RECORDED: usize = 10_000;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    /// The body after gunzip (as sent when not gzip).
    pub body: Bytes,
    pub content_encoding: Option<String>,
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
}

struct State {
    received: Mutex<VecDeque<Received>>,
    behavior: Mutex<Behavior>,
    /// (header, accepted values): other values get 401.
    accept_only: Mutex<Option<(String, HashSet<String>)>>,
    events: broadcast::Sender<Received>,
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
        });
        let (tx, rx) = watch::channel(false);
        let s = state.clone();
        let handler = move |req: Request<Incoming>, _remote| {
            let s = s.clone();
            async move { Ok::<_, Infallible>(handle(&s, req).await) }
        };
        let opts = ListenerOptions {
            max_connections: 1024,
            ..ListenerOptions::from_config(&crate::config::ServerConfig::default(), tls)
        };
        tokio::spawn(listener::serve(
            l,
            opts,
            handler,
            rx,
            Duration::from_millis(100),
        ));
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

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
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
    let rec = Received {
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        body,
        content_encoding,
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
    if !authorized {
        return reply(StatusCode::UNAUTHORIZED, ct.as_deref(), Bytes::new());
    }
    let behavior = lock(&state.behavior).clone();
    match behavior {
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
        Behavior::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = reply(status, ct.as_deref(), Bytes::new());
            if matches!(code, 429 | 503) {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            }
            resp
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

fn reply(status: StatusCode, content_type: Option<&str>, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    if let Some(ct) = content_type.and_then(|c| http::HeaderValue::from_str(c).ok()) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}
