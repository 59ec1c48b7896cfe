//! OTLP/gRPC on its own listener (`server.grpc_listen`): the three OTLP
//! `Export` methods over the same pipeline as OTLP/HTTP ([`super::run`]).
//!
//! Framing is the gRPC HTTP/2 protocol's: one length-prefixed message in
//! (`otlp::read_grpc_message`: gzip per `grpc-encoding`, the body cap
//! measured after decompression with bounded memory, the memory budget as
//! for HTTP), one out, status in trailers. It is served by the HTTP
//! listener's hyper connection code (TLS, connection limits, header timeout,
//! panic catching) rather than tonic's server, because the body must stay raw
//! bytes for the wire scanner and the decompression must be capped while it
//! runs; tonic is used as the client in the tests.
//!
//! The pipeline answers as OTLP/HTTP would (status code plus a protobuf
//! `google.rpc.Status` or `Export*ServiceResponse`); [`to_grpc`] maps that
//! to a gRPC answer: the status's own code (UNAUTHENTICATED,
//! PERMISSION_DENIED, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE, ...),
//! with a `google.rpc.RetryInfo` detail when the refusal carries a
//! Retry-After (rate limits, overload, IdP or upstream unavailable) and
//! without one otherwise (an oversize message is not retryable).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::Frame;
use prost::Message;

use super::Transport;
use crate::otlp::{self, Signal};
use crate::policy::{Endpoint, EndpointAuth, PolicySet};
use crate::shared::Shared;

/// `grpc-encoding`: the compression of request messages.
pub const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");

/// The gRPC service of each signal.
pub fn service(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "opentelemetry.proto.collector.trace.v1.TraceService",
        Signal::Metrics => "opentelemetry.proto.collector.metrics.v1.MetricsService",
        Signal::Logs => "opentelemetry.proto.collector.logs.v1.LogsService",
    }
}

/// The signal of a gRPC request path `/<service>/Export`.
pub fn signal_of_method(path: &str) -> Option<Signal> {
    let (svc, method) = path.strip_prefix('/')?.split_once('/')?;
    if method != "Export" {
        return None;
    }
    Signal::ALL.into_iter().find(|s| service(*s) == svc)
}

/// The policy endpoint a gRPC call of `signal` is routed to: the endpoint
/// of that signal on its standard path (`/v1/traces`, ...) when there is
/// one, else the first endpoint of that signal by name. Only bearer-token
/// endpoints take gRPC calls: a Vercel Trace Drain endpoint
/// (`auth: vercel-drain`) is OTLP/HTTP only (Vercel delivers over HTTP, and
/// its signature covers an HTTP body).
pub fn endpoint_for(policy: &PolicySet, signal: Signal) -> Option<&Endpoint> {
    let of_signal = || {
        policy
            .endpoints()
            .iter()
            .filter(move |e| e.signal == signal && e.auth == EndpointAuth::Bearer)
    };
    let standard = format!("/v1/{}", signal.as_str());
    of_signal()
        .find(|e| e.path == standard)
        .or_else(|| of_signal().min_by(|a, b| a.name.cmp(&b.name)))
}

/// The gRPC services the policy serves (those with an endpoint).
pub fn served_services(policy: &PolicySet) -> Vec<String> {
    Signal::ALL
        .into_iter()
        .filter(|s| endpoint_for(policy, *s).is_some())
        .map(|s| service(s).to_string())
        .collect()
}

/// hyper entry point of the gRPC listener.
pub async fn handle<B>(
    shared: Arc<Shared>,
    req: Request<B>,
    remote: SocketAddr,
) -> Result<Response<GrpcBody>, Infallible>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (resp, mut rec, started) = super::run(&shared, req, remote, Transport::Grpc).await;
    rec.status = resp.status().as_u16();
    let (mut out, code) = to_grpc(resp);
    rec.grpc_status = Some(code);
    super::finish(&shared, &mut rec, started, out.headers_mut());
    Ok(out)
}

/// Map the pipeline's OTLP/HTTP answer to a gRPC answer and its code.
pub fn to_grpc(resp: Response<Bytes>) -> (Response<GrpcBody>, i32) {
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(GrpcBody::default());
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    if parts.status.is_success() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        *out.body_mut() = GrpcBody {
            data: Some(frame(&body)),
            trailers: Some(trailers),
        };
        return (out, 0);
    }
    // A google.rpc.Status from spangate or the upstream; otherwise the code
    // OTLP/HTTP's status implies.
    let mut status = otlp::Status::decode(body.as_ref())
        .ok()
        .filter(|s| s.code != 0)
        .unwrap_or_else(|| otlp::Status {
            code: code_of_http(parts.status),
            message: format!("upstream answered {}", parts.status.as_u16()),
            details: Vec::new(),
        });
    let retry_after = parts
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    status.details.clear();
    if let Some(secs) = retry_after
        && matches!(
            status.code,
            otlp::code::RESOURCE_EXHAUSTED | otlp::code::UNAVAILABLE
        )
    {
        status.details.push(otlp::Any {
            type_url: otlp::RETRY_INFO_TYPE.into(),
            value: otlp::RetryInfo {
                retry_delay: Some(otlp::ProtoDuration {
                    seconds: secs.max(0),
                    nanos: 0,
                }),
            }
            .encode_to_vec(),
        });
    }
    // Trailers-only response: everything in the headers.
    let h = out.headers_mut();
    h.insert("grpc-status", HeaderValue::from(status.code));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(&status.message)) {
        h.insert("grpc-message", v);
    }
    if !status.details.is_empty() {
        use base64::Engine as _;
        let bin = base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec());
        if let Ok(v) = HeaderValue::from_str(&bin) {
            h.insert("grpc-status-details-bin", v);
        }
    }
    if parts.headers.contains_key(header::WWW_AUTHENTICATE)
        && let Some(v) = parts.headers.get(header::WWW_AUTHENTICATE)
    {
        h.insert(header::WWW_AUTHENTICATE, v.clone());
    }
    (out, status.code)
}

/// The gRPC code of an OTLP/HTTP status without a `google.rpc.Status` body
/// (the OTLP spec's HTTP→gRPC correspondence).
fn code_of_http(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 => otlp::code::INVALID_ARGUMENT,
        401 => otlp::code::UNAUTHENTICATED,
        403 => otlp::code::PERMISSION_DENIED,
        404 => otlp::code::NOT_FOUND,
        413 | 429 => otlp::code::RESOURCE_EXHAUSTED,
        502..=504 => otlp::code::UNAVAILABLE,
        _ => otlp::code::INTERNAL,
    }
}

/// One length-prefixed, uncompressed gRPC message.
fn frame(msg: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(msg.len() + 5);
    out.push(0);
    out.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(msg);
    Bytes::from(out)
}

/// `grpc-message` encoding (gRPC over HTTP/2 spec): bytes outside printable
/// ASCII, and `%`, as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Response body of the gRPC listener (and of the dev recording upstream):
/// at most one data frame, then trailers (none for a trailers-only error
/// answer, or a plain HTTP answer).
#[derive(Debug, Default)]
pub struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl GrpcBody {
    /// A body of `data` (none when empty) followed by `trailers`.
    pub fn new(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        GrpcBody {
            data: (!data.is_empty()).then_some(data),
            trailers,
        }
    }
}

impl From<Bytes> for GrpcBody {
    fn from(data: Bytes) -> Self {
        GrpcBody {
            data: Some(data),
            trailers: None,
        }
    }
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_services() {
        assert_eq!(
            signal_of_method("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"),
            Some(Signal::Metrics)
        );
        assert_eq!(
            signal_of_method("/opentelemetry.proto.collector.trace.v1.TraceService/Other"),
            None
        );
        assert_eq!(signal_of_method("/v1/traces"), None);
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("a b%\n é"), "a b%25%0A %C3%A9");
    }
}
