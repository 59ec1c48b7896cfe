//! OTLP/JSON decoding: `opentelemetry-proto`'s serde types, plus a narrow
//! fallback for the places where that serde impl is stricter than the
//! proto3 JSON mapping OTLP/JSON is defined by.
//!
//! The fast path is a direct `serde_json::from_slice` into the maintained
//! types, which already handles hex ids, lowerCamelCase keys, 64-bit
//! integers as strings or numbers, integer enums and unknown fields.
//! Only when that fails and the body is valid JSON do we normalise a
//! `serde_json::Value` and retry. Gaps fixed there (all legal OTLP/JSON):
//!
//! - `null` for any field means "default" (proto3 JSON), so null entries
//!   are removed (the serde types refuse null for ids, lists and numbers);
//! - `ArrayValue`/`KeyValueList` without `values`, `KeyValue` without
//!   `key`, `EntityRef` without `schemaUrl`/`type`/`idKeys`/
//!   `descriptionKeys` (omitted defaults; Go's protojson omits them) get
//!   their defaults;
//! - 32-bit integers (`droppedAttributesCount`, `flags`, `kind`, `code`, …)
//!   and `doubleValue` sent as decimal strings become numbers.
//!
//! Still refused: `doubleValue` as `"NaN"`/`"Infinity"` and enum names
//! instead of integers (OTLP/JSON requires integers). If the retry fails
//! too, the error of the fast path is reported.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::{Map, Value};

use super::OtlpError;

/// Numeric fields other than 64-bit ones (those the serde types already
/// accept as strings) that proto3 JSON allows as decimal strings.
const NUMERIC_KEYS: &[&str] = &[
    "droppedAttributesCount",
    "droppedEventsCount",
    "droppedLinksCount",
    "flags",
    "kind",
    "code",
];

/// Decode an OTLP/JSON `ExportTraceServiceRequest`.
pub(super) fn decode(raw: &[u8]) -> Result<ExportTraceServiceRequest, OtlpError> {
    decode_any(raw)
}

/// Decode any OTLP/JSON `Export*ServiceRequest` (the same rules for the
/// three signals: the normalisations above concern shared message types and
/// numeric fields).
pub(super) fn decode_any<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, OtlpError> {
    let first = match serde_json::from_slice::<T>(raw) {
        Ok(request) => return Ok(request),
        Err(e) => e,
    };
    let report = |e: &serde_json::Error| OtlpError::malformed(format!("invalid OTLP/JSON: {e}"));
    if !first.is_data() {
        // Syntax error or EOF: no normalisation can help.
        return Err(report(&first));
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(raw) else {
        return Err(report(&first));
    };
    if !normalize(&mut value, "") {
        return Err(report(&first));
    }
    serde_json::from_value(value).map_err(|_| report(&first))
}

/// Apply the fixes listed in the module doc under `value` (reached through
/// object key `key`); true when anything changed.
fn normalize(value: &mut Value, key: &str) -> bool {
    match value {
        Value::Object(map) => normalize_object(map, key),
        Value::Array(items) => {
            let mut changed = false;
            for item in items.iter_mut() {
                if key == "attributes" {
                    changed |= default_keys(item, &[("key", Value::String(String::new()))]);
                }
                if key == "entityRefs" {
                    changed |= default_keys(
                        item,
                        &[
                            ("schemaUrl", Value::String(String::new())),
                            ("type", Value::String(String::new())),
                            ("idKeys", Value::Array(Vec::new())),
                            ("descriptionKeys", Value::Array(Vec::new())),
                        ],
                    );
                }
                changed |= normalize(item, "");
            }
            changed
        }
        Value::String(s) if NUMERIC_KEYS.contains(&key) => match s.parse::<i64>() {
            Ok(n) => {
                *value = Value::from(n);
                true
            }
            Err(_) => false,
        },
        Value::String(s) if key == "doubleValue" => {
            match s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => {
                    *value = Value::Number(n);
                    true
                }
                None => false,
            }
        }
        _ => false,
    }
}

fn normalize_object(map: &mut Map<String, Value>, key: &str) -> bool {
    let before = map.len();
    map.retain(|_, v| !v.is_null());
    let mut changed = map.len() != before;
    if (key == "arrayValue" || key == "kvlistValue") && !map.contains_key("values") {
        map.insert("values".into(), Value::Array(Vec::new()));
        changed = true;
    }
    if key == "kvlistValue"
        && let Some(Value::Array(items)) = map.get_mut("values")
    {
        for item in items {
            changed |= default_keys(item, &[("key", Value::String(String::new()))]);
        }
    }
    for (k, v) in map.iter_mut() {
        changed |= normalize(v, k);
    }
    changed
}

/// Insert missing `defaults` into `item` if it is an object.
fn default_keys(item: &mut Value, defaults: &[(&str, Value)]) -> bool {
    let Value::Object(map) = item else {
        return false;
    };
    let mut changed = false;
    for (k, v) in defaults {
        if map.get(*k).is_none_or(Value::is_null) {
            map.insert((*k).to_owned(), v.clone());
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;

    fn ok(body: &str) -> ExportTraceServiceRequest {
        match decode(body.as_bytes()) {
            Ok(r) => r,
            Err(e) => panic!("{body}: {e}"),
        }
    }

    fn attr(r: &ExportTraceServiceRequest) -> Option<V> {
        r.resource_spans
            .first()?
            .resource
            .as_ref()?
            .attributes
            .first()?
            .value
            .as_ref()?
            .value
            .clone()
    }

    #[test]
    fn empty_array_and_kvlist_values() {
        let r = ok(
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"arrayValue":{}}}]}}]}"#,
        );
        assert!(matches!(attr(&r), Some(V::ArrayValue(a)) if a.values.is_empty()));
        let r = ok(
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"kvlistValue":{"values":[{"value":{"intValue":"1"}}]}}}]}}]}"#,
        );
        assert!(
            matches!(attr(&r), Some(V::KvlistValue(k)) if k.values.len() == 1 && k.values[0].key.is_empty())
        );
    }

    #[test]
    fn nulls_mean_default() {
        let r = ok(
            r#"{"resourceSpans":[{"resource":{"attributes":null},"scopeSpans":[{"spans":[{"parentSpanId":null,"kind":null,"traceId":"0af7651916cd43dd8448eb211c80319c"}]}]}]}"#,
        );
        let span = &r.resource_spans[0].scope_spans[0].spans[0];
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(ok(r#"{"resourceSpans":null}"#).resource_spans.len(), 0);
    }

    #[test]
    fn numbers_as_strings() {
        let r = ok(
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"d","value":{"doubleValue":"1.5"}}]},"scopeSpans":[{"spans":[{"kind":"2","flags":"257","droppedAttributesCount":"3","status":{"code":"2"}}]}]}]}"#,
        );
        assert_eq!(attr(&r), Some(V::DoubleValue(1.5)));
        let span = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            (span.kind, span.flags, span.dropped_attributes_count),
            (2, 257, 3)
        );
        assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
    }

    #[test]
    fn entity_refs_defaults() {
        let r = ok(
            r#"{"resourceSpans":[{"resource":{"entityRefs":[{"type":"k8s.pod","idKeys":["k8s.pod.uid"]}]}}]}"#,
        );
        let refs = &r.resource_spans[0]
            .resource
            .as_ref()
            .map(|r| r.entity_refs.clone());
        assert_eq!(refs.as_ref().map(|r| r[0].r#type.as_str()), Some("k8s.pod"));
    }

    #[test]
    fn still_refused_reports_first_error() {
        for body in [
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_SERVER"}]}]}]}"#,
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"doubleValue":"NaN"}}]}}]}"#,
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz","name":null}]}]}]}"#,
            r#"{"resourceSpans": ["#,
        ] {
            assert!(
                matches!(decode(body.as_bytes()), Err(OtlpError::Malformed(m)) if m.starts_with("invalid OTLP/JSON")),
                "{body}"
            );
        }
    }
}
