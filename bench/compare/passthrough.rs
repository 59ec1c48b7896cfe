//! The floor of spangate's HTTP stack, for `bench/compare`: a bare OTLP/HTTP
//! pass-through built from the same pieces as spangate's data path (a tokio
//! multi-thread runtime, hyper-util's HTTP/1+2 server, the pooled hyper-util
//! client with the same pool settings, the whole body read before it is
//! forwarded) and nothing else: no token, no policy, no scan, no audit, no
//! metrics. It drops `authorization`, sets one static credential header and
//! forwards to one upstream URL, like the nginx `proxy_pass` baseline.
//!
//! What spangate costs above this binary is spangate's own work; what this
//! binary costs above nginx is the HTTP stack's.
//!
//! It runs on the same allocator as spangate (jemalloc).
//!
//! ```text
//! cargo run --release --example passthrough -- LISTEN UPSTREAM_URL HEADER VALUE
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    header: HeaderName,
    value: HeaderValue,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, url, header, value] = args.as_slice() else {
        return Err("usage: passthrough LISTEN UPSTREAM_URL HEADER VALUE".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let upstream = Arc::new(Upstream {
        client: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .timer(TokioTimer::new())
            .build(http),
        uri: url.parse()?,
        header: HeaderName::from_bytes(header.as_bytes())?,
        value: HeaderValue::from_str(value)?,
    });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen, upstream))
}

async fn serve(
    listen: SocketAddr,
    upstream: Arc<Upstream>,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(listen).await?;
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (builder, upstream) = (builder.clone(), upstream.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| forward(upstream.clone(), req));
            // A client closing its connection ends the task; nothing to report.
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn forward(
    up: Arc<Upstream>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match relay(&up, req).await {
        Ok(resp) => resp,
        Err(e) => {
            let mut resp = Response::new(Full::new(Bytes::from(e.to_string())));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            resp
        }
    })
}

async fn relay(
    up: &Upstream,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut out = Request::post(up.uri.clone()).body(Full::new(body))?;
    let headers = out.headers_mut();
    for (name, value) in &parts.headers {
        if name != AUTHORIZATION && name != http::header::HOST && name != http::header::CONNECTION {
            headers.append(name, value.clone());
        }
    }
    headers.insert(up.header.clone(), up.value.clone());
    let resp = up.client.request(out).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut answer = Response::new(Full::new(body));
    *answer.status_mut() = parts.status;
    if let Some(ct) = parts.headers.get(CONTENT_TYPE) {
        answer.headers_mut().insert(CONTENT_TYPE, ct.clone());
    }
    Ok(answer)
}
