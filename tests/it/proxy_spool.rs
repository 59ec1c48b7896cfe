//! The upstream spool: a batch the upstream cannot take is queued, the
//! exporter gets a 200, and the spool delivers it later with the credential
//! current at delivery time; every spooled batch ends in one `kind: spool`
//! audit line (delivered, dead_lettered, expired or lost).

use std::time::Duration;

use serde_json::Value;
use spangate::dev::upstream::Behavior;

use crate::common::{Harness, LIGHTSTEP_TOKEN, Options};

fn spool_opts(spool: &str) -> Options {
    Options {
        upstream_extra: format!(", spool: {spool}"),
        upstream_timeout: "300ms",
        ..Default::default()
    }
}

/// Bounded poll for an audit line.
async fn audit_line(h: &Harness, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..400 {
        if let Some(l) = h.audit_lines().into_iter().find(|l| pred(l)) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no such audit line in {:#?}", h.audit_lines());
}

#[tokio::test]
async fn an_upstream_outage_is_spooled_then_delivered_with_the_injected_token() {
    let h = Harness::start_with(spool_opts("{ max_bytes: 1MiB, max_age: 1m }")).await;
    h.upstream.set_behavior(Behavior::Status(503));
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 200, "the exporter must not lose the batch");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let line = h.last_audit();
    assert_eq!(line["kind"], "otlp");
    assert_eq!(line["reason"], "spooled");
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["upstream_status"], 503);
    let request_id = line["request_id"].as_str().unwrap().to_string();
    // Three in-request attempts, then the spool's own (it starts at once).
    assert!(h.upstream.received().len() >= 3);

    h.upstream.clear();
    h.upstream.set_behavior(Behavior::Accept);
    let done = audit_line(&h, |l| l["kind"] == "spool").await;
    assert_eq!(done["result"], "delivered");
    assert_eq!(done["request_id"], request_id.as_str());
    assert_eq!(done["upstream_status"], 200);
    assert_eq!(done["spans"], 2);
    assert_eq!(done["subject"], line["subject"]);
    let got = h.upstream.received();
    assert_eq!(got.len(), 1, "delivered once");
    assert_eq!(
        got[0].header("lightstep-access-token"),
        Some(LIGHTSTEP_TOKEN)
    );
    assert_eq!(got[0].header("authorization"), None);
    assert_eq!(got[0].header("x-request-id"), Some(request_id.as_str()));
    assert!(h.app.shared.spools["lightstep"].is_empty());
    let metrics = h.app.shared.metrics.encode();
    assert!(
        metrics.contains(
            r#"spangate_spool_batches_total{upstream="lightstep",outcome="delivered"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"spangate_spool_bytes{upstream="lightstep"} 0"#),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_refused_credential_is_spooled_until_the_upstream_accepts() {
    let h = Harness::start_with(spool_opts("{}")).await;
    h.upstream
        .accept_only("lightstep-access-token", Some(&["not-yet-propagated"]));
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.last_audit()["reason"], "spooled");
    // The upstream learns the token (what a rotation or propagation does).
    h.upstream
        .accept_only("lightstep-access-token", Some(&[LIGHTSTEP_TOKEN]));
    let done = audit_line(&h, |l| l["kind"] == "spool").await;
    assert_eq!(done["result"], "delivered");
    assert_eq!(done["credential"], "lightstep-prod");
    h.stop().await;
}

#[tokio::test]
async fn status_shows_the_spool_and_the_memory_budget() {
    const ADMIN: &str = "spool-status-admin-token";
    let mut opts = spool_opts("{ max_bytes: 1MiB, drain: 100ms }");
    opts.admin_extra = format!(
        "  bootstrap_token_sha256: {}\n",
        crate::common::sha256_hex(ADMIN)
    );
    let h = Harness::start_with(opts).await;
    // Every delivery fails until the end of the test: the batch stays queued.
    h.upstream.set_behavior(Behavior::Status(503));
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 200);
    let (code, status) = h
        .admin(http::Method::GET, "/admin/v1/status", Some(ADMIN), None)
        .await;
    assert_eq!(code, 200, "{status}");
    let spool = &status["proxy"]["spools"]["lightstep"];
    assert_eq!(spool["batches"], 1, "{status}");
    assert_eq!(spool["max_bytes"], 1024 * 1024);
    assert!(spool["bytes"].as_u64().unwrap() > 0);
    assert!(spool["oldest_ms"].is_u64());
    assert_eq!(status["proxy"]["memory_budget_bytes"], 128 * 1024 * 1024);
    assert_eq!(
        status["proxy"]["memory_in_use_bytes"], 0,
        "no request in flight"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_full_spool_answers_with_the_upstream_error() {
    let h = Harness::start_with(spool_opts("{ max_bytes: 10B }")).await;
    h.upstream.set_behavior(Behavior::Status(503));
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 503, "reported, not swallowed");
    assert!(resp.headers().contains_key("retry-after"));
    let line = h.last_audit();
    assert_ne!(line["reason"], "spooled");
    assert!(
        line["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("spool full"),
        "{line}"
    );
    assert!(h.app.shared.spools["lightstep"].is_empty());
    h.stop().await;
}

#[tokio::test]
async fn an_old_batch_expires_and_a_non_retryable_answer_rejects() {
    let h = Harness::start_with(spool_opts("{ max_age: 300ms }")).await;
    h.upstream.set_behavior(Behavior::Status(503));
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 200);
    let done = audit_line(&h, |l| l["kind"] == "spool").await;
    assert_eq!(done["result"], "expired");
    assert_eq!(done["spans"], 2);
    h.stop().await;

    // A fresh spool (the backoff above would outlive a 300 ms max_age).
    let h = Harness::start_with(spool_opts("{ drain: 300ms }")).await;
    h.upstream.set_behavior(Behavior::Status(504));
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 200);
    h.upstream.set_behavior(Behavior::Status(400));
    let done = audit_line(&h, |l| l["kind"] == "spool" && l["result"] != "expired").await;
    assert_eq!(done["result"], "dead_lettered");
    assert_eq!(done["upstream_status"], 400);
    h.stop().await;
}

#[tokio::test]
async fn batches_still_queued_at_shutdown_are_audited_as_lost() {
    let h = Harness::start_with(spool_opts("{ drain: 300ms }")).await;
    h.upstream.set_behavior(Behavior::Status(503));
    for _ in 0..2 {
        let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
        assert_eq!(resp.status(), 200);
    }
    let audit = h.audit.clone();
    h.stop().await;
    let lost: Vec<Value> = audit
        .lines()
        .into_iter()
        .filter(|l| l["kind"] == "spool")
        .collect();
    assert_eq!(lost.len(), 2, "{lost:#?}");
    assert!(lost.iter().all(|l| l["result"] == "lost"), "{lost:#?}");
}
