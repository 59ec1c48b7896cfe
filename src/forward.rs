//! Forwarding to the upstream OTLP endpoint: a fresh header set (the client's
//! credentials and hop-by-hop headers never cross), the injected credential
//! marked sensitive, bounded retries on retryable answers, and one fallback to
//! the previous credential during a rotation grace period.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};

use crate::client::{ClientError, HttpClient, OutBody};
use crate::config::UpstreamConfig;
use crate::error::ProxyError;
use crate::metrics::{Metrics, UpstreamLabels};
use crate::otlp::Encoding;
use crate::secrets::{Credential, Secret};

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

/// What the upstream answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub retry_after: Option<HeaderValue>,
    pub body: Bytes,
}

/// The outcome plus what the audit line needs either way.
#[derive(Debug)]
pub struct ForwardResult {
    pub outcome: Result<Answer, ProxyError>,
    pub attempts: u32,
    pub used_previous: bool,
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

/// Forward one batch.
pub async fn forward(client: &HttpClient, metrics: &Metrics, job: Forward<'_>) -> ForwardResult {
    let body = if job.gzip {
        crate::otlp::gzip(&job.body, GZIP_LEVEL)
    } else {
        job.body.clone()
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
        let req = match build_request(&job, &body, secret) {
            Ok(r) => r,
            Err(e) => break Err(e),
        };
        match client.send(req, timeout, MAX_RESPONSE_BODY).await {
            Ok(resp) => {
                let status = resp.status();
                let answer = Answer {
                    status,
                    content_type: resp
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    retry_after: resp.headers().get(header::RETRY_AFTER).cloned(),
                    body: resp.into_body(),
                };
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
                    let wait = retry_after_secs(answer.retry_after.as_ref())
                        .map(Duration::from_secs)
                        .unwrap_or_else(|| backoff(attempts));
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
    }
}

/// Build the upstream request from an allowlist: nothing the client sent
/// crosses except its user agent, so its `Authorization`, any credential
/// header it tried to smuggle, cookies and hop-by-hop headers never do.
fn build_request(
    job: &Forward<'_>,
    body: &Bytes,
    secret: &Secret,
) -> Result<Request<OutBody>, ProxyError> {
    let mut req = Request::new(OutBody::new(body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = job
        .config
        .url
        .as_str()
        .parse()
        .map_err(|_| ProxyError::UpstreamUnknown(job.name.to_string()))?;
    let h = req.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(job.encoding.content_type()),
    );
    if job.gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static(job.encoding.content_type()),
    );
    if let Some(ua) = job.user_agent {
        h.insert(header::USER_AGENT, ua.clone());
    }
    if let Ok(id) = HeaderValue::from_str(job.request_id) {
        h.insert("x-request-id", id);
    }
    let name = HeaderName::from_bytes(job.config.credential_header.as_bytes())
        .map_err(|_| ProxyError::UpstreamUnknown(job.name.to_string()))?;
    // Sensitive, and wiped when hyper drops the request.
    let value = secret
        .header_value()
        .map_err(|_| ProxyError::CredentialUnavailable(job.credential.name.clone()))?;
    h.insert(name, value);
    Ok(req)
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
