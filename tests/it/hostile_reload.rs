//! Policy reload never serves a half-written set: a file written in pieces
//! is loaded once complete, an empty file is refused, a Kubernetes
//! ConfigMap `..data` swap reloads, and a reload that removes a deny rule
//! or widens a binding says so by rule name in its audit line.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Harness, Options, shipped_policies_unthrottled};
use serde_json::Value;

/// Poll `f` every 50 ms for at most `limit`.
async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

fn reloads(h: &Harness, result: &str) -> Vec<Value> {
    h.audit_lines()
        .into_iter()
        .filter(|l| {
            l["kind"] == "policy_reload" && l["trigger"] == "watch" && l["result"] == result
        })
        .collect()
}

fn edge_yaml() -> String {
    shipped_policies_unthrottled()
        .into_iter()
        .find(|(n, _)| *n == "edge.yaml")
        .map(|(_, t)| t)
        .unwrap()
}

fn with_quiet(quiet: &str) -> Options {
    Options {
        policies: Some(shipped_policies_unthrottled()),
        top_extra: format!("policies_quiet_period: {quiet}\n"),
        ..Default::default()
    }
}

#[tokio::test]
async fn hostile_policy_written_in_pieces_is_never_served_half_written() {
    // Pauses of 500 ms (longer than the old 200 ms debounce) against a 4 s
    // quiet period: the truncated set (valid YAML without its deny section)
    // must never decide a request.
    let h = Harness::start_with(with_quiet("4s")).await;
    let h = Arc::new(h);
    let contractor = h.token("contractor");
    assert_eq!(
        h.send_json(Some(&contractor), "checkout").await.status(),
        403
    );

    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (h, stop, token) = (Arc::clone(&h), Arc::clone(&stop), contractor.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                statuses.push(
                    h.send_json(Some(&token), "checkout")
                        .await
                        .status()
                        .as_u16(),
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            statuses
        })
    };
    let full = edge_yaml();
    let cut = full.find("deny:").expect("edge.yaml has a deny section");
    let path = h.dir.path().join("policies/edge.yaml");
    // Truncate and write the part before `deny:`, then the rest in pieces.
    std::fs::write(&path, &full[..cut]).unwrap();
    let rest = &full[cut..];
    let mid = rest.len() / 2;
    for piece in [&rest[..mid], &rest[mid..]] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(piece.as_bytes()).unwrap();
    }
    assert!(
        eventually(Duration::from_secs(20), || !reloads(&h, "ok").is_empty()).await,
        "the completed file was reloaded"
    );
    stop.store(true, Ordering::Relaxed);
    let statuses = checker.await.unwrap();
    assert!(!statuses.is_empty());
    assert!(
        statuses.iter().all(|s| *s == 403),
        "a request was decided by the partial set: {statuses:?}"
    );
    assert_eq!(reloads(&h, "ok").len(), 1, "one reload, of the whole file");
    assert_eq!(
        h.send_json(Some(&contractor), "checkout").await.status(),
        403
    );
    let edge = h.token("edge-prod");
    assert_eq!(h.send_json(Some(&edge), "checkout").await.status(), 200);
    match Arc::try_unwrap(h) {
        Ok(h) => h.stop().await,
        Err(_) => panic!("harness still shared"),
    }
}

#[tokio::test]
async fn hostile_empty_policy_file_is_refused_and_the_last_set_keeps_serving() {
    let h = Harness::start_with(with_quiet("200ms")).await;
    let path = h.dir.path().join("policies/edge.yaml");
    std::fs::write(&path, "").unwrap();
    assert!(
        eventually(Duration::from_secs(20), || !reloads(&h, "error").is_empty()).await,
        "the empty file was refused"
    );
    let line = reloads(&h, "error").remove(0);
    let errors = line["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors.iter().any(
            |e| e["file"].as_str().is_some_and(|f| f.ends_with("edge.yaml"))
                && e["message"].as_str().is_some_and(|m| m.contains("empty"))
        ),
        "{line}"
    );
    // The last good set still decides: allowed stays allowed, denied denied.
    let edge = h.token("edge-prod");
    assert_eq!(h.send_json(Some(&edge), "checkout").await.status(), 200);
    let contractor = h.token("contractor");
    assert_eq!(
        h.send_json(Some(&contractor), "checkout").await.status(),
        403
    );
    // At start-up an empty file is refused as well.
    let empty = PolicyDir::new(&[("endpoints.yaml", ENDPOINTS), ("edge.yaml", "")]);
    let err = Harness::try_start(Options {
        policies_dir: Some(empty.dir.path().to_path_buf()),
        ..Default::default()
    })
    .await
    .err()
    .expect("empty policy file refused at start");
    assert!(err.contains("edge.yaml") && err.contains("empty"), "{err}");
    h.stop().await;
}

#[tokio::test]
async fn hostile_reload_that_removes_a_deny_rule_or_widens_a_binding_is_audited() {
    let h = Harness::start_with(with_quiet("200ms")).await;
    let path = h.dir.path().join("policies/edge.yaml");
    let full = edge_yaml();
    let no_deny = &full[..full.find("deny:").unwrap()];
    let wider = no_deny.replace(
        "environment: [production, preview]",
        "environment: [production, preview, development]",
    );
    assert_ne!(wider, no_deny);
    // Atomic replace (write + rename) so only the finished file is seen.
    let tmp = h.dir.path().join("edge.yaml.tmp");
    std::fs::write(&tmp, &wider).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || !reloads(&h, "ok").is_empty()).await,
        "reloaded"
    );
    let line = reloads(&h, "ok").remove(0);
    let widened = line["widened"].as_array().cloned().unwrap_or_default();
    let has = |rule: &str, change: &str| {
        widened
            .iter()
            .any(|w| w["rule"].as_str().is_some_and(|r| r.contains(rule)) && w["change"] == change)
    };
    assert!(has("contractors", "removed"), "{line}");
    assert!(has("edge-publishers", "changed"), "{line}");
    assert!(!has("platform-admins", "changed"), "{line}");
    h.stop().await;
}

const ENDPOINTS: &str = "endpoints:\n  traces: { path: /v1/traces, upstream: lightstep }\n";

/// A policy directory laid out like a Kubernetes ConfigMap volume:
/// `..<stamp>/` holds the files, `..data` points at it, and each visible
/// file is a link through `..data`.
struct PolicyDir {
    dir: tempfile::TempDir,
}

impl PolicyDir {
    fn new(files: &[(&str, &str)]) -> PolicyDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        PolicyDir { dir }
    }

    #[cfg(unix)]
    fn configmap(files: &[(&str, &str)]) -> PolicyDir {
        let dir = tempfile::tempdir().unwrap();
        let d = PolicyDir { dir };
        d.publish("..2026_01_01_00_00_00.1", files);
        for (name, _) in files {
            std::os::unix::fs::symlink(Path::new("..data").join(name), d.dir.path().join(name))
                .unwrap();
        }
        d
    }

    /// What the kubelet does: write a new timestamped directory, point
    /// `..data_tmp` at it and rename it over `..data` (atomic).
    #[cfg(unix)]
    fn publish(&self, stamp: &str, files: &[(&str, &str)]) {
        let root = self.dir.path();
        let ts = root.join(stamp);
        std::fs::create_dir(&ts).unwrap();
        for (name, text) in files {
            std::fs::write(ts.join(name), text).unwrap();
        }
        let tmp = root.join("..data_tmp");
        std::os::unix::fs::symlink(stamp, &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
    }
}

#[cfg(unix)]
#[tokio::test]
async fn hostile_configmap_symlink_swap_reloads() {
    let full = edge_yaml();
    let no_deny = full[..full.find("deny:").unwrap()].to_string();
    let cm = PolicyDir::configmap(&[("endpoints.yaml", ENDPOINTS), ("edge.yaml", &no_deny)]);
    let h = Harness::start_with(Options {
        policies_dir: Some(cm.dir.path().to_path_buf()),
        top_extra: "policies_quiet_period: 200ms\n".into(),
        ..Default::default()
    })
    .await;
    let contractor = h.token("contractor");
    assert_eq!(
        h.send_json(Some(&contractor), "checkout").await.status(),
        200
    );
    cm.publish(
        "..2026_01_01_00_05_00.2",
        &[("endpoints.yaml", ENDPOINTS), ("edge.yaml", &full)],
    );
    assert!(
        eventually(Duration::from_secs(20), || !reloads(&h, "ok").is_empty()).await,
        "the ..data swap was picked up"
    );
    assert_eq!(
        h.send_json(Some(&contractor), "checkout").await.status(),
        403
    );
    h.stop().await;
}
