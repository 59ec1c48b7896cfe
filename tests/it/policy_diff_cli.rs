//! `spangate policy diff` on two real policy directories: a widening change
//! exits 4 and says which rules and which sample identities widen; the JSON
//! form carries the same; `--allow-widen` and narrowing-only changes exit 0;
//! an invalid directory exits 1 with its file:line:column.

use std::path::Path;

use crate::common::cli::run_plain as spangate;

/// A copy of the shipped policies (without the case directory), edited.
fn policy_copy(root: &Path, name: &str, edit: impl Fn(String) -> String) -> String {
    let dir = root.join(name);
    std::fs::create_dir(&dir).expect("mkdir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for file in ["endpoints.yaml", "edge.yaml"] {
        let text = std::fs::read_to_string(shipped.join(file)).expect("read");
        let text = if file == "edge.yaml" {
            edit(text)
        } else {
            text
        };
        std::fs::write(dir.join(file), text).expect("write");
    }
    dir.to_str().expect("utf-8").to_string()
}

fn without_deny(text: String) -> String {
    let at = text.find("\ndeny:").expect("edge.yaml has a deny section");
    text[..at + 1].to_string()
}

#[test]
fn widening_change_exits_4_and_names_rules_and_identities() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let old = policy_copy(tmp.path(), "old", |t| t);
    let new = policy_copy(tmp.path(), "new", |t| {
        without_deny(t)
            .replace(
                "environment: [production, preview]",
                "environment: [production, preview, development]",
            )
            .replace("max_spans_per_batch: 5000", "max_spans_per_batch: 10000")
    });
    let (code, out, err) = spangate(&["policy", "diff", &old, &new, "--cases", "policies/tests"]);
    assert_eq!(code, 4, "{out}{err}");
    for want in [
        "  role[edge-publisher]\n    widens   publish.max_spans_per_batch: 5000 -> 10000",
        "  binding[edge-publishers]\n    widens   subjects: + dev{environment=production|preview|development, owner_id=team_demo} (was dev{environment=production|preview, owner_id=team_demo})",
        "  deny[contractors]\n    widens   removed (denied dev{sub=contractor-*} on every endpoint and the admin API)",
        "sample identities: 7 checked, 2 changed",
        "development deploys match no binding (deny by default) on traces\n    was deny by default-deny\n    now allow by binding[edge-publishers] with credential lightstep-prod",
        "an explicit deny beats the matching binding on traces\n    was deny by deny[contractors]\n    now allow by binding[edge-publishers]",
        "access WIDENS",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    let (code, out, err) = spangate(&[
        "policy",
        "diff",
        &old,
        &new,
        "--cases",
        "policies/tests",
        "--format",
        "json",
    ]);
    assert_eq!(code, 4, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["widens"], true);
    assert_eq!(v["samples_checked"], 7);
    let rules: Vec<&str> = v["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["effect"] == "widens")
        .filter_map(|c| c["rule"].as_str())
        .collect();
    assert_eq!(
        rules,
        [
            "role[edge-publisher]",
            "binding[edge-publishers]",
            "deny[contractors]"
        ]
    );
    assert_eq!(v["samples"][0]["old"]["decision"], "deny");
    assert_eq!(v["samples"][0]["new"]["decision"], "allow");

    let (code, out, _) = spangate(&["policy", "diff", &old, &new, "--allow-widen"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("access WIDENS"), "still reported: {out}");
}

#[test]
fn narrowing_change_exits_0_and_unchanged_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let old = policy_copy(tmp.path(), "old", |t| t);
    let new = policy_copy(tmp.path(), "new", |t| {
        t.replace(
            "environment: [production, preview]",
            "environment: [production]",
        )
    });
    let (code, out, err) = spangate(&["policy", "diff", &old, &new, "--cases", "policies/tests"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "narrows  subjects: - dev{environment=production|preview, owner_id=team_demo}"
        ),
        "{out}"
    );
    assert!(out.ends_with("access does not widen\n"), "{out}");

    let (code, out, _) = spangate(&["policy", "diff", &old, &old]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no rule changes"), "{out}");
}

#[test]
fn invalid_policy_exits_1_with_position() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let old = policy_copy(tmp.path(), "old", |t| t);
    let new = policy_copy(tmp.path(), "new", |t| {
        t.replace("role: edge-publisher", "role: nope")
    });
    let (code, out, err) = spangate(&["policy", "diff", &old, &new]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&format!("policy {new} is invalid")), "{err}");
    assert!(
        err.contains("edge.yaml:") && err.contains("unknown role `nope`"),
        "{err}"
    );
}

/// `[(rule, [what, …]), …]`: the widening lines of a diff or a reload.
type Widened = Vec<(String, Vec<String>)>;

/// The `widens` changes of `policy diff --format json`, grouped by rule.
fn cli_widened(json: &serde_json::Value) -> Widened {
    let mut out: Widened = Vec::new();
    for c in json["changes"].as_array().expect("changes") {
        if c["effect"] != "widens" {
            continue;
        }
        let (rule, what) = (c["rule"].as_str().unwrap(), c["what"].as_str().unwrap());
        match out.last_mut() {
            Some((r, w)) if r == rule => w.push(what.to_string()),
            _ => out.push((rule.to_string(), vec![what.to_string()])),
        }
    }
    out
}

/// A reload of the running proxy lists in its audit line exactly the
/// widening the CLI prints for the same two directories (one comparison
/// serves both).
#[tokio::test]
async fn reload_audit_lists_the_widening_policy_diff_prints() {
    use crate::common::{Harness, Options};
    let tmp = tempfile::tempdir().expect("tempdir");
    let edit = |t: String| {
        without_deny(t)
            .replace(
                "environment: [production, preview]",
                "environment: [production, preview, development]",
            )
            .replace("max_spans_per_batch: 5000", "max_spans_per_batch: 10000")
    };
    let old = policy_copy(tmp.path(), "old", |t| t);
    let new = policy_copy(tmp.path(), "new", edit);
    let live = policy_copy(tmp.path(), "live", |t| t);

    let (code, out, err) = spangate(&["policy", "diff", &old, &new, "--format", "json"]);
    assert_eq!(code, 4, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let printed = cli_widened(&json);
    let (_, text, _) = spangate(&["policy", "diff", &old, &new]);
    for (rule, what) in &printed {
        for w in what {
            assert!(
                text.contains(&format!("  {rule}\n")) && text.contains(&format!("widens   {w}")),
                "{rule}: {w} in\n{text}"
            );
        }
    }
    let rules: Vec<&str> = printed.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        rules,
        [
            "role[edge-publisher]",
            "binding[edge-publishers]",
            "deny[contractors]"
        ],
        "{printed:?}"
    );

    let h = Harness::start_with(Options {
        policies_dir: Some(live.clone().into()),
        ..Default::default()
    })
    .await;
    // The new edge.yaml replaces the live one atomically (written outside
    // the watched directory, then renamed in).
    let staged = tmp.path().join("edge.yaml.new");
    std::fs::copy(Path::new(&new).join("edge.yaml"), &staged).expect("stage");
    std::fs::rename(&staged, Path::new(&live).join("edge.yaml")).expect("rename");
    let admin = h.token("admin");
    let (status, body) = h.reload_policies(&admin).await;
    assert_eq!(status, 200, "{body}");
    // The reload that installed the new set (the watcher's or the admin
    // call's, whichever came first) carries the widening.
    let line = h
        .audit_lines()
        .into_iter()
        .find(|l| {
            l["kind"] == "policy_reload"
                && l["result"] == "ok"
                && l["version"] == json["new_version"]
        })
        .expect("reload to the new version audited");
    let audited: Widened = line["widened"]
        .as_array()
        .expect("widened listed")
        .iter()
        .map(|w| {
            let what = w["what"].as_array().expect("what");
            (
                w["rule"].as_str().unwrap().to_string(),
                what.iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(audited, printed, "{line}");
    let changes: Vec<&str> = line["widened"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["change"].as_str())
        .collect();
    assert_eq!(changes, ["changed", "changed", "removed"], "{line}");
    h.stop().await;
}
