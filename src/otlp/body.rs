//! Reading request bodies with a cap measured after decompression.
//!
//! Memory bound: the compressed body is collected into at most `cap` bytes
//! (`http_body_util::Limited`), and gunzip writes into a buffer whose capacity
//! never exceeds `cap + 1` (one byte past the cap is how an oversized body is
//! detected). So one request costs at most about `2 × cap` plus the inflater's
//! fixed window, whatever the compression ratio (gzip bombs included).

use std::io::Read;

use bytes::{Buf, Bytes};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::OtlpError;

/// Size of one read from the inflater.
const CHUNK: usize = 64 * 1024;

/// Bodies at least this large are inflated / decoded on tokio's blocking
/// pool (when running inside tokio) so a big batch does not stall the
/// async worker that other connections share.
pub const OFF_THREAD_BYTES: usize = 64 * 1024;

/// Run CPU-heavy `work` on the blocking pool when `size` is large and a tokio
/// runtime is present; inline otherwise.
pub(super) async fn maybe_off_thread<T, F>(size: usize, work: F) -> Result<T, OtlpError>
where
    F: FnOnce() -> Result<T, OtlpError> + Send + 'static,
    T: Send + 'static,
{
    if size < OFF_THREAD_BYTES {
        return work();
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(work)
            .await
            .unwrap_or_else(|_| Err(OtlpError::malformed("decoder task failed"))),
        Err(_) => work(),
    }
}

/// The codings `read_body` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
}

fn coding(content_encoding: Option<&str>) -> Result<Coding, OtlpError> {
    match content_encoding.map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(Coding::Identity),
        Some(s) if s.is_empty() || s == "identity" => Ok(Coding::Identity),
        // RFC 9110 §8.4.1.3: recipients should treat x-gzip as gzip.
        Some(s) if s == "gzip" || s == "x-gzip" => Ok(Coding::Gzip),
        Some(_) => Err(OtlpError::UnsupportedEncoding),
    }
}

/// Read a request body, decompressing it per `Content-Encoding`, refusing
/// anything larger than `cap` bytes after decompression.
///
/// - `gzip` (and `x-gzip`), `identity` or absent are supported; anything else
///   is [`OtlpError::UnsupportedEncoding`] (checked before reading the body).
/// - At most `cap` compressed bytes are collected; more is
///   [`OtlpError::TooLarge`]. (So a gzip body of incompressible data a few
///   bytes over the cap is refused even if it would inflate to under the cap.)
/// - Gunzip reads at most `cap + 1` bytes: exactly `cap` is accepted, `cap + 1`
///   is [`OtlpError::TooLarge`].
/// - Invalid gzip is [`OtlpError::Malformed`]; an error from the body stream
///   itself (client went away) is [`OtlpError::Body`].
/// - Compressed bodies of [`OFF_THREAD_BYTES`] or more are inflated on
///   tokio's blocking pool.
pub async fn read_body<B>(
    body: B,
    content_encoding: Option<&str>,
    cap: usize,
) -> Result<Bytes, OtlpError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let coding = coding(content_encoding)?;
    let raw = collect_capped(body, cap).await?;
    match coding {
        Coding::Identity => Ok(raw),
        Coding::Gzip => maybe_off_thread(raw.len(), move || gunzip_capped(&raw, cap)).await,
    }
}

/// [`read_body`] in two steps, for callers that need the body exactly as it
/// came over the wire (a signature over the raw bytes): collect at most `cap`
/// bytes after checking the coding is supported.
pub async fn read_wire<B>(
    body: B,
    content_encoding: Option<&str>,
    cap: usize,
) -> Result<Bytes, OtlpError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    coding(content_encoding)?;
    collect_capped(body, cap).await
}

/// The second step of [`read_body`]: decompress a body from [`read_wire`].
pub async fn inflate(
    wire: Bytes,
    content_encoding: Option<&str>,
    cap: usize,
) -> Result<Bytes, OtlpError> {
    match coding(content_encoding)? {
        Coding::Identity => Ok(wire),
        Coding::Gzip => maybe_off_thread(wire.len(), move || gunzip_capped(&wire, cap)).await,
    }
}

/// Read one unary gRPC message (the 5-byte length-prefixed frame of the
/// gRPC HTTP/2 protocol) from `body`: the gRPC counterpart of [`read_body`],
/// built on the same two steps ([`read_grpc_wire`], then [`inflate`]) and the
/// same cap measured after decompression.
pub async fn read_grpc_message<B>(
    body: B,
    grpc_encoding: Option<&str>,
    cap: usize,
) -> Result<Bytes, OtlpError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (wire, coding) = read_grpc_wire(body, grpc_encoding, cap).await?;
    inflate(wire, coding, cap).await
}

/// The wire step of [`read_grpc_message`]: collect the frame (at most
/// `cap + 5` bytes) and return its message bytes as they came, with the
/// content coding to give [`inflate`]. `grpc_encoding` is the
/// `grpc-encoding` header: a compressed frame (flag 1) must say `gzip`. More
/// than one message, a truncated frame or a length disagreeing with the body
/// are malformed; a declared length over `cap` is too large.
pub async fn read_grpc_wire<B>(
    body: B,
    grpc_encoding: Option<&str>,
    cap: usize,
) -> Result<(Bytes, Option<&'static str>), OtlpError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut raw = collect_capped(body, cap.saturating_add(5)).await?;
    if raw.len() < 5 {
        return Err(OtlpError::malformed("gRPC message frame truncated"));
    }
    let header = raw.split_to(5);
    let compressed = match header.first() {
        Some(0) => false,
        Some(1) => true,
        _ => return Err(OtlpError::malformed("gRPC message frame: invalid flag")),
    };
    let len = header
        .get(1..5)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes) as usize;
    if len > cap {
        return Err(OtlpError::TooLarge(cap));
    }
    if len != raw.len() {
        return Err(OtlpError::malformed(format!(
            "gRPC message frame declares {len} bytes, body holds {} (one message per call)",
            raw.len()
        )));
    }
    if !compressed {
        return Ok((raw, None));
    }
    match grpc_encoding.map(str::trim) {
        Some(e) if e.eq_ignore_ascii_case("gzip") => Ok((raw, Some("gzip"))),
        _ => Err(OtlpError::UnsupportedEncoding),
    }
}

/// Collect at most `cap` bytes of `body`. A single-chunk body is returned
/// without copying; otherwise chunks are appended to one buffer whose
/// capacity never exceeds `cap`.
async fn collect_capped<B>(body: B, cap: usize) -> Result<Bytes, OtlpError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(Limited::new(body, cap));
    let mut first: Option<Bytes> = None;
    let mut joined: Option<Vec<u8>> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                OtlpError::TooLarge(cap)
            } else {
                OtlpError::Body(e.to_string())
            }
        })?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers
        };
        let chunk = data.copy_to_bytes(data.remaining());
        if chunk.is_empty() {
            continue;
        }
        match (&mut first, &mut joined) {
            (None, None) => first = Some(chunk),
            (Some(f), None) => {
                let mut buf = Vec::new();
                reserve_capped(&mut buf, f.len() + chunk.len(), cap);
                buf.extend_from_slice(f);
                buf.extend_from_slice(&chunk);
                first = None;
                joined = Some(buf);
            }
            (_, Some(buf)) => {
                let need = buf.len() + chunk.len();
                reserve_capped(buf, need, cap);
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(match (first, joined) {
        (_, Some(buf)) => Bytes::from(buf),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// Grow `out` so it holds `need` bytes, doubling but never past `limit`
/// (callers guarantee `need <= limit`; `Limited` does for the body).
fn reserve_capped(out: &mut Vec<u8>, need: usize, limit: usize) {
    if out.capacity() < need {
        let target = out
            .capacity()
            .saturating_mul(2)
            .max(need)
            .min(limit.max(need));
        out.reserve_exact(target - out.len());
    }
}

/// Gunzip `input` (one or more gzip members), refusing output larger than
/// `cap` bytes. The output buffer's capacity never exceeds `cap + 1`, however
/// large the stream would inflate.
pub fn gunzip_capped(input: &[u8], cap: usize) -> Result<Bytes, OtlpError> {
    let mut out = Vec::new();
    gunzip_into(input, cap, &mut out)?;
    Ok(Bytes::from(out))
}

/// Inflate into `out` (normally empty), refusing more than `cap` bytes. On
/// return, success or error, `out.capacity()` is the peak capacity it ever
/// had, which is at most `cap + 1`: this is the structural proof that a gzip
/// bomb costs no more memory than the cap.
pub fn gunzip_into(input: &[u8], cap: usize, out: &mut Vec<u8>) -> Result<(), OtlpError> {
    let limit = cap.saturating_add(1);
    let decoder = flate2::read::MultiGzDecoder::new(input);
    // Never ask the inflater for more than cap + 1 bytes in total.
    let mut reader = decoder.take(limit as u64);
    let mut chunk = vec![0u8; CHUNK.min(limit)];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(OtlpError::malformed(format!("invalid gzip body: {e}"))),
        };
        let need = out.len() + n;
        reserve_capped(out, need, limit);
        out.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    if out.len() > cap {
        return Err(OtlpError::TooLarge(cap));
    }
    Ok(())
}

/// Gzip `bytes` at `level` (0–9, clamped), for forwarding compressed.
pub fn gzip(bytes: &[u8], level: u32) -> Bytes {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        flate2::Compression::new(level.min(9)),
    );
    // Writing into a Vec cannot fail.
    match enc.write_all(bytes).and_then(|()| enc.finish()) {
        Ok(v) => Bytes::from(v),
        Err(_) => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codings() {
        assert_eq!(coding(None).ok(), Some(Coding::Identity));
        assert_eq!(coding(Some("identity")).ok(), Some(Coding::Identity));
        assert_eq!(coding(Some(" GZIP ")).ok(), Some(Coding::Gzip));
        assert_eq!(coding(Some("x-gzip")).ok(), Some(Coding::Gzip));
        assert!(matches!(
            coding(Some("br")),
            Err(OtlpError::UnsupportedEncoding)
        ));
        assert!(matches!(
            coding(Some("gzip, br")),
            Err(OtlpError::UnsupportedEncoding)
        ));
    }

    #[test]
    fn gzip_round_trip() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let z = gzip(&data, 6);
        assert!(z.len() < data.len());
        assert_eq!(
            gunzip_capped(&z, data.len()).ok().as_deref(),
            Some(&data[..])
        );
    }

    #[test]
    fn multi_member_gzip() {
        let mut z = gzip(b"hello ", 1).to_vec();
        z.extend_from_slice(&gzip(b"world", 1));
        assert_eq!(
            gunzip_capped(&z, 100).ok().as_deref(),
            Some(&b"hello world"[..])
        );
    }

    #[test]
    fn bomb_capacity_never_exceeds_cap_plus_one() {
        // 64 MiB of zeros compresses to ~64 KiB.
        let zeros = vec![0u8; 64 << 20];
        let z = gzip(&zeros, 9);
        drop(zeros);
        assert!(z.len() < 1 << 20);
        for cap in [1usize, 1000, 100_000, 1 << 20, (1 << 20) + 12345] {
            let mut out = Vec::new();
            let r = gunzip_into(&z, cap, &mut out);
            assert!(matches!(r, Err(OtlpError::TooLarge(c)) if c == cap));
            assert!(
                out.capacity() <= cap + 1,
                "cap {cap}: capacity {}",
                out.capacity()
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            gunzip_capped(b"not gzip at all", 100),
            Err(OtlpError::Malformed(m)) if m.contains("gzip")
        ));
        let mut z = gzip(b"hello", 1).to_vec();
        z.truncate(z.len() - 4);
        assert!(matches!(
            gunzip_capped(&z, 100),
            Err(OtlpError::Malformed(_))
        ));
    }
}
