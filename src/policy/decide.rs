//! The pure decision: `(policy, principal, endpoint, batch summary) → Decision`.
//!
//! Order: deny rules (an enforced match decides), then bindings in load order
//! (the first enforced binding whose subject matches and whose role publishes
//! to the endpoint decides, including its publish constraints), else
//! `default-deny`. Audit-mode rules are always evaluated and only reported.

use serde_json::{Map, Value};

use super::compile::{Binding, Constraints, DenyRule, RateKey};
use super::matcher::{Glob, SubjectMatch, SubjectMatcher};
use super::model::{Mode, OnViolation};
use super::{
    AdminGrant, AdminPermission, Decision, DroppedCount, Endpoint, PolicySet, RateSpec,
    ResourceVerdict, ShadowHit, reason,
};
use crate::identity::Principal;
use crate::otlp::{BatchSummary, ResourceSummary};

/// Rule name of the default deny.
pub(crate) const DEFAULT_RULE: &str = "default-deny";

/// Whether any subject matcher accepts the principal.
pub(crate) fn any_subject(subjects: &[SubjectMatcher], p: &Principal) -> bool {
    subjects.iter().any(|s| s.matches(p))
}

/// Match any of `subjects`, telling the claims-overage case apart.
pub(crate) fn eval_subjects(subjects: &[SubjectMatcher], p: &Principal) -> SubjectMatch {
    let mut result = SubjectMatch::No;
    for s in subjects {
        result = result.or(s.eval(p));
        if result == SubjectMatch::Yes {
            break;
        }
    }
    result
}

impl DenyRule {
    /// Whether this rule covers `endpoint` (`None` = every endpoint).
    pub(crate) fn covers(&self, endpoint: Option<&Endpoint>) -> bool {
        match (&self.endpoints, endpoint) {
            (None, _) => true,
            (Some(eps), Some(ep)) => eps.contains(&ep.name),
            (Some(_), None) => false,
        }
    }
}

impl PolicySet {
    /// Whether binding `b`'s role (and the binding's narrowing) publishes to `ep`.
    pub(crate) fn publishes_to(&self, b: &Binding, ep: &Endpoint) -> bool {
        let Some(role) = self.roles.get(b.role) else {
            return false;
        };
        let Some(publish) = &role.publish else {
            return false;
        };
        let in_role = publish
            .endpoints
            .as_ref()
            .is_some_and(|eps| eps.contains(&ep.name));
        let in_binding = b
            .publish
            .as_ref()
            .and_then(|p| p.endpoints.as_ref())
            .is_none_or(|eps| eps.contains(&ep.name));
        in_role && in_binding
    }

    /// Role and binding constraints, role first.
    pub(crate) fn constraints<'a>(
        &'a self,
        b: &'a Binding,
    ) -> impl Iterator<Item = &'a Constraints> {
        let role = self
            .roles
            .get(b.role)
            .and_then(|r| r.publish.as_ref())
            .map(|p| &p.constraints);
        let own = b.publish.as_ref().map(|p| &p.constraints);
        role.into_iter().chain(own)
    }

    pub(crate) fn role_name(&self, b: &Binding) -> Option<String> {
        self.roles.get(b.role).map(|r| r.name.clone())
    }
}

/// A binding evaluated against a principal and a batch.
#[derive(Debug, Clone)]
pub(crate) struct Evaluation {
    pub allowed: bool,
    pub reason: &'static str,
    pub stamp: Vec<(String, String)>,
    pub resources: Vec<ResourceVerdict>,
    pub dropped: Vec<DroppedCount>,
    pub rate: Option<RateSpec>,
    pub rate_key: String,
    /// Human-readable detail (filled only when asked, for explain).
    pub details: Vec<String>,
}

impl Evaluation {
    fn deny(reason: &'static str, details: Vec<String>) -> Evaluation {
        Evaluation {
            allowed: false,
            reason,
            stamp: Vec::new(),
            resources: Vec::new(),
            dropped: Vec::new(),
            rate: None,
            rate_key: String::new(),
            details,
        }
    }

    /// What this evaluation would do, for shadow hits.
    pub(crate) fn would(&self) -> &'static str {
        match (self.allowed, self.dropped.is_empty()) {
            (false, _) => "deny",
            (true, true) => "allow",
            (true, false) => "drop",
        }
    }
}

/// Service patterns of one constraint set, rendered for this principal.
/// `None` = no service restriction.
type Rendered = Option<Vec<Glob>>;

/// Evaluate binding `b` (already matched on subject and endpoint).
pub(crate) fn evaluate(
    set: &PolicySet,
    b: &Binding,
    p: &Principal,
    batch: &BatchSummary,
    explain: bool,
) -> Evaluation {
    let claims = &p.claims;
    let mut details = Vec::new();

    // Stamps: every template must render, or the binding fails closed.
    let mut stamp = Vec::with_capacity(b.stamp.len());
    for (key, t) in &b.stamp {
        match t.render(claims) {
            Some(v) => stamp.push((key.clone(), v)),
            None => {
                if explain {
                    let missing = t
                        .missing_claim(claims)
                        .map(|c| c.to_string())
                        .unwrap_or_default();
                    details.push(format!(
                        "stamp {key}: claims.{missing} is missing or not a single value"
                    ));
                }
                let overage = t
                    .missing_claim(claims)
                    .is_some_and(|c| p.claims_overage.iter().any(|o| o == c.root()));
                let why = if overage {
                    reason::CLAIMS_OVERAGE
                } else {
                    reason::STAMP_CLAIM_MISSING
                };
                return Evaluation::deny(why, details);
            }
        }
    }

    // Rate: the binding's own, else the role's.
    let rate = set
        .constraints(b)
        .fold(None, |acc: Option<RateSpec>, c| c.rate.or(acc));
    let rate_key = match rate {
        None => String::new(),
        Some(_) => {
            let value = match &b.rate_key {
                RateKey::Subject => Some(p.subject.clone()).filter(|s| !s.is_empty()),
                RateKey::Claim(path) => path.single(claims),
            };
            match value {
                Some(v) => format!("{}/{v}", b.rule),
                None => {
                    if explain {
                        details.push(
                            "rate_key: the keying claim is missing or not a single value".into(),
                        );
                    }
                    return Evaluation::deny(reason::RATE_KEY_CLAIM_MISSING, details);
                }
            }
        }
    };

    // Batch-level limits always reject.
    for c in set.constraints(b) {
        if let Some(max) = c.max_spans
            && batch.spans as u64 > max
        {
            if explain {
                details.push(format!(
                    "batch has {} spans > max_spans_per_batch {max}",
                    batch.spans
                ));
            }
            return Evaluation::deny(reason::TOO_MANY_SPANS, details);
        }
        if let Some(max) = c.max_bytes
            && batch.bytes as u64 > max
        {
            if explain {
                details.push(format!("batch has {} bytes > max_bytes {max}", batch.bytes));
            }
            return Evaluation::deny(reason::BATCH_TOO_LARGE, details);
        }
    }

    // Per-resource constraints.
    let on_violation = set
        .constraints(b)
        .fold(OnViolation::Reject, |acc, c| c.on_violation.unwrap_or(acc));
    let rendered: Vec<(&Constraints, Rendered)> = set
        .constraints(b)
        .map(|c| {
            let r = c
                .services
                .as_ref()
                .map(|pats| pats.iter().filter_map(|pat| pat.render(claims)).collect());
            (c, r)
        })
        .collect();
    let mut resources = Vec::with_capacity(batch.resources.len());
    let mut dropped: Vec<DroppedCount> = Vec::new();
    for (i, r) in batch.resources.iter().enumerate() {
        match check_resource(&rendered, r, claims) {
            None => resources.push(ResourceVerdict::Keep),
            Some(why) => {
                if explain {
                    details.push(format!(
                        "resource {i}: {}",
                        describe(&rendered, r, claims, why)
                    ));
                }
                match on_violation {
                    OnViolation::Reject => {
                        return Evaluation::deny(why, details);
                    }
                    OnViolation::Drop => {
                        resources.push(ResourceVerdict::Drop {
                            reason: why.to_string(),
                        });
                        match dropped.iter_mut().find(|d| d.reason == why) {
                            Some(d) => {
                                d.resources += 1;
                                d.spans += r.spans;
                            }
                            None => dropped.push(DroppedCount {
                                reason: why,
                                resources: 1,
                                spans: r.spans,
                            }),
                        }
                    }
                }
            }
        }
    }
    Evaluation {
        allowed: true,
        reason: if dropped.is_empty() {
            reason::ALLOWED
        } else {
            reason::ALLOWED_PARTIAL
        },
        stamp,
        resources,
        dropped,
        rate,
        rate_key,
        details,
    }
}

fn attr<'a>(r: &'a ResourceSummary, key: &str) -> Option<&'a str> {
    r.attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The first constraint a resource violates, as a reason code.
fn check_resource(
    rendered: &[(&Constraints, Rendered)],
    r: &ResourceSummary,
    claims: &Map<String, Value>,
) -> Option<&'static str> {
    for (c, services) in rendered {
        if let Some(globs) = services {
            let ok = r
                .service_name
                .as_deref()
                .is_some_and(|name| globs.iter().any(|g| g.matches(name)));
            if !ok {
                return Some(reason::SERVICE_NOT_ALLOWED);
            }
        }
        if r.attributes
            .iter()
            .any(|(k, _)| c.forbid.iter().any(|g| g.matches(k)))
        {
            return Some(reason::ATTRIBUTE_FORBIDDEN);
        }
        if c.require.iter().any(|k| attr(r, k).is_none()) {
            return Some(reason::ATTRIBUTE_MISSING);
        }
        for (key, path) in &c.equal {
            // Absent is fine (combine with require_attributes to demand it);
            // present must equal the claim, and a missing claim fails closed.
            let equal = match (attr(r, key), path.single(claims)) {
                (None, _) => true,
                (Some(a), Some(v)) => a == v,
                (Some(_), None) => false,
            };
            if !equal {
                return Some(reason::ATTRIBUTE_CLAIM_MISMATCH);
            }
        }
        for (key, allowed) in &c.values {
            if !attr(r, key).is_some_and(|v| allowed.iter().any(|a| a == v)) {
                return Some(reason::ATTRIBUTE_VALUE_NOT_ALLOWED);
            }
        }
    }
    None
}

/// Explain a violation in words.
fn describe(
    rendered: &[(&Constraints, Rendered)],
    r: &ResourceSummary,
    claims: &Map<String, Value>,
    why: &str,
) -> String {
    let service = r
        .service_name
        .as_deref()
        .map(|s| Value::String(s.to_string()).to_string())
        .unwrap_or_else(|| "(none)".into());
    match why {
        reason::SERVICE_NOT_ALLOWED => {
            let mut allowed = Vec::new();
            for (c, _) in rendered {
                for pat in c.services.iter().flatten() {
                    match pat.render(claims) {
                        Some(_) => allowed.push(pat.source().to_string()),
                        None => allowed
                            .push(format!("{} (claim missing: matches nothing)", pat.source())),
                    }
                }
            }
            format!(
                "service.name {service} matches none of [{}]",
                allowed.join(", ")
            )
        }
        reason::ATTRIBUTE_FORBIDDEN => {
            let keys: Vec<&str> = rendered
                .iter()
                .flat_map(|(c, _)| {
                    r.attributes
                        .iter()
                        .filter(|(k, _)| c.forbid.iter().any(|g| g.matches(k)))
                        .map(|(k, _)| k.as_str())
                })
                .collect();
            format!(
                "service.name {service}: forbidden attribute(s) {}",
                keys.join(", ")
            )
        }
        reason::ATTRIBUTE_MISSING => {
            let keys: Vec<&str> = rendered
                .iter()
                .flat_map(|(c, _)| {
                    c.require
                        .iter()
                        .filter(|k| attr(r, k).is_none())
                        .map(String::as_str)
                })
                .collect();
            format!(
                "service.name {service}: missing required attribute(s) {}",
                keys.join(", ")
            )
        }
        reason::ATTRIBUTE_CLAIM_MISMATCH => {
            let mut parts = Vec::new();
            for (c, _) in rendered {
                for (key, path) in &c.equal {
                    let a = attr(r, key);
                    let v = path.single(claims);
                    if a.is_some() && a != v.as_deref() {
                        parts.push(format!(
                            "{key}={} but claims.{path}={}",
                            a.map(|s| Value::String(s.to_string()).to_string())
                                .unwrap_or_else(|| "(absent)".into()),
                            v.map(|s| Value::String(s).to_string())
                                .unwrap_or_else(|| "(missing)".into())
                        ));
                    }
                }
            }
            format!("service.name {service}: {}", parts.join("; "))
        }
        reason::ATTRIBUTE_VALUE_NOT_ALLOWED => {
            let parts: Vec<String> = rendered
                .iter()
                .flat_map(|(c, _)| c.values.iter())
                .filter(|(k, allowed)| !attr(r, k).is_some_and(|v| allowed.iter().any(|a| a == v)))
                .map(|(k, allowed)| {
                    format!(
                        "{k}={} is not one of [{}]",
                        attr(r, k)
                            .map(|s| Value::String(s.to_string()).to_string())
                            .unwrap_or_else(|| "(absent)".into()),
                        allowed.join(", ")
                    )
                })
                .collect();
            format!("service.name {service}: {}", parts.join("; "))
        }
        other => other.to_string(),
    }
}

fn denied(
    set: &PolicySet,
    rule: String,
    why: &'static str,
    role: Option<String>,
    shadow: Vec<ShadowHit>,
) -> Decision {
    Decision {
        allowed: false,
        rule,
        reason: why,
        role,
        credential: None,
        stamp: Vec::new(),
        resources: Vec::new(),
        dropped: Vec::new(),
        rate: None,
        rate_key: String::new(),
        shadow,
        protected: set.protected.clone(),
    }
}

/// See [`PolicySet::decide`].
pub(crate) fn decide(
    set: &PolicySet,
    p: &Principal,
    ep: &Endpoint,
    batch: &BatchSummary,
) -> Decision {
    let mut shadow = Vec::new();
    let mut decided: Option<Decision> = None;

    for d in &set.deny {
        if !d.covers(Some(ep)) || (decided.is_some() && d.mode == Mode::Enforce) {
            continue;
        }
        // A deny rule that cannot be evaluated because the token left a claim
        // out (claims overage) denies: fail closed.
        let why = match eval_subjects(&d.subjects, p) {
            SubjectMatch::No => continue,
            SubjectMatch::Yes => reason::EXPLICIT_DENY,
            SubjectMatch::Unknown => reason::CLAIMS_OVERAGE,
        };
        match d.mode {
            Mode::Enforce => {
                decided = Some(denied(set, d.rule.clone(), why, None, Vec::new()));
            }
            Mode::Audit => shadow.push(ShadowHit {
                rule: d.rule.clone(),
                would: "deny",
                reason: why,
            }),
        }
    }
    let mut overage_seen = false;

    for b in &set.bindings {
        if decided.is_some() && b.mode == Mode::Enforce {
            continue;
        }
        if !set.publishes_to(b, ep) {
            continue;
        }
        match eval_subjects(&b.subjects, p) {
            SubjectMatch::Yes => {}
            SubjectMatch::No => continue,
            SubjectMatch::Unknown => {
                overage_seen |= b.mode == Mode::Enforce;
                continue;
            }
        }
        let e = evaluate(set, b, p, batch, false);
        match b.mode {
            Mode::Audit => shadow.push(ShadowHit {
                rule: b.rule.clone(),
                would: e.would(),
                reason: e.reason,
            }),
            Mode::Enforce => {
                decided = Some(if e.allowed {
                    Decision {
                        allowed: true,
                        rule: b.rule.clone(),
                        reason: e.reason,
                        role: set.role_name(b),
                        credential: b.credential.clone(),
                        stamp: e.stamp,
                        resources: e.resources,
                        dropped: e.dropped,
                        rate: e.rate,
                        rate_key: e.rate_key,
                        shadow: Vec::new(),
                        protected: set.protected.clone(),
                    }
                } else {
                    denied(set, b.rule.clone(), e.reason, set.role_name(b), Vec::new())
                });
            }
        }
    }

    // No binding matched; if one might have with the claims the IdP left
    // out, say so instead of a plain no_match.
    let default_reason = if overage_seen {
        reason::CLAIMS_OVERAGE
    } else {
        reason::NO_MATCH
    };
    let mut decision = decided.unwrap_or_else(|| {
        denied(
            set,
            DEFAULT_RULE.to_string(),
            default_reason,
            None,
            Vec::new(),
        )
    });
    decision.shadow = shadow;
    decision
}

/// See [`PolicySet::admin_permissions`].
pub(crate) fn admin_permissions(set: &PolicySet, p: &Principal) -> AdminGrant {
    let mut grant = AdminGrant::default();
    for d in set.deny.iter().filter(|d| d.covers(None)) {
        let why = match eval_subjects(&d.subjects, p) {
            SubjectMatch::No => continue,
            SubjectMatch::Yes => reason::EXPLICIT_DENY,
            SubjectMatch::Unknown => reason::CLAIMS_OVERAGE,
        };
        match d.mode {
            Mode::Enforce => {
                if grant.denied_by.is_none() {
                    grant.denied_by = Some(d.rule.clone());
                }
            }
            Mode::Audit => grant.shadow.push(ShadowHit {
                rule: d.rule.clone(),
                would: "deny",
                reason: why,
            }),
        }
    }
    for b in &set.bindings {
        let Some(role) = set.roles.get(b.role) else {
            continue;
        };
        if role.admin.is_empty() || !any_subject(&b.subjects, p) {
            continue;
        }
        match b.mode {
            Mode::Audit => grant.shadow.push(ShadowHit {
                rule: b.rule.clone(),
                would: "allow",
                reason: reason::ALLOWED,
            }),
            Mode::Enforce if grant.denied_by.is_none() => {
                for perm in &role.admin {
                    if !grant.allows(perm) {
                        grant.permissions.push(AdminPermission {
                            permission: perm.clone(),
                            rule: b.rule.clone(),
                        });
                    }
                }
            }
            Mode::Enforce => {}
        }
    }
    grant
}
