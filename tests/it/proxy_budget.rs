//! The process-wide memory budget: a request that cannot get room within
//! `overload_wait` gets a retryable 503, and the room comes back when the
//! request holding it finishes.

use std::time::Duration;

use spangate::dev::upstream::Behavior;

use crate::common::{Harness, Options, shipped_policies_unthrottled};

#[tokio::test]
async fn a_full_memory_budget_is_a_retryable_503_and_recovers() {
    let h = Harness::start_with(Options {
        policies: Some(shipped_policies_unthrottled()),
        // The harness sets max_body: 64KiB.
        server_extra: "  memory_budget: 64KiB\n  overload_wait: 100ms\n".into(),
        upstream_timeout: "1500ms",
        ..Default::default()
    })
    .await;
    let budget = &h.app.shared.budget;
    assert_eq!(budget.in_use_bytes(), 0);

    // A batch whose decoded cost (3 × its size) takes the whole budget,
    // held while the upstream hangs.
    let big = spangate::dev::sample_batch_json("checkout", 120);
    assert!(big.len() * 3 > 64 * 1024, "batch of {} bytes", big.len());
    assert!(big.len() < 64 * 1024);
    h.upstream.set_behavior(Behavior::Hang);
    let token = h.token("edge-prod");
    let holder = {
        let client = h.client.clone();
        let url = h.url("/v1/traces");
        let token = token.clone();
        let body = big.clone();
        tokio::spawn(async move {
            let req = http::Request::post(url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                .body(spangate::client::OutBody::new(body.into()))
                .unwrap();
            client
                .send(req, Duration::from_secs(30), 1 << 20)
                .await
                .expect("answer")
        })
    };
    // Bounded poll until the holder's reservation covers everything.
    let mut full = false;
    for _ in 0..200 {
        if budget.in_use_bytes() == 64 * 1024 {
            full = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(full, "holder never reserved the budget");

    let resp = h.send_json(Some(&token), "checkout").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("Status JSON");
    assert_eq!(body["code"], 14, "google.rpc.Code UNAVAILABLE");
    let line = h
        .audit_lines()
        .into_iter()
        .find(|l| l["reason"] == "overloaded")
        .expect("overloaded audit line");
    assert_eq!(line["status"], 503);
    assert_eq!(line["decision"], "error", "not a policy decision");
    assert_eq!(line["endpoint"], "traces");

    // The holder's upstream attempt times out (504); its room comes back.
    h.upstream.set_behavior(Behavior::Accept);
    let held = holder.await.expect("join");
    assert_eq!(held.status(), 504);
    assert_eq!(budget.in_use_bytes(), 0, "released with the response");
    let resp = h.send_json(Some(&token), "checkout").await;
    assert_eq!(resp.status(), 200);

    let metrics = h.app.shared.metrics.encode();
    assert!(
        metrics.contains("spangate_inflight_body_bytes 0"),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_budget_smaller_than_the_body_cap_is_refused_at_start() {
    let err = match Harness::try_start(Options {
        server_extra: "  memory_budget: 32KiB\n".into(),
        ..Default::default()
    })
    .await
    {
        Ok(_) => panic!("start-up must refuse memory_budget < max_body"),
        Err(e) => e,
    };
    assert!(err.contains("memory_budget"), "{err}");
    assert!(err.contains("test.yaml:"), "file:line in {err}");
}
