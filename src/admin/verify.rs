//! The rotation verify probe: before a new credential is activated, send the
//! upstream an empty OTLP export carrying it and see whether it is accepted.
//!
//! An empty `ExportTraceServiceRequest` encodes to zero protobuf bytes; an
//! OTLP receiver answers it like any export, so authentication is checked
//! without publishing a span.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::client::HttpClient;
use crate::config::UpstreamConfig;
use crate::secrets::Secret;

/// Largest probe response read.
const MAX_PROBE_RESPONSE: usize = 64 * 1024;

/// What the upstream said about a candidate credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// 2xx: the credential works.
    Accepted {
        /// Upstream status.
        status: u16,
    },
    /// 401 or 403: the upstream refuses the credential.
    Rejected {
        /// Upstream status.
        status: u16,
    },
    /// No clear answer: transport error, timeout, 429, 5xx or another 4xx.
    Unavailable {
        /// `upstream_unreachable` or `verify_inconclusive`.
        code: &'static str,
        /// What happened (no values).
        detail: String,
    },
}

impl ProbeOutcome {
    /// Short label for audit lines and responses.
    pub fn label(&self) -> &'static str {
        match self {
            ProbeOutcome::Accepted { .. } => "accepted",
            ProbeOutcome::Rejected { .. } => "rejected",
            ProbeOutcome::Unavailable { .. } => "unavailable",
        }
    }
}

/// The probe body: an empty ExportTraceServiceRequest, protobuf-encoded.
pub fn empty_export() -> Bytes {
    Bytes::from(ExportTraceServiceRequest::default().encode_to_vec())
}

/// POST an empty export to `upstream` with `candidate` in its credential header.
///
/// `request_id` (the admin call's) travels as `x-request-id`, so the probe can
/// be found in the upstream's logs. The candidate goes into a header backed
/// by a zeroizing buffer ([`Secret::header_value`]).
pub async fn probe(
    client: &HttpClient,
    upstream: &UpstreamConfig,
    candidate: &Secret,
    request_id: &str,
) -> ProbeOutcome {
    let timeout = if upstream.timeout.is_zero() {
        Duration::from_secs(10)
    } else {
        upstream.timeout
    };
    let req = crate::forward::probe_request(
        upstream,
        crate::otlp::Signal::Traces,
        &empty_export(),
        candidate,
        request_id,
        &HeaderValue::from_static(concat!(
            "spangate/",
            env!("CARGO_PKG_VERSION"),
            " rotation-verify"
        )),
        timeout,
    );
    let req = match req {
        Ok(Some(r)) => r,
        Ok(None) => {
            return ProbeOutcome::Unavailable {
                code: "verify_inconclusive",
                detail: "the upstream has no traces target to probe".into(),
            };
        }
        Err(crate::forward::HeaderError::Name) => {
            return ProbeOutcome::Unavailable {
                code: "verify_inconclusive",
                detail: "the upstream's credential_header is not a valid header name".into(),
            };
        }
        Err(crate::forward::HeaderError::Value) => {
            return ProbeOutcome::Unavailable {
                code: "verify_inconclusive",
                detail: "the value is not a valid header value".into(),
            };
        }
    };
    match client
        .send_with_trailers(req, timeout, MAX_PROBE_RESPONSE)
        .await
    {
        Ok((resp, trailers)) => {
            let status = crate::forward::read_answer(upstream, resp, trailers.as_ref())
                .status
                .as_u16();
            match status {
                200..=299 => ProbeOutcome::Accepted { status },
                401 | 403 => ProbeOutcome::Rejected { status },
                429 | 500..=599 => ProbeOutcome::Unavailable {
                    code: "upstream_unreachable",
                    detail: format!("upstream answered HTTP {status}"),
                },
                _ => ProbeOutcome::Unavailable {
                    code: "verify_inconclusive",
                    detail: format!("upstream answered HTTP {status} to an empty export"),
                },
            }
        }
        Err(e) => ProbeOutcome::Unavailable {
            code: "upstream_unreachable",
            detail: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_export_is_zero_bytes_and_decodes() {
        let b = empty_export();
        assert!(b.is_empty());
        assert_eq!(
            ExportTraceServiceRequest::decode(b).ok(),
            Some(ExportTraceServiceRequest::default())
        );
    }
}
