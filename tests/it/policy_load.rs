//! Loading policy directories: the shipped examples, and broken files with
//! the file:line:column of the offending node.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use spangate::identity::Principal;
use spangate::otlp::{BatchSummary, ResourceSummary};
use spangate::policy::{Diagnostic, PolicySet};

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

/// Load and expect failure; diagnostics with the directory prefix stripped.
fn errors(files: &[(&str, &str)]) -> Vec<Diagnostic> {
    let dir = write(files);
    match PolicySet::load_dir(dir.path()) {
        Ok(_) => panic!("expected the policy to be refused"),
        Err(e) => {
            let prefix = format!("{}/", dir.path().display());
            e.0.into_iter()
                .map(|mut d| {
                    d.file = d.file.trim_start_matches(&prefix).to_string();
                    d
                })
                .collect()
        }
    }
}

/// The one diagnostic, as `file:line:column`, and its message.
fn one(files: &[(&str, &str)]) -> (String, String) {
    let errs = errors(files);
    assert_eq!(errs.len(), 1, "expected exactly one error, got {errs:#?}");
    let d = &errs[0];
    (
        format!("{}:{}:{}", d.file, d.line, d.column),
        d.message.clone(),
    )
}

fn principal(provider: &str, claims: Value) -> Principal {
    let Value::Object(claims) = claims else {
        panic!("object")
    };
    Principal::from_verified_claims(provider, "http://127.0.0.1:1", claims)
}

const EP: &str = "endpoints:\n  traces: { path: /v1/traces, upstream: ls }\n";

#[test]
fn shipped_policies_load() {
    let set = PolicySet::load_dir(&shipped())
        .unwrap_or_else(|e| panic!("shipped policies refused:\n{e}"));
    let ep = set.endpoint_by_path("/v1/traces").expect("traces endpoint");
    assert_eq!(
        (ep.name.as_str(), ep.upstream.as_str()),
        ("traces", "lightstep")
    );
    assert_eq!(set.endpoints().len(), 1);
    assert_eq!(
        set.credentials_referenced(),
        vec!["lightstep-prod".to_string()]
    );
    assert_eq!(set.version().len(), 12);
    assert!(
        set.warnings().is_empty(),
        "shipped policies have warnings: {:#?}",
        set.warnings()
    );
}

#[test]
fn shipped_policies_decide_for_demo_identities() {
    let set = PolicySet::load_dir(&shipped()).unwrap();
    let ep = set.endpoint_by_path("/v1/traces").unwrap().clone();
    let edge = |env: &str| {
        json!({
            "sub": format!("owner:team_demo:project:checkout:environment:{env}"),
            "owner_id": "team_demo", "project": "checkout", "project_id": "prj_checkout", "environment": env,
        })
    };
    let b = BatchSummary {
        resources: vec![
            ResourceSummary {
                service_name: Some("checkout".into()),
                attributes: vec![("service.name".into(), "checkout".into())],
                spans: 3,
            },
            ResourceSummary {
                service_name: Some("billing".into()),
                attributes: vec![("service.name".into(), "billing".into())],
                spans: 2,
            },
        ],
        spans: 5,
        bytes: 500,
    };

    let d = set.decide(&principal("dev", edge("production")), &ep, &b);
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.rule, "binding[edge-publishers]");
    assert_eq!(d.credential.as_deref(), Some("lightstep-prod"));
    assert_eq!(
        d.stamp,
        vec![
            ("deployment.environment.name".into(), "production".into()),
            ("vercel.project_id".into(), "prj_checkout".into())
        ]
    );
    assert_eq!(d.reason, "allowed_partial");
    assert_eq!(d.dropped_spans(), 2);
    assert!(d.rate.is_some());
    assert!(d.protected.contains(&"spangate.".to_string()));
    assert!(d.protected.contains(&"vercel.project_id".to_string()));

    let d = set.decide(&principal("dev", edge("development")), &ep, &b);
    assert_eq!(
        (d.allowed, d.rule.as_str(), d.reason),
        (false, "default-deny", "no_match")
    );

    let mut contractor = edge("production");
    contractor["sub"] = json!("contractor-42");
    let d = set.decide(&principal("dev", contractor), &ep, &b);
    assert_eq!(
        (d.allowed, d.rule.as_str(), d.reason),
        (false, "deny[contractors]", "explicit_deny")
    );

    let admin = principal(
        "dev",
        json!({"sub": "alice", "groups": ["platform-admins"]}),
    );
    let d = set.decide(&admin, &ep, &b);
    assert!(!d.allowed, "admins do not publish");
    let g = set.admin_permissions(&admin);
    assert!(g.allows("secrets:rotate") && g.allows("secrets:read") && g.allows("policy:reload"));
    assert!(g.allows("policy:validate") && g.allows("status:read"));
    assert!(!g.allows("secrets:explode"));
    assert_eq!(g.rule_for("secrets:rotate"), "binding[platform-admins]");
    assert_eq!(g.rule_for("secrets:explode"), "default-deny");
    let g = set.admin_permissions(&principal("dev", edge("production")));
    assert!(g.permissions.is_empty());
    // A contractor in the admin group is still denied.
    let g = set.admin_permissions(&principal(
        "dev",
        json!({"sub": "contractor-1", "groups": ["platform-admins"]}),
    ));
    assert!(!g.allows("secrets:read"));
    assert_eq!(g.denied_by.as_deref(), Some("deny[contractors]"));
    assert_eq!(g.rule_for("secrets:read"), "deny[contractors]");
}

#[test]
fn yaml_syntax_error_has_location() {
    let (at, msg) = one(&[(
        "a.yaml",
        "endpoints:\n  traces: { path: /v1/traces, upstream: ls\n",
    )]);
    assert!(at.starts_with("a.yaml:"), "{at}");
    assert_ne!(
        at, "a.yaml:1:1",
        "a syntax error points into the file: {msg}"
    );
}

#[test]
fn unknown_field_has_location() {
    let (at, msg) = one(&[(
        "a.yaml",
        "endpoints:\n  traces: { path: /v1/traces, upstream: ls }\nroles:\n  r:\n    publish:\n      endpoints: [traces]\n      servces: [x]\n",
    )]);
    assert_eq!(at, "a.yaml:7:7");
    assert!(msg.contains("unknown field `servces`"), "{msg}");
}

#[test]
fn unknown_role_points_at_the_role_value() {
    let (at, msg) = one(&[
        ("a.yaml", EP),
        (
            "b.yaml",
            "bindings:\n  - name: x\n    role: nope\n    subjects: [{ provider: p, claims: { a: b } }]\n",
        ),
    ]);
    assert_eq!(at, "b.yaml:3:11");
    assert_eq!(msg, "unknown role `nope`");
}

#[test]
fn unknown_endpoint_in_role() {
    let (at, msg) = one(&[(
        "a.yaml",
        &format!(
            "{EP}roles:\n  r:\n    publish:\n      endpoints: [traces, logz]\n      services: [x]\n    admin: [policy:validate]\nbindings:\n  - {{ role: r, credential: c, subjects: [{{ provider: p, claims: {{ a: b }} }}] }}\n"
        ),
    )]);
    assert_eq!(at, "a.yaml:6:27");
    assert_eq!(msg, "unknown endpoint `logz`");
}

#[test]
fn bad_glob_and_bad_template() {
    let text = format!(
        "{EP}roles:\n  r:\n    publish:\n      endpoints: [traces]\n      services: [\"${{claims.project\"]\nbindings:\n  - role: r\n    credential: c\n    subjects:\n      - provider: p\n        claims:\n          team: [ok, 'bad\\q']\n    stamp:\n      a: \"${{env.HOME}}\"\n"
    );
    let errs = errors(&[("a.yaml", &text)]);
    let got: Vec<String> = errs
        .iter()
        .map(|d| format!("{}:{}:{}", d.file, d.line, d.column))
        .collect();
    assert_eq!(
        got,
        vec!["a.yaml:7:18", "a.yaml:14:22", "a.yaml:16:10"],
        "{errs:#?}"
    );
    assert!(
        errs[0]
            .message
            .starts_with("bad service pattern: unterminated template"),
        "{}",
        errs[0].message
    );
    assert!(
        errs[1].message.starts_with("bad glob: bad escape"),
        "{}",
        errs[1].message
    );
    assert!(
        errs[2]
            .message
            .starts_with("bad template: a template may only read a verified claim"),
        "{}",
        errs[2].message
    );
}

#[test]
fn bad_claim_path_points_at_the_key() {
    let text = format!(
        "{EP}roles:\n  r: {{ publish: {{ endpoints: [traces], services: [x] }} }}\nbindings:\n  - role: r\n    credential: c\n    subjects:\n      - provider: p\n        claims:\n          'a..b': x\n"
    );
    let (at, msg) = one(&[("a.yaml", &text)]);
    assert_eq!(at, "a.yaml:11:11");
    assert!(msg.contains("bad claim path `a..b`"), "{msg}");
}

#[test]
fn duplicate_names_across_files_name_both_locations() {
    let a = format!(
        "{EP}roles:\n  r: {{ admin: [policy:validate] }}\nbindings:\n  - {{ name: dup, role: r, subjects: [{{ provider: p, claims: {{ a: b }} }}] }}\n"
    );
    let b = "roles:\n  r: { admin: [secrets:read] }\ndeny:\n  - { name: dup, subjects: [{ provider: p, claims: { a: c } }] }\nendpoints:\n  traces: { path: /v2/traces, upstream: ls }\n";
    let errs = errors(&[("a.yaml", &a), ("b.yaml", b)]);
    let got: Vec<(String, String)> = errs
        .iter()
        .map(|d| {
            (
                format!("{}:{}:{}", d.file, d.line, d.column),
                d.message.clone(),
            )
        })
        .collect();
    let dir_free = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    let got: Vec<(String, String)> = got
        .into_iter()
        .map(|(at, m)| {
            // Messages name the first definition by full path; keep the file name.
            let m = m
                .split_whitespace()
                .map(|w| {
                    if w.contains(".yaml:") {
                        dir_free(w)
                    } else {
                        w.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            (at, m)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "b.yaml:2:3".into(),
                "role `r` is defined twice (first at a.yaml:4:3)".into()
            ),
            (
                "b.yaml:4:13".into(),
                "rule name `dup` is used twice (first at a.yaml:6:13)".into()
            ),
            (
                "b.yaml:6:3".into(),
                "endpoint `traces` is defined twice (first at a.yaml:2:3)".into()
            ),
        ]
    );
}

#[test]
fn duplicate_endpoint_path() {
    let (at, msg) = one(&[(
        "a.yaml",
        "endpoints:\n  a: { path: /v1/traces, upstream: ls }\n  b: { path: /v1/traces, upstream: ls }\n",
    )]);
    assert_eq!(at, "a.yaml:3:14");
    assert!(
        msg.starts_with("endpoint path `/v1/traces` is already used by endpoint `a`"),
        "{msg}"
    );
}

#[test]
fn fail_open_subjects_are_errors() {
    for (claims, col) in [
        ("{}", 9),
        ("{ sub: \"*\" }", 9),
        ("{ sub: \"*\", env: [prod, \"?*\"] }", 9),
    ] {
        let text = format!(
            "{EP}roles:\n  r: {{ publish: {{ endpoints: [traces], services: [x] }} }}\nbindings:\n  - role: r\n    credential: c\n    subjects:\n      - {{ provider: p, claims: {claims} }}\n"
        );
        let (at, msg) = one(&[("a.yaml", &text)]);
        assert_eq!(at, format!("a.yaml:9:{col}"), "claims {claims}");
        assert!(
            msg.contains("matches every identity of provider `p`"),
            "{msg}"
        );
    }
    // No claims at all (the key omitted).
    let text = format!(
        "{EP}roles:\n  r: {{ publish: {{ endpoints: [traces], services: [x] }} }}\nbindings:\n  - role: r\n    credential: c\n    subjects: [{{ provider: p }}]\n"
    );
    let (_, msg) = one(&[("a.yaml", &text)]);
    assert!(msg.contains("allow_any_subject"), "{msg}");
    // Explicitly allowed.
    let ok = text.replace(
        "credential: c\n",
        "credential: c\n    allow_any_subject: true\n",
    );
    let dir = write(&[("a.yaml", &ok)]);
    PolicySet::load_dir(dir.path()).unwrap();
    // A catch-all deny rule is fail-closed and fine.
    let deny = format!("{EP}deny:\n  - subjects: [{{ provider: p }}]\n");
    let dir = write(&[("a.yaml", &deny)]);
    PolicySet::load_dir(dir.path()).unwrap();
}

#[test]
fn publish_binding_needs_a_credential() {
    let text = format!(
        "{EP}roles:\n  r: {{ publish: {{ endpoints: [traces], services: [x] }} }}\nbindings:\n  - role: r\n    subjects: [{{ provider: p, claims: {{ a: b }} }}]\n"
    );
    let (at, msg) = one(&[("a.yaml", &text)]);
    assert_eq!(at, "a.yaml:6:5");
    assert!(msg.contains("names no credential"), "{msg}");
}

#[test]
fn empty_and_missing_directories() {
    let dir = write(&[("README.md", "not policy")]);
    let e = PolicySet::load_dir(dir.path()).unwrap_err();
    assert!(e.to_string().contains("no policy files"), "{e}");
    let e = PolicySet::load_dir(&dir.path().join("nope")).unwrap_err();
    assert!(
        e.to_string().contains("cannot read policy directory"),
        "{e}"
    );
}

#[test]
fn comment_only_files_and_hidden_files() {
    let dir = write(&[
        ("a.yaml", EP),
        ("b.yml", "# nothing yet\n"),
        (".#a.yaml", "garbage: ["),
    ]);
    let set = PolicySet::load_dir(dir.path()).unwrap();
    assert_eq!(set.endpoints().len(), 1);
}

#[test]
fn display_is_file_line_column_message() {
    let dir = write(&[("a.yaml", "endpoints:\n  t: { path: v1, upstream: ls }\n")]);
    let e = PolicySet::load_dir(dir.path()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}/a.yaml:2:14: endpoint path `v1` must start with `/`",
            dir.path().display()
        )
    );
}

#[test]
fn version_changes_with_content() {
    let a = write(&[("a.yaml", EP)]);
    let b = write(&[("a.yaml", &format!("{EP}# comment\n"))]);
    let va = PolicySet::load_dir(a.path()).unwrap().version().to_string();
    let va2 = PolicySet::load_dir(a.path()).unwrap().version().to_string();
    let vb = PolicySet::load_dir(b.path()).unwrap().version().to_string();
    assert_eq!(va, va2);
    assert_ne!(va, vb);
}

#[test]
fn duplicate_keys_in_one_file_are_errors() {
    let (at, msg) = one(&[(
        "a.yaml",
        "endpoints:\n  t: { path: /a, upstream: ls }\n  t: { path: /b, upstream: ls }\n",
    )]);
    assert!(at.starts_with("a.yaml:3:"), "{at}: {msg}");
    assert!(msg.contains("duplicate"), "{msg}");
}

/// Mutated policy files (deletions, insertions of YAML syntax characters,
/// truncations) never panic the loader: each gives a set or diagnostics
/// with positions inside the file.
#[test]
fn mutated_policies_never_panic() {
    let originals: Vec<(String, String)> = ["endpoints.yaml", "edge.yaml"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                std::fs::read_to_string(shipped().join(n)).unwrap(),
            )
        })
        .collect();
    let inserts = [
        '[', ']', '{', '}', ':', '-', '"', '\'', '*', '$', '\\', '\n', '#', '&', '!', ' ',
    ];
    let mut runs = 0usize;
    let mut refused = 0usize;
    for (target, (name, text)) in originals.iter().enumerate() {
        let chars: Vec<char> = text.chars().collect();
        for i in (0..chars.len()).step_by(7) {
            let mut variants = Vec::with_capacity(inserts.len() + 2);
            let mut deleted = chars.clone();
            deleted.remove(i);
            variants.push(deleted);
            variants.push(chars[..i].to_vec());
            let c = inserts[i % inserts.len()];
            let mut inserted = chars.clone();
            inserted.insert(i, c);
            variants.push(inserted);
            for v in variants {
                let mutated: String = v.into_iter().collect();
                let files: Vec<(&str, &str)> = originals
                    .iter()
                    .enumerate()
                    .map(|(j, (n, t))| {
                        if j == target {
                            (n.as_str(), mutated.as_str())
                        } else {
                            (n.as_str(), t.as_str())
                        }
                    })
                    .collect();
                runs += 1;
                if let Err(e) = PolicySet::from_texts(&files) {
                    refused += 1;
                    for d in &e.0 {
                        let lines = if d.file == *name {
                            mutated.lines().count().max(1)
                        } else {
                            usize::MAX
                        };
                        assert!(
                            d.line >= 1 && d.line <= lines.saturating_add(1),
                            "{d} in {mutated:?}"
                        );
                        assert!(d.column >= 1, "{d}");
                    }
                }
            }
        }
    }
    assert!(runs > 500, "{runs}");
    assert!(
        refused > runs / 10,
        "mutations should often be refused: {refused}/{runs}"
    );
}

/// `[[[[…` makes YAML scanners quadratic; it is refused by a linear scan
/// before any parser runs, with the position of the bracket that went too
/// deep (fuzzing found ~6 s for a 54 KB file before this check).
#[test]
fn deep_flow_nesting_is_refused_before_parsing() {
    let deep = format!("roles:\n  r: {}\n", "[".repeat(500_000));
    let (at, message) = one(&[("deep.yaml", &deep)]);
    assert_eq!(at, format!("deep.yaml:2:{}", 6 + 256), "{message}");
    assert!(message.contains("nested deeper than 256"), "{message}");

    let cfg = spangate::config::Config::parse(Path::new("spangate.yaml"), &deep);
    let err = cfg.expect_err("refused").to_string();
    assert!(err.contains("spangate.yaml:2:262"), "{err}");
    assert!(err.contains("nested deeper than 256"), "{err}");
}

#[test]
fn endpoint_signal_defaults_from_the_path_and_must_agree_with_it() {
    let dir = write(&[(
        "e.yaml",
        "endpoints:\n  t: { path: /v1/traces, upstream: ls }\n  m: { path: /v1/metrics, upstream: ls }\n  l: { path: /otlp/v1/logs, upstream: ls }\n  ls: { path: /traces/otlp/v0.9, upstream: ls }\n  custom: { path: /ingest/m, upstream: ls, signal: metrics }\n",
    )]);
    let set = PolicySet::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let sig = |p: &str| set.endpoint_by_path(p).expect(p).signal.as_str();
    assert_eq!(sig("/v1/traces"), "traces");
    assert_eq!(sig("/v1/metrics"), "metrics");
    assert_eq!(sig("/otlp/v1/logs"), "logs");
    assert_eq!(sig("/traces/otlp/v0.9"), "traces");
    assert_eq!(sig("/ingest/m"), "metrics");

    let (at, msg) = one(&[(
        "e.yaml",
        "endpoints:\n  m:\n    path: /v1/metrics\n    upstream: ls\n    signal: logs\n",
    )]);
    assert_eq!(at, "e.yaml:5:13");
    assert!(msg.contains("standard metrics path"), "{msg}");
    let (at, msg) = one(&[(
        "e.yaml",
        "endpoints:\n  m: { path: /x, upstream: ls, signal: spans }\n",
    )]);
    assert!(at.starts_with("e.yaml:2:"), "{at}");
    assert!(msg.contains("unknown signal `spans`"), "{msg}");
}
