//! `spangate policy test`: table tests for a policy directory.
//!
//! Platform teams keep the decisions they rely on next to the policy, as
//! YAML cases (identity + endpoint + batch → expected decision), and run them
//! in their own CI before a policy change ships. Each case goes through the
//! same `Principal::from_verified_claims` and `PolicySet::decide` that
//! `serve` uses; nothing is simulated.
//!
//! ```yaml
//! cases:
//!   - name: production deploys publish their own project
//!     provider: dev
//!     claims: { sub: "owner:team_demo:project:checkout:environment:production",
//!               owner_id: team_demo, project: checkout, environment: production }
//!     endpoint: traces
//!     batch:                      # optional: one entry per resource
//!       - { service: checkout, spans: 3, attributes: { vercel.project_id: prj_1 } }
//!     # batch_file: batch.json    # or a real OTLP body, relative to this file
//!     expect:
//!       decision: allow           # allow | deny | partial (allowed, some spans dropped)
//!       rule: binding[edge-publishers]
//!       reason: allowed           # optional
//!       dropped_spans: 0          # optional
//!       stamp: { deployment.environment.name: production }   # optional subset
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::identity::Principal;
use crate::otlp::{BatchSummary, ResourceSummary};
use crate::policy::PolicySet;

/// Most cases read from one file (a bound on what a file can make us do).
const MAX_CASES: usize = 10_000;

/// Flags of `spangate policy test`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// Policy directory under test.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// Case files, or directories of `*.yaml` case files.
    #[arg(default_value = "policies/tests")]
    pub cases: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    provider: String,
    claims: serde_json::Map<String, serde_json::Value>,
    endpoint: String,
    #[serde(default)]
    batch: Vec<CaseResource>,
    #[serde(default)]
    batch_file: Option<PathBuf>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseResource {
    #[serde(default)]
    service: Option<String>,
    #[serde(default = "one")]
    spans: usize,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Allow,
    Deny,
    Partial,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Partial => "partial",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: Outcome,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    dropped_spans: Option<usize>,
    #[serde(default)]
    stamp: BTreeMap<String, String>,
}

/// Run `spangate policy test`: exit 0 when every case passes, 1 otherwise.
pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let set = PolicySet::load_dir(&args.policies)
        .map_err(|e| anyhow::anyhow!("policy {} is invalid:\n{e}", args.policies.display()))?;
    let files = case_files(&args.cases)?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        let cases = load_cases(file)?;
        for (i, case) in cases.iter().enumerate() {
            let label = format!("{}#{} {}", file.display(), i + 1, case.name);
            match check(&set, file, case) {
                Ok(summary) => {
                    passed += 1;
                    super::out(format_args!("ok   {label}: {summary}"))?;
                }
                Err(why) => {
                    failed += 1;
                    super::out(format_args!("FAIL {label}: {why}"))?;
                }
            }
        }
    }
    super::out(format_args!(
        "{passed} passed, {failed} failed ({} file(s), policy version {})",
        files.len(),
        set.version()
    ))?;
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The identities, endpoints and batches of the cases in `paths` (files or
/// directories), as samples for `policy diff`; expectations are ignored.
pub(crate) fn samples(paths: &[PathBuf]) -> anyhow::Result<Vec<crate::policy::diff::Sample>> {
    let mut out = Vec::new();
    for file in case_files(paths)? {
        for (i, case) in load_cases(&file)?.into_iter().enumerate() {
            let batch = match &case.batch_file {
                Some(rel) => {
                    let path = file.parent().unwrap_or(Path::new(".")).join(rel);
                    super::load_batch(&path)?.summary
                }
                None => summary_of(&case.batch),
            };
            let issuer = case
                .claims
                .get("iss")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            out.push(crate::policy::diff::Sample {
                label: format!("{}#{} {}", file.display(), i + 1, case.name),
                principal: Principal::from_verified_claims(&case.provider, &issuer, case.claims),
                endpoint: case.endpoint,
                batch,
            });
        }
    }
    Ok(out)
}

/// The case files named by `paths`, directories expanded (sorted, `*.yaml`/`*.yml`).
fn case_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("read {}", p.display()))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("read {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            found.sort();
            if found.is_empty() {
                bail!("{}: no *.yaml case files", p.display());
            }
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn load_cases(file: &Path) -> anyhow::Result<Vec<Case>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    if let Some((line, col)) = crate::policy::locate::flow_too_deep(&text) {
        bail!(
            "{}:{line}:{col}: {}",
            file.display(),
            crate::policy::locate::flow_too_deep_message()
        );
    }
    let parsed: CaseFile = serde_yaml::from_str(&text).map_err(|e| match e.location() {
        Some(l) => anyhow::anyhow!("{}:{}:{}: {e}", file.display(), l.line(), l.column()),
        None => anyhow::anyhow!("{}: {e}", file.display()),
    })?;
    if parsed.cases.len() > MAX_CASES {
        bail!("{}: more than {MAX_CASES} cases", file.display());
    }
    Ok(parsed.cases)
}

/// Decide one case; `Ok` is a one-line summary, `Err` says what differed.
fn check(set: &PolicySet, file: &Path, case: &Case) -> Result<String, String> {
    let endpoint = set
        .endpoint_by_name(&case.endpoint)
        .ok_or_else(|| format!("no endpoint named {:?} in the policy", case.endpoint))?;
    let summary = match &case.batch_file {
        Some(rel) => {
            if !case.batch.is_empty() {
                return Err("give batch or batch_file, not both".into());
            }
            let path = file.parent().unwrap_or(Path::new(".")).join(rel);
            super::load_batch(&path)
                .map_err(|e| format!("{e:#}"))?
                .summary
        }
        None => summary_of(&case.batch),
    };
    let issuer = case
        .claims
        .get("iss")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let principal = Principal::from_verified_claims(&case.provider, &issuer, case.claims.clone());
    let d = set.decide(&principal, endpoint, &summary);
    let dropped = d.dropped_spans();
    let got = match (d.allowed, dropped) {
        (false, _) => Outcome::Deny,
        (true, 0) => Outcome::Allow,
        (true, _) => Outcome::Partial,
    };
    let mut diffs = Vec::new();
    let e = &case.expect;
    if got != e.decision {
        diffs.push(format!(
            "decision: expected {}, got {}",
            e.decision.as_str(),
            got.as_str()
        ));
    }
    if let Some(rule) = &e.rule
        && *rule != d.rule
    {
        diffs.push(format!("rule: expected {rule}, got {}", d.rule));
    }
    if let Some(reason) = &e.reason
        && reason != d.reason
    {
        diffs.push(format!("reason: expected {reason}, got {}", d.reason));
    }
    if let Some(n) = e.dropped_spans
        && n != dropped
    {
        diffs.push(format!("dropped_spans: expected {n}, got {dropped}"));
    }
    for (k, v) in &e.stamp {
        match d.stamp.iter().find(|(sk, _)| sk == k) {
            Some((_, sv)) if sv == v => {}
            Some((_, sv)) => diffs.push(format!("stamp {k}: expected {v:?}, got {sv:?}")),
            None => diffs.push(format!("stamp {k}: expected {v:?}, not stamped")),
        }
    }
    if diffs.is_empty() {
        let mut s = format!("{} {} ({})", got.as_str(), d.rule, d.reason);
        if dropped > 0 {
            let _ = write!(s, ", {dropped} span(s) dropped");
        }
        Ok(s)
    } else {
        Err(format!(
            "{} [decided {} by {} ({})]",
            diffs.join("; "),
            got.as_str(),
            d.rule,
            d.reason
        ))
    }
}

/// A batch summary from the case's shorthand resources.
fn summary_of(resources: &[CaseResource]) -> BatchSummary {
    let resources: Vec<ResourceSummary> = resources
        .iter()
        .map(|r| {
            let mut attributes: Vec<(String, String)> = r
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Some(s) = &r.service
                && !r.attributes.contains_key("service.name")
            {
                attributes.push(("service.name".into(), s.clone()));
            }
            ResourceSummary {
                service_name: r
                    .service
                    .clone()
                    .or_else(|| r.attributes.get("service.name").cloned()),
                attributes,
                spans: r.spans,
            }
        })
        .collect();
    BatchSummary {
        spans: resources.iter().map(|r| r.spans).sum(),
        bytes: 0,
        resources,
    }
}
