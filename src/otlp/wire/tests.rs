use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use proptest::prelude::*;
use prost::Message;

use super::oracle::{self, Edit};
use super::*;
use crate::otlp::OtlpError;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn resource(attrs: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes: attrs,
        ..Default::default()
    })
}

fn span(i: u8, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![i; 16],
        span_id: vec![i; 8],
        name: format!("span-{i}"),
        attributes: attrs,
        links: vec![span::Link {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn traces() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource(vec![
                    kv("service.name", s("web")),
                    kv("spangate.subject", s("forged")),
                ]),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        ..Default::default()
                    }),
                    spans: vec![
                        span(1, vec![kv("http.route", s("/a")), kv("spangate.x", s("y"))]),
                        span(2, vec![]),
                    ],
                    schema_url: String::new(),
                }],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            },
            ResourceSpans {
                resource: resource(vec![kv("service.name", s("worker"))]),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(3, vec![]), span(4, vec![]), span(5, vec![])],
                    ..Default::default()
                }],
                schema_url: String::new(),
            },
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(6, vec![])],
                    ..Default::default()
                }],
                schema_url: String::new(),
            },
        ],
    }
}

fn edit(keep: &[bool]) -> Edit {
    Edit {
        keep: keep.to_vec(),
        stamp: vec![("spangate.subject".into(), "verified".into())],
        protected: vec!["spangate.*".into()],
    }
}

fn body(m: &impl Message) -> Bytes {
    Bytes::from(m.encode_to_vec())
}

fn malformed(r: Result<Scan, OtlpError>) -> String {
    match r {
        Err(OtlpError::Malformed(m)) => m,
        other => panic!("want Malformed, got {other:?}"),
    }
}

#[test]
fn summary_matches_full_decode() {
    let raw = body(&traces());
    let sc = scan(Signal::Traces, raw.clone()).expect("scan");
    assert_eq!(
        Ok(sc.summary.clone()),
        oracle::full_summary(Signal::Traces, &raw)
    );
    assert_eq!(sc.summary.spans, 6);
    assert_eq!(
        sc.resources.iter().map(|r| r.items).collect::<Vec<_>>(),
        [2, 3, 1]
    );
    // Byte ranges: the fields tile the body; each Resource lies in its message.
    assert_eq!(sc.resources[0].field.start, 0);
    assert_eq!(sc.resources[2].field.end, raw.len());
    for r in &sc.resources {
        for res in &r.resource {
            assert!(r.message.start <= res.start && res.end <= r.message.end);
            Resource::decode(&raw[res.clone()]).expect("Resource range decodes");
        }
    }
    assert!(sc.resources[2].resource.is_empty());
}

#[test]
fn splice_matches_full_rewrite() {
    let raw = body(&traces());
    for keep in [
        &[true, true, true][..],
        &[true, false, true],
        &[false, false, false],
        &[],
    ] {
        oracle::compare(Signal::Traces, &raw, &edit(keep)).expect("agree");
    }
    // No stamp, nothing protected, all kept: the same allocation passes through.
    let sc = scan(Signal::Traces, raw.clone()).expect("scan");
    let out = sc.splice(&[true, true, true], &[], &[]).expect("splice");
    assert!(!out.outcome.changed);
    assert_eq!(out.body.as_ptr(), raw.as_ptr());
}

#[test]
fn splice_copies_untouched_resources_verbatim() {
    let raw = body(&traces());
    let sc = scan(Signal::Traces, raw.clone()).expect("scan");
    // Only resource 1 is kept and nothing in it is stripped or stamped.
    let out = sc
        .splice(&[false, true, false], &[], &["nothing.here".into()])
        .expect("splice");
    assert_eq!(out.body, raw.slice(sc.resources[1].field.clone()));
    assert_eq!(out.kept_resources, 1);
    assert_eq!(out.outcome.dropped_spans, 3);
    // Stripping one span attribute rewrites that span's prefixes only: the
    // other spans' bytes appear unchanged in the output.
    let out = sc
        .splice(&[true, false, false], &[], &["spangate.*".into()])
        .expect("splice");
    assert_eq!(out.outcome.stripped_attributes, 2);
    let span2 = span(2, vec![]).encode_to_vec();
    assert!(out.body.windows(span2.len()).any(|w| w == span2.as_slice()));
}

#[test]
fn truncated_body_says_where() {
    // Field 1 (resourceSpans), length 100, then only 3 bytes.
    let m = malformed(scan(
        Signal::Traces,
        Bytes::from_static(&[0x0a, 100, 1, 2, 3]),
    ));
    assert_eq!(
        m,
        "failed to decode Protobuf message: request: field 1: length 100 exceeds the 3 bytes left at byte 1"
    );
    let mut raw = body(&traces()).to_vec();
    raw.truncate(raw.len() - 5);
    let m = malformed(scan(Signal::Traces, Bytes::from(raw)));
    assert!(m.contains("at byte"), "{m}");
}

#[test]
fn errors_name_the_path() {
    let mut req = traces();
    req.resource_spans[1].scope_spans[0].spans[2].span_id = vec![1, 2, 3];
    assert_eq!(
        malformed(scan(Signal::Traces, body(&req))),
        "resourceSpans[1].scopeSpans[0].spans[2].spanId: expected 8 bytes, got 3"
    );
    let mut req = traces();
    req.resource_spans[0].scope_spans[0].spans[1].links[0].trace_id = vec![9; 4];
    assert_eq!(
        malformed(scan(Signal::Traces, body(&req))),
        "resourceSpans[0].scopeSpans[0].spans[1].links[0].traceId: expected 16 bytes, got 4"
    );
    let mut req = traces();
    if let Some(r) = req.resource_spans[1].resource.as_mut() {
        r.attributes.push(kv("service.name", s("again")));
    }
    assert_eq!(
        malformed(scan(Signal::Traces, body(&req))),
        "resourceSpans[1].resource.attributes: duplicate key \"service.name\""
    );
}

/// Wrap `rs` (a ResourceSpans message) as field 1 of a request.
fn request_of(rs: &[u8]) -> Bytes {
    let mut out = vec![0x0a];
    prost::encoding::encode_varint(rs.len() as u64, &mut out);
    out.extend_from_slice(rs);
    Bytes::from(out)
}

/// A ResourceSpans with one span whose encoding is `span`.
fn resource_spans_with_span(span: &[u8]) -> Vec<u8> {
    let mut scope = vec![0x12];
    prost::encoding::encode_varint(span.len() as u64, &mut scope);
    scope.extend_from_slice(span);
    let mut rs = vec![0x12];
    prost::encoding::encode_varint(scope.len() as u64, &mut rs);
    rs.extend_from_slice(&scope);
    rs
}

#[test]
fn wrong_wire_type_and_groups_are_refused() {
    // Span.kind (6) as length-delimited.
    let raw = request_of(&resource_spans_with_span(&[0x32, 0x01, 0x00]));
    let m = malformed(scan(Signal::Traces, raw.clone()));
    assert_eq!(
        m,
        "failed to decode Protobuf message: resourceSpans[0].scopeSpans[0].spans[0]: kind: expected wire type varint, got length-delimited at byte 6"
    );
    assert!(oracle::full_summary(Signal::Traces, &raw).is_err());
    // An unknown group (field 20, start/end group) inside a span.
    let raw = request_of(&resource_spans_with_span(&[0xa3, 0x01, 0xa4, 0x01]));
    assert!(
        malformed(scan(Signal::Traces, raw)).contains("groups (wire type 3) are not supported")
    );
    // Wire types 6 and 7 do not exist.
    let m = malformed(scan(Signal::Traces, Bytes::from_static(&[0x0e])));
    assert!(m.contains("invalid wire type 6 at byte 0"), "{m}");
    // Field number 0.
    let m = malformed(scan(Signal::Traces, Bytes::from_static(&[0x02, 0x00])));
    assert!(m.contains("invalid field number 0"), "{m}");
    // Varint of 11 bytes.
    let m = malformed(scan(
        Signal::Traces,
        Bytes::from_static(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]),
    ));
    assert!(m.contains("invalid varint"), "{m}");
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let mut rs = ResourceSpans {
        resource: resource(vec![kv("service.name", s("web"))]),
        ..Default::default()
    }
    .encode_to_vec();
    // Unknown fields in the ResourceSpans: varint 9, fixed64 10, bytes 11, fixed32 12.
    rs.extend_from_slice(&[0x48, 0x96, 0x01]);
    rs.extend_from_slice(&[0x51, 1, 2, 3, 4, 5, 6, 7, 8]);
    rs.extend_from_slice(&[0x5a, 0x02, 0xff, 0xfe]);
    rs.extend_from_slice(&[0x65, 1, 2, 3, 4]);
    // And inside a span.
    rs.extend_from_slice(&resource_spans_with_span(&[0xf8, 0x01, 0x05, 0x0a, 0x00]));
    let mut raw = request_of(&rs).to_vec();
    // Unknown top-level field 7 (bytes).
    raw.extend_from_slice(&[0x3a, 0x01, 0x00]);
    let raw = Bytes::from(raw);
    let sc = scan(Signal::Traces, raw.clone()).expect("scan");
    assert_eq!(sc.summary.spans, 1);
    assert_eq!(Ok(sc.summary), oracle::full_summary(Signal::Traces, &raw));
    oracle::compare(Signal::Traces, &raw, &edit(&[true])).expect("agree");
}

#[test]
fn repeated_resource_fields_merge_like_a_full_decode() {
    let mut rs = ResourceSpans {
        resource: resource(vec![kv("service.name", s("web"))]),
        ..Default::default()
    }
    .encode_to_vec();
    let second = Resource {
        attributes: vec![kv("spangate.subject", s("forged"))],
        ..Default::default()
    }
    .encode_to_vec();
    rs.push(0x0a);
    prost::encoding::encode_varint(second.len() as u64, &mut rs);
    rs.extend_from_slice(&second);
    let raw = request_of(&rs);
    let sc = scan(Signal::Traces, raw.clone()).expect("scan");
    assert_eq!(sc.resources[0].resource.len(), 2);
    assert_eq!(sc.summary.resources[0].attributes.len(), 2);
    oracle::compare(Signal::Traces, &raw, &edit(&[true])).expect("agree");
    let out = sc
        .splice(&[true], &edit(&[]).stamp, &edit(&[]).protected)
        .expect("splice");
    let back = ExportTraceServiceRequest::decode(out.body).expect("decode");
    let attrs = &back.resource_spans[0]
        .resource
        .as_ref()
        .expect("resource")
        .attributes;
    assert_eq!(
        attrs,
        &vec![
            kv("service.name", s("web")),
            kv("spangate.subject", s("verified"))
        ]
    );
}

fn number_point(i: i64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: 1,
        value: Some(number_data_point::Value::AsInt(i)),
        exemplars: vec![Exemplar {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn metrics() -> ExportMetricsServiceRequest {
    let m = |name: &str, data| Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![
            ResourceMetrics {
                resource: resource(vec![kv("service.name", s("api"))]),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        m(
                            "g",
                            metric::Data::Gauge(Gauge {
                                data_points: vec![
                                    number_point(1, vec![kv("spangate.x", s("1"))]),
                                    number_point(2, vec![]),
                                ],
                            }),
                        ),
                        m(
                            "s",
                            metric::Data::Sum(Sum {
                                data_points: vec![number_point(3, vec![])],
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            }),
                        ),
                        m(
                            "h",
                            metric::Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    bucket_counts: vec![1, 2, 3],
                                    explicit_bounds: vec![0.5, 1.0],
                                    attributes: vec![kv("spangate.y", s("2"))],
                                    ..Default::default()
                                }],
                                aggregation_temporality: 1,
                            }),
                        ),
                    ],
                    ..Default::default()
                }],
                schema_url: String::new(),
            },
            ResourceMetrics {
                resource: resource(vec![kv("service.name", s("db"))]),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        m(
                            "e",
                            metric::Data::ExponentialHistogram(ExponentialHistogram {
                                data_points: vec![
                                    ExponentialHistogramDataPoint::default(),
                                    ExponentialHistogramDataPoint {
                                        attributes: vec![kv("spangate.z", s("3"))],
                                        ..Default::default()
                                    },
                                ],
                                aggregation_temporality: 1,
                            }),
                        ),
                        m(
                            "q",
                            metric::Data::Summary(Summary {
                                data_points: vec![SummaryDataPoint::default()],
                            }),
                        ),
                        Metric {
                            name: "empty".into(),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                schema_url: String::new(),
            },
        ],
    }
}

fn logs() -> ExportLogsServiceRequest {
    let record = |i: u8, attrs| LogRecord {
        body: Some(AnyValue {
            value: Some(s("hello")),
        }),
        attributes: attrs,
        trace_id: vec![i; 16],
        span_id: vec![i; 8],
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(vec![kv("service.name", s("batch"))]),
            scope_logs: vec![
                ScopeLogs {
                    log_records: vec![record(1, vec![kv("spangate.q", s("x"))]), record(2, vec![])],
                    ..Default::default()
                },
                ScopeLogs {
                    log_records: vec![record(3, vec![])],
                    ..Default::default()
                },
            ],
            schema_url: String::new(),
        }],
    }
}

#[test]
fn metrics_count_data_points_and_strip_point_attributes() {
    let raw = body(&metrics());
    let sc = scan(Signal::Metrics, raw.clone()).expect("scan");
    assert_eq!(
        sc.resources.iter().map(|r| r.items).collect::<Vec<_>>(),
        [4, 3]
    );
    assert_eq!(
        Ok(sc.summary.clone()),
        oracle::full_summary(Signal::Metrics, &raw)
    );
    for keep in [&[true, true][..], &[false, true], &[true]] {
        oracle::compare(Signal::Metrics, &raw, &edit(keep)).expect("agree");
    }
    let out = sc
        .splice(&[true, true], &[], &["spangate.".into()])
        .expect("splice");
    assert_eq!(out.outcome.stripped_attributes, 3);
}

#[test]
fn metrics_ids_and_oneof() {
    let mut req = metrics();
    if let Some(metric::Data::Sum(sum)) = req.resource_metrics[0].scope_metrics[0].metrics[1]
        .data
        .as_mut()
    {
        sum.data_points[0].exemplars[0].span_id = vec![1];
    }
    assert_eq!(
        malformed(scan(Signal::Metrics, body(&req))),
        "resourceMetrics[0].scopeMetrics[0].metrics[1].sum.dataPoints[0].exemplars[0].spanId: expected 8 bytes, got 1"
    );
    // A metric with two different data fields is refused.
    let gauge = Metric {
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![number_point(1, vec![])],
        })),
        ..Default::default()
    }
    .encode_to_vec();
    let sum = Metric {
        data: Some(metric::Data::Sum(Sum::default())),
        ..Default::default()
    }
    .encode_to_vec();
    let mut both = gauge.clone();
    both.extend_from_slice(&sum);
    let mut scope = vec![0x12];
    prost::encoding::encode_varint(both.len() as u64, &mut scope);
    scope.extend_from_slice(&both);
    let mut rm = vec![0x12];
    prost::encoding::encode_varint(scope.len() as u64, &mut rm);
    rm.extend_from_slice(&scope);
    let raw = request_of(&rm);
    assert!(malformed(scan(Signal::Metrics, raw.clone())).contains("more than one data field"));
    oracle::compare(Signal::Metrics, &raw, &edit(&[true])).expect("documented difference");
    // The same data field twice merges, as in a full decode.
    let mut twice = gauge.clone();
    twice.extend_from_slice(&gauge);
    let mut scope = vec![0x12];
    prost::encoding::encode_varint(twice.len() as u64, &mut scope);
    scope.extend_from_slice(&twice);
    let mut rm = vec![0x12];
    prost::encoding::encode_varint(scope.len() as u64, &mut rm);
    rm.extend_from_slice(&scope);
    let raw = request_of(&rm);
    assert_eq!(
        scan(Signal::Metrics, raw.clone())
            .expect("scan")
            .summary
            .spans,
        2
    );
    oracle::compare(Signal::Metrics, &raw, &edit(&[true])).expect("agree");
}

#[test]
fn logs_count_records() {
    let raw = body(&logs());
    let sc = scan(Signal::Logs, raw.clone()).expect("scan");
    assert_eq!(sc.summary.spans, 3);
    assert_eq!(Ok(sc.summary), oracle::full_summary(Signal::Logs, &raw));
    oracle::compare(Signal::Logs, &raw, &edit(&[true])).expect("agree");
    let mut req = logs();
    req.resource_logs[0].scope_logs[1].log_records[0].trace_id = vec![0; 15];
    assert_eq!(
        malformed(scan(Signal::Logs, body(&req))),
        "resourceLogs[0].scopeLogs[1].logRecords[0].traceId: expected 16 bytes, got 15"
    );
}

#[test]
fn signals_are_distinct_envelopes() {
    // The same bytes mean different things per signal; a traces body read
    // as logs has no log records (ScopeLogs field 2 holds a span, whose
    // fields are LogRecord fields of other types, so it is refused or counted).
    let raw = body(&traces());
    for signal in Signal::ALL {
        let _ = scan(signal, raw.clone());
        oracle::compare(signal, &raw, &edit(&[true, true, true])).expect("agree");
    }
}

// ───────────── property test: generated batches, wire vs full ─────────────

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "service.name",
        "spangate.subject",
        "spangate.",
        "vercel.project_id",
        "enduser.id",
        "k8s.pod",
        "a",
        "",
    ])
    .prop_map(str::to_owned)
}

fn leaf() -> impl Strategy<Value = any_value::Value> {
    prop_oneof![
        "[a-z0-9 é]{0,8}".prop_map(any_value::Value::StringValue),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        any::<i64>().prop_map(any_value::Value::IntValue),
        (-1e9f64..1e9).prop_map(any_value::Value::DoubleValue),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(any_value::Value::BytesValue),
    ]
}

fn value() -> impl Strategy<Value = Option<AnyValue>> {
    let v = leaf().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|vs| {
                any_value::Value::ArrayValue(ArrayValue {
                    values: vs
                        .into_iter()
                        .map(|v| AnyValue { value: Some(v) })
                        .collect(),
                })
            }),
            prop::collection::vec(("[a-c]", inner), 0..3).prop_map(|kvs| {
                any_value::Value::KvlistValue(KeyValueList {
                    values: kvs.into_iter().map(|(k, v)| kv(&k, v)).collect(),
                })
            }),
        ]
    });
    prop::option::weighted(0.9, v).prop_map(|v| Some(AnyValue { value: v }))
}

fn attrs(max: usize) -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec((key(), value()), 0..max).prop_map(|kvs| {
        kvs.into_iter()
            .map(|(key, value)| KeyValue {
                key,
                value,
                key_strindex: 0,
            })
            .collect()
    })
}

/// Mostly distinct keys (duplicates make both paths refuse, which is tested
/// too but should not dominate).
fn resource_attrs() -> impl Strategy<Value = Option<Resource>> {
    prop::option::weighted(
        0.85,
        (attrs(5), any::<bool>()).prop_map(|(mut a, dedup)| {
            if dedup {
                let mut seen = std::collections::HashSet::new();
                a.retain(|kv| seen.insert(kv.key.clone()));
            }
            Resource {
                attributes: a,
                dropped_attributes_count: 0,
                entity_refs: vec![],
            }
        }),
    )
}

fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => Just(vec![7u8; len]),
        2 => Just(vec![]),
        1 => prop::collection::vec(any::<u8>(), 0..20),
    ]
}

fn gen_span() -> impl Strategy<Value = Span> {
    (
        id(16),
        id(8),
        id(8),
        "[a-z]{0,6}",
        attrs(4),
        prop::collection::vec((id(16), id(8), attrs(2)), 0..2),
        0i32..6,
    )
        .prop_map(
            |(trace_id, span_id, parent_span_id, name, attributes, links, kind)| Span {
                trace_id,
                span_id,
                parent_span_id,
                name,
                kind,
                attributes,
                links: links
                    .into_iter()
                    .map(|(trace_id, span_id, attributes)| span::Link {
                        trace_id,
                        span_id,
                        attributes,
                        ..Default::default()
                    })
                    .collect(),
                events: vec![span::Event {
                    name: "e".into(),
                    ..Default::default()
                }],
                end_time_unix_nano: 42,
                ..Default::default()
            },
        )
}

pub(crate) fn gen_traces() -> impl Strategy<Value = ExportTraceServiceRequest> {
    prop::collection::vec(
        (
            resource_attrs(),
            prop::collection::vec(prop::collection::vec(gen_span(), 0..4), 0..3),
        ),
        0..4,
    )
    .prop_map(|rs| ExportTraceServiceRequest {
        resource_spans: rs
            .into_iter()
            .map(|(resource, scopes)| ResourceSpans {
                resource,
                scope_spans: scopes
                    .into_iter()
                    .map(|spans| ScopeSpans {
                        spans,
                        ..Default::default()
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    })
}

fn gen_number_point() -> impl Strategy<Value = NumberDataPoint> {
    (attrs(3), id(16), id(8)).prop_map(|(attributes, t, s)| NumberDataPoint {
        attributes,
        exemplars: vec![Exemplar {
            trace_id: t,
            span_id: s,
            ..Default::default()
        }],
        value: Some(number_data_point::Value::AsDouble(1.5)),
        ..Default::default()
    })
}

fn gen_points() -> impl Strategy<Value = metric::Data> {
    prop_oneof![
        prop::collection::vec(gen_number_point(), 0..3)
            .prop_map(|data_points| metric::Data::Gauge(Gauge { data_points })),
        prop::collection::vec(gen_number_point(), 0..3).prop_map(|data_points| metric::Data::Sum(
            Sum {
                data_points,
                ..Default::default()
            }
        )),
        prop::collection::vec(attrs(3), 0..3).prop_map(|a| metric::Data::Histogram(Histogram {
            data_points: a
                .into_iter()
                .map(|attributes| HistogramDataPoint {
                    attributes,
                    bucket_counts: vec![1, 2],
                    explicit_bounds: vec![1.0],
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: 1,
        })),
        prop::collection::vec(attrs(3), 0..3).prop_map(|a| {
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: a
                    .into_iter()
                    .map(|attributes| ExponentialHistogramDataPoint {
                        attributes,
                        scale: -3,
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: 2,
            })
        }),
        prop::collection::vec(attrs(3), 0..3).prop_map(|a| metric::Data::Summary(Summary {
            data_points: a
                .into_iter()
                .map(|attributes| SummaryDataPoint {
                    attributes,
                    ..Default::default()
                })
                .collect(),
        })),
    ]
}

pub(crate) fn gen_metrics() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    prop::collection::vec(
        (
            resource_attrs(),
            prop::collection::vec(prop::option::weighted(0.9, gen_points()), 0..4),
        ),
        0..4,
    )
    .prop_map(|rm| ExportMetricsServiceRequest {
        resource_metrics: rm
            .into_iter()
            .map(|(resource, metrics)| ResourceMetrics {
                resource,
                scope_metrics: vec![ScopeMetrics {
                    metrics: metrics
                        .into_iter()
                        .map(|data| Metric {
                            name: "m".into(),
                            data,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                schema_url: String::new(),
            })
            .collect(),
    })
}

pub(crate) fn gen_logs() -> impl Strategy<Value = ExportLogsServiceRequest> {
    let record = (attrs(3), id(16), id(8)).prop_map(|(attributes, trace_id, span_id)| LogRecord {
        attributes,
        trace_id,
        span_id,
        severity_number: 9,
        ..Default::default()
    });
    prop::collection::vec(
        (
            resource_attrs(),
            prop::collection::vec(prop::collection::vec(record, 0..4), 0..3),
        ),
        0..4,
    )
    .prop_map(|rl| ExportLogsServiceRequest {
        resource_logs: rl
            .into_iter()
            .map(|(resource, scopes)| ResourceLogs {
                resource,
                scope_logs: scopes
                    .into_iter()
                    .map(|log_records| ScopeLogs {
                        log_records,
                        ..Default::default()
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    })
}

fn gen_edit() -> impl Strategy<Value = Edit> {
    (
        prop::collection::vec(any::<bool>(), 0..5),
        prop::collection::vec((key(), "[a-z]{0,4}"), 0..3),
        prop::collection::vec(
            prop::sample::select(vec!["spangate.*", "vercel.", "enduser.id", "*", "a"])
                .prop_map(str::to_owned),
            0..3,
        ),
    )
        .prop_map(|(keep, mut stamp, protected)| {
            // Policy stamps a map: keys are unique.
            let mut seen = std::collections::HashSet::new();
            stamp.retain(|(k, _)| seen.insert(k.clone()));
            Edit {
                keep,
                stamp,
                protected,
            }
        })
}

/// Byte-level damage applied after encoding, so the property also covers
/// bodies no encoder writes: cut, a flipped byte, an unknown field.
pub(crate) fn damage() -> impl Strategy<Value = (u8, usize, u8)> {
    (0u8..6, any::<usize>(), any::<u8>())
}

pub(crate) fn damaged(raw: Vec<u8>, (how, at, byte): (u8, usize, u8)) -> Bytes {
    let mut raw = raw;
    let n = raw.len();
    match how {
        0 if n > 0 => raw.truncate(at % n),
        1 if n > 0 => raw[at % n] ^= byte | 1,
        2 => raw.extend_from_slice(&[0x7a, 1, byte]), // unknown field 15
        _ => {}
    }
    Bytes::from(raw)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn traces_wire_agrees_with_full_decode(req in gen_traces(), e in gen_edit(), d in damage()) {
        let raw = damaged(req.encode_to_vec(), d);
        prop_assert_eq!(oracle::compare(Signal::Traces, &raw, &e), Ok(()));
    }

    #[test]
    fn metrics_wire_agrees_with_full_decode(req in gen_metrics(), e in gen_edit(), d in damage()) {
        let raw = damaged(req.encode_to_vec(), d);
        prop_assert_eq!(oracle::compare(Signal::Metrics, &raw, &e), Ok(()));
    }

    #[test]
    fn logs_wire_agrees_with_full_decode(req in gen_logs(), e in gen_edit(), d in damage()) {
        let raw = damaged(req.encode_to_vec(), d);
        prop_assert_eq!(oracle::compare(Signal::Logs, &raw, &e), Ok(()));
    }
}

/// The deployment link's per-resource strip: only the named resource's
/// attributes go, item attributes and other resources are untouched, and the
/// body changes even with nothing else to do.
#[test]
fn splice_with_strips_resource_keys_of_one_resource_only() {
    let mut req = metrics();
    for (i, rm) in req.resource_metrics.iter_mut().enumerate() {
        if let Some(r) = rm.resource.as_mut() {
            r.attributes
                .push(kv("deployment.id", s(&format!("dpl_{i}"))));
        }
    }
    let raw = body(&req);
    let sc = scan(Signal::Metrics, raw).expect("scan");
    let strip = vec![Vec::new(), vec!["deployment.id".to_string()]];
    let out = sc
        .splice_with(&[true, true], &[], &[], &strip)
        .expect("splice");
    assert!(out.outcome.changed);
    assert_eq!(out.outcome.stripped_attributes, 0);
    let got = ExportMetricsServiceRequest::decode(out.body.clone()).expect("valid protobuf");
    let keys = |i: usize| -> Vec<String> {
        got.resource_metrics[i]
            .resource
            .as_ref()
            .map(|r| r.attributes.iter().map(|a| a.key.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(0), ["service.name", "deployment.id"]);
    assert_eq!(keys(1), ["service.name"]);
    // Everything else is as received: only resource 1 lost one attribute.
    let mut expected = req.clone();
    if let Some(r) = expected.resource_metrics[1].resource.as_mut() {
        r.attributes.retain(|a| a.key != "deployment.id");
    }
    assert_eq!(got, expected);

    // Logs, combined with a stamp and a dropped resource elsewhere.
    let mut req = logs();
    if let Some(r) = req.resource_logs[0].resource.as_mut() {
        r.attributes.push(kv("vcs.ref.head.revision", s("abc")));
    }
    let sc = scan(Signal::Logs, body(&req)).expect("scan");
    let out = sc
        .splice_with(
            &[true],
            &[("spangate.subject".into(), "me".into())],
            &[],
            &[vec!["vcs.ref.head.revision".into()]],
        )
        .expect("splice");
    let got = ExportLogsServiceRequest::decode(out.body).expect("valid protobuf");
    let attrs = &got.resource_logs[0].resource.as_ref().unwrap().attributes;
    assert!(attrs.iter().all(|a| a.key != "vcs.ref.head.revision"));
    assert!(attrs.iter().any(|a| a.key == "spangate.subject"));
    assert_eq!(
        got.resource_logs[0].scope_logs,
        req.resource_logs[0].scope_logs
    );
}

/// The scan notes the distinct item attribute keys so a splice that cuts
/// none skips the walk below scopes; what it cuts must not change for keys
/// past the bound, or for `KeyValue`s encoded the way encoders do not.
#[test]
fn noted_item_keys_never_change_what_a_splice_cuts() {
    let protect = Edit {
        keep: vec![true],
        stamp: vec![],
        protected: vec!["spangate.*".into()],
    };
    // More distinct keys than are noted, the protected one last.
    let mut attrs: Vec<KeyValue> = (0..ItemKeys::MAX + 6)
        .map(|i| kv(&format!("k{i}"), s("v")))
        .collect();
    attrs.push(kv("spangate.late", s("forged")));
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(vec![kv("service.name", s("web"))]),
            scope_spans: vec![ScopeSpans {
                spans: vec![span(1, attrs.clone()), span(2, attrs)],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    let raw = body(&req);
    let sc = scan(Signal::Traces, raw.clone()).expect("scan");
    assert!(sc.item_keys.overflow);
    let out = sc
        .splice(&protect.keep, &[], &protect.protected)
        .expect("splice");
    assert_eq!(out.outcome.stripped_attributes, 2);
    oracle::compare(Signal::Traces, &raw, &protect).expect("agree");

    // KeyValues as no encoder writes them: the key twice (the last one
    // counts, as in a full decode), and the value before the key.
    let attr = |kv_bytes: &[u8]| {
        let mut a = vec![0x4a, kv_bytes.len() as u8];
        a.extend_from_slice(kv_bytes);
        a
    };
    let twice = [&[0x0a, 1, b'a', 0x12, 0, 0x0a, 10][..], b"spangate.x"].concat();
    let value_first = [&[0x12, 0, 0x0a, 10][..], b"spangate.y"].concat();
    let shadowed = [&[0x0a, 10][..], b"spangate.z", &[0x0a, 1, b'b']].concat();
    for (kv_bytes, cut) in [(twice, 1), (value_first, 1), (shadowed, 0)] {
        let raw = request_of(&resource_spans_with_span(&attr(&kv_bytes)));
        let sc = scan(Signal::Traces, raw.clone()).expect("scan");
        let out = sc
            .splice(&protect.keep, &[], &protect.protected)
            .expect("splice");
        assert_eq!(out.outcome.stripped_attributes, cut, "{kv_bytes:?}");
        oracle::compare(Signal::Traces, &raw, &protect).expect("agree");
    }

    // Keys under links are never cut, so they are not noted either.
    let mut linked = span(3, vec![]);
    linked.links[0].attributes = vec![kv("spangate.link", s("kept"))];
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![linked],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let sc = scan(Signal::Traces, body(&req)).expect("scan");
    assert!(sc.item_keys.keys.is_empty() && !sc.item_keys.overflow);
    oracle::compare(Signal::Traces, &body(&req), &protect).expect("agree");
}
