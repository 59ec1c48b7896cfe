//! `spangate policy check`: validation plus the lints that need to know the
//! process config (which credentials, upstreams and providers exist, and which
//! claims a provider sends).
//!
//! Errors (refuse the set): everything `load_dir` refuses — syntax, unknown
//! fields, unknown roles/endpoints, bad globs/templates/claim paths, duplicate
//! names, a publish binding without a credential, and a binding subject that
//! matches every identity of its provider without `allow_any_subject: true`.
//! Warnings: unknown credential/upstream/provider, a claim the provider may not
//! send, unused roles, roles that grant nothing, a wildcard service pattern
//! without a claim template, a publish role without `services`, unknown admin
//! permissions, settings that have no effect.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::Diagnostic;
use super::compile::{self, ProviderClaims};

/// Claims a Vercel OIDC token carries (for [`LintContext::with_provider`]).
pub const VERCEL_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "scope",
    "owner",
    "owner_id",
    "project",
    "project_id",
    "environment",
    "user_id",
];

/// What the process config knows; `None` fields are not checked.
#[derive(Debug, Clone, Default)]
pub struct LintContext {
    /// Credential names the secrets store is bootstrapped with.
    pub credentials: Option<BTreeSet<String>>,
    /// Upstream names.
    pub upstreams: Option<BTreeSet<String>>,
    /// Per upstream, the signals it has a target for (an upstream absent
    /// here is not checked).
    pub upstream_signals: BTreeMap<String, Vec<crate::otlp::Signal>>,
    /// Provider names, each with the claims it may send when known.
    pub providers: Option<ProviderClaims>,
}

impl LintContext {
    /// An empty context (no config-dependent lints).
    pub fn new() -> LintContext {
        LintContext::default()
    }

    /// Known credential names.
    pub fn with_credentials<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        names: I,
    ) -> Self {
        self.credentials = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Known upstream names.
    pub fn with_upstreams<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.upstreams = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The signals `upstream` has a target for: an endpoint of another
    /// signal forwarding to it is refused.
    pub fn with_upstream_signals(
        mut self,
        upstream: &str,
        signals: impl IntoIterator<Item = crate::otlp::Signal>,
    ) -> Self {
        self.upstream_signals
            .insert(upstream.to_string(), signals.into_iter().collect());
        self
    }

    /// A known provider, with the claims it may send (`None` = unknown).
    pub fn with_provider<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        name: &str,
        claims: Option<I>,
    ) -> Self {
        self.providers.get_or_insert_with(BTreeMap::new).insert(
            name.to_string(),
            claims.map(|c| c.into_iter().map(Into::into).collect()),
        );
        self
    }

    /// Only the signals each upstream of `config` has a target for: what a
    /// running server checks on every policy load (an endpoint that could
    /// never forward is refused, the last good policy keeps serving).
    pub fn upstream_targets(config: &crate::config::Config) -> LintContext {
        let mut ctx = LintContext::new();
        for (name, up) in &config.upstreams {
            let signals = crate::otlp::Signal::ALL
                .into_iter()
                .filter(|s| up.target(*s).is_some());
            ctx = ctx.with_upstream_signals(name, signals);
        }
        ctx
    }

    /// Providers, upstreams and bootstrapped credentials of a process config.
    /// A provider with `preset: vercel` gets [`VERCEL_CLAIMS`]; other claim
    /// lists are unknown (add them with [`LintContext::with_provider`]).
    pub fn from_config(config: &crate::config::Config) -> LintContext {
        let mut ctx = LintContext::new()
            .with_credentials(config.secrets.bootstrap.keys().cloned())
            .with_upstreams(config.upstreams.keys().cloned());
        ctx.upstream_signals = LintContext::upstream_targets(config).upstream_signals;
        for (name, provider) in &config.providers {
            let claims = match provider.preset {
                Some(crate::identity::Preset::Vercel) => Some(VERCEL_CLAIMS.iter().copied()),
                _ => None,
            };
            ctx = ctx.with_provider(name, claims);
        }
        if !config.drains.is_empty() {
            // Trace Drain deliveries are principals of their own provider.
            ctx = ctx.with_provider(crate::drains::PROVIDER, Some(["sub", "drain"]));
        }
        ctx
    }
}

/// Result of checking a policy directory.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Problems that refuse the set.
    pub errors: Vec<Diagnostic>,
    /// Problems worth fixing that do not refuse the set.
    pub warnings: Vec<Diagnostic>,
    /// Files read.
    pub files: usize,
    /// Version of the set when it is valid.
    pub version: Option<String>,
}

impl CheckReport {
    /// No errors.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.errors {
            writeln!(f, "{}: error: {}", d.location(), d.message)?;
        }
        for d in &self.warnings {
            writeln!(f, "{}: warning: {}", d.location(), d.message)?;
        }
        match &self.version {
            Some(v) if self.errors.is_empty() => write!(
                f,
                "policy ok: {} file(s), version {v}, {} warning(s)",
                self.files,
                self.warnings.len()
            ),
            _ => write!(
                f,
                "policy invalid: {} error(s), {} warning(s)",
                self.errors.len(),
                self.warnings.len()
            ),
        }
    }
}

/// Validate and lint every policy file in `dir`.
pub fn check_dir(dir: &Path, ctx: &LintContext) -> CheckReport {
    let sources = match compile::read_dir(dir) {
        Ok(s) => s,
        Err(errors) => {
            return CheckReport {
                errors,
                warnings: Vec::new(),
                files: 0,
                version: None,
            };
        }
    };
    let compiled = compile::compile(&sources, Some(ctx));
    CheckReport {
        version: compiled.set.as_ref().map(|s| s.version().to_string()),
        errors: compiled.errors,
        warnings: compiled.warnings,
        files: compiled.files,
    }
}
