//! HTTP behaviour an operator relies on, on every admin endpoint: 405 with
//! `Allow`, 415 for non-JSON bodies, 413 (declared and chunked), 408 for a
//! stalled body, JSON error bodies with stable codes, `Cache-Control:
//! no-store`, and one request id shared by the response and its audit line.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{BOOTSTRAP, Harness, Options, PEER_1, Reply};

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"];

/// Every route, with the methods it answers and its `Allow` header.
const ROUTES: [(&str, &[&str], &str); 11] = [
    ("/healthz", &["GET", "HEAD"], "GET, HEAD"),
    ("/readyz", &["GET", "HEAD"], "GET, HEAD"),
    ("/metrics", &["GET", "HEAD"], "GET, HEAD"),
    ("/admin/v1/status", &["GET", "HEAD"], "GET, HEAD"),
    ("/admin/v1/secrets", &["GET", "HEAD"], "GET, HEAD"),
    ("/admin/v1/secrets/lp", &["GET", "HEAD"], "GET, HEAD"),
    ("/admin/v1/secrets/lp/rotate", &["POST"], "POST"),
    ("/admin/v1/secrets/lp/rollback", &["POST"], "POST"),
    ("/admin/v1/secrets/lp/versions/1", &["DELETE"], "DELETE"),
    ("/admin/v1/policies/reload", &["POST"], "POST"),
    ("/admin/v1/policies/validate", &["POST"], "POST"),
];

fn auth() -> String {
    format!("Bearer {BOOTSTRAP}")
}

async fn send(
    h: &Harness,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    h.call_from(PEER_1, method, path, headers, body.to_vec(), false)
        .await
}

/// The headers every admin response carries.
fn assert_common_headers(r: &Reply, what: &str) {
    assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    let id = r.request_id();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{what}: {id}");
}

#[tokio::test]
async fn admin_every_route_answers_405_with_allow_for_other_methods() {
    let h = Harness::start(Options::default()).await;
    let a = auth();
    for (path, allowed, allow) in ROUTES {
        for method in METHODS {
            if allowed.contains(&method) {
                continue;
            }
            let r = send(&h, method, path, &[("authorization", &a)], b"").await;
            let what = format!("{method} {path}");
            assert_eq!(r.status, 405, "{what}: {:?}", r.body);
            assert_eq!(r.header("allow"), Some(allow), "{what}");
            assert_common_headers(&r, &what);
            if method == "HEAD" {
                assert!(r.raw.is_empty(), "{what}: no body for HEAD");
                continue;
            }
            assert_eq!(r.body["error"], "method_not_allowed", "{what}");
            assert_eq!(r.body["request_id"], r.request_id().as_str(), "{what}");
        }
    }
    // HEAD on a GET resource: 200, headers only.
    let r = send(&h, "HEAD", "/healthz", &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(r.raw.is_empty());
    assert_common_headers(&r, "HEAD /healthz");
    let r = send(
        &h,
        "HEAD",
        "/admin/v1/secrets",
        &[("authorization", &a)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.raw.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn admin_non_json_bodies_get_415_and_change_nothing() {
    let h = Harness::start(Options::default()).await;
    let a = auth();
    let body = br#"{"create": true, "value": "never-activated-415", "verify": false}"#;
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=iso-8859-1"),
    ] {
        let mut headers = vec![("authorization", a.as_str())];
        if let Some(ct) = ct {
            headers.push(("content-type", ct));
        }
        for path in ["/admin/v1/secrets/lp/rotate", "/admin/v1/policies/validate"] {
            let r = send(&h, "POST", path, &headers, body).await;
            assert_eq!(r.status, 415, "{ct:?} {path}: {:?}", r.body);
            assert_eq!(r.body["error"], "unsupported_media_type");
            assert_eq!(r.header("accept-post"), Some("application/json"));
            assert_common_headers(&r, "415");
        }
    }
    assert!(h.shared.secrets.current("lp").is_none());
    // JSON (any case, utf-8 charset) is accepted; an empty body needs no type.
    let r = send(
        &h,
        "POST",
        "/admin/v1/secrets/lp/rotate",
        &[
            ("authorization", &a),
            ("content-type", "Application/JSON; charset=UTF-8"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = send(
        &h,
        "POST",
        "/admin/v1/policies/reload",
        &[("authorization", &a)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    h.assert_never_leaked(&["never-activated-415"]);
    h.stop().await;
}

#[tokio::test]
async fn admin_oversize_bodies_get_413_declared_or_chunked() {
    let h = Harness::start(Options::default()).await;
    let a = auth();
    let mut big = br#"{"create": true, "value": "x", "grace": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 70 * 1024));
    big.extend_from_slice(br#""}"#);
    for chunked in [false, true] {
        let r = h
            .call_from(
                PEER_1,
                "POST",
                "/admin/v1/secrets/lp/rotate",
                &[("authorization", &a), ("content-type", "application/json")],
                big.clone(),
                chunked,
            )
            .await;
        assert_eq!(r.status, 413, "chunked={chunked}: {:?}", r.body);
        assert_eq!(r.body["error"], "body_too_large");
        assert_common_headers(&r, "413");
        let line = &h.audit_for(&r.request_id())[0];
        assert_eq!(line["reason"], "body_too_large");
    }
    // Just under the cap is read (and refused for its content, not size).
    let mut ok = br#"{"create": true, "value": "x", "grace": ""#.to_vec();
    ok.extend(std::iter::repeat_n(b'a', 60 * 1024));
    ok.extend_from_slice(br#""}"#);
    let r = h
        .call_from(
            PEER_1,
            "POST",
            "/admin/v1/secrets/lp/rotate",
            &[("authorization", &a), ("content-type", "application/json")],
            ok,
            true,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_grace");
    h.stop().await;
}

#[tokio::test]
async fn admin_stalled_body_gets_408_and_the_connection_is_closed() {
    let h = Harness::start(Options {
        admin_yaml: "  body_timeout: 200ms\n".into(),
        ..Default::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(h.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /admin/v1/secrets/lp/rotate HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {BOOTSTRAP}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"value\": \"stall"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    // Never send the rest; read the answer until the server closes.
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("server answers and closes in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\":\"body_timeout\""), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(h.shared.secrets.current("lp").is_none());
    let line = h
        .audit_lines()
        .into_iter()
        .find(|l| l["reason"] == "body_timeout")
        .expect("audited");
    assert_eq!(line["status"], 408);
    assert_eq!(line["actor"], "bootstrap-token");
    h.stop().await;
}

#[tokio::test]
async fn admin_responses_share_their_request_id_with_the_audit_line() {
    let h = Harness::start(Options::default()).await;
    let a = auth();
    let json = [
        ("authorization", a.as_str()),
        ("content-type", "application/json"),
    ];
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u8], u16);
    let cases: Vec<Case> = vec![
        ("GET", "/healthz", vec![], b"", 200),
        ("GET", "/readyz", vec![], b"", 200),
        ("GET", "/metrics", vec![], b"", 404),
        ("GET", "/admin/v1/nope", vec![], b"", 404),
        ("GET", "/admin/v1/secrets", vec![], b"", 401),
        (
            "GET",
            "/admin/v1/secrets",
            vec![("authorization", "Bearer wrong")],
            b"",
            401,
        ),
        ("GET", "/admin/v1/secrets", json.to_vec(), b"", 200),
        ("GET", "/admin/v1/secrets/missing", json.to_vec(), b"", 404),
        (
            "POST",
            "/admin/v1/secrets/lp/rotate",
            json.to_vec(),
            b"{nope",
            400,
        ),
        (
            "POST",
            "/admin/v1/secrets/lp/rotate",
            json.to_vec(),
            br#"{"create": true, "value": "request-id-token", "verify": false}"#,
            200,
        ),
        (
            "POST",
            "/admin/v1/secrets/lp/rollback",
            json.to_vec(),
            b"",
            409,
        ),
    ];
    let mut ids = std::collections::BTreeSet::new();
    for (method, path, headers, body, want) in cases {
        let r = send(&h, method, path, &headers, body).await;
        let what = format!("{method} {path}");
        assert_eq!(r.status, want, "{what}: {:?}", r.body);
        assert_common_headers(&r, &what);
        let id = r.request_id();
        assert!(ids.insert(id.clone()), "ids are unique");
        if r.status >= 400 {
            assert_eq!(r.body["request_id"], id.as_str(), "{what}");
            assert!(r.body["error"].as_str().is_some_and(|c| !c.is_empty()));
            assert!(r.body["message"].is_string());
        }
        let authenticated = path.starts_with("/admin/v1/") && path != "/admin/v1/nope";
        let lines = h.audit_for(&id);
        if authenticated {
            assert_eq!(lines.len(), 1, "{what}");
            assert_eq!(lines[0]["status"], want, "{what}");
            assert!(lines[0]["duration_ms"].as_f64().is_some());
        } else {
            assert!(lines.is_empty(), "{what}");
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn admin_rotate_value_with_json_escapes_is_stored_exactly() {
    let h = Harness::start(Options::default()).await;
    let a = auth();
    // JSON escapes for ", \, / and A: the stored value is the decoded text.
    let body = br#"{"create": true, "value": "tok\"with\\back\/slash\u0041", "verify": false}"#;
    let r = send(
        &h,
        "POST",
        "/admin/v1/secrets/lp/rotate",
        &[("authorization", &a), ("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let want = "tok\"with\\back/slashA";
    assert_eq!(
        h.shared
            .secrets
            .current("lp")
            .expect("stored")
            .value
            .expose(),
        want
    );
    assert_eq!(
        r.body["new_fingerprint"],
        spangate::fingerprint(want.as_bytes())
    );
    // A lone surrogate is refused as a body error, and nothing changes.
    let r = send(
        &h,
        "POST",
        "/admin/v1/secrets/lp/rotate",
        &[("authorization", &a), ("content-type", "application/json")],
        br#"{"create": true, "value": "x\ud800y", "verify": false}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "invalid_body");
    assert_eq!(h.shared.secrets.current("lp").expect("stored").version, 1);
    h.assert_never_leaked(&["tok\\\"with", "tok\"with"]);
    h.stop().await;
}
