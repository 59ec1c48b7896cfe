//! Data-path cost per batch: read body + decode + summary + rewrite (stamp,
//! drop none) + re-encode, against plain pass-through (read body + copy),
//! for 10, 100 and 1000 spans, protobuf and JSON; `decode` alone shows
//! how much of the pipeline is the decoder.
//!
//! The `wire-*` groups compare the wire-level protobuf path (scan + splice:
//! spans, data points and log records never decoded) with the full prost
//! decode (+ rewrite + re-encode) at 1, 50 and 500 items, for traces,
//! metrics and logs; the `json-*` groups do the same for OTLP/JSON: the
//! full path (serde decode, rewrite, re-serialise) against the JSON wire
//! path (scan + splice), per signal.
//!
//! `cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::Full;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use spangate::otlp::json_wire::{self, oracle as json_oracle};
use spangate::otlp::wire::{self, oracle, oracle::Edit};
use spangate::otlp::{self, Encoding, Signal};

const CAP: usize = 64 << 20;

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        key_strindex: 0,
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// A batch shaped like an edge function's: one resource, one scope, `n`
/// HTTP server/client spans with ~8 attributes and one event each.
fn request(n: usize) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| {
            let i64i = i as i64;
            Span {
                trace_id: (0..16u8).map(|b| b ^ (i as u8)).collect(),
                span_id: (0..8u8).map(|b| b.wrapping_add(i as u8)).collect(),
                parent_span_id: if i == 0 {
                    vec![]
                } else {
                    vec![1, 2, 3, 4, 5, 6, 7, 8]
                },
                name: format!("GET /api/items/{i}"),
                kind: if i % 2 == 0 {
                    span::SpanKind::Server
                } else {
                    span::SpanKind::Client
                } as i32,
                start_time_unix_nano: 1_712_345_678_901_000_000 + i as u64 * 1000,
                end_time_unix_nano: 1_712_345_678_951_000_000 + i as u64 * 1000,
                attributes: vec![
                    kv("http.request.method", s("GET")),
                    kv("http.route", s("/api/items/:id")),
                    kv(
                        "url.full",
                        s("https://shop.example.com/api/items/12345?ref=home"),
                    ),
                    kv("http.response.status_code", any_value::Value::IntValue(200)),
                    kv("server.address", s("shop.example.com")),
                    kv("user_agent.original", s("Mozilla/5.0 (X11; Linux x86_64)")),
                    kv("edge.cold_start", any_value::Value::BoolValue(i == 0)),
                    kv("edge.cpu_ms", any_value::Value::DoubleValue(1.5 + i as f64)),
                    kv("retry.count", any_value::Value::IntValue(i64i % 3)),
                ],
                events: vec![span::Event {
                    time_unix_nano: 1_712_345_678_911_000_000,
                    name: "cache.lookup".into(),
                    attributes: vec![kv("cache.hit", any_value::Value::BoolValue(false))],
                    dropped_attributes_count: 0,
                }],
                status: Some(Status {
                    message: String::new(),
                    code: 1,
                }),
                flags: 257,
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("shop-edge")),
                    kv("telemetry.sdk.language", s("nodejs")),
                    kv("telemetry.sdk.name", s("opentelemetry")),
                    kv("telemetry.sdk.version", s("1.30.1")),
                    kv("vercel.region", s("iad1")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "@vercel/otel".into(),
                    version: "1.10.0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

async fn passthrough(raw: Bytes) -> Bytes {
    let body = otlp::read_body(Full::new(raw), None, CAP)
        .await
        .unwrap_or_default();
    Bytes::copy_from_slice(&body)
}

async fn pipeline(
    raw: Bytes,
    encoding: Encoding,
    stamp: &[(String, String)],
    protected: &[String],
) -> Bytes {
    let body = otlp::read_body(Full::new(raw), None, CAP)
        .await
        .unwrap_or_default();
    let Ok(mut batch) = otlp::decode(encoding, body) else {
        return Bytes::new();
    };
    let keep = vec![true; batch.summary.resources.len()];
    let outcome = otlp::rewrite(&mut batch, &keep, stamp, protected);
    otlp::forward_body(&batch, &outcome)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let stamp: Vec<(String, String)> = vec![
        (
            "spangate.subject".into(),
            "owner:acme:project:shop:environment:production".into(),
        ),
        ("spangate.provider".into(), "vercel".into()),
        ("deployment.environment.name".into(), "production".into()),
    ];
    let protected: Vec<String> = vec!["spangate.*".into(), "vercel.".into()];

    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let name = match encoding {
            Encoding::Protobuf => "protobuf",
            Encoding::Json => "json",
        };
        let mut group = c.benchmark_group(name);
        for n in [10usize, 100, 1000] {
            let raw = otlp::encode_request(encoding, &request(n));
            // Sanity: the pipeline really decodes and re-encodes this body.
            let out = rt.block_on(pipeline(raw.clone(), encoding, &stamp, &protected));
            assert!(otlp::decode(encoding, out).is_ok_and(|b| b.summary.spans == n));

            group.throughput(Throughput::Bytes(raw.len() as u64));
            group.bench_with_input(BenchmarkId::new("passthrough", n), &raw, |b, raw| {
                b.to_async(&rt).iter(|| passthrough(black_box(raw.clone())));
            });
            // Where the time goes: decode + validate + summary alone.
            group.bench_with_input(BenchmarkId::new("decode", n), &raw, |b, raw| {
                b.iter(|| otlp::decode(encoding, black_box(raw.clone())).map(|b| b.summary.spans));
            });
            group.bench_with_input(BenchmarkId::new("pipeline", n), &raw, |b, raw| {
                b.to_async(&rt)
                    .iter(|| pipeline(black_box(raw.clone()), encoding, &stamp, &protected));
            });
        }
        group.finish();
    }
}

/// Metrics: `n` gauge data points with 3 attributes under one resource.
fn metrics(n: usize) -> ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    let points = (0..n)
        .map(|i| NumberDataPoint {
            attributes: vec![
                kv("http.route", s("/api/items/:id")),
                kv("http.response.status_code", any_value::Value::IntValue(200)),
                kv("edge.region", s("iad1")),
            ],
            time_unix_nano: 1_712_345_678_901_000_000 + i as u64,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: request(0).resource_spans[0].resource.clone(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.duration".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// Logs: `n` log records with a body and 3 attributes under one resource.
fn logs(n: usize) -> ExportLogsServiceRequest {
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: 1_712_345_678_901_000_000 + i as u64,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(s("request served from cache in 3 ms")),
            }),
            attributes: vec![
                kv("http.route", s("/api/items/:id")),
                kv("http.response.status_code", any_value::Value::IntValue(200)),
                kv("edge.region", s("iad1")),
            ],
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: request(0).resource_spans[0].resource.clone(),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// Wire path vs full decode, per signal, at 1 / 50 / 500 items.
fn wire(c: &mut Criterion) {
    let stamp: Vec<(String, String)> = vec![
        (
            "spangate.subject".into(),
            "owner:acme:project:shop:environment:production".into(),
        ),
        ("deployment.environment.name".into(), "production".into()),
    ];
    let protected: Vec<String> = vec!["spangate.*".into(), "vercel.".into()];
    let edit = Edit {
        keep: vec![true],
        stamp: stamp.clone(),
        protected: protected.clone(),
    };
    for signal in Signal::ALL {
        let mut group = c.benchmark_group(format!("wire-{}", signal.as_str()));
        for n in [1usize, 50, 500] {
            let raw = Bytes::from(match signal {
                Signal::Traces => request(n).encode_to_vec(),
                Signal::Metrics => metrics(n).encode_to_vec(),
                Signal::Logs => logs(n).encode_to_vec(),
            });
            // Sanity: both paths agree on this body.
            assert_eq!(oracle::compare(signal, &raw, &edit), Ok(()));
            group.throughput(Throughput::Bytes(raw.len() as u64));
            group.bench_with_input(BenchmarkId::new("full-decode", n), &raw, |b, raw| {
                b.iter(|| oracle::full_summary(signal, black_box(raw)).map(|s| s.spans));
            });
            group.bench_with_input(BenchmarkId::new("scan", n), &raw, |b, raw| {
                b.iter(|| wire::scan(signal, black_box(raw.clone())).map(|s| s.summary.spans));
            });
            group.bench_with_input(BenchmarkId::new("full-rewrite", n), &raw, |b, raw| {
                b.iter(|| {
                    oracle::full_rewrite(signal, black_box(raw), &edit).map(|(body, _)| body.len())
                });
            });
            group.bench_with_input(BenchmarkId::new("scan-splice", n), &raw, |b, raw| {
                b.iter(|| {
                    wire::scan(signal, black_box(raw.clone()))
                        .and_then(|s| s.splice(&edit.keep, &stamp, &protected))
                        .map(|o| o.body.len())
                });
            });
        }
        group.finish();
    }
    // OTLP/JSON, per signal: the full path (serde decode + validation +
    // summary, rewrite, re-serialise; metrics and logs via protobuf) against
    // the JSON wire path (scan + splice), receive + rewrite as the proxy
    // calls them, and the scan alone.
    for signal in Signal::ALL {
        let mut group = c.benchmark_group(format!("json-{}", signal.as_str()));
        for n in [1usize, 50, 500] {
            let raw = Bytes::from(
                match signal {
                    Signal::Traces => serde_json::to_vec(&request(n)),
                    Signal::Metrics => serde_json::to_vec(&metrics(n)),
                    Signal::Logs => serde_json::to_vec(&logs(n)),
                }
                .unwrap_or_default(),
            );
            // Sanity: the wire path takes this body and agrees with the full path.
            assert_eq!(
                json_oracle::compare(signal, &raw, &edit, &[]),
                Ok(json_oracle::Verdict::Agreed)
            );
            group.throughput(Throughput::Bytes(raw.len() as u64));
            group.bench_with_input(BenchmarkId::new("full", n), &raw, |b, raw| {
                b.iter(|| {
                    otlp::receive_full(signal, Encoding::Json, black_box(raw.clone()))
                        .and_then(|r| r.rewrite(&edit.keep, &stamp, &protected))
                        .map(|r| r.body.map(|b| b.len()))
                });
            });
            group.bench_with_input(BenchmarkId::new("wire", n), &raw, |b, raw| {
                b.iter(|| {
                    otlp::receive(signal, Encoding::Json, black_box(raw.clone()))
                        .and_then(|r| r.rewrite(&edit.keep, &stamp, &protected))
                        .map(|r| r.body.map(|b| b.len()))
                });
            });
            group.bench_with_input(BenchmarkId::new("scan", n), &raw, |b, raw| {
                b.iter(|| json_wire::scan(signal, black_box(raw.clone())).map(|s| s.summary.spans));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench, wire);
criterion_main!(benches);
