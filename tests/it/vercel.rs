//! Vercel end to end: Trace Drains (x-vercel-signature HMAC-SHA1 with per-drain
//! secrets rotated in the secrets store) and the deployment link (deployment
//! ids on the resource kept only when the resource's project is the token's,
//! tracked per project, exposed in the admin API and metrics).

use http::Method;
use serde_json::json;

use crate::common::vercel::{preset_options, send_edge};
use crate::common::{Harness, Options, sha256_hex};

const ADMIN_TOKEN: &str = "vercel-admin-bootstrap-7d1e";
const DRAIN_SECRET: &str = "drain-secret-acme-v1-4b7c";
const DRAIN_SECRET_V2: &str = "drain-secret-acme-v2-90fe";
const DRAIN_PATH: &str = "/v1/vercel/drain";

const POLICY: &str = r#"
endpoints:
  traces: { path: /v1/traces, upstream: lightstep }
  drain: { path: /v1/vercel/drain, upstream: lightstep, auth: vercel-drain }
roles:
  edge:
    publish:
      endpoints: [traces]
      services: ["${claims.project}", "${claims.project}-*"]
  drain:
    publish:
      endpoints: [drain]
  edge-limited:
    publish:
      endpoints: [traces]
      services: ["${claims.project}"]
      rate: { requests_per_second: 1, burst: 1 }
bindings:
  - name: vercel-limited
    role: edge-limited
    subjects: [{ provider: dev, claims: { project_id: prj_limited } }]
    credential: lightstep-prod
    stamp: { vercel.project_id: "${claims.project_id}" }
  - name: vercel-edge
    role: edge
    subjects: [{ provider: dev, claims: { owner_id: team_demo } }]
    credential: lightstep-prod
    stamp:
      vercel.project_id: "${claims.project_id}"
      deployment.environment.name: "${claims.environment}"
  - name: acme-drain
    role: drain
    subjects: [{ provider: vercel-drain, claims: { sub: acme-prod } }]
    credential: lightstep-prod
    stamp: { spangate.drain: "${claims.drain}" }
    publish:
      attribute_values: { vercel.projectId: [prj_checkout, prj_docs] }
"#;

/// The harness with the dev IdP as a Vercel-preset provider, two drains and
/// a small deployment memory.
async fn start() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("drain-secret");
    std::fs::write(&secret_file, DRAIN_SECRET).expect("write secret");
    let other_file = dir.path().join("other-secret");
    std::fs::write(&other_file, "other-drain-secret-55aa").expect("write secret");
    let h = Harness::start_with(Options {
        policies: Some(vec![("vercel.yaml", POLICY.to_string())]),
        admin_extra: format!("  bootstrap_token_sha256: {}\n", sha256_hex(ADMIN_TOKEN)),
        bootstrap_extra: format!(
            r#", drain-acme: {{ file: "{}" }}, drain-other: {{ file: "{}" }}"#,
            secret_file.display(),
            other_file.display()
        ),
        top_extra: "drains:\n  acme-prod: { secret: drain-acme }\n  other: { secret: drain-other }\ndeployments: { per_project: 2, max_projects: 10 }\n".into(),
        ..preset_options()
    })
    .await;
    // Keep the secret files alive as long as the store may re-read them.
    std::mem::forget(dir);
    h
}

/// Independent HMAC-SHA1 (aws-lc-rs directly, not spangate's helper), hex.
fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        secret.as_bytes(),
    );
    aws_lc_rs::hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An OTLP/JSON batch shaped like a Trace Drain delivery.
fn drain_batch(project: &str, deployment: &str) -> String {
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "vercel-function"}},
            {"key": "vercel.projectId", "value": {"stringValue": project}},
            {"key": "vercel.deploymentId", "value": {"stringValue": deployment}},
        ]},
        "scopeSpans": [{"scope": {"name": "vercel"}, "spans": [{
            "traceId": "7bba9f33312b3dbb8b2c2c62bb7abe2d",
            "spanId": "086e83747d0e381e",
            "name": "GET /api/users",
            "kind": 2,
            "startTimeUnixNano": "1694723400000000000",
            "endTimeUnixNano": "1694723400150000000"
        }]}]
    }]})
    .to_string()
}

async fn deliver(
    h: &Harness,
    query: &str,
    body: impl Into<bytes::Bytes>,
    signature: &str,
    extra: &[(&str, &str)],
) -> http::Response<bytes::Bytes> {
    let mut headers = vec![("x-vercel-signature", signature)];
    headers.extend_from_slice(extra);
    h.post(
        &format!("{DRAIN_PATH}{query}"),
        None,
        "application/json",
        body,
        &headers,
    )
    .await
}

/// An admin GET of the deployments API with the bootstrap token.
async fn deployments(h: &Harness, path: &str) -> (u16, serde_json::Value) {
    h.admin(Method::GET, path, Some(ADMIN_TOKEN), None).await
}

fn upstream_text(h: &Harness) -> Vec<String> {
    h.upstream
        .received()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

#[tokio::test]
async fn drain_with_a_valid_signature_is_forwarded_as_the_drain() {
    let h = start().await;
    let body = drain_batch("prj_checkout", "dpl_drain_1");
    let sig = hmac_hex(DRAIN_SECRET, body.as_bytes());
    let resp = deliver(&h, "?drain=acme-prod", body.clone(), &sig, &[]).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let got = upstream_text(&h);
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("spangate.drain"), "{}", got[0]);
    assert!(got[0].contains("acme-prod"), "{}", got[0]);
    let a = h.last_audit();
    assert_eq!(a["provider"], "vercel-drain", "{a}");
    assert_eq!(a["subject"], "acme-prod", "{a}");
    assert_eq!(a["decision"], "allow", "{a}");
    assert_eq!(a["drain_secret"], "current", "{a}");
    assert_eq!(a["deployments"], json!(["prj_checkout/dpl_drain_1"]), "{a}");

    // The signature covers the body as sent: a gzip delivery is signed over
    // the compressed bytes.
    let gz = spangate::otlp::gzip(body.as_bytes(), 6);
    let sig = hmac_hex(DRAIN_SECRET, &gz);
    let resp = deliver(
        &h,
        "?drain=acme-prod",
        gz,
        &sig,
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.upstream.received().len(), 2);
    // ... or over the decompressed body (what a verifier hashing the decoded
    // text computes); a signature over neither is refused.
    let gz = spangate::otlp::gzip(body.as_bytes(), 6);
    let sig = hmac_hex(DRAIN_SECRET, body.as_bytes());
    let resp = deliver(
        &h,
        "?drain=acme-prod",
        gz.clone(),
        &sig,
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sig = hmac_hex(DRAIN_SECRET, b"neither");
    let resp = deliver(
        &h,
        "?drain=acme-prod",
        gz,
        &sig,
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(h.last_audit()["reason"], "drain_signature_mismatch");
    assert_eq!(h.upstream.received().len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn drain_with_a_wrong_signature_is_refused() {
    let h = start().await;
    let body = drain_batch("prj_checkout", "dpl_1");
    // Signed with another drain's secret, with the right secret over another
    // body, malformed, and absent.
    let cases = [
        (
            "?drain=acme-prod",
            hmac_hex("other-drain-secret-55aa", body.as_bytes()),
            "drain_signature_mismatch",
        ),
        (
            "?drain=acme-prod",
            hmac_hex(DRAIN_SECRET, b"another body"),
            "drain_signature_mismatch",
        ),
        (
            "?drain=acme-prod",
            "not-hex".to_string(),
            "drain_signature_malformed",
        ),
        (
            "?drain=nope",
            hmac_hex(DRAIN_SECRET, body.as_bytes()),
            "drain_unknown",
        ),
        // Two drains configured: the delivery must name one.
        ("", hmac_hex(DRAIN_SECRET, body.as_bytes()), "drain_unknown"),
    ];
    for (query, sig, reason) in cases {
        let resp = deliver(&h, query, body.clone(), &sig, &[]).await;
        assert_eq!(resp.status(), 401, "{query} {reason}");
        let a = h.last_audit();
        assert_eq!(a["reason"], reason, "{a}");
        assert_eq!(a["decision"], "deny", "{a}");
        let line = a.to_string();
        assert!(!line.contains(DRAIN_SECRET), "secret in audit: {line}");
    }
    // A drain signature is not accepted on a bearer endpoint, and a bearer
    // token is not accepted on the drain endpoint.
    let sig = hmac_hex(DRAIN_SECRET, body.as_bytes());
    let resp = h
        .post(
            "/v1/traces?drain=acme-prod",
            None,
            "application/json",
            body.clone(),
            &[("x-vercel-signature", &sig)],
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(h.last_audit()["reason"], "endpoint_auth_mismatch");
    let token = h.token("edge-prod");
    let resp = h
        .post(DRAIN_PATH, Some(&token), "application/json", body, &[])
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(h.last_audit()["reason"], "endpoint_auth_mismatch");
    assert!(h.upstream.received().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn drain_delivery_without_a_signature_is_unauthenticated() {
    let h = start().await;
    let body = drain_batch("prj_checkout", "dpl_1");
    // Neither a signature nor a token: refused like any unauthenticated
    // request, before the body is looked at.
    let resp = h
        .post(
            &format!("{DRAIN_PATH}?drain=acme-prod"),
            None,
            "application/json",
            body.clone(),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 401);
    let a = h.last_audit();
    assert_eq!(a["reason"], "missing", "{a}");
    assert_eq!(a["decision"], "deny", "{a}");
    // The header twice is malformed, even when one of them is right.
    let sig = hmac_hex(DRAIN_SECRET, body.as_bytes());
    let resp = deliver(
        &h,
        "?drain=acme-prod",
        body,
        &sig,
        &[("x-vercel-signature", &sig)],
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(h.last_audit()["reason"], "drain_signature_malformed");
    assert!(h.upstream.received().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn drain_for_a_project_it_may_not_publish_is_denied() {
    let h = start().await;
    let body = drain_batch("prj_someone_else", "dpl_x");
    let sig = hmac_hex(DRAIN_SECRET, body.as_bytes());
    let resp = deliver(&h, "?drain=acme-prod", body, &sig, &[]).await;
    assert_eq!(resp.status(), 403);
    let a = h.last_audit();
    assert_eq!(a["reason"], "attribute_value_not_allowed", "{a}");
    assert_eq!(a["rule"], "binding[acme-drain]", "{a}");
    assert!(h.upstream.received().is_empty());
    // The project is only the resource's say: a denied drain delivery
    // creates no deployment record for it (a token's denial would count).
    assert!(a.get("deployments").is_none(), "{a}");
    let (status, _) = deployments(&h, "/admin/v1/deployments/prj_someone_else").await;
    assert_eq!(status, 404);
    // The other drain verifies but no binding names it: default deny.
    let body = drain_batch("prj_checkout", "dpl_x");
    let sig = hmac_hex("other-drain-secret-55aa", body.as_bytes());
    let resp = deliver(&h, "?drain=other", body, &sig, &[]).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(h.last_audit()["rule"], "default-deny");
    h.stop().await;
}

#[tokio::test]
async fn drain_secret_rotation_keeps_both_valid_during_grace() {
    let h = start().await;
    let (status, body) = h
        .rotate(
            "drain-acme",
            ADMIN_TOKEN,
            json!({"value": DRAIN_SECRET_V2, "grace": "10m", "verify": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let batch = drain_batch("prj_docs", "dpl_rot");
    for (secret, which) in [(DRAIN_SECRET, "previous"), (DRAIN_SECRET_V2, "current")] {
        let sig = hmac_hex(secret, batch.as_bytes());
        let resp = deliver(&h, "?drain=acme-prod", batch.clone(), &sig, &[]).await;
        assert_eq!(resp.status(), 200, "{which}");
        assert_eq!(h.last_audit()["drain_secret"], which);
    }
    // Retiring the previous version ends its grace: its signature fails.
    let (status, body) = h
        .admin(
            Method::DELETE,
            "/admin/v1/secrets/drain-acme/versions/1",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sig = hmac_hex(DRAIN_SECRET, batch.as_bytes());
    let resp = deliver(&h, "?drain=acme-prod", batch.clone(), &sig, &[]).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(h.last_audit()["reason"], "drain_signature_mismatch");
    let sig = hmac_hex(DRAIN_SECRET_V2, batch.as_bytes());
    let resp = deliver(&h, "?drain=acme-prod", batch, &sig, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.upstream.received().len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn deployment_ids_are_kept_only_for_the_tokens_project() {
    let h = start().await;
    let token = h.token("edge-prod");
    // The token's project (prj_checkout): deployment and commit kept, tracked.
    let resp = send_edge(&h, &token, "checkout", "prj_checkout", "dpl_A").await;
    assert_eq!(resp.status(), 200);
    let got = upstream_text(&h);
    assert!(got[0].contains("\"deployment.id\""), "{}", got[0]);
    assert!(got[0].contains("dpl_A"), "{}", got[0]);
    assert!(got[0].contains("vcs.ref.head.revision"), "{}", got[0]);
    let a = h.last_audit();
    assert_eq!(a["deployments"], json!(["prj_checkout/dpl_A"]), "{a}");
    assert!(a.get("deployment_stripped").is_none(), "{a}");

    // Another project's id on the resource: the deployment attributes are
    // stripped, the audit says so, nothing is tracked for it.
    let resp = send_edge(&h, &token, "checkout", "prj_other", "dpl_EVIL").await;
    assert_eq!(resp.status(), 200);
    let got = upstream_text(&h);
    assert!(!got[1].contains("dpl_EVIL"), "{}", got[1]);
    assert!(!got[1].contains("\"deployment.id\""), "{}", got[1]);
    assert!(!got[1].contains("vercel.sha"), "{}", got[1]);
    // The stamped project id replaced the client's.
    assert!(got[1].contains("prj_checkout"), "{}", got[1]);
    let a = h.last_audit();
    let stripped = a["deployment_stripped"].to_string();
    assert!(stripped.contains("deployment.id"), "{a}");
    assert!(stripped.contains("prj_other"), "{a}");
    assert!(a.get("deployments").is_none(), "{a}");

    // A denied batch of a linked deployment counts as denied.
    let resp = send_edge(&h, &token, "billing", "prj_checkout", "dpl_A").await;
    assert_eq!(resp.status(), 403);

    let (status, v) = deployments(&h, "/admin/v1/deployments").await;
    assert_eq!(status, 200, "{v}");
    let projects = v["projects"].as_array().expect("projects");
    assert_eq!(projects.len(), 1, "{v}");
    assert_eq!(projects[0]["project"], "prj_checkout");
    let d = &projects[0]["deployments"][0];
    assert_eq!(d["deployment"], "dpl_A", "{v}");
    assert_eq!(d["revision"], "9f3c2a1b", "{v}");
    assert_eq!(d["batches"], 1, "{v}");
    assert_eq!(d["spans"], 2, "{v}");
    assert_eq!(d["denied_batches"], 1, "{v}");
    assert!(d["first_seen"].as_u64().is_some_and(|t| t > 1_700_000_000));

    // Unauthenticated: refused.
    let (status, _) = h
        .admin(Method::GET, "/admin/v1/deployments", None, None)
        .await;
    assert_eq!(status, 401);
    h.stop().await;
}

#[tokio::test]
async fn deployments_are_bounded_per_project_and_exported_as_metrics() {
    let h = start().await;
    let token = h.token("edge-prod");
    for dpl in ["dpl_1", "dpl_2", "dpl_3"] {
        let resp = send_edge(&h, &token, "checkout", "prj_checkout", dpl).await;
        assert_eq!(resp.status(), 200);
    }
    // Drain deliveries link too (their project was checked by policy).
    let body = drain_batch("prj_docs", "dpl_docs_1");
    let sig = hmac_hex(DRAIN_SECRET, body.as_bytes());
    assert_eq!(
        deliver(&h, "?drain=acme-prod", body, &sig, &[])
            .await
            .status(),
        200
    );

    let (status, v) = deployments(&h, "/admin/v1/deployments/prj_checkout").await;
    assert_eq!(status, 200, "{v}");
    let ids: Vec<&str> = v["projects"][0]["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .filter_map(|d| d["deployment"].as_str())
        .collect();
    assert_eq!(ids, ["dpl_3", "dpl_2"], "per_project: 2 keeps the newest");
    let (status, _) = deployments(&h, "/admin/v1/deployments/prj_unknown").await;
    assert_eq!(status, 404);

    let text = h.metrics_text().await;
    assert!(
        text.contains(
            r#"spangate_deployment_first_seen_timestamp_seconds{project="prj_checkout",deployment="dpl_3"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"spangate_deployment_batches_total{project="prj_docs",deployment="dpl_docs_1"} 1"#
        ),
        "{text}"
    );
    assert!(
        !text.contains(r#"deployment="dpl_1""#),
        "forgotten deployments have no series"
    );
    h.stop().await;
}

#[tokio::test]
async fn drains_config_is_validated() {
    let text =
        "drains:\n  \"bad name\": { secret: \"also bad\" }\ndeployments: { per_project: 0 }\n";
    let err =
        spangate::config::Config::parse(std::path::Path::new("t.yaml"), text).expect_err("invalid");
    let msg = err.to_string();
    assert!(msg.contains("drains.bad name"), "{msg}");
    assert!(msg.contains("deployments.per_project"), "{msg}");
    // The policy side: attribute_values needs values.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "endpoints: { t: { path: /t, upstream: u, auth: vercel-drain } }\nroles: { r: { publish: { endpoints: [t], attribute_values: { vercel.projectId: [] } } } }\n",
    )
    .unwrap();
    let report = spangate::policy::check_dir(dir.path(), &spangate::policy::LintContext::new());
    assert!(!report.is_ok());
    assert!(
        report
            .errors
            .iter()
            .any(|d| d.message.contains("attribute_values")),
        "{report}"
    );
}

#[tokio::test]
async fn rate_limited_batches_count_as_denied_for_their_deployment() {
    let h = start().await;
    let token = h.token_with(json!({"project": "limited", "project_id": "prj_limited"}));
    // One batch per second: back-to-back batches meet a 429 (bounded tries).
    let (mut ok, mut limited) = (0u64, 0u64);
    for _ in 0..5 {
        let resp = send_edge(&h, &token, "limited", "prj_limited", "dpl_L").await;
        match resp.status().as_u16() {
            200 => ok += 1,
            429 => limited += 1,
            s => panic!("unexpected status {s}"),
        }
        if limited > 0 {
            break;
        }
    }
    assert!(limited > 0 && ok > 0, "ok {ok}, limited {limited}");
    let (status, v) = deployments(&h, "/admin/v1/deployments/prj_limited").await;
    assert_eq!(status, 200, "{v}");
    let d = &v["projects"][0]["deployments"][0];
    assert_eq!(d["batches"], ok, "{v}");
    assert_eq!(d["denied_batches"], limited, "{v}");
    assert_eq!(h.upstream.received().len() as u64, ok);
    h.stop().await;
}

#[tokio::test]
async fn deployments_cli_renders_the_admin_answer() {
    let h = start().await;
    let token = h.token("edge-prod");
    let resp = send_edge(&h, &token, "checkout", "prj_checkout", "dpl_cli").await;
    assert_eq!(resp.status(), 200);
    let admin = format!("http://{}", h.app.admin_addr);
    let secret = || Some(spangate::secrets::Secret::new(ADMIN_TOKEN.to_string()));
    let args = spangate::cli::deployments::DeploymentsArgs {
        project: None,
        json: false,
    };
    let out = spangate::cli::deployments::run(&args, &admin, secret())
        .await
        .expect("cli");
    assert!(out.contains("project prj_checkout"), "{out}");
    assert!(out.contains("dpl_cli"), "{out}");
    assert!(out.contains("9f3c2a1b"), "{out}");
    let args = spangate::cli::deployments::DeploymentsArgs {
        project: Some("prj_checkout".into()),
        json: true,
    };
    let out = spangate::cli::deployments::run(&args, &admin, secret())
        .await
        .expect("cli --json");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["projects"][0]["deployments"][0]["batches"], 1);
    // Without a token the CLI reports the refusal.
    let err = spangate::cli::deployments::run(&args, &admin, None)
        .await
        .expect_err("unauthenticated");
    assert!(err.to_string().contains("token"), "{err}");
    h.stop().await;
}
