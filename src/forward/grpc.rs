//! OTLP/gRPC egress: the same protobuf bytes the HTTP path forwards, sent
//! as a unary `Export` call over HTTP/2.
//!
//! Framed by hand over the shared hyper client rather than through tonic:
//! a unary call is one 5-byte length prefix, a handful of headers and a
//! status read from the trailers, while tonic would bring a second client
//! stack (its own channel, TLS setup and CA handling) and a custom codec
//! just to keep the body as raw bytes. The client for a gRPC upstream is
//! the project's hyper client in HTTP/2-only mode (ALPN `h2` over rustls,
//! prior-knowledge h2c for loopback or `allow_insecure_http`), whose pool
//! keeps one multiplexed connection per upstream and reconnects when it
//! fails.
//!
//! The answer is read back into an OTLP/HTTP [`Answer`] so the retry loop,
//! the spool and the client's response need no second set of rules:
//! - `OK` → 200 with the `Export*ServiceResponse` (partial success kept);
//! - `UNAVAILABLE` (and the other codes OTLP calls retryable: `CANCELLED`,
//!   `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS`) → 503, `DEADLINE_EXCEEDED` →
//!   504: retried;
//! - `RESOURCE_EXHAUSTED` with a `google.rpc.RetryInfo` → 429 (retried
//!   after the delay, like Retry-After); without → 413 (final: the upstream
//!   cannot take it);
//! - `UNAUTHENTICATED` → 401, `PERMISSION_DENIED` → 403: our credential is
//!   wrong (previous-version fallback, then kept/refused as for HTTP);
//! - `INVALID_ARGUMENT`, `FAILED_PRECONDITION` → 400; `NOT_FOUND`,
//!   `UNIMPLEMENTED` → 404; anything else → 500 (final).

use std::io::Read as _;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use prost::Message;

use super::{Answer, Forward, insert_common};
use crate::client::OutBody;
use crate::error::ProxyError;
use crate::otlp::{self, ProtoDuration, RETRY_INFO_TYPE, RetryInfo, code};
use crate::secrets::Secret;

/// `content-type` of gRPC requests and answers.
pub const CONTENT_TYPE: &str = "application/grpc";
/// Largest decompressed answer message read back.
const MAX_ANSWER_MESSAGE: usize = 1 << 20;

/// Longest RetryInfo delay honoured (a longer one is capped).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// One length-prefixed gRPC message: flag byte (1 = compressed), 4-byte
/// big-endian length, the message (gzip-compressed when `gzip`).
pub fn frame(msg: &[u8], gzip: bool) -> Bytes {
    let compressed;
    let payload: &[u8] = if gzip {
        compressed = otlp::gzip(msg, 1);
        &compressed
    } else {
        msg
    };
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(u8::from(gzip));
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// The first message of a gRPC body (decompressed per `grpc-encoding`).
pub fn unframe(body: &[u8], encoding: Option<&str>) -> Option<Bytes> {
    let (&flag, rest) = body.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let msg = rest.get(4..4usize.checked_add(len)?)?;
    match (flag, encoding) {
        (0, _) => Some(Bytes::copy_from_slice(msg)),
        (1, Some("gzip")) => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(msg)
                .take(MAX_ANSWER_MESSAGE as u64 + 1)
                .read_to_end(&mut out)
                .ok()?;
            (out.len() <= MAX_ANSWER_MESSAGE).then(|| Bytes::from(out))
        }
        _ => None,
    }
}

/// `grpc-timeout` for `d`: milliseconds, at most 8 digits (gRPC spec).
pub fn grpc_timeout(d: Duration) -> HeaderValue {
    let ms = d.as_millis().clamp(1, 99_999_999);
    HeaderValue::from_str(&format!("{ms}m")).unwrap_or(HeaderValue::from_static("1S"))
}

/// The `Export` call for one framed body.
pub fn request(
    job: &Forward<'_>,
    target: &http::Uri,
    framed: &Bytes,
    secret: &Secret,
    timeout: Duration,
) -> Result<Request<OutBody>, ProxyError> {
    let mut req = Request::new(OutBody::new(framed.clone()));
    *req.method_mut() = Method::POST;
    *req.version_mut() = http::Version::HTTP_2;
    *req.uri_mut() = target.clone();
    let h = req.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert(header::TE, HeaderValue::from_static("trailers"));
    h.insert("grpc-timeout", grpc_timeout(timeout));
    if job.gzip {
        h.insert("grpc-encoding", HeaderValue::from_static("gzip"));
    }
    // Answers compressed with gzip are read; say so.
    h.insert("grpc-accept-encoding", HeaderValue::from_static("gzip"));
    insert_common(job, h, secret)?;
    Ok(req)
}

/// Read a gRPC answer (status in the trailers, or in the headers of a
/// trailers-only answer) into its OTLP/HTTP form.
pub fn answer(resp: http::Response<Bytes>, trailers: Option<&HeaderMap>) -> Answer {
    let (parts, body) = resp.into_parts();
    let status_from =
        |h: &HeaderMap| -> Option<i32> { h.get("grpc-status")?.to_str().ok()?.trim().parse().ok() };
    let (code, source) = match (trailers.and_then(status_from), status_from(&parts.headers)) {
        (Some(c), _) => (Some(c), trailers),
        (None, Some(c)) => (Some(c), Some(&parts.headers)),
        (None, None) => (None, None),
    };
    let protobuf = Some(otlp::Encoding::Protobuf.content_type().to_string());
    let Some(code) = code else {
        // Not a gRPC answer: the HTTP status says what happened (a proxy's
        // 503, a 404 for a wrong host), else the stream broke off.
        let status = if parts.status.is_success() {
            StatusCode::BAD_GATEWAY
        } else {
            parts.status
        };
        return Answer {
            status,
            content_type: protobuf,
            retry_after: None,
            retry_delay: None,
            body: otlp::status_body(
                otlp::Encoding::Protobuf,
                code_of_http(status),
                "upstream answered without a gRPC status",
            ),
            grpc_status: None,
        };
    };
    let message = source
        .and_then(|h| h.get("grpc-message"))
        .map(|v| percent_decode(v.as_bytes()))
        .unwrap_or_default();
    let delay = source
        .and_then(|h| h.get("grpc-status-details-bin"))
        .and_then(retry_info);
    if code == code::OK {
        let encoding = parts
            .headers
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok());
        return Answer {
            status: StatusCode::OK,
            content_type: protobuf,
            retry_after: None,
            retry_delay: None,
            body: unframe(&body, encoding).unwrap_or_default(),
            grpc_status: Some(code),
        };
    }
    let status = http_of_code(code, delay.is_some());
    let retryable = super::retryable(status);
    let delay = delay.filter(|_| retryable);
    Answer {
        status,
        content_type: protobuf,
        retry_after: delay.map(|d| {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            HeaderValue::from(secs.max(1))
        }),
        retry_delay: delay,
        body: Bytes::from(
            otlp::Status {
                code,
                message,
                details: Vec::new(),
            }
            .encode_to_vec(),
        ),
        grpc_status: Some(code),
    }
}

/// The OTLP/HTTP status a gRPC code stands for (see the module doc).
pub fn http_of_code(code: i32, retry_info: bool) -> StatusCode {
    match code {
        code::OK => StatusCode::OK,
        code::CANCELLED
        | code::ABORTED
        | code::OUT_OF_RANGE
        | code::UNAVAILABLE
        | code::DATA_LOSS => StatusCode::SERVICE_UNAVAILABLE,
        code::DEADLINE_EXCEEDED => StatusCode::GATEWAY_TIMEOUT,
        code::RESOURCE_EXHAUSTED if retry_info => StatusCode::TOO_MANY_REQUESTS,
        code::RESOURCE_EXHAUSTED => StatusCode::PAYLOAD_TOO_LARGE,
        code::UNAUTHENTICATED => StatusCode::UNAUTHORIZED,
        code::PERMISSION_DENIED => StatusCode::FORBIDDEN,
        code::INVALID_ARGUMENT | code::FAILED_PRECONDITION => StatusCode::BAD_REQUEST,
        code::NOT_FOUND | code::UNIMPLEMENTED => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The gRPC code of an OTLP/HTTP status without a status body.
pub fn code_of_http(status: StatusCode) -> i32 {
    match status.as_u16() {
        200..=299 => code::OK,
        400 => code::INVALID_ARGUMENT,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        413 | 429 => code::RESOURCE_EXHAUSTED,
        502..=504 => code::UNAVAILABLE,
        500 => code::INTERNAL,
        _ => code::UNKNOWN,
    }
}

/// The RetryInfo delay in a `grpc-status-details-bin` value (base64 of a
/// `google.rpc.Status`, padded or not).
pub fn retry_info(v: &HeaderValue) -> Option<Duration> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let raw = engine.decode(v.as_bytes()).ok()?;
    let status = otlp::Status::decode(raw.as_slice()).ok()?;
    let info = status
        .details
        .iter()
        .find(|d| d.type_url.ends_with("/google.rpc.RetryInfo"))?;
    let d = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    let secs = u64::try_from(d.seconds).ok()?;
    let nanos = u32::try_from(d.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(secs, nanos).min(MAX_RETRY_DELAY))
}

/// Decode a `grpc-message` (percent-encoded UTF-8; invalid sequences are
/// kept as they are).
pub fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%'
            && let Some(b) = v
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(v[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `grpc-status-details-bin` value carrying a RetryInfo of `delay`
/// (used by the recording upstream and tests).
pub fn retry_info_header(code: i32, message: &str, delay: Duration) -> HeaderValue {
    let status = otlp::Status {
        code,
        message: message.to_string(),
        details: vec![otlp::Any {
            type_url: RETRY_INFO_TYPE.into(),
            value: RetryInfo {
                retry_delay: Some(ProtoDuration {
                    seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
                }),
            }
            .encode_to_vec(),
        }],
    };
    let bin = base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec());
    HeaderValue::from_str(&bin).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(headers: &[(&str, &str)], body: Bytes) -> http::Response<Bytes> {
        let mut r = http::Response::new(body);
        for (k, v) in headers {
            r.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        r
    }

    fn trailers(pairs: &[(&'static str, HeaderValue)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.clone());
        }
        h
    }

    #[test]
    fn frames_round_trip_plain_and_gzip() {
        let msg = b"hello otlp".repeat(50);
        let plain = frame(&msg, false);
        assert_eq!(plain[0], 0);
        assert_eq!(&plain[1..5], &(msg.len() as u32).to_be_bytes());
        assert_eq!(unframe(&plain, None).unwrap(), Bytes::from(msg.clone()));
        let gz = frame(&msg, true);
        assert_eq!(gz[0], 1);
        assert!(gz.len() < plain.len());
        assert_eq!(
            unframe(&gz, Some("gzip")).unwrap(),
            Bytes::from(msg.clone())
        );
        // Compressed without an encoding, truncated, or empty: no message.
        assert!(unframe(&gz, None).is_none());
        assert!(unframe(&plain[..plain.len() - 1], None).is_none());
        assert!(unframe(&[], None).is_none());
    }

    #[test]
    fn timeout_header_is_milliseconds_with_at_most_8_digits() {
        assert_eq!(grpc_timeout(Duration::from_millis(1500)), "1500m");
        assert_eq!(grpc_timeout(Duration::ZERO), "1m");
        assert_eq!(grpc_timeout(Duration::from_secs(10_000_000)), "99999999m");
    }

    #[test]
    fn status_codes_map_to_retry_semantics() {
        use crate::forward::retryable;
        for c in [
            code::UNAVAILABLE,
            code::CANCELLED,
            code::ABORTED,
            code::DATA_LOSS,
        ] {
            assert!(retryable(http_of_code(c, false)), "{c}");
        }
        assert!(retryable(http_of_code(code::RESOURCE_EXHAUSTED, true)));
        assert!(!retryable(http_of_code(code::RESOURCE_EXHAUSTED, false)));
        assert_eq!(
            http_of_code(code::UNAUTHENTICATED, false),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            http_of_code(code::PERMISSION_DENIED, false),
            StatusCode::FORBIDDEN
        );
        for c in [
            code::INVALID_ARGUMENT,
            code::INTERNAL,
            code::UNIMPLEMENTED,
            code::UNKNOWN,
        ] {
            assert!(!retryable(http_of_code(c, false)), "{c}");
        }
    }

    #[test]
    fn ok_answer_carries_the_response_message() {
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceResponse,
        };
        let msg = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "too old".into(),
            }),
        }
        .encode_to_vec();
        let a = answer(
            resp(&[("content-type", "application/grpc")], frame(&msg, false)),
            Some(&trailers(&[("grpc-status", HeaderValue::from_static("0"))])),
        );
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.grpc_status, Some(0));
        assert_eq!(
            otlp::parse_export_response(otlp::Encoding::Protobuf, &a.body),
            Some((3, "too old".into()))
        );
    }

    #[test]
    fn trailers_only_resource_exhausted_with_retry_info_is_a_429_with_its_delay() {
        let details = retry_info_header(
            code::RESOURCE_EXHAUSTED,
            "slow down",
            Duration::from_millis(1500),
        );
        let a = answer(
            resp(
                &[
                    ("grpc-status", "8"),
                    ("grpc-message", "slow%20down"),
                    ("grpc-status-details-bin", details.to_str().unwrap()),
                ],
                Bytes::new(),
            ),
            None,
        );
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(a.retry_delay, Some(Duration::from_millis(1500)));
        assert_eq!(a.retry_after.unwrap(), "2");
        let s = otlp::Status::decode(a.body.as_ref()).unwrap();
        assert_eq!((s.code, s.message.as_str()), (8, "slow down"));
    }

    #[test]
    fn resource_exhausted_without_retry_info_is_final() {
        let a = answer(
            resp(&[], Bytes::new()),
            Some(&trailers(&[("grpc-status", HeaderValue::from_static("8"))])),
        );
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(a.retry_delay.is_none());
    }

    #[test]
    fn non_grpc_answers_use_the_http_status() {
        let mut r = resp(&[], Bytes::from_static(b"<html>"));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let a = answer(r, None);
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(a.grpc_status, None);
        // A 200 without any grpc-status: the stream broke off.
        assert_eq!(
            answer(resp(&[], Bytes::new()), None).status,
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn retry_info_is_decoded_padded_or_not_and_capped() {
        let v = retry_info_header(8, "", Duration::from_secs(2));
        assert_eq!(retry_info(&v), Some(Duration::from_secs(2)));
        let padded = base64::engine::general_purpose::STANDARD.encode(
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(v.as_bytes())
                .unwrap(),
        );
        assert_eq!(
            retry_info(&HeaderValue::from_str(&padded).unwrap()),
            Some(Duration::from_secs(2))
        );
        let long = retry_info_header(8, "", Duration::from_secs(86_400));
        assert_eq!(retry_info(&long), Some(MAX_RETRY_DELAY));
        assert_eq!(retry_info(&HeaderValue::from_static("!!")), None);
    }

    #[test]
    fn grpc_message_is_percent_decoded() {
        assert_eq!(percent_decode(b"a%20b%25%C3%A9"), "a b%\u{e9}");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz"), "%zz");
    }
}
