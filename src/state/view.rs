//! Human rendering of the fleet section of `status` (for the CLI).
//!
//! Input is the JSON the admin API returns, so the CLI renders whatever the
//! server sent without sharing its types; missing fields render as `-`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

/// Render `status.fleet` as text: the state line, then one row per live
/// replica with its version, policy version and the credential versions it
/// injects, and a convergence line per credential and for the policy.
/// Returns `None` when the status has no fleet section (single node).
pub fn render_fleet(status: &Value) -> Option<String> {
    let fleet = status.get("fleet")?;
    if fleet.is_null() {
        return None;
    }
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fleet: {} ({}), {} live replica(s), on_state_unavailable: {}",
        s(fleet, "state"),
        s(fleet, "message"),
        fleet
            .get("live_replicas")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        s(fleet, "on_state_unavailable"),
    );
    if let Some(mode) = fleet.get("mode").and_then(Value::as_str) {
        let node = fleet
            .get("node")
            .and_then(Value::as_str)
            .unwrap_or("none found yet");
        let what = if mode == "sentinel" {
            "master (through Sentinel)"
        } else {
            "node"
        };
        let _ = writeln!(out, "  state store {what}: {node}");
    }
    let empty = Vec::new();
    let replicas = fleet
        .get("replicas")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut names = BTreeSet::new();
    for r in replicas {
        if let Some(c) = r.get("credentials").and_then(Value::as_object) {
            names.extend(c.keys().cloned());
        }
    }
    let _ = writeln!(
        out,
        "  {:<28} {:<9} {:<18} credentials",
        "replica", "version", "policy"
    );
    for r in replicas {
        let this = if r.get("this").and_then(Value::as_bool) == Some(true) {
            " *"
        } else {
            ""
        };
        let creds = names
            .iter()
            .map(|n| {
                let v = r
                    .get("credentials")
                    .and_then(|c| c.get(n))
                    .and_then(Value::as_u64)
                    .map_or("-".to_string(), |v| format!("v{v}"));
                format!("{n}={v}")
            })
            .collect::<Vec<_>>()
            .join(" ");
        let policy: String = s(r, "policy_version").chars().take(16).collect();
        let _ = writeln!(
            out,
            "  {:<28} {:<9} {:<18} {}",
            format!("{}{this}", s(r, "id")),
            s(r, "version"),
            policy,
            creds
        );
    }
    for n in &names {
        let versions: BTreeSet<String> = replicas
            .iter()
            .map(|r| {
                r.get("credentials")
                    .and_then(|c| c.get(n))
                    .and_then(Value::as_u64)
                    .map_or("-".to_string(), |v| format!("v{v}"))
            })
            .collect();
        let _ = writeln!(
            out,
            "  credential {n}: {}",
            if versions.len() <= 1 {
                "converged".to_string()
            } else {
                format!(
                    "NOT converged ({})",
                    versions.into_iter().collect::<Vec<_>>().join(", ")
                )
            }
        );
    }
    let policies: BTreeSet<String> = replicas.iter().map(|r| s(r, "policy_version")).collect();
    let _ = writeln!(
        out,
        "  policy: {}",
        if policies.len() <= 1 {
            "converged"
        } else {
            "NOT converged"
        }
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_replicas_and_convergence() {
        let status = serde_json::json!({"fleet": {
        "state": "ok", "message": "state store reachable", "live_replicas": 2,
        "on_state_unavailable": "local", "mode": "sentinel", "node": "10.0.0.7:6379",
        "replicas": [
            {"id": "a", "version": "0.1.0", "policy_version": "p1", "credentials": {"lp": 2}, "this": true},
            {"id": "b", "version": "0.1.0", "policy_version": "p1", "credentials": {"lp": 1}},
        ]}});
        let text = render_fleet(&status).expect("fleet section");
        assert!(text.contains("2 live replica(s)"), "{text}");
        assert!(
            text.contains("state store master (through Sentinel): 10.0.0.7:6379"),
            "{text}"
        );
        assert!(text.contains("a *"), "{text}");
        assert!(text.contains("lp=v2") && text.contains("lp=v1"), "{text}");
        assert!(
            text.contains("credential lp: NOT converged (v1, v2)"),
            "{text}"
        );
        assert!(text.contains("policy: converged"), "{text}");
        assert!(render_fleet(&serde_json::json!({"fleet": null})).is_none());
        assert!(render_fleet(&serde_json::json!({})).is_none());
    }
}
