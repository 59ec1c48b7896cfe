//! `spangate policy explain`: the decision, the rule that made it, and for
//! every deny rule and binding whether it matched and why not.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::decide::{any_subject, eval_subjects, evaluate};
use super::matcher::SubjectMatch;
use super::matcher::SubjectMatcher;
use super::{Decision, Endpoint, PolicySet};
use crate::identity::Principal;
use crate::otlp::BatchSummary;

/// Who was asked about (no token, no claims values beyond the subject).
#[derive(Debug, Clone, Serialize)]
pub struct PrincipalView {
    /// Provider name.
    pub provider: String,
    /// Verified issuer.
    pub issuer: String,
    /// Verified subject.
    pub subject: String,
}

/// The batch that was evaluated, in numbers.
#[derive(Debug, Clone, Serialize)]
pub struct BatchView {
    /// Resources in the batch.
    pub resources: usize,
    /// Spans in the batch.
    pub spans: usize,
    /// Decompressed bytes.
    pub bytes: usize,
}

/// One rule, evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct RuleTrace {
    /// `deny[...]` / `binding[...]`.
    pub rule: String,
    /// `file:line:column` of the rule.
    pub location: String,
    /// `enforce` or `audit`.
    pub mode: &'static str,
    /// The binding's role.
    pub role: Option<String>,
    /// Whether the rule covers the endpoint (deny `endpoints`, role `publish.endpoints`).
    pub applies: bool,
    /// Whether a subject matched (and the rule applies).
    pub matched: bool,
    /// Why it did not match: one line per subject, or the endpoint reason.
    pub why_not: Vec<String>,
    /// For a matched rule: `deny (reason)`, `allow`, `allow, drop ...`.
    pub outcome: Option<String>,
    /// Constraint details (which resource violated what).
    pub details: Vec<String>,
    /// Whether this rule made the decision.
    pub decided: bool,
}

/// The full answer of `policy explain`.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Endpoint name.
    pub endpoint: String,
    /// The principal.
    pub principal: PrincipalView,
    /// The batch, if one was given (else publish constraints were checked
    /// against an empty batch).
    pub batch: Option<BatchView>,
    /// What `decide` returns.
    pub decision: Decision,
    /// Every deny rule.
    pub deny: Vec<RuleTrace>,
    /// Every binding.
    pub bindings: Vec<RuleTrace>,
    /// Policy version.
    pub policy_version: String,
}

fn why_subjects(subjects: &[SubjectMatcher], p: &Principal) -> Vec<String> {
    let mut out = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        for reason in s.explain(p) {
            out.push(format!("subjects[{i}]: {reason}"));
        }
    }
    out
}

/// Explain the decision for `principal` on `endpoint` (with `batch`, or an
/// empty batch when `None`).
pub fn explain(
    set: &PolicySet,
    principal: &Principal,
    endpoint: &Endpoint,
    batch: Option<&BatchSummary>,
) -> Explanation {
    let empty = BatchSummary::default();
    let summary = batch.unwrap_or(&empty);
    let decision = set.decide(principal, endpoint, summary);

    let deny = set
        .deny
        .iter()
        .map(|d| {
            let applies = d.covers(Some(endpoint));
            let subject = eval_subjects(&d.subjects, principal);
            let matched = applies && subject != SubjectMatch::No;
            let why_not = if !applies {
                vec![format!("does not cover endpoint {}", endpoint.name)]
            } else if subject == SubjectMatch::Yes {
                Vec::new()
            } else {
                // No match, or unknown (overage): both explained per subject.
                why_subjects(&d.subjects, principal)
            };
            RuleTrace {
                rule: d.rule.clone(),
                location: d.origin.location(),
                mode: d.mode.as_str(),
                role: None,
                applies,
                matched,
                why_not,
                outcome: matched.then(|| match subject {
                    SubjectMatch::Unknown => "deny (claims_overage)".to_string(),
                    _ => "deny (explicit_deny)".to_string(),
                }),
                details: Vec::new(),
                decided: !decision.allowed && decision.rule == d.rule,
            }
        })
        .collect();

    let bindings = set
        .bindings
        .iter()
        .map(|b| {
            let role = set.role_name(b);
            let applies = set.publishes_to(b, endpoint);
            let subject_ok = any_subject(&b.subjects, principal);
            let matched = applies && subject_ok;
            let mut why_not = Vec::new();
            if !applies {
                why_not.push(format!(
                    "role {} does not publish to endpoint {}",
                    role.as_deref().unwrap_or("?"),
                    endpoint.name
                ));
            }
            if !subject_ok {
                why_not.extend(why_subjects(&b.subjects, principal));
            }
            let (outcome, details) = if matched {
                let e = evaluate(set, b, principal, summary, true);
                let outcome = match e.would() {
                    "deny" => format!("deny ({})", e.reason),
                    "drop" => format!(
                        "allow, drop {}",
                        e.dropped
                            .iter()
                            .map(|d| format!(
                                "{} span(s) in {} resource(s): {}",
                                d.spans, d.resources, d.reason
                            ))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    _ => "allow".to_string(),
                };
                (Some(outcome), e.details)
            } else {
                (None, Vec::new())
            };
            RuleTrace {
                rule: b.rule.clone(),
                location: b.origin.location(),
                mode: b.mode.as_str(),
                role,
                applies,
                matched,
                why_not,
                outcome,
                details,
                decided: decision.rule == b.rule,
            }
        })
        .collect();

    Explanation {
        endpoint: endpoint.name.clone(),
        principal: PrincipalView {
            provider: principal.provider.clone(),
            issuer: principal.issuer.clone(),
            subject: principal.subject.clone(),
        },
        batch: batch.map(|b| BatchView {
            resources: b.resources.len(),
            spans: b.spans,
            bytes: b.bytes,
        }),
        decision,
        deny,
        bindings,
        policy_version: set.version().to_string(),
    }
}

fn write_rule(f: &mut fmt::Formatter<'_>, t: &RuleTrace) -> fmt::Result {
    let verdict = match (&t.outcome, t.matched) {
        (Some(o), _) => format!("MATCH → {o}"),
        (None, true) => "MATCH".to_string(),
        (None, false) => "no match".to_string(),
    };
    let mut tags = Vec::new();
    if t.mode == "audit" {
        tags.push("audit mode, not enforced".to_string());
    }
    if t.decided {
        tags.push("DECIDED".to_string());
    }
    let tags = if tags.is_empty() {
        String::new()
    } else {
        format!(" [{}]", tags.join(", "))
    };
    let role = t
        .role
        .as_deref()
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    writeln!(f, "  {}{role}: {verdict}{tags}  ({})", t.rule, t.location)?;
    for w in &t.why_not {
        writeln!(f, "      {w}")?;
    }
    for d in &t.details {
        writeln!(f, "      {d}")?;
    }
    Ok(())
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decision;
        writeln!(
            f,
            "decision: {} ({}) by {}",
            if d.allowed { "ALLOW" } else { "DENY" },
            d.reason,
            d.rule
        )?;
        writeln!(
            f,
            "principal: provider {} subject {} (issuer {})",
            self.principal.provider,
            Value::from(self.principal.subject.as_str()),
            self.principal.issuer
        )?;
        match &self.batch {
            Some(b) => writeln!(
                f,
                "endpoint: {}; batch: {} resource(s), {} span(s), {} byte(s)",
                self.endpoint, b.resources, b.spans, b.bytes
            )?,
            None => writeln!(
                f,
                "endpoint: {}; no batch given (resource constraints checked against an empty batch)",
                self.endpoint
            )?,
        }
        if d.allowed {
            if let Some(c) = &d.credential {
                writeln!(f, "credential: {c}")?;
            }
            for (k, v) in &d.stamp {
                writeln!(f, "stamp: {k} = {}", Value::from(v.as_str()))?;
            }
            if let Some(r) = &d.rate {
                writeln!(f, "rate: {r} (key {})", d.rate_key)?;
            }
            for x in &d.dropped {
                writeln!(
                    f,
                    "dropped: {} span(s) in {} resource(s): {}",
                    x.spans, x.resources, x.reason
                )?;
            }
        }
        for s in &d.shadow {
            writeln!(f, "shadow: {} would {} ({})", s.rule, s.would, s.reason)?;
        }
        writeln!(f, "deny rules:")?;
        if self.deny.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for t in &self.deny {
            write_rule(f, t)?;
        }
        writeln!(f, "bindings:")?;
        if self.bindings.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for t in &self.bindings {
            write_rule(f, t)?;
        }
        write!(f, "policy version: {}", self.policy_version)
    }
}
