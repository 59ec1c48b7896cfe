//! OTLP/gRPC egress end to end: an OTLP/HTTP client publishes through the
//! whole app to the recording upstream speaking OTLP/gRPC (h2c on loopback):
//! the credential in metadata, never the client's token; the gRPC status
//! mapped onto the retry semantics (UNAVAILABLE retried, RESOURCE_EXHAUSTED
//! retried only with RetryInfo and after its delay); partial success passed
//! back; rotation applies on the next call; one pooled connection.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::{Harness, LIGHTSTEP_TOKEN, Options, sha256_hex};
use http::Method;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::{Value, json};
use spangate::dev::upstream::Behavior;
use spangate::otlp::code;

const TRACE_METHOD: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const ADMIN_TOKEN: &str = "bootstrap-admin-grpc-5e1a";
const NEW_TOKEN: &str = "ls-rotated-grpc-token-77c4";

async fn harness() -> Harness {
    Harness::start_with(Options {
        upstream_grpc: true,
        admin_extra: format!("  bootstrap_token_sha256: {}\n", sha256_hex(ADMIN_TOKEN)),
        policies: Some(common::shipped_policies_unthrottled()),
        upstream_timeout: "5s",
        ..Default::default()
    })
    .await
}

fn protobuf_batch(service: &str, spans: usize) -> Bytes {
    let json = spangate::dev::sample_batch_json(service, spans);
    let batch = spangate::otlp::decode(spangate::otlp::Encoding::Json, Bytes::from(json)).unwrap();
    Bytes::from(batch.request.encode_to_vec())
}

async fn send_json(h: &Harness, token: &str) -> http::Response<Bytes> {
    h.post(
        "/v1/traces",
        Some(token),
        "application/json",
        spangate::dev::sample_batch_json("checkout", 3),
        &[],
    )
    .await
}

#[tokio::test]
async fn an_http_json_client_is_delivered_over_grpc_with_the_credential_in_metadata() {
    let h = harness().await;
    let token = h.token("edge-prod");
    let resp = h
        .post(
            "/v1/traces",
            Some(&token),
            "application/json",
            spangate::dev::sample_batch_json("checkout", 3),
            &[("lightstep-access-token", "client-smuggled")],
        )
        .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = serde_json::from_slice(resp.body()).unwrap();
    assert!(v.is_object(), "{v}");

    let got = h.upstream.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert!(r.grpc, "delivered over gRPC");
    assert_eq!(r.path, TRACE_METHOD);
    assert_eq!(r.header("content-type"), Some("application/grpc"));
    assert_eq!(r.header("te"), Some("trailers"));
    let timeout = r.header("grpc-timeout").expect("grpc-timeout sent");
    assert!(timeout.ends_with('m'), "{timeout}");
    // Our credential, once; the client's token and smuggled header never.
    assert_eq!(r.header("lightstep-access-token"), Some(LIGHTSTEP_TOKEN));
    assert_eq!(
        r.headers.get_all("lightstep-access-token").iter().count(),
        1
    );
    assert!(r.header("authorization").is_none());
    let wire = format!("{:?}", r.headers);
    assert!(!wire.contains(&token), "client token crossed");
    // The JSON batch arrives as the protobuf the gRPC service expects.
    let sent = ExportTraceServiceRequest::decode(r.body.clone()).unwrap();
    assert_eq!(sent.resource_spans[0].scope_spans[0].spans.len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn a_protobuf_client_is_delivered_over_grpc_and_gzip_uses_grpc_encoding() {
    let h = harness().await;
    let token = h.token("edge-prod");
    let body = protobuf_batch("checkout", 4);
    let resp = h
        .post(
            "/v1/traces",
            Some(&token),
            "application/x-protobuf",
            body.clone(),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let got = h.upstream.take();
    assert_eq!(got.len(), 1);
    let sent = ExportTraceServiceRequest::decode(got[0].body.clone()).unwrap();
    assert_eq!(sent.resource_spans[0].scope_spans[0].spans.len(), 4);

    // A gzip client: the message travels compressed per grpc-encoding.
    let gz = spangate::otlp::gzip(&body, 6);
    let resp = h
        .post(
            "/v1/traces",
            Some(&token),
            "application/x-protobuf",
            gz,
            &[("content-encoding", "gzip")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let got = h.upstream.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].content_encoding.as_deref(), Some("gzip"));
    let sent = ExportTraceServiceRequest::decode(got[0].body.clone()).unwrap();
    assert_eq!(sent.resource_spans[0].scope_spans[0].spans.len(), 4);
    h.stop().await;
}

#[tokio::test]
async fn grpc_batches_share_one_pooled_connection() {
    let h = harness().await;
    let token = h.token("edge-prod");
    for _ in 0..5 {
        assert_eq!(send_json(&h, &token).await.status(), 200);
    }
    assert_eq!(h.upstream.received().len(), 5);
    assert_eq!(
        h.upstream.connections(),
        1,
        "one multiplexed HTTP/2 connection"
    );
    h.stop().await;
}

#[tokio::test]
async fn unavailable_is_retried_and_then_delivered() {
    let h = harness().await;
    let token = h.token("edge-prod");
    h.upstream.set_behavior(Behavior::Times(
        1,
        Box::new(Behavior::Grpc {
            code: code::UNAVAILABLE,
            retry_delay: None,
        }),
    ));
    let resp = send_json(&h, &token).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    assert_eq!(h.upstream.received().len(), 2, "retried once");
    assert_eq!(h.last_audit()["upstream_attempts"], 2);
    h.stop().await;
}

#[tokio::test]
async fn unavailable_every_time_is_a_retryable_answer_after_the_attempts() {
    let h = harness().await;
    let token = h.token("edge-prod");
    h.upstream.set_behavior(Behavior::Grpc {
        code: code::UNAVAILABLE,
        retry_delay: None,
    });
    let resp = send_json(&h, &token).await;
    assert_eq!(resp.status(), 503, "{:?}", resp.body());
    assert_eq!(
        h.upstream.received().len(),
        spangate::forward::MAX_ATTEMPTS as usize
    );
    h.stop().await;
}

#[tokio::test]
async fn resource_exhausted_with_retry_info_is_retried_after_its_delay() {
    let h = harness().await;
    let token = h.token("edge-prod");
    let delay = Duration::from_millis(700);
    h.upstream.set_behavior(Behavior::Times(
        1,
        Box::new(Behavior::Grpc {
            code: code::RESOURCE_EXHAUSTED,
            retry_delay: Some(delay),
        }),
    ));
    let resp = send_json(&h, &token).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let got = h.upstream.received();
    assert_eq!(got.len(), 2, "retried once");
    // The RetryInfo delay was waited out (a lower bound, not a speed claim).
    assert!(
        got[1].at.duration_since(got[0].at) >= delay,
        "retried after {:?}",
        got[1].at.duration_since(got[0].at)
    );
    h.stop().await;
}

#[tokio::test]
async fn resource_exhausted_without_retry_info_is_not_retried() {
    let h = harness().await;
    let token = h.token("edge-prod");
    h.upstream.set_behavior(Behavior::Grpc {
        code: code::RESOURCE_EXHAUSTED,
        retry_delay: None,
    });
    let resp = send_json(&h, &token).await;
    assert_eq!(resp.status(), 413, "{:?}", resp.body());
    assert!(resp.headers().get("retry-after").is_none());
    assert_eq!(h.upstream.received().len(), 1, "not retried");
    // The audit line keeps the upstream's own gRPC code beside the mapping.
    let audit = h.last_audit();
    assert_eq!(audit["upstream_status"], 413, "{audit}");
    assert_eq!(
        audit["upstream_grpc_status"],
        code::RESOURCE_EXHAUSTED,
        "{audit}"
    );
    assert!(audit.get("upstream_pieces").is_none(), "{audit}");
    h.stop().await;
}

#[tokio::test]
async fn invalid_argument_is_final_and_explained_in_the_clients_encoding() {
    let h = harness().await;
    let token = h.token("edge-prod");
    h.upstream.set_behavior(Behavior::Grpc {
        code: code::INVALID_ARGUMENT,
        retry_delay: None,
    });
    let resp = send_json(&h, &token).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(v["code"], code::INVALID_ARGUMENT, "{v}");
    assert_eq!(h.upstream.received().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn unauthenticated_is_an_upstream_credential_refusal() {
    let h = harness().await;
    let token = h.token("edge-prod");
    h.upstream
        .accept_only("lightstep-access-token", Some(&["some-other-token"]));
    let resp = send_json(&h, &token).await;
    // As for an OTLP/HTTP upstream's 401: our credential is wrong.
    assert_eq!(
        h.last_audit()["reason"],
        "upstream_auth_failed",
        "{}",
        h.last_audit()
    );
    assert!(resp.status().is_server_error(), "{}", resp.status());
    h.stop().await;
}

#[tokio::test]
async fn partial_success_from_a_grpc_upstream_reaches_the_json_client() {
    let h = harness().await;
    let token = h.token("edge-prod");
    h.upstream.set_behavior(Behavior::Partial {
        rejected: 2,
        message: "2 spans too old".into(),
    });
    let resp = send_json(&h, &token).await;
    assert_eq!(resp.status(), 200);
    let v: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], 2, "{v}");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("2 spans too old"),
        "{v}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_rotated_credential_applies_on_the_next_grpc_call() {
    let h = harness().await;
    let token = h.token("edge-prod");
    assert_eq!(send_json(&h, &token).await.status(), 200);
    // The operator creates the new token upstream first, then rotates; the
    // rotation's verification probe is itself a gRPC Export.
    h.upstream.accept_only(
        "lightstep-access-token",
        Some(&[LIGHTSTEP_TOKEN, NEW_TOKEN]),
    );
    let (status, body) = h
        .admin(
            Method::POST,
            "/admin/v1/secrets/lightstep-prod/rotate",
            Some(ADMIN_TOKEN),
            Some(json!({"value": NEW_TOKEN, "grace": "1m"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verify"]["result"], "accepted", "{body}");
    let probe = h.upstream.received().pop().unwrap();
    assert!(probe.grpc && probe.path == TRACE_METHOD, "{probe:?}");
    assert_eq!(probe.header("lightstep-access-token"), Some(NEW_TOKEN));

    h.upstream.clear();
    assert_eq!(send_json(&h, &token).await.status(), 200);
    let got = h.upstream.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].grpc);
    assert_eq!(got[0].header("lightstep-access-token"), Some(NEW_TOKEN));
    h.stop().await;
}

#[tokio::test]
async fn grpc_over_tls_negotiates_h2_and_trusts_only_the_configured_ca() {
    spangate::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (acceptor, ca_file) = crate::proxy_transport::tls_upstream_acceptor(dir.path());
    for trusted in [true, false] {
        let idp = crate::common::demo_idp().await;
        let upstream = spangate::dev::upstream::RecordingUpstream::start_with_tls(
            "127.0.0.1:0".parse().unwrap(),
            Some(acceptor.clone()),
        )
        .await
        .unwrap();
        let opts = Options {
            upstream_url: Some(format!("https://localhost:{}", upstream.addr().port())),
            upstream_extra: if trusted {
                format!(", protocol: grpc, ca_file: \"{}\"", ca_file.display())
            } else {
                ", protocol: grpc".into()
            },
            ..Default::default()
        };
        let h = Harness::start_app(opts, idp, upstream).await.unwrap();
        let resp = send_json(&h, &h.token("edge-prod")).await;
        if trusted {
            assert_eq!(resp.status(), 200, "{:?}", resp.body());
            let got = h.upstream.received();
            assert_eq!(got.len(), 1);
            assert!(got[0].grpc);
            assert_eq!(got[0].path, TRACE_METHOD);
            assert_eq!(
                got[0].header("lightstep-access-token"),
                Some(LIGHTSTEP_TOKEN)
            );
        } else {
            assert_eq!(resp.status(), 502);
            assert_eq!(h.last_audit()["reason"], "upstream_unavailable");
            assert!(h.upstream.received().is_empty());
        }
        h.stop().await;
    }
}

#[tokio::test]
async fn the_dev_report_reads_grpc_deliveries() {
    let h = harness().await;
    assert_eq!(send_json(&h, &h.token("edge-prod")).await.status(), 200);
    let r = h.upstream.received().pop().unwrap();
    let lines = spangate::dev::report::describe(&r, &Default::default());
    assert!(
        lines[0].starts_with(&format!("upstream <- {TRACE_METHOD} 3 spans (protobuf")),
        "{lines:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn spangate_dev_demo_delivers_over_grpc_with_upstream_grpc() {
    let code = spangate::dev::run(spangate::dev::DevArgs {
        demo: true,
        upstream_grpc: true,
        ..Default::default()
    })
    .await
    .expect("demo ran");
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}

/// Policy with an endpoint per signal on the one upstream.
fn signal_policies() -> Vec<(&'static str, String)> {
    let endpoints = "endpoints:
  traces: { path: /v1/traces, upstream: lightstep }
  metrics: { path: /v1/metrics, upstream: lightstep }
  logs: { path: /v1/logs, upstream: lightstep }
";
    let edge = "roles:
  pub:
    publish:
      endpoints: [traces, metrics, logs]
      services: [\"${claims.project}\", \"${claims.project}-*\"]
bindings:
  - name: edge
    role: pub
    subjects:
      - provider: dev
        claims: { owner_id: team_demo }
    credential: lightstep-prod
";
    vec![
        ("endpoints.yaml", endpoints.to_string()),
        ("edge.yaml", edge.to_string()),
    ]
}

#[tokio::test]
async fn metrics_and_logs_over_http_reach_their_grpc_services() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let h = Harness::start_with(Options {
        upstream_grpc: true,
        policies: Some(signal_policies()),
        ..Default::default()
    })
    .await;
    let token = h.token("edge-prod");
    let resource = Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("checkout".into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource.clone(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint::default(); 2],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource,
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); 3],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    for (path, body) in [
        ("/v1/metrics", metrics.encode_to_vec()),
        ("/v1/logs", logs.encode_to_vec()),
    ] {
        let resp = h
            .post(path, Some(&token), "application/x-protobuf", body, &[])
            .await;
        assert_eq!(resp.status(), 200, "{path}: {:?}", resp.body());
    }
    let got = h.upstream.received();
    assert_eq!(
        got.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        [
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        ]
    );
    let m = ExportMetricsServiceRequest::decode(got[0].body.clone()).unwrap();
    assert_eq!(
        m.resource_metrics[0].scope_metrics[0].metrics[0].name,
        "queue.depth"
    );
    let l = ExportLogsServiceRequest::decode(got[1].body.clone()).unwrap();
    assert_eq!(l.resource_logs[0].scope_logs[0].log_records.len(), 3);
    h.stop().await;
}
