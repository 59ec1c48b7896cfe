use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::oracle::{self, Verdict, compare};
use super::*;
use crate::otlp::wire::oracle::Edit;
use crate::otlp::wire::tests::{gen_logs, gen_metrics, gen_traces};
use crate::otlp::{Encoding, Received, Rewritten, receive, receive_full};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";

fn edit(keep: &[bool]) -> Edit {
    Edit {
        keep: keep.to_vec(),
        stamp: vec![
            ("spangate.subject".into(), "s1".into()),
            ("service.name".into(), "stamped".into()),
        ],
        protected: vec!["spangate.*".into(), "k".into()],
    }
}

fn agreed(signal: Signal, body: &str, e: &Edit) {
    let raw = Bytes::from(body.to_owned());
    assert_eq!(
        compare(signal, &raw, e, &[]),
        Ok(Verdict::Agreed),
        "{signal:?} {body}"
    );
}

fn declined(signal: Signal, body: &str) -> String {
    let raw = Bytes::from(body.to_owned());
    let verdict = compare(signal, &raw, &edit(&[true, true]), &[]);
    match verdict {
        Ok(Verdict::Declined(why)) => why,
        other => panic!("{signal:?} {body}: expected a decline, got {other:?}"),
    }
}

fn span(extra: &str) -> String {
    format!(r#"{{"traceId":"{TRACE}","spanId":"{SPAN}","name":"s"{extra}}}"#)
}

fn traces(spans: &[String]) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"api"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

#[test]
fn clean_bodies_of_every_signal_are_scanned() {
    let e = edit(&[true, true, true]);
    agreed(Signal::Traces, &traces(&[span(""), span("")]), &e);
    let body = traces(&[span(
        r#","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":2,"attributes":[{"key":"k","value":{"intValue":"3"}},{"key":"x","value":{"arrayValue":{"values":[{"doubleValue":1.5},{"kvlistValue":{"values":[{"key":"a","value":{"boolValue":true}}]}}]}}}],"events":[{"name":"e","attributes":[]}],"links":[{"traceId":"","spanId":""}],"status":{"code":2,"message":"m"}"#,
    )]);
    agreed(Signal::Traces, &body, &e);
    let raw = Bytes::from(body);
    let Ok(scanned) = scan(Signal::Traces, raw.clone()) else {
        panic!("declined");
    };
    assert_eq!(scanned.summary.spans, 1);
    assert_eq!(
        scanned.summary.resources[0].service_name.as_deref(),
        Some("api")
    );
    let metrics = r#"{"resourceMetrics":[{"resource":{},"scopeMetrics":[{"scope":{"name":"m"},"metrics":[
        {"name":"g","gauge":{"dataPoints":[{"asDouble":1,"attributes":[{"key":"k","value":{"stringValue":"v"}}]},{"asInt":"2","exemplars":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"","asDouble":0.5}]}]}},
        {"name":"s","sum":{"dataPoints":[{"asInt":3}],"aggregationTemporality":2,"isMonotonic":true}},
        {"name":"h","histogram":{"dataPoints":[{"count":"2","sum":3.5,"bucketCounts":["1",1],"explicitBounds":[1.0],"min":null}]}},
        {"name":"e","exponentialHistogram":{"dataPoints":[{"scale":-2,"zeroCount":"1","positive":{"offset":1,"bucketCounts":[1]}}]}},
        {"name":"q","summary":{"dataPoints":[{"sum":1,"quantileValues":[{"quantile":0.5,"value":2}]}]}},
        {"name":"empty"}]}]}]}"#;
    agreed(Signal::Metrics, metrics, &e);
    let Ok(scanned) = scan(Signal::Metrics, Bytes::from(metrics)) else {
        panic!("declined");
    };
    assert_eq!(scanned.summary.spans, 6);
    let logs = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"hi"}},"severityNumber":9,"traceId":"{TRACE}","spanId":"{SPAN}","attributes":[{{"key":"spangate.x","value":{{}}}}]}},{{}}]}}]}}]}}"#
    );
    agreed(Signal::Logs, &logs, &e);
}

#[test]
fn nulls_where_the_serde_types_take_them() {
    let e = edit(&[true]);
    agreed(
        Signal::Traces,
        &format!(
            r#"{{"resourceSpans":[{{"resource":null,"scopeSpans":[{{"scope":null,"spans":[{}]}}]}}]}}"#,
            span(r#","status":null,"attributes":[{"key":"a","value":null}]"#)
        ),
        &e,
    );
}

#[test]
fn serde_output_is_scanned() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut accepted = 0;
    for _ in 0..50 {
        let req = gen_traces().new_tree(&mut runner).map(|t| t.current());
        let Ok(req) = req else { continue };
        let raw = Bytes::from(serde_json::to_vec(&req).unwrap_or_default());
        if let Ok(Verdict::Agreed) = compare(Signal::Traces, &raw, &edit(&[true; 4]), &[]) {
            accepted += 1;
        }
    }
    // Generated batches include bytes values and bad ids (declined); most
    // are plain.
    assert!(accepted >= 10, "only {accepted} of 50 accepted");
}

#[test]
fn declines_what_it_does_not_handle_exactly() {
    let t = |extra: &str| traces(&[span(extra)]);
    let cases: Vec<(Signal, String)> = vec![
        // null where the serde types want a value
        (Signal::Traces, t(r#","kind":null"#)),
        (Signal::Traces, r#"{"resourceSpans":null}"#.into()),
        // numbers as strings (proto3 JSON allows them; the full path normalises)
        (Signal::Traces, t(r#","kind":"2""#)),
        (Signal::Traces, t(r#","droppedAttributesCount":"1""#)),
        // a duplicate member inside an item, and in an attribute value
        (Signal::Traces, t(r#","name":"again""#)),
        (
            Signal::Traces,
            t(r#","attributes":[{"key":"a","value":{"stringValue":"x","intValue":1}}]"#),
        ),
        // escapes in an item attribute key and in a value's member name
        (
            Signal::Traces,
            t(r#","attributes":[{"key":"spangate\u002ex","value":{}}]"#),
        ),
        (
            Signal::Traces,
            t(r#","attributes":[{"key":"a","value":{"string\u0056alue":"x"}}]"#),
        ),
        // unknown members of an attribute, of a value's list
        (
            Signal::Traces,
            t(r#","events":[{"attributes":[{"key":"a","x":[[1]]}]}]"#),
        ),
        (
            Signal::Traces,
            t(r#","attributes":[{"key":"a","value":{"arrayValue":{"values":[],"x":1}}}]"#),
        ),
        // unknown value member, bytes values
        (
            Signal::Traces,
            t(r#","attributes":[{"key":"a","value":{"nope":1}}]"#),
        ),
        (
            Signal::Traces,
            t(r#","attributes":[{"key":"a","value":{"bytesValue":"AQI="}}]"#),
        ),
        // ids: wrong length, 0x prefix, not hex
        (Signal::Traces, traces(&[r#"{"traceId":"0af7"}"#.into()])),
        (
            Signal::Traces,
            traces(&[r#"{"spanId":"0xb7ad6b7169203331"}"#.into()]),
        ),
        (
            Signal::Traces,
            traces(&[r#"{"spanId":"zzad6b7169203331"}"#.into()]),
        ),
        // positional (array) form of a message
        (Signal::Traces, traces(&[r#"["ab"]"#.into()])),
        (Signal::Traces, r#"{"resourceSpans":[[]]}"#.into()),
        // a key without a value (the full path defaults it)
        (Signal::Traces, t(r#","attributes":[{"value":{}}]"#)),
        // duplicate resource attribute keys (the full path refuses)
        (
            Signal::Traces,
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"a"},{"key":"a"}]}}]}"#.into(),
        ),
        // metrics: unknown member, two data fields, both point values
        (
            Signal::Metrics,
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","x":1}]}]}]}"#.into(),
        ),
        (
            Signal::Metrics,
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{},"sum":{}}]}]}]}"#
                .into(),
        ),
        (
            Signal::Metrics,
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":[{"asInt":1,"asDouble":1}]}}]}]}]}"#
                .into(),
        ),
        (
            Signal::Metrics,
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":[{"asDouble":"1.5"}]}}]}]}]}"#
                .into(),
        ),
        // logs: enum names instead of integers
        (
            Signal::Logs,
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"SEVERITY_NUMBER_INFO"}]}]}]}"#
                .into(),
        ),
        // not UTF-8-clean / not JSON
        (Signal::Traces, r#"{"resourceSpans": ["#.into()),
    ];
    for (signal, body) in cases {
        let why = declined(signal, &body);
        assert!(!why.is_empty());
    }
    // Values nested deeper than MAX_VALUE_DEPTH.
    let mut v = String::from(r#"{"stringValue":"x"}"#);
    for _ in 0..MAX_VALUE_DEPTH + 1 {
        v = format!(r#"{{"arrayValue":{{"values":[{v}]}}}}"#);
    }
    declined(
        Signal::Traces,
        &traces(&[span(&format!(
            r#","attributes":[{{"key":"a","value":{v}}}]"#
        ))]),
    );
}

/// The quirks `json.rs` normalises: declined here, accepted by `receive`
/// through the full path with the meaning the full decode gives them.
#[test]
fn declined_quirks_fall_back_to_the_full_decode() {
    for body in [
        traces(&[span(
            r#","kind":"2","flags":"257","droppedAttributesCount":"3""#,
        )]),
        traces(&[span(r#","parentSpanId":null,"kind":null"#)]),
        traces(&[span(
            r#","attributes":[{"key":"a","value":{"arrayValue":{}}}]"#,
        )]),
        traces(&[span(r#","attributes":[{"value":{"intValue":"1"}}]"#)]),
        traces(&[span(
            r#","attributes":[{"key":"a","value":{"doubleValue":"1.5"}}]"#,
        )]),
    ] {
        let raw = Bytes::from(body.clone());
        assert!(scan(Signal::Traces, raw.clone()).is_err(), "{body}");
        let r = receive(Signal::Traces, Encoding::Json, raw);
        assert!(
            matches!(&r, Ok(Received::Decoded(b)) if b.summary.spans == 1),
            "{body}: {r:?}"
        );
    }
    // Metrics and logs the scan declines are converted for the protobuf
    // walk, and forwarded as JSON again: unchanged as received, rewritten
    // as the serde types write it.
    let body = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"spangate.x","value":{"stringValue":"v"}}]},"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":[{"asDouble":"1.5","attributes":[{"key":"k","value":{}}]}]}}]}]}]}"#;
    let raw = Bytes::from_static(body.as_bytes());
    assert!(scan(Signal::Metrics, raw.clone()).is_err());
    let r = receive(Signal::Metrics, Encoding::Json, raw.clone());
    let Ok(r) = r else { panic!("{r:?}") };
    assert!(matches!(r, Received::Converted { .. }), "{r:?}");
    assert_eq!(r.forward_encoding(Encoding::Json), Encoding::Json);
    let same = r.clone().rewrite(&[true], &[], &[]);
    assert!(
        matches!(&same, Ok(w) if w.body.as_ref() == Some(&raw)),
        "{same:?}"
    );
    let e = edit(&[true]);
    let out = r.rewrite(&e.keep, &e.stamp, &e.protected);
    let Ok(out) = out else { panic!("{out:?}") };
    assert_eq!(out.outcome.stripped_attributes, 2);
    let Some(json) = out.body else {
        panic!("no body")
    };
    let full = receive_full(Signal::Metrics, Encoding::Json, raw)
        .and_then(|r| r.rewrite(&e.keep, &e.stamp, &e.protected));
    let Ok(Rewritten {
        body: Some(proto), ..
    }) = full
    else {
        panic!("{full:?}")
    };
    assert_eq!(
        oracle::canonical(Signal::Metrics, Encoding::Json, &json),
        oracle::canonical(Signal::Metrics, Encoding::Protobuf, &proto)
    );
}

#[test]
fn receive_scans_json_and_forwards_json() {
    for (signal, body) in [
        (Signal::Traces, traces(&[span("")])),
        (
            Signal::Metrics,
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":[{}]}}]}]}]}"#.into(),
        ),
        (
            Signal::Logs,
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}]}]}"#.into(),
        ),
    ] {
        let r = receive(signal, Encoding::Json, Bytes::from(body));
        let Ok(r) = r else {
            panic!("{signal:?}: {r:?}");
        };
        assert!(matches!(r, Received::Json(_)), "{signal:?}");
        assert_eq!(r.forward_encoding(Encoding::Json), Encoding::Json);
        assert_eq!(r.summary().spans, 1);
    }
}

#[test]
fn splice_drops_entries_with_correct_commas() {
    let entry = |svc: &str| {
        format!(
            r#"{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{svc}"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}"#,
            span("")
        )
    };
    let body = format!(
        "{{ \"resourceSpans\" : [ {} ,\n {} , {} ] , \"x\": 1 }}",
        entry("a"),
        entry("b"),
        entry("c")
    );
    for keep in [
        [false, true, true],
        [true, false, true],
        [true, true, false],
        [false, false, true],
        [true, false, false],
        [false, false, false],
    ] {
        let no_stamp = Edit {
            keep: keep.to_vec(),
            ..Edit::default()
        };
        agreed(Signal::Traces, &body, &no_stamp);
        agreed(Signal::Traces, &body, &edit(&keep));
        let Ok(s) = scan(Signal::Traces, Bytes::from(body.clone())) else {
            panic!("declined");
        };
        let out = s.splice_with(&keep, &[], &[], &[]);
        let Ok(out) = out else { panic!("{out:?}") };
        let kept = keep.iter().filter(|k| **k).count();
        assert_eq!(out.kept_resources, kept);
        if kept > 0 {
            let r = receive_full(Signal::Traces, Encoding::Json, out.body.clone());
            let Ok(r) = r else { panic!("{r:?}") };
            assert_eq!(r.summary().resources.len(), kept);
        }
    }
}

#[test]
fn splice_copies_everything_but_the_changed_resource() {
    let body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}],"schemaUrl":"u"}},{{}}]}}"#,
        span(
            r#","attributes":[{"key":"spangate.subject","value":{"stringValue":"spoof"}},{"key":"keep","value":{"intValue":1}},{"key":"k","value":{}}]"#
        )
    );
    agreed(Signal::Traces, &body, &edit(&[true, true]));
    let Ok(s) = scan(Signal::Traces, Bytes::from(body.clone())) else {
        panic!("declined");
    };
    let e = edit(&[true, true]);
    let out = s.splice_with(&e.keep, &e.stamp, &e.protected, &[]);
    let Ok(out) = out else { panic!("{out:?}") };
    let text = String::from_utf8_lossy(&out.body).into_owned();
    assert_eq!(out.outcome.stripped_attributes, 2);
    // The kept attribute and the span are copied byte for byte.
    assert!(
        text.contains(r#""attributes":[{"key":"keep","value":{"intValue":1}}]"#),
        "{text}"
    );
    assert!(text.contains(r#""schemaUrl":"u""#), "{text}");
    // A resource is inserted where there was none, with or without other members.
    assert!(text.contains(r#"{"resource":{"#), "{text}");
    assert!(!text.contains("spoof"), "{text}");

    // Nothing to do: the very same bytes.
    let out = s.splice_with(&[true, true], &[], &[], &[]);
    let Ok(out) = out else { panic!("{out:?}") };
    assert!(!out.outcome.changed);
    assert_eq!(out.body.as_ptr(), s.raw().as_ptr());
}

#[test]
fn splice_with_strips_one_resource_only() {
    let body = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"vercel.deployment_id","value":{"stringValue":"d"}},{"key":"service.name","value":{"stringValue":"a"}}]}},{"resource":{"attributes":[{"key":"vercel.deployment_id","value":{"stringValue":"d"}}]}}]}"#;
    let raw = Bytes::from_static(body.as_bytes());
    let strip = vec![vec!["vercel.deployment_id".to_owned()]];
    let e = Edit {
        keep: vec![true, true],
        ..Edit::default()
    };
    assert_eq!(compare(Signal::Logs, &raw, &e, &strip), Ok(Verdict::Agreed));
    let Ok(s) = scan(Signal::Logs, raw) else {
        panic!("declined")
    };
    let out = s.splice_with(&e.keep, &[], &[], &strip);
    let Ok(out) = out else { panic!("{out:?}") };
    assert!(out.outcome.changed);
    let text = String::from_utf8_lossy(&out.body).into_owned();
    assert_eq!(text.matches("vercel.deployment_id").count(), 1, "{text}");
}

// ───────────── property test: generated batches, wire vs full ─────────────

/// Text-level damage after serialising, so the property also covers bodies
/// no serialiser writes.
fn damage() -> impl Strategy<Value = (u8, usize, usize)> {
    (0u8..12, any::<usize>(), any::<usize>())
}

const SNIPPETS: &[&str] = &[
    "null",
    r#""name":"x","#,
    r#""kind":"1","#,
    r#""attributes":[],"#,
    r#""traceId":"00","#,
    r#""resource":{},"#,
    r#""intValue":"7","#,
    ",",
    "{",
    "]",
    r#""x":[[[]]],"#,
    r#""\u0061":1,"#,
];

fn damaged(raw: Vec<u8>, (how, at, what): (u8, usize, usize)) -> Bytes {
    let mut raw = raw;
    let n = raw.len();
    match how {
        0 if n > 0 => raw.truncate(at % n),
        1 if n > 0 => {
            let b = &mut raw[at % n];
            if b.is_ascii_graphic() {
                *b = b"{}[],:\"0an"[what % 10];
            }
        }
        2..=4 if n > 0 => {
            // Insert a snippet just after a '{' or ','.
            let starts: Vec<usize> = raw
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'{' || **b == b',')
                .map(|(i, _)| i + 1)
                .collect();
            if !starts.is_empty() {
                let p = starts[at % starts.len()];
                let s = SNIPPETS[what % SNIPPETS.len()];
                raw.splice(p..p, s.bytes());
            }
        }
        _ => {}
    }
    Bytes::from(raw)
}

fn gen_edit() -> impl Strategy<Value = (Edit, Vec<Vec<String>>)> {
    (
        prop::collection::vec(any::<bool>(), 0..5),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(keep, stamp, protect, link)| {
            let e = Edit {
                keep,
                stamp: if stamp {
                    vec![
                        ("spangate.subject".into(), "p".into()),
                        ("service.name".into(), "stamped".into()),
                    ]
                } else {
                    vec![]
                },
                protected: if protect {
                    vec!["spangate.*".into(), "a".into(), String::new()]
                } else {
                    vec![]
                },
            };
            let strip = if link {
                vec![vec![], vec!["k8s.pod".into(), "enduser.id".into()]]
            } else {
                vec![]
            };
            (e, strip)
        })
}

fn json(v: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn traces_json_wire_agrees_with_full_path(
        req in gen_traces(), (e, strip) in gen_edit(), d in damage()
    ) {
        let req: ExportTraceServiceRequest = req;
        let raw = damaged(json(&req), d);
        prop_assert!(compare(Signal::Traces, &raw, &e, &strip).is_ok(),
            "{:?} on {}", compare(Signal::Traces, &raw, &e, &strip), String::from_utf8_lossy(&raw));
    }

    #[test]
    fn metrics_json_wire_agrees_with_full_path(
        req in gen_metrics(), (e, strip) in gen_edit(), d in damage()
    ) {
        let req: ExportMetricsServiceRequest = req;
        let raw = damaged(json(&req), d);
        prop_assert!(compare(Signal::Metrics, &raw, &e, &strip).is_ok(),
            "{:?} on {}", compare(Signal::Metrics, &raw, &e, &strip), String::from_utf8_lossy(&raw));
    }

    #[test]
    fn logs_json_wire_agrees_with_full_path(
        req in gen_logs(), (e, strip) in gen_edit(), d in damage()
    ) {
        let req: ExportLogsServiceRequest = req;
        let raw = damaged(json(&req), d);
        prop_assert!(compare(Signal::Logs, &raw, &e, &strip).is_ok(),
            "{:?} on {}", compare(Signal::Logs, &raw, &e, &strip), String::from_utf8_lossy(&raw));
    }
}

/// The committed fuzz corpus (seeds and past findings) agrees, and its
/// clean seeds are scanned rather than declined.
#[test]
fn fuzz_corpus_agrees() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/otlp_json_wire");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("no corpus at {}", dir.display());
    };
    let mut agreed = 0;
    for entry in entries.flatten() {
        let data = std::fs::read(entry.path()).unwrap_or_default();
        let Some((&sel, body)) = data.split_first() else {
            continue;
        };
        let signal = match sel & 3 {
            1 => Signal::Metrics,
            2 => Signal::Logs,
            _ => Signal::Traces,
        };
        let e = Edit {
            keep: (0..64).map(|i| i >= 4 || sel & (0x10 << i) == 0).collect(),
            ..edit(&[])
        };
        let verdict = compare(signal, &Bytes::copy_from_slice(body), &e, &[]);
        assert!(verdict.is_ok(), "{}: {verdict:?}", entry.path().display());
        agreed += usize::from(verdict == Ok(Verdict::Agreed));
    }
    assert!(agreed >= 6, "only {agreed} corpus entries scanned");
}
