//! OTLP trace payloads: body reading (gzip, cap after decompression), decoding
//! protobuf and JSON, summaries for policy, stamping, re-encoding, and
//! OTLP-correct responses.
//!
//! The flow the proxy drives, one plain call per stage:
//!
//! ```text
//! read_body(body, content-encoding, cap)  -> decompressed Bytes        | 413 / 415 / 400
//! decode(encoding, bytes)                 -> Batch { request, summary } | 400 + google.rpc.Status
//! rewrite(&mut batch, keep, stamp, prot.) -> RewriteOutcome             (drop, strip, stamp)
//! forward_body(&batch, &outcome)          -> Bytes (raw when unchanged, re-encoded otherwise)
//! export_response / status_body           -> response body in the request's encoding
//! ```
//!
//! Types are the maintained `opentelemetry-proto` ones (prost + its serde
//! support for OTLP/JSON); this module adds only what that crate lacks: the
//! body cap measured after decompression, id length validation, the summary,
//! and `google.rpc.Status`.

mod body;
mod json;
pub mod json_wire;
mod response;
mod rewrite;
pub mod split;
pub mod wire;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

pub use body::{
    OFF_THREAD_BYTES, gunzip_capped, gunzip_into, gzip, inflate, read_body, read_grpc_message,
    read_grpc_wire, read_wire,
};
pub use response::{
    Any, ProtoDuration, RETRY_INFO_TYPE, RetryInfo, Status, code, export_response,
    export_response_for, parse_export_response, status_body,
};
pub use rewrite::{RewriteOutcome, forward_body, is_protected, rewrite, strip_resource_keys};
pub use split::{SplitError, split_to_fit};
pub use wire::Signal;

/// The signal a standard OTLP/HTTP path carries: `/v1/traces`,
/// `/v1/metrics`, `/v1/logs` (at the end of the path, so a prefix such as
/// `/otlp/v1/logs` counts), and Lightstep's `/traces/otlp/v0.9`.
pub fn signal_of_path(path: &str) -> Option<Signal> {
    let path = path.trim_end_matches('/');
    if path.ends_with("/v1/traces") || path.ends_with("/traces/otlp/v0.9") {
        Some(Signal::Traces)
    } else if path.ends_with("/v1/metrics") {
        Some(Signal::Metrics)
    } else if path.ends_with("/v1/logs") {
        Some(Signal::Logs)
    } else {
        None
    }
}

/// A signal by its config name (`traces`, `metrics`, `logs`).
pub fn signal_by_name(name: &str) -> Option<Signal> {
    Signal::ALL.into_iter().find(|s| s.as_str() == name)
}

/// Longest error detail kept in [`OtlpError::Malformed`] (it goes back to the
/// client in a `google.rpc.Status` and into the audit line).
const MAX_ERROR_DETAIL: usize = 300;

/// Wire encoding of a request (and so of its response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`: binary protobuf.
    Protobuf,
    /// `application/json`: OTLP/JSON (proto3 JSON mapping with hex ids).
    Json,
}

impl Encoding {
    /// From a `Content-Type` header value; `None` = unsupported (415).
    pub fn from_content_type(ct: Option<&str>) -> Option<Encoding> {
        let ct = ct?.split(';').next()?.trim();
        let is = |name: &str| ct.eq_ignore_ascii_case(name);
        if is("application/x-protobuf") || is("application/protobuf") {
            Some(Encoding::Protobuf)
        } else if is("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` to answer with (and to forward with).
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Errors reading or decoding a body.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The body (compressed or decompressed) exceeds the cap: 413.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// `Content-Encoding` other than gzip/identity: 415.
    #[error("unsupported content encoding")]
    UnsupportedEncoding,
    /// The body is not a valid ExportTraceServiceRequest (or not valid gzip): 400.
    #[error("malformed body: {0}")]
    Malformed(String),
    /// Reading the body itself failed (client went away, connection reset,
    /// read timeout): nobody is left to answer, so no response body matters.
    #[error("reading request body failed: {0}")]
    Body(String),
}

impl OtlpError {
    /// Stable, low-cardinality reason code for metrics and the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            OtlpError::TooLarge(_) => "body_too_large",
            OtlpError::UnsupportedEncoding => "unsupported_content_encoding",
            OtlpError::Malformed(_) => "malformed_body",
            OtlpError::Body(_) => "body_read_failed",
        }
    }

    /// The `google.rpc.Code` matching this error (`INVALID_ARGUMENT`,
    /// `RESOURCE_EXHAUSTED`, ...), for [`status_body`].
    pub fn rpc_code(&self) -> i32 {
        match self {
            OtlpError::TooLarge(_) => response::code::RESOURCE_EXHAUSTED,
            OtlpError::UnsupportedEncoding => response::code::INVALID_ARGUMENT,
            OtlpError::Malformed(_) => response::code::INVALID_ARGUMENT,
            OtlpError::Body(_) => response::code::CANCELLED,
        }
    }

    fn malformed(detail: impl std::fmt::Display) -> OtlpError {
        OtlpError::Malformed(truncate(detail.to_string(), MAX_ERROR_DETAIL))
    }
}

/// Cut `s` to at most `max` bytes on a char boundary, marking the cut.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// One resource's summary, for policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceSummary {
    /// `service.name` resource attribute (rendered as a string), if present.
    pub service_name: Option<String>,
    /// Resource attributes rendered as strings (see [`render_value`]).
    pub attributes: Vec<(String, String)>,
    /// Spans under this resource (all scopes).
    pub spans: usize,
}

/// Summary of a batch, as received (before any rewrite).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchSummary {
    /// One entry per `resource_spans`, in order (index = `keep` index for [`rewrite`]).
    pub resources: Vec<ResourceSummary>,
    /// Total spans in the batch.
    pub spans: usize,
    /// Decompressed body length.
    pub bytes: usize,
}

/// A decoded batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Encoding of the request; responses and re-encoding use the same.
    pub encoding: Encoding,
    /// The decoded request.
    pub request: ExportTraceServiceRequest,
    /// The decompressed body as received.
    pub raw: Bytes,
    /// Summary of the batch as received.
    pub summary: BatchSummary,
}

/// Decode a decompressed body into a [`Batch`] and summarise it.
///
/// Protobuf goes through prost; JSON through `opentelemetry-proto`'s serde
/// implementation of OTLP/JSON (hex ids, lowerCamelCase keys, 64-bit integers
/// as strings or numbers, enums as integers, unknown fields ignored), with a
/// narrow fallback for the proto3-JSON cases it refuses (see `json.rs`). In both
/// encodings, trace ids must be empty or 16 bytes and span ids empty or 8
/// bytes (the OTel Collector refuses other lengths too), and resource
/// attribute keys must be unique (OTLP requires it; policy relies on it).
pub fn decode(encoding: Encoding, raw: Bytes) -> Result<Batch, OtlpError> {
    let request = match encoding {
        Encoding::Protobuf => {
            ExportTraceServiceRequest::decode(raw.clone()).map_err(OtlpError::malformed)?
        }
        Encoding::Json => json::decode(&raw)?,
    };
    validate(&request)?;
    let summary = summarize(&request, raw.len());
    Ok(Batch {
        encoding,
        request,
        raw,
        summary,
    })
}

/// A received body ready for policy: its summary, and what is needed to
/// rewrite it. Protobuf is scanned at the wire level ([`wire::scan`]: spans,
/// data points and log records are never decoded); so is OTLP/JSON
/// ([`json_wire::scan`]), falling back to a full decode ([`decode`]) for the
/// bodies that scan declines.
#[derive(Debug, Clone)]
pub enum Received {
    /// Protobuf (or, from [`receive_full`], OTLP/JSON metrics and logs
    /// converted to protobuf), scanned.
    Wire(wire::Scan),
    /// OTLP/JSON of any signal, scanned at the wire level.
    Json(json_wire::JsonScan),
    /// OTLP/JSON traces the JSON scan declined, decoded.
    Decoded(Batch),
    /// OTLP/JSON metrics or logs the JSON scan declined: decoded, converted
    /// to protobuf and scanned (`scan`); rewritten as protobuf and converted
    /// back, so they are forwarded as JSON like the rest (`json`: the body
    /// as received, forwarded when nothing changes).
    Converted { scan: wire::Scan, json: Bytes },
}

/// What [`Received::rewrite`] produced.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The body to forward; `None` when every resource was dropped.
    pub body: Option<Bytes>,
    /// What changed.
    pub outcome: RewriteOutcome,
}

/// Read a decompressed body of `signal` in `encoding` for policy.
///
/// Protobuf is scanned ([`wire::scan`]). OTLP/JSON of every signal is
/// scanned at the wire level ([`json_wire::scan`]) and forwarded as JSON,
/// only its changed `resource` objects rewritten. A JSON body that scan
/// declines (legal but unusual OTLP/JSON: nulls, numbers as strings,
/// duplicate members, ...) takes the full path ([`receive_full`]).
pub fn receive(signal: Signal, encoding: Encoding, raw: Bytes) -> Result<Received, OtlpError> {
    if encoding == Encoding::Json {
        match json_wire::scan(signal, raw.clone()) {
            Ok(scan) => return Ok(Received::Json(scan)),
            Err(declined) => {
                tracing::debug!(signal = signal.as_str(), %declined,
                    "OTLP/JSON body takes the full decode");
            }
        }
        return Ok(match receive_full(signal, encoding, raw.clone())? {
            Received::Wire(scan) => Received::Converted { scan, json: raw },
            other => other,
        });
    }
    receive_full(signal, encoding, raw)
}

/// [`receive`] on tokio's blocking pool for bodies of [`OFF_THREAD_BYTES`]
/// or more (inline for small ones or outside tokio).
pub async fn receive_off_thread(
    signal: Signal,
    encoding: Encoding,
    raw: Bytes,
) -> Result<Received, OtlpError> {
    body::maybe_off_thread(raw.len(), move || receive(signal, encoding, raw)).await
}

/// The full path, without the JSON wire scan: OTLP/JSON traces are decoded
/// in full (and forwarded as JSON); OTLP/JSON metrics and logs are decoded
/// with the same JSON rules, re-encoded as protobuf and scanned like a
/// protobuf body: they are forwarded as protobuf (see
/// [`Received::forward_encoding`]); `summary.bytes` stays the received JSON
/// length. [`receive`]'s fallback, and the reference its tests compare with.
pub fn receive_full(signal: Signal, encoding: Encoding, raw: Bytes) -> Result<Received, OtlpError> {
    match (encoding, signal) {
        (Encoding::Protobuf, _) => wire::scan(signal, raw).map(Received::Wire),
        (Encoding::Json, Signal::Traces) => decode(encoding, raw).map(Received::Decoded),
        (Encoding::Json, Signal::Metrics) => {
            let req: ExportMetricsServiceRequest = json::decode_any(&raw)?;
            json_as_wire(signal, raw.len(), req.encode_to_vec())
        }
        (Encoding::Json, Signal::Logs) => {
            let req: ExportLogsServiceRequest = json::decode_any(&raw)?;
            json_as_wire(signal, raw.len(), req.encode_to_vec())
        }
    }
}

/// A JSON body already decoded and re-encoded as protobuf, scanned.
fn json_as_wire(signal: Signal, json_len: usize, proto: Vec<u8>) -> Result<Received, OtlpError> {
    let mut scan = wire::scan(signal, Bytes::from(proto))?;
    scan.summary.bytes = json_len;
    Ok(Received::Wire(scan))
}

/// An OTLP/JSON body of `signal` as protobuf (full decode with the JSON
/// rules, then encode): for an upstream that takes only protobuf, and for
/// splitting.
pub fn json_to_protobuf(signal: Signal, raw: &Bytes) -> Result<Bytes, OtlpError> {
    Ok(Bytes::from(match signal {
        Signal::Traces => json::decode(raw)?.encode_to_vec(),
        Signal::Metrics => json::decode_any::<ExportMetricsServiceRequest>(raw)?.encode_to_vec(),
        Signal::Logs => json::decode_any::<ExportLogsServiceRequest>(raw)?.encode_to_vec(),
    }))
}

/// A protobuf body of `signal` as OTLP/JSON (the serde types' output).
fn protobuf_to_json(signal: Signal, raw: &Bytes) -> Result<Bytes, OtlpError> {
    let json = match signal {
        Signal::Traces => serde_json::to_vec(
            &ExportTraceServiceRequest::decode(raw.clone()).map_err(OtlpError::malformed)?,
        ),
        Signal::Metrics => serde_json::to_vec(
            &ExportMetricsServiceRequest::decode(raw.clone()).map_err(OtlpError::malformed)?,
        ),
        Signal::Logs => serde_json::to_vec(
            &ExportLogsServiceRequest::decode(raw.clone()).map_err(OtlpError::malformed)?,
        ),
    };
    json.map(Bytes::from).map_err(OtlpError::malformed)
}

impl Received {
    /// The encoding of the body [`Received::rewrite`] produces for a request
    /// in `encoding`: the request's own (OTLP/JSON stays JSON whichever path
    /// read it), except for [`receive_full`]'s protobuf-scanned OTLP/JSON
    /// metrics and logs (protobuf).
    pub fn forward_encoding(&self, encoding: Encoding) -> Encoding {
        match self {
            Received::Wire(_) => Encoding::Protobuf,
            Received::Json(_) | Received::Converted { .. } => Encoding::Json,
            Received::Decoded(_) => encoding,
        }
    }

    /// The summary of the body as received.
    pub fn summary(&self) -> &BatchSummary {
        match self {
            Received::Wire(scan) => &scan.summary,
            Received::Json(scan) => &scan.summary,
            Received::Converted { scan, .. } => &scan.summary,
            Received::Decoded(batch) => &batch.summary,
        }
    }

    /// Drop, strip and stamp (see [`rewrite`] and [`wire::Scan::splice`]:
    /// the same semantics), producing the body to forward.
    pub fn rewrite(
        self,
        keep: &[bool],
        stamp: &[(String, String)],
        protected: &[String],
    ) -> Result<Rewritten, OtlpError> {
        self.rewrite_with(keep, stamp, protected, &[])
    }

    /// [`Received::rewrite`], also removing the resource attributes named in
    /// `resource_strip[i]` from resource `i` only (the deployment link's
    /// strip; indexes are the summary's). Protobuf of every signal is
    /// spliced ([`wire::Scan::splice_with`]), so is scanned OTLP/JSON
    /// ([`json_wire::JsonScan::splice_with`]); decoded JSON traces are
    /// edited in place. Either way such a removal marks the body changed.
    pub fn rewrite_with(
        self,
        keep: &[bool],
        stamp: &[(String, String)],
        protected: &[String],
        resource_strip: &[Vec<String>],
    ) -> Result<Rewritten, OtlpError> {
        match self {
            Received::Wire(scan) => {
                let out = scan.splice_with(keep, stamp, protected, resource_strip)?;
                Ok(Rewritten {
                    body: (out.kept_resources > 0).then_some(out.body),
                    outcome: out.outcome,
                })
            }
            Received::Json(scan) => {
                let out = scan.splice_with(keep, stamp, protected, resource_strip)?;
                Ok(Rewritten {
                    body: (out.kept_resources > 0).then_some(out.body),
                    outcome: out.outcome,
                })
            }
            Received::Converted { scan, json } => {
                let out = scan.splice_with(keep, stamp, protected, resource_strip)?;
                let body = match (out.kept_resources > 0, out.outcome.changed) {
                    (false, _) => None,
                    (true, false) => Some(json),
                    (true, true) => Some(protobuf_to_json(scan.signal, &out.body)?),
                };
                Ok(Rewritten {
                    body,
                    outcome: out.outcome,
                })
            }
            Received::Decoded(mut batch) => {
                let link_stripped: usize = resource_strip
                    .iter()
                    .enumerate()
                    .map(|(i, keys)| strip_resource_keys(&mut batch, i, keys))
                    .sum();
                let mut outcome = rewrite(&mut batch, keep, stamp, protected);
                outcome.changed |= link_stripped > 0;
                let body = (!batch.request.resource_spans.is_empty())
                    .then(|| forward_body(&batch, &outcome));
                Ok(Rewritten { body, outcome })
            }
        }
    }
}

/// [`decode`] on tokio's blocking pool for bodies of [`OFF_THREAD_BYTES`] or
/// more (inline for small ones or outside tokio), so decoding a 16 MiB batch
/// does not stall the async worker other connections share.
pub async fn decode_off_thread(encoding: Encoding, raw: Bytes) -> Result<Batch, OtlpError> {
    body::maybe_off_thread(raw.len(), move || decode(encoding, raw)).await
}

/// Re-encode the (possibly rewritten) request in the batch's encoding.
/// JSON output is OTLP/JSON: hex ids, lowerCamelCase keys, 64-bit integers as
/// decimal strings, enums as integers.
pub fn encode(batch: &Batch) -> Bytes {
    encode_request(batch.encoding, &batch.request)
}

/// Encode any request in the given encoding (tests, benches, the dev client).
pub fn encode_request(encoding: Encoding, request: &ExportTraceServiceRequest) -> Bytes {
    match encoding {
        Encoding::Protobuf => Bytes::from(request.encode_to_vec()),
        // Serialising these plain data types cannot fail: no maps with
        // non-string keys, no failing custom serialisers. Fall back to an
        // empty request rather than panicking if that ever changes.
        Encoding::Json => serde_json::to_vec(request)
            .map(Bytes::from)
            .unwrap_or_else(|_| Bytes::from_static(b"{}")),
    }
}

fn check_id(
    id: &[u8],
    want: usize,
    what: &str,
    path: &dyn Fn() -> String,
) -> Result<(), OtlpError> {
    if id.is_empty() || id.len() == want {
        Ok(())
    } else {
        Err(OtlpError::malformed(format!(
            "{}.{what}: expected {want} bytes, got {}",
            path(),
            id.len()
        )))
    }
}

/// Refuse what the wire format allows but spangate must not forward: ids of
/// the wrong length, and duplicate resource attribute keys (policy reads the
/// first `service.name`, a backend might show the last: a spoofing vector).
fn validate(request: &ExportTraceServiceRequest) -> Result<(), OtlpError> {
    for (r, rs) in request.resource_spans.iter().enumerate() {
        if let Some(dup) = rs
            .resource
            .as_ref()
            .and_then(|r| duplicate_key(&r.attributes))
        {
            return Err(OtlpError::malformed(format!(
                "resourceSpans[{r}].resource.attributes: duplicate key {:?}",
                truncate(dup.to_owned(), 100)
            )));
        }
        for (s, ss) in rs.scope_spans.iter().enumerate() {
            for (i, span) in ss.spans.iter().enumerate() {
                let path = || format!("resourceSpans[{r}].scopeSpans[{s}].spans[{i}]");
                check_id(&span.trace_id, 16, "traceId", &path)?;
                check_id(&span.span_id, 8, "spanId", &path)?;
                check_id(&span.parent_span_id, 8, "parentSpanId", &path)?;
                for (l, link) in span.links.iter().enumerate() {
                    let lpath = || format!("{}.links[{l}]", path());
                    check_id(&link.trace_id, 16, "traceId", &lpath)?;
                    check_id(&link.span_id, 8, "spanId", &lpath)?;
                }
            }
        }
    }
    Ok(())
}

/// The first key that appears more than once among `attrs`, if any.
fn duplicate_key(attrs: &[KeyValue]) -> Option<&str> {
    if attrs.len() < 2 {
        return None;
    }
    let mut keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_str()).collect();
    keys.sort_unstable();
    keys.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

/// Summarise a request: per resource, `service.name`, attributes as strings
/// and the span count; `bytes` is the decompressed body length.
pub fn summarize(request: &ExportTraceServiceRequest, bytes: usize) -> BatchSummary {
    let mut total = 0usize;
    let resources = request
        .resource_spans
        .iter()
        .map(|rs| {
            let spans: usize = rs.scope_spans.iter().map(|ss| ss.spans.len()).sum();
            total = total.saturating_add(spans);
            let attrs: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
            resource_summary(attrs, spans)
        })
        .collect();
    BatchSummary {
        resources,
        spans: total,
        bytes,
    }
}

/// One resource's summary from its attributes and item count.
fn resource_summary(attrs: &[KeyValue], items: usize) -> ResourceSummary {
    let attributes: Vec<(String, String)> = attrs
        .iter()
        .map(|kv| (kv.key.clone(), render_value(kv.value.as_ref())))
        .collect();
    let service_name = attributes
        .iter()
        .find(|(k, _)| k == "service.name")
        .map(|(_, v)| v.clone());
    ResourceSummary {
        service_name,
        attributes,
        spans: items,
    }
}

/// Render an attribute value as a string: strings as themselves, bools,
/// ints and doubles as their natural text, bytes as base64, arrays and
/// kvlists as compact JSON, an empty value as `""`.
pub fn render_value(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other @ (any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_))) => {
            value_to_json(Some(other)).to_string()
        }
        Some(any_value::Value::BytesValue(b)) => base64_encode(b),
        Some(any_value::Value::StringValueStrindex(i)) => i.to_string(),
    }
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn value_to_json(value: Option<&any_value::Value>) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        None => J::Null,
        Some(any_value::Value::StringValue(s)) => J::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => J::Bool(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(d.to_string()), J::Number)
        }
        Some(any_value::Value::ArrayValue(a)) => J::Array(
            a.values
                .iter()
                .map(|v| value_to_json(v.value.as_ref()))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(kvs)) => J::Object(
            kvs.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        value_to_json(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect(),
        ),
        Some(any_value::Value::BytesValue(b)) => J::String(base64_encode(b)),
        Some(any_value::Value::StringValueStrindex(i)) => J::from(*i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type(Some("application/x-protobuf")),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_content_type(Some("Application/JSON; charset=utf-8")),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::from_content_type(Some("text/plain")), None);
        assert_eq!(Encoding::from_content_type(None), None);
    }

    #[test]
    fn render_values() {
        use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
        let v = |x| Some(AnyValue { value: Some(x) });
        assert_eq!(
            render_value(v(any_value::Value::StringValue("a".into())).as_ref()),
            "a"
        );
        assert_eq!(
            render_value(v(any_value::Value::BoolValue(true)).as_ref()),
            "true"
        );
        assert_eq!(
            render_value(v(any_value::Value::IntValue(-7)).as_ref()),
            "-7"
        );
        assert_eq!(
            render_value(v(any_value::Value::DoubleValue(1.5)).as_ref()),
            "1.5"
        );
        let arr = any_value::Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(any_value::Value::StringValue("x".into())),
                },
                AnyValue {
                    value: Some(any_value::Value::IntValue(2)),
                },
            ],
        });
        assert_eq!(render_value(v(arr).as_ref()), r#"["x",2]"#);
        let kvl = any_value::Value::KvlistValue(KeyValueList {
            values: vec![KeyValue {
                key: "k".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::BoolValue(false)),
                }),
                key_strindex: 0,
            }],
        });
        assert_eq!(render_value(v(kvl).as_ref()), r#"{"k":false}"#);
        assert_eq!(render_value(None), "");
    }

    #[test]
    fn truncate_marks_cut_on_char_boundary() {
        assert_eq!(truncate("abc".into(), 5), "abc");
        assert_eq!(truncate("ééé".into(), 3), "é…");
    }
}
