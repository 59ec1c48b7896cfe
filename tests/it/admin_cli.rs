//! The CLI's admin client against the real admin server.

use crate::harness;

use std::sync::Arc;

use harness::{BOOTSTRAP, Harness, Options, Upstream};
use spangate::admin::client::{AdminClientError, AdminCommand, ValueSource, run};
use spangate::policy::{Diagnostic, PolicyErrors};
use spangate::secrets::Secret;

fn token() -> Option<Secret> {
    Some(Secret::new(BOOTSTRAP.to_string()))
}

fn rotate(
    name: &str,
    value: ValueSource,
    verify: bool,
    force: bool,
    grace: Option<&str>,
) -> AdminCommand {
    AdminCommand::SecretsRotate {
        name: name.into(),
        value,
        grace: grace.map(str::to_string),
        verify,
        force,
        upstream: None,
        not_after: None,
        create: true,
    }
}

#[tokio::test]
async fn cli_client_drives_the_whole_lifecycle() {
    let up = Upstream::start(&["cli-token-v1"]).await;
    let h = Harness::start(Options {
        upstreams: vec![("lightstep".into(), up.url())],
        ..Default::default()
    })
    .await;
    let url = h.url();
    let files = tempfile::tempdir().expect("tempdir");
    let v1 = files.path().join("v1");
    std::fs::write(&v1, "cli-token-v1\n").expect("v1");
    let v2 = files.path().join("v2");
    std::fs::write(&v2, "cli-token-v2\n").expect("v2");
    let v3 = files.path().join("v3");
    std::fs::write(&v3, "cli-token-v3").expect("v3");

    // No token: a clear error naming the env var.
    let err = run(AdminCommand::SecretsList, &url, None)
        .await
        .expect_err("401");
    assert!(matches!(err, AdminClientError::Unauthenticated { .. }));
    assert!(err.to_string().contains("SPANGATE_ADMIN_TOKEN"), "{err}");

    let out = run(AdminCommand::SecretsList, &url, token())
        .await
        .expect("list");
    assert_eq!(out, "no credentials\n");

    // v1 from a file (trailing newline trimmed), verified.
    let out = run(
        rotate("lp", ValueSource::File(v1), true, false, None),
        &url,
        token(),
    )
    .await
    .expect("rotate v1");
    assert!(
        out.contains(&format!(
            "created lp: v1 (sha256:{})",
            spangate::fingerprint(b"cli-token-v1")
        )),
        "{out}"
    );
    assert!(
        out.contains("verify against lightstep: accepted (HTTP 200)"),
        "{out}"
    );
    assert_eq!(up.hits()[0].token.as_deref(), Some("cli-token-v1"));

    // v2 is rejected by the upstream...
    let err = run(
        rotate("lp", ValueSource::File(v2.clone()), true, false, Some("1h")),
        &url,
        token(),
    )
    .await
    .expect_err("rejected");
    match &err {
        AdminClientError::Api { status, code, .. } => {
            assert_eq!((*status, code.as_str()), (422, "upstream_rejected"))
        }
        other => panic!("unexpected error: {other}"),
    }
    // ...and accepted with force.
    let out = run(
        rotate("lp", ValueSource::File(v2), true, true, Some("1h")),
        &url,
        token(),
    )
    .await
    .expect("forced");
    assert!(out.contains("rotated lp: v1"), "{out}");
    assert!(out.contains("-> v2"), "{out}");
    assert!(out.contains("stays valid as previous until"), "{out}");
    assert!(out.contains("forced"), "{out}");

    let out = run(AdminCommand::SecretsList, &url, token())
        .await
        .expect("list");
    assert!(
        out.contains("lp") && out.contains("v2") && out.contains("v1"),
        "{out}"
    );
    let out = run(
        AdminCommand::SecretsShow { name: "lp".into() },
        &url,
        token(),
    )
    .await
    .expect("show");
    assert!(
        out.contains("previous") && out.contains("grace until"),
        "{out}"
    );

    let out = run(
        AdminCommand::SecretsRollback { name: "lp".into() },
        &url,
        token(),
    )
    .await
    .expect("rollback");
    assert!(out.contains("rolled back lp: v2"), "{out}");
    assert_eq!(
        h.shared.secrets.current("lp").expect("cred").value.expose(),
        "cli-token-v1"
    );
    let out = run(
        AdminCommand::SecretsRetire {
            name: "lp".into(),
            version: 2,
        },
        &url,
        token(),
    )
    .await
    .expect("retire");
    assert!(out.contains("already retired"), "{out}");

    let out = run(
        rotate("lp", ValueSource::File(v3), false, false, Some("1h")),
        &url,
        token(),
    )
    .await
    .expect("v3");
    assert!(out.contains("verify: skipped"), "{out}");
    let out = run(
        AdminCommand::SecretsRetire {
            name: "lp".into(),
            version: 1,
        },
        &url,
        token(),
    )
    .await
    .expect("retire v1");
    assert!(out.contains("retired lp v1"), "{out}");
    let err = run(
        AdminCommand::SecretsRetire {
            name: "lp".into(),
            version: 3,
        },
        &url,
        token(),
    )
    .await
    .expect_err("current");
    assert!(err.to_string().contains("cannot_retire_current"), "{err}");

    let out = run(AdminCommand::PolicyReload, &url, token())
        .await
        .expect("reload");
    assert!(out.starts_with("policy reloaded"), "{out}");
    let out = run(AdminCommand::Status, &url, token())
        .await
        .expect("status");
    assert!(out.contains("\"rotations\": 3"), "{out}");

    // Missing env var for the value: clear local error, nothing sent.
    let before = up.hits().len();
    let err = run(
        rotate(
            "lp",
            ValueSource::Env("SPANGATE_TEST_UNSET_VALUE_VAR".into()),
            true,
            false,
            None,
        ),
        &url,
        token(),
    )
    .await
    .expect_err("unset");
    assert!(
        err.to_string().contains("SPANGATE_TEST_UNSET_VALUE_VAR"),
        "{err}"
    );
    assert_eq!(up.hits().len(), before);

    h.assert_never_leaked(&["cli-token-v1", "cli-token-v2", "cli-token-v3"]);
    h.stop().await;
}

#[tokio::test]
async fn cli_policy_validate_reports_file_line_errors() {
    let precheck: spangate::reload::Precheck = Arc::new(|dir: &std::path::Path| {
        let mut errs = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            if let Err(err) = serde_yaml::from_str::<serde_yaml::Value>(&text) {
                errs.push(Diagnostic {
                    file: e.path().display().to_string(),
                    line: err.location().map_or(0, |l| l.line()),
                    column: err.location().map_or(0, |l| l.column()),
                    message: "invalid YAML".into(),
                });
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(PolicyErrors(errs))
        }
    });
    let h = Harness::start(Options {
        precheck: Some(precheck),
        ..Default::default()
    })
    .await;
    let url = h.url();
    let files = tempfile::tempdir().expect("tempdir");
    let good = files.path().join("good.yaml");
    std::fs::write(&good, "endpoints: {}\n").expect("good");
    let bad = files.path().join("bad.yaml");
    std::fs::write(&bad, "roles: [\n  - a\n  b: {\n").expect("bad");

    let out = run(
        AdminCommand::PolicyValidate { files: vec![] },
        &url,
        token(),
    )
    .await
    .expect("server dir valid");
    assert_eq!(out, "policy is valid\n");
    let out = run(
        AdminCommand::PolicyValidate {
            files: vec![good.clone()],
        },
        &url,
        token(),
    )
    .await
    .expect("valid file");
    assert_eq!(out, "policy is valid\n");
    let err = run(
        AdminCommand::PolicyValidate {
            files: vec![good, bad],
        },
        &url,
        token(),
    )
    .await
    .expect_err("invalid");
    let text = err.to_string();
    assert!(matches!(err, AdminClientError::PolicyInvalid(_)));
    assert!(text.contains("bad.yaml:"), "{text}");

    // A broken server-side reload comes back as PolicyInvalid too.
    std::fs::write(h.policies.join("broken.yaml"), "a: [\n").expect("break");
    let err = run(AdminCommand::PolicyReload, &url, token())
        .await
        .expect_err("reload refused");
    assert!(
        matches!(err, AdminClientError::PolicyInvalid(ref t) if t.contains("broken.yaml")),
        "{err}"
    );
    h.stop().await;
}

#[tokio::test]
async fn cli_reports_unreachable_admin_and_bad_urls() {
    let dead = harness::dead_addr().await;
    let err = run(
        AdminCommand::SecretsList,
        &format!("http://{dead}"),
        token(),
    )
    .await
    .expect_err("unreachable");
    assert!(matches!(err, AdminClientError::Unreachable { .. }), "{err}");
    assert!(!err.to_string().contains(BOOTSTRAP));
    let err = run(AdminCommand::SecretsList, "ftp://127.0.0.1:1", token())
        .await
        .expect_err("bad url");
    assert!(matches!(err, AdminClientError::BadUrl { .. }));
}

const STDIN_CHILD_URL: &str = "SPANGATE_TEST_STDIN_CHILD_URL";

/// Not a test of its own: the child process of
/// `cli_rotate_reads_the_value_from_stdin`. Without the env var it returns.
#[tokio::test]
async fn stdin_rotate_child() {
    let Ok(url) = std::env::var(STDIN_CHILD_URL) else {
        return;
    };
    let out = run(
        rotate("lp", ValueSource::Stdin, false, false, None),
        &url,
        token(),
    )
    .await
    .expect("child rotate");
    print!("CHILD-OUTPUT {out}");
}

#[tokio::test]
async fn cli_rotate_reads_the_value_from_stdin() {
    use std::io::Write;
    let h = Harness::start(Options::default()).await;
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "admin_cli::stdin_rotate_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(STDIN_CHILD_URL, h.url())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"stdin-token-value\n")
        .expect("write");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("child output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("CHILD-OUTPUT created lp: v1"), "{text}");
    assert!(!text.contains("stdin-token-value"));
    assert_eq!(
        h.shared.secrets.current("lp").expect("cred").value.expose(),
        "stdin-token-value"
    );
    h.stop().await;
}

#[tokio::test]
async fn cli_rotate_sends_quotes_and_backslashes_exactly_and_shows_the_request_id_on_errors() {
    let h = Harness::start(Options::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("value");
    // JSON-escaped on the way (", \), decoded by the server into the Secret.
    std::fs::write(&file, b"cli\"quoted\\back/slash\n").expect("write");
    let out = run(
        rotate("lp", ValueSource::File(file), false, false, None),
        &h.url(),
        token(),
    )
    .await
    .expect("rotate");
    assert!(out.contains("created lp: v1"), "{out}");
    assert_eq!(
        h.shared.secrets.current("lp").expect("cred").value.expose(),
        "cli\"quoted\\back/slash"
    );
    // An error names the server's request id, which is in the audit line.
    let err = run(
        AdminCommand::SecretsRollback { name: "lp".into() },
        &h.url(),
        token(),
    )
    .await
    .expect_err("no previous");
    let AdminClientError::Api {
        status, request_id, ..
    } = &err
    else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(*status, 409);
    let id = request_id.clone().expect("request id");
    assert!(
        err.to_string().contains(&format!("(request id {id})")),
        "{err}"
    );
    assert_eq!(h.audit_for(&id)[0]["action"], "secrets.rollback");
    h.stop().await;
}

#[tokio::test]
async fn cli_refuses_oversize_and_non_utf8_value_files_without_calling_the_server() {
    let h = Harness::start(Options::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'v'; 1 << 20]).expect("write");
    let latin = dir.path().join("latin1");
    std::fs::write(&latin, [b'a', 0xe9, b'b']).expect("write");
    for (file, why) in [(big, "too_large"), (latin, "not UTF-8")] {
        let err = run(
            rotate("lp", ValueSource::File(file), false, false, None),
            &h.url(),
            token(),
        )
        .await
        .expect_err("refused");
        assert!(matches!(err, AdminClientError::Value(_)), "{err}");
        assert!(err.to_string().contains(why), "{err}");
    }
    assert!(h.audit_lines().is_empty(), "nothing reached the server");
    assert!(h.shared.secrets.current("lp").is_none());
    h.stop().await;
}
