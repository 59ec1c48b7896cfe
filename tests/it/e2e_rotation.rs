//! End-to-end: rotating the upstream credential through the admin API while
//! the proxy serves, the grace-period fallback, persistence across restart,
//! and admin authentication through policy.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use common::{Harness, LIGHTSTEP_TOKEN, Options, load, sha256_hex};
use http::Method;
use serde_json::json;

const ADMIN_TOKEN: &str = "bootstrap-admin-7c1e0d";
const NEW_TOKEN: &str = "ls-rotated-token-91b2";

fn options(dir: Option<std::path::PathBuf>) -> Options {
    Options {
        admin_extra: format!("  bootstrap_token_sha256: {}\n", sha256_hex(ADMIN_TOKEN)),
        secrets_extra: dir
            .as_ref()
            .map(|d| format!("  store: \"{}\"\n", d.join("secrets.json").display()))
            .unwrap_or_default(),
        reuse_dir: dir,
        policies: Some(common::shipped_policies_unthrottled()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request_and_upstream_sees_only_valid_tokens() {
    let h = Arc::new(Harness::start_with(options(None)).await);
    // The upstream knows only the current token, as Lightstep would.
    h.upstream
        .accept_only("lightstep-access-token", Some(&[LIGHTSTEP_TOKEN]));
    let stop = Arc::new(AtomicBool::new(false));
    let one = std::slice::from_ref(&h);
    let load = load::spawn_load(one, &stop, 4);
    load::wait_for_traffic(one, 20).await;

    // The operator creates the new token upstream first, then rotates.
    h.upstream.accept_only(
        "lightstep-access-token",
        Some(&[LIGHTSTEP_TOKEN, NEW_TOKEN]),
    );
    let (status, body) = h
        .rotate(
            "lightstep-prod",
            ADMIN_TOKEN,
            json!({"value": NEW_TOKEN, "grace": "1m"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verify"]["result"], "accepted", "{body}");
    assert_eq!(
        body["new_fingerprint"],
        spangate::fingerprint(NEW_TOKEN.as_bytes())
    );
    load::wait_for_traffic(one, 20).await;
    // Then deletes the old one upstream.
    h.upstream
        .accept_only("lightstep-access-token", Some(&[NEW_TOKEN]));
    load::wait_for_traffic(one, 20).await;
    let statuses = load::finish_load(&stop, load).await;
    assert!(statuses.len() >= 60, "load ran: {}", statuses.len());
    load::assert_all_ok(&statuses);

    // The upstream only ever saw the two real tokens, and the last requests the new one.
    let received = h.upstream.received();
    for r in &received {
        let t = r.header("lightstep-access-token").unwrap();
        assert!(t == LIGHTSTEP_TOKEN || t == NEW_TOKEN, "unexpected token");
    }
    assert_eq!(
        received.last().unwrap().header("lightstep-access-token"),
        Some(NEW_TOKEN)
    );
    // The admin action is audited with fingerprints, never values.
    let text = h.audit.text();
    assert!(
        !text.contains(NEW_TOKEN) && !text.contains(LIGHTSTEP_TOKEN) && !text.contains(ADMIN_TOKEN)
    );
    let rotate = h
        .audit_lines()
        .into_iter()
        .find(|l| l["action"] == "secrets.rotate")
        .expect("rotation audited");
    assert_eq!(
        rotate["old_fingerprint"],
        spangate::fingerprint(LIGHTSTEP_TOKEN.as_bytes())
    );
    assert_eq!(
        rotate["new_fingerprint"],
        spangate::fingerprint(NEW_TOKEN.as_bytes())
    );
    Arc::try_unwrap(h).ok().expect("sole owner").stop().await;
}

#[tokio::test]
async fn upstream_refusing_the_new_token_falls_back_to_the_previous_during_grace() {
    let h = Harness::start_with(options(None)).await;
    // Lightstep can take minutes to accept a new token: force it in anyway.
    h.upstream
        .accept_only("lightstep-access-token", Some(&[LIGHTSTEP_TOKEN]));
    let (status, body) = h
        .rotate(
            "lightstep-prod",
            ADMIN_TOKEN,
            json!({"value": NEW_TOKEN, "grace": "5m", "force": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(
        resp.status(),
        200,
        "fallback to the previous token keeps the batch"
    );
    let line = h.last_audit();
    assert_eq!(line["credential_fallback"], true, "{line}");
    assert_eq!(line["upstream_attempts"], 2);
    let got = h.upstream.received();
    let tokens: Vec<_> = got
        .iter()
        .rev()
        .take(2)
        .map(|r| r.header("lightstep-access-token").unwrap())
        .collect();
    assert_eq!(
        tokens,
        [LIGHTSTEP_TOKEN, NEW_TOKEN],
        "new first, then previous"
    );
    let text = h.metrics_text().await;
    assert!(
        text.contains("spangate_credential_fallbacks_total 1"),
        "{text}"
    );

    // Once the upstream knows the new token, no fallback happens.
    h.upstream
        .accept_only("lightstep-access-token", Some(&[NEW_TOKEN]));
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 200);
    assert!(h.last_audit().get("credential_fallback").is_none());

    // Retiring the previous version ends the grace early: no more fallback target.
    let (status, _) = h
        .admin(
            Method::DELETE,
            "/admin/v1/secrets/lightstep-prod/versions/1",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    h.upstream
        .accept_only("lightstep-access-token", Some(&[LIGHTSTEP_TOKEN]));
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 502);
    assert_eq!(h.last_audit()["reason"], "upstream_auth_failed");
    h.stop().await;
}

#[tokio::test]
async fn rotation_is_refused_when_the_upstream_rejects_the_new_token() {
    let h = Harness::start_with(options(None)).await;
    h.upstream
        .accept_only("lightstep-access-token", Some(&[LIGHTSTEP_TOKEN]));
    let (status, body) = h
        .rotate("lightstep-prod", ADMIN_TOKEN, json!({"value": NEW_TOKEN}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(!body.to_string().contains(NEW_TOKEN));
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.last_injected().as_deref(), Some(LIGHTSTEP_TOKEN));
    h.stop().await;
}

#[tokio::test]
async fn restart_after_rotation_keeps_the_rotated_token() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(options(Some(dir.path().to_path_buf()))).await;
    let (status, body) = h
        .rotate(
            "lightstep-prod",
            ADMIN_TOKEN,
            json!({"value": NEW_TOKEN, "grace": "0s"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let Harness {
        idp, upstream, app, ..
    } = h;
    app.shutdown().await;
    // Same store file, same bootstrap file: the store wins over bootstrap.
    let h = Harness::start_app(options(Some(dir.path().to_path_buf())), idp, upstream)
        .await
        .unwrap();
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.last_injected().as_deref(), Some(NEW_TOKEN));
    h.stop().await;
}

#[tokio::test]
async fn admin_calls_are_authenticated_and_authorized_through_policy() {
    let h = Harness::start_with(options(None)).await;
    // No token: 401 with a challenge.
    let (status, _) = h.admin(Method::GET, "/admin/v1/secrets", None, None).await;
    assert_eq!(status, 401);
    // A publisher's OIDC token holds no admin permission: 403.
    let (status, _) = h
        .admin(
            Method::GET,
            "/admin/v1/secrets",
            Some(&h.token("edge-prod")),
            None,
        )
        .await;
    assert_eq!(status, 403);
    // The example policy binds role secrets-admin to group platform-admins.
    let admin = h.token("admin");
    let (status, body) = h
        .admin(Method::GET, "/admin/v1/secrets", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.to_string()
            .contains(&spangate::fingerprint(LIGHTSTEP_TOKEN.as_bytes()))
    );
    assert!(!body.to_string().contains(LIGHTSTEP_TOKEN));
    let (status, _) = h
        .admin(
            Method::POST,
            "/admin/v1/secrets/lightstep-prod/rotate",
            Some(&admin),
            Some(json!({"value": NEW_TOKEN})),
        )
        .await;
    assert_eq!(status, 200);
    // Refusals and the OIDC admin action are audited with the actor.
    let lines = h.audit_lines();
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "admin" && l["status"] == 401)
    );
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "admin" && l["status"] == 403)
    );
    assert!(
        lines
            .iter()
            .any(|l| l["action"] == "secrets.rotate" && l["subject"] == "alice")
    );
    h.stop().await;
}
