//! Hostile connections against the real OTLP listener (issue: silent
//! sockets, partial HTTP/2 prefaces, idle HTTP/2 connections, a full
//! listener, `max_connections` and the open-file limit, public `/readyz`).
//!
//! "Closed" is proven by reading EOF (or a reset) within a generous bound;
//! the timeouts under test are small so the bound is never the thing tested.

use crate::common;

use std::time::Duration;

use common::{Harness, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound for "the server closed it".
const BOUND: Duration = Duration::from_secs(15);
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Read until EOF or a reset; true when that happened within `BOUND`.
/// Returns what was read as well.
async fn closed_within_bound(s: &mut TcpStream) -> (bool, Vec<u8>) {
    let mut buf = Vec::new();
    let r = tokio::time::timeout(BOUND, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    (r.is_ok(), buf)
}

fn opts(server_extra: &str) -> Options {
    Options {
        server_extra: server_extra.into(),
        ..Default::default()
    }
}

/// An HTTP/2 frame header + payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HTTP/2 frames in `bytes`, as (type, flags, stream) triples.
fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        let stream = u32::from_be_bytes([rest[5] & 0x7f, rest[6], rest[7], rest[8]]);
        out.push((rest[3], rest[4], stream));
        if rest.len() < 9 + len {
            break;
        }
        rest = &rest[9 + len..];
    }
    out
}

#[tokio::test]
async fn hostile_silent_socket_is_closed_after_header_timeout() {
    let h = Harness::start_with(opts("  header_timeout: 300ms\n  idle_timeout: 1h\n")).await;
    let mut silent = TcpStream::connect(h.app.proxy_addr).await.unwrap();
    let (closed, got) = closed_within_bound(&mut silent).await;
    assert!(closed, "a socket that sends nothing must be closed");
    assert!(got.is_empty(), "{got:?}");
    h.stop().await;
}

#[tokio::test]
async fn hostile_partial_h2_preface_is_closed_after_header_timeout() {
    let h = Harness::start_with(opts("  header_timeout: 300ms\n  idle_timeout: 1h\n")).await;
    // Half a preface: protocol detection never completes.
    let mut partial = TcpStream::connect(h.app.proxy_addr).await.unwrap();
    partial.write_all(&H2_PREFACE[..10]).await.unwrap();
    let (closed, _) = closed_within_bound(&mut partial).await;
    assert!(closed, "a partial preface must be closed");
    // A whole preface and SETTINGS, then no request (and PINGs answered
    // by the kernel buffer): closed as well, counted from accept.
    let mut no_request = TcpStream::connect(h.app.proxy_addr).await.unwrap();
    no_request.write_all(H2_PREFACE).await.unwrap();
    no_request.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    let (closed, _) = closed_within_bound(&mut no_request).await;
    assert!(closed, "preface + SETTINGS and no request must be closed");
    h.stop().await;
}

#[tokio::test]
async fn hostile_idle_h2_connection_gets_goaway_and_is_closed() {
    let h = Harness::start_with(opts("  idle_timeout: 300ms\n")).await;
    let mut s = TcpStream::connect(h.app.proxy_addr).await.unwrap();
    s.write_all(H2_PREFACE).await.unwrap();
    s.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    // GET /healthz on stream 1 (HPACK: :method GET, :scheme http, :path
    // literal, :authority literal), END_STREAM | END_HEADERS.
    let mut block = vec![0x82, 0x86, 0x44, 8];
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x41, 1, b'x']);
    s.write_all(&frame(1, 0x5, 1, &block)).await.unwrap();
    // ACK the server's SETTINGS so the connection is healthy; then stay
    // silent (no stream in flight).
    s.write_all(&frame(4, 0x1, 0, &[])).await.unwrap();
    let (closed, got) = closed_within_bound(&mut s).await;
    assert!(closed, "an idle HTTP/2 connection must be closed");
    let seen = frames(&got);
    assert!(
        seen.iter().any(|(t, _, st)| *t == 1 && *st == 1),
        "the request was answered first: {seen:?}"
    );
    assert!(
        seen.iter().any(|(t, _, _)| *t == 7),
        "closed with GOAWAY: {seen:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn hostile_full_listener_evicts_the_oldest_idle_connection() {
    let h = Harness::start_with(opts(
        "  max_connections: 3\n  header_timeout: 1h\n  idle_timeout: 1h\n",
    ))
    .await;
    // Fill every slot with silent sockets, oldest first.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(h.app.proxy_addr).await.unwrap());
        // Each is accepted before the next (a request on the admin port
        // would not tell; the order only matters for "oldest").
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A legitimate request on a new connection is served...
    let token = h.token("edge-prod");
    let resp = h.send_json(Some(&token), "checkout").await;
    assert_eq!(resp.status(), 200);
    // ...because the oldest idle connection was closed for it.
    let (closed, _) = closed_within_bound(&mut silent[0]).await;
    assert!(closed, "the oldest idle connection was evicted");
    // The admin listener keeps its own capacity meanwhile.
    let (status, _) = h.admin(http::Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
    h.stop().await;
}

#[tokio::test]
async fn hostile_flood_of_silent_sockets_does_not_stop_legitimate_requests() {
    let h = Harness::start_with(opts(
        "  max_connections: 20\n  header_timeout: 1h\n  idle_timeout: 1h\n",
    ))
    .await;
    let mut flood = Vec::new();
    for _ in 0..60 {
        if let Ok(s) = TcpStream::connect(h.app.proxy_addr).await {
            flood.push(s);
        }
    }
    let token = h.token("edge-prod");
    for _ in 0..5 {
        let resp = h.send_json(Some(&token), "checkout").await;
        assert_eq!(resp.status(), 200);
    }
    drop(flood);
    h.stop().await;
}

#[tokio::test]
async fn hostile_max_connections_zero_is_refused() {
    let err = spangate::config::Config::parse(
        std::path::Path::new("c.yaml"),
        "server:\n  listen: 127.0.0.1:0\n  max_connections: 0\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("c.yaml:3:") && err.contains("max_connections must be at least 1"),
        "{err}"
    );
}

#[tokio::test]
async fn hostile_max_connections_beyond_the_open_file_limit_is_refused() {
    // Read the limit, do not change it: a budget one connection larger than
    // the hard limit can hold is refused at start with the numbers.
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    let too_many = hard.min(u64::from(u32::MAX));
    let err = match Harness::try_start(opts(&format!("  max_connections: {too_many}\n"))).await {
        Ok(h) => {
            h.stop().await;
            panic!("a max_connections of {too_many} must not fit hard limit {hard}");
        }
        Err(e) => e,
    };
    assert!(
        err.contains("open-file limit") && err.contains(&format!("hard limit {hard}")),
        "{err}"
    );
}

#[tokio::test]
async fn hostile_public_readyz_says_only_ready_or_not() {
    let h = Harness::start().await;
    let resp = h
        .client
        .get(&h.url("/readyz"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = String::from_utf8_lossy(resp.body()).to_string();
    assert_eq!(body, "ready\n");
    for secret in [
        h.idp.issuer().as_str(),
        "jwks",
        "policy",
        "RS256",
        "providers",
    ] {
        assert!(!body.contains(secret), "{secret} leaked: {body}");
    }
    // The details stay on the admin listener.
    let (status, admin) = h.admin(http::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200);
    assert!(admin["providers"].is_array(), "{admin}");
    h.stop().await;
}
