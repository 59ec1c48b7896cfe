//! Fuzz policy files: fuzzed text compiled by the policy loader
//! (`PolicySet::from_texts`, the same parse, validation and lint as
//! `load_dir`, reload and `spangate policy check`), alone and beside the
//! shipped `endpoints.yaml` (so cross-file references resolve). A set that
//! loads is then driven through `decide`, `explain` and `admin_permissions`
//! for a handful of principals and batches, checking the decision's
//! invariants. A refused set must report positions that exist.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run policy_load` (from the repository root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use spangate::identity::Principal;
use spangate::otlp::{BatchSummary, ResourceSummary};
use spangate::policy::{PolicySet, ResourceVerdict, explain};

const ENDPOINTS: &str = include_str!("../../policies/endpoints.yaml");

fn principal(provider: &str, claims: Value) -> Principal {
    let Value::Object(map) = claims else {
        return Principal::from_verified_claims(
            provider,
            "https://issuer.example",
            Default::default(),
        );
    };
    Principal::from_verified_claims(provider, "https://issuer.example", map)
}

fn principals() -> Vec<Principal> {
    vec![
        principal(
            "dev",
            json!({"sub": "fn-1", "owner_id": "team_demo", "project": "web",
                "project_id": "prj_1", "environment": "production", "exp": 4102444800u64}),
        ),
        principal(
            "dev",
            json!({"sub": "admin", "groups": ["platform-admins", "x"]}),
        ),
        principal("dev", json!({"sub": "contractor-7", "project": "*"})),
        principal(
            "vercel",
            json!({"sub": "owner:team_abc:project:checkout:environment:preview",
                "owner_id": "team_abc", "project": "checkout", "project_id": "prj_c",
                "environment": "preview", "nested": {"a": [1, {"b": "c"}]}}),
        ),
        principal(
            "okta",
            json!({"sub": "u", "hasgroups": true, "_claim_names": {"groups": "src1"}}),
        ),
        principal("", json!({})),
    ]
}

fn batches() -> Vec<BatchSummary> {
    let resource = |service: Option<&str>, attrs: &[(&str, &str)], spans| ResourceSummary {
        service_name: service.map(str::to_string),
        attributes: service
            .map(|s| ("service.name".to_string(), s.to_string()))
            .into_iter()
            .chain(attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
        spans,
    };
    let empty = BatchSummary::default();
    let resources = vec![
        resource(Some("web"), &[("vercel.project_id", "prj_1")], 3),
        resource(Some("web-api"), &[("spangate.subject", "forged")], 2),
        resource(Some("checkout"), &[("vercel.project_id", "prj_other")], 1),
        resource(None, &[("enduser.id", "x")], 4),
    ];
    let spans = resources.iter().map(|r| r.spans).sum();
    let mixed = BatchSummary {
        resources,
        spans,
        bytes: 2048,
    };
    let huge = BatchSummary {
        resources: vec![resource(Some("web"), &[], 1_000_000)],
        spans: 1_000_000,
        bytes: 64 << 20,
    };
    vec![empty, mixed, huge]
}

fn exercise(set: &PolicySet) {
    let batches = batches();
    for p in principals() {
        let _ = set.admin_permissions(&p);
        for ep in set.endpoints() {
            for batch in &batches {
                let d = set.decide(&p, ep, batch);
                assert!(!d.rule.is_empty(), "a decision names its rule");
                if d.allowed {
                    assert_eq!(
                        d.resources.len(),
                        batch.resources.len(),
                        "one verdict per resource"
                    );
                    let dropped = d
                        .resources
                        .iter()
                        .filter(|v| matches!(v, ResourceVerdict::Drop { .. }))
                        .count();
                    assert_eq!(
                        dropped,
                        d.dropped.iter().map(|c| c.resources).sum::<usize>()
                    );
                } else {
                    assert!(d.resources.is_empty() && d.credential.is_none() && d.stamp.is_empty());
                }
                let e = explain(set, &p, ep, Some(batch));
                assert_eq!(e.decision, d, "explain reports the decision decide makes");
            }
        }
    }
}

fn check(text: &str, result: Result<PolicySet, spangate::policy::PolicyErrors>) {
    match result {
        Ok(set) => exercise(&set),
        Err(errors) => {
            // libyaml reports the end of the stream on the line after the last.
            let lines = spangate_fuzz::yaml_lines(text) + 1;
            for d in &errors.0 {
                assert!(d.line >= 1 && d.column >= 1, "positions are 1-based: {d}");
                if d.file == "fuzz.yaml" {
                    assert!(
                        d.line <= lines,
                        "line {} beyond the file's {lines}: {d}",
                        d.line
                    );
                }
            }
            let _ = errors.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text, PolicySet::from_texts(&[("fuzz.yaml", text)]));
    check(
        text,
        PolicySet::from_texts(&[("endpoints.yaml", ENDPOINTS), ("fuzz.yaml", text)]),
    );
});
