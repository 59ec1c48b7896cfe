//! Logs and error messages as people read them, checked on the built
//! binary: no ANSI colour in redirected logs, each message once, file
//! errors with absolute paths and no invented positions, size errors that
//! name the accepted forms, rounded durations, one spelling per enum.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::Harness;

fn spangate(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spangate"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("NO_COLOR")
        .env_remove("SPANGATE_LOG")
        .env_remove("SPANGATE_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run spangate")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A config in a fresh directory; `policies` and `max_body` vary per test.
fn config_dir(policies: &str, max_body: &str, secret_env: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let abs = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::write(
        abs.join("c.yaml"),
        format!(
            r#"server: {{ listen: 127.0.0.1:0, max_body: {max_body} }}
admin: {{ listen: 127.0.0.1:0 }}
upstreams:
  lightstep: {{ url: "http://127.0.0.1:9/v1/traces" }}
secrets:
  bootstrap: {{ lightstep-prod: {{ env: {secret_env} }} }}
policies: {policies}
"#
        ),
    )
    .unwrap();
    (dir, abs)
}

fn repo_policies() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .display()
        .to_string()
}

#[test]
fn missing_secret_is_reported_once_and_redirected_logs_have_no_colour() {
    let (_d, dir) = config_dir(&repo_policies(), "16MiB", "SPANGATE_TEST_UNSET_VAR_4711");
    let out = spangate(&dir, &["serve", "-c", "c.yaml"], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(
        err.matches("environment variable SPANGATE_TEST_UNSET_VAR_4711 is not set")
            .count(),
        1,
        "{err}"
    );
    // A WARN was logged before the error (secrets.store unset), without ANSI.
    assert!(err.contains(" WARN "), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape in redirected log: {err:?}"
    );
    // NO_COLOR is honoured too (a terminal is needed for colour at all;
    // `logging::use_color` is unit-tested for the combination).
    let out = spangate(&dir, &["serve", "-c", "c.yaml"], &[("NO_COLOR", "1")]);
    assert!(!stderr(&out).contains('\u{1b}'));
}

#[test]
fn missing_policy_directory_is_named_by_absolute_path_without_a_position() {
    let (_d, dir) = config_dir("./no-such-policies", "16MiB", "PATH");
    let out = spangate(&dir, &["serve", "-c", "c.yaml"], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let want = format!(
        "{}: cannot read policy directory",
        dir.join("no-such-policies").display()
    );
    assert!(err.contains(&want), "want {want:?} in {err}");
    assert_eq!(
        err.matches("cannot read policy directory").count(),
        1,
        "{err}"
    );
    assert!(!err.contains(":1:1"), "invented position: {err}");
    assert!(!err.contains("/./"), "{err}");

    // `policy check` with a relative directory says the same.
    let out = spangate(&dir, &["policy", "check", "no-such-policies"], &[]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
    assert!(
        text.contains(&format!(
            "{}: error: cannot read policy directory",
            dir.join("no-such-policies").display()
        )),
        "{text}"
    );
    assert!(!text.contains(":1:1"), "{text}");
}

#[test]
fn bad_size_names_the_accepted_forms_at_its_absolute_location() {
    let (_d, dir) = config_dir(&repo_policies(), "16 megs", "PATH");
    let out = spangate(&dir, &["serve", "-c", "c.yaml"], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let want = format!(
        "{}:1:42: server.max_body: invalid size \"16 megs\": expected a plain number of bytes or a number with a unit, e.g. 16MiB, 512KiB, 1GB",
        dir.join("c.yaml").display()
    );
    assert!(err.contains(&want), "want {want:?} in {err}");
    assert!(!err.contains(" at line "), "location printed twice: {err}");
}

#[test]
fn reload_trigger_has_one_spelling_in_logs_and_audit() {
    use spangate::reload::Trigger;
    for t in [Trigger::Watch, Trigger::Signal, Trigger::Admin] {
        // The log field prints `as_str()`; the audit line serializes it.
        assert_eq!(
            serde_json::to_value(t).unwrap(),
            serde_json::Value::from(t.as_str())
        );
        assert_eq!(t.to_string(), t.as_str());
        assert_eq!(t.as_str(), t.as_str().to_ascii_lowercase());
    }
}

/// Log fields are printed for people: no `?` (Debug) formatting in any
/// tracing field of the sources, which is what printed `Some(…)`.
#[test]
fn no_debug_formatted_log_fields() {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, line) in text.lines().enumerate() {
                    let code = line.trim_start();
                    if !code.starts_with("//") && code.contains("= ?") {
                        out.push(format!("{}:{}: {}", p.display(), i + 1, code));
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    assert!(
        found.is_empty(),
        "Debug-formatted fields:\n{}",
        found.join("\n")
    );
}

#[tokio::test]
async fn audit_durations_have_at_most_one_decimal() {
    let h = Harness::start().await;
    let token = h.token("edge-prod");
    assert_eq!(h.send_json(Some(&token), "checkout").await.status(), 200);
    let (status, _) = h
        .admin(http::Method::GET, "/admin/v1/status", Some("wrong"), None)
        .await;
    assert_eq!(status, 401);
    let lines = h.audit_lines();
    let durations: Vec<f64> = lines
        .iter()
        .filter_map(|l| l["duration_ms"].as_f64())
        .collect();
    assert!(durations.len() >= 2, "{lines:?}");
    for d in durations {
        let text = serde_json::Value::from(d).to_string();
        let decimals = text.split_once('.').map_or(0, |(_, f)| f.len());
        assert!(decimals <= 1, "duration_ms {text}");
    }
    h.stop().await;
}
