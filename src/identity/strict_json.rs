//! JSON for JOSE headers and JWT claims, parsed strictly: an object with a
//! duplicate member name anywhere is refused.
//!
//! RFC 7515 §4 and RFC 7519 §4 allow a parser to either reject duplicates or
//! keep the lexically last one. Parsers disagree (some keep the first), so a
//! header such as `{"alg":"none","alg":"ES256"}` can mean different things to
//! different components. Refusing removes the ambiguity. Nesting depth is
//! bounded by `serde_json`'s recursion limit (128).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A JSON value whose objects, at every depth, have unique member names.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        Number::from_f64(v)
            .map(|n| Strict(Value::Number(n)))
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom("duplicate member name"));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Strict(Value::Object(out)))
    }
}

/// Parse `bytes` as one JSON object with unique member names at every depth.
pub(crate) fn parse_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Strict(v) = Strict::deserialize(&mut de).ok()?;
    de.end().ok()?;
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_parse_like_serde_json() {
        let text = br#"{"a":1,"b":[true,null,"x",-2,1.5],"c":{"d":{}}, "e": 18446744073709551615}"#;
        let want: Value = serde_json::from_slice(text).expect("json");
        assert_eq!(parse_object(text).map(Value::Object), Some(want));
    }

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        assert!(parse_object(br#"{"alg":"ES256","alg":"none"}"#).is_none());
        assert!(parse_object(br#"{"alg":"none","alg":"ES256"}"#).is_none());
        assert!(parse_object(br#"{"a":{"x":1,"x":1}}"#).is_none());
        assert!(parse_object(br#"{"a":[{"x":1,"x":2}]}"#).is_none());
        // Escapes are decoded before comparing: "\u0061lg" is "alg".
        assert!(parse_object(br#"{"alg":"ES256","\u0061lg":"none"}"#).is_none());
        assert!(parse_object(br#"{"a":{"x":1},"b":{"x":1}}"#).is_some());
    }

    #[test]
    fn only_one_object_is_accepted() {
        for bad in [
            &b"[1]"[..],
            b"\"s\"",
            b"1",
            b"null",
            b"{} {}",
            b"{}x",
            b"\xef\xbb\xbf{}",
            b"{\"a\":\"\xff\"}",
            b"",
        ] {
            assert!(parse_object(bad).is_none(), "{bad:?}");
        }
        assert!(parse_object(b" {} \n").is_some());
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let deep = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        assert!(parse_object(deep.as_bytes()).is_none());
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_object(deep.as_bytes()).is_none());
    }
}
