//! Reading a secret value out of JSON without leaving copies behind.
//!
//! `serde_json` hands a string with escapes to a visitor from its internal
//! scratch buffer, which is freed without being wiped. So [`Secret`]'s
//! `Deserialize` takes the value as a borrowed [`RawValue`] — a slice of the
//! caller's (zeroizing) input buffer, quotes and escapes included — and
//! [`unescape`] decodes it straight into a zeroizing buffer that is sized
//! once and never grows (a JSON string never gets longer when unescaped).
//!
//! [`Secret`]: super::Secret
//! [`RawValue`]: serde_json::value::RawValue

use zeroize::{Zeroize, Zeroizing};

/// Why a raw JSON value is not a usable string (no part of the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnescapeError {
    /// Not a JSON string (a number, object, ...).
    #[error("the value must be a JSON string")]
    NotAString,
    /// A bad escape sequence, a lone surrogate or a raw control character.
    #[error("the value has an invalid escape sequence")]
    BadEscape,
    /// The decoded bytes are not UTF-8.
    #[error("the value is not valid UTF-8")]
    NotUtf8,
}

/// Decode the JSON string literal `raw` (with its quotes) into a zeroizing
/// `String`. The output buffer is allocated once with the literal's length
/// and never reallocated, so no partial copy is left in freed memory.
pub fn unescape(raw: &str) -> Result<Zeroizing<String>, UnescapeError> {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or(UnescapeError::NotAString)?;
    let src = inner.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(src.len()));
    let capacity = out.capacity();
    let mut i = 0;
    while let Some(&b) = src.get(i) {
        i += 1;
        match b {
            b'\\' => {
                let esc = *src.get(i).ok_or(UnescapeError::BadEscape)?;
                i += 1;
                let byte = match esc {
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'/' => b'/',
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'u' => {
                        let c = unicode_escape(src, &mut i)?;
                        let mut tmp = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                        tmp.zeroize();
                        continue;
                    }
                    _ => return Err(UnescapeError::BadEscape),
                };
                out.push(byte);
            }
            0x00..=0x1f => return Err(UnescapeError::BadEscape),
            _ => out.push(b),
        }
    }
    debug_assert_eq!(out.capacity(), capacity, "unescape must not reallocate");
    match String::from_utf8(std::mem::take(&mut *out)) {
        Ok(s) => Ok(Zeroizing::new(s)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err(UnescapeError::NotUtf8)
        }
    }
}

/// Serialize `value` as JSON (pretty or compact) into a zeroizing buffer of
/// exactly the right size plus `spare` bytes: a first pass only counts the
/// bytes, so the buffer never grows (a growing `Vec` leaves a copy of what it
/// held in the memory it frees). For documents that contain secret values.
pub fn to_zeroizing_json<T: serde::Serialize + ?Sized>(
    value: &T,
    pretty: bool,
    spare: usize,
) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    fn write<W: std::io::Write, T: serde::Serialize + ?Sized>(
        w: W,
        value: &T,
        pretty: bool,
    ) -> Result<(), serde_json::Error> {
        if pretty {
            serde_json::to_writer_pretty(w, value)
        } else {
            serde_json::to_writer(w, value)
        }
    }
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    write(&mut count, value, pretty)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(count.0.saturating_add(spare)));
    let capacity = buf.capacity();
    write(&mut *buf, value, pretty)?;
    debug_assert_eq!(buf.capacity(), capacity, "the buffer must not grow");
    Ok(buf)
}

/// Decode `XXXX` (after `\u`) at `src[*i..]`, with a following `\uYYYY` low
/// surrogate when `XXXX` is a high one.
fn unicode_escape(src: &[u8], i: &mut usize) -> Result<char, UnescapeError> {
    let hi = hex4(src, i)?;
    let code = match hi {
        0xD800..=0xDBFF => {
            if src.get(*i) != Some(&b'\\') || src.get(*i + 1) != Some(&b'u') {
                return Err(UnescapeError::BadEscape);
            }
            *i += 2;
            let lo = hex4(src, i)?;
            if !(0xDC00..=0xDFFF).contains(&lo) {
                return Err(UnescapeError::BadEscape);
            }
            0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00)
        }
        0xDC00..=0xDFFF => return Err(UnescapeError::BadEscape),
        _ => u32::from(hi),
    };
    char::from_u32(code).ok_or(UnescapeError::BadEscape)
}

fn hex4(src: &[u8], i: &mut usize) -> Result<u16, UnescapeError> {
    let digits = src.get(*i..*i + 4).ok_or(UnescapeError::BadEscape)?;
    let mut v: u16 = 0;
    for &d in digits {
        let n = (d as char).to_digit(16).ok_or(UnescapeError::BadEscape)?;
        v = (v << 4) | n as u16;
    }
    *i += 4;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_serde_json() {
        let cases = [
            r#""plain-token_123""#,
            r#""""#,
            r#""quote \" backslash \\ slash \/ tab \t""#,
            r#""ctl \b\f\n\r""#,
            r#""\u0041\u00e9\u20ac""#,
            r#""pair \ud83d\ude00 end""#,
            r#""raw é € 😀""#,
            r#""\u0000""#,
        ];
        for raw in cases {
            let want: String = serde_json::from_str(raw).expect("serde_json parses");
            let got = unescape(raw).expect("unescape");
            assert_eq!(got.as_str(), want, "{raw}");
        }
    }

    #[test]
    fn zeroizing_json_is_exact_and_never_grows() {
        let v = serde_json::json!({"value": "q\"\\\u{1}x", "n": [1, 2, 3]});
        for pretty in [false, true] {
            let buf = to_zeroizing_json(&v, pretty, 1).expect("encode");
            assert_eq!(buf.capacity(), buf.len() + 1, "sized exactly, one spare");
            let back: serde_json::Value = serde_json::from_slice(&buf).expect("json");
            assert_eq!(back, v);
        }
    }

    #[test]
    fn refuses_what_is_not_a_clean_string() {
        for (raw, want) in [
            ("123", UnescapeError::NotAString),
            ("{\"a\":1}", UnescapeError::NotAString),
            (r#""\x41""#, UnescapeError::BadEscape),
            (r#""\u12""#, UnescapeError::BadEscape),
            (r#""\ud83d""#, UnescapeError::BadEscape),
            (r#""\ud83d\u0041""#, UnescapeError::BadEscape),
            (r#""\ude00""#, UnescapeError::BadEscape),
            ("\"a\u{1}b\"", UnescapeError::BadEscape),
            (r#""trailing\""#, UnescapeError::BadEscape),
        ] {
            assert_eq!(unescape(raw).err(), Some(want), "{raw}");
        }
    }
}
