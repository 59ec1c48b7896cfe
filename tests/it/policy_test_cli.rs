//! `spangate policy test`: the shipped cases pass against the shipped
//! policies, a wrong expectation fails the run and says what differed, and
//! a malformed case file is refused with file:line:column.

use std::path::Path;

use crate::common::cli::run_plain as spangate;

#[test]
fn shipped_cases_pass_against_shipped_policies() {
    let (code, out, err) = spangate(&["policy", "test"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("7 passed, 0 failed"), "{out}");
    assert!(
        out.contains("partial binding[edge-publishers] (allowed_partial), 4 span(s) dropped"),
        "{out}"
    );
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn a_wrong_expectation_fails_and_names_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        r#"cases:
  - name: contractor expected to pass (wrong)
    provider: dev
    claims: { sub: contractor-9, owner_id: team_demo, project: checkout, environment: production }
    endpoint: traces
    batch: [{ service: checkout }]
    expect: { decision: allow, stamp: { deployment.environment.name: production } }
  - name: right
    provider: dev
    claims: { sub: contractor-9, owner_id: team_demo, project: checkout, environment: production }
    endpoint: traces
    expect: { decision: deny, rule: "deny[contractors]" }
"#,
    )
    .unwrap();
    let (code, out, _) = spangate(&["policy", "test", cases.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL") && out.contains("decision: expected allow, got deny"),
        "{out}"
    );
    assert!(
        out.contains("[decided deny by deny[contractors] (explicit_deny)]"),
        "{out}"
    );
    assert!(
        out.contains("stamp deployment.environment.name: expected \"production\", not stamped"),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed"), "{out}");
}

#[test]
fn a_malformed_case_file_is_refused_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("bad.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - name: typo\n    provider: dev\n    claims: {}\n    endpoint: traces\n    expect: { decison: allow }\n",
    )
    .unwrap();
    let (code, out, err) = spangate(&["policy", "test", cases.to_str().unwrap()]);
    assert_ne!(code, 0);
    let loc = format!("{}:6:", cases.display());
    assert!(err.contains(&loc), "{err}{out}");
    assert!(err.contains("decison"), "{err}");
}

#[test]
fn an_unknown_endpoint_fails_the_case() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("c.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - { name: x, provider: dev, claims: {}, endpoint: nope, expect: { decision: deny } }\n",
    )
    .unwrap();
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (code, out, _) = spangate(&[
        "policy",
        "test",
        "--policies",
        policies.to_str().unwrap(),
        cases.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no endpoint named \"nope\""), "{out}");
}
