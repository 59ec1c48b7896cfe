//! Policy hot reload: admin endpoint, file watcher, SIGHUP, validation, and a
//! broken reload that keeps the last good set.
//!
//! The policy engine in this branch accepts any directory, so the broken-file
//! cases run the reloader with a precheck that parses every YAML file for
//! real (serde_yaml) and reports file:line — the same path a failing policy
//! loader takes.

use crate::harness;

use std::sync::Arc;
use std::time::Duration;

use harness::{BOOTSTRAP, Harness, Options, eventually};
use serde_json::json;
use spangate::policy::{Diagnostic, PolicyErrors};
use spangate::reload::Precheck;

/// Parse every *.yaml file in the directory; report syntax errors with file:line.
fn yaml_precheck() -> Precheck {
    Arc::new(|dir: &std::path::Path| {
        let mut errors = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| {
                PolicyErrors(vec![Diagnostic {
                    file: dir.display().to_string(),
                    line: 0,
                    column: 0,
                    message: e.to_string(),
                }])
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        entries.sort();
        for path in entries {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(&text) {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((0, 0));
                errors.push(Diagnostic {
                    file: path.display().to_string(),
                    line,
                    column,
                    message: "invalid YAML".into(),
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PolicyErrors(errors))
        }
    })
}

const BROKEN: &str = "endpoints:\n  traces: { path: /v1/traces\nroles: [\n";

fn reload_lines(h: &Harness, trigger: &str) -> Vec<serde_json::Value> {
    h.audit_lines()
        .into_iter()
        .filter(|l| l["kind"] == "policy_reload" && l["trigger"] == trigger)
        .collect()
}

#[tokio::test]
async fn admin_reload_replaces_the_set_and_is_audited() {
    let h = Harness::start(Options::default()).await;
    let before = h.shared.policy.current();
    let (status, _, body) = h
        .call("POST", "/admin/v1/policies/reload", Some(BOOTSTRAP), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reloaded"], true);
    assert!(
        !Arc::ptr_eq(&before, &h.shared.policy.current()),
        "a new set was published"
    );
    let lines = reload_lines(&h, "admin");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["result"], "ok");
    assert_eq!(lines[0]["actor"], "bootstrap-token");
    let admin: Vec<_> = h
        .audit_lines()
        .into_iter()
        .filter(|l| l["kind"] == "admin" && l["action"] == "policy.reload")
        .collect();
    assert_eq!(admin[0]["result"], "ok");
    assert_eq!(h.reloader.status().reloads, 1);
    h.stop().await;
}

#[tokio::test]
async fn broken_policy_reload_keeps_old_set_and_is_reported() {
    let h = Harness::start(Options {
        precheck: Some(yaml_precheck()),
        ..Default::default()
    })
    .await;
    let good = h.shared.policy.current();
    let bad_file = h.policies.join("team-a.yaml");
    std::fs::write(&bad_file, BROKEN).expect("write broken");

    let (status, _, body) = h
        .call("POST", "/admin/v1/policies/reload", Some(BOOTSTRAP), None)
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "policy_invalid");
    let err = &body["errors"][0];
    assert!(
        err["file"].as_str().unwrap_or("").ends_with("team-a.yaml"),
        "{body}"
    );
    assert!(err["line"].as_u64().unwrap_or(0) > 0, "{body}");
    assert!(
        Arc::ptr_eq(&good, &h.shared.policy.current()),
        "the running set is unchanged"
    );

    // Reported in status, audited, logged at WARN with file:line.
    let (_, _, status_body) = h
        .call("GET", "/admin/v1/status", Some(BOOTSTRAP), None)
        .await;
    let reload = &status_body["policy"]["reload"];
    assert_eq!(reload["last_result"], "error");
    assert_eq!(reload["failures"], 1);
    assert!(
        reload["last_error"][0]["file"]
            .as_str()
            .unwrap_or("")
            .ends_with("team-a.yaml")
    );
    let lines = reload_lines(&h, "admin");
    assert_eq!(lines[0]["result"], "error");
    assert!(lines[0]["errors"][0]["line"].as_u64().unwrap_or(0) > 0);
    let logs = harness::log_text();
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("policy reload failed")
            && l.contains("team-a.yaml")),
        "no WARN line with the file"
    );
    let (_, _, ready) = h.call("GET", "/readyz", None, None).await;
    assert_eq!(ready["policy_last_reload"], "error");

    // Fixed: the next reload succeeds and clears the error.
    std::fs::write(&bad_file, "endpoints: {}\n").expect("fix");
    let (status, _, _) = h
        .call("POST", "/admin/v1/policies/reload", Some(BOOTSTRAP), None)
        .await;
    assert_eq!(status, 200);
    assert!(!Arc::ptr_eq(&good, &h.shared.policy.current()));
    assert!(h.reloader.status().last_error.is_none());
    h.stop().await;
}

#[tokio::test]
async fn validate_is_a_dry_run_with_errors() {
    let h = Harness::start(Options {
        precheck: Some(yaml_precheck()),
        ..Default::default()
    })
    .await;
    let running = h.shared.policy.current();
    let (status, _, body) = h
        .call_raw(
            "POST",
            "/admin/v1/policies/validate",
            Some(BOOTSTRAP),
            Vec::new(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["valid"], true);

    let (status, _, body) = h
        .call(
            "POST",
            "/admin/v1/policies/validate",
            Some(BOOTSTRAP),
            Some(json!({"files": {"ok.yaml": "endpoints: {}\n", "bad.yaml": BROKEN}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["valid"], false);
    assert_eq!(
        body["errors"][0]["file"], "bad.yaml",
        "temp dir is not shown: {body}"
    );
    assert!(body["errors"][0]["line"].as_u64().unwrap_or(0) > 0);

    let (status, _, body) = h
        .call(
            "POST",
            "/admin/v1/policies/validate",
            Some(BOOTSTRAP),
            Some(json!({"files": {"../escape.yaml": "a: 1\n"}})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_file_name"))
    );
    assert!(
        Arc::ptr_eq(&running, &h.shared.policy.current()),
        "validation never swaps the set"
    );
    assert_eq!(h.reloader.status().reloads, 0);
    h.stop().await;
}

#[tokio::test]
async fn watcher_picks_up_changed_and_broken_files() {
    let h = Harness::start(Options {
        precheck: Some(yaml_precheck()),
        spawn_reloader: true,
        ..Default::default()
    })
    .await;
    assert!(h.reloader.status().watching);
    let before = h.shared.policy.current();
    std::fs::write(h.policies.join("base.yaml"), "endpoints: {}\nroles: {}\n").expect("edit");
    let r = Arc::clone(&h.reloader);
    let audit = h.audit.clone();
    let watched = |result: &'static str| {
        let audit = audit.clone();
        move || {
            audit.lines().iter().any(|l| {
                l["kind"] == "policy_reload" && l["trigger"] == "watch" && l["result"] == result
            })
        }
    };
    assert!(
        eventually(Duration::from_secs(10), watched("ok")).await,
        "watcher did not reload"
    );
    assert!(!Arc::ptr_eq(&before, &h.shared.policy.current()));

    let good = h.shared.policy.current();
    std::fs::write(h.policies.join("base.yaml"), BROKEN).expect("break");
    assert!(
        eventually(Duration::from_secs(10), watched("error")).await,
        "watcher did not report the broken file"
    );
    assert!(r.status().failures >= 1);
    assert!(
        Arc::ptr_eq(&good, &h.shared.policy.current()),
        "broken file did not replace the set"
    );
    let (_, _, status_body) = h
        .call("GET", "/admin/v1/status", Some(BOOTSTRAP), None)
        .await;
    assert_eq!(status_body["policy"]["reload"]["last_result"], "error");
    assert_eq!(status_body["policy"]["reload"]["watching"], true);
    h.stop().await;
}
