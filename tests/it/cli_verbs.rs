//! The `spangate` binary's verbs as a user runs them: rotating an unknown
//! credential is refused unless `--create`, a closed stdout ends quietly,
//! `config check` reports file:line:column, every verb's `--help` describes
//! its arguments and exit statuses, `status` prints for people or as JSON,
//! `policy explain` exits 3 on deny, and `dev --host 0.0.0.0` (the Docker
//! image's command) serves the walk-through it prints.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{BOOTSTRAP, Harness, Options};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::cli::{self, BIN, Out, ROOT, run_async as spangate};

/// `spangate secrets rotate NAME` with the bootstrap token, the value from
/// the environment, no upstream probe, `flags` before `--admin URL`.
async fn rotate(name: &str, url: &str, flags: &[&str], value: &str) -> Out {
    let mut args = vec![
        "secrets",
        "rotate",
        name,
        "--value-env",
        "NEW_VALUE",
        "--no-verify",
    ];
    args.extend_from_slice(flags);
    args.extend(["--admin", url]);
    spangate(
        &args,
        &[("SPANGATE_ADMIN_TOKEN", BOOTSTRAP), ("NEW_VALUE", value)],
    )
    .await
}

#[tokio::test]
async fn rotating_an_unknown_name_is_refused_unless_create() {
    let h = Harness::start(Options::default()).await;
    let url = h.url();
    // The first credential needs --create too.
    let first = rotate("lightstep-prod", &url, &[], "fresh-token-value-1").await;
    assert_eq!(first.code, 1, "{}{}", first.stdout, first.stderr);
    assert!(
        first
            .stderr
            .contains("no credential named \"lightstep-prod\" (known: none)"),
        "{}",
        first.stderr
    );
    assert!(first.stderr.contains("--create"), "{}", first.stderr);
    assert!(h.shared.secrets.current("lightstep-prod").is_none());

    let created = rotate("lightstep-prod", &url, &["--create"], "fresh-token-value-1").await;
    assert_eq!(created.code, 0, "{}{}", created.stdout, created.stderr);
    assert!(
        created.stdout.contains("created lightstep-prod: v1"),
        "{}",
        created.stdout
    );

    // A typo is refused, names the known credentials, and creates nothing.
    let typo = rotate("lightstep-prd", &url, &[], "fresh-token-value-2").await;
    assert_eq!(typo.code, 1, "{}{}", typo.stdout, typo.stderr);
    assert!(
        typo.stderr
            .contains("no credential named \"lightstep-prd\" (known: lightstep-prod)"),
        "{}",
        typo.stderr
    );
    assert!(
        typo.stderr.contains("404 unknown_credential"),
        "{}",
        typo.stderr
    );
    assert_eq!(h.shared.secrets.names(), vec!["lightstep-prod".to_string()]);
    assert!(
        !typo.stderr.contains("fresh-token-value"),
        "value never echoed"
    );

    // The API itself refuses without `create`, whatever the client.
    let (status, headers, body) = h
        .call(
            "POST",
            "/admin/v1/secrets/other/rotate",
            Some(BOOTSTRAP),
            Some(serde_json::json!({"value": "api-value-12345", "verify": false})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "unknown_credential");
    let id = headers["x-request-id"].to_str().expect("request id");
    let line = &h.audit_for(id)[0];
    assert_eq!(line["reason"], "unknown_credential", "{line}");
    assert_eq!(h.shared.secrets.names(), vec!["lightstep-prod".to_string()]);

    // Rotating the existing one works without --create.
    let ok = rotate("lightstep-prod", &url, &[], "fresh-token-value-3").await;
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout.contains("rotated lightstep-prod: v1"),
        "{}",
        ok.stdout
    );
    h.stop().await;
}

/// Run `args` with stdout a pipe whose reading end is already closed (the
/// reader went away before the first byte, as `head -1` does after one line).
async fn with_closed_stdout(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut child = Command::from(cli::command(args, env))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spangate");
    drop(child.stdout.take());
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("spangate ends")
        .expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_closed_stdout_ends_quietly_without_a_panic() {
    let h = Harness::start(Options::default()).await;
    let url = h.url();
    for format in ["json", "human"] {
        let (code, stderr) = with_closed_stdout(
            &["status", "--format", format, "--admin", &url],
            &[("SPANGATE_ADMIN_TOKEN", BOOTSTRAP)],
        )
        .await;
        assert_eq!(code, 141, "status --format {format}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.is_empty(), "quiet: {stderr}");
    }
    // Verbs that need no server behave the same.
    for args in [
        &["policy", "check", "policies"][..],
        &["policy", "test"][..],
        &["config", "check", "deploy/examples/generic-oidc.yaml"][..],
    ] {
        let (code, stderr) = with_closed_stdout(args, &[]).await;
        assert_eq!(code, 141, "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    h.stop().await;
}

#[tokio::test]
async fn status_prints_a_summary_or_json() {
    let h = Harness::start(Options::default()).await;
    let url = h.url();
    let env = [("SPANGATE_ADMIN_TOKEN", BOOTSTRAP)];
    let human = spangate(&["status", "--format", "human", "--admin", &url], &env).await;
    assert_eq!(human.code, 0, "{}", human.stderr);
    let first = human.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("spangate {}, up ", env!("CARGO_PKG_VERSION"))),
        "{}",
        human.stdout
    );
    for want in [
        "identity providers:",
        "policy: version ",
        "credentials: store file at ",
        "proxy: memory ",
        "admin API: ",
    ] {
        assert!(human.stdout.contains(want), "{want}: {}", human.stdout);
    }
    // Piped (not a terminal), the default is JSON: the admin API's document.
    let auto = spangate(&["status", "--admin", &url], &env).await;
    assert_eq!(auto.code, 0, "{}", auto.stderr);
    let v: serde_json::Value = serde_json::from_str(&auto.stdout).expect("status is JSON");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["policy"]["reload"].is_object(), "{v}");
    let bad = spangate(&["status", "--format", "xml", "--admin", &url], &env).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    h.stop().await;
}

#[tokio::test]
async fn config_check_validates_config_and_policies_with_positions() {
    let ok = spangate(
        &["config", "check", "deploy/examples/generic-oidc.yaml"],
        &[],
    )
    .await;
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.contains("ok (2 policy file(s)"), "{}", ok.stdout);

    let dir = tempfile::tempdir().expect("tempdir");
    let pol = dir.path().join("policies");
    std::fs::create_dir(&pol).expect("mkdir");
    let config = dir.path().join("spangate.yaml");
    std::fs::write(
        &config,
        "server:\n  max_body: 0\nproviders:\n  corp: { issuer: https://sso.example.com, audiences: [spangate] }\n\
         upstreams:\n  backend: { url: \"https://otlp.example.com/v1/traces\" }\npolicies: policies\n",
    )
    .expect("write");
    let out = spangate(&["config", "check", config.to_str().expect("utf-8")], &[]).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let want = format!(
        "{}:2:3: error: server.max_body must be greater than zero",
        config.display()
    );
    assert!(out.stdout.contains(&want), "{}", out.stdout);

    // A valid config whose policy is broken: the policy's file:line:column.
    std::fs::write(
        &config,
        "providers:\n  corp: { issuer: https://sso.example.com, audiences: [spangate] }\n\
         upstreams:\n  backend: { url: \"https://otlp.example.com/v1/traces\" }\n\
         secrets:\n  bootstrap: { ingest: { env: INGEST } }\npolicies: policies\n",
    )
    .expect("write");
    std::fs::write(
        pol.join("a.yaml"),
        "endpoints:\n  traces: { path: /v1/traces, upstream: backend }\nbindings:\n  - role: nope\n    subjects: [{ provider: corp, claims: { sub: a } }]\n",
    )
    .expect("write");
    let out = spangate(&["config", "check", config.to_str().expect("utf-8")], &[]).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let want = format!(
        "{}:4:11: error: unknown role `nope`",
        pol.join("a.yaml").display()
    );
    assert!(out.stdout.contains(&want), "{}", out.stdout);

    // A missing TLS file is an error even though the YAML is valid.
    std::fs::write(
        pol.join("a.yaml"),
        "endpoints:\n  traces: { path: /v1/traces, upstream: backend }\n",
    )
    .expect("write");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        format!("server:\n  tls: {{ cert_file: missing.crt, key_file: missing.key }}\n{text}"),
    )
    .expect("write");
    let out = spangate(&["config", "check", config.to_str().expect("utf-8")], &[]).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("server.tls.cert_file: cannot read"),
        "{}",
        out.stdout
    );

    let missing = spangate(&["config", "check", "/nonexistent/spangate.yaml"], &[]).await;
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stdout
            .contains("/nonexistent/spangate.yaml: error: cannot read"),
        "{}",
        missing.stdout
    );
}

/// Every verb's `--help`: each argument line carries a description, and an
/// "Exit status:" section lists the verb's codes.
#[tokio::test]
async fn help_describes_every_argument_and_exit_status() {
    let verbs: &[&[&str]] = &[
        &[],
        &["serve"],
        &["dev"],
        &["config", "check"],
        &["policy", "check"],
        &["policy", "explain"],
        &["policy", "test"],
        &["policy", "diff"],
        &["policy", "reload"],
        &["policy", "validate"],
        &["secrets", "list"],
        &["secrets", "show"],
        &["secrets", "rotate"],
        &["secrets", "rollback"],
        &["secrets", "retire"],
        &["status"],
    ];
    for verb in verbs {
        let mut args = verb.to_vec();
        args.push("--help");
        let out = spangate(&args, &[]).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        let help = &out.stdout;
        assert!(help.contains("Exit status:\n  0 "), "{args:?}:\n{help}");
        assert!(
            help.contains("  2    the command line is wrong"),
            "{args:?}"
        );
        assert!(
            help.contains("  141  standard output was closed"),
            "{args:?}"
        );
        // Argument and option lines: "  <NAME>  text" / "  -x, --long <V>  text".
        let indent = |l: &str| l.len() - l.trim_start().len();
        let lines: Vec<&str> = help.lines().collect();
        let mut section = "";
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with(' ') && line.ends_with(':') {
                section = line;
                continue;
            }
            if !matches!(section, "Arguments:" | "Options:") || line.trim().is_empty() {
                continue;
            }
            let t = line.trim_start();
            let is_item = t.starts_with('-') || t.starts_with('<') || t.starts_with('[');
            if is_item && indent(line) <= 6 {
                // The description follows on the same line, or (long help)
                // on the next, indented further.
                let same_line = t.contains("  ");
                let next_line = lines
                    .get(i + 1)
                    .is_some_and(|n| !n.trim().is_empty() && indent(n) > indent(line));
                assert!(
                    same_line || next_line,
                    "{args:?}: argument without a description: {line:?}\n{help}"
                );
            }
        }
    }
    let explain = spangate(&["policy", "explain", "--help"], &[]).await;
    assert!(
        explain.stdout.contains("  3    the decision is deny"),
        "{}",
        explain.stdout
    );
    let diff = spangate(&["policy", "diff", "--help"], &[]).await;
    assert!(
        diff.stdout.contains("  4    access widens"),
        "{}",
        diff.stdout
    );
    let rotate = spangate(&["secrets", "rotate", "--help"], &[]).await;
    assert!(rotate.stdout.contains("--create"), "{}", rotate.stdout);
}

#[tokio::test]
async fn explain_exits_3_on_deny_and_0_on_allow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let claims = |name: &str, sub: &str, env: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            serde_json::json!({"sub": sub, "owner_id": "team_demo", "project": "checkout",
                               "project_id": "prj_1", "environment": env})
            .to_string(),
        )
        .expect("write");
        p
    };
    let allow = claims("allow.json", "owner:team_demo", "production");
    let deny = claims("deny.json", "contractor-1", "production");
    for (file, want) in [(&allow, 0), (&deny, 3)] {
        let out = spangate(
            &[
                "policy",
                "explain",
                "--policies",
                "policies",
                "--provider",
                "dev",
                "--endpoint",
                "traces",
                "--claims",
                file.to_str().expect("utf-8"),
            ],
            &[],
        )
        .await;
        assert_eq!(out.code, want, "{}{}", out.stdout, out.stderr);
    }
}

/// The Docker image's command, `spangate dev --host 0.0.0.0`, with ephemeral
/// ports: the warning is loud, and the printed walk-through (token from the
/// dev IdP, then a batch to the OTLP URL) works at the addresses it prints.
#[tokio::test]
async fn dev_on_all_interfaces_warns_and_its_walkthrough_works() {
    let mut child = Command::new(BIN)
        .current_dir(ROOT)
        .args([
            "dev",
            "--host",
            "0.0.0.0",
            "--listen",
            "0.0.0.0:0",
            "--idp-listen",
            "0.0.0.0:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--upstream-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn spangate dev");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut banner = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Audit lines") {
                return true;
            }
        }
        false
    };
    let done = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("banner in time");
    assert!(done, "dev ended early:\n{banner}");
    assert!(
        banner.contains("WARNING: spangate dev is listening beyond loopback"),
        "{banner}"
    );
    assert!(banner.contains("to ANYONE who can reach it"), "{banner}");
    let walkthrough = banner
        .split_once("spangate dev is running")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert!(
        !walkthrough.contains("0.0.0.0"),
        "printed addresses are reachable ones:\n{walkthrough}"
    );
    let field = |label: &str| -> String {
        banner
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {label} in banner:\n{banner}"))
            .to_string()
    };
    let otlp = field("OTLP/HTTP");
    let idp = field("dev IdP");
    assert!(otlp.starts_with("http://localhost:"), "{otlp}");
    assert!(idp.starts_with("http://localhost:"), "{idp}");
    // The printed curl line names the same token URL.
    assert!(
        banner.contains(&format!("-d identity=edge-prod {idp}/token")),
        "{banner}"
    );

    let client = spangate::client::HttpClient::new(Default::default()).expect("client");
    let req = http::Request::post(format!("{idp}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(spangate::client::OutBody::new(bytes::Bytes::from_static(
            b"identity=edge-prod",
        )))
        .expect("request");
    let resp = client
        .send(req, Duration::from_secs(10), 1 << 20)
        .await
        .expect("token endpoint answers at the printed address");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("token JSON");
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let req = http::Request::post(&otlp)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(spangate::client::OutBody::new(bytes::Bytes::from(
            spangate::dev::sample_batch_json("checkout", 2),
        )))
        .expect("request");
    let resp = client
        .send(req, Duration::from_secs(10), 1 << 20)
        .await
        .expect("OTLP endpoint answers at the printed address");
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    child.kill().await.expect("stop dev");
}

#[test]
fn dockerfile_default_command_is_the_first_look() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).expect("Dockerfile");
    assert!(
        text.lines()
            .any(|l| l == r#"CMD ["dev", "--host", "0.0.0.0"]"#),
        "the image's default command is what dev_on_all_interfaces_warns_and_its_walkthrough_works runs"
    );
    assert!(text.contains("EXPOSE 4318 9400"), "{text}");
}
