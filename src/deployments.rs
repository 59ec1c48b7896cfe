//! The deployment link: which deployment of which project published a batch,
//! with ids spangate can vouch for.
//!
//! Vercel's OIDC tokens carry the project (`project_id`) and environment but
//! no deployment id or commit; `@vercel/otel` puts those on the resource
//! (`deployment.id`, `vercel.deployment_id`, `vcs.ref.head.revision`,
//! `vcs.repository.ref.revision`, `vercel.sha`) next to `vercel.project_id`.
//! [`link`] keeps them only when the resource's project id equals the
//! token's; otherwise they are stripped and the audit line says so. A Trace
//! Drain delivery is signed by Vercel and policy has already checked its
//! `vercel.projectId`, so its `vercel.deploymentId` is taken as is.
//!
//! [`DeploymentTracker`] remembers, per project, the last N deployments seen
//! (first/last seen, batches, spans, denied), for a bounded number of
//! projects; the admin API, the CLI and the metrics read its snapshot.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::otlp::{BatchSummary, ResourceSummary};

/// Resource attributes that name a deployment or its commit: kept only when
/// the resource's project id is the token's.
pub const DEPLOYMENT_ATTRIBUTES: &[&str] = &[
    "deployment.id",
    "vercel.deployment_id",
    "vercel.deploymentId",
    "vcs.ref.head.revision",
    "vcs.repository.ref.revision",
    "vercel.sha",
];
/// Where a resource names its project (`@vercel/otel`, then Trace Drains).
pub const PROJECT_ATTRIBUTES: &[&str] = &["vercel.project_id", "vercel.projectId"];
/// Where a resource names its deployment, in order of preference.
const DEPLOYMENT_ID_ATTRIBUTES: &[&str] = &[
    "vercel.deployment_id",
    "deployment.id",
    "vercel.deploymentId",
];
/// Where a resource names its commit.
const REVISION_ATTRIBUTES: &[&str] = &[
    "vcs.ref.head.revision",
    "vercel.sha",
    "vcs.repository.ref.revision",
];

pub const DEFAULT_PER_PROJECT: usize = 20;
pub const DEFAULT_MAX_PROJECTS: usize = 500;
/// Longest id kept (longer values are not tracked: ids are short).
const MAX_ID_LEN: usize = 128;

/// `deployments` in the process config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploymentsConfig {
    /// Deployments remembered per project (the most recent first seen).
    pub per_project: usize,
    /// Projects remembered (the least recently seen is forgotten first).
    pub max_projects: usize,
}

impl Default for DeploymentsConfig {
    fn default() -> Self {
        Self {
            per_project: DEFAULT_PER_PROJECT,
            max_projects: DEFAULT_MAX_PROJECTS,
        }
    }
}

impl DeploymentsConfig {
    /// Problems with the values (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(1..=1000).contains(&self.per_project) {
            out.push("deployments.per_project must be between 1 and 1000".into());
        }
        if !(1..=100_000).contains(&self.max_projects) {
            out.push("deployments.max_projects must be between 1 and 100000".into());
        }
        out
    }
}

/// Who vouches for the resource's project id.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// A Vercel OIDC token: the resource's project id must equal this
    /// `project_id` claim (`None`: the token names no project, nothing links).
    Token { project_id: Option<&'a str> },
    /// A signed Trace Drain delivery (policy checked the project).
    Drain,
}

/// What the link decided for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceLink {
    /// No deployment attributes: nothing to do.
    None,
    /// Trusted: this deployment of this project.
    Linked {
        project: String,
        deployment: String,
        revision: Option<String>,
    },
    /// Deployment attributes whose project does not match: strip these keys.
    Strip { keys: Vec<String>, why: String },
}

/// Decide per resource (same order as `summary.resources`).
pub fn link(trust: Trust<'_>, summary: &BatchSummary) -> Vec<ResourceLink> {
    summary
        .resources
        .iter()
        .map(|r| link_one(trust, r))
        .collect()
}

fn first<'a>(r: &'a ResourceSummary, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| {
        r.attributes
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    })
}

fn link_one(trust: Trust<'_>, r: &ResourceSummary) -> ResourceLink {
    let present: Vec<String> = r
        .attributes
        .iter()
        .filter(|(k, _)| DEPLOYMENT_ATTRIBUTES.contains(&k.as_str()))
        .map(|(k, _)| k.clone())
        .collect();
    if present.is_empty() {
        return ResourceLink::None;
    }
    let resource_project = first(r, PROJECT_ATTRIBUTES);
    let trusted = match trust {
        Trust::Drain => resource_project.is_some(),
        Trust::Token { project_id } => {
            project_id.is_some() && resource_project.is_some() && resource_project == project_id
        }
    };
    if !trusted {
        let why = match (trust, resource_project) {
            (Trust::Token { project_id: None }, _) => "the token names no project_id".to_string(),
            (_, None) => "the resource names no project id".to_string(),
            (Trust::Token { .. }, Some(p)) => {
                format!("resource project id {} is not the token's", clip(p))
            }
            (Trust::Drain, Some(_)) => "unreachable".to_string(),
        };
        return ResourceLink::Strip { keys: present, why };
    }
    let deployment = first(r, DEPLOYMENT_ID_ATTRIBUTES);
    match (resource_project, deployment) {
        (Some(p), Some(d)) if p.len() <= MAX_ID_LEN && d.len() <= MAX_ID_LEN && !d.is_empty() => {
            ResourceLink::Linked {
                project: p.to_string(),
                deployment: d.to_string(),
                revision: first(r, REVISION_ATTRIBUTES)
                    .filter(|s| s.len() <= MAX_ID_LEN)
                    .map(str::to_string),
            }
        }
        _ => ResourceLink::None,
    }
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    serde_json::Value::String(out).to_string()
}

/// One deployment as tracked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeploymentInfo {
    pub deployment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// First and last time seen, seconds since the epoch.
    pub first_seen: u64,
    pub last_seen: u64,
    /// Batches (allowed) and the spans in them.
    pub batches: u64,
    pub spans: u64,
    /// Batches denied by policy, and their spans.
    pub denied_batches: u64,
    pub denied_spans: u64,
}

/// One project with its most recent deployments (newest first seen first).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProjectInfo {
    pub project: String,
    pub last_seen: u64,
    pub deployments: Vec<DeploymentInfo>,
}

#[derive(Debug)]
struct Project {
    last_seen: u64,
    /// Oldest first seen at the front.
    deployments: VecDeque<DeploymentInfo>,
}

#[derive(Debug)]
struct Inner {
    projects: HashMap<String, Project>,
}

/// Bounded memory of deployments per project.
#[derive(Debug)]
pub struct DeploymentTracker {
    per_project: usize,
    max_projects: usize,
    inner: Mutex<Inner>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl DeploymentTracker {
    pub fn new(cfg: &DeploymentsConfig) -> Self {
        Self {
            per_project: cfg.per_project.max(1),
            max_projects: cfg.max_projects.max(1),
            inner: Mutex::new(Inner {
                projects: HashMap::new(),
            }),
        }
    }

    /// Count one batch's resources for a deployment (`allowed` false: denied).
    pub fn record(
        &self,
        project: &str,
        deployment: &str,
        revision: Option<&str>,
        spans: usize,
        allowed: bool,
    ) {
        self.record_at(project, deployment, revision, spans, allowed, now_secs());
    }

    fn record_at(
        &self,
        project: &str,
        deployment: &str,
        revision: Option<&str>,
        spans: usize,
        allowed: bool,
        now: u64,
    ) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if !inner.projects.contains_key(project) && inner.projects.len() >= self.max_projects {
            // Forget the project seen least recently.
            if let Some(oldest) = inner
                .projects
                .iter()
                .min_by_key(|(_, p)| p.last_seen)
                .map(|(k, _)| k.clone())
            {
                inner.projects.remove(&oldest);
            }
        }
        let p = inner
            .projects
            .entry(project.to_string())
            .or_insert_with(|| Project {
                last_seen: now,
                deployments: VecDeque::new(),
            });
        p.last_seen = now;
        let d = match p
            .deployments
            .iter()
            .position(|d| d.deployment == deployment)
        {
            Some(i) => &mut p.deployments[i],
            None => {
                if p.deployments.len() >= self.per_project {
                    p.deployments.pop_front();
                }
                p.deployments.push_back(DeploymentInfo {
                    deployment: deployment.to_string(),
                    revision: None,
                    first_seen: now,
                    last_seen: now,
                    batches: 0,
                    spans: 0,
                    denied_batches: 0,
                    denied_spans: 0,
                });
                let last = p.deployments.len() - 1;
                &mut p.deployments[last]
            }
        };
        d.last_seen = now;
        if d.revision.is_none() {
            d.revision = revision.map(str::to_string);
        }
        if allowed {
            d.batches += 1;
            d.spans += spans as u64;
        } else {
            d.denied_batches += 1;
            d.denied_spans += spans as u64;
        }
    }

    /// Every project (most recently seen first), or one.
    pub fn snapshot(&self, project: Option<&str>) -> Vec<ProjectInfo> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut out: Vec<ProjectInfo> = inner
            .projects
            .iter()
            .filter(|(k, _)| project.is_none_or(|p| p == k.as_str()))
            .map(|(k, p)| ProjectInfo {
                project: k.clone(),
                last_seen: p.last_seen,
                deployments: p.deployments.iter().rev().cloned().collect(),
            })
            .collect();
        out.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then_with(|| a.project.cmp(&b.project))
        });
        out
    }
}

/// Prometheus collector over the tracker: series exist only for the
/// deployments it remembers, so cardinality is at most
/// `max_projects × per_project`.
#[derive(Debug)]
pub struct DeploymentCollector(pub std::sync::Arc<DeploymentTracker>);

impl prometheus_client::collector::Collector for DeploymentCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;

        let snap = self.0.snapshot(None);
        let rows: Vec<(&str, &DeploymentInfo)> = snap
            .iter()
            .flat_map(|p| p.deployments.iter().map(move |d| (p.project.as_str(), d)))
            .collect();
        type Pick = fn(&DeploymentInfo) -> u64;
        let gauges: [(&str, &str, Pick); 2] = [
            (
                "deployment_first_seen_timestamp_seconds",
                "When spangate first saw a deployment (Unix seconds)",
                |d| d.first_seen,
            ),
            (
                "deployment_last_seen_timestamp_seconds",
                "When spangate last saw a deployment (Unix seconds)",
                |d| d.last_seen,
            ),
        ];
        for (name, help, pick) in gauges {
            let mut fam = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (project, d) in &rows {
                let labels = [("project", *project), ("deployment", d.deployment.as_str())];
                ConstGauge::new(pick(d) as i64).encode(fam.encode_family(&labels)?)?;
            }
        }
        let counters: [(&str, &str, Pick); 4] = [
            (
                "deployment_batches",
                "Batches a deployment published (allowed)",
                |d| d.batches,
            ),
            (
                "deployment_spans",
                "Spans in the allowed batches of a deployment",
                |d| d.spans,
            ),
            (
                "deployment_denied_batches",
                "Batches of a deployment denied by policy",
                |d| d.denied_batches,
            ),
            (
                "deployment_denied_spans",
                "Spans in the denied batches of a deployment",
                |d| d.denied_spans,
            ),
        ];
        for (name, help, pick) in counters {
            let mut fam = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (project, d) in &rows {
                let labels = [("project", *project), ("deployment", d.deployment.as_str())];
                ConstCounter::new(pick(d)).encode(fam.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(attrs: &[(&str, &str)]) -> ResourceSummary {
        ResourceSummary {
            service_name: Some("svc".into()),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            spans: 1,
        }
    }

    #[test]
    fn token_project_must_match() {
        let r = res(&[
            ("vercel.project_id", "prj_a"),
            ("deployment.id", "dpl_1"),
            ("vercel.deployment_id", "dpl_1"),
            ("vercel.sha", "abc"),
        ]);
        let linked = link_one(
            Trust::Token {
                project_id: Some("prj_a"),
            },
            &r,
        );
        assert_eq!(
            linked,
            ResourceLink::Linked {
                project: "prj_a".into(),
                deployment: "dpl_1".into(),
                revision: Some("abc".into())
            }
        );
        match link_one(
            Trust::Token {
                project_id: Some("prj_b"),
            },
            &r,
        ) {
            ResourceLink::Strip { keys, why } => {
                assert_eq!(keys.len(), 3);
                assert!(why.contains("prj_a"), "{why}");
            }
            other => panic!("expected strip, got {other:?}"),
        }
        let no_project = res(&[("deployment.id", "dpl_1")]);
        assert!(matches!(
            link_one(
                Trust::Token {
                    project_id: Some("prj_a")
                },
                &no_project
            ),
            ResourceLink::Strip { .. }
        ));
        assert_eq!(
            link_one(
                Trust::Token {
                    project_id: Some("prj_a")
                },
                &res(&[("vercel.project_id", "prj_a")])
            ),
            ResourceLink::None
        );
    }

    #[test]
    fn drain_trusts_its_checked_project() {
        let r = res(&[
            ("vercel.projectId", "prj_d"),
            ("vercel.deploymentId", "dpl_9"),
        ]);
        assert_eq!(
            link_one(Trust::Drain, &r),
            ResourceLink::Linked {
                project: "prj_d".into(),
                deployment: "dpl_9".into(),
                revision: None
            }
        );
    }

    #[test]
    fn tracker_is_bounded() {
        let t = DeploymentTracker::new(&DeploymentsConfig {
            per_project: 2,
            max_projects: 2,
        });
        t.record_at("p1", "d1", None, 3, true, 100);
        t.record_at("p1", "d2", Some("sha"), 1, true, 101);
        t.record_at("p1", "d2", None, 1, false, 102);
        t.record_at("p1", "d3", None, 1, true, 103);
        let s = t.snapshot(Some("p1"));
        let ids: Vec<&str> = s[0]
            .deployments
            .iter()
            .map(|d| d.deployment.as_str())
            .collect();
        assert_eq!(ids, ["d3", "d2"]);
        let d2 = &s[0].deployments[1];
        assert_eq!(
            (d2.first_seen, d2.last_seen, d2.batches, d2.denied_batches),
            (101, 102, 1, 1)
        );
        assert_eq!(d2.revision.as_deref(), Some("sha"));
        t.record_at("p2", "x", None, 1, true, 104);
        t.record_at("p3", "y", None, 1, true, 105);
        let projects: Vec<String> = t.snapshot(None).into_iter().map(|p| p.project).collect();
        assert_eq!(projects, ["p3", "p2"]);
    }
}
