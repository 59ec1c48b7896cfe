//! Templates and patterns over verified claims.
//!
//! One small syntax serves claim matchers, service patterns, attribute-key
//! patterns and stamp templates:
//! - `*` any run of characters, `?` exactly one character (patterns only);
//! - `${claims.<path>}` the verified claim at `<path>` (see [`super::claims`];
//!   service patterns and stamp templates only);
//! - `\*`, `\?`, `\$`, `\\` a literal `*`, `?`, `$`, `\`; any other `\` is an error.
//!
//! A claim value spliced into a pattern is always literal: a claim containing
//! `*` or `?` can never widen a pattern (no glob injection). A template whose
//! claim is missing renders to nothing, so the pattern matches nothing and a
//! stamp fails closed.

use serde_json::{Map, Value};

use super::claims::ClaimPath;
use super::matcher::{Glob, Tok};

/// One lexed piece of a pattern or template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Char(char),
    Star,
    One,
    Claim(ClaimPath),
}

/// What a lexer accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Syntax {
    /// `*` and `?` are wildcards (otherwise literal).
    pub wildcards: bool,
    /// `${claims.<path>}` is allowed.
    pub templates: bool,
}

/// Lex `text` under `syntax`.
pub(crate) fn lex(text: &str, syntax: Syntax) -> Result<Vec<Piece>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('\\' | '*' | '?' | '$'))) => out.push(Piece::Char(e)),
                Some((_, e)) => {
                    return Err(format!(
                        "bad escape `\\{e}` (only \\\\, \\*, \\? and \\$ are escapes)"
                    ));
                }
                None => return Err("pattern ends with a lone `\\`".into()),
            },
            '$' if matches!(chars.peek(), Some((_, '{'))) => {
                if !syntax.templates {
                    return Err("templates (`${...}`) are not allowed here".into());
                }
                let inner = &text[i + 2..];
                if !inner.starts_with("claims") {
                    return Err(
                        "a template may only read a verified claim: `${claims.<path>}`".into(),
                    );
                }
                let (path, rest) = ClaimPath::parse_reference(inner).map_err(|e| e.to_string())?;
                let Some(after) = rest.strip_prefix('}') else {
                    return Err("unterminated template: expected `}` after the claim path".into());
                };
                out.push(Piece::Claim(path));
                // Skip the consumed template text.
                let consumed = text.len() - after.len();
                while matches!(chars.peek(), Some((j, _)) if *j < consumed) {
                    chars.next();
                }
            }
            '*' if syntax.wildcards => out.push(Piece::Star),
            '?' if syntax.wildcards => out.push(Piece::One),
            other => out.push(Piece::Char(other)),
        }
    }
    Ok(out)
}

/// A stamp template: literal text and claim references, rendered to a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl Template {
    /// Parse a template (`*`/`?` are literal here).
    pub fn parse(text: &str) -> Result<Template, String> {
        let pieces = lex(
            text,
            Syntax {
                wildcards: false,
                templates: true,
            },
        )?;
        Ok(Template {
            source: text.to_string(),
            pieces,
        })
    }

    /// Render from verified claims; `None` if a referenced claim is missing
    /// or is not a single scalar.
    pub fn render(&self, claims: &Map<String, Value>) -> Option<String> {
        let mut out = String::with_capacity(self.source.len());
        for p in &self.pieces {
            match p {
                Piece::Char(c) => out.push(*c),
                Piece::Claim(path) => out.push_str(&path.single(claims)?),
                // Never produced with wildcards off.
                Piece::Star => out.push('*'),
                Piece::One => out.push('?'),
            }
        }
        Some(out)
    }

    /// Claim paths the template reads.
    pub fn claims(&self) -> impl Iterator<Item = &ClaimPath> {
        claim_refs(&self.pieces)
    }

    /// The first claim whose value is missing, for explanations.
    pub fn missing_claim(&self, claims: &Map<String, Value>) -> Option<&ClaimPath> {
        self.claims().find(|p| p.single(claims).is_none())
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// A glob pattern that may contain claim templates (`${claims.project}-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    pieces: Vec<Piece>,
}

impl Pattern {
    /// Parse a pattern with wildcards and templates.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let pieces = lex(
            text,
            Syntax {
                wildcards: true,
                templates: true,
            },
        )?;
        Ok(Pattern {
            source: text.to_string(),
            pieces,
        })
    }

    /// Render the claims in; claim text is literal in the resulting glob.
    /// `None` (match nothing) if a claim is missing or not a single scalar.
    pub fn render(&self, claims: &Map<String, Value>) -> Option<Glob> {
        let mut toks = Vec::with_capacity(self.source.len());
        for p in &self.pieces {
            match p {
                Piece::Char(c) => toks.push(Tok::Lit(*c)),
                Piece::Star => toks.push(Tok::Star),
                Piece::One => toks.push(Tok::One),
                Piece::Claim(path) => toks.extend(path.single(claims)?.chars().map(Tok::Lit)),
            }
        }
        Some(Glob::from_toks(self.source.clone(), toks))
    }

    /// Whether the pattern reads any claim.
    pub fn has_template(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Claim(_)))
    }

    /// Whether the pattern has a `*` or `?` wildcard.
    pub fn has_wildcard(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Star | Piece::One))
    }

    /// Claim paths the pattern reads.
    pub fn claims(&self) -> impl Iterator<Item = &ClaimPath> {
        claim_refs(&self.pieces)
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

fn claim_refs(pieces: &[Piece]) -> impl Iterator<Item = &ClaimPath> {
    pieces.iter().filter_map(|p| match p {
        Piece::Claim(c) => Some(c),
        _ => None,
    })
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
    fn template_renders_claims() {
        let c = claims(json!({"project": "checkout", "n": 3, "https://x/": {"org": "o1"}}));
        let t = Template::parse("${claims.project}/${claims.n}/${claims[\"https://x/\"].org}*?")
            .unwrap();
        assert_eq!(t.render(&c).as_deref(), Some("checkout/3/o1*?"));
        let t = Template::parse("${claims.missing}").unwrap();
        assert_eq!(t.render(&c), None);
        assert_eq!(
            t.missing_claim(&c).map(|p| p.to_string()).as_deref(),
            Some("missing")
        );
        let t = Template::parse(r"cost \$5 and $ alone").unwrap();
        assert_eq!(t.render(&c).as_deref(), Some("cost $5 and $ alone"));
    }

    #[test]
    fn bad_templates_are_errors() {
        for bad in [
            "${project}",
            "${claims.project",
            "${claims.}",
            "${claims.a b}",
            "${env.HOME}",
            r"\n",
            "tail\\",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pattern_claims_are_literal() {
        let p = Pattern::parse("${claims.project}-*").unwrap();
        assert!(p.has_template() && p.has_wildcard());
        let ok = claims(json!({"project": "checkout"}));
        let g = p.render(&ok).unwrap();
        assert!(g.matches("checkout-api"));
        assert!(g.matches("checkout-"));
        assert!(!g.matches("checkout"));
        assert!(!g.matches("billing-api"));
        // Glob injection: the claim's `*` is a literal star.
        let evil = claims(json!({"project": "*"}));
        let g = p.render(&evil).unwrap();
        assert!(!g.matches("billing-api"));
        assert!(g.matches("*-api"));
        let evil = claims(json!({"project": "che?kout"}));
        let g = Pattern::parse("${claims.project}")
            .unwrap()
            .render(&evil)
            .unwrap();
        assert!(!g.matches("checkout"));
        assert!(g.matches("che?kout"));
        // Missing claim: the pattern matches nothing.
        assert!(p.render(&claims(json!({}))).is_none());
    }

    /// Every short string over an alphabet of syntax characters parses or
    /// fails cleanly (no panic), and what parses renders without panicking.
    #[test]
    fn lexers_never_panic() {
        let alphabet = [
            'a', '.', '[', ']', '"', '\\', '$', '{', '}', '*', '?', 'é', 'c',
        ];
        let mut inputs = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for s in &frontier {
                for c in alphabet {
                    next.push(format!("{s}{c}"));
                }
            }
            inputs.extend(next.iter().cloned());
            frontier = next;
        }
        inputs.push("${claims.a}".into());
        inputs.push("${claims[\"é.x\"].y}-*".into());
        let c = claims(json!({"a": "v", "é.x": {"y": 1}}));
        for s in &inputs {
            for t in [
                format!("${{claims.{s}}}"),
                format!("${{claims{s}"),
                s.clone(),
            ] {
                if let Ok(p) = Pattern::parse(&t) {
                    let _ = p.render(&c).map(|g| g.matches("v-x"));
                }
                if let Ok(tp) = Template::parse(&t) {
                    let _ = tp.render(&c);
                }
                let _ = Glob::parse(&t).map(|g| g.matches("aé"));
                let _ = ClaimPath::parse(&t);
                let _ = ClaimPath::parse_whole_reference(&t);
            }
        }
        assert!(inputs.len() > 30_000);
    }

    #[test]
    fn escaped_wildcards_are_literal() {
        let g = Pattern::parse(r"a\*b")
            .unwrap()
            .render(&Map::new())
            .unwrap();
        assert!(g.matches("a*b"));
        assert!(!g.matches("axb"));
    }
}
