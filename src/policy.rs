//! Policy: files, compile + lint, the pure `decide`, explain, snapshots.
//!
//! A policy directory holds `*.yaml`/`*.yml` files that merge into one
//! [`PolicySet`]: endpoints, roles, bindings (who holds a role), deny rules and
//! protected attributes. `docs/policy.md` is the full reference.
//!
//! - [`PolicySet::load_dir`] reads, validates and lints a directory; every
//!   problem comes back with its `file:line:column` ([`model`] are the file
//!   types, [`locate`] maps YAML nodes to positions).
//! - [`PolicySet::decide`] is the pure authorization function: enforced deny
//!   rules first, then the first binding whose subject matches and whose role
//!   publishes to the endpoint; no match is a deny. Every decision names the
//!   rule that made it.
//! - [`explain()`] says why, rule by rule; [`check_dir`] adds the lints that
//!   need the process config.
//! - [`PolicyHolder`] swaps whole snapshots; a failed reload keeps the last good set.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::identity::Principal;
use crate::otlp::BatchSummary;

pub mod claims;
pub mod compile;
mod decide;
pub mod diff;
pub mod explain;
mod holder;
pub mod lint;
pub mod locate;
pub mod matcher;
pub mod model;
pub mod template;

pub use diff::{Widening, widening_changes};
pub use explain::{Explanation, explain};
pub use holder::PolicyHolder;
pub use lint::{CheckReport, LintContext, VERCEL_CLAIMS, check_dir};
pub use model::{EndpointAuth, Mode, OnViolation};

/// Stable, low-cardinality reason codes carried by [`Decision::reason`],
/// [`ResourceVerdict::Drop`] and [`ShadowHit::reason`].
pub mod reason {
    /// A binding allowed the whole batch.
    pub const ALLOWED: &str = "allowed";
    /// A binding allowed the batch and some resources were dropped.
    pub const ALLOWED_PARTIAL: &str = "allowed_partial";
    /// No binding matched the principal for this endpoint (default deny).
    pub const NO_MATCH: &str = "no_match";
    /// An enforced deny rule matched.
    pub const EXPLICIT_DENY: &str = "explicit_deny";
    /// The decision needs a claim the IdP left out of the token (claims
    /// overage, e.g. Entra ID `groups`): an enforced deny rule that reads it
    /// denies; a binding that reads it does not match.
    pub const CLAIMS_OVERAGE: &str = "claims_overage";
    /// A stamp template of the matching binding names a missing claim.
    pub const STAMP_CLAIM_MISSING: &str = "stamp_claim_missing";
    /// The binding's rate key names a missing claim (or the subject is empty).
    pub const RATE_KEY_CLAIM_MISSING: &str = "rate_key_claim_missing";
    /// A resource's `service.name` matches no allowed pattern (or is absent).
    pub const SERVICE_NOT_ALLOWED: &str = "service_not_allowed";
    /// A resource lacks a required attribute.
    pub const ATTRIBUTE_MISSING: &str = "attribute_missing";
    /// A resource carries a forbidden attribute.
    pub const ATTRIBUTE_FORBIDDEN: &str = "attribute_forbidden";
    /// A resource attribute does not equal the claim it must equal.
    pub const ATTRIBUTE_CLAIM_MISMATCH: &str = "attribute_claim_mismatch";
    /// The batch has more spans than `max_spans_per_batch`.
    pub const TOO_MANY_SPANS: &str = "too_many_spans";
    /// The batch is larger than `max_bytes`.
    pub const BATCH_TOO_LARGE: &str = "batch_too_large";
    /// A resource attribute is absent or has a value `attribute_values` does not list.
    pub const ATTRIBUTE_VALUE_NOT_ALLOWED: &str = "attribute_value_not_allowed";

    /// Every reason a whole batch can be denied with.
    pub const DENY: [&str; 12] = [
        NO_MATCH,
        EXPLICIT_DENY,
        CLAIMS_OVERAGE,
        STAMP_CLAIM_MISSING,
        RATE_KEY_CLAIM_MISSING,
        SERVICE_NOT_ALLOWED,
        ATTRIBUTE_MISSING,
        ATTRIBUTE_FORBIDDEN,
        ATTRIBUTE_CLAIM_MISMATCH,
        ATTRIBUTE_VALUE_NOT_ALLOWED,
        TOO_MANY_SPANS,
        BATCH_TOO_LARGE,
    ];
}

/// A routable endpoint: request path → upstream name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Endpoint name (`endpoints.<name>`), used by roles and deny rules.
    pub name: String,
    /// Request path, e.g. `/v1/traces`.
    pub path: String,
    /// Upstream name from the process config.
    pub upstream: String,
    /// What the endpoint's bodies hold.
    #[serde(serialize_with = "signal_name")]
    pub signal: crate::otlp::Signal,
    /// How callers of this endpoint authenticate.
    pub auth: model::EndpointAuth,
}

fn signal_name<S: serde::Serializer>(s: &crate::otlp::Signal, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

/// A policy diagnostic with its location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// File path as given to the loader.
    pub file: String,
    /// Line, 1-based; 0 when the problem has no position in the file.
    pub line: usize,
    /// Column, 1-based; 0 with line 0.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    /// `file:line:column`, or just `file` when the problem has no position
    /// in it (a directory that cannot be read, a file too large).
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location(), self.message)
    }
}

/// All diagnostics of a failed load.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct PolicyErrors(pub Vec<Diagnostic>);

/// What a decision did with one resource of the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum ResourceVerdict {
    /// Forward this resource.
    Keep,
    /// Drop this resource's spans (`reason` is a [`reason`] code).
    Drop {
        /// Why (a [`reason`] code).
        reason: String,
    },
}

/// Rate limit declared by a role or binding. Every field is optional; a
/// missing one is not limited. The limiter (`crate::ratelimit`) keys buckets
/// by [`Decision::rate_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Requests (batches) per second.
    #[serde(default)]
    pub requests_per_second: Option<u64>,
    /// Items (spans, data points, log records) per second
    /// (`items_per_second`; `spans_per_second` is the older name).
    #[serde(default, alias = "items_per_second")]
    pub spans_per_second: Option<u64>,
    /// Decompressed bytes per second (a number or `8MiB`).
    #[serde(default, deserialize_with = "model::opt_bytes")]
    pub bytes_per_second: Option<u64>,
    /// Bucket size in seconds of each rate (default
    /// [`RateSpec::DEFAULT_BURST_SECONDS`]): a bucket holds `rate × burst`.
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RateSpec {
    /// Default `burst`: one second's worth.
    pub const DEFAULT_BURST_SECONDS: u32 = 1;

    /// `burst` or its default.
    pub fn burst_seconds(&self) -> u32 {
        self.burst.unwrap_or(Self::DEFAULT_BURST_SECONDS)
    }

    /// Validation problems (empty = valid).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let rates = [
            ("requests_per_second", self.requests_per_second),
            ("spans_per_second", self.spans_per_second),
            ("bytes_per_second", self.bytes_per_second),
        ];
        if rates.iter().all(|(_, v)| v.is_none()) {
            out.push("rate needs at least one of requests_per_second, spans_per_second, bytes_per_second".into());
        }
        for (name, v) in rates {
            if v == Some(0) {
                out.push(format!("rate.{name} must be at least 1"));
            }
        }
        if self.burst == Some(0) {
            out.push("rate.burst must be at least 1 (second)".into());
        }
        out
    }
}

impl std::fmt::Display for RateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [
            ("requests_per_second", self.requests_per_second),
            ("spans_per_second", self.spans_per_second),
            ("bytes_per_second", self.bytes_per_second),
        ];
        for (name, v) in parts {
            if let Some(v) = v {
                write!(f, "{name}={v} ")?;
            }
        }
        write!(f, "burst={}s", self.burst_seconds())
    }
}

/// A rule in audit (shadow) mode that matched: what it would have done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowHit {
    /// The rule (`deny[...]`, `binding[...]`).
    pub rule: String,
    /// `deny`, `allow` or `drop`.
    pub would: &'static str,
    /// The [`reason`] code it would have given.
    pub reason: &'static str,
}

/// Spans dropped for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedCount {
    /// A [`reason`] code.
    pub reason: &'static str,
    /// Resources dropped for this reason.
    pub resources: usize,
    /// Spans in those resources.
    pub spans: usize,
}

/// The outcome of `decide`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Whether the batch may be forwarded (possibly with resources dropped).
    pub allowed: bool,
    /// The rule that made the decision (`deny[name]`, `binding[file.yaml#0]`, `default-deny`).
    pub rule: String,
    /// Low-cardinality [`reason`] code.
    pub reason: &'static str,
    /// Role of the deciding binding.
    pub role: Option<String>,
    /// Credential to inject (allowed only).
    pub credential: Option<String>,
    /// Verified attributes to stamp onto every resource (allowed only).
    pub stamp: Vec<(String, String)>,
    /// Per-resource verdicts in batch order (allowed only; empty on deny).
    pub resources: Vec<ResourceVerdict>,
    /// Dropped resources and spans by reason (allowed with `on_violation: drop`).
    pub dropped: Vec<DroppedCount>,
    /// Rate limit to apply (allowed only).
    pub rate: Option<RateSpec>,
    /// Limiter bucket key: `<rule>/<key value>` (empty when `rate` is `None`).
    pub rate_key: String,
    /// Audit-mode rules that matched, and what they would have done.
    pub shadow: Vec<ShadowHit>,
    /// Attribute keys (exact, or prefixes ending in `.`) to strip from what
    /// clients send; see [`is_protected`].
    pub protected: Vec<String>,
}

impl Decision {
    /// Total spans dropped.
    pub fn dropped_spans(&self) -> usize {
        self.dropped.iter().map(|d| d.spans).sum()
    }
}

/// Whether `key` is protected: equal to an entry, or starting with an entry
/// that ends in `.`.
pub fn is_protected(protected: &[String], key: &str) -> bool {
    protected
        .iter()
        .any(|p| key == p || (p.ends_with('.') && key.starts_with(p.as_str())))
}

/// One admin permission and the rule that granted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminPermission {
    /// e.g. `secrets:rotate`.
    pub permission: String,
    /// The granting rule (`binding[...]`).
    pub rule: String,
}

/// Which admin permissions a principal holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdminGrant {
    /// Granted permissions (first granting binding per permission).
    pub permissions: Vec<AdminPermission>,
    /// The enforced deny rule that removed every permission, if any.
    pub denied_by: Option<String>,
    /// Audit-mode rules that matched.
    pub shadow: Vec<ShadowHit>,
}

impl AdminGrant {
    /// Whether `permission` is granted.
    pub fn allows(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p.permission == permission)
    }

    /// The rule that decides `permission`: the granting binding, the deny
    /// rule, or `default-deny`.
    pub fn rule_for(&self, permission: &str) -> &str {
        if let Some(rule) = &self.denied_by {
            return rule;
        }
        self.permissions
            .iter()
            .find(|p| p.permission == permission)
            .map(|p| p.rule.as_str())
            .unwrap_or(decide::DEFAULT_RULE)
    }
}

/// A compiled, immutable policy set.
#[derive(Debug, Default)]
pub struct PolicySet {
    endpoints: Vec<Endpoint>,
    roles: Vec<compile::Role>,
    bindings: Vec<compile::Binding>,
    deny: Vec<compile::DenyRule>,
    protected: Vec<String>,
    version: String,
    warnings: Vec<Diagnostic>,
}

impl PolicySet {
    /// Load and compile every `*.yaml`/`*.yml` file in `dir` (sorted by name,
    /// hidden files skipped). Any error — syntax, unknown field, bad reference,
    /// a lint that would fail open — refuses the whole set.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyErrors> {
        PolicySet::load_dir_in(dir, None)
    }

    /// [`PolicySet::load_dir`] with what the process config knows (`ctx`):
    /// an endpoint whose upstream has no target for its signal is refused.
    pub fn load_dir_in(dir: &Path, ctx: Option<&LintContext>) -> Result<PolicySet, PolicyErrors> {
        let sources = compile::read_dir(dir).map_err(PolicyErrors)?;
        let compiled = compile::compile(&sources, ctx);
        match compiled.set {
            Some(set) => Ok(set),
            None => Err(PolicyErrors(compiled.errors)),
        }
    }

    /// Compile policy files given as `(file name, contents)`, in the given
    /// order, with the same validation as [`PolicySet::load_dir`] (for tests,
    /// fuzzing and validating a policy before it is written).
    pub fn from_texts(files: &[(&str, &str)]) -> Result<PolicySet, PolicyErrors> {
        let sources: Vec<compile::Source> = files
            .iter()
            .map(|(name, text)| compile::Source {
                display: (*name).to_string(),
                name: (*name).to_string(),
                text: (*text).to_string(),
            })
            .collect();
        let compiled = compile::compile(&sources, None);
        match compiled.set {
            Some(set) => Ok(set),
            None => Err(PolicyErrors(compiled.errors)),
        }
    }

    /// The endpoint serving `path`.
    pub fn endpoint_by_path(&self, path: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.path == path)
    }

    /// The endpoint named `name`.
    pub fn endpoint_by_name(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// Every endpoint, in load order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Every credential a binding names (sorted, deduplicated).
    pub fn credentials_referenced(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&String> = self
            .bindings
            .iter()
            .filter_map(|b| b.credential.as_ref())
            .collect();
        set.into_iter().cloned().collect()
    }

    /// Short hash of the files' names and contents.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Warnings found while loading (log them; they do not refuse the set).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// Protected attribute keys/prefixes (declared plus every stamped key).
    pub fn protected_attributes(&self) -> &[String] {
        &self.protected
    }

    /// The pure authorization function.
    pub fn decide(
        &self,
        principal: &Principal,
        endpoint: &Endpoint,
        batch: &BatchSummary,
    ) -> Decision {
        decide::decide(self, principal, endpoint, batch)
    }

    /// The admin permissions `principal` holds.
    pub fn admin_permissions(&self, principal: &Principal) -> AdminGrant {
        decide::admin_permissions(self, principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_keys_and_prefixes() {
        let p = vec!["spangate.".to_string(), "enduser.id".to_string()];
        assert!(is_protected(&p, "spangate.rule"));
        assert!(is_protected(&p, "enduser.id"));
        assert!(!is_protected(&p, "enduser.idx"));
        assert!(!is_protected(&p, "spangate"));
        assert!(!is_protected(&p, "service.name"));
    }

    #[test]
    fn rate_spec_problems() {
        let r: RateSpec = serde_yaml::from_str("{bytes_per_second: 8MiB}").unwrap();
        assert_eq!(r.bytes_per_second, Some(8 * 1024 * 1024));
        assert!(r.problems().is_empty());
        assert_eq!(r.burst_seconds(), 1);
        let r: RateSpec = serde_yaml::from_str("{burst: 0}").unwrap();
        assert_eq!(r.problems().len(), 2);
        assert!(serde_yaml::from_str::<RateSpec>("{rps: 1}").is_err());
    }
}
