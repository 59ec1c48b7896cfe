//! `policy explain` output: allow, deny by a rule, no match; text and JSON.

use std::path::Path;

use serde_json::{Value, json};
use spangate::identity::Principal;
use spangate::otlp::{BatchSummary, ResourceSummary};
use spangate::policy::{PolicySet, explain};

fn shipped() -> PolicySet {
    PolicySet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
}

fn principal(claims: Value) -> Principal {
    let Value::Object(claims) = claims else {
        panic!("object")
    };
    Principal::from_verified_claims("dev", "http://127.0.0.1:1", claims)
}

fn edge(env: &str) -> Value {
    json!({
        "sub": format!("owner:team_demo:project:checkout:environment:{env}"),
        "owner_id": "team_demo", "project": "checkout", "project_id": "prj_checkout", "environment": env,
    })
}

#[test]
fn explain_allow_with_batch() {
    let set = shipped();
    let ep = set.endpoint_by_name("traces").unwrap().clone();
    let batch = BatchSummary {
        resources: vec![
            ResourceSummary {
                service_name: Some("checkout-api".into()),
                attributes: vec![],
                spans: 4,
            },
            ResourceSummary {
                service_name: Some("billing".into()),
                attributes: vec![],
                spans: 1,
            },
        ],
        spans: 5,
        bytes: 100,
    };
    let x = explain(&set, &principal(edge("production")), &ep, Some(&batch));
    assert!(x.decision.allowed);
    let text = x.to_string();
    println!("{text}");
    assert!(
        text.starts_with("decision: ALLOW (allowed_partial) by binding[edge-publishers]\n"),
        "{text}"
    );
    assert!(text.contains("credential: lightstep-prod"), "{text}");
    assert!(
        text.contains("stamp: vercel.project_id = \"prj_checkout\""),
        "{text}"
    );
    assert!(
        text.contains("dropped: 1 span(s) in 1 resource(s): service_not_allowed"),
        "{text}"
    );
    assert!(
        text.contains("resource 1: service.name \"billing\" matches none of [${claims.project}, ${claims.project}-*]"),
        "{text}"
    );
    assert!(
        text.contains("binding[edge-publishers] edge-publisher: MATCH → allow, drop"),
        "{text}"
    );
    assert!(text.contains("[DECIDED]"), "{text}");
    assert!(text.contains("deny[contractors]: no match"), "{text}");
    assert!(text.contains("subjects[0]: claims.sub: \"owner:team_demo:project:checkout:environment:production\" not in [contractor-*]"), "{text}");
    assert!(
        text.contains("binding[platform-admins] secrets-admin: no match"),
        "{text}"
    );
    assert!(
        text.contains("role secrets-admin does not publish to endpoint traces"),
        "{text}"
    );
}

#[test]
fn explain_deny_by_rule() {
    let set = shipped();
    let ep = set.endpoint_by_name("traces").unwrap().clone();
    let mut claims = edge("production");
    claims["sub"] = json!("contractor-42");
    let x = explain(&set, &principal(claims), &ep, None);
    let text = x.to_string();
    println!("{text}");
    assert!(
        text.starts_with("decision: DENY (explicit_deny) by deny[contractors]\n"),
        "{text}"
    );
    assert!(
        text.contains("deny[contractors]: MATCH → deny (explicit_deny) [DECIDED]"),
        "{text}"
    );
    assert!(text.contains("no batch given"), "{text}");
    // The binding that would otherwise allow is shown as matching, not deciding.
    assert!(
        text.contains("binding[edge-publishers] edge-publisher: MATCH → allow  ("),
        "{text}"
    );
    let rule_line = text
        .lines()
        .find(|l| l.contains("deny[contractors]: MATCH"))
        .unwrap();
    assert!(rule_line.contains("edge.yaml:"), "{rule_line}");
}

#[test]
fn explain_no_match_says_why() {
    let set = shipped();
    let ep = set.endpoint_by_name("traces").unwrap().clone();
    let x = explain(&set, &principal(edge("development")), &ep, None);
    let text = x.to_string();
    println!("{text}");
    assert!(
        text.starts_with("decision: DENY (no_match) by default-deny\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "subjects[0]: claims.environment: \"development\" not in [production, preview]"
        ),
        "{text}"
    );
    let mut other = principal(edge("production"));
    other.provider = "okta".into();
    let text = explain(&set, &other, &ep, None).to_string();
    assert!(text.contains("subjects[0]: provider okta ≠ dev"), "{text}");
    let text = explain(&set, &principal(json!({"sub": "x"})), &ep, None).to_string();
    assert!(
        text.contains("claims.owner_id: missing, want [team_demo]"),
        "{text}"
    );
}

#[test]
fn explain_json_form() {
    let set = shipped();
    let ep = set.endpoint_by_name("traces").unwrap().clone();
    let x = explain(&set, &principal(edge("development")), &ep, None);
    let v = serde_json::to_value(&x).unwrap();
    assert_eq!(v["decision"]["allowed"], json!(false));
    assert_eq!(v["decision"]["rule"], json!("default-deny"));
    assert_eq!(v["decision"]["reason"], json!("no_match"));
    assert_eq!(v["endpoint"], json!("traces"));
    assert_eq!(v["policy_version"], json!(set.version()));
    let b = v["bindings"].as_array().unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0]["rule"], json!("binding[edge-publishers]"));
    assert_eq!(b[0]["matched"], json!(false));
    assert_eq!(b[0]["applies"], json!(true));
    assert_eq!(
        b[0]["why_not"],
        json!(["subjects[0]: claims.environment: \"development\" not in [production, preview]"])
    );
    assert_eq!(v["deny"][0]["rule"], json!("deny[contractors]"));
    // No claim values other than what the rules name leak into the JSON.
    assert!(
        !v.to_string().contains("fp\""),
        "no token fingerprint needed"
    );
}
