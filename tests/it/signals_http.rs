//! Traces, metrics and logs over OTLP/HTTP (protobuf and JSON): the same
//! policy on every signal's resources, the endpoint's signal in the audit.

use crate::common;

use bytes::Bytes;
use common::{Harness, Options};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const ENDPOINTS: &str = "endpoints:
  traces: { path: /v1/traces, upstream: lightstep }
  metrics: { path: /v1/metrics, upstream: lightstep }
  logs: { path: /v1/logs, upstream: lightstep }
protected_attributes: [\"spangate.\"]
";

fn policy(on_violation: &str) -> Vec<(&'static str, String)> {
    let edge = format!(
        "roles:
  pub:
    publish:
      endpoints: [traces, metrics, logs]
      services: [\"${{claims.project}}\", \"${{claims.project}}-*\"]
      rate: {{ items_per_second: 1000, burst: 1 }}
      on_violation: {on_violation}
bindings:
  - name: edge
    role: pub
    subjects:
      - provider: dev
        claims: {{ owner_id: team_demo }}
    credential: lightstep-prod
    stamp:
      vercel.project_id: \"${{claims.project_id}}\"
"
    );
    vec![
        ("endpoints.yaml", ENDPOINTS.to_string()),
        ("edge.yaml", edge),
    ]
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", service), kv("spangate.smuggled", "x")],
        ..Default::default()
    })
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// A metrics batch: one resource per service, `points` gauge points each.
pub fn metrics_batch(services: &[&str], points: usize) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: services
            .iter()
            .map(|s| ResourceMetrics {
                resource: resource(s),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "requests".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: (0..points)
                                .map(|i| NumberDataPoint {
                                    time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                                    value: Some(number_data_point::Value::AsInt(i as i64)),
                                    ..Default::default()
                                })
                                .collect(),
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// A logs batch: one resource per service, `records` records each.
pub fn logs_batch(services: &[&str], records: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: services
            .iter()
            .map(|s| ResourceLogs {
                resource: resource(s),
                scope_logs: vec![ScopeLogs {
                    log_records: (0..records)
                        .map(|i| LogRecord {
                            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(format!("line {i}"))),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// A traces batch: one resource per service, `spans` spans each.
pub fn traces_batch(services: &[&str], spans: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: services
            .iter()
            .map(|s| ResourceSpans {
                resource: resource(s),
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans)
                        .map(|i| Span {
                            trace_id: vec![1; 16],
                            span_id: vec![i as u8 + 1; 8],
                            name: format!("op{i}"),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// The service names and stamped project ids of the resources of a
/// forwarded protobuf body of `path`'s signal, and its item count.
fn forwarded(path: &str, body: &[u8]) -> (Vec<String>, usize) {
    let attrs = |r: &Option<Resource>| {
        let r = r.as_ref().expect("resource");
        assert!(
            !r.attributes.iter().any(|kv| kv.key == "spangate.smuggled"),
            "protected attribute forwarded"
        );
        let get = |k: &str| {
            r.attributes
                .iter()
                .find(|kv| kv.key == k)
                .map(|kv| spangate::otlp::render_value(kv.value.as_ref()))
                .unwrap_or_default()
        };
        format!("{}@{}", get("service.name"), get("vercel.project_id"))
    };
    match path {
        "/v1/metrics" => {
            let m = ExportMetricsServiceRequest::decode(body).expect("metrics protobuf");
            let points = m
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| match &m.data {
                    Some(metric::Data::Gauge(g)) => g.data_points.len(),
                    _ => 0,
                })
                .sum();
            (
                m.resource_metrics
                    .iter()
                    .map(|r| attrs(&r.resource))
                    .collect(),
                points,
            )
        }
        "/v1/logs" => {
            let m = ExportLogsServiceRequest::decode(body).expect("logs protobuf");
            let n = m
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum();
            (
                m.resource_logs.iter().map(|r| attrs(&r.resource)).collect(),
                n,
            )
        }
        _ => {
            let m = ExportTraceServiceRequest::decode(body).expect("traces protobuf");
            let n = m
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            (
                m.resource_spans
                    .iter()
                    .map(|r| attrs(&r.resource))
                    .collect(),
                n,
            )
        }
    }
}

fn body_for(path: &str, services: &[&str], n: usize, json: bool) -> Bytes {
    let b = match (path, json) {
        ("/v1/metrics", false) => metrics_batch(services, n).encode_to_vec(),
        ("/v1/metrics", true) => serde_json::to_vec(&metrics_batch(services, n)).unwrap(),
        ("/v1/logs", false) => logs_batch(services, n).encode_to_vec(),
        ("/v1/logs", true) => serde_json::to_vec(&logs_batch(services, n)).unwrap(),
        (_, false) => traces_batch(services, n).encode_to_vec(),
        (_, true) => serde_json::to_vec(&traces_batch(services, n)).unwrap(),
    };
    Bytes::from(b)
}

#[tokio::test]
async fn every_signal_in_both_encodings_drops_the_foreign_resource_and_stamps_the_rest() {
    let h = Harness::start_with(Options {
        policies: Some(policy("drop")),
        ..Default::default()
    })
    .await;
    let token = h.token("edge-prod");
    let mut sent = 0;
    for (path, signal, items) in [
        ("/v1/traces", "traces", "spans"),
        ("/v1/metrics", "metrics", "data points"),
        ("/v1/logs", "logs", "log records"),
    ] {
        for json in [false, true] {
            let ct = if json {
                "application/json"
            } else {
                "application/x-protobuf"
            };
            let body = body_for(path, &["checkout", "payments"], 3, json);
            let resp = h.post(path, Some(&token), ct, body, &[]).await;
            assert_eq!(resp.status(), 200, "{path} {ct}: {:?}", resp.body());
            let line = h.last_audit();
            assert_eq!(line["signal"], signal, "{line}");
            assert_eq!(line["endpoint"], signal, "{line}");
            assert_eq!(line["decision"], "partial", "{line}");
            assert_eq!(line["spans"], 6, "{line}");
            assert_eq!(line["spans_dropped"], 3, "{line}");
            // The client is told what was dropped, in its encoding.
            if json {
                let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
                let msg = v["partialSuccess"]["errorMessage"].as_str().unwrap_or("");
                assert!(msg.contains(&format!("3 {items} dropped")), "{v}");
            }
            sent += 1;
            let got = h.upstream.received();
            assert_eq!(got.len(), sent);
            let r = got.last().unwrap();
            let (services, n) = if json {
                // OTLP/JSON of every signal is forwarded as JSON.
                assert_eq!(r.header("content-type"), Some("application/json"));
                let proto = match path {
                    "/v1/metrics" => serde_json::from_slice::<ExportMetricsServiceRequest>(&r.body)
                        .unwrap()
                        .encode_to_vec(),
                    "/v1/logs" => serde_json::from_slice::<ExportLogsServiceRequest>(&r.body)
                        .unwrap()
                        .encode_to_vec(),
                    _ => serde_json::from_slice::<ExportTraceServiceRequest>(&r.body)
                        .unwrap()
                        .encode_to_vec(),
                };
                forwarded(path, &proto)
            } else {
                assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
                forwarded(path, &r.body)
            };
            assert_eq!(
                services,
                vec!["checkout@prj_checkout".to_string()],
                "{path} {ct}"
            );
            assert_eq!(n, 3, "{path} {ct}");
        }
    }
    h.stop().await;
}

/// OTLP/JSON metrics and logs (forwarded as JSON to an OTLP/HTTP upstream)
/// reach an OTLP/gRPC upstream as protobuf, converted there, still with the
/// foreign resource dropped, the rest stamped; the client's answer is JSON.
#[tokio::test]
async fn json_metrics_and_logs_reach_a_grpc_upstream_as_protobuf() {
    let h = Harness::start_with(Options {
        policies: Some(policy("drop")),
        upstream_grpc: true,
        ..Default::default()
    })
    .await;
    let token = h.token("edge-prod");
    for path in ["/v1/metrics", "/v1/logs"] {
        let body = body_for(path, &["checkout", "payments"], 3, true);
        let resp = h
            .post(path, Some(&token), "application/json", body, &[])
            .await;
        assert_eq!(resp.status(), 200, "{path}: {:?}", resp.body());
        assert_eq!(resp.headers()["content-type"], "application/json");
        let got = h.upstream.take();
        assert_eq!(got.len(), 1, "{path}");
        assert!(got[0].grpc, "{path}: delivered over gRPC");
        let (services, n) = forwarded(path, &got[0].body);
        assert_eq!(
            services,
            vec!["checkout@prj_checkout".to_string()],
            "{path}"
        );
        assert_eq!(n, 3, "{path}");
    }
    h.stop().await;
}

#[tokio::test]
async fn metrics_claiming_another_service_are_refused_exactly_as_traces() {
    let h = Harness::start_with(Options {
        policies: Some(policy("reject")),
        ..Default::default()
    })
    .await;
    let token = h.token("edge-prod");
    let mut lines = Vec::new();
    for path in ["/v1/traces", "/v1/metrics", "/v1/logs"] {
        let body = body_for(path, &["checkout", "payments"], 2, false);
        let resp = h
            .post(path, Some(&token), "application/x-protobuf", body, &[])
            .await;
        assert_eq!(resp.status(), 403, "{path}");
        let line = h.last_audit();
        assert_eq!(line["decision"], "deny");
        lines.push((line["reason"].clone(), line["rule"].clone()));
    }
    assert!(h.upstream.received().is_empty());
    assert_eq!(lines[0], lines[1]);
    assert_eq!(lines[0], lines[2]);
    h.stop().await;
}

#[tokio::test]
async fn item_rate_limit_counts_data_points_and_log_records() {
    let h = Harness::start_with(Options {
        policies: Some(policy("reject")),
        ..Default::default()
    })
    .await;
    let token = h.token("edge-prod");
    // 1000 items per second with a one-second bucket: 1200 points are more
    // than one batch may ever carry.
    for path in ["/v1/metrics", "/v1/logs"] {
        let body = body_for(path, &["checkout"], 1200, false);
        let resp = h
            .post(path, Some(&token), "application/x-protobuf", body, &[])
            .await;
        assert_eq!(resp.status(), 413, "{path}: {:?}", resp.body());
        assert_eq!(h.last_audit()["reason"], "batch_exceeds_burst");
        assert_eq!(h.last_audit()["spans"], 1200);
    }
    // 700 data points pass; 700 log records right after do not fit what is
    // left of the same identity's bucket.
    let body = body_for("/v1/metrics", &["checkout"], 700, false);
    let resp = h
        .post(
            "/v1/metrics",
            Some(&token),
            "application/x-protobuf",
            body,
            &[],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = body_for("/v1/logs", &["checkout"], 700, false);
    let resp = h
        .post(
            "/v1/logs",
            Some(&token),
            "application/x-protobuf",
            body,
            &[],
        )
        .await;
    assert_eq!(resp.status(), 429, "{:?}", resp.body());
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(h.upstream.received().len(), 1);
    h.stop().await;
}
