//! `check_dir`: errors where a policy would fail open, warnings with the
//! process-config context, and the reload path of `PolicyHolder`.

use std::path::{Path, PathBuf};

use spangate::policy::{CheckReport, LintContext, PolicyHolder, VERCEL_CLAIMS, check_dir};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

fn write(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn dev_context() -> LintContext {
    LintContext::new()
        .with_credentials(["lightstep-prod"])
        .with_upstreams(["lightstep"])
        .with_provider("dev", None::<Vec<String>>)
}

/// `(file name:line:column, message)` of each warning.
fn warnings(report: &CheckReport) -> Vec<(String, String)> {
    report
        .warnings
        .iter()
        .map(|d| {
            let file = Path::new(&d.file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (format!("{file}:{}:{}", d.line, d.column), d.message.clone())
        })
        .collect()
}

#[test]
fn shipped_policies_check_clean() {
    let report = check_dir(&shipped(), &dev_context());
    assert!(report.is_ok(), "{report}");
    assert!(report.warnings.is_empty(), "{report}");
    assert_eq!(report.files, 3);
    let text = report.to_string();
    assert!(text.starts_with("policy ok: 3 file(s), version "), "{text}");
}

/// The commented-out Vercel example, uncommented, lints clean against a
/// config with a `vercel` provider that sends Vercel's claims.
#[test]
fn vercel_example_lints_clean_when_uncommented() {
    let text = std::fs::read_to_string(shipped().join("vercel.yaml")).unwrap();
    let start = text.find("# bindings:").expect("example bindings");
    let body: String = text[start..]
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .or_else(|| l.strip_prefix('#'))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = write(&[
        (
            "endpoints.yaml",
            &std::fs::read_to_string(shipped().join("endpoints.yaml")).unwrap(),
        ),
        (
            "edge.yaml",
            &std::fs::read_to_string(shipped().join("edge.yaml")).unwrap(),
        ),
        ("vercel.yaml", &body),
    ]);
    let ctx = dev_context().with_provider("vercel", Some(VERCEL_CLAIMS.iter().copied()));
    let report = check_dir(dir.path(), &ctx);
    assert!(report.is_ok(), "{report}");
    assert!(report.warnings.is_empty(), "{report}");
}

#[test]
fn context_warnings() {
    let policy = r#"
endpoints:
  traces: { path: /v1/traces, upstream: lightstep }
  logs: { path: /v1/logs, upstream: elsewhere }
roles:
  pub:
    publish:
      endpoints: [traces]
      services: ["${claims.project}", "api-*"]
      attributes_equal_claims: { vercel.team: claims.team_id }
  unused:
    admin: [secrets:read]
  nothing: {}
  admin:
    admin: [secrets:rotate, secrets:explode]
bindings:
  - name: b
    role: pub
    credential: lightstep-staging
    rate_key: claims.region
    subjects: [{ provider: vercel, claims: { owner_id: team_a, colour: blue } }]
    stamp: { deployment.environment.name: "${claims.environment}", x: "${claims.cost_centre}" }
  - name: a
    role: admin
    credential: lightstep-prod
    stamp: { y: z }
    subjects: [{ provider: okta, claims: { groups: admins } }]
  - name: n
    role: nothing
    subjects: [{ provider: vercel, claims: { owner_id: team_b } }]
"#;
    let dir = write(&[("p.yaml", policy)]);
    let ctx = LintContext::new()
        .with_credentials(["lightstep-prod"])
        .with_upstreams(["lightstep"])
        .with_provider("vercel", Some(VERCEL_CLAIMS.iter().copied()));
    let report = check_dir(dir.path(), &ctx);
    assert!(report.is_ok(), "{report}");
    let got = warnings(&report);
    let expected: Vec<(&str, &str)> = vec![
        (
            "p.yaml:4:37",
            "unknown upstream `elsewhere` (not in the process config)",
        ),
        (
            "p.yaml:9:39",
            "service pattern `api-*` has a wildcard but no claim template: any holder may publish as any matching service",
        ),
        ("p.yaml:11:3", "role `unused` is not used by any binding"),
        (
            "p.yaml:13:3",
            "role `nothing` grants nothing (no publish, no admin)",
        ),
        (
            "p.yaml:15:29",
            "unknown admin permission `secrets:explode` (known: secrets:read, secrets:rotate, policy:reload, policy:validate, status:read, spool:manage)",
        ),
        (
            "p.yaml:18:11",
            "provider `vercel` may not send claim `team_id` (reads claims.team_id)",
        ),
        (
            "p.yaml:19:17",
            "unknown credential `lightstep-staging` (not bootstrapped in the process config)",
        ),
        (
            "p.yaml:20:15",
            "provider `vercel` may not send claim `region` (reads claims.region)",
        ),
        (
            "p.yaml:21:64",
            "provider `vercel` may not send claim `colour` (reads claims.colour)",
        ),
        (
            "p.yaml:22:71",
            "provider `vercel` may not send claim `cost_centre` (reads claims.cost_centre)",
        ),
        (
            "p.yaml:25:17",
            "credential has no effect: the role does not publish",
        ),
        (
            "p.yaml:26:5",
            "stamp has no effect: the role does not publish",
        ),
        (
            "p.yaml:27:28",
            "unknown provider `okta` (not in the process config)",
        ),
    ];
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, expected, "{report}");
    let text = report.to_string();
    assert!(
        text.contains("p.yaml:19:17: warning: unknown credential"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "policy ok: 1 file(s), version {}, 13 warning(s)",
            report.version.clone().unwrap()
        )),
        "{text}"
    );
}

#[test]
fn check_reports_errors_and_warnings_together() {
    let dir = write(&[(
        "p.yaml",
        "endpoints:\n  t: { path: /v1/traces, upstream: up }\nroles:\n  r: { publish: { endpoints: [t] } }\nbindings:\n  - { role: r, credential: c, subjects: [{ provider: p, claims: { sub: \"*\" } }] }\n",
    )]);
    let report = check_dir(dir.path(), &LintContext::new());
    assert!(!report.is_ok());
    assert_eq!(report.errors.len(), 1, "{report}");
    assert_eq!((report.errors[0].line, report.errors[0].column), (6, 42));
    assert_eq!(
        warnings(&report),
        vec![(
            "p.yaml:4:8".to_string(),
            "no `services`: holders may publish any service.name".to_string()
        )]
    );
    let text = report.to_string();
    assert!(
        text.contains("p.yaml:6:42: error: subject matches every identity of provider `p`"),
        "{text}"
    );
    assert!(
        text.ends_with("policy invalid: 1 error(s), 1 warning(s)"),
        "{text}"
    );
}

#[test]
fn holder_keeps_last_good_set_on_broken_reload() {
    let dir = write(&[(
        "a.yaml",
        "endpoints:\n  traces: { path: /v1/traces, upstream: ls }\n",
    )]);
    let holder = PolicyHolder::load(dir.path()).unwrap();
    let v1 = holder.current().version().to_string();
    let before = holder.current();

    std::fs::write(dir.path().join("b.yaml"), "roles:\n  r: { publsh: {} }\n").unwrap();
    let err = holder.reload().unwrap_err();
    assert!(
        err.to_string()
            .contains("b.yaml:2:8: roles.r: unknown field `publsh`"),
        "{err}"
    );
    assert_eq!(holder.current().version(), v1, "the old set keeps serving");
    assert!(std::sync::Arc::ptr_eq(&before, &holder.current()));
    assert!(holder.current().endpoint_by_path("/v1/traces").is_some());
    assert_eq!(
        holder.last_error().map(|e| e.to_string()),
        Some(err.to_string())
    );

    std::fs::write(
        dir.path().join("b.yaml"),
        "endpoints:\n  logs: { path: /v1/logs, upstream: ls }\n",
    )
    .unwrap();
    holder.reload().unwrap();
    assert_ne!(holder.current().version(), v1);
    assert!(holder.current().endpoint_by_path("/v1/logs").is_some());
    assert!(holder.last_error().is_none());
    // The snapshot taken before the reload is unchanged.
    assert!(before.endpoint_by_path("/v1/logs").is_none());
}

#[test]
fn holder_refuses_invalid_policy_at_start() {
    let dir = write(&[("a.yaml", "endpoints: [")]);
    let err = PolicyHolder::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("a.yaml:"), "{err}");
}

#[test]
fn a_set_without_endpoints_warns() {
    let dir = write(&[("a.yaml", "# only comments\n")]);
    let report = check_dir(dir.path(), &LintContext::new());
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        warnings(&report),
        vec![(
            "a.yaml:1:1".to_string(),
            "no endpoints defined: every request will be 404".to_string()
        )]
    );
}

#[test]
fn lint_context_from_process_config() {
    let cfg = r#"
providers:
  dev: { issuer: "http://127.0.0.1:9", audiences: [spangate] }
  vercel: { issuer: "https://oidc.vercel.com/team_abc", audiences: ["https://vercel.com/team_abc"], preset: vercel }
upstreams:
  lightstep: { url: "https://ingest.lightstep.com/traces/otlp/v0.9" }
secrets:
  bootstrap: { lightstep-prod: { env: LIGHTSTEP_ACCESS_TOKEN } }
"#;
    let config = match spangate::config::Config::parse(Path::new("spangate.yaml"), cfg) {
        Ok(c) => c,
        Err(e) => panic!("test config refused: {e:?}"),
    };
    let ctx = LintContext::from_config(&config);
    assert_eq!(ctx.credentials.as_ref().map(|c| c.len()), Some(1));
    assert!(
        ctx.upstreams
            .as_ref()
            .is_some_and(|u| u.contains("lightstep"))
    );
    let providers = ctx.providers.as_ref().unwrap();
    assert_eq!(providers.get("dev"), Some(&None));
    assert!(
        providers["vercel"]
            .as_ref()
            .is_some_and(|c| c.contains("project_id"))
    );
    let report = check_dir(&shipped(), &ctx);
    assert!(report.is_ok() && report.warnings.is_empty(), "{report}");
}

#[test]
fn binding_narrowing_outside_the_role_warns() {
    let dir = write(&[(
        "p.yaml",
        "endpoints:\n  t: { path: /t, upstream: up }\n  l: { path: /l, upstream: up }\nroles:\n  r: { publish: { endpoints: [t], services: [s] } }\nbindings:\n  - role: r\n    credential: c\n    subjects: [{ provider: p, claims: { a: b } }]\n    publish: { endpoints: [t, l] }\n",
    )]);
    let report = check_dir(dir.path(), &LintContext::new());
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        warnings(&report),
        vec![(
            "p.yaml:10:31".to_string(),
            "endpoint `l` is not in role `r`'s publish.endpoints: the binding never applies to it"
                .to_string()
        )]
    );
}

/// Upstreams of a real process config: `std` has a standard `/v1/traces`
/// url (every signal derives), `ingest` a custom url (traces only), `grpc`
/// speaks OTLP/gRPC (every signal has its service).
fn upstreams_config() -> spangate::config::Config {
    spangate::config::Config::parse(
        Path::new("spangate.yaml"),
        "upstreams:\n  std: { url: \"http://127.0.0.1:1/v1/traces\" }\n  ingest: { url: \"http://127.0.0.1:1/ingest\" }\n  grpc: { url: \"http://127.0.0.1:1\", protocol: grpc }\n",
    )
    .expect("config")
}

/// An endpoint whose upstream has no target for its signal could never
/// forward: `policy check` and every load refuse it at file:line, and a
/// running holder keeps its last good set.
#[test]
fn an_endpoint_whose_upstream_has_no_target_for_its_signal_is_refused() {
    let cfg = upstreams_config();
    let good = "endpoints:\n  t: { path: /v1/traces, upstream: ingest }\n  m: { path: /v1/metrics, upstream: std }\n  l: { path: /v1/logs, upstream: grpc }\n";
    let dir = write(&[("a.yaml", good)]);
    let report = check_dir(dir.path(), &LintContext::from_config(&cfg));
    assert!(report.is_ok(), "{report}");

    let holder =
        PolicyHolder::load_in(dir.path(), Some(LintContext::upstream_targets(&cfg))).unwrap();
    let v1 = holder.current().version().to_string();
    std::fs::write(
        dir.path().join("b.yaml"),
        "endpoints:\n  logs_custom:\n    path: /ingest/logs\n    signal: logs\n    upstream: ingest\n",
    )
    .unwrap();
    let report = check_dir(dir.path(), &LintContext::from_config(&cfg));
    let expected = "endpoint `logs_custom` carries logs but upstream `ingest` has no logs target (it forwards traces): give the upstream a `preset`, a standard `/v1/traces` url or `paths.logs`";
    assert!(!report.is_ok(), "{report}");
    assert!(
        report
            .to_string()
            .contains(&format!("b.yaml:5:15: error: {expected}")),
        "{report}"
    );
    let err = holder.reload().unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("b.yaml:5:15: {expected}")),
        "{err}"
    );
    assert_eq!(holder.current().version(), v1, "the last good set serves");
    // Without the config (a policy checked on its own) nothing is known.
    assert!(check_dir(dir.path(), &LintContext::new()).is_ok());
    assert!(PolicyHolder::load(dir.path()).is_ok());

    // `paths.logs` gives the upstream a logs target: the same policy loads.
    let cfg = spangate::config::Config::parse(
        Path::new("spangate.yaml"),
        "upstreams:\n  std: { url: \"http://127.0.0.1:1/v1/traces\" }\n  ingest:\n    url: \"http://127.0.0.1:1/ingest\"\n    paths: { logs: /ingest/logs }\n  grpc: { url: \"http://127.0.0.1:1\", protocol: grpc }\n",
    )
    .expect("config");
    let report = check_dir(dir.path(), &LintContext::from_config(&cfg));
    assert!(report.is_ok(), "{report}");
}
