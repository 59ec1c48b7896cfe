//! Policy file types: exactly what a `policies/*.yaml` file may contain.
//! Unknown fields are errors everywhere. `compile` turns these into the
//! runtime types after validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// One policy file. Every section is optional; files in a directory merge.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Routable endpoints by name.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointFile>,
    /// Roles by name.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleFile>,
    /// Who holds which role, in order (the first matching binding decides).
    #[serde(default)]
    pub bindings: Vec<BindingFile>,
    /// Deny rules; an enforced match beats every binding.
    #[serde(default)]
    pub deny: Vec<DenyFile>,
    /// Resource attribute keys (or prefixes ending in `.`) that clients may not
    /// send; every stamped key is protected as well.
    #[serde(default)]
    pub protected_attributes: Vec<String>,
}

/// `endpoints.<name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointFile {
    /// Request path, e.g. `/v1/traces`.
    pub path: String,
    /// Upstream name from the process config.
    pub upstream: String,
    /// `traces`, `metrics` or `logs`; absent = derived from the path
    /// (`/v1/traces`, `/v1/metrics`, `/v1/logs`, `/traces/otlp/v0.9`),
    /// traces when the path is not a standard one.
    #[serde(default)]
    pub signal: Option<String>,
    /// How callers authenticate: `bearer` (OIDC token, default) or
    /// `vercel-drain` (Vercel Trace Drain signature).
    #[serde(default)]
    pub auth: EndpointAuth,
}

/// How an endpoint's callers authenticate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointAuth {
    /// `Authorization: Bearer <OIDC token>`.
    #[default]
    Bearer,
    /// `x-vercel-signature`: HMAC-SHA1 of the body under a drain's secret.
    VercelDrain,
}

impl EndpointAuth {
    /// `bearer` / `vercel-drain`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointAuth::Bearer => "bearer",
            EndpointAuth::VercelDrain => "vercel-drain",
        }
    }
}

/// `roles.<name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleFile {
    /// What holders may publish (absent: nothing).
    #[serde(default)]
    pub publish: Option<PublishFile>,
    /// Admin API permissions (`secrets:rotate`, `policy:reload`, ...).
    #[serde(default)]
    pub admin: Vec<String>,
}

/// Publish grant and constraints (`roles.<name>.publish`, `bindings[i].publish`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishFile {
    /// Endpoint names (required on a role; on a binding it narrows the role's).
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// `service.name` patterns; absent = any service.
    #[serde(default)]
    pub services: Option<Vec<String>>,
    /// Most items (spans, data points, log records) one batch may carry
    /// (`max_items_per_batch`; `max_spans_per_batch` is the older name).
    #[serde(default, alias = "max_items_per_batch")]
    pub max_spans_per_batch: Option<u64>,
    /// Largest (decompressed) batch, e.g. `4MiB`.
    #[serde(default, deserialize_with = "crate::config::size::deserialize_opt")]
    pub max_bytes: Option<bytesize::ByteSize>,
    /// Rate limit for holders.
    #[serde(default)]
    pub rate: Option<crate::policy::RateSpec>,
    /// Resource attributes every resource must carry.
    #[serde(default)]
    pub require_attributes: Vec<String>,
    /// Resource attribute key patterns no resource may carry.
    #[serde(default)]
    pub forbid_attributes: Vec<String>,
    /// Resource attribute → claim path whose value it must equal.
    #[serde(default)]
    pub attributes_equal_claims: BTreeMap<String, String>,
    /// Resource attribute → the values it may have; every resource must carry
    /// it with one of them (e.g. the projects a Trace Drain may publish for).
    #[serde(default)]
    pub attribute_values: BTreeMap<String, Vec<String>>,
    /// What to do with a non-compliant resource (default `reject`).
    #[serde(default)]
    pub on_violation: Option<OnViolation>,
}

/// One subject matcher.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectFile {
    /// Provider name from the process config.
    pub provider: String,
    /// Claim path → value, list of values, or glob(s).
    #[serde(default)]
    pub claims: BTreeMap<String, serde_yaml::Value>,
}

/// One binding.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingFile {
    /// Rule name (unique across files); default `file#index`.
    #[serde(default)]
    pub name: Option<String>,
    /// Role name.
    pub role: String,
    /// Who (any of).
    pub subjects: Vec<SubjectFile>,
    /// Upstream credential to inject (required when the role publishes).
    #[serde(default)]
    pub credential: Option<String>,
    /// Resource attribute → template over verified claims.
    #[serde(default)]
    pub stamp: BTreeMap<String, String>,
    /// What the rate limit is keyed by: `subject` (default) or `claims.<path>`.
    #[serde(default)]
    pub rate_key: Option<String>,
    /// `enforce` (default) or `audit` (evaluated and reported, not enforced).
    #[serde(default)]
    pub mode: Mode,
    /// Accept a subject matcher that matches every identity of its provider.
    #[serde(default)]
    pub allow_any_subject: bool,
    /// Extra constraints on top of the role's (both must hold).
    #[serde(default)]
    pub publish: Option<PublishFile>,
}

/// One deny rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyFile {
    /// Rule name (unique across files); default `file#index`.
    #[serde(default)]
    pub name: Option<String>,
    /// Who (any of).
    pub subjects: Vec<SubjectFile>,
    /// Endpoint names this rule covers; absent = every endpoint and the admin API.
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// `enforce` (default) or `audit`.
    #[serde(default)]
    pub mode: Mode,
}

/// Whether a rule is enforced or only reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The rule decides.
    #[default]
    Enforce,
    /// Shadow mode: evaluated and reported in `Decision::shadow`, not enforced.
    Audit,
}

impl Mode {
    /// `enforce` / `audit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// What a publish constraint violation does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnViolation {
    /// Deny the whole batch (403).
    #[default]
    Reject,
    /// Drop the non-compliant resources, forward the rest (OTLP partial success).
    Drop,
}

/// Deserialize an optional byte size written as a number or `8MiB`.
pub(crate) fn opt_bytes<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    Ok(crate::config::size::deserialize_opt(de)?.map(|b| b.as_u64()))
}
