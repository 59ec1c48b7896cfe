use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use proptest::prelude::*;
use prost::Message;

use super::oracle::{check, flatten};
use super::*;
use crate::otlp::wire::tests::{damage, damaged, gen_logs, gen_metrics, gen_traces};

const SCHEMA: &str = "https://opentelemetry.io/schemas/1.26.0";

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        key_strindex: 0,
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", service), kv("host.name", "h1")],
        ..Default::default()
    })
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        version: "1.0".into(),
        ..Default::default()
    })
}

fn span(i: usize, pad: usize) -> Span {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Span {
        trace_id: id.to_vec(),
        span_id: id[..8].to_vec(),
        name: format!("span-{i}"),
        attributes: vec![kv("pad", &"x".repeat(pad))],
        end_time_unix_nano: 42,
        ..Default::default()
    }
}

fn scope_spans(name: &str, spans: Vec<Span>) -> ScopeSpans {
    ScopeSpans {
        scope: scope(name),
        spans,
        schema_url: SCHEMA.into(),
    }
}

fn resource_spans(service: &str, scopes: Vec<ScopeSpans>) -> ResourceSpans {
    ResourceSpans {
        resource: resource(service),
        scope_spans: scopes,
        schema_url: SCHEMA.into(),
    }
}

fn body(m: &impl Message) -> Bytes {
    Bytes::from(m.encode_to_vec())
}

fn pieces(signal: Signal, raw: &Bytes, max: usize) -> Vec<Bytes> {
    let p = check(signal, raw, max).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !p.is_empty(),
        "split refused: {:?}",
        split_to_fit(signal, raw.clone(), max)
    );
    p
}

fn items(signal: Signal, raw: &[u8]) -> usize {
    flatten(signal, raw).expect("decodes").items.len()
}

#[test]
fn a_body_that_fits_is_returned_as_is() {
    let raw = body(&ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(
            "web",
            vec![scope_spans("lib", vec![span(1, 10)])],
        )],
    });
    let out = split_to_fit(Signal::Traces, raw.clone(), raw.len()).expect("fits");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].as_ptr(), raw.as_ptr(), "same allocation");
    // Not checked when it fits: the caller scanned it.
    let junk = Bytes::from_static(&[0xff, 0xff]);
    assert_eq!(split_to_fit(Signal::Logs, junk.clone(), 2), Ok(vec![junk]));
}

#[test]
fn whole_resources_are_packed_and_shared() {
    let rs: Vec<_> = (0..5)
        .map(|i| {
            resource_spans(
                &format!("svc-{i}"),
                vec![scope_spans("lib", vec![span(i, 200)])],
            )
        })
        .collect();
    let one = rs[0].encoded_len() + 3;
    let raw = body(&ExportTraceServiceRequest { resource_spans: rs });
    // Two whole resources per piece.
    let out = pieces(Signal::Traces, &raw, 2 * one + 2);
    assert_eq!(out.len(), 3);
    let sc = wire::scan(Signal::Traces, raw.clone()).expect("scan");
    let r = &sc.resources;
    assert_eq!(out[0], raw.slice(r[0].field.start..r[1].field.end));
    assert_eq!(out[1], raw.slice(r[2].field.start..r[3].field.end));
    assert_eq!(out[2], raw.slice(r[4].field.clone()));
    // Slices of the body, not copies.
    assert_eq!(out[1].as_ptr(), raw[r[2].field.start..].as_ptr());
}

#[test]
fn a_resource_is_split_by_scope_with_its_context_in_each_piece() {
    let scopes: Vec<_> = (0..4)
        .map(|i| scope_spans(&format!("lib-{i}"), vec![span(i, 300), span(10 + i, 300)]))
        .collect();
    let one_scope = scopes[0].encoded_len();
    let raw = body(&ExportTraceServiceRequest {
        resource_spans: vec![resource_spans("web", scopes)],
    });
    let out = pieces(Signal::Traces, &raw, one_scope + 200);
    assert_eq!(out.len(), 4);
    for (i, p) in out.iter().enumerate() {
        let req = ExportTraceServiceRequest::decode(p.clone()).expect("decodes");
        assert_eq!(req.resource_spans.len(), 1);
        let rs = &req.resource_spans[0];
        assert_eq!(rs.resource, resource("web"));
        assert_eq!(rs.schema_url, SCHEMA);
        assert_eq!(rs.scope_spans.len(), 1);
        assert_eq!(rs.scope_spans[0].scope, scope(&format!("lib-{i}")));
        assert_eq!(rs.scope_spans[0].spans.len(), 2, "scopes stay whole");
    }
}

#[test]
fn a_scope_is_split_by_span_with_resource_and_scope_in_each_piece() {
    let spans: Vec<_> = (0..10).map(|i| span(i, 400)).collect();
    let one_span = spans[0].encoded_len();
    let raw = body(&ExportTraceServiceRequest {
        resource_spans: vec![resource_spans("web", vec![scope_spans("lib", spans)])],
    });
    let out = pieces(Signal::Traces, &raw, 3 * one_span + 200);
    assert_eq!(out.len(), 4, "3 + 3 + 3 + 1 spans");
    let mut names = Vec::new();
    for p in &out {
        let req = ExportTraceServiceRequest::decode(p.clone()).expect("decodes");
        let rs = &req.resource_spans[0];
        assert_eq!(rs.resource, resource("web"));
        assert_eq!(rs.scope_spans[0].scope, scope("lib"));
        assert_eq!(rs.scope_spans[0].schema_url, SCHEMA);
        names.extend(rs.scope_spans[0].spans.iter().map(|s| s.name.clone()));
    }
    let want: Vec<_> = (0..10).map(|i| format!("span-{i}")).collect();
    assert_eq!(names, want, "every span once, in order");
}

fn number_points(n: usize, pad: usize) -> Vec<NumberDataPoint> {
    (0..n)
        .map(|i| NumberDataPoint {
            attributes: vec![kv("i", &format!("{i}{}", "p".repeat(pad)))],
            time_unix_nano: i as u64,
            value: Some(number_data_point::Value::AsInt(i as i64)),
            ..Default::default()
        })
        .collect()
}

/// One metric of each kind with `n` points of about `pad` bytes.
fn every_kind(n: usize, pad: usize) -> Vec<Metric> {
    let attrs = |i: usize| vec![kv("i", &format!("{i}{}", "p".repeat(pad)))];
    let metric = |name: &str, data| Metric {
        name: name.into(),
        description: format!("{name} description"),
        unit: "ms".into(),
        metadata: vec![kv("meta", name)],
        data: Some(data),
    };
    vec![
        metric(
            "gauge",
            metric::Data::Gauge(Gauge {
                data_points: number_points(n, pad),
            }),
        ),
        metric(
            "sum",
            metric::Data::Sum(Sum {
                data_points: number_points(n, pad),
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "histogram",
            metric::Data::Histogram(Histogram {
                data_points: (0..n)
                    .map(|i| HistogramDataPoint {
                        attributes: attrs(i),
                        count: 3,
                        bucket_counts: vec![1, 2],
                        explicit_bounds: vec![10.0],
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "exp",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: (0..n)
                    .map(|i| ExponentialHistogramDataPoint {
                        attributes: attrs(i),
                        scale: 3,
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "summary",
            metric::Data::Summary(Summary {
                data_points: (0..n)
                    .map(|i| SummaryDataPoint {
                        attributes: attrs(i),
                        count: 1,
                        ..Default::default()
                    })
                    .collect(),
            }),
        ),
    ]
}

fn metrics_request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("db"),
            scope_metrics: vec![ScopeMetrics {
                scope: scope("meter"),
                metrics,
                schema_url: SCHEMA.into(),
            }],
            schema_url: SCHEMA.into(),
        }],
    }
}

#[test]
fn a_metric_is_split_into_metrics_with_the_same_metadata() {
    let original = every_kind(20, 100);
    let raw = body(&metrics_request(original.clone()));
    let out = pieces(Signal::Metrics, &raw, 1000);
    assert!(out.len() >= 5 * 20 * 100 / 1000, "{} pieces", out.len());
    let mut points = std::collections::HashMap::<String, usize>::new();
    for p in &out {
        let req = ExportMetricsServiceRequest::decode(p.clone()).expect("decodes");
        let rm = &req.resource_metrics[0];
        assert_eq!(rm.resource, resource("db"));
        assert_eq!(rm.schema_url, SCHEMA);
        assert_eq!(rm.scope_metrics[0].scope, scope("meter"));
        for m in &rm.scope_metrics[0].metrics {
            let o = original.iter().find(|o| o.name == m.name).expect("known");
            assert_eq!(
                (&m.description, &m.unit, &m.metadata),
                (&o.description, &o.unit, &o.metadata)
            );
            let n = match (&m.data, &o.data) {
                (Some(metric::Data::Sum(s)), Some(metric::Data::Sum(os))) => {
                    assert_eq!(s.aggregation_temporality, os.aggregation_temporality);
                    assert_eq!(s.is_monotonic, os.is_monotonic);
                    s.data_points.len()
                }
                (Some(metric::Data::Histogram(h)), Some(metric::Data::Histogram(oh))) => {
                    assert_eq!(h.aggregation_temporality, oh.aggregation_temporality);
                    h.data_points.len()
                }
                (
                    Some(metric::Data::ExponentialHistogram(h)),
                    Some(metric::Data::ExponentialHistogram(oh)),
                ) => {
                    assert_eq!(h.aggregation_temporality, oh.aggregation_temporality);
                    h.data_points.len()
                }
                (Some(metric::Data::Gauge(g)), Some(metric::Data::Gauge(_))) => g.data_points.len(),
                (Some(metric::Data::Summary(s)), Some(metric::Data::Summary(_))) => {
                    s.data_points.len()
                }
                other => panic!("data kind changed: {other:?}"),
            };
            assert!(n > 0, "no empty metric");
            *points.entry(m.name.clone()).or_default() += n;
        }
    }
    for o in &original {
        assert_eq!(points.get(&o.name), Some(&20), "{}", o.name);
    }
}

#[test]
fn log_records_are_split_with_their_context() {
    let records: Vec<_> = (0..50)
        .map(|i| LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("{i:0>200}"))),
            }),
            severity_number: 9,
            ..Default::default()
        })
        .collect();
    let raw = body(&ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("api"),
            scope_logs: vec![ScopeLogs {
                scope: scope("logger"),
                log_records: records,
                schema_url: SCHEMA.into(),
            }],
            schema_url: SCHEMA.into(),
        }],
    });
    let out = pieces(Signal::Logs, &raw, 2000);
    assert!(out.len() >= 5);
    let total: usize = out.iter().map(|p| items(Signal::Logs, p)).sum();
    assert_eq!(total, 50);
}

#[test]
fn an_item_too_large_alone_is_an_error() {
    let raw = body(&ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(
            "web",
            vec![scope_spans(
                "lib",
                vec![span(1, 10), span(2, 5000), span(3, 10)],
            )],
        )],
    });
    match split_to_fit(Signal::Traces, raw.clone(), 1000) {
        Err(SplitError::ItemTooLarge { size, max }) => {
            assert_eq!(max, 1000);
            assert!(size > 5000 && size < raw.len(), "{size}");
        }
        other => panic!("want ItemTooLarge, got {other:?}"),
    }
    // The oracle agrees it is exactly that span's smallest request.
    assert_eq!(check(Signal::Traces, &raw, 1000).map(|p| p.len()), Ok(0));
}

#[test]
fn context_too_large_for_any_piece_is_an_error() {
    let mut rs = resource_spans("web", vec![scope_spans("lib", vec![span(1, 10)])]);
    if let Some(r) = rs.resource.as_mut() {
        r.attributes.push(kv("big", &"b".repeat(3000)));
    }
    let raw = body(&ExportTraceServiceRequest {
        resource_spans: vec![rs],
    });
    assert!(matches!(
        split_to_fit(Signal::Traces, raw, 1000),
        Err(SplitError::ItemTooLarge { max: 1000, .. })
    ));
}

#[test]
fn malformed_bodies_are_refused() {
    let raw = body(&ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(
            "web",
            vec![scope_spans("lib", (0..5).map(|i| span(i, 100)).collect())],
        )],
    });
    let cut = raw.slice(..raw.len() - 7);
    for signal in Signal::ALL {
        let e = split_to_fit(signal, cut.clone(), 100).expect_err("truncated");
        assert!(
            matches!(&e, SplitError::Malformed(m) if m.contains("exceeds")),
            "{e}"
        );
        assert!(e.to_string().starts_with("malformed body: "));
    }
    let wrong_type = Bytes::from_static(&[0x08, 0x01, 0x08, 0x01, 0x08, 0x01]);
    assert!(matches!(
        split_to_fit(Signal::Metrics, wrong_type, 2),
        Err(SplitError::Malformed(_))
    ));
}

#[test]
fn a_body_without_resources_becomes_one_empty_request() {
    // Only an unknown field (15), which a full decode ignores.
    let mut raw = vec![0x7a, 100];
    raw.extend_from_slice(&[0u8; 100]);
    let out = split_to_fit(Signal::Logs, Bytes::from(raw), 50).expect("split");
    assert_eq!(out, vec![Bytes::new()]);
}

#[test]
fn empty_scopes_and_metrics_are_kept() {
    let mut metrics = every_kind(10, 50);
    metrics.push(Metric {
        name: "no-data".into(),
        ..Default::default()
    });
    let mut req = metrics_request(metrics);
    req.resource_metrics[0].scope_metrics.push(ScopeMetrics {
        scope: scope("empty"),
        ..Default::default()
    });
    let raw = body(&req);
    let out = pieces(Signal::Metrics, &raw, 600);
    let names: Vec<String> = out
        .iter()
        .flat_map(|p| {
            ExportMetricsServiceRequest::decode(p.clone())
                .expect("decodes")
                .resource_metrics
        })
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| {
            let mut v: Vec<String> = sm.metrics.into_iter().map(|m| m.name).collect();
            if v.is_empty() {
                v.push(format!(
                    "scope {}",
                    sm.scope.map(|s| s.name).unwrap_or_default()
                ));
            }
            v
        })
        .collect();
    assert!(names.contains(&"no-data".to_owned()), "{names:?}");
    assert!(names.contains(&"scope empty".to_owned()), "{names:?}");
}

// ───────── three ~3 MB batches under a 1 MB limit (New Relic) ─────────

const LIMIT: usize = 1_000_000;

fn assert_split_3mb(signal: Signal, raw: &Bytes) {
    assert!(
        raw.len() > 3_000_000 && raw.len() < 3_500_000,
        "{}",
        raw.len()
    );
    let out = pieces(signal, raw, LIMIT);
    assert!(out.iter().all(|p| p.len() <= LIMIT));
    // Minimal-ish: at most one piece more than the bytes need.
    assert!(out.len() <= raw.len() / LIMIT + 2, "{} pieces", out.len());
    let total: usize = out.iter().map(|p| items(signal, p)).sum();
    assert_eq!(total, items(signal, raw), "every item exactly once");
}

#[test]
fn three_megabyte_traces_split_under_one_megabyte() {
    let mut n = 0usize;
    let mut spans = |k: usize| {
        (0..k)
            .map(|_| {
                n += 1;
                span(n, 150)
            })
            .collect::<Vec<_>>()
    };
    // One resource of many scopes (split by scope), one scope of many spans
    // (split by span), and many small resources (kept whole).
    let big_scopes = (0..60)
        .map(|i| scope_spans(&format!("lib-{i}"), spans(100)))
        .collect();
    let mut rs = vec![
        resource_spans("scopes", big_scopes),
        resource_spans("spans", vec![scope_spans("one", spans(5000))]),
    ];
    rs.extend(
        (0..300).map(|i| resource_spans(&format!("svc-{i}"), vec![scope_spans("l", spans(10))])),
    );
    let raw = body(&ExportTraceServiceRequest { resource_spans: rs });
    assert_split_3mb(Signal::Traces, &raw);
}

#[test]
fn three_megabyte_metrics_split_under_one_megabyte() {
    // A 1.4 MB sum (split by data point), then metrics of every kind.
    let mut metrics = vec![Metric {
        name: "huge.sum".into(),
        unit: "1".into(),
        description: "one metric larger than the limit".into(),
        metadata: vec![],
        data: Some(metric::Data::Sum(Sum {
            data_points: number_points(12_000, 100),
            aggregation_temporality: 1,
            is_monotonic: true,
        })),
    }];
    metrics.extend(every_kind(2_000, 150));
    let raw = body(&metrics_request(metrics));
    assert_split_3mb(Signal::Metrics, &raw);
}

#[test]
fn three_megabyte_logs_split_under_one_megabyte() {
    let record = |i: usize| LogRecord {
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(format!("{i:0>250}"))),
        }),
        attributes: vec![kv("n", &i.to_string())],
        severity_number: 9,
        ..Default::default()
    };
    let rl = (0..4)
        .map(|r| ResourceLogs {
            resource: resource(&format!("api-{r}")),
            scope_logs: (0..3)
                .map(|s| ScopeLogs {
                    scope: scope(&format!("logger-{s}")),
                    log_records: (0..1000)
                        .map(|i| record(r * 10_000 + s * 1000 + i))
                        .collect(),
                    schema_url: SCHEMA.into(),
                })
                .collect(),
            schema_url: SCHEMA.into(),
        })
        .collect();
    let raw = body(&ExportLogsServiceRequest { resource_logs: rl });
    assert_split_3mb(Signal::Logs, &raw);
}

// ───────── property test: generated batches, split vs full decode ─────────

/// The limit for a generated body: a fraction of its size (mode 0: often
/// below its largest unit, so `ItemTooLarge` is exercised), or between its
/// largest unit and its size (modes 1 and 2: the split succeeds, and
/// resources, scopes and metrics are cut down to single items).
fn max_for(signal: Signal, raw: &Bytes, mode: u8, frac: f64) -> usize {
    let len = raw.len();
    let floor = match (mode, flatten(signal, raw)) {
        (1 | 2, Ok(flat)) => flat.units.iter().copied().max().unwrap_or(0),
        _ => 0,
    };
    floor + (len.saturating_sub(floor) as f64 * frac) as usize
}

/// Several generated requests, concatenated: the concatenation of encoded
/// requests is one request holding all their resources.
fn concat<M: Message>(reqs: Vec<M>) -> Vec<u8> {
    reqs.iter().flat_map(Message::encode_to_vec).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn traces_split_agrees_with_full_decode(
        reqs in prop::collection::vec(gen_traces(), 1..4),
        mode in 0u8..3,
        frac in 0.0f64..1.1,
        d in damage(),
    ) {
        let raw = damaged(concat(reqs), d);
        let max = max_for(Signal::Traces, &raw, mode, frac);
        prop_assert_eq!(check(Signal::Traces, &raw, max).map(|_| ()), Ok(()));
    }

    #[test]
    fn metrics_split_agrees_with_full_decode(
        reqs in prop::collection::vec(gen_metrics(), 1..4),
        mode in 0u8..3,
        frac in 0.0f64..1.1,
        d in damage(),
    ) {
        let raw = damaged(concat(reqs), d);
        let max = max_for(Signal::Metrics, &raw, mode, frac);
        prop_assert_eq!(check(Signal::Metrics, &raw, max).map(|_| ()), Ok(()));
    }

    #[test]
    fn logs_split_agrees_with_full_decode(
        reqs in prop::collection::vec(gen_logs(), 1..4),
        mode in 0u8..3,
        frac in 0.0f64..1.1,
        d in damage(),
    ) {
        let raw = damaged(concat(reqs), d);
        let max = max_for(Signal::Logs, &raw, mode, frac);
        prop_assert_eq!(check(Signal::Logs, &raw, max).map(|_| ()), Ok(()));
    }
}
