//! Forwarding to the upstream OTLP endpoint: a fresh header set (the client's
//! credentials and hop-by-hop headers never cross), the injected credential
//! marked sensitive, bounded retries on retryable answers, and one fallback to
//! the previous credential during a rotation grace period.
//!
//! The upstream speaks OTLP/HTTP or OTLP/gRPC (`protocol`, [`grpc`]); a
//! gRPC answer is read back into the same [`Answer`] an HTTP upstream gives
//! (its status mapped to the OTLP/HTTP equivalent), so retries, the spool
//! and the client's answer work the same either way. A batch larger than
//! the upstream's `max_request_bytes` is split into pieces that fit, each
//! sent as its own request ([`forward`]).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};

use crate::client::{ClientError, HttpClient, OutBody};
use crate::config::UpstreamConfig;
use crate::config::upstream::Protocol;
use crate::error::ProxyError;
use crate::metrics::{Metrics, UpstreamLabels};
use crate::otlp::{Encoding, Signal};
use crate::secrets::{Credential, Secret};

pub mod grpc;

/// At most this many attempts per batch (first try included).
pub const MAX_ATTEMPTS: u32 = 3;
/// Fast gzip: the upstream link is rarely the bottleneck, CPU often is.
const GZIP_LEVEL: u32 = 1;
/// Largest upstream response body read back.
pub const MAX_RESPONSE_BODY: usize = 1 << 20;
/// Backoff before retry n (n = 1, 2, ...): 100 ms, 400 ms.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(100 * 4u64.pow(n.saturating_sub(1)))
}
/// Longest upstream Retry-After we wait out ourselves before handing it to the client.
const MAX_INTERNAL_RETRY_AFTER: Duration = Duration::from_secs(2);

/// One forwarding job.
pub struct Forward<'a> {
    pub name: &'a str,
    pub config: &'a UpstreamConfig,
    /// The batch's signal: picks the upstream path (or gRPC method) and how
    /// an oversize batch is split.
    pub signal: Signal,
    pub body: Bytes,
    pub encoding: Encoding,
    /// Send `Content-Encoding: gzip` (the body is compressed here).
    pub gzip: bool,
    pub user_agent: Option<&'a HeaderValue>,
    pub request_id: &'a str,
    pub credential: &'a Credential,
    pub deadline: Instant,
    /// Timeout of one attempt (the upstream's `timeout`, or the spool's
    /// derived one).
    pub attempt_timeout: Duration,
    /// Attempts on retryable answers and transport errors (first included).
    pub max_attempts: u32,
}

/// What the upstream answered (a gRPC answer in its OTLP/HTTP form: see
/// [`grpc::answer`]).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    /// `Retry-After` for the client (whole seconds).
    pub retry_after: Option<HeaderValue>,
    /// How long the upstream asked us to wait (Retry-After, or a gRPC
    /// `google.rpc.RetryInfo` delay).
    pub retry_delay: Option<Duration>,
    pub body: Bytes,
    /// The upstream's gRPC status code (gRPC upstreams only).
    pub grpc_status: Option<i32>,
}

/// The outcome plus what the audit line needs either way.
#[derive(Debug)]
pub struct ForwardResult {
    pub outcome: Result<Answer, ProxyError>,
    /// Attempts over all pieces.
    pub attempts: u32,
    pub used_previous: bool,
    /// Upstream requests the batch was split into (1 when it fit).
    pub pieces: usize,
}

/// Outcomes of `spangate_upstream_attempts_total`: `ok` (2xx), `status`
/// (another final answer), `retryable` (429/502/503/504, retried),
/// `auth_refused` (401/403), `timeout`, `transport` (connect/TLS/IO).
pub const ATTEMPT_OUTCOMES: [&str; 6] = [
    "ok",
    "status",
    "retryable",
    "auth_refused",
    "timeout",
    "transport",
];

/// OTLP/HTTP's retryable statuses: 429, 502, 503, 504.
pub fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// Forward one batch: converted to protobuf when the upstream needs it,
/// split when it is larger than the upstream's `max_request_bytes`, each
/// piece one request with the same retry semantics.
///
/// Pieces go in order and forwarding stops at the first piece that fails:
/// the answer is that failure (so a spool keeps the whole batch and may
/// deliver the pieces already accepted a second time: at-least-once, as
/// for any retry). When every piece is accepted the answer is 200 with the
/// upstream's partial-success counts summed.
pub async fn forward(client: &HttpClient, metrics: &Metrics, job: Forward<'_>) -> ForwardResult {
    let failed = |e| ForwardResult {
        outcome: Err(e),
        attempts: 0,
        used_previous: false,
        pieces: 1,
    };
    let max = job.config.max_request_bytes(job.signal);
    // Splitting works on protobuf: an oversize OTLP/JSON batch is converted.
    let protobuf = job.config.protobuf_only() || max.is_some_and(|m| job.body.len() > m);
    let (body, encoding) = match wire_body(&job, protobuf) {
        Ok(b) => b,
        Err(e) => return failed(e),
    };
    let pieces = match max {
        Some(max) if body.len() > max => match split(&job, body, max) {
            Ok(p) => p,
            Err(e) => return failed(e),
        },
        _ => vec![body],
    };
    let count = pieces.len();
    if count == 1 {
        let body = pieces.into_iter().next().unwrap_or_default();
        let mut r = send_one(client, metrics, &job, body, encoding).await;
        r.outcome = r
            .outcome
            .map(|a| in_client_encoding(a, job.encoding, job.signal));
        return r;
    }
    let mut total = ForwardResult {
        outcome: Err(ProxyError::UpstreamTimeout),
        attempts: 0,
        used_previous: false,
        pieces: count,
    };
    let mut rejected = 0i64;
    let mut messages: Vec<String> = Vec::new();
    let mut last: Option<Answer> = None;
    for piece in pieces {
        let r = send_one(client, metrics, &job, piece, encoding).await;
        total.attempts += r.attempts;
        total.used_previous |= r.used_previous;
        match r.outcome {
            Ok(a) if a.status.is_success() => {
                let enc = answer_encoding(&a).unwrap_or(encoding);
                if let Some((n, m)) = crate::otlp::parse_export_response(enc, &a.body) {
                    rejected = rejected.saturating_add(n);
                    if !m.is_empty() {
                        messages.push(m);
                    }
                }
                last = Some(a);
            }
            other => {
                total.outcome = other.map(|a| in_client_encoding(a, job.encoding, job.signal));
                return total;
            }
        }
    }
    total.outcome = last
        .map(|a| Answer {
            status: a.status,
            content_type: Some(job.encoding.content_type().to_string()),
            retry_after: None,
            retry_delay: None,
            body: crate::otlp::export_response_for(
                job.signal,
                job.encoding,
                rejected,
                &messages.join("; "),
            ),
            grpc_status: a.grpc_status,
        })
        .ok_or(ProxyError::UpstreamTimeout);
    total
}

/// The body as the upstream takes it: protobuf when `protobuf` (gRPC,
/// protobuf-only backends, batches to split: an OTLP/JSON batch of any
/// signal is converted, a full decode done only here), as received
/// otherwise.
fn wire_body(job: &Forward<'_>, protobuf: bool) -> Result<(Bytes, Encoding), ProxyError> {
    if job.encoding == Encoding::Protobuf || !protobuf {
        return Ok((job.body.clone(), job.encoding));
    }
    let body = crate::otlp::json_to_protobuf(job.signal, &job.body)
        .map_err(|e| ProxyError::Malformed(e.to_string()))?;
    Ok((body, Encoding::Protobuf))
}

/// Split an oversize body into pieces of at most `max` bytes. A body that
/// cannot be split (one item alone over the limit) is refused with its
/// size, never dropped; a body the splitter cannot read goes whole (it was
/// scanned already, so this does not happen) and the upstream answers it.
fn split(job: &Forward<'_>, body: Bytes, max: usize) -> Result<Vec<Bytes>, ProxyError> {
    use crate::otlp::split::SplitError;
    match crate::otlp::split::split_to_fit(job.signal, body.clone(), max) {
        Ok(pieces) if !pieces.is_empty() => Ok(pieces),
        Ok(_) => Ok(vec![body]),
        Err(e @ SplitError::ItemTooLarge { .. }) => Err(ProxyError::UpstreamLimit(e.to_string())),
        Err(e @ SplitError::Malformed(_)) => {
            tracing::warn!(upstream = job.name, request_id = job.request_id, error = %e,
                "batch over the upstream's request size limit cannot be split; sending it whole");
            Ok(vec![body])
        }
    }
}

fn answer_encoding(a: &Answer) -> Option<Encoding> {
    Encoding::from_content_type(a.content_type.as_deref())
}

/// An answer to a body sent in another encoding than the client's (JSON
/// converted to protobuf), re-expressed in the client's: partial success
/// kept, a refusal as a `google.rpc.Status`.
fn in_client_encoding(a: Answer, client: Encoding, signal: Signal) -> Answer {
    let Some(enc) = answer_encoding(&a) else {
        return a;
    };
    if enc == client {
        return a;
    }
    let body = if a.status.is_success() {
        let (n, m) = crate::otlp::parse_export_response(enc, &a.body).unwrap_or_default();
        crate::otlp::export_response_for(signal, client, n, &m)
    } else {
        let (code, message) = match enc {
            Encoding::Protobuf => {
                use prost::Message as _;
                crate::otlp::Status::decode(a.body.as_ref())
                    .map(|s| (s.code, s.message))
                    .unwrap_or((grpc::code_of_http(a.status), String::new()))
            }
            Encoding::Json => (grpc::code_of_http(a.status), String::new()),
        };
        crate::otlp::status_body(client, code, &message)
    };
    Answer {
        content_type: Some(client.content_type().to_string()),
        body,
        ..a
    }
}

/// One request (with retries) of one body to the upstream.
async fn send_one(
    client: &HttpClient,
    metrics: &Metrics,
    job: &Forward<'_>,
    body: Bytes,
    encoding: Encoding,
) -> ForwardResult {
    let grpc = job.config.protocol == Protocol::Grpc;
    let body = match (grpc, job.gzip) {
        (true, gz) => grpc::frame(&body, gz),
        (false, true) => crate::otlp::gzip(&body, GZIP_LEVEL),
        (false, false) => body,
    };
    let Some(target) = job.config.target_uri(job.signal) else {
        return ForwardResult {
            outcome: Err(ProxyError::UpstreamUnknown(job.name.to_string())),
            attempts: 0,
            used_previous: false,
            pieces: 1,
        };
    };
    let mut attempts = 0;
    let mut used_previous = false;
    let mut secret: &Secret = &job.credential.value;
    let count = |outcome: &'static str| {
        metrics
            .upstream_attempts
            .get_or_create(&UpstreamLabels {
                upstream: job.name.to_string(),
                outcome,
            })
            .inc();
    };
    let outcome = loop {
        attempts += 1;
        let now = Instant::now();
        let Some(left) = job
            .deadline
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
        else {
            break Err(ProxyError::UpstreamTimeout);
        };
        let timeout = job.attempt_timeout.min(left);
        let req = if grpc {
            grpc::request(job, &target, &body, secret, timeout)
        } else {
            build_request(job, &target, encoding, &body, secret)
        };
        let req = match req {
            Ok(r) => r,
            Err(e) => break Err(e),
        };
        match client
            .send_with_trailers(req, timeout, MAX_RESPONSE_BODY)
            .await
        {
            Ok((resp, trailers)) => {
                let answer = if grpc {
                    grpc::answer(resp, trailers.as_ref())
                } else {
                    http_answer(resp)
                };
                let status = answer.status;
                if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                    count("auth_refused");
                    // During a rotation grace period the upstream may not know
                    // the new token yet: try the previous one, once.
                    if !used_previous && let Some(prev) = &job.credential.previous {
                        used_previous = true;
                        secret = prev;
                        tracing::warn!(upstream = job.name, credential = %job.credential.name,
                            "upstream refused current credential; retrying with previous version");
                        continue;
                    }
                    tracing::error!(upstream = job.name, credential = %job.credential.name,
                        fingerprint = %secret.fingerprint(), status = status.as_u16(),
                        "upstream refused the injected credential: rotate it through the admin API");
                    break Err(ProxyError::UpstreamAuthFailed);
                }
                if retryable(status) && attempts < job.max_attempts {
                    count("retryable");
                    let wait = answer.retry_delay.unwrap_or_else(|| backoff(attempts));
                    if wait <= MAX_INTERNAL_RETRY_AFTER && Instant::now() + wait < job.deadline {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
                count(if status.is_success() { "ok" } else { "status" });
                break Ok(answer);
            }
            Err(ClientError::Timeout(_)) => {
                count("timeout");
                // The time is spent: no retry after a timeout.
                break Err(ProxyError::UpstreamTimeout);
            }
            Err(e) => {
                count("transport");
                tracing::warn!(upstream = job.name, attempt = attempts, error = %e, "upstream attempt failed");
                if attempts < job.max_attempts && Instant::now() + backoff(attempts) < job.deadline
                {
                    tokio::time::sleep(backoff(attempts)).await;
                    continue;
                }
                break Err(ProxyError::UpstreamUnavailable(e.to_string()));
            }
        }
    };
    ForwardResult {
        outcome,
        attempts,
        used_previous,
        pieces: 1,
    }
}

/// An OTLP/HTTP upstream's answer.
fn http_answer(resp: http::Response<Bytes>) -> Answer {
    let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
    Answer {
        status: resp.status(),
        content_type: resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        retry_delay: retry_after_secs(retry_after.as_ref()).map(Duration::from_secs),
        retry_after,
        body: resp.into_body(),
        grpc_status: None,
    }
}

/// Build the upstream request from an allowlist: nothing the client sent
/// crosses except its user agent, so its `Authorization`, any credential
/// header it tried to smuggle, cookies and hop-by-hop headers never do.
fn build_request(
    job: &Forward<'_>,
    target: &http::Uri,
    encoding: Encoding,
    body: &Bytes,
    secret: &Secret,
) -> Result<Request<OutBody>, ProxyError> {
    let mut req = Request::new(OutBody::new(body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = target.clone();
    let h = req.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    if job.gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static(encoding.content_type()),
    );
    insert_common(job, h, secret)?;
    Ok(req)
}

/// Headers both protocols send: the user agent, the request id, the
/// preset's fixed headers and the injected credential.
fn insert_common(
    job: &Forward<'_>,
    h: &mut http::HeaderMap,
    secret: &Secret,
) -> Result<(), ProxyError> {
    upstream_headers(job.config, h, job.user_agent, job.request_id, secret).map_err(|e| match e {
        HeaderError::Name => ProxyError::UpstreamUnknown(job.name.to_string()),
        HeaderError::Value => ProxyError::CredentialUnavailable(job.credential.name.clone()),
    })
}

/// Why the upstream headers could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The credential header name is invalid (refused by config validation).
    Name,
    /// The credential is not a valid header value.
    Value,
}

/// The headers every upstream request carries: the user agent, the
/// request id, the preset's fixed headers and the credential in the shape
/// the upstream expects (sensitive, wiped when hyper drops the request).
pub fn upstream_headers(
    config: &UpstreamConfig,
    h: &mut http::HeaderMap,
    user_agent: Option<&HeaderValue>,
    request_id: &str,
    secret: &Secret,
) -> Result<(), HeaderError> {
    if let Some(ua) = user_agent {
        h.insert(header::USER_AGENT, ua.clone());
    }
    if let Ok(id) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", id);
    }
    for (k, v) in config.extra_headers() {
        h.insert(*k, HeaderValue::from_static(v));
    }
    let name = config.credential_header_name().ok_or(HeaderError::Name)?;
    let value = config
        .credential_value(secret)
        .map_err(|_| HeaderError::Value)?;
    h.insert(name, value);
    Ok(())
}

/// One bare request of `body` (protobuf, `signal`) to `config`'s target
/// with `secret`: the rotation verifier's probe. HTTP or gRPC as the
/// upstream says; no retry, no fallback. None when the upstream has no
/// target for the signal.
pub fn probe_request(
    config: &UpstreamConfig,
    signal: Signal,
    body: &Bytes,
    secret: &Secret,
    request_id: &str,
    user_agent: &HeaderValue,
    timeout: Duration,
) -> Result<Option<Request<OutBody>>, HeaderError> {
    let Some(target) = config.target(signal) else {
        return Ok(None);
    };
    let grpc = config.protocol == Protocol::Grpc;
    let mut req = Request::new(OutBody::new(if grpc {
        grpc::frame(body, false)
    } else {
        body.clone()
    }));
    *req.method_mut() = Method::POST;
    let Ok(uri) = target.parse() else {
        return Ok(None);
    };
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    if grpc {
        *req.version_mut() = http::Version::HTTP_2;
        let h = req.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(grpc::CONTENT_TYPE),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("grpc-timeout", grpc::grpc_timeout(timeout));
        upstream_headers(config, h, Some(user_agent), request_id, secret)?;
    } else {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(Encoding::Protobuf.content_type()),
        );
        upstream_headers(config, h, Some(user_agent), request_id, secret)?;
    }
    Ok(Some(req))
}

/// Read a probe's (or any) answer per the upstream's protocol.
pub fn read_answer(
    config: &UpstreamConfig,
    resp: http::Response<Bytes>,
    trailers: Option<&http::HeaderMap>,
) -> Answer {
    match config.protocol {
        Protocol::Grpc => grpc::answer(resp, trailers),
        Protocol::Http => http_answer(resp),
    }
}

fn retry_after_secs(v: Option<&HeaderValue>) -> Option<u64> {
    v?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses_are_otlp_ones() {
        for s in [429, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 413, 500] {
            assert!(!retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn backoff_grows() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(400));
    }
}
