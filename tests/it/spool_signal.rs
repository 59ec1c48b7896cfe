//! A spooled batch carries its OTLP signal: it is delivered to the
//! upstream's target for that signal even when the policy that routed it no
//! longer has its endpoint; records written before the signal was stored
//! (format 1) keep the old lookup by endpoint name.

use std::path::Path;

use bytes::Bytes;
use prost::Message;
use serde_json::Value;
use spangate::dev::upstream::Behavior;
use spangate::spool::{Spooled, log, record};

use crate::common::{Harness, Options};

const ADMIN: &str = "spool-signal-admin-token";
/// The harness's upstream has no preset: `url` ends in Lightstep's
/// `/traces/otlp/v0.9`, so metrics go to the sibling path.
const TRACES_TARGET: &str = "/traces/otlp/v0.9";
const METRICS_TARGET: &str = "/metrics/otlp/v0.9";

/// The shipped policies, unthrottled, with a `metrics` endpoint routed to
/// the same upstream when `with_metrics`.
fn write_policies(dir: &Path, with_metrics: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in crate::common::shipped_policies_unthrottled() {
        let text = if !with_metrics {
            text
        } else if name == "endpoints.yaml" {
            text.replace(
                "endpoints:\n",
                "endpoints:\n  metrics:\n    path: /v1/metrics\n    upstream: lightstep\n",
            )
        } else {
            text.replace("endpoints: [traces]", "endpoints: [traces, metrics]")
        };
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn opts(spool: &Path, policies: &Path) -> Options {
    Options {
        upstream_extra: format!(", ack: spooled, spool: {{ dir: \"{}\" }}", spool.display()),
        upstream_timeout: "2s",
        admin_extra: format!(
            "  bootstrap_token_sha256: {}\n",
            crate::common::sha256_hex(ADMIN)
        ),
        policies_dir: Some(policies.to_path_buf()),
        ..Default::default()
    }
}

fn delivered(h: &Harness) -> Vec<Value> {
    h.audit_lines()
        .into_iter()
        .filter(|l| l["kind"] == "spool" && l["result"] == "delivered")
        .collect()
}

async fn inspect(h: &Harness, json: bool) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_spangate"))
        .args(["spool", "inspect", "lightstep", "--admin"])
        .arg(format!("http://{}", h.app.admin_addr))
        .args(json.then_some("--json"))
        .env("SPANGATE_ADMIN_TOKEN", ADMIN)
        .output()
        .await
        .expect("run spangate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_spooled_metrics_batch_reaches_the_metrics_target_after_its_endpoint_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    write_policies(&policies, true);
    let h = Harness::start_with(opts(&dir.path().join("spool"), &policies)).await;
    h.upstream.set_behavior(Behavior::Status(503));
    let token = h.token("edge-prod");
    let body = crate::signals_http::metrics_batch(&["checkout"], 3).encode_to_vec();
    let resp = h
        .post(
            "/v1/metrics",
            Some(&token),
            "application/x-protobuf",
            Bytes::from(body),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 200, "acknowledged once spooled");
    let request_id = h.last_audit()["request_id"].as_str().unwrap().to_string();

    // Inspect shows the stored signal, in text and JSON.
    let text = inspect(&h, false).await;
    assert!(text.contains("endpoint=metrics  signal=metrics"), "{text}");
    let v: Value = serde_json::from_str(&inspect(&h, true).await).unwrap();
    assert_eq!(v["queued"][0]["signal"], "metrics", "{v}");
    assert_eq!(v["queued"][0]["request_id"], request_id.as_str());

    // The policy loses its metrics endpoint while the batch waits.
    write_policies(&policies, false);
    let (status, body) = h.reload_policies(&h.token("admin")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !h.app
            .shared
            .policy
            .current()
            .endpoints()
            .iter()
            .any(|e| e.name == "metrics"),
        "the reload removed the endpoint"
    );

    h.upstream.clear();
    h.upstream.set_behavior(Behavior::Accept);
    crate::common::until("delivery", || !delivered(&h).is_empty()).await;
    let line = &delivered(&h)[0];
    assert_eq!(line["signal"], "metrics", "{line}");
    assert_eq!(line["endpoint"], "metrics");
    let got: Vec<_> = h
        .upstream
        .received()
        .into_iter()
        .filter(|r| r.header("x-request-id") == Some(request_id.as_str()))
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, METRICS_TARGET, "not the traces target");
    // What arrived is the metrics request, identity stamped.
    let m =
        opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(
            got[0].body.clone(),
        )
        .expect("a metrics request");
    assert_eq!(m.resource_metrics.len(), 1);
    h.stop().await;
}

/// A format 1 record (this build's record without the signal byte, as
/// earlier builds wrote it).
fn v1_frame(seq: u64, item: &Spooled) -> Vec<u8> {
    let frame = record::encode(seq, item);
    let mut p = frame[record::FRAME_HEADER..].to_vec();
    // version(1) seq(8) enqueued_ms(8) encoding(1) gzip(1) | signal(1)
    p.remove(19);
    p[0] = record::FORMAT_VERSION_1;
    let mut out = Vec::with_capacity(p.len() + record::FRAME_HEADER);
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
    out.extend_from_slice(&p);
    out
}

#[tokio::test]
async fn format_1_records_are_delivered_by_their_endpoints_signal() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    write_policies(&policies, true);
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let item = |endpoint: &str, request_id: &str, encoding, body: Vec<u8>| Spooled {
        body: Bytes::from(body),
        encoding,
        gzip: false,
        signal: Some(spangate::otlp::Signal::Logs),
        user_agent: None,
        credential: "lightstep-prod".into(),
        request_id: request_id.into(),
        endpoint: endpoint.into(),
        provider: Some("dev".into()),
        subject: None,
        spans: 3,
        enqueued_ms: spangate::spool::now_ms(),
    };
    let metrics = crate::signals_http::metrics_batch(&["checkout"], 3).encode_to_vec();
    let traces = spangate::dev::sample_batch_json("checkout", 1).into_bytes();
    use spangate::otlp::Encoding::{Json, Protobuf};
    let mut seg = v1_frame(1, &item("metrics", "old-metrics", Protobuf, metrics));
    // An endpoint the policy no longer has: the old fallback, traces.
    seg.extend(v1_frame(2, &item("gone", "old-traces", Json, traces)));
    std::fs::write(spool.join(log::segment_name(1)), seg).unwrap();

    // The upstream refuses from the first moment: the records stay queued
    // until inspected.
    let idp = crate::common::demo_idp().await;
    let upstream =
        spangate::dev::upstream::RecordingUpstream::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    upstream.set_behavior(Behavior::Status(503));
    let h = Harness::start_app(opts(&spool, &policies), idp, upstream)
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&inspect(&h, true).await).unwrap();
    assert_eq!(v["batches"], 2, "{v}");
    assert!(v["queued"][0]["signal"].is_null(), "not stored: {v}");
    h.upstream.clear();
    h.upstream.set_behavior(Behavior::Accept);
    crate::common::until("both delivered", || delivered(&h).len() == 2).await;
    let path_of = |id: &str| {
        h.upstream
            .received()
            .into_iter()
            .find(|r| r.header("x-request-id") == Some(id))
            .map(|r| r.path)
    };
    assert_eq!(path_of("old-metrics").as_deref(), Some(METRICS_TARGET));
    assert_eq!(path_of("old-traces").as_deref(), Some(TRACES_TARGET));
    h.stop().await;
}
