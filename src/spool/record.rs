//! The on-disk record of one spooled batch: a CRC-framed, versioned payload.
//!
//! ```text
//! frame   = len:u32le  crc32(payload):u32le  payload[len]
//! payload = version:u8(=2) seq:u64 enqueued_ms:u64 encoding:u8 gzip:u8
//!           signal:u8 spans:u32
//!           str(endpoint) opt(provider) opt(subject) str(credential NAME)
//!           str(request_id) opt(user_agent) body_len:u32 body
//! str     = len:u16 bytes(UTF-8)        opt = 0:u8 | 1:u8 str
//! signal  = 0 traces | 1 metrics | 2 logs
//! ```
//! All integers little-endian. The credential is stored by *name*; its
//! value is read from the secrets store at delivery time and never reaches
//! the disk. A new field means a new version byte; a reader refuses
//! versions it does not know (treated like corruption: the record and what
//! follows in its segment are not trusted).
//!
//! Version 1 (earlier builds) is the same without `signal`: such a record
//! decodes with no signal, and delivery looks it up by endpoint name in
//! the current policy as those builds did. `seq` sits at the same offset
//! in every version (`log::stamp_seq` relies on it).

use bytes::{Buf, BufMut, Bytes};
use http::HeaderValue;

use super::Spooled;
use crate::otlp::{Encoding, Signal};

/// Version byte of the records this build writes.
pub const FORMAT_VERSION: u8 = 2;
/// The version before the signal was stored (still read).
pub const FORMAT_VERSION_1: u8 = 1;
/// `signal` byte of an item whose signal is not known (read from a version
/// 1 record).
const UNKNOWN_SIGNAL: u8 = 0xff;
/// Bytes of the frame header (length + CRC).
pub const FRAME_HEADER: usize = 8;
/// Largest payload a reader accepts; anything longer is corruption.
pub const MAX_PAYLOAD: u32 = 1 << 30;

/// Why a payload could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record checksum mismatch")]
    Checksum,
    #[error("unknown record version {0}")]
    Version(u8),
    #[error("record truncated or malformed")]
    Malformed,
}

/// Encode one batch as a complete frame.
pub fn encode(seq: u64, item: &Spooled) -> Vec<u8> {
    let mut p = Vec::with_capacity(item.body.len() + 256);
    p.put_u8(FORMAT_VERSION);
    p.put_u64_le(seq);
    p.put_u64_le(item.enqueued_ms);
    p.put_u8(match item.encoding {
        Encoding::Protobuf => 0,
        Encoding::Json => 1,
    });
    p.put_u8(u8::from(item.gzip));
    p.put_u8(match item.signal {
        // Written by this build: always known (an item read from a version 1
        // record that is written again, as a dead letter, keeps the lookup).
        Some(Signal::Traces) => 0,
        Some(Signal::Metrics) => 1,
        Some(Signal::Logs) => 2,
        None => UNKNOWN_SIGNAL,
    });
    p.put_u32_le(u32::try_from(item.spans).unwrap_or(u32::MAX));
    put_str(&mut p, &item.endpoint);
    put_opt(&mut p, item.provider.as_deref());
    put_opt(&mut p, item.subject.as_deref());
    put_str(&mut p, &item.credential);
    put_str(&mut p, &item.request_id);
    put_opt(
        &mut p,
        item.user_agent.as_ref().and_then(|v| v.to_str().ok()),
    );
    p.put_u32_le(u32::try_from(item.body.len()).unwrap_or(u32::MAX));
    p.extend_from_slice(&item.body);
    let mut frame = Vec::with_capacity(FRAME_HEADER + p.len());
    frame.put_u32_le(u32::try_from(p.len()).unwrap_or(u32::MAX));
    frame.put_u32_le(crc32fast::hash(&p));
    frame.extend_from_slice(&p);
    frame
}

/// Read the frame header at the start of `buf`: the payload length, when the
/// header is complete and the length plausible.
pub fn frame_len(buf: &[u8]) -> Option<(usize, u32)> {
    if buf.len() < FRAME_HEADER {
        return None;
    }
    let mut h = &buf[..FRAME_HEADER];
    let len = h.get_u32_le();
    let crc = h.get_u32_le();
    (len <= MAX_PAYLOAD && len > 0).then_some((len as usize, crc))
}

/// Check and decode a payload (the bytes after the frame header).
pub fn decode(payload: &[u8], crc: u32) -> Result<(u64, Spooled), DecodeError> {
    if crc32fast::hash(payload) != crc {
        return Err(DecodeError::Checksum);
    }
    let mut b = payload;
    let version = get_u8(&mut b)?;
    if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
        return Err(DecodeError::Version(version));
    }
    let seq = get_u64(&mut b)?;
    let enqueued_ms = get_u64(&mut b)?;
    let encoding = match get_u8(&mut b)? {
        0 => Encoding::Protobuf,
        1 => Encoding::Json,
        _ => return Err(DecodeError::Malformed),
    };
    let gzip = get_u8(&mut b)? != 0;
    let signal = if version == FORMAT_VERSION_1 {
        None
    } else {
        match get_u8(&mut b)? {
            0 => Some(Signal::Traces),
            1 => Some(Signal::Metrics),
            2 => Some(Signal::Logs),
            UNKNOWN_SIGNAL => None,
            _ => return Err(DecodeError::Malformed),
        }
    };
    let spans = get_u32(&mut b)? as usize;
    let endpoint = get_str(&mut b)?;
    let provider = get_opt(&mut b)?;
    let subject = get_opt(&mut b)?;
    let credential = get_str(&mut b)?;
    let request_id = get_str(&mut b)?;
    let user_agent = get_opt(&mut b)?.and_then(|s| HeaderValue::from_str(&s).ok());
    let body_len = get_u32(&mut b)? as usize;
    if b.len() != body_len {
        return Err(DecodeError::Malformed);
    }
    let body = Bytes::copy_from_slice(b);
    Ok((
        seq,
        Spooled {
            body,
            encoding,
            gzip,
            signal,
            user_agent,
            credential,
            request_id,
            endpoint,
            provider,
            subject,
            spans,
            enqueued_ms,
        },
    ))
}

fn put_str(p: &mut Vec<u8>, s: &str) {
    // Strings here are names and ids (short); clip rather than fail.
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    let bytes = match std::str::from_utf8(bytes) {
        Ok(_) => bytes,
        Err(e) => &bytes[..e.valid_up_to()],
    };
    p.put_u16_le(bytes.len() as u16);
    p.extend_from_slice(bytes);
}

fn put_opt(p: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => p.put_u8(0),
        Some(s) => {
            p.put_u8(1);
            put_str(p, s);
        }
    }
}

fn get_u8(b: &mut &[u8]) -> Result<u8, DecodeError> {
    if b.remaining() < 1 {
        return Err(DecodeError::Malformed);
    }
    Ok(b.get_u8())
}

fn get_u32(b: &mut &[u8]) -> Result<u32, DecodeError> {
    if b.remaining() < 4 {
        return Err(DecodeError::Malformed);
    }
    Ok(b.get_u32_le())
}

fn get_u64(b: &mut &[u8]) -> Result<u64, DecodeError> {
    if b.remaining() < 8 {
        return Err(DecodeError::Malformed);
    }
    Ok(b.get_u64_le())
}

fn get_str(b: &mut &[u8]) -> Result<String, DecodeError> {
    if b.remaining() < 2 {
        return Err(DecodeError::Malformed);
    }
    let n = b.get_u16_le() as usize;
    if b.remaining() < n {
        return Err(DecodeError::Malformed);
    }
    let s = std::str::from_utf8(&b[..n]).map_err(|_| DecodeError::Malformed)?;
    let s = s.to_string();
    b.advance(n);
    Ok(s)
}

fn get_opt(b: &mut &[u8]) -> Result<Option<String>, DecodeError> {
    match get_u8(b)? {
        0 => Ok(None),
        1 => get_str(b).map(Some),
        _ => Err(DecodeError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(body: &[u8]) -> Spooled {
        Spooled {
            body: Bytes::copy_from_slice(body),
            encoding: Encoding::Json,
            gzip: true,
            signal: Some(Signal::Metrics),
            user_agent: Some(HeaderValue::from_static("otel-js/1.0")),
            credential: "lightstep-prod".into(),
            request_id: "req-1".into(),
            endpoint: "traces".into(),
            provider: Some("vercel".into()),
            subject: None,
            spans: 7,
            enqueued_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_record_round_trips() {
        let item = sample(b"{\"resourceSpans\":[]}");
        let frame = encode(42, &item);
        let (len, crc) = frame_len(&frame).unwrap();
        assert_eq!(len + FRAME_HEADER, frame.len());
        let (seq, back) = decode(&frame[FRAME_HEADER..], crc).unwrap();
        assert_eq!(seq, 42);
        assert_eq!(back.body, item.body);
        assert_eq!(back.credential, "lightstep-prod");
        assert_eq!(back.provider.as_deref(), Some("vercel"));
        assert_eq!(back.subject, None);
        assert_eq!(back.user_agent, item.user_agent);
        assert_eq!(back.spans, 7);
        assert!(back.gzip);
        assert_eq!(back.enqueued_ms, item.enqueued_ms);
        assert_eq!(back.signal, Some(Signal::Metrics));
        let unknown = Spooled {
            signal: None,
            ..item
        };
        let frame = encode(43, &unknown);
        let (_, crc) = frame_len(&frame).unwrap();
        assert_eq!(decode(&frame[FRAME_HEADER..], crc).unwrap().1.signal, None);
    }

    /// A version 1 payload as earlier builds wrote it: this build's
    /// encoding without the signal byte.
    fn v1_payload(seq: u64, item: &Spooled) -> Vec<u8> {
        let frame = encode(seq, item);
        let mut p = frame[FRAME_HEADER..].to_vec();
        // version(1) seq(8) enqueued_ms(8) encoding(1) gzip(1) | signal
        p.remove(19);
        p[0] = FORMAT_VERSION_1;
        p
    }

    #[test]
    fn a_version_1_record_decodes_without_a_signal() {
        let item = sample(b"{\"resourceMetrics\":[]}");
        let p = v1_payload(9, &item);
        let (seq, back) = decode(&p, crc32fast::hash(&p)).unwrap();
        assert_eq!(seq, 9);
        assert_eq!(back.signal, None, "looked up by endpoint at delivery");
        assert_eq!(back.body, item.body);
        assert_eq!(back.endpoint, "traces");
        assert_eq!(back.request_id, "req-1");
        assert_eq!(back.spans, 7);
        // Its framing and sequence stamping are those of version 2.
        let mut frame = Vec::new();
        frame.put_u32_le(p.len() as u32);
        frame.put_u32_le(crc32fast::hash(&p));
        frame.extend_from_slice(&p);
        crate::spool::log::stamp_seq(&mut frame, 77);
        let (_, crc) = frame_len(&frame).unwrap();
        assert_eq!(decode(&frame[FRAME_HEADER..], crc).unwrap().0, 77);
    }

    #[test]
    fn a_flipped_bit_or_unknown_version_is_refused() {
        let frame = encode(1, &sample(b"abc"));
        let (_, crc) = frame_len(&frame).unwrap();
        let mut bad = frame.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            decode(&bad[FRAME_HEADER..], crc).unwrap_err(),
            DecodeError::Checksum
        );
        let mut v3 = frame[FRAME_HEADER..].to_vec();
        v3[0] = 3;
        let crc3 = crc32fast::hash(&v3);
        assert_eq!(decode(&v3, crc3).unwrap_err(), DecodeError::Version(3));
        // A signal byte out of range is malformed.
        let mut bad_signal = frame[FRAME_HEADER..].to_vec();
        bad_signal[19] = 7;
        let crc = crc32fast::hash(&bad_signal);
        assert_eq!(
            decode(&bad_signal, crc).unwrap_err(),
            DecodeError::Malformed
        );
        // Every truncation of a payload is refused, never a panic (either version).
        let p = &frame[FRAME_HEADER..];
        for n in 0..p.len() {
            assert!(decode(&p[..n], crc32fast::hash(&p[..n])).is_err(), "{n}");
        }
        let p = v1_payload(1, &sample(b"abc"));
        for n in 0..p.len() {
            assert!(decode(&p[..n], crc32fast::hash(&p[..n])).is_err(), "{n}");
        }
    }
}
