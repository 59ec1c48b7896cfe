//! Claim paths: how a policy names a value inside a token's verified claims.
//!
//! Syntax: segments separated by `.`; a segment is either a bare name
//! (`project_id`, `realm_access`) or a bracket-quoted string with JSON-style
//! escapes for keys that contain dots, slashes or anything else
//! (`["https://sts.amazonaws.com/"].org_id`, `ext["a.b"]`).
//!
//! Lookup walks objects by key; when it meets an array on the way it walks into
//! every object element (so `orgs.id` finds the `id` of every org). The leaf
//! values a matcher sees are the scalar itself, or every scalar element of an
//! array. Strings are compared as they are; numbers and booleans by their JSON
//! text (`42`, `true`); `null` and objects never match. The claims `scope` and
//! `scp`, when they are a string, also yield each space-separated scope.

use std::fmt;

use serde_json::{Map, Value};

/// A parsed claim path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimPath {
    segments: Vec<String>,
}

/// Why a claim path did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad claim path `{path}`: {why}")]
pub struct ClaimPathError {
    path: String,
    why: &'static str,
}

/// Characters a bare segment may not contain.
fn is_bare(c: char) -> bool {
    !(c == '.'
        || c == '['
        || c == ']'
        || c == '"'
        || c == '{'
        || c == '}'
        || c == '$'
        || c.is_whitespace())
}

impl ClaimPath {
    /// Parse a whole string as a claim path.
    pub fn parse(text: &str) -> Result<ClaimPath, ClaimPathError> {
        let (path, rest) = ClaimPath::parse_prefix(text)?;
        if rest.is_empty() {
            Ok(path)
        } else {
            Err(ClaimPathError {
                path: text.to_string(),
                why: "unexpected character after a segment (quote keys with [\"...\"])",
            })
        }
    }

    /// Parse the longest claim path at the start of `text`, returning it and the
    /// unparsed rest (used by templates, where `}` ends the path).
    pub fn parse_prefix(text: &str) -> Result<(ClaimPath, &str), ClaimPathError> {
        let err = |why| ClaimPathError {
            path: text.to_string(),
            why,
        };
        let mut segments = Vec::new();
        let mut rest = text;
        loop {
            if let Some(after) = rest.strip_prefix('[') {
                let (key, after) = parse_quoted(after)
                    .ok_or_else(|| err("unterminated or malformed [\"...\"] segment"))?;
                let after = after
                    .strip_prefix(']')
                    .ok_or_else(|| err("expected `]` after a quoted segment"))?;
                segments.push(key);
                rest = after;
            } else {
                let end = rest.find(|c: char| !is_bare(c)).unwrap_or(rest.len());
                if end == 0 {
                    return Err(err("empty segment"));
                }
                segments.push(rest[..end].to_string());
                rest = &rest[end..];
            }
            // After a segment: `.name`, `[...]`, or the end of the path.
            if let Some(after) = rest.strip_prefix('.') {
                if after.starts_with('[') {
                    return Err(err("write a[\"b\"], not a.[\"b\"]"));
                }
                rest = after;
            } else if rest.starts_with('[') {
                continue;
            } else {
                return Ok((ClaimPath { segments }, rest));
            }
        }
    }

    /// Parse a claim reference written outside a `claims:` map:
    /// `claims.<path>` or `claims["key"]...`, returning the path and the rest.
    pub fn parse_reference(text: &str) -> Result<(ClaimPath, &str), ClaimPathError> {
        let rest = text.strip_prefix("claims").ok_or_else(|| ClaimPathError {
            path: text.to_string(),
            why: "a claim reference starts with `claims.`",
        })?;
        let rest = match rest.strip_prefix('.') {
            Some(r) if !r.starts_with('[') => r,
            _ if rest.starts_with('[') => rest,
            _ => {
                return Err(ClaimPathError {
                    path: text.to_string(),
                    why: "a claim reference is `claims.<path>` or `claims[\"key\"]`",
                });
            }
        };
        ClaimPath::parse_prefix(rest)
    }

    /// Parse a whole string as a claim reference (`claims.<path>`).
    pub fn parse_whole_reference(text: &str) -> Result<ClaimPath, ClaimPathError> {
        match ClaimPath::parse_reference(text)? {
            (path, "") => Ok(path),
            _ => Err(ClaimPathError {
                path: text.to_string(),
                why: "unexpected character after a segment (quote keys with [\"...\"])",
            }),
        }
    }

    /// The path's segments (keys).
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The top-level claim name (first segment).
    pub fn root(&self) -> &str {
        self.segments.first().map(String::as_str).unwrap_or("")
    }

    /// Whether any leaf value this path reaches satisfies `f` (no allocation
    /// except for rendering numbers).
    pub fn any_value(&self, claims: &Map<String, Value>, mut f: impl FnMut(&str) -> bool) -> bool {
        let split_scopes = matches!(
            self.segments.last().map(String::as_str),
            Some("scope" | "scp")
        );
        let Some((first, rest)) = self.segments.split_first() else {
            return false;
        };
        let Some(root) = claims.get(first.as_str()) else {
            return false;
        };
        let mut leaf = |v: &Value| -> bool {
            match v {
                Value::Array(items) => items.iter().any(|item| scalar_test(item, &mut f)),
                Value::String(s) if split_scopes => {
                    f(s) || (s.contains(char::is_whitespace) && s.split_whitespace().any(&mut f))
                }
                other => scalar_test(other, &mut f),
            }
        };
        walk(root, rest, &mut leaf)
    }

    /// Every leaf value this path reaches, as comparable strings.
    pub fn values(&self, claims: &Map<String, Value>) -> Vec<String> {
        let mut out = Vec::new();
        let split_scopes = matches!(
            self.segments.last().map(String::as_str),
            Some("scope" | "scp")
        );
        for v in self.lookup(claims) {
            match v {
                Value::Array(items) => {
                    for item in items {
                        if let Some(s) = scalar_string(item) {
                            out.push(s);
                        }
                    }
                }
                Value::String(s) if split_scopes => {
                    out.push(s.clone());
                    let parts: Vec<&str> = s.split_whitespace().collect();
                    if parts.len() > 1 {
                        out.extend(parts.into_iter().map(str::to_string));
                    }
                }
                other => {
                    if let Some(s) = scalar_string(other) {
                        out.push(s);
                    }
                }
            }
        }
        out
    }

    /// The single scalar this path names, for templates. `None` when the claim
    /// is missing, `null`, an object, an array, or reached more than once.
    pub fn single(&self, claims: &Map<String, Value>) -> Option<String> {
        let found = self.lookup(claims);
        match found.as_slice() {
            [one] => scalar_string(one),
            _ => None,
        }
    }

    /// Raw values reached by the path.
    fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Vec<&'a Value> {
        let mut segs = self.segments.iter();
        let Some(first) = segs.next() else {
            return Vec::new();
        };
        let mut current: Vec<&'a Value> = claims.get(first.as_str()).into_iter().collect();
        for seg in segs {
            let mut next = Vec::new();
            for v in current {
                match v {
                    Value::Object(m) => next.extend(m.get(seg.as_str())),
                    Value::Array(items) => {
                        for item in items {
                            if let Value::Object(m) = item {
                                next.extend(m.get(seg.as_str()));
                            }
                        }
                    }
                    _ => {}
                }
            }
            current = next;
        }
        current
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.segments.iter().enumerate() {
            if !seg.is_empty() && seg.chars().all(is_bare) {
                if i > 0 {
                    f.write_str(".")?;
                }
                f.write_str(seg)?;
            } else {
                // serde_json renders a string with the escapes parse_quoted reads.
                write!(f, "[{}]", Value::String(seg.clone()))?;
            }
        }
        Ok(())
    }
}

/// Walk `segs` from `v` (into every object element of arrays met on the
/// way), calling `leaf` on each value reached until one returns true.
fn walk(v: &Value, segs: &[String], leaf: &mut dyn FnMut(&Value) -> bool) -> bool {
    let Some((seg, rest)) = segs.split_first() else {
        return leaf(v);
    };
    match v {
        Value::Object(m) => m
            .get(seg.as_str())
            .is_some_and(|next| walk(next, rest, leaf)),
        Value::Array(items) => items.iter().any(|item| match item {
            Value::Object(m) => m
                .get(seg.as_str())
                .is_some_and(|next| walk(next, rest, leaf)),
            _ => false,
        }),
        _ => false,
    }
}

/// Test a scalar by its comparable string form.
fn scalar_test(v: &Value, f: &mut impl FnMut(&str) -> bool) -> bool {
    match v {
        Value::String(s) => f(s),
        Value::Number(n) => f(&n.to_string()),
        Value::Bool(b) => f(if *b { "true" } else { "false" }),
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// A scalar claim as a comparable string: strings as-is, numbers and booleans
/// by their JSON text; `null`, arrays and objects give `None`.
pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Parse `"..."` at the start of `text` (JSON string escapes); returns the
/// unescaped key and the rest after the closing quote.
fn parse_quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            let literal = &text[..i + 2];
            let key: String = serde_json::from_str(literal).ok()?;
            return Some((key, &body[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn parses_bare_and_quoted_segments() {
        let p = ClaimPath::parse("a.b_c.d-e").unwrap();
        assert_eq!(p.segments(), ["a", "b_c", "d-e"]);
        let p = ClaimPath::parse(r#"["https://sts.amazonaws.com/"].org_id"#).unwrap();
        assert_eq!(p.segments(), ["https://sts.amazonaws.com/", "org_id"]);
        let p = ClaimPath::parse(r#"ext["a.b"]["q\"uote"].c"#).unwrap();
        assert_eq!(p.segments(), ["ext", "a.b", "q\"uote", "c"]);
    }

    #[test]
    fn rejects_malformed_paths() {
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a[b]",
            r#"a["b"#,
            r#"a.["b"]"#,
            "a b",
            r#"["b"]x"#,
            "a}",
        ] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn references() {
        let p = ClaimPath::parse_whole_reference("claims.a.b").unwrap();
        assert_eq!(p.segments(), ["a", "b"]);
        let p = ClaimPath::parse_whole_reference(r#"claims["https://x/"].org"#).unwrap();
        assert_eq!(p.segments(), ["https://x/", "org"]);
        for bad in [
            "a.b",
            "claims",
            "claims.",
            "claims.[\"a\"]",
            "claimsx",
            "claims.a }",
        ] {
            assert!(ClaimPath::parse_whole_reference(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "a.b",
            r#"["https://sts.amazonaws.com/"].org_id"#,
            r#"x["a.b"].y"#,
        ] {
            let p = ClaimPath::parse(text).unwrap();
            assert_eq!(p.to_string(), text);
            assert_eq!(ClaimPath::parse(&p.to_string()).unwrap(), p);
        }
    }

    #[test]
    fn prefix_stops_at_template_end() {
        let (p, rest) = ClaimPath::parse_prefix(r#"["a}b"].c}-tail"#).unwrap();
        assert_eq!(p.segments(), ["a}b", "c"]);
        assert_eq!(rest, "}-tail");
    }

    #[test]
    fn lookup_values() {
        let c = claims(json!({
            "sub": "u1",
            "groups": ["a", "b", 7],
            "n": 42, "t": true, "z": null, "o": {"k": "v"},
            "https://sts.amazonaws.com/": {"org_id": "o-1"},
            "orgs": [{"id": "x"}, {"id": "y"}, "junk"],
            "scope": "read write",
            "scp": ["one two"],
        }));
        let vals = |p: &str| ClaimPath::parse(p).unwrap().values(&c);
        assert_eq!(vals("sub"), ["u1"]);
        assert_eq!(vals("groups"), ["a", "b", "7"]);
        assert_eq!(vals("n"), ["42"]);
        assert_eq!(vals("t"), ["true"]);
        assert!(vals("z").is_empty());
        assert!(vals("o").is_empty());
        assert_eq!(vals("o.k"), ["v"]);
        assert_eq!(vals(r#"["https://sts.amazonaws.com/"].org_id"#), ["o-1"]);
        assert_eq!(vals("orgs.id"), ["x", "y"]);
        assert_eq!(vals("scope"), ["read write", "read", "write"]);
        // An array scp is used element by element (no further splitting).
        assert_eq!(vals("scp"), ["one two"]);
        assert!(vals("missing.deep").is_empty());
    }

    #[test]
    fn any_value_agrees_with_values() {
        let c = claims(json!({
            "sub": "u1", "groups": ["a", "b", 7, null, {"x": 1}], "n": 42, "t": false,
            "orgs": [{"id": "x", "scope": "p q"}, {"id": "y"}, "junk"], "scope": "read write",
            "o": {"scp": "s1 s2", "deep": {"k": [true]}},
        }));
        for path in [
            "sub",
            "groups",
            "n",
            "t",
            "orgs.id",
            "orgs.scope",
            "scope",
            "o.scp",
            "o.deep.k",
            "nope",
            "o",
            "sub.x",
        ] {
            let p = ClaimPath::parse(path).unwrap();
            let values = p.values(&c);
            for candidate in [
                "u1",
                "a",
                "b",
                "7",
                "42",
                "false",
                "x",
                "y",
                "p",
                "q",
                "p q",
                "read",
                "write",
                "read write",
                "s1",
                "s2",
                "true",
                "null",
                "zzz",
            ] {
                assert_eq!(
                    p.any_value(&c, |v| v == candidate),
                    values.iter().any(|v| v == candidate),
                    "path {path} candidate {candidate}"
                );
            }
        }
    }

    #[test]
    fn single_requires_exactly_one_scalar() {
        let c = claims(
            json!({"a": "x", "n": 1.5, "arr": ["x"], "o": {}, "orgs": [{"id": 1}, {"id": 2}]}),
        );
        let single = |p: &str| ClaimPath::parse(p).unwrap().single(&c);
        assert_eq!(single("a").as_deref(), Some("x"));
        assert_eq!(single("n").as_deref(), Some("1.5"));
        assert_eq!(single("arr"), None);
        assert_eq!(single("o"), None);
        assert_eq!(single("orgs.id"), None);
        assert_eq!(single("nope"), None);
    }
}
