//! `spangate deployments [PROJECT] [--json]`: the deployments the running
//! proxy has seen per project (first/last seen, batches, spans, denied), from
//! `GET /admin/v1/deployments` (permission `status:read`).

use std::fmt::Write as _;

use serde::Deserialize;

use crate::admin::client::{AdminClientError, get_json};
use crate::secrets::Secret;

/// Flags of `spangate deployments`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeploymentsArgs {
    /// Only this project id.
    pub project: Option<String>,
    /// Print the admin API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Deserialize)]
struct Answer {
    per_project: usize,
    projects: Vec<Project>,
}

#[derive(Debug, Deserialize)]
struct Project {
    project: String,
    deployments: Vec<Deployment>,
}

#[derive(Debug, Deserialize)]
struct Deployment {
    deployment: String,
    #[serde(default)]
    revision: Option<String>,
    first_seen: u64,
    last_seen: u64,
    batches: u64,
    spans: u64,
    denied_batches: u64,
}

/// Fetch and render.
pub async fn run(
    args: &DeploymentsArgs,
    admin_url: &str,
    token: Option<Secret>,
) -> Result<String, AdminClientError> {
    let path = match &args.project {
        Some(p) => format!("/admin/v1/deployments/{p}"),
        None => "/admin/v1/deployments".to_string(),
    };
    let v = get_json(admin_url, token, &path).await?;
    if args.json {
        let mut s = serde_json::to_string_pretty(&v)
            .map_err(|e| AdminClientError::BadResponse(e.to_string()))?;
        s.push('\n');
        return Ok(s);
    }
    let a: Answer =
        serde_json::from_value(v).map_err(|e| AdminClientError::BadResponse(e.to_string()))?;
    Ok(render(&a))
}

fn time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

fn render(a: &Answer) -> String {
    if a.projects.is_empty() {
        return "no deployments seen yet\n".into();
    }
    let mut out = String::new();
    for p in &a.projects {
        let _ = writeln!(
            out,
            "project {} (last {} deployments kept)",
            p.project, a.per_project
        );
        let _ = writeln!(
            out,
            "  {:<32} {:<12} {:<20} {:<20} {:>8} {:>10} {:>7}",
            "DEPLOYMENT", "REVISION", "FIRST SEEN", "LAST SEEN", "BATCHES", "SPANS", "DENIED"
        );
        for d in &p.deployments {
            let rev: String = d
                .revision
                .as_deref()
                .unwrap_or("-")
                .chars()
                .take(12)
                .collect();
            let _ = writeln!(
                out,
                "  {:<32} {:<12} {:<20} {:<20} {:>8} {:>10} {:>7}",
                d.deployment,
                rev,
                time(d.first_seen),
                time(d.last_seen),
                d.batches,
                d.spans,
                d.denied_batches
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_table() {
        let a: Answer = serde_json::from_value(serde_json::json!({
            "per_project": 20,
            "max_projects": 500,
            "projects": [{"project": "prj_a", "last_seen": 1_700_000_100u64, "deployments": [
                {"deployment": "dpl_2", "revision": "0123456789abcdef", "first_seen": 1_700_000_000u64,
                 "last_seen": 1_700_000_100u64, "batches": 3, "spans": 9, "denied_batches": 1, "denied_spans": 2}
            ]}]
        }))
        .expect("answer");
        let s = render(&a);
        assert!(s.contains("project prj_a"), "{s}");
        assert!(s.contains("dpl_2"), "{s}");
        assert!(s.contains("0123456789ab "), "{s}");
        assert!(s.contains("2023-11-14T22:13:20Z"), "{s}");
    }
}
