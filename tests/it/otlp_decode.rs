//! OTLP body reading and decoding: protobuf and JSON, plain and gzip, caps,
//! gzip bombs, malformed input, responses.

use bytes::Bytes;
use http_body_util::{Full, StreamBody};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use spangate::otlp::{self, Encoding, OtlpError};

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

fn span(i: u8, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, i],
        span_id: vec![0xcd, 1, 2, 3, 4, 5, 6, i],
        parent_span_id: if i == 0 {
            vec![]
        } else {
            vec![0xcd, 1, 2, 3, 4, 5, 6, 0]
        },
        name: format!("span-{i}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_712_345_678_901_000_000 + u64::from(i),
        end_time_unix_nano: 1_712_345_678_951_000_000 + u64::from(i),
        attributes: attrs,
        status: Some(Status {
            message: "ok".into(),
            code: 1,
        }),
        events: vec![span::Event {
            time_unix_nano: 1_712_345_678_911_000_000,
            name: "evt".into(),
            attributes: vec![kv("e", any_value::Value::IntValue(-3))],
            dropped_attributes_count: 0,
        }],
        flags: 257,
        ..Default::default()
    }
}

/// A request with two resources covering every AnyValue kind.
fn request() -> ExportTraceServiceRequest {
    let nested = any_value::Value::KvlistValue(KeyValueList {
        values: vec![kv("inner", any_value::Value::BoolValue(true))],
    });
    let arr = any_value::Value::ArrayValue(ArrayValue {
        values: vec![
            AnyValue {
                value: Some(s("a")),
            },
            AnyValue {
                value: Some(any_value::Value::DoubleValue(2.5)),
            },
        ],
    });
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s("checkout")),
                        kv("deployment.environment.name", s("production")),
                        kv("process.pid", any_value::Value::IntValue(4242)),
                        kv("k8s.labels", nested),
                        kv("host.arch", arr),
                        kv("blob", any_value::Value::BytesValue(vec![0, 255, 7])),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "scope".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    spans: vec![
                        span(0, vec![kv("http.route", s("/cart"))]),
                        span(1, vec![kv("ratio", any_value::Value::DoubleValue(0.25))]),
                    ],
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                }],
                schema_url: String::new(),
            },
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("payments"))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(2, vec![]), span(3, vec![]), span(4, vec![])],
                    ..Default::default()
                }],
                schema_url: String::new(),
            },
        ],
    }
}

async fn read(body: Bytes, ce: Option<&str>, cap: usize) -> Result<Bytes, OtlpError> {
    otlp::read_body(Full::new(body), ce, cap).await
}

#[tokio::test]
async fn protobuf_round_trip_plain_and_gzip() {
    let req = request();
    let wire = Bytes::from(req.encode_to_vec());
    for (body, ce) in [
        (wire.clone(), None),
        (wire.clone(), Some("identity")),
        (otlp::gzip(&wire, 6), Some("gzip")),
    ] {
        let raw = read(body, ce, 1 << 20).await.expect("read");
        assert_eq!(raw, wire);
        let batch = otlp::decode(Encoding::Protobuf, raw).expect("decode");
        assert_eq!(batch.request, req);
        assert_eq!(batch.summary.spans, 5);
        assert_eq!(batch.summary.bytes, wire.len());
        assert_eq!(batch.summary.resources.len(), 2);
        assert_eq!(
            batch.summary.resources[0].service_name.as_deref(),
            Some("checkout")
        );
        assert_eq!(batch.summary.resources[0].spans, 2);
        assert_eq!(batch.summary.resources[1].spans, 3);
        // Re-encoding an untouched protobuf batch reproduces it.
        assert_eq!(otlp::encode(&batch), wire);
    }
}

#[tokio::test]
async fn json_round_trip_plain_and_gzip() {
    let req = request();
    let wire = otlp::encode_request(Encoding::Json, &req);
    for (body, ce) in [(wire.clone(), None), (otlp::gzip(&wire, 1), Some("gzip"))] {
        let raw = read(body, ce, 1 << 20).await.expect("read");
        let batch = otlp::decode(Encoding::Json, raw).expect("decode");
        assert_eq!(batch.request, req);
        assert_eq!(batch.summary.spans, 5);
    }
}

#[test]
fn json_output_is_otlp_json() {
    let wire = otlp::encode_request(Encoding::Json, &request());
    let v: serde_json::Value = serde_json::from_slice(&wire).expect("json");
    let rs = &v["resourceSpans"][0];
    let sp = &rs["scopeSpans"][0]["spans"][1];
    assert_eq!(sp["traceId"], "ab0102030405060708090a0b0c0d0e01");
    assert_eq!(sp["spanId"], "cd01020304050601");
    assert_eq!(sp["parentSpanId"], "cd01020304050600");
    assert_eq!(sp["kind"], 2, "enums are integers");
    assert_eq!(
        sp["startTimeUnixNano"], "1712345678901000001",
        "fixed64 as string"
    );
    assert_eq!(sp["events"][0]["timeUnixNano"], "1712345678911000000");
    assert_eq!(
        sp["events"][0]["attributes"][0]["value"]["intValue"], "-3",
        "int64 as string"
    );
    assert_eq!(
        rs["scopeSpans"][0]["schemaUrl"],
        "https://opentelemetry.io/schemas/1.26.0"
    );
    assert_eq!(
        rs["resource"]["attributes"][5]["value"]["bytesValue"],
        "AP8H"
    );
    for snake in [
        "\"trace_id\"",
        "\"span_id\"",
        "\"resource_spans\"",
        "\"start_time_unix_nano\"",
    ] {
        assert!(
            !String::from_utf8_lossy(&wire).contains(snake),
            "no snake_case key {snake}"
        );
    }
}

#[test]
fn js_exporter_json_fixture_decodes() {
    let raw = Bytes::from_static(include_bytes!("fixtures/otlp_js_exporter.json"));
    let batch = otlp::decode(Encoding::Json, raw.clone()).expect("decode fixture");
    assert_eq!(batch.summary.spans, 2);
    assert_eq!(batch.summary.bytes, raw.len());
    let res = &batch.summary.resources[0];
    assert_eq!(res.service_name.as_deref(), Some("checkout-edge"));
    assert!(
        res.attributes
            .contains(&("process.pid".into(), "4242".into()))
    );
    assert!(
        res.attributes
            .contains(&("host.arch".into(), r#"["x64",64]"#.into()))
    );
    let spans = &batch.request.resource_spans[0].scope_spans[0].spans;
    // Upper-case hex is accepted (hex is case-insensitive).
    assert_eq!(
        spans[0].trace_id,
        vec![
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
            0xc6, 0x0c
        ]
    );
    assert_eq!(
        spans[0].span_id,
        vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
    );
    assert!(spans[0].parent_span_id.is_empty());
    assert_eq!(spans[1].parent_span_id, spans[0].span_id);
    assert_eq!(spans[0].kind, span::SpanKind::Server as i32);
    assert_eq!(spans[1].kind, span::SpanKind::Client as i32);
    assert_eq!(spans[0].start_time_unix_nano, 1_712_345_678_901_000_000);
    assert_eq!(spans[0].end_time_unix_nano, 1_712_345_678_951_234_567);
    // int64 as a JSON number is accepted too.
    assert_eq!(spans[1].start_time_unix_nano, 1_712_345_678_905_000_000);
    assert_eq!(spans[0].flags, 257);
    let status = |i: usize| {
        spans[i]
            .attributes
            .iter()
            .find(|kv| kv.key == "http.response.status_code")
    };
    assert_eq!(
        status(0).and_then(|kv| kv.value.clone()),
        Some(AnyValue {
            value: Some(any_value::Value::IntValue(200))
        })
    );
    assert_eq!(
        status(1).and_then(|kv| kv.value.clone()),
        Some(AnyValue {
            value: Some(any_value::Value::IntValue(503))
        })
    );
    assert_eq!(spans[1].status.as_ref().map(|s| s.code), Some(2));
    assert_eq!(spans[1].links.len(), 1);
    assert_eq!(spans[0].events[0].name, "cache.lookup");
}

#[test]
fn json_unknown_fields_are_ignored_everywhere() {
    let body = br#"{"futureTop":1,"resourceSpans":[{"futureRs":{"a":[1]},
      "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc","futureKind":7}}],"futureRes":"x"},
      "scopeSpans":[{"futureSs":null,"scope":{"name":"s","futureScope":true},
        "spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"n",
                  "kind":1,"futureSpan":{"deep":{"deeper":[]}},"status":{"code":1,"futureStatus":2}}]}]}]}"#;
    let batch = otlp::decode(Encoding::Json, Bytes::from_static(body)).expect("decode");
    assert_eq!(batch.summary.spans, 1);
    assert_eq!(
        batch.summary.resources[0].service_name.as_deref(),
        Some("svc")
    );
}

#[test]
fn malformed_protobuf_is_400_with_detail() {
    // Field 1 (resource_spans), wire type 2, length 10 but only 2 bytes follow.
    let err = otlp::decode(
        Encoding::Protobuf,
        Bytes::from_static(&[0x0a, 0x0a, 0x01, 0x02]),
    )
    .expect_err("truncated protobuf");
    let OtlpError::Malformed(msg) = &err else {
        panic!("want Malformed, got {err:?}")
    };
    assert!(
        msg.contains("buffer underflow") || msg.contains("decode"),
        "{msg}"
    );
    assert_eq!(err.reason(), "malformed_body");
    assert_eq!(err.rpc_code(), otlp::code::INVALID_ARGUMENT);
    // Random garbage.
    assert!(matches!(
        otlp::decode(
            Encoding::Protobuf,
            Bytes::from_static(b"\xff\xff\xff\xff\xff")
        ),
        Err(OtlpError::Malformed(_))
    ));
}

#[test]
fn malformed_json_says_what_is_wrong() {
    let cases: &[(&[u8], &str)] = &[
        (b"{\"resourceSpans\": [", "EOF"),
        (b"not json", "expected"),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
            "Invalid",
        ),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"soon"}]}]}]}"#,
            "invalid digit",
        ),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_SERVER"}]}]}]}"#,
            "invalid type",
        ),
    ];
    for (body, want) in cases {
        match otlp::decode(Encoding::Json, Bytes::from_static(body)) {
            Err(OtlpError::Malformed(msg)) => {
                assert!(msg.starts_with("invalid OTLP/JSON"), "{msg}");
                assert!(
                    msg.to_lowercase().contains(&want.to_lowercase()),
                    "{msg} lacks {want}"
                );
            }
            other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
}

#[test]
fn wrong_id_length_is_refused_with_path() {
    let mut req = request();
    req.resource_spans[1].scope_spans[0].spans[2].span_id = vec![1, 2, 3];
    let wire = Bytes::from(req.encode_to_vec());
    match otlp::decode(Encoding::Protobuf, wire) {
        Err(OtlpError::Malformed(msg)) => assert_eq!(
            msg,
            "resourceSpans[1].scopeSpans[0].spans[2].spanId: expected 8 bytes, got 3"
        ),
        other => panic!("{other:?}"),
    }
    let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102"}]}]}]}"#;
    assert!(matches!(
        otlp::decode(Encoding::Json, Bytes::from_static(body)),
        Err(OtlpError::Malformed(m)) if m.contains("traceId: expected 16 bytes, got 2")
    ));
}

#[test]
fn empty_body_is_an_empty_request() {
    let b = otlp::decode(Encoding::Protobuf, Bytes::new()).expect("empty protobuf");
    assert_eq!(b.summary.spans, 0);
    let b = otlp::decode(Encoding::Json, Bytes::from_static(b"{}")).expect("empty json");
    assert_eq!(b.summary.resources.len(), 0);
}

#[tokio::test]
async fn cap_exact_accepted_one_more_refused_plain() {
    let cap = 10_000;
    let body = Bytes::from(vec![7u8; cap]);
    assert_eq!(
        read(body.clone(), None, cap).await.expect("at cap").len(),
        cap
    );
    let over = Bytes::from(vec![7u8; cap + 1]);
    assert!(matches!(read(over, None, cap).await, Err(OtlpError::TooLarge(c)) if c == cap));
}

#[tokio::test]
async fn cap_exact_accepted_one_more_refused_gzip() {
    let cap = 100_000;
    let exact = otlp::gzip(&vec![1u8; cap], 6);
    assert_eq!(
        read(exact, Some("gzip"), cap).await.expect("at cap").len(),
        cap
    );
    let over = otlp::gzip(&vec![1u8; cap + 1], 6);
    let err = read(over, Some("gzip"), cap).await.expect_err("over cap");
    assert!(matches!(err, OtlpError::TooLarge(c) if c == cap));
    assert_eq!(err.reason(), "body_too_large");
}

#[tokio::test]
async fn compressed_body_over_cap_is_refused_before_inflating() {
    // Incompressible data: the gzip body itself is over the cap.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..50_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect();
    let z = otlp::gzip(&data, 9);
    assert!(z.len() > 40_000);
    assert!(matches!(
        read(z, Some("gzip"), 40_000).await,
        Err(OtlpError::TooLarge(40_000))
    ));
}

/// 1 GiB of zeros as 1024 gzip members of 1 MiB each: about 1 MiB on the wire.
fn gzip_bomb() -> Bytes {
    let member = otlp::gzip(&vec![0u8; 1 << 20], 9);
    let mut bomb = Vec::with_capacity(member.len() * 1024);
    for _ in 0..1024 {
        bomb.extend_from_slice(&member);
    }
    Bytes::from(bomb)
}

#[tokio::test]
async fn gzip_bomb_is_refused_with_bounded_memory() {
    let bomb = gzip_bomb();
    assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
    let cap = 4 << 20;
    assert!(matches!(
        read(bomb.clone(), Some("gzip"), cap).await,
        Err(OtlpError::TooLarge(c)) if c == cap
    ));
    // Structural bound: the output buffer never grew past cap + 1 bytes,
    // though the stream would inflate to 1 GiB.
    let mut out = Vec::new();
    let r = otlp::gunzip_into(&bomb, cap, &mut out);
    assert!(matches!(r, Err(OtlpError::TooLarge(_))));
    assert!(out.capacity() <= cap + 1, "capacity {}", out.capacity());
    assert_eq!(out.len(), cap + 1, "stopped one byte past the cap");
}

#[tokio::test]
async fn chunked_body_is_joined_and_capped() {
    let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = (0..10u8)
        .map(|i| Ok(http_body::Frame::data(Bytes::from(vec![i; 1000]))))
        .collect();
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let got = otlp::read_body(body, None, 10_000)
        .await
        .expect("10 chunks");
    assert_eq!(got.len(), 10_000);
    assert_eq!(got[0], 0);
    assert_eq!(got[9_999], 9);

    let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = (0..10u8)
        .map(|i| Ok(http_body::Frame::data(Bytes::from(vec![i; 1000]))))
        .collect();
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    assert!(matches!(
        otlp::read_body(body, None, 9_999).await,
        Err(OtlpError::TooLarge(9_999))
    ));
}

#[tokio::test]
async fn body_stream_error_is_distinguishable() {
    let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = vec![
        Ok(http_body::Frame::data(Bytes::from_static(b"abc"))),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "peer went away",
        )),
    ];
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let err = otlp::read_body(body, None, 1000)
        .await
        .expect_err("stream error");
    assert!(
        matches!(&err, OtlpError::Body(m) if m.contains("peer went away")),
        "{err:?}"
    );
    assert_eq!(err.reason(), "body_read_failed");
}

#[tokio::test]
async fn unsupported_content_encoding() {
    for ce in ["br", "deflate", "zstd", "gzip, br"] {
        assert!(matches!(
            read(Bytes::from_static(b"x"), Some(ce), 100).await,
            Err(OtlpError::UnsupportedEncoding)
        ));
    }
}

#[tokio::test]
async fn invalid_gzip_is_malformed() {
    assert!(matches!(
        read(Bytes::from_static(b"plain text"), Some("gzip"), 100).await,
        Err(OtlpError::Malformed(m)) if m.contains("gzip")
    ));
}

#[test]
fn export_response_decodes_with_standard_types() {
    let pb = otlp::export_response(Encoding::Protobuf, 4, "4 spans refused: service");
    let r = ExportTraceServiceResponse::decode(&pb[..]).expect("protobuf response");
    let p = r.partial_success.expect("partial_success");
    assert_eq!(
        (p.rejected_spans, p.error_message.as_str()),
        (4, "4 spans refused: service")
    );

    let js = otlp::export_response(Encoding::Json, 4, "4 spans refused: service");
    let r: ExportTraceServiceResponse = serde_json::from_slice(&js).expect("json response");
    let p = r.partial_success.expect("partialSuccess");
    assert_eq!(p.rejected_spans, 4);
    let v: serde_json::Value = serde_json::from_slice(&js).expect("json");
    assert_eq!(
        v["partialSuccess"]["errorMessage"],
        "4 spans refused: service"
    );

    let full = otlp::export_response(Encoding::Protobuf, 0, "");
    assert_eq!(
        ExportTraceServiceResponse::decode(&full[..]).expect("decode"),
        ExportTraceServiceResponse::default()
    );
    let full: ExportTraceServiceResponse =
        serde_json::from_slice(&otlp::export_response(Encoding::Json, 0, "")).expect("decode");
    assert_eq!(full, ExportTraceServiceResponse::default());
}

#[test]
fn status_body_both_encodings() {
    let pb = otlp::status_body(
        Encoding::Protobuf,
        otlp::code::PERMISSION_DENIED,
        "denied by rule x",
    );
    let s = otlp::Status::decode(&pb[..]).expect("status");
    assert_eq!((s.code, s.message.as_str()), (7, "denied by rule x"));
    assert!(s.details.is_empty());
    let js = otlp::status_body(Encoding::Json, otlp::code::INVALID_ARGUMENT, "bad \"id\"");
    let v: serde_json::Value = serde_json::from_slice(&js).expect("json");
    assert_eq!(v, serde_json::json!({"code": 3, "message": "bad \"id\""}));
}

#[test]
fn duplicate_resource_attribute_keys_are_refused() {
    let mut req = request();
    if let Some(r) = req.resource_spans[1].resource.as_mut() {
        r.attributes.push(kv("service.name", s("checkout")));
    }
    match otlp::decode(Encoding::Protobuf, Bytes::from(req.encode_to_vec())) {
        Err(OtlpError::Malformed(msg)) => assert_eq!(
            msg,
            "resourceSpans[1].resource.attributes: duplicate key \"service.name\""
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn large_bodies_decode_off_thread_with_same_result() {
    let mut req = request();
    let spans: Vec<Span> = (0..600u16)
        .map(|i| {
            span(
                (i % 250) as u8,
                vec![kv("i", any_value::Value::IntValue(i.into()))],
            )
        })
        .collect();
    req.resource_spans[1].scope_spans[0].spans = spans;
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let wire = otlp::encode_request(encoding, &req);
        assert!(wire.len() >= otlp::OFF_THREAD_BYTES, "{}", wire.len());
        let z = otlp::gzip(&wire, 6);
        let raw = read(z, Some("gzip"), 1 << 24).await.expect("read");
        assert_eq!(raw, wire);
        let batch = otlp::decode_off_thread(encoding, raw)
            .await
            .expect("decode");
        assert_eq!(batch.request, req);
        assert_eq!(batch.summary.spans, 602);
        let bad = otlp::decode_off_thread(encoding, wire.slice(..wire.len() - 3)).await;
        assert!(matches!(bad, Err(OtlpError::Malformed(_))), "{encoding:?}");
    }
}
