//! OTLP trace payloads: body reading (gzip, cap after decompression), decoding
//! protobuf and JSON, summaries for policy, stamping, re-encoding, and
//! OTLP-correct responses.
//!
//! SKELETON: interface only; the OTLP work fills this in.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// Wire encoding of a request (and so of its response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From a `Content-Type` header value; `None` = unsupported (415).
    pub fn from_content_type(ct: Option<&str>) -> Option<Encoding> {
        let ct = ct?.split(';').next()?.trim().to_ascii_lowercase();
        match ct.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }
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
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("unsupported content encoding")]
    UnsupportedEncoding,
    #[error("malformed body: {0}")]
    Malformed(String),
}

/// One resource's summary, for policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceSummary {
    pub service_name: Option<String>,
    /// Resource attributes rendered as strings.
    pub attributes: Vec<(String, String)>,
    pub spans: usize,
}

/// Summary of a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchSummary {
    pub resources: Vec<ResourceSummary>,
    pub spans: usize,
    pub bytes: usize,
}

/// A decoded batch.
#[derive(Debug, Clone)]
pub struct Batch {
    pub encoding: Encoding,
    pub request: ExportTraceServiceRequest,
    /// The decompressed body as received.
    pub raw: Bytes,
    pub summary: BatchSummary,
}

/// Decode a decompressed body.
pub fn decode(_encoding: Encoding, raw: Bytes) -> Result<Batch, OtlpError> {
    let _ = raw;
    Err(OtlpError::Malformed("not implemented".into()))
}

// ---- placeholders replaced by the OTLP work ----

/// Read a request body with the cap applied after decompression.
pub async fn read_body<B>(
    body: B,
    _content_encoding: Option<&str>,
    cap: usize,
) -> Result<Bytes, OtlpError>
where
    B: http_body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    use http_body_util::BodyExt;
    http_body_util::Limited::new(body, cap)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| OtlpError::TooLarge(cap))
}

/// What `rewrite` did.
#[derive(Debug, Default)]
pub struct RewriteOutcome {
    pub changed: bool,
    pub spans_dropped: usize,
}

/// Drop, strip and stamp.
pub fn rewrite(
    _b: &mut Batch,
    _keep: &[bool],
    _stamp: &[(String, String)],
    _protected: &[String],
) -> RewriteOutcome {
    RewriteOutcome::default()
}

/// Re-encode in the batch's encoding.
pub fn encode(b: &Batch) -> Bytes {
    b.raw.clone()
}

/// Gzip a body.
pub fn gzip(b: &Bytes) -> Bytes {
    b.clone()
}

/// ExportTraceServiceResponse.
pub fn export_response(_e: Encoding, _rejected: i64, _msg: &str) -> Bytes {
    Bytes::new()
}

/// google.rpc.Status.
pub fn status_body(_e: Encoding, _code: i32, _msg: &str) -> Bytes {
    Bytes::new()
}

/// Parse an upstream ExportTraceServiceResponse's partial_success.
pub fn parse_export_response(_e: Encoding, _b: &[u8]) -> Option<(i64, String)> {
    None
}
