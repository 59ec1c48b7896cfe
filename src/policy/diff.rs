//! What changes between two compiled policy sets, rule by rule, and whether
//! the change widens access. Pure: two [`PolicySet`]s (and optional sample
//! identities) in, a [`PolicyDiff`] out; `spangate policy diff` loads and
//! prints.
//!
//! Widening (what a reviewer must look at twice) is: an enforced binding
//! added, a binding's subject matcher covering more identities, a binding
//! switched from audit to enforce; a deny rule removed, narrowed (fewer
//! subjects or endpoints) or switched to audit; a role (or a binding's own
//! narrowing) gaining endpoints, services, admin permissions, or losing a
//! constraint; a limit raised or removed; a protected attribute removed; and
//! any sample identity that gains a decision or a permission. When a change
//! cannot be shown to narrow (a binding's role swapped, a claim glob
//! replaced by a different one), it counts as widening: the tool errs on the
//! side of asking.
//!
//! Rules are matched by name (`binding[name]`, `deny[name]`, roles and
//! endpoints by key); unnamed rules are named `file#index`, so moving one
//! shows as a removal and an addition.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::compile::{Binding, Constraints, DenyRule, Publish, Role};
use super::matcher::{ClaimMatcher, SubjectMatcher};
use super::model::{Mode, OnViolation};
use super::{PolicySet, RateSpec};
use crate::identity::Principal;
use crate::otlp::BatchSummary;

/// What a change does to access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// More identities, data or permissions get through.
    Widens,
    /// Less gets through.
    Narrows,
    /// Neither (credentials, stamps, routing, ordering): still worth a look.
    Neutral,
}

impl Effect {
    fn as_str(self) -> &'static str {
        match self {
            Effect::Widens => "widens",
            Effect::Narrows => "narrows",
            Effect::Neutral => "neutral",
        }
    }
}

/// One change of one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The rule: `binding[name]`, `deny[name]`, `role[name]`,
    /// `endpoint[name]` or `protected_attributes`.
    pub rule: String,
    /// What changed, for people.
    pub what: String,
    /// Its effect on access.
    pub effect: Effect,
}

/// A sample identity (from `policy test` cases) to decide with both sets.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Where it came from (`file#n case name`).
    pub label: String,
    /// The identity, as `serve` would derive it from verified claims.
    pub principal: Principal,
    /// Endpoint name.
    pub endpoint: String,
    /// The batch to decide on.
    pub batch: BatchSummary,
}

/// One side of a sample's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// `allow`, `partial` (allowed, some spans dropped) or `deny`.
    pub decision: &'static str,
    /// The deciding rule.
    pub rule: String,
    /// Credential injected (allowed only).
    pub credential: Option<String>,
    /// Spans dropped.
    pub dropped_spans: usize,
    /// Attributes stamped.
    pub stamp: Vec<(String, String)>,
    /// Admin permissions held.
    pub admin: Vec<String>,
}

/// How one sample identity's decision changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SampleChange {
    /// The sample's label.
    pub sample: String,
    /// Endpoint decided on.
    pub endpoint: String,
    /// Before.
    pub old: Outcome,
    /// After.
    pub new: Outcome,
    /// Admin permissions gained.
    pub admin_gained: Vec<String>,
    /// Admin permissions lost.
    pub admin_lost: Vec<String>,
    /// Overall effect for this identity.
    pub effect: Effect,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDiff {
    /// Version of the old set.
    pub old_version: String,
    /// Version of the new set.
    pub new_version: String,
    /// Rule changes, grouped by rule (sorted by rule, in a stable order).
    pub changes: Vec<Change>,
    /// Samples whose outcome changed.
    pub samples: Vec<SampleChange>,
    /// Samples decided.
    pub samples_checked: usize,
    /// Whether anything widens access.
    pub widens: bool,
}

/// Compare `old` with `new`, deciding `samples` with both.
pub fn diff(old: &PolicySet, new: &PolicySet, samples: &[Sample]) -> PolicyDiff {
    let mut changes = Vec::new();
    endpoints(old, new, &mut changes);
    roles(old, new, &mut changes);
    bindings(old, new, &mut changes);
    denies(old, new, &mut changes);
    protected(old, new, &mut changes);
    let sample_changes: Vec<SampleChange> = samples
        .iter()
        .filter_map(|s| sample_change(old, new, s))
        .collect();
    let widens = changes.iter().any(|c| c.effect == Effect::Widens)
        || sample_changes.iter().any(|s| s.effect == Effect::Widens);
    PolicyDiff {
        old_version: old.version().to_string(),
        new_version: new.version().to_string(),
        changes,
        samples: sample_changes,
        samples_checked: samples.len(),
        widens,
    }
}

fn push(out: &mut Vec<Change>, rule: &str, effect: Effect, what: String) {
    out.push(Change {
        rule: rule.to_string(),
        what,
        effect,
    });
}

fn endpoints(old: &PolicySet, new: &PolicySet, out: &mut Vec<Change>) {
    let o: BTreeMap<&str, _> = old.endpoints.iter().map(|e| (e.name.as_str(), e)).collect();
    let n: BTreeMap<&str, _> = new.endpoints.iter().map(|e| (e.name.as_str(), e)).collect();
    for name in o.keys().chain(n.keys()).collect::<BTreeSet<_>>() {
        let rule = format!("endpoint[{name}]");
        match (o.get(name), n.get(name)) {
            (None, Some(e)) => push(
                out,
                &rule,
                Effect::Neutral,
                format!("added: {} -> upstream {}", e.path, e.upstream),
            ),
            (Some(e), None) => push(
                out,
                &rule,
                Effect::Narrows,
                format!("removed (was {} -> upstream {})", e.path, e.upstream),
            ),
            (Some(a), Some(b)) => {
                if a.path != b.path {
                    push(
                        out,
                        &rule,
                        Effect::Neutral,
                        format!("path {} -> {}", a.path, b.path),
                    );
                }
                if a.upstream != b.upstream {
                    push(
                        out,
                        &rule,
                        Effect::Neutral,
                        format!("upstream {} -> {}", a.upstream, b.upstream),
                    );
                }
            }
            (None, None) => {}
        }
    }
}

fn roles(old: &PolicySet, new: &PolicySet, out: &mut Vec<Change>) {
    let o: BTreeMap<&str, &Role> = old.roles.iter().map(|r| (r.name.as_str(), r)).collect();
    let n: BTreeMap<&str, &Role> = new.roles.iter().map(|r| (r.name.as_str(), r)).collect();
    for name in o.keys().chain(n.keys()).collect::<BTreeSet<_>>() {
        let rule = format!("role[{name}]");
        match (o.get(name), n.get(name)) {
            // A role grants nothing until a binding names it; the binding's
            // change is what widens.
            (None, Some(_)) => push(out, &rule, Effect::Neutral, "added".into()),
            (Some(_), None) => push(out, &rule, Effect::Narrows, "removed".into()),
            (Some(a), Some(b)) => {
                let (ga, la) = set_diff(&a.admin, &b.admin);
                for p in ga {
                    push(out, &rule, Effect::Widens, format!("admin: + {p}"));
                }
                for p in la {
                    push(out, &rule, Effect::Narrows, format!("admin: - {p}"));
                }
                publish(&rule, a.publish.as_ref(), b.publish.as_ref(), true, out);
            }
            (None, None) => {}
        }
    }
}

/// Compare a publish grant (`on_role`) or a binding's narrowing.
fn publish(
    rule: &str,
    a: Option<&Publish>,
    b: Option<&Publish>,
    on_role: bool,
    out: &mut Vec<Change>,
) {
    let none = Constraints::default();
    match (a, b, on_role) {
        (None, None, _) => {}
        // A role that starts publishing widens; a binding that stops
        // narrowing widens.
        (None, Some(_), true) => push(out, rule, Effect::Widens, "publish: granted".into()),
        (Some(_), None, true) => push(out, rule, Effect::Narrows, "publish: revoked".into()),
        (a, b, _) => {
            let (ea, eb) = (
                a.and_then(|p| p.endpoints.as_ref()),
                b.and_then(|p| p.endpoints.as_ref()),
            );
            list_limit(rule, "publish.endpoints", ea, eb, out);
            constraints(
                rule,
                a.map_or(&none, |p| &p.constraints),
                b.map_or(&none, |p| &p.constraints),
                out,
            );
        }
    }
}

/// A list where absent means "no restriction" (endpoints on a binding,
/// services, deny endpoints use the inverse).
fn list_limit(
    rule: &str,
    field: &str,
    a: Option<&Vec<String>>,
    b: Option<&Vec<String>>,
    out: &mut Vec<Change>,
) {
    match (a, b) {
        (None, None) => {}
        (Some(a), None) => push(
            out,
            rule,
            Effect::Widens,
            format!("{field}: any (was [{}])", a.join(", ")),
        ),
        (None, Some(b)) => push(
            out,
            rule,
            Effect::Narrows,
            format!("{field}: [{}] (was any)", b.join(", ")),
        ),
        (Some(a), Some(b)) => {
            let (gained, lost) = set_diff(a, b);
            for g in gained {
                push(out, rule, Effect::Widens, format!("{field}: + {g}"));
            }
            for l in lost {
                push(out, rule, Effect::Narrows, format!("{field}: - {l}"));
            }
        }
    }
}

/// Items in `b` not in `a`, and in `a` not in `b`.
fn set_diff<'a>(a: &'a [String], b: &'a [String]) -> (Vec<&'a str>, Vec<&'a str>) {
    let sa: BTreeSet<&str> = a.iter().map(String::as_str).collect();
    let sb: BTreeSet<&str> = b.iter().map(String::as_str).collect();
    (
        sb.difference(&sa).copied().collect(),
        sa.difference(&sb).copied().collect(),
    )
}

/// A numeric limit where absent means unlimited.
fn limit(rule: &str, field: &str, a: Option<u64>, b: Option<u64>, out: &mut Vec<Change>) {
    let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
    let effect = match (a, b) {
        (x, y) if x == y => return,
        (Some(_), None) => Effect::Widens,
        (None, Some(_)) => Effect::Narrows,
        (Some(x), Some(y)) if y > x => Effect::Widens,
        _ => Effect::Narrows,
    };
    push(
        out,
        rule,
        effect,
        format!("{field}: {} -> {}", show(a), show(b)),
    );
}

fn rate(
    rule: &str,
    prefix: &str,
    a: Option<&RateSpec>,
    b: Option<&RateSpec>,
    out: &mut Vec<Change>,
) {
    match (a, b) {
        (None, None) => {}
        (Some(a), None) => push(
            out,
            rule,
            Effect::Widens,
            format!("{prefix}rate: removed (was {a})"),
        ),
        (None, Some(b)) => push(
            out,
            rule,
            Effect::Narrows,
            format!("{prefix}rate: {b} (was none)"),
        ),
        (Some(a), Some(b)) => {
            limit(
                rule,
                &format!("{prefix}rate.requests_per_second"),
                a.requests_per_second,
                b.requests_per_second,
                out,
            );
            limit(
                rule,
                &format!("{prefix}rate.spans_per_second"),
                a.spans_per_second,
                b.spans_per_second,
                out,
            );
            limit(
                rule,
                &format!("{prefix}rate.bytes_per_second"),
                a.bytes_per_second,
                b.bytes_per_second,
                out,
            );
            limit(
                rule,
                &format!("{prefix}rate.burst"),
                Some(u64::from(a.burst_seconds())),
                Some(u64::from(b.burst_seconds())),
                out,
            );
        }
    }
}

fn constraints(rule: &str, a: &Constraints, b: &Constraints, out: &mut Vec<Change>) {
    let sources = |c: &Constraints| {
        c.services
            .as_ref()
            .map(|s| s.iter().map(|p| p.source().to_string()).collect::<Vec<_>>())
    };
    list_limit(
        rule,
        "publish.services",
        sources(a).as_ref(),
        sources(b).as_ref(),
        out,
    );
    limit(
        rule,
        "publish.max_spans_per_batch",
        a.max_spans,
        b.max_spans,
        out,
    );
    limit(rule, "publish.max_bytes", a.max_bytes, b.max_bytes, out);
    rate(rule, "publish.", a.rate.as_ref(), b.rate.as_ref(), out);
    // Requirements: one removed lets more through.
    let (added, removed) = set_diff(&a.require, &b.require);
    for r in added {
        push(
            out,
            rule,
            Effect::Narrows,
            format!("publish.require_attributes: + {r}"),
        );
    }
    for r in removed {
        push(
            out,
            rule,
            Effect::Widens,
            format!("publish.require_attributes: - {r}"),
        );
    }
    let globs = |c: &Constraints| {
        c.forbid
            .iter()
            .map(|g| g.source().to_string())
            .collect::<Vec<_>>()
    };
    let (added, removed) = set_diff_owned(globs(a), globs(b));
    for r in added {
        push(
            out,
            rule,
            Effect::Narrows,
            format!("publish.forbid_attributes: + {r}"),
        );
    }
    for r in removed {
        push(
            out,
            rule,
            Effect::Widens,
            format!("publish.forbid_attributes: - {r}"),
        );
    }
    let eq = |c: &Constraints| {
        c.equal
            .iter()
            .map(|(k, p)| (k.clone(), p.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    let (ea, eb) = (eq(a), eq(b));
    for k in ea.keys().chain(eb.keys()).collect::<BTreeSet<_>>() {
        let field = format!("publish.attributes_equal_claims.{k}");
        match (ea.get(k), eb.get(k)) {
            (None, Some(c)) => push(out, rule, Effect::Narrows, format!("{field}: + claims.{c}")),
            (Some(c), None) => push(out, rule, Effect::Widens, format!("{field}: - claims.{c}")),
            (Some(x), Some(y)) if x != y => push(
                out,
                rule,
                Effect::Widens,
                format!("{field}: claims.{x} -> claims.{y}"),
            ),
            _ => {}
        }
    }
    let ov = |c: &Constraints| c.on_violation.unwrap_or_default();
    match (ov(a), ov(b)) {
        (OnViolation::Reject, OnViolation::Drop) => push(
            out,
            rule,
            Effect::Widens,
            "publish.on_violation: reject -> drop (compliant resources of a bad batch now go through)"
                .into(),
        ),
        (OnViolation::Drop, OnViolation::Reject) => push(
            out,
            rule,
            Effect::Narrows,
            "publish.on_violation: drop -> reject".into(),
        ),
        _ => {}
    }
}

fn set_diff_owned(a: Vec<String>, b: Vec<String>) -> (Vec<String>, Vec<String>) {
    let (g, l) = set_diff(&a, &b);
    (
        g.into_iter().map(str::to_string).collect(),
        l.into_iter().map(str::to_string).collect(),
    )
}

/// `provider{claim=a|b, other=c}`.
pub fn describe_subject(s: &SubjectMatcher) -> String {
    let claims: Vec<String> = s
        .claims
        .iter()
        .map(|c| {
            let globs: Vec<&str> = c.any_of.iter().map(|g| g.source()).collect();
            format!("{}={}", c.path, globs.join("|"))
        })
        .collect();
    format!("{}{{{}}}", s.provider, claims.join(", "))
}

/// Whether every identity `inner` matches, `outer` matches too (as far as
/// can be shown): same provider, and each of `outer`'s claim conditions is
/// implied by one of `inner`'s on the same claim.
fn subject_covers(outer: &SubjectMatcher, inner: &SubjectMatcher) -> bool {
    outer.provider == inner.provider
        && outer.claims.iter().all(|oc: &ClaimMatcher| {
            inner.claims.iter().any(|ic| {
                ic.path == oc.path
                    && ic
                        .any_of
                        .iter()
                        .all(|ig| oc.any_of.iter().any(|og| og.covers(ig)))
            })
        })
}

/// Subject matchers of `b` no matcher of `a` covers (they reach identities
/// `a` did not, as far as can be shown), and the reverse.
fn subjects_beyond<'a>(a: &[SubjectMatcher], b: &'a [SubjectMatcher]) -> Vec<&'a SubjectMatcher> {
    b.iter()
        .filter(|nb| !a.iter().any(|oa| subject_covers(oa, nb)))
        .collect()
}

fn subjects(
    rule: &str,
    a: &[SubjectMatcher],
    b: &[SubjectMatcher],
    more: Effect,
    fewer: Effect,
    out: &mut Vec<Change>,
) {
    let new_reach = subjects_beyond(a, b);
    let lost_reach = subjects_beyond(b, a);
    for s in &new_reach {
        let was = a
            .iter()
            .find(|o| o.provider == s.provider && subject_covers(s, o))
            .map(|o| format!(" (was {})", describe_subject(o)))
            .unwrap_or_default();
        push(
            out,
            rule,
            more,
            format!("subjects: + {}{was}", describe_subject(s)),
        );
    }
    for s in &lost_reach {
        // Already shown as the "was" of a widened matcher.
        if new_reach.iter().any(|n| subject_covers(n, s)) {
            continue;
        }
        push(
            out,
            rule,
            fewer,
            format!("subjects: - {}", describe_subject(s)),
        );
    }
}

fn bindings(old: &PolicySet, new: &PolicySet, out: &mut Vec<Change>) {
    fn index(set: &PolicySet) -> BTreeMap<String, (usize, &Binding)> {
        set.bindings
            .iter()
            .enumerate()
            .map(|(i, b)| (b.rule.clone(), (i, b)))
            .collect()
    }
    let (o, n) = (index(old), index(new));
    let role_name = |set: &PolicySet, b: &Binding| {
        set.roles
            .get(b.role)
            .map_or_else(|| "?".to_string(), |r| r.name.clone())
    };
    for rule in o.keys().chain(n.keys()).collect::<BTreeSet<_>>() {
        match (o.get(rule), n.get(rule)) {
            (None, Some((_, b))) => {
                let effect = match b.mode {
                    Mode::Enforce => Effect::Widens,
                    Mode::Audit => Effect::Neutral,
                };
                let subjects: Vec<String> = b.subjects.iter().map(describe_subject).collect();
                push(
                    out,
                    rule,
                    effect,
                    format!(
                        "added{}: role {} for {}",
                        if b.mode == Mode::Audit {
                            " (audit mode)"
                        } else {
                            ""
                        },
                        role_name(new, b),
                        subjects.join(" or ")
                    ),
                );
            }
            (Some((_, a)), None) => {
                let effect = match a.mode {
                    Mode::Enforce => Effect::Narrows,
                    Mode::Audit => Effect::Neutral,
                };
                push(
                    out,
                    rule,
                    effect,
                    format!("removed (was role {})", role_name(old, a)),
                );
            }
            (Some((ia, a)), Some((ib, b))) => {
                let (ra, rb) = (role_name(old, a), role_name(new, b));
                if ra != rb {
                    push(out, rule, Effect::Widens, format!("role: {ra} -> {rb}"));
                }
                match (a.mode, b.mode) {
                    (Mode::Audit, Mode::Enforce) => {
                        push(out, rule, Effect::Widens, "mode: audit -> enforce".into())
                    }
                    (Mode::Enforce, Mode::Audit) => {
                        push(out, rule, Effect::Narrows, "mode: enforce -> audit".into())
                    }
                    _ => {}
                }
                subjects(
                    rule,
                    &a.subjects,
                    &b.subjects,
                    Effect::Widens,
                    Effect::Narrows,
                    out,
                );
                if a.credential != b.credential {
                    let show = |c: &Option<String>| c.clone().unwrap_or_else(|| "none".into());
                    push(
                        out,
                        rule,
                        Effect::Neutral,
                        format!(
                            "credential: {} -> {}",
                            show(&a.credential),
                            show(&b.credential)
                        ),
                    );
                }
                let stamps = |x: &Binding| {
                    x.stamp
                        .iter()
                        .map(|(k, t)| (k.clone(), t.source().to_string()))
                        .collect::<BTreeMap<_, _>>()
                };
                let (sa, sb) = (stamps(a), stamps(b));
                for k in sa.keys().chain(sb.keys()).collect::<BTreeSet<_>>() {
                    match (sa.get(k), sb.get(k)) {
                        (None, Some(t)) => {
                            push(out, rule, Effect::Neutral, format!("stamp: + {k} = {t}"))
                        }
                        (Some(t), None) => push(
                            out,
                            rule,
                            Effect::Neutral,
                            format!("stamp: - {k} (was {t})"),
                        ),
                        (Some(x), Some(y)) if x != y => push(
                            out,
                            rule,
                            Effect::Neutral,
                            format!("stamp: {k} = {x} -> {y}"),
                        ),
                        _ => {}
                    }
                }
                if a.rate_key != b.rate_key {
                    push(out, rule, Effect::Neutral, "rate_key changed".into());
                }
                publish(rule, a.publish.as_ref(), b.publish.as_ref(), false, out);
                if ia != ib {
                    push(
                        out,
                        rule,
                        Effect::Neutral,
                        format!(
                            "position {} -> {} (the first matching binding decides)",
                            ia + 1,
                            ib + 1
                        ),
                    );
                }
            }
            (None, None) => {}
        }
    }
}

fn denies(old: &PolicySet, new: &PolicySet, out: &mut Vec<Change>) {
    fn index(set: &PolicySet) -> BTreeMap<String, &DenyRule> {
        set.deny.iter().map(|d| (d.rule.clone(), d)).collect()
    }
    let (o, n) = (index(old), index(new));
    let endpoints = |d: &DenyRule| {
        d.endpoints.as_ref().map_or_else(
            || "every endpoint and the admin API".into(),
            |e| e.join(", "),
        )
    };
    for rule in o.keys().chain(n.keys()).collect::<BTreeSet<_>>() {
        match (o.get(rule), n.get(rule)) {
            (None, Some(d)) => {
                let effect = match d.mode {
                    Mode::Enforce => Effect::Narrows,
                    Mode::Audit => Effect::Neutral,
                };
                let subjects: Vec<String> = d.subjects.iter().map(describe_subject).collect();
                push(
                    out,
                    rule,
                    effect,
                    format!(
                        "added{}: {} on {}",
                        if d.mode == Mode::Audit {
                            " (audit mode)"
                        } else {
                            ""
                        },
                        subjects.join(" or "),
                        endpoints(d)
                    ),
                );
            }
            (Some(d), None) => {
                let effect = match d.mode {
                    Mode::Enforce => Effect::Widens,
                    Mode::Audit => Effect::Neutral,
                };
                let subjects: Vec<String> = d.subjects.iter().map(describe_subject).collect();
                push(
                    out,
                    rule,
                    effect,
                    format!(
                        "removed (denied {} on {})",
                        subjects.join(" or "),
                        endpoints(d)
                    ),
                );
            }
            (Some(a), Some(b)) => {
                match (a.mode, b.mode) {
                    (Mode::Enforce, Mode::Audit) => {
                        push(out, rule, Effect::Widens, "mode: enforce -> audit".into())
                    }
                    (Mode::Audit, Mode::Enforce) => {
                        push(out, rule, Effect::Narrows, "mode: audit -> enforce".into())
                    }
                    _ => {}
                }
                // A deny reaching more identities narrows access.
                subjects(
                    rule,
                    &a.subjects,
                    &b.subjects,
                    Effect::Narrows,
                    Effect::Widens,
                    out,
                );
                // Absent endpoints = everything: the inverse of a grant.
                match (&a.endpoints, &b.endpoints) {
                    (None, Some(e)) => push(
                        out,
                        rule,
                        Effect::Widens,
                        format!(
                            "endpoints: [{}] (was every endpoint and the admin API)",
                            e.join(", ")
                        ),
                    ),
                    (Some(e), None) => push(
                        out,
                        rule,
                        Effect::Narrows,
                        format!(
                            "endpoints: every endpoint and the admin API (was [{}])",
                            e.join(", ")
                        ),
                    ),
                    (Some(x), Some(y)) => {
                        let (added, removed) = set_diff(x, y);
                        for e in added {
                            push(out, rule, Effect::Narrows, format!("endpoints: + {e}"));
                        }
                        for e in removed {
                            push(out, rule, Effect::Widens, format!("endpoints: - {e}"));
                        }
                    }
                    (None, None) => {}
                }
            }
            (None, None) => {}
        }
    }
}

fn protected(old: &PolicySet, new: &PolicySet, out: &mut Vec<Change>) {
    let (added, removed) = set_diff(&old.protected, &new.protected);
    for p in added {
        push(
            out,
            "protected_attributes",
            Effect::Narrows,
            format!("+ {p}"),
        );
    }
    for p in removed {
        push(
            out,
            "protected_attributes",
            Effect::Widens,
            format!("- {p} (clients may now send it)"),
        );
    }
}

fn outcome(set: &PolicySet, s: &Sample) -> Outcome {
    let admin: Vec<String> = set
        .admin_permissions(&s.principal)
        .permissions
        .into_iter()
        .map(|p| p.permission)
        .collect();
    let Some(endpoint) = set.endpoint_by_name(&s.endpoint) else {
        return Outcome {
            decision: "deny",
            rule: format!("no endpoint {}", s.endpoint),
            credential: None,
            dropped_spans: 0,
            stamp: Vec::new(),
            admin,
        };
    };
    let d = set.decide(&s.principal, endpoint, &s.batch);
    let dropped = d.dropped_spans();
    Outcome {
        decision: match (d.allowed, dropped) {
            (false, _) => "deny",
            (true, 0) => "allow",
            (true, _) => "partial",
        },
        rule: d.rule,
        credential: d.credential,
        dropped_spans: dropped,
        stamp: d.stamp,
        admin,
    }
}

fn sample_change(old: &PolicySet, new: &PolicySet, s: &Sample) -> Option<SampleChange> {
    let (a, b) = (outcome(old, s), outcome(new, s));
    if a == b {
        return None;
    }
    let (gained, lost) = set_diff(&a.admin, &b.admin);
    let (gained, lost): (Vec<String>, Vec<String>) = (
        gained.into_iter().map(str::to_string).collect(),
        lost.into_iter().map(str::to_string).collect(),
    );
    let allowed = |o: &Outcome| o.decision != "deny";
    let effect = if (!allowed(&a) && allowed(&b))
        || (allowed(&a) && allowed(&b) && b.dropped_spans < a.dropped_spans)
        || !gained.is_empty()
    {
        Effect::Widens
    } else if (allowed(&a) && !allowed(&b)) || b.dropped_spans > a.dropped_spans || !lost.is_empty()
    {
        Effect::Narrows
    } else {
        Effect::Neutral
    };
    Some(SampleChange {
        sample: s.label.clone(),
        endpoint: s.endpoint.clone(),
        old: a,
        new: b,
        admin_gained: gained,
        admin_lost: lost,
        effect,
    })
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}", self.decision, self.rule)?;
        if let Some(c) = &self.credential {
            write!(f, " with credential {c}")?;
        }
        if self.dropped_spans > 0 {
            write!(f, ", {} span(s) dropped", self.dropped_spans)?;
        }
        Ok(())
    }
}

impl fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "policy {} -> {}", self.old_version, self.new_version)?;
        if self.changes.is_empty() {
            writeln!(f, "\nno rule changes")?;
        } else {
            writeln!(f, "\nrule changes:")?;
            let mut last = "";
            for c in &self.changes {
                if c.rule != last {
                    writeln!(f, "  {}", c.rule)?;
                    last = &c.rule;
                }
                writeln!(f, "    {:<8} {}", c.effect.as_str(), c.what)?;
            }
        }
        if self.samples_checked > 0 {
            writeln!(
                f,
                "\nsample identities: {} checked, {} changed",
                self.samples_checked,
                self.samples.len()
            )?;
            for s in &self.samples {
                writeln!(f, "  {} {} on {}", s.effect.as_str(), s.sample, s.endpoint)?;
                if s.old.decision != s.new.decision
                    || s.old.rule != s.new.rule
                    || s.old.credential != s.new.credential
                    || s.old.dropped_spans != s.new.dropped_spans
                {
                    writeln!(f, "    was {}", s.old)?;
                    writeln!(f, "    now {}", s.new)?;
                }
                if s.old.stamp != s.new.stamp {
                    let show = |v: &[(String, String)]| {
                        v.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    writeln!(
                        f,
                        "    stamp [{}] -> [{}]",
                        show(&s.old.stamp),
                        show(&s.new.stamp)
                    )?;
                }
                for p in &s.admin_gained {
                    writeln!(f, "    gains admin permission {p}")?;
                }
                for p in &s.admin_lost {
                    writeln!(f, "    loses admin permission {p}")?;
                }
            }
        }
        write!(
            f,
            "\n{}",
            if self.widens {
                "access WIDENS (see the lines marked widens)"
            } else {
                "access does not widen"
            }
        )
    }
}

/// One rule whose change widens access, as a reload's audit line lists it:
/// the `widens` lines of [`diff`] (what `spangate policy diff` prints),
/// grouped by rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Widening {
    /// `binding[name]`, `deny[name]`, `role[name]`, `endpoint[name]` or
    /// `protected_attributes`.
    pub rule: String,
    /// What happened to the rule itself: `added`, `removed` or `changed`.
    pub change: &'static str,
    /// The widening changes of the rule, as `policy diff` words them.
    pub what: Vec<String>,
}

impl PolicyDiff {
    /// The rule changes that widen access, one entry per rule in the diff's
    /// order (sample identities are not part of it). `old` and `new` are the
    /// sets this diff compared: they say whether a rule was added or removed.
    pub fn widenings(&self, old: &PolicySet, new: &PolicySet) -> Vec<Widening> {
        let (in_old, in_new) = (rule_names(old), rule_names(new));
        let mut out: Vec<Widening> = Vec::new();
        for c in self.changes.iter().filter(|c| c.effect == Effect::Widens) {
            match out.last_mut() {
                Some(w) if w.rule == c.rule => w.what.push(c.what.clone()),
                _ => out.push(Widening {
                    rule: c.rule.clone(),
                    change: match (in_old.contains(&c.rule), in_new.contains(&c.rule)) {
                        (true, false) => "removed",
                        (false, true) => "added",
                        _ => "changed",
                    },
                    what: vec![c.what.clone()],
                }),
            }
        }
        out
    }
}

/// What a reload from `old` to `new` widens: [`diff`] without sample
/// identities, its widening changes grouped by rule.
pub fn widening_changes(old: &PolicySet, new: &PolicySet) -> Vec<Widening> {
    diff(old, new, &[]).widenings(old, new)
}

/// The names the diff gives the rules of a set.
fn rule_names(set: &PolicySet) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = set.bindings.iter().map(|b| b.rule.clone()).collect();
    out.extend(set.deny.iter().map(|d| d.rule.clone()));
    out.extend(set.roles.iter().map(|r| format!("role[{}]", r.name)));
    out.extend(
        set.endpoints
            .iter()
            .map(|e| format!("endpoint[{}]", e.name)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BASE: &str = r#"
endpoints:
  traces: { path: /v1/traces, upstream: lightstep }
  logs: { path: /v1/logs, upstream: lightstep }
protected_attributes: ["spangate."]
roles:
  publisher:
    publish:
      endpoints: [traces]
      services: ["${claims.project}"]
      max_spans_per_batch: 1000
      rate: { spans_per_second: 100 }
  admin:
    admin: [secrets:read]
bindings:
  - name: edge
    role: publisher
    subjects: [{ provider: dev, claims: { team: [a, b] } }]
    credential: lp
    stamp: { env: "${claims.env}" }
  - name: admins
    role: admin
    subjects: [{ provider: dev, claims: { groups: admins } }]
deny:
  - name: contractors
    subjects: [{ provider: dev, claims: { sub: "contractor-*" } }]
"#;

    fn set(text: &str) -> PolicySet {
        PolicySet::from_texts(&[("p.yaml", text)]).expect("valid policy")
    }

    fn changes(new: &str) -> Vec<(String, Effect, String)> {
        diff(&set(BASE), &set(new), &[])
            .changes
            .into_iter()
            .map(|c| (c.rule, c.effect, c.what))
            .collect()
    }

    fn one(new: &str) -> (String, Effect, String) {
        let c = changes(new);
        assert_eq!(c.len(), 1, "{c:#?}");
        c.into_iter().next().expect("one change")
    }

    #[test]
    fn identical_sets_have_no_changes() {
        let d = diff(&set(BASE), &set(BASE), &[]);
        assert!(d.changes.is_empty(), "{:?}", d.changes);
        assert!(!d.widens);
    }

    /// Table: one edit to BASE → the rule, effect and description it yields.
    #[test]
    fn each_kind_of_edit_has_its_effect() {
        use Effect::*;
        let table: &[(&str, &str, &str, Effect, &str)] = &[
            // (what, from, to, effect, description contains)
            (
                "deny removed",
                "deny:\n  - name: contractors\n    subjects: [{ provider: dev, claims: { sub: \"contractor-*\" } }]\n",
                "",
                Widens,
                "removed (denied dev{sub=contractor-*}",
            ),
            (
                "deny narrowed",
                "sub: \"contractor-*\" } }]\n",
                "sub: \"contractor-1\" } }]\n",
                Widens,
                "subjects: - dev{sub=contractor-*}",
            ),
            (
                "deny widened",
                "sub: \"contractor-*\" } }]\n",
                "sub: \"contract*\" } }]\n",
                Narrows,
                "subjects: + dev{sub=contract*} (was dev{sub=contractor-*})",
            ),
            (
                "deny to audit",
                "sub: \"contractor-*\" } }]\n",
                "sub: \"contractor-*\" } }]\n    mode: audit\n",
                Widens,
                "mode: enforce -> audit",
            ),
            (
                "deny limited to an endpoint",
                "sub: \"contractor-*\" } }]\n",
                "sub: \"contractor-*\" } }]\n    endpoints: [traces]\n",
                Widens,
                "endpoints: [traces] (was every endpoint",
            ),
            (
                "binding subject widened",
                "team: [a, b]",
                "team: [a, b, c]",
                Widens,
                "subjects: + dev{team=a|b|c} (was dev{team=a|b})",
            ),
            (
                "binding subject narrowed",
                "team: [a, b]",
                "team: [a]",
                Narrows,
                "subjects: - dev{team=a|b}",
            ),
            (
                "binding subject glob",
                "team: [a, b]",
                "team: [a, b, \"t-*\"]",
                Widens,
                "subjects: + dev{team=a|b|t-*} (was dev{team=a|b})",
            ),
            (
                "binding claim condition added",
                "claims: { team: [a, b] }",
                "claims: { team: [a, b], env: prod }",
                Narrows,
                "subjects: - dev{team=a|b}",
            ),
            (
                "binding claim condition dropped",
                "claims: { groups: admins }",
                "claims: { sub: root }",
                Widens,
                "subjects: + dev{sub=root}",
            ),
            (
                "role gains endpoint",
                "endpoints: [traces]\n      services",
                "endpoints: [traces, logs]\n      services",
                Widens,
                "publish.endpoints: + logs",
            ),
            (
                "role loses endpoint",
                "endpoints: [traces]\n      services",
                "endpoints: [logs]\n      services",
                Widens,
                "publish.endpoints: + logs",
            ),
            (
                "role gains service",
                "services: [\"${claims.project}\"]",
                "services: [\"${claims.project}\", \"${claims.project}-*\"]",
                Widens,
                "publish.services: + ${claims.project}-*",
            ),
            (
                "role any service",
                "      services: [\"${claims.project}\"]\n",
                "",
                Widens,
                "publish.services: any (was [${claims.project}])",
            ),
            (
                "limit raised",
                "max_spans_per_batch: 1000",
                "max_spans_per_batch: 5000",
                Widens,
                "publish.max_spans_per_batch: 1000 -> 5000",
            ),
            (
                "limit lowered",
                "max_spans_per_batch: 1000",
                "max_spans_per_batch: 10",
                Narrows,
                "publish.max_spans_per_batch: 1000 -> 10",
            ),
            (
                "limit removed",
                "      max_spans_per_batch: 1000\n",
                "",
                Widens,
                "1000 -> unlimited",
            ),
            (
                "rate raised",
                "spans_per_second: 100",
                "spans_per_second: 200",
                Widens,
                "publish.rate.spans_per_second: 100 -> 200",
            ),
            (
                "rate removed",
                "      rate: { spans_per_second: 100 }\n",
                "",
                Widens,
                "publish.rate: removed",
            ),
            (
                "admin permission",
                "admin: [secrets:read]",
                "admin: [secrets:read, secrets:rotate]",
                Widens,
                "admin: + secrets:rotate",
            ),
            (
                "admin permission lost",
                "admin: [secrets:read]",
                "admin: [status:read]",
                Widens,
                "admin: + status:read",
            ),
            (
                "credential",
                "credential: lp",
                "credential: other",
                Neutral,
                "credential: lp -> other",
            ),
            (
                "stamp",
                "stamp: { env: \"${claims.env}\" }",
                "stamp: { env: \"${claims.environment}\" }",
                Neutral,
                "stamp: env = ${claims.env} -> ${claims.environment}",
            ),
            (
                "protected removed",
                "protected_attributes: [\"spangate.\"]",
                "",
                Widens,
                "- spangate.",
            ),
            (
                "endpoint rerouted",
                "logs: { path: /v1/logs, upstream: lightstep }",
                "logs: { path: /v1/logs, upstream: other }",
                Neutral,
                "upstream lightstep -> other",
            ),
            (
                "drop instead of reject",
                "max_spans_per_batch: 1000",
                "max_spans_per_batch: 1000\n      on_violation: drop",
                Widens,
                "reject -> drop",
            ),
        ];
        for (what, from, to, effect, contains) in table {
            assert!(BASE.contains(from), "{what}: BASE lacks {from:?}");
            let new = BASE.replacen(from, to, 1);
            let got = changes(&new);
            assert!(
                got.iter()
                    .any(|(_, e, d)| e == effect && d.contains(contains)),
                "{what}: want {effect:?} containing {contains:?}, got {got:#?}"
            );
            let d = diff(&set(BASE), &set(&new), &[]);
            assert_eq!(d.widens, got.iter().any(|(_, e, _)| *e == Widens), "{what}");
        }
    }

    #[test]
    fn bindings_added_removed_and_moved() {
        let added = BASE.replacen(
            "  - name: admins",
            "  - name: extra\n    role: publisher\n    subjects: [{ provider: dev, claims: { team: z } }]\n    credential: lp\n  - name: admins",
            1,
        );
        let c = changes(&added);
        assert!(
            c.iter().any(|(r, e, d)| r == "binding[extra]"
                && *e == Effect::Widens
                && d == "added: role publisher for dev{team=z}"),
            "{c:#?}"
        );
        // The binding after it moved down: neutral, but shown.
        assert!(
            c.iter().any(|(r, e, d)| r == "binding[admins]"
                && *e == Effect::Neutral
                && d.starts_with("position 2 -> 3")),
            "{c:#?}"
        );
        let (rule, effect, what) = one(&BASE.replacen(
            "  - name: admins\n    role: admin\n    subjects: [{ provider: dev, claims: { groups: admins } }]\n",
            "",
            1,
        ));
        assert_eq!(
            (rule.as_str(), effect),
            ("binding[admins]", Effect::Narrows)
        );
        assert_eq!(what, "removed (was role admin)");
        let audit = BASE.replacen(
            "    credential: lp\n",
            "    credential: lp\n    mode: audit\n",
            1,
        );
        let (rule, effect, what) = one(&audit);
        assert_eq!(
            (rule.as_str(), effect, what.as_str()),
            ("binding[edge]", Effect::Narrows, "mode: enforce -> audit")
        );
    }

    fn sample(label: &str, claims: serde_json::Value, endpoint: &str) -> Sample {
        let serde_json::Value::Object(claims) = claims else {
            panic!("claims object")
        };
        let batch = BatchSummary {
            spans: 1,
            bytes: 0,
            resources: vec![crate::otlp::ResourceSummary {
                service_name: Some("shop".into()),
                attributes: vec![("service.name".into(), "shop".into())],
                spans: 1,
            }],
        };
        Sample {
            label: label.into(),
            principal: Principal::from_verified_claims("dev", "", claims),
            endpoint: endpoint.into(),
            batch,
        }
    }

    #[test]
    fn samples_gain_and_lose_decisions_and_permissions() {
        let samples = [
            sample(
                "team c",
                json!({"sub": "u1", "team": "c", "project": "shop", "env": "p"}),
                "traces",
            ),
            sample(
                "team b",
                json!({"sub": "u2", "team": "b", "project": "shop", "env": "p"}),
                "traces",
            ),
            sample(
                "admin",
                json!({"sub": "root", "groups": "admins"}),
                "traces",
            ),
            sample(
                "unchanged",
                json!({"sub": "u3", "team": "a", "project": "shop", "env": "p"}),
                "traces",
            ),
        ];
        let new = BASE.replacen("team: [a, b]", "team: [a, c]", 1).replacen(
            "admin: [secrets:read]",
            "admin: [secrets:read, secrets:rotate]",
            1,
        );
        let d = diff(&set(BASE), &set(&new), &samples);
        assert_eq!(d.samples_checked, 4);
        let by: BTreeMap<&str, &SampleChange> =
            d.samples.iter().map(|s| (s.sample.as_str(), s)).collect();
        assert_eq!(by.len(), 3, "{:#?}", d.samples);
        let c = by["team c"];
        assert_eq!(
            (c.old.decision, c.new.decision, c.effect),
            ("deny", "allow", Effect::Widens)
        );
        assert_eq!(c.new.credential.as_deref(), Some("lp"));
        let b = by["team b"];
        assert_eq!(
            (b.old.decision, b.new.decision, b.effect),
            ("allow", "deny", Effect::Narrows)
        );
        let a = by["admin"];
        assert_eq!(a.admin_gained, vec!["secrets:rotate".to_string()]);
        assert_eq!(a.effect, Effect::Widens);
        assert!(d.widens);
        let text = d.to_string();
        assert!(text.contains("widens team c on traces\n    was deny by default-deny\n    now allow by binding[edge] with credential lp"), "{text}");
        assert!(
            text.contains("gains admin permission secrets:rotate"),
            "{text}"
        );
        assert!(
            text.ends_with("access WIDENS (see the lines marked widens)"),
            "{text}"
        );
        // Only narrowing: no widening.
        let narrow = BASE.replacen("team: [a, b]", "team: [a]", 1);
        let d = diff(&set(BASE), &set(&narrow), &samples);
        assert!(!d.widens, "{d}");
        assert!(d.to_string().ends_with("access does not widen"));
    }

    #[test]
    fn json_names_effects_in_lowercase() {
        let new = BASE.replacen("max_spans_per_batch: 1000", "max_spans_per_batch: 5000", 1);
        let d = diff(&set(BASE), &set(&new), &[]);
        let v = serde_json::to_value(&d).expect("json");
        assert_eq!(v["widens"], true);
        assert_eq!(v["changes"][0]["rule"], "role[publisher]");
        assert_eq!(v["changes"][0]["effect"], "widens");
    }

    /// The reload's summary: a removed deny rule and a binding whose
    /// subjects widen are named (the same lines `policy diff` marks widens);
    /// a change that only narrows is not listed.
    #[test]
    fn removed_deny_and_widened_binding_are_named() {
        const BASE: &str = "endpoints:\n  traces: { path: /v1/traces, upstream: u }\n";
        const EDGE: &str = "roles:\n  pub: { publish: { endpoints: [traces] } }\nbindings:\n  - name: b\n    role: pub\n    credential: c\n    subjects: [{ provider: p, claims: { team: a } }]\ndeny:\n  - name: contractors\n    subjects: [{ provider: p, claims: { sub: \"c-*\" } }]\n";
        let set = |edge: &str| {
            PolicySet::from_texts(&[("a.yaml", BASE), ("b.yaml", edge)])
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let old = set(EDGE);
        assert!(widening_changes(&old, &set(EDGE)).is_empty());
        let no_deny = EDGE.split("deny:").next().unwrap_or_default();
        let got = widening_changes(&old, &set(no_deny));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].change, "removed");
        assert!(got[0].rule.contains("contractors"), "{got:?}");
        let wider = EDGE.replace("team: a", "team: [a, b]");
        let got = widening_changes(&old, &set(&wider));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].change, "changed");
        assert!(got[0].rule.contains('b'), "{got:?}");
        // Exactly the diff's widening lines, grouped by rule.
        let d = diff(&old, &set(&wider), &[]);
        let lines: Vec<&str> = d
            .changes
            .iter()
            .filter(|c| c.effect == Effect::Widens)
            .map(|c| c.what.as_str())
            .collect();
        assert_eq!(got[0].what, lines);
        // Narrowing only (a subject taken away, a deny added): nothing listed.
        let narrower = EDGE
            .replace("team: a", "team: a, env: prod")
            .replace("sub: \"c-*\"", "sub: [\"c-*\", \"x-*\"]");
        let d = diff(&old, &set(&narrower), &[]);
        assert!(!d.widens, "{d}");
        assert!(widening_changes(&old, &set(&narrower)).is_empty());
        // An added enforced binding is `added`.
        let added = EDGE.replace(
            "deny:\n",
            "  - name: extra\n    role: pub\n    credential: c\n    subjects: [{ provider: p, claims: { team: z } }]\ndeny:\n",
        );
        let got = widening_changes(&old, &set(&added));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].rule.as_str(), got[0].change),
            ("binding[extra]", "added")
        );
    }
}
