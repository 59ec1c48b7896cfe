//! The admin API against a local guesser: the throttle cannot be used to
//! lock out a different, valid credential (and gives no oracle), and the
//! admin API can listen on a Unix socket (mode 0600, peer credentials in
//! the audit line) so local users are told apart by uid, not by 127.0.0.1.

use crate::common;

use std::time::Duration;

use common::{Harness, Options, sha256_hex};
use http::Method;
use serde_json::Value;

const BOOTSTRAP: &str = "hostile-bootstrap-7d1f0c9e2b4a86d3";

fn with_bootstrap() -> Options {
    Options {
        admin_extra: format!(
            "  bootstrap_token_sha256: \"{}\"\n  auth_throttle: {{ lockout: 1h, max_lockout: 1h }}\n",
            sha256_hex(BOOTSTRAP)
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn hostile_admin_guesser_cannot_lock_out_a_valid_token() {
    let h = Harness::start_with(with_bootstrap()).await;
    // The operator works from 127.0.0.1 with the bootstrap token.
    let (status, _) = h
        .admin(Method::GET, "/admin/v1/secrets", Some(BOOTSTRAP), None)
        .await;
    assert_eq!(status, 200);
    // A local guesser (same address) sends six wrong tokens: the peer is
    // locked out (five distinct failures by default).
    let mut statuses = Vec::new();
    for i in 0..6 {
        let guess = format!("guess-{i}-of-the-bootstrap-token");
        statuses.push(
            h.admin(Method::GET, "/admin/v1/secrets", Some(&guess), None)
                .await
                .0,
        );
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429], "{statuses:?}");
    // No oracle for unknown credentials: a wrong guess and an unknown one
    // get the same 429, unchecked.
    let (wrong, wrong_body) = h
        .admin(Method::GET, "/admin/v1/secrets", Some("guess-7"), None)
        .await;
    assert_eq!(wrong, 429);
    // The operator's token still works...
    let (status, _) = h
        .admin(Method::GET, "/admin/v1/secrets", Some(BOOTSTRAP), None)
        .await;
    assert_eq!(status, 200, "a guesser locked out the operator's token");
    // ...and so does a fresh OIDC admin token (signed: checking it is no
    // oracle), first use included.
    let oidc = h.token("admin");
    let (status, body) = h
        .admin(Method::GET, "/admin/v1/secrets", Some(&oidc), None)
        .await;
    assert_eq!(status, 200, "{body}");
    // A forged JWT-shaped token is checked and refused (401, not 200).
    let forged = format!("{}x", &oidc[..oidc.len() - 1]);
    let (status, _) = h
        .admin(Method::GET, "/admin/v1/secrets", Some(&forged), None)
        .await;
    assert_eq!(status, 401);
    // The guesser is still locked out.
    let (again, again_body) = h
        .admin(Method::GET, "/admin/v1/secrets", Some("guess-8"), None)
        .await;
    assert_eq!(again, 429);
    assert_eq!(wrong_body["error"], again_body["error"]);
    h.stop().await;
}

#[tokio::test]
async fn hostile_admin_repeating_one_stale_token_does_not_lock_out_the_peer() {
    let h = Harness::start_with(with_bootstrap()).await;
    for _ in 0..10 {
        let (s, _) = h
            .admin(
                Method::GET,
                "/admin/v1/secrets",
                Some("stale-token-of-a-cron-job"),
                None,
            )
            .await;
        assert_eq!(s, 401);
    }
    // Never used before, yet not locked out: the repeats counted once.
    let (status, _) = h
        .admin(Method::GET, "/admin/v1/secrets", Some(BOOTSTRAP), None)
        .await;
    assert_eq!(status, 200);
    h.stop().await;
}

/// One HTTP/1.1 request over a Unix socket; returns status and body.
#[cfg(unix)]
async fn unix_get(path: &std::path::Path, target: &str, token: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // The body may be chunked; take the JSON object inside.
    let json = body
        .find('{')
        .and_then(|i| body.rfind('}').map(|j| &body[i..=j]))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[cfg(unix)]
#[tokio::test]
async fn hostile_admin_on_a_unix_socket_with_mode_0600_and_peer_credentials() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let sock_dir = tempfile::tempdir().unwrap();
    let path = sock_dir.path().join("admin.sock");
    let h = Harness::start_with(Options {
        admin_listen: Some(format!("unix:{}", path.display())),
        ..with_bootstrap()
    })
    .await;
    assert_eq!(h.app.admin_socket.as_deref(), Some(path.as_path()));
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner only");
    let (status, body) = unix_get(&path, "/admin/v1/secrets", BOOTSTRAP).await;
    assert_eq!(status, 200, "{body}");
    let line = h
        .audit_lines()
        .into_iter()
        .rev()
        .find(|l| l["kind"] == "admin")
        .expect("admin audit line");
    assert_eq!(line["peer_uid"], meta.uid(), "{line}");
    assert_eq!(
        line["peer_gid"].as_u64(),
        Some(u64::from(meta.gid())),
        "{line}"
    );
    assert_eq!(line["peer_pid"], std::process::id(), "{line}");
    assert!(
        line["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("unix:uid=")),
        "{line}"
    );
    assert_eq!(line["actor"], "bootstrap-token");
    // The CLI speaks to the socket too (`--admin unix:/path`).
    let out = spangate::admin::client::run(
        spangate::admin::client::AdminCommand::SecretsList,
        &format!("unix:{}", path.display()),
        Some(spangate::secrets::Secret::new(BOOTSTRAP.to_string())),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("lightstep-prod"), "{out}");
    h.stop().await;
    assert!(!path.exists(), "the socket is removed on shutdown");
}

#[tokio::test]
async fn hostile_admin_listen_must_be_host_port_or_unix_path() {
    for bad in ["\"unix:\"", "\"not-an-address\""] {
        let err = spangate::config::Config::parse(
            std::path::Path::new("a.yaml"),
            &format!("admin:\n  listen: {bad}\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("a.yaml:2:"), "{err}");
    }
    let err = spangate::config::Config::parse(
        std::path::Path::new("a.yaml"),
        "admin:\n  listen: \"unix:/run/x.sock\"\n  socket_mode: \"rw\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("socket_mode"), "{err}");
}
