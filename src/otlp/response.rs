//! OTLP/HTTP response bodies: `ExportTraceServiceResponse` on success or
//! partial success, `google.rpc.Status` on failure, each in the request's
//! encoding.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;

use super::Encoding;

/// `google.rpc.Code` values used by spangate (the full list is in
/// `google/rpc/code.proto`).
pub mod code {
    /// Not an error.
    pub const OK: i32 = 0;
    /// The caller cancelled (client went away).
    pub const CANCELLED: i32 = 1;
    /// Unknown error (an upstream's unmapped failure).
    pub const UNKNOWN: i32 = 2;
    /// The request is malformed (HTTP 400).
    pub const INVALID_ARGUMENT: i32 = 3;
    /// The deadline passed (HTTP 504).
    pub const DEADLINE_EXCEEDED: i32 = 4;
    /// Nothing routes here (HTTP 404).
    pub const NOT_FOUND: i32 = 5;
    /// Authenticated but not allowed (HTTP 403).
    pub const PERMISSION_DENIED: i32 = 7;
    /// Rate limited or too large (HTTP 429, 413).
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// The system is not in a state for the call.
    pub const FAILED_PRECONDITION: i32 = 9;
    /// Aborted (concurrency conflict).
    pub const ABORTED: i32 = 10;
    /// Out of the valid range.
    pub const OUT_OF_RANGE: i32 = 11;
    /// No such method or service.
    pub const UNIMPLEMENTED: i32 = 12;
    /// Unexpected server failure (HTTP 500).
    pub const INTERNAL: i32 = 13;
    /// Upstream unavailable (HTTP 502/503/504).
    pub const UNAVAILABLE: i32 = 14;
    /// Unrecoverable data loss.
    pub const DATA_LOSS: i32 = 15;
    /// No or invalid credentials (HTTP 401).
    pub const UNAUTHENTICATED: i32 = 16;
}

/// `google.protobuf.Any`, wire-compatible with `prost_types::Any`; defined
/// here so the three-field [`Status`] needs no extra crate. spangate never
/// sends details.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    /// Type URL of the packed message.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The packed message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo` (`google/rpc/error_details.proto`): how long a
/// client should wait before retrying. Sent in a gRPC status's details for
/// retryable refusals (OTLP/gRPC clients honour it).
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    /// The delay.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Type URL of [`RetryInfo`] inside an [`Any`].
pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status` (`google/rpc/status.proto`), the OTLP/HTTP error body.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    /// A `google.rpc.Code` value (see [`code`]).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Developer-facing English message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Error details (always empty from spangate).
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// Success body: an `ExportTraceServiceResponse`, with `partial_success`
/// when `rejected_spans > 0` or a warning message is given. JSON form is
/// `{}` or `{"partialSuccess":{"rejectedSpans":N,"errorMessage":"…"}}`
/// (`rejectedSpans` as a JSON number, which proto3 JSON parsers and
/// `opentelemetry-proto`'s serde types both accept).
pub fn export_response(encoding: Encoding, rejected_spans: i64, error_message: &str) -> Bytes {
    export_response_for(
        super::Signal::Traces,
        encoding,
        rejected_spans,
        error_message,
    )
}

/// [`export_response`] for any signal. The three `Export*ServiceResponse`
/// messages share their protobuf layout (`partial_success = 1 {
/// rejected_<items> = 1; error_message = 2 }`); in JSON the count is
/// `rejectedSpans`, `rejectedDataPoints` or `rejectedLogRecords`.
pub fn export_response_for(
    signal: super::Signal,
    encoding: Encoding,
    rejected_spans: i64,
    error_message: &str,
) -> Bytes {
    let partial =
        (rejected_spans > 0 || !error_message.is_empty()).then(|| ExportTracePartialSuccess {
            rejected_spans: rejected_spans.max(0),
            error_message: error_message.to_owned(),
        });
    match encoding {
        Encoding::Protobuf => Bytes::from(
            ExportTraceServiceResponse {
                partial_success: partial,
            }
            .encode_to_vec(),
        ),
        Encoding::Json => {
            let v = match partial {
                None => serde_json::json!({}),
                Some(p) => {
                    let mut inner = serde_json::Map::new();
                    inner.insert(rejected_key(signal).into(), p.rejected_spans.into());
                    inner.insert("errorMessage".into(), p.error_message.into());
                    serde_json::json!({ "partialSuccess": inner })
                }
            };
            Bytes::from(v.to_string())
        }
    }
}

/// The JSON name of a signal's rejected-items count.
fn rejected_key(signal: super::Signal) -> &'static str {
    match signal {
        super::Signal::Traces => "rejectedSpans",
        super::Signal::Metrics => "rejectedDataPoints",
        super::Signal::Logs => "rejectedLogRecords",
    }
}

/// Failure body: a `google.rpc.Status` with `code` and `message`. JSON form
/// is `{"code":3,"message":"…"}`.
pub fn status_body(encoding: Encoding, code: i32, message: &str) -> Bytes {
    match encoding {
        Encoding::Protobuf => Bytes::from(
            Status {
                code,
                message: message.to_owned(),
                details: Vec::new(),
            }
            .encode_to_vec(),
        ),
        Encoding::Json => {
            Bytes::from(serde_json::json!({ "code": code, "message": message }).to_string())
        }
    }
}

/// Read an upstream's `ExportTraceServiceResponse`: `Some((rejected_spans,
/// error_message))` when it carries a `partial_success`, `None` when it does
/// not or cannot be parsed. JSON accepts `rejectedSpans` as number or string.
pub fn parse_export_response(encoding: Encoding, body: &[u8]) -> Option<(i64, String)> {
    match encoding {
        Encoding::Protobuf => {
            let p = ExportTraceServiceResponse::decode(body)
                .ok()?
                .partial_success?;
            Some((p.rejected_spans, p.error_message))
        }
        Encoding::Json => {
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            let p = v.get("partialSuccess")?;
            if p.is_null() {
                return None;
            }
            let count = ["rejectedSpans", "rejectedDataPoints", "rejectedLogRecords"]
                .iter()
                .find_map(|k| p.get(*k));
            let rejected = match count {
                None | Some(serde_json::Value::Null) => 0,
                Some(serde_json::Value::Number(n)) => n.as_i64()?,
                Some(serde_json::Value::String(s)) => s.parse().ok()?,
                Some(_) => return None,
            };
            let message = match p.get("errorMessage") {
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            Some((rejected, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_success_is_empty() {
        assert!(export_response(Encoding::Protobuf, 0, "").is_empty());
        assert_eq!(&export_response(Encoding::Json, 0, "")[..], b"{}");
        assert_eq!(parse_export_response(Encoding::Json, b"{}"), None);
        assert_eq!(parse_export_response(Encoding::Protobuf, b""), None);
    }

    #[test]
    fn partial_success_round_trips() {
        for enc in [Encoding::Protobuf, Encoding::Json] {
            let b = export_response(enc, 3, "3 spans dropped: service not allowed");
            assert_eq!(
                parse_export_response(enc, &b),
                Some((3, "3 spans dropped: service not allowed".to_owned()))
            );
        }
        assert_eq!(
            parse_export_response(
                Encoding::Json,
                br#"{"partialSuccess":{"rejectedSpans":"12","errorMessage":"x"}}"#
            ),
            Some((12, "x".to_owned()))
        );
        assert_eq!(parse_export_response(Encoding::Json, b"not json"), None);
    }

    #[test]
    fn status_decodes() {
        let b = status_body(Encoding::Protobuf, code::INVALID_ARGUMENT, "bad");
        let s = Status::decode(&b[..]).ok();
        assert_eq!(s.map(|s| (s.code, s.message)), Some((3, "bad".to_owned())));
        let j: serde_json::Value =
            serde_json::from_slice(&status_body(Encoding::Json, 8, "slow \"down\""))
                .unwrap_or_default();
        assert_eq!(
            j,
            serde_json::json!({"code": 8, "message": "slow \"down\""})
        );
    }
}
