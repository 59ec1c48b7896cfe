//! Globs and subject matchers.
//!
//! Globs use `*` (any run, possibly empty) and `?` (one character), compared
//! case-sensitively over Unicode characters — the semantics of the `wildmatch`
//! crate, which the tests use as an oracle. We keep our own token matcher
//! because templated patterns need literal segments: a claim value spliced into
//! a pattern must never act as a wildcard, and `wildmatch` has no escapes.

use std::fmt;

use serde_json::{Map, Value};

use super::claims::ClaimPath;
use super::template::{Piece, Syntax, lex};
use crate::identity::Principal;

/// One glob token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    /// A literal character.
    Lit(char),
    /// `*`: any run of characters.
    Star,
    /// `?`: exactly one character.
    One,
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    kind: GlobKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobKind {
    /// No wildcard: plain string equality.
    Exact(String),
    Wild(Vec<Tok>),
}

impl Glob {
    /// Parse a static glob (no templates): `*`, `?`, and `\` escapes.
    pub fn parse(text: &str) -> Result<Glob, String> {
        let pieces = lex(
            text,
            Syntax {
                wildcards: true,
                templates: false,
            },
        )?;
        let toks = pieces
            .into_iter()
            .map(|p| match p {
                Piece::Char(c) => Tok::Lit(c),
                Piece::Star => Tok::Star,
                // Templates are refused by the lexer; `?` is the only other piece.
                Piece::One | Piece::Claim(_) => Tok::One,
            })
            .collect();
        Ok(Glob::from_toks(text.to_string(), toks))
    }

    /// Build from tokens; `source` is what explanations print.
    pub fn from_toks(source: String, toks: Vec<Tok>) -> Glob {
        let kind = if toks.iter().all(|t| matches!(t, Tok::Lit(_))) {
            GlobKind::Exact(
                toks.iter()
                    .filter_map(|t| match t {
                        Tok::Lit(c) => Some(*c),
                        _ => None,
                    })
                    .collect(),
            )
        } else {
            GlobKind::Wild(toks)
        };
        Glob { source, kind }
    }

    /// Whether `input` matches.
    pub fn matches(&self, input: &str) -> bool {
        match &self.kind {
            GlobKind::Exact(s) => s == input,
            GlobKind::Wild(toks) => wild_match(toks, input),
        }
    }

    /// Whether this glob matches every non-empty string (`*`, `?*`, `**`).
    pub fn is_universal(&self) -> bool {
        match &self.kind {
            GlobKind::Exact(_) => false,
            GlobKind::Wild(toks) => {
                toks.iter().any(|t| matches!(t, Tok::Star))
                    && toks.iter().all(|t| !matches!(t, Tok::Lit(_)))
            }
        }
    }

    /// Whether the glob has a wildcard.
    pub fn is_wild(&self) -> bool {
        matches!(self.kind, GlobKind::Wild(_))
    }

    /// The glob as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The one string this glob matches, when it has no wildcard.
    pub fn literal(&self) -> Option<&str> {
        match &self.kind {
            GlobKind::Exact(s) => Some(s),
            GlobKind::Wild(_) => None,
        }
    }

    /// Whether every string `other` matches, this glob matches too, as far
    /// as can be told without a full language comparison: the same glob, a
    /// universal one, or `other` is a literal this glob matches. `false`
    /// means "not shown to be covered" (e.g. `a-*` against `a-b*`).
    pub fn covers(&self, other: &Glob) -> bool {
        if self.source == other.source
            || self.is_universal()
            || other.literal().is_some_and(|l| self.matches(l))
        {
            return true;
        }
        // `prefix*` covers anything whose every match starts with `prefix`.
        let GlobKind::Wild(toks) = &self.kind else {
            return false;
        };
        let Some((Tok::Star, lead)) = toks.split_last() else {
            return false;
        };
        let Some(prefix) = lead
            .iter()
            .map(|t| match t {
                Tok::Lit(c) => Some(*c),
                _ => None,
            })
            .collect::<Option<String>>()
        else {
            return false;
        };
        let other_lead: String = match &other.kind {
            GlobKind::Exact(s) => s.clone(),
            GlobKind::Wild(t) => t
                .iter()
                .map_while(|t| match t {
                    Tok::Lit(c) => Some(*c),
                    _ => None,
                })
                .collect(),
        };
        other_lead.starts_with(&prefix)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Iterative glob match with single-star backtracking: O(len(pattern) ×
/// len(input)) worst case, no recursion, no allocation.
fn wild_match(toks: &[Tok], input: &str) -> bool {
    let mut p = 0usize; // index into toks
    let mut t = 0usize; // byte offset into input
    // (token index after the last star, input offset it was tried at)
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        let ch = input.get(t..).and_then(|rest| rest.chars().next());
        let Some(c) = ch else { break };
        match toks.get(p) {
            Some(Tok::Lit(l)) if *l == c => {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            Some(Tok::One) => {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            Some(Tok::Star) => {
                p += 1;
                backtrack = Some((p, t));
                continue;
            }
            _ => {}
        }
        // Mismatch: let the last star eat one more character.
        let Some((bp, bt)) = backtrack else {
            return false;
        };
        let Some(skipped) = input.get(bt..).and_then(|rest| rest.chars().next()) else {
            return false;
        };
        let next = bt + skipped.len_utf8();
        backtrack = Some((bp, next));
        p = bp;
        t = next;
    }
    toks.get(p..)
        .is_some_and(|rest| rest.iter().all(|t| matches!(t, Tok::Star)))
}

/// A claim matcher: the claim at `path` must have a value matching any glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMatcher {
    /// Where to look.
    pub path: ClaimPath,
    /// Accepted values (any of them).
    pub any_of: Vec<Glob>,
}

impl ClaimMatcher {
    /// Whether the claims satisfy this matcher.
    pub fn matches(&self, claims: &Map<String, Value>) -> bool {
        self.path
            .any_value(claims, |v| self.any_of.iter().any(|g| g.matches(v)))
    }

    /// Whether this matcher accepts any value the claim could have.
    pub fn is_universal(&self) -> bool {
        self.any_of.iter().any(Glob::is_universal)
    }

    /// Why the claims do not satisfy this matcher (for explanations).
    pub fn explain_miss(&self, claims: &Map<String, Value>) -> String {
        let values = self.path.values(claims);
        let wanted = self.wanted();
        match values.as_slice() {
            [] => format!("claims.{}: missing, want {wanted}", self.path),
            [one] => format!("claims.{}: {} not in {wanted}", self.path, quoted(one)),
            many => {
                let mut shown: Vec<String> = many
                    .iter()
                    .take(EXPLAIN_MAX_VALUES)
                    .map(|v| quoted(v))
                    .collect();
                if many.len() > EXPLAIN_MAX_VALUES {
                    shown.push(format!("… {} more", many.len() - EXPLAIN_MAX_VALUES));
                }
                format!(
                    "claims.{}: none of [{}] in {wanted}",
                    self.path,
                    shown.join(", ")
                )
            }
        }
    }

    fn wanted(&self) -> String {
        format!(
            "[{}]",
            self.any_of
                .iter()
                .map(|g| g.source().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Most claim values one explanation line lists.
const EXPLAIN_MAX_VALUES: usize = 10;

/// Render a claim value for an explanation (JSON-quoted, so odd characters show).
fn quoted(v: &str) -> String {
    Value::String(v.to_string()).to_string()
}

/// A subject matcher: a provider and claim matchers that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectMatcher {
    /// Provider name (from the process config).
    pub provider: String,
    /// Every matcher must hold.
    pub claims: Vec<ClaimMatcher>,
}

/// Outcome of matching a subject against a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectMatch {
    /// Provider and every claim matcher hold.
    Yes,
    /// Provider differs or a claim matcher fails on claims the token carries.
    No,
    /// Everything else holds but a claim matcher reads a claim the IdP left
    /// out of the token (claims overage, `Principal::claims_overage`): the
    /// answer is unknown. Deny rules treat this as a match (fail closed),
    /// bindings as no match.
    Unknown,
}

impl SubjectMatch {
    /// Combine alternatives (any of several subjects): Yes beats Unknown beats No.
    pub fn or(self, other: SubjectMatch) -> SubjectMatch {
        match (self, other) {
            (SubjectMatch::Yes, _) | (_, SubjectMatch::Yes) => SubjectMatch::Yes,
            (SubjectMatch::Unknown, _) | (_, SubjectMatch::Unknown) => SubjectMatch::Unknown,
            (SubjectMatch::No, SubjectMatch::No) => SubjectMatch::No,
        }
    }
}

impl ClaimMatcher {
    /// Whether the claim this matcher reads is in the principal's overage list.
    fn overage(&self, p: &Principal) -> bool {
        p.claims_overage.iter().any(|c| c == self.path.root())
    }
}

impl SubjectMatcher {
    /// Whether the principal matches (`Unknown` counts as no).
    pub fn matches(&self, p: &Principal) -> bool {
        self.eval(p) == SubjectMatch::Yes
    }

    /// Match with the claims-overage case told apart.
    pub fn eval(&self, p: &Principal) -> SubjectMatch {
        if p.provider != self.provider {
            return SubjectMatch::No;
        }
        let mut result = SubjectMatch::Yes;
        for m in &self.claims {
            if m.matches(&p.claims) {
                continue;
            }
            if m.overage(p) {
                result = SubjectMatch::Unknown;
            } else {
                return SubjectMatch::No;
            }
        }
        result
    }

    /// Every reason the principal does not match (empty = it matches).
    pub fn explain(&self, p: &Principal) -> Vec<String> {
        if p.provider != self.provider {
            return vec![format!("provider {} ≠ {}", p.provider, self.provider)];
        }
        self.claims
            .iter()
            .filter(|m| !m.matches(&p.claims))
            .map(|m| {
                if m.overage(p) {
                    format!(
                        "claims.{}: not in the token (claims overage: the IdP sent a reference instead)",
                        m.path
                    )
                } else {
                    m.explain_miss(&p.claims)
                }
            })
            .collect()
    }

    /// Whether this matcher accepts every identity of its provider.
    pub fn is_universal(&self) -> bool {
        self.claims.iter().all(ClaimMatcher::is_universal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wildmatch::WildMatch;

    #[test]
    fn glob_covers() {
        let g = |s: &str| Glob::parse(s).unwrap();
        assert!(g("contract*").covers(&g("contractor-*")));
        assert!(g("contractor-*").covers(&g("contractor-1")));
        assert!(g("*").covers(&g("a?b")));
        assert!(g("a").covers(&g("a")));
        assert!(!g("contractor-*").covers(&g("contract*")));
        assert!(!g("a-*").covers(&g("b")));
        assert!(!g("a?").covers(&g("a*")));
        assert!(!g("a*b").covers(&g("a*")));
    }

    #[test]
    fn glob_basics() {
        let g = Glob::parse("contractor-*").unwrap();
        assert!(g.matches("contractor-42"));
        assert!(g.matches("contractor-"));
        assert!(!g.matches("xcontractor-42"));
        let g = Glob::parse("a?c").unwrap();
        assert!(g.matches("abc") && g.matches("aéc"));
        assert!(!g.matches("ac") && !g.matches("abbc"));
        assert!(Glob::parse("*").unwrap().is_universal());
        assert!(Glob::parse("?*").unwrap().is_universal());
        assert!(!Glob::parse("a*").unwrap().is_universal());
        assert!(!Glob::parse("??").unwrap().is_universal());
        assert!(Glob::parse("${claims.x}").is_err());
        assert!(Glob::parse(r"bad\q").is_err());
        let g = Glob::parse(r"lit\*").unwrap();
        assert!(!g.is_wild());
        assert!(g.matches("lit*") && !g.matches("litx"));
    }

    /// Our matcher agrees with `wildmatch` on a deterministic sweep of
    /// patterns and inputs over a small alphabet (including multibyte chars).
    #[test]
    fn agrees_with_wildmatch() {
        let alphabet = ['a', 'b', 'é', '*', '?'];
        let inputs_alpha = ['a', 'b', 'é'];
        let mut patterns = vec![String::new()];
        for len in 1..=4 {
            let mut next = Vec::new();
            for p in patterns.iter().filter(|p| p.chars().count() == len - 1) {
                for c in alphabet {
                    next.push(format!("{p}{c}"));
                }
            }
            patterns.extend(next);
        }
        let mut inputs = vec![String::new()];
        for len in 1..=4 {
            let mut next = Vec::new();
            for s in inputs.iter().filter(|s| s.chars().count() == len - 1) {
                for c in inputs_alpha {
                    next.push(format!("{s}{c}"));
                }
            }
            inputs.extend(next);
        }
        let mut checked = 0;
        for p in &patterns {
            let ours = Glob::parse(p).unwrap();
            let theirs = WildMatch::new(p);
            for s in &inputs {
                assert_eq!(
                    ours.matches(s),
                    theirs.matches(s),
                    "pattern {p:?} input {s:?}"
                );
                checked += 1;
            }
        }
        assert!(checked > 50_000);
    }

    #[test]
    fn explain_miss_lists_at_most_ten_values() {
        let m = ClaimMatcher {
            path: ClaimPath::parse("groups").unwrap(),
            any_of: vec![Glob::parse("admins").unwrap()],
        };
        let groups: Vec<String> = (0..25).map(|i| format!("g{i}")).collect();
        let mut claims = Map::new();
        claims.insert("groups".into(), serde_json::json!(groups));
        let text = m.explain_miss(&claims);
        assert!(
            text.starts_with("claims.groups: none of [\"g0\", "),
            "{text}"
        );
        assert!(text.contains("\"g9\", … 15 more] in [admins]"), "{text}");
        assert!(!text.contains("g10"), "{text}");
        claims.insert("groups".into(), serde_json::json!("ops"));
        assert_eq!(
            m.explain_miss(&claims),
            "claims.groups: \"ops\" not in [admins]"
        );
        claims.clear();
        assert_eq!(
            m.explain_miss(&claims),
            "claims.groups: missing, want [admins]"
        );
    }

    #[test]
    fn pathological_pattern_is_bounded() {
        // Many stars against a long non-matching input finish (quadratic at worst).
        let g = Glob::parse(&"a*".repeat(50)).unwrap();
        let input = "a".repeat(50) + &"b".repeat(2000);
        assert!(g.matches(&input));
        assert!(
            !Glob::parse(&("a*".repeat(50) + "c"))
                .unwrap()
                .matches(&input)
        );
    }
}
