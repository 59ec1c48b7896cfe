//! Request errors and the one exhaustive error-to-response map.
//!
//! Clients get a status, a generic message and (where it helps them retry)
//! `Retry-After`; the detailed reason code goes to the audit line only.

use std::time::Duration;

use http::{HeaderValue, StatusCode, header};

use crate::identity::AuthError;
use crate::otlp::{Encoding, OtlpError};

/// Everything that can end a proxied request early.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("authentication failed: {0}")]
    Auth(AuthError),
    #[error("drain authentication failed: {0}")]
    Drain(crate::drains::DrainError),
    /// No endpoint at this path; the paths that are served (told only to
    /// authenticated callers).
    #[error("no endpoint at this path")]
    NotFound(Vec<String>),
    /// A gRPC call for a service/method spangate does not serve; the
    /// services that are.
    #[error("no such gRPC service or method")]
    UnknownService(Vec<String>),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("unsupported content type")]
    UnsupportedContentType,
    #[error("unsupported content encoding")]
    UnsupportedContentEncoding,
    #[error("body over the cap")]
    PayloadTooLarge,
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("client stopped sending the body")]
    BodyAborted,
    #[error("request body not received in time")]
    RequestTimeout,
    #[error("denied by {rule}: {reason}")]
    Forbidden { rule: String, reason: &'static str },
    #[error("rate limited ({limit})")]
    RateLimited {
        retry_after: Duration,
        limit: &'static str,
    },
    #[error("batch larger than the {limit} rate limit's bucket")]
    BatchExceedsBurst { limit: &'static str },
    #[error("credential {0} has no current value")]
    CredentialUnavailable(String),
    #[error("upstream {0} is not configured")]
    UpstreamUnknown(String),
    #[error("upstream unreachable: {0}")]
    UpstreamUnavailable(String),
    #[error("upstream refused the injected credential")]
    UpstreamAuthFailed,
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// A batch over the upstream's `max_request_bytes` that cannot be
    /// split (one item alone is over it); the detail names the sizes.
    #[error("cannot fit the upstream's request limit: {0}")]
    UpstreamLimit(String),
    #[error("request memory budget exhausted: {0}")]
    Overloaded(crate::budget::Overloaded),
    #[error("not spooled: {0}")]
    SpoolRefused(crate::spool::SpoolRefused),
}

/// How an error is answered.
pub struct ErrorResponse {
    pub status: StatusCode,
    /// `google.rpc.Code` for the Status body.
    pub grpc_code: i32,
    /// Generic text for the client (never a detail that helps an attacker).
    pub message: &'static str,
    /// Stable reason code for audit and metrics.
    pub reason: &'static str,
    pub retry_after: Option<Duration>,
    pub www_authenticate: bool,
}

// google.rpc.Code values used below.
use crate::otlp::code::{
    CANCELLED, DEADLINE_EXCEEDED, INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED,
    RESOURCE_EXHAUSTED, UNAUTHENTICATED, UNAVAILABLE, UNIMPLEMENTED,
};

/// Retry-After for 5xx answers that are our own operational problems.
const OPERATOR_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Retry-After when the memory budget is full: load passes quickly.
const OVERLOAD_RETRY_AFTER: Duration = Duration::from_secs(1);

impl ProxyError {
    /// The one map from error to response. Exhaustive on purpose: a new
    /// variant must decide its status here.
    pub fn response(&self) -> ErrorResponse {
        let r = |status, grpc_code, message, reason| ErrorResponse {
            status,
            grpc_code,
            message,
            reason,
            retry_after: None,
            www_authenticate: false,
        };
        match self {
            ProxyError::Auth(AuthError::ProviderUnavailable { retry_after }) => ErrorResponse {
                retry_after: Some(*retry_after),
                ..r(
                    StatusCode::SERVICE_UNAVAILABLE,
                    UNAVAILABLE,
                    "identity provider unavailable, retry later",
                    "provider_unavailable",
                )
            },
            ProxyError::Auth(e) => ErrorResponse {
                www_authenticate: true,
                ..r(
                    StatusCode::UNAUTHORIZED,
                    UNAUTHENTICATED,
                    "invalid or missing bearer token",
                    e.reason(),
                )
            },
            ProxyError::Drain(e) => r(
                StatusCode::UNAUTHORIZED,
                UNAUTHENTICATED,
                "invalid or missing credentials",
                e.reason(),
            ),
            ProxyError::NotFound(_) => r(
                StatusCode::NOT_FOUND,
                NOT_FOUND,
                "no such endpoint",
                "unknown_endpoint",
            ),
            ProxyError::UnknownService(_) => r(
                StatusCode::NOT_FOUND,
                UNIMPLEMENTED,
                "no such gRPC service or method",
                "unknown_service",
            ),
            ProxyError::MethodNotAllowed => r(
                StatusCode::METHOD_NOT_ALLOWED,
                UNIMPLEMENTED,
                "method not allowed",
                "method_not_allowed",
            ),
            ProxyError::UnsupportedContentType => r(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                INVALID_ARGUMENT,
                "content type must be application/x-protobuf or application/json",
                "unsupported_content_type",
            ),
            ProxyError::UnsupportedContentEncoding => r(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                INVALID_ARGUMENT,
                "content encoding must be gzip or identity",
                "unsupported_content_encoding",
            ),
            ProxyError::PayloadTooLarge => r(
                StatusCode::PAYLOAD_TOO_LARGE,
                RESOURCE_EXHAUSTED,
                "request body too large",
                "body_too_large",
            ),
            ProxyError::Malformed(_) => r(
                StatusCode::BAD_REQUEST,
                INVALID_ARGUMENT,
                "malformed OTLP request",
                "malformed_body",
            ),
            ProxyError::BodyAborted => r(
                StatusCode::BAD_REQUEST,
                CANCELLED,
                "request body incomplete",
                "body_aborted",
            ),
            ProxyError::RequestTimeout => r(
                StatusCode::REQUEST_TIMEOUT,
                DEADLINE_EXCEEDED,
                "request body not received in time",
                "request_timeout",
            ),
            ProxyError::Forbidden { reason, .. } => r(
                StatusCode::FORBIDDEN,
                PERMISSION_DENIED,
                "not permitted by policy",
                reason,
            ),
            ProxyError::RateLimited { retry_after, .. } => ErrorResponse {
                retry_after: Some(*retry_after),
                ..r(
                    StatusCode::TOO_MANY_REQUESTS,
                    RESOURCE_EXHAUSTED,
                    "rate limit exceeded, retry later",
                    "rate_limited",
                )
            },
            ProxyError::BatchExceedsBurst { .. } => r(
                StatusCode::PAYLOAD_TOO_LARGE,
                RESOURCE_EXHAUSTED,
                "batch larger than the rate limit allows; send smaller batches",
                "batch_exceeds_burst",
            ),
            ProxyError::CredentialUnavailable(_) => ErrorResponse {
                retry_after: Some(OPERATOR_RETRY_AFTER),
                ..r(
                    StatusCode::SERVICE_UNAVAILABLE,
                    UNAVAILABLE,
                    "upstream credential unavailable",
                    "credential_unavailable",
                )
            },
            ProxyError::UpstreamUnknown(_) => ErrorResponse {
                retry_after: Some(OPERATOR_RETRY_AFTER),
                ..r(
                    StatusCode::SERVICE_UNAVAILABLE,
                    UNAVAILABLE,
                    "upstream not configured",
                    "upstream_unknown",
                )
            },
            ProxyError::UpstreamUnavailable(_) => ErrorResponse {
                retry_after: Some(OPERATOR_RETRY_AFTER),
                ..r(
                    StatusCode::BAD_GATEWAY,
                    UNAVAILABLE,
                    "upstream unavailable",
                    "upstream_unavailable",
                )
            },
            ProxyError::UpstreamAuthFailed => ErrorResponse {
                retry_after: Some(OPERATOR_RETRY_AFTER),
                ..r(
                    StatusCode::BAD_GATEWAY,
                    UNAVAILABLE,
                    "upstream refused the gateway credential",
                    "upstream_auth_failed",
                )
            },
            ProxyError::SpoolRefused(e) => ErrorResponse {
                retry_after: Some(crate::spool::FULL_RETRY_AFTER),
                ..r(
                    StatusCode::SERVICE_UNAVAILABLE,
                    UNAVAILABLE,
                    "batch not stored, retry later",
                    e.reason(),
                )
            },
            ProxyError::Overloaded(_) => ErrorResponse {
                retry_after: Some(OVERLOAD_RETRY_AFTER),
                ..r(
                    StatusCode::SERVICE_UNAVAILABLE,
                    UNAVAILABLE,
                    "proxy overloaded, retry later",
                    "overloaded",
                )
            },
            ProxyError::UpstreamLimit(_) => r(
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID_ARGUMENT,
                "an item is larger than the upstream's request limit",
                "over_upstream_limit",
            ),
            ProxyError::UpstreamTimeout => ErrorResponse {
                retry_after: Some(OPERATOR_RETRY_AFTER),
                ..r(
                    StatusCode::GATEWAY_TIMEOUT,
                    DEADLINE_EXCEEDED,
                    "upstream timed out",
                    "upstream_timeout",
                )
            },
        }
    }

    /// Build the HTTP response: an OTLP `google.rpc.Status` body in the
    /// request's encoding.
    pub fn to_http(&self, encoding: Encoding) -> http::Response<bytes::Bytes> {
        let er = self.response();
        // A malformed body is the one case where the client needs the detail
        // to fix its exporter (docs/otlp.md): it describes only the client's
        // own payload and is bounded (`otlp::MAX_ERROR_DETAIL`).
        let message = match self {
            ProxyError::Malformed(detail) => format!("{}: {detail}", er.message),
            ProxyError::NotFound(paths) if !paths.is_empty() => {
                format!("{}; served paths: {}", er.message, paths.join(", "))
            }
            ProxyError::UnknownService(services) if !services.is_empty() => format!(
                "{}; served: {}",
                er.message,
                services
                    .iter()
                    .map(|s| format!("{s}/Export"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => er.message.to_string(),
        };
        let body = crate::otlp::status_body(encoding, er.grpc_code, &message);
        let mut resp = http::Response::new(body);
        *resp.status_mut() = er.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        );
        if let Some(ra) = er.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(ra.as_secs().max(1)));
        }
        if er.www_authenticate {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"spangate\", error=\"invalid_token\""),
            );
        }
        resp
    }
}

impl ProxyError {
    /// The audit/metrics `decision` of a request this error ended: `deny`
    /// for authentication, policy and rate limits; otherwise the decision
    /// reached so far (`error` before authorization, `allow` after it).
    pub fn decision(&self, so_far: &'static str) -> &'static str {
        match self {
            ProxyError::Forbidden { .. }
            | ProxyError::Auth(_)
            | ProxyError::Drain(_)
            | ProxyError::RateLimited { .. }
            | ProxyError::BatchExceedsBurst { .. } => "deny",
            _ => so_far,
        }
    }
}

/// A known request outcome: (decision, reason, status).
pub type Outcome = (&'static str, &'static str, u16);

fn outcome(e: &ProxyError, so_far: &'static str) -> Outcome {
    let r = e.response();
    (e.decision(so_far), r.reason, r.status.as_u16())
}

/// Outcomes of requests refused before an endpoint is known (metrics
/// endpoint label `-`): every authentication failure and an unknown path.
/// Used to create those series at start.
pub fn outcomes_before_routing() -> Vec<Outcome> {
    let auth = [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::TooLarge,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::BadIssuer,
        AuthError::BadAudience,
        AuthError::BadType,
        AuthError::UnknownKey,
        AuthError::BadSignature,
        AuthError::AlgNotAllowed,
        AuthError::BadClaims,
        AuthError::UnsupportedCrit,
        AuthError::ProviderUnavailable {
            retry_after: Duration::from_secs(1),
        },
        AuthError::IntrospectionInactive,
    ];
    let mut out: Vec<Outcome> = auth
        .into_iter()
        .map(|a| outcome(&ProxyError::Auth(a), "error"))
        .collect();
    out.push(outcome(&ProxyError::NotFound(Vec::new()), "error"));
    out
}

/// Outcomes of requests on a known endpoint: the allowed ones, every policy
/// deny reason, the limits, and the errors before and after authorization.
pub fn outcomes_after_routing() -> Vec<Outcome> {
    use crate::policy::reason;
    let mut out: Vec<Outcome> = vec![
        ("allow", reason::ALLOWED, 200),
        ("partial", reason::ALLOWED_PARTIAL, 200),
        ("allow", "spooled", 200),
    ];
    for r in reason::DENY {
        out.push(outcome(
            &ProxyError::Forbidden {
                rule: String::new(),
                reason: r,
            },
            "error",
        ));
    }
    let before_decision = [
        ProxyError::MethodNotAllowed,
        ProxyError::UnsupportedContentType,
        ProxyError::UnsupportedContentEncoding,
        ProxyError::PayloadTooLarge,
        ProxyError::Malformed(String::new()),
        ProxyError::BodyAborted,
        ProxyError::RequestTimeout,
        ProxyError::Overloaded(crate::budget::Overloaded {
            wanted_kib: 0,
            total_kib: 0,
        }),
    ];
    for e in &before_decision {
        out.push(outcome(e, "error"));
    }
    let after_decision = [
        ProxyError::RateLimited {
            retry_after: Duration::from_secs(1),
            limit: "",
        },
        ProxyError::BatchExceedsBurst { limit: "" },
        ProxyError::CredentialUnavailable(String::new()),
        ProxyError::UpstreamUnknown(String::new()),
        ProxyError::UpstreamLimit(String::new()),
        ProxyError::UpstreamUnavailable(String::new()),
        ProxyError::UpstreamAuthFailed,
        ProxyError::UpstreamTimeout,
    ];
    for e in &after_decision {
        out.push(outcome(e, "allow"));
    }
    out
}

impl From<OtlpError> for ProxyError {
    fn from(e: OtlpError) -> Self {
        match e {
            OtlpError::TooLarge(_) => ProxyError::PayloadTooLarge,
            OtlpError::UnsupportedEncoding => ProxyError::UnsupportedContentEncoding,
            OtlpError::Malformed(m) => ProxyError::Malformed(m),
            OtlpError::Body(_) => ProxyError::BodyAborted,
        }
    }
}
