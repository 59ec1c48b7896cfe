//! Admin API errors and the one map from error to HTTP response.
//! Bodies are `{"error": code, "message": ..., "request_id": ...}` and never
//! echo a value. Every admin response is `Cache-Control: no-store` and
//! `X-Content-Type-Options: nosniff`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use super::auth::{AdminAuthError, Permission};
use super::throttle::{Scope, retry_after_secs};
use crate::reload::DiagnosticView;
use crate::secrets::SecretsError;

/// Response body type of the admin server.
pub type AdminBody = Full<Bytes>;

/// Everything an admin call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or invalid bearer token.
    #[error("authentication required")]
    Unauthenticated(AdminAuthError),
    /// Authenticated, but without the permission the call needs.
    #[error("missing permission {}", .0.as_str())]
    Forbidden(Permission),
    /// No such route.
    #[error("no such endpoint")]
    NotFound,
    /// Known path, wrong method.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// Allowed methods.
        allow: &'static str,
    },
    /// Body over the cap.
    #[error("request body too large")]
    BodyTooLarge,
    /// The body did not arrive within `admin.body_timeout`.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// A body that is not `application/json`.
    #[error("request bodies must be application/json")]
    UnsupportedMediaType,
    /// Too many failed authentications: the token was not checked.
    #[error("too many failed authentication attempts; try again later")]
    Throttled {
        /// When to try again.
        retry_after: Duration,
        /// Which limit refused the call.
        scope: Scope,
    },
    /// A body that is not JSON of the expected shape, or a bad parameter.
    #[error("{message}")]
    BadRequest {
        /// Reason code.
        code: &'static str,
        /// Human message (never contains a submitted value).
        message: String,
    },
    /// Rotating a credential that does not exist, without `create`.
    #[error(
        "no credential named {name:?} (known: {}); to add a new credential, rotate with create (spangate secrets rotate --create)",
        if .known.is_empty() { "none".to_string() } else { .known.join(", ") }
    )]
    UnknownCredential {
        /// The name asked for.
        name: String,
        /// The credentials that exist.
        known: Vec<String>,
    },
    /// A secrets store error.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The upstream rejected the new credential during the verify probe.
    #[error(
        "upstream {upstream} rejected the new credential with HTTP {status}; not activated (use force to override)"
    )]
    VerifyRejected {
        /// Upstream name.
        upstream: String,
        /// HTTP status the upstream answered.
        status: u16,
    },
    /// The verify probe could not reach the upstream or got no clear answer.
    #[error(
        "cannot verify the new credential against upstream {upstream}: {detail}; not activated (use force to override)"
    )]
    VerifyUnavailable {
        /// Upstream name.
        upstream: String,
        /// `upstream_unreachable` or `verify_inconclusive`.
        code: &'static str,
        /// What happened (no values).
        detail: String,
    },
    /// A policy reload or validation found errors.
    #[error("policy is invalid ({} problem(s)); the running policy set is unchanged", .0.len())]
    PolicyInvalid(Vec<DiagnosticView>),
    /// Metrics are not wired into this admin server.
    #[error("metrics are not available")]
    MetricsUnavailable,
    /// The server is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// A bug or a failed background task.
    #[error("internal error")]
    Internal,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [DiagnosticView]>,
    request_id: &'a str,
}

impl ApiError {
    /// Status code and stable reason code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated(AdminAuthError::Missing) => {
                (StatusCode::UNAUTHORIZED, "unauthenticated")
            }
            ApiError::Unauthenticated(AdminAuthError::Invalid(_)) => {
                (StatusCode::UNAUTHORIZED, "invalid_token")
            }
            ApiError::Unauthenticated(AdminAuthError::Unavailable { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable")
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ApiError::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "auth_throttled"),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::UnknownCredential { .. } => (StatusCode::NOT_FOUND, "unknown_credential"),
            ApiError::Secrets(e) => (secrets_status(e), e.reason()),
            ApiError::VerifyRejected { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "upstream_rejected")
            }
            ApiError::VerifyUnavailable { code, .. } => (StatusCode::BAD_GATEWAY, code),
            ApiError::PolicyInvalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "policy_invalid"),
            ApiError::MetricsUnavailable => (StatusCode::NOT_FOUND, "metrics_unavailable"),
            ApiError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The HTTP response for this error; `request_id` goes into the body
    /// (the caller sets the `x-request-id` header on every response).
    pub fn into_response(self, request_id: &str) -> Response<AdminBody> {
        let (status, code) = self.status_and_code();
        let message = match &self {
            // Store failures: details go to the log, the client gets a summary.
            // Said plainly: the operator must know to wait for the state store.
            ApiError::Secrets(
                e @ (SecretsError::StateUnavailable | SecretsError::StateConflict { .. }),
            ) => {
                tracing::warn!(reason = e.reason(), "credential change refused: {e}");
                e.to_string()
            }
            ApiError::Secrets(e) if status.is_server_error() => {
                tracing::error!(reason = e.reason(), error = %e, "secrets store operation failed");
                "the secrets store could not be updated; nothing changed".to_string()
            }
            ApiError::Unauthenticated(AdminAuthError::Invalid(reason)) => {
                format!("invalid token ({reason})")
            }
            other => other.to_string(),
        };
        let errors = match &self {
            ApiError::PolicyInvalid(d) => Some(d.as_slice()),
            _ => None,
        };
        let body = ErrorBody {
            error: code,
            message,
            errors,
            request_id,
        };
        let mut resp = json_response(status, &body);
        let h = resp.headers_mut();
        match &self {
            ApiError::Unauthenticated(AdminAuthError::Missing) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"spangate-admin\""),
                );
            }
            ApiError::Unauthenticated(AdminAuthError::Invalid(_)) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"spangate-admin\", error=\"invalid_token\"",
                    ),
                );
            }
            ApiError::Unauthenticated(AdminAuthError::Unavailable { retry_after }) => {
                let secs = retry_after.as_secs().max(1);
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    h.insert(header::RETRY_AFTER, v);
                }
            }
            ApiError::MethodNotAllowed { allow } => {
                h.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::Throttled { retry_after, .. } => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            ApiError::UnsupportedMediaType => {
                h.insert(
                    http::HeaderName::from_static("accept-post"),
                    HeaderValue::from_static("application/json"),
                );
            }
            ApiError::BodyTimeout | ApiError::BodyTooLarge => {
                // The rest of the body is not read: the connection cannot be reused.
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::Forbidden(_)
            | ApiError::NotFound
            | ApiError::BadRequest { .. }
            | ApiError::UnknownCredential { .. }
            | ApiError::Secrets(_)
            | ApiError::VerifyRejected { .. }
            | ApiError::VerifyUnavailable { .. }
            | ApiError::PolicyInvalid(_)
            | ApiError::MetricsUnavailable
            | ApiError::ShuttingDown
            | ApiError::Internal => {}
        }
        resp
    }
}

fn secrets_status(e: &SecretsError) -> StatusCode {
    match e {
        SecretsError::NotFound { .. } | SecretsError::UnknownVersion { .. } => {
            StatusCode::NOT_FOUND
        }
        SecretsError::CannotRetireCurrent { .. }
        | SecretsError::NoPrevious { .. }
        | SecretsError::Unchanged { .. } => StatusCode::CONFLICT,
        SecretsError::InvalidValue { .. }
        | SecretsError::InvalidName
        | SecretsError::GraceTooLong => StatusCode::BAD_REQUEST,
        SecretsError::MissingEnv { .. }
        | SecretsError::File { .. }
        | SecretsError::Corrupt { .. }
        | SecretsError::Io { .. }
        | SecretsError::Locked { .. }
        | SecretsError::EncryptedNoKey { .. }
        | SecretsError::WrongKey { .. }
        | SecretsError::Key(_)
        | SecretsError::Encode { .. }
        | SecretsError::StateCorrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        SecretsError::StateUnavailable | SecretsError::StateConflict { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// A JSON response.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<AdminBody> {
    let (status, bytes) = match serde_json::to_vec(body) {
        Ok(mut b) => {
            b.push(b'\n');
            (status, Bytes::from(b))
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(b"{\"error\":\"internal\",\"message\":\"internal error\"}\n"),
        ),
    };
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Headers every admin response carries: never cached (status, metadata and
/// errors are per-moment and per-caller), never content-sniffed, and the
/// request id that the call's audit line also carries.
pub fn finish(resp: &mut Response<AdminBody>, request_id: &str) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(http::HeaderName::from_static("x-request-id"), v);
    }
}
