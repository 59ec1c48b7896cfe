//! Identity stamping: drop refused resources, strip protected attributes,
//! stamp verified ones; decode → rewrite → encode → decode keeps the rest.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use spangate::otlp::{self, Encoding, RewriteOutcome};

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        key_strindex: 0,
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        key_strindex: 0,
    }
}

fn span(i: u8, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![i; 16],
        span_id: vec![i; 8],
        name: format!("op-{i}"),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        attributes,
        events: vec![span::Event {
            name: "e".into(),
            attributes: vec![kv("spangate.subject", "event attrs are not touched")],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn resource(service: &str, extra: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    let mut attributes = vec![kv("service.name", service)];
    attributes.extend(extra);
    ResourceSpans {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }
}

/// Three resources: allowed with spoofed attributes, refused, allowed clean.
fn request() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![
            resource(
                "web",
                vec![
                    kv("spangate.subject", "spoofed"),
                    kv("vercel.project_id", "prj_spoofed"),
                    kv("deployment.environment.name", "spoofed-env"),
                    int("process.pid", 7),
                ],
                vec![
                    span(
                        1,
                        vec![kv("http.route", "/a"), kv("spangate.provider", "spoofed")],
                    ),
                    span(2, vec![kv("vercel.team", "spoofed"), int("retries", 2)]),
                ],
            ),
            resource(
                "evil",
                vec![],
                vec![span(3, vec![]), span(4, vec![]), span(5, vec![])],
            ),
            resource(
                "web-worker",
                vec![int("process.pid", 9)],
                vec![span(6, vec![])],
            ),
        ],
    }
}

fn protected() -> Vec<String> {
    vec!["spangate.*".into(), "vercel.".into()]
}

fn stamp() -> Vec<(String, String)> {
    vec![
        ("spangate.subject".into(), "repo:acme/web:ref:main".into()),
        ("deployment.environment.name".into(), "production".into()),
    ]
}

/// What the rewrite of [`request`] must produce, built independently.
fn expected() -> ExportTraceServiceRequest {
    let stamped = |mut rs: ResourceSpans| {
        if let Some(r) = rs.resource.as_mut() {
            r.attributes
                .push(kv("spangate.subject", "repo:acme/web:ref:main"));
            r.attributes
                .push(kv("deployment.environment.name", "production"));
        }
        rs
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            stamped(resource(
                "web",
                vec![int("process.pid", 7)],
                vec![
                    span(1, vec![kv("http.route", "/a")]),
                    span(2, vec![int("retries", 2)]),
                ],
            )),
            stamped(resource(
                "web-worker",
                vec![int("process.pid", 9)],
                vec![span(6, vec![])],
            )),
        ],
    }
}

#[test]
fn rewrite_round_trip_both_encodings() {
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let raw = otlp::encode_request(encoding, &request());
        let mut batch = otlp::decode(encoding, raw.clone()).expect("decode");
        let outcome = otlp::rewrite(&mut batch, &[true, false, true], &stamp(), &protected());
        assert_eq!(
            outcome,
            RewriteOutcome {
                changed: true,
                dropped_resources: 1,
                dropped_spans: 3,
                kept_spans: 3,
                // resource: spangate.subject, vercel.project_id, deployment.environment.name;
                // spans: spangate.provider, vercel.team.
                stripped_attributes: 5,
            },
            "{encoding:?}"
        );
        // The summary still describes the batch as received.
        assert_eq!(batch.summary.spans, 6);
        let body = otlp::forward_body(&batch, &outcome);
        assert_ne!(body, raw);
        let again = otlp::decode(encoding, body).expect("re-decode");
        assert_eq!(again.request, expected(), "{encoding:?}");
        assert_eq!(again.summary.spans, 3);
        assert_eq!(
            again.summary.resources[0].attributes,
            vec![
                ("service.name".to_owned(), "web".to_owned()),
                ("process.pid".to_owned(), "7".to_owned()),
                (
                    "spangate.subject".to_owned(),
                    "repo:acme/web:ref:main".to_owned()
                ),
                (
                    "deployment.environment.name".to_owned(),
                    "production".to_owned()
                ),
            ]
        );
    }
}

#[test]
fn unchanged_batch_is_not_reencoded() {
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let raw = otlp::encode_request(encoding, &request());
        let mut batch = otlp::decode(encoding, raw.clone()).expect("decode");
        let outcome = otlp::rewrite(&mut batch, &[true, true, true], &[], &["acme.".to_owned()]);
        assert_eq!(
            outcome,
            RewriteOutcome {
                changed: false,
                kept_spans: 6,
                ..Default::default()
            }
        );
        let body = otlp::forward_body(&batch, &outcome);
        // Same allocation: the received bytes pass through untouched.
        assert_eq!(body.as_ptr(), raw.as_ptr());
        assert_eq!(body.len(), raw.len());
        assert_eq!(batch.request, request());
    }
}

#[test]
fn missing_keep_entries_drop_fail_closed() {
    let raw = Bytes::from(request().encode_to_vec());
    let mut batch = otlp::decode(Encoding::Protobuf, raw).expect("decode");
    let outcome = otlp::rewrite(&mut batch, &[true], &[], &[]);
    assert_eq!(outcome.dropped_resources, 2);
    assert_eq!(outcome.dropped_spans, 4);
    assert_eq!(outcome.kept_spans, 2);
    assert!(outcome.changed);
    assert_eq!(batch.request.resource_spans.len(), 1);

    let mut batch =
        otlp::decode(Encoding::Protobuf, Bytes::from(request().encode_to_vec())).expect("decode");
    let outcome = otlp::rewrite(&mut batch, &[], &stamp(), &protected());
    assert_eq!(outcome.dropped_spans, 6);
    assert_eq!(outcome.kept_spans, 0);
    assert!(batch.request.resource_spans.is_empty());
}

#[test]
fn stamp_creates_missing_resource() {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans: vec![span(1, vec![])],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    let mut batch =
        otlp::decode(Encoding::Protobuf, Bytes::from(req.encode_to_vec())).expect("decode");
    assert_eq!(batch.summary.resources[0].service_name, None);
    let outcome = otlp::rewrite(&mut batch, &[true], &stamp(), &[]);
    assert!(outcome.changed);
    let again = otlp::decode(Encoding::Protobuf, otlp::encode(&batch)).expect("decode");
    assert_eq!(
        again.summary.resources[0].attributes,
        vec![
            (
                "spangate.subject".to_owned(),
                "repo:acme/web:ref:main".to_owned()
            ),
            (
                "deployment.environment.name".to_owned(),
                "production".to_owned()
            ),
        ]
    );
}

#[test]
fn stamped_key_replaces_client_value_even_if_not_protected() {
    let raw = Bytes::from(request().encode_to_vec());
    let mut batch = otlp::decode(Encoding::Protobuf, raw).expect("decode");
    let outcome = otlp::rewrite(
        &mut batch,
        &[true, true, true],
        &[("process.pid".to_owned(), "stamped".to_owned())],
        &[],
    );
    assert_eq!(outcome.stripped_attributes, 2);
    for rs in &batch.request.resource_spans {
        let pids: Vec<_> = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .filter(|kv| kv.key == "process.pid")
            .collect();
        assert_eq!(pids, vec![&kv("process.pid", "stamped")]);
    }
}

#[test]
fn json_fixture_rewrite_is_valid_otlp_json() {
    let raw = Bytes::from_static(include_bytes!("fixtures/otlp_js_exporter.json"));
    let mut batch = otlp::decode(Encoding::Json, raw).expect("decode");
    let outcome = otlp::rewrite(&mut batch, &[true], &stamp(), &["vercel.".to_owned()]);
    assert_eq!(outcome.stripped_attributes, 1, "vercel.region");
    let body = otlp::forward_body(&batch, &outcome);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let sp = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(sp["traceId"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(sp["spanId"], "eee19b7ec3c1b174");
    assert_eq!(sp["startTimeUnixNano"], "1712345678901000000");
    assert_eq!(sp["kind"], 2);
    let again = otlp::decode(Encoding::Json, body).expect("re-decode");
    let original = otlp::decode(
        Encoding::Json,
        Bytes::from_static(include_bytes!("fixtures/otlp_js_exporter.json")),
    )
    .expect("decode");
    // Spans are identical in meaning; only resource attributes changed.
    assert_eq!(
        again.request.resource_spans[0].scope_spans,
        original.request.resource_spans[0].scope_spans
    );
}
