//! Data-path cost per batch: read body + decode + summary + rewrite (stamp,
//! drop none) + re-encode, against plain pass-through (read body + copy),
//! for 10, 100 and 1000 spans, protobuf and JSON; `decode` alone shows
//! how much of the pipeline is the decoder.
//!
//! `cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::Full;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use spangate::otlp::{self, Encoding};

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

criterion_group!(benches, bench);
criterion_main!(benches);
