//! Table tests of the pure `decide` function.

use serde_json::{Value, json};
use spangate::identity::Principal;
use spangate::otlp::{BatchSummary, ResourceSummary};
use spangate::policy::{DroppedCount, PolicySet, RateSpec, ResourceVerdict, ShadowHit};

fn load(files: &[(&str, &str)]) -> PolicySet {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    match PolicySet::load_dir(dir.path()) {
        Ok(set) => set,
        Err(e) => panic!("policy did not load:\n{e}"),
    }
}

fn principal(provider: &str, claims: Value) -> Principal {
    let claims = match claims {
        Value::Object(m) => m,
        other => panic!("claims must be an object, got {other}"),
    };
    Principal::from_verified_claims(provider, &format!("https://{provider}.example"), claims)
}

fn resource(service: Option<&str>, attrs: &[(&str, &str)], spans: usize) -> ResourceSummary {
    let mut attributes: Vec<(String, String)> = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(s) = service {
        attributes.push(("service.name".into(), s.into()));
    }
    ResourceSummary {
        service_name: service.map(str::to_string),
        attributes,
        spans,
    }
}

fn batch(resources: Vec<ResourceSummary>, bytes: usize) -> BatchSummary {
    BatchSummary {
        spans: resources.iter().map(|r| r.spans).sum(),
        resources,
        bytes,
    }
}

const ENDPOINTS: &str = "
endpoints:
  traces: { path: /v1/traces, upstream: ls }
  logs: { path: /v1/logs, upstream: ls }
";

const MATCHERS: &str = r#"
roles:
  traces-pub: { publish: { endpoints: [traces], services: ["*"] } }
  logs-pub: { publish: { endpoints: [logs], services: ["*"] } }
bindings:
  - { name: exact, role: traces-pub, credential: c, subjects: [{ provider: p, claims: { tenant: acme } }] }
  - { name: list, role: traces-pub, credential: c, subjects: [{ provider: p, claims: { env: [prod, stage] } }] }
  - { name: glob, role: traces-pub, credential: c, subjects: [{ provider: p, claims: { team: "team-*" } }] }
  - { name: single-char, role: traces-pub, credential: c, subjects: [{ provider: p, claims: { code: "a?c" } }] }
  - { name: array, role: traces-pub, credential: c, subjects: [{ provider: p, claims: { groups: admins } }] }
  - { name: nested, role: traces-pub, credential: c, subjects: [{ provider: p, claims: { org.id: o-1 } }] }
  - name: dotted-key
    role: traces-pub
    credential: c
    subjects: [{ provider: p, claims: { '["https://sts.amazonaws.com/"].org_id': o-9 } }]
  - { name: number, role: traces-pub, credential: c, subjects: [{ provider: p, claims: { level: 3 } }] }
  - { name: boolean, role: traces-pub, credential: c, subjects: [{ provider: p, claims: { verified: true } }] }
  - { name: scope, role: traces-pub, credential: c, subjects: [{ provider: p, claims: { scope: "traces:write" } }] }
  - { name: all-of, role: traces-pub, credential: c, subjects: [{ provider: p, claims: { a: x, b: y } }] }
  - name: any-of-subjects
    role: traces-pub
    credential: c
    subjects:
      - { provider: q, claims: { k: one } }
      - { provider: r, claims: { k: two } }
  - { name: logs-only, role: logs-pub, credential: c, subjects: [{ provider: p, claims: { tenant: logs-co } }] }
  - { name: shadow-allow, role: traces-pub, credential: c, mode: audit, subjects: [{ provider: p, claims: { trial: "yes" } }] }
deny:
  - { name: contractors, subjects: [{ provider: p, claims: { sub: "contractor-*" } }] }
  - { name: shadow-deny, mode: audit, subjects: [{ provider: p, claims: { sub: "suspect-*" } }] }
  - { name: no-logs-for-acme, endpoints: [logs], subjects: [{ provider: p, claims: { tenant: acme } }] }
"#;

#[test]
fn subject_matching_table() {
    let set = load(&[("endpoints.yaml", ENDPOINTS), ("rules.yaml", MATCHERS)]);
    let traces = set.endpoint_by_path("/v1/traces").unwrap().clone();
    let logs = set.endpoint_by_path("/v1/logs").unwrap().clone();
    let empty = BatchSummary::default();
    // (case, provider, claims, endpoint, allowed, rule, reason)
    let rows: Vec<(
        &str,
        &str,
        Value,
        &spangate::policy::Endpoint,
        bool,
        &str,
        &str,
    )> = vec![
        (
            "exact value",
            "p",
            json!({"tenant": "acme"}),
            &traces,
            true,
            "binding[exact]",
            "allowed",
        ),
        (
            "exact value, other",
            "p",
            json!({"tenant": "acme2"}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "exact is not prefix",
            "p",
            json!({"tenant": "acm"}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "provider mismatch",
            "other",
            json!({"tenant": "acme"}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "list, first",
            "p",
            json!({"env": "prod"}),
            &traces,
            true,
            "binding[list]",
            "allowed",
        ),
        (
            "list, second",
            "p",
            json!({"env": "stage"}),
            &traces,
            true,
            "binding[list]",
            "allowed",
        ),
        (
            "list, none",
            "p",
            json!({"env": "dev"}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "glob star",
            "p",
            json!({"team": "team-red"}),
            &traces,
            true,
            "binding[glob]",
            "allowed",
        ),
        (
            "glob star empty",
            "p",
            json!({"team": "team-"}),
            &traces,
            true,
            "binding[glob]",
            "allowed",
        ),
        (
            "glob no match",
            "p",
            json!({"team": "red-team"}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "glob ?",
            "p",
            json!({"code": "abc"}),
            &traces,
            true,
            "binding[single-char]",
            "allowed",
        ),
        (
            "glob ? needs one",
            "p",
            json!({"code": "ac"}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "array any element",
            "p",
            json!({"groups": ["dev", "admins"]}),
            &traces,
            true,
            "binding[array]",
            "allowed",
        ),
        (
            "array none",
            "p",
            json!({"groups": ["dev", "ops"]}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "array empty",
            "p",
            json!({"groups": []}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "nested",
            "p",
            json!({"org": {"id": "o-1"}}),
            &traces,
            true,
            "binding[nested]",
            "allowed",
        ),
        (
            "nested is not flat key",
            "p",
            json!({"org.id": "o-1"}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "dotted key",
            "p",
            json!({"https://sts.amazonaws.com/": {"org_id": "o-9"}}),
            &traces,
            true,
            "binding[dotted-key]",
            "allowed",
        ),
        (
            "number by JSON text",
            "p",
            json!({"level": 3}),
            &traces,
            true,
            "binding[number]",
            "allowed",
        ),
        (
            "number as string",
            "p",
            json!({"level": "3"}),
            &traces,
            true,
            "binding[number]",
            "allowed",
        ),
        (
            "number differs",
            "p",
            json!({"level": 3.5}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "bool",
            "p",
            json!({"verified": true}),
            &traces,
            true,
            "binding[boolean]",
            "allowed",
        ),
        (
            "bool false",
            "p",
            json!({"verified": false}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "null never matches",
            "p",
            json!({"tenant": null}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "object never matches",
            "p",
            json!({"tenant": {"x": "acme"}}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "space scope",
            "p",
            json!({"scope": "openid traces:write"}),
            &traces,
            true,
            "binding[scope]",
            "allowed",
        ),
        (
            "scope whole only",
            "p",
            json!({"scope": "traces:write"}),
            &traces,
            true,
            "binding[scope]",
            "allowed",
        ),
        (
            "scope missing one",
            "p",
            json!({"scope": "openid traces:read"}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "all claims needed",
            "p",
            json!({"a": "x", "b": "y"}),
            &traces,
            true,
            "binding[all-of]",
            "allowed",
        ),
        (
            "one claim short",
            "p",
            json!({"a": "x"}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "any subject q",
            "q",
            json!({"k": "one"}),
            &traces,
            true,
            "binding[any-of-subjects]",
            "allowed",
        ),
        (
            "any subject r",
            "r",
            json!({"k": "two"}),
            &traces,
            true,
            "binding[any-of-subjects]",
            "allowed",
        ),
        (
            "subject pairs do not mix",
            "q",
            json!({"k": "two"}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "endpoint not in role",
            "p",
            json!({"tenant": "logs-co"}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "endpoint in role",
            "p",
            json!({"tenant": "logs-co"}),
            &logs,
            true,
            "binding[logs-only]",
            "allowed",
        ),
        (
            "deny beats allow",
            "p",
            json!({"sub": "contractor-7", "tenant": "acme"}),
            &traces,
            false,
            "deny[contractors]",
            "explicit_deny",
        ),
        (
            "deny is per endpoint",
            "p",
            json!({"tenant": "acme"}),
            &logs,
            false,
            "deny[no-logs-for-acme]",
            "explicit_deny",
        ),
        (
            "shadow deny not enforced",
            "p",
            json!({"sub": "suspect-1", "tenant": "acme"}),
            &traces,
            true,
            "binding[exact]",
            "allowed",
        ),
        (
            "shadow allow not enforced",
            "p",
            json!({"trial": "yes"}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
        (
            "missing claims",
            "p",
            json!({}),
            &traces,
            false,
            "default-deny",
            "no_match",
        ),
    ];
    assert!(rows.len() >= 40);
    for (case, provider, claims, ep, allowed, rule, reason) in rows {
        let d = set.decide(&principal(provider, claims), ep, &empty);
        assert_eq!(
            (d.allowed, d.rule.as_str(), d.reason),
            (allowed, rule, reason),
            "case: {case}"
        );
        if allowed {
            assert_eq!(d.credential.as_deref(), Some("c"), "case: {case}");
        } else {
            assert_eq!(d.credential, None, "case: {case}");
        }
    }
}

#[test]
fn shadow_hits_are_reported() {
    let set = load(&[("endpoints.yaml", ENDPOINTS), ("rules.yaml", MATCHERS)]);
    let traces = set.endpoint_by_name("traces").unwrap().clone();
    let d = set.decide(
        &principal("p", json!({"sub": "suspect-1", "tenant": "acme"})),
        &traces,
        &BatchSummary::default(),
    );
    assert!(d.allowed);
    assert_eq!(
        d.shadow,
        vec![ShadowHit {
            rule: "deny[shadow-deny]".into(),
            would: "deny",
            reason: "explicit_deny"
        }]
    );
    let d = set.decide(
        &principal("p", json!({"trial": "yes"})),
        &traces,
        &BatchSummary::default(),
    );
    assert!(!d.allowed);
    assert_eq!(
        d.shadow,
        vec![ShadowHit {
            rule: "binding[shadow-allow]".into(),
            would: "allow",
            reason: "allowed"
        }]
    );
    // An enforced deny still reports audit rules that matched.
    let d = set.decide(
        &principal("p", json!({"sub": "contractor-1", "trial": "yes"})),
        &traces,
        &BatchSummary::default(),
    );
    assert_eq!(d.rule, "deny[contractors]");
    assert_eq!(d.shadow.len(), 1);
}

const CONSTRAINTS: &str = r#"
protected_attributes: ["spangate.", enduser.id]
roles:
  svc:
    publish:
      endpoints: [traces]
      services: ["${claims.project}", "${claims.project}-*"]
  svc-drop:
    publish:
      endpoints: [traces]
      services: ["${claims.project}", "${claims.project}-*"]
      on_violation: drop
  attrs:
    publish:
      endpoints: [traces]
      require_attributes: [deployment.id]
      forbid_attributes: ["internal.*", secret]
      attributes_equal_claims: { vercel.project_id: claims.project_id }
      on_violation: drop
  limits:
    publish: { endpoints: [traces], max_spans_per_batch: 10, max_bytes: 1000, on_violation: drop }
  rated:
    publish: { endpoints: [traces], services: ["*"], rate: { spans_per_second: 100 } }
  plain:
    publish: { endpoints: [traces], services: ["*"] }
bindings:
  - { name: svc, role: svc, credential: c, subjects: [{ provider: p, claims: { case: svc } }] }
  - { name: svc-drop, role: svc-drop, credential: c, subjects: [{ provider: p, claims: { case: svc-drop } }] }
  - { name: attrs, role: attrs, credential: c, subjects: [{ provider: p, claims: { case: attrs } }] }
  - { name: limits, role: limits, credential: c, subjects: [{ provider: p, claims: { case: limits } }] }
  - name: stamp
    role: plain
    credential: c
    subjects: [{ provider: p, claims: { case: stamp } }]
    stamp: { vercel.project_id: "${claims.project_id}", tenant: "${claims.org.name}/${claims.project}" }
  - name: rated-subject
    role: rated
    credential: c
    subjects: [{ provider: p, claims: { case: rated-subject } }]
  - name: rated-claim
    role: rated
    credential: c
    rate_key: claims.project_id
    subjects: [{ provider: p, claims: { case: rated-claim } }]
    publish: { rate: { requests_per_second: 5, burst: 3 } }
  - name: narrowed
    role: svc
    credential: c
    subjects: [{ provider: p, claims: { case: narrowed } }]
    publish: { services: ["${claims.project}-api"], max_spans_per_batch: 2 }
  - name: trial
    role: svc-drop
    credential: c
    mode: audit
    subjects: [{ provider: p, claims: { case: [trial, plain] } }]
  - { name: plain, role: plain, credential: c, subjects: [{ provider: p, claims: { case: plain } }] }
"#;

fn keep() -> ResourceVerdict {
    ResourceVerdict::Keep
}
fn drop(reason: &str) -> ResourceVerdict {
    ResourceVerdict::Drop {
        reason: reason.into(),
    }
}

#[test]
fn constraints_table() {
    let set = load(&[("endpoints.yaml", ENDPOINTS), ("rules.yaml", CONSTRAINTS)]);
    let traces = set.endpoint_by_name("traces").unwrap().clone();
    let who = |case: &str, project: &str| {
        principal(
            "p",
            json!({"sub": format!("u-{case}"), "case": case, "project": project, "project_id": format!("prj_{project}"), "org": {"name": "acme"}}),
        )
    };
    // (case, principal, batch, allowed, reason, verdicts, dropped)
    type Row = (
        &'static str,
        Principal,
        BatchSummary,
        bool,
        &'static str,
        Vec<ResourceVerdict>,
        Vec<DroppedCount>,
    );
    let dc = |reason: &'static str, resources: usize, spans: usize| DroppedCount {
        reason,
        resources,
        spans,
    };
    let rows: Vec<Row> = vec![
        (
            "service exact and suffixed allowed",
            who("svc", "checkout"),
            batch(
                vec![
                    resource(Some("checkout"), &[], 3),
                    resource(Some("checkout-api"), &[], 2),
                ],
                100,
            ),
            true,
            "allowed",
            vec![keep(), keep()],
            vec![],
        ),
        (
            "other service rejects whole batch",
            who("svc", "checkout"),
            batch(
                vec![
                    resource(Some("checkout"), &[], 3),
                    resource(Some("billing"), &[], 2),
                ],
                100,
            ),
            false,
            "service_not_allowed",
            vec![],
            vec![],
        ),
        (
            "missing service.name rejects",
            who("svc", "checkout"),
            batch(vec![resource(None, &[], 1)], 10),
            false,
            "service_not_allowed",
            vec![],
            vec![],
        ),
        (
            "glob injection: project claim `*` matches only literally",
            who("svc", "*"),
            batch(vec![resource(Some("billing"), &[], 1)], 10),
            false,
            "service_not_allowed",
            vec![],
            vec![],
        ),
        (
            "glob injection: literal star service is the claim itself",
            who("svc", "*"),
            batch(
                vec![resource(Some("*"), &[], 1), resource(Some("*-x"), &[], 1)],
                10,
            ),
            true,
            "allowed",
            vec![keep(), keep()],
            vec![],
        ),
        (
            "glob injection: `?` in claim is literal",
            who("svc", "che?kout"),
            batch(vec![resource(Some("checkout"), &[], 1)], 10),
            false,
            "service_not_allowed",
            vec![],
            vec![],
        ),
        (
            "missing template claim matches nothing",
            principal("p", json!({"case": "svc"})),
            batch(vec![resource(Some("checkout"), &[], 1)], 10),
            false,
            "service_not_allowed",
            vec![],
            vec![],
        ),
        (
            "drop mode drops and counts",
            who("svc-drop", "checkout"),
            batch(
                vec![
                    resource(Some("checkout"), &[], 3),
                    resource(Some("billing"), &[], 2),
                    resource(Some("search"), &[], 4),
                ],
                100,
            ),
            true,
            "allowed_partial",
            vec![
                keep(),
                drop("service_not_allowed"),
                drop("service_not_allowed"),
            ],
            vec![dc("service_not_allowed", 2, 6)],
        ),
        (
            "drop mode, everything dropped",
            who("svc-drop", "checkout"),
            batch(vec![resource(Some("billing"), &[], 2)], 100),
            true,
            "allowed_partial",
            vec![drop("service_not_allowed")],
            vec![dc("service_not_allowed", 1, 2)],
        ),
        (
            "attributes: compliant, and equal-claim may be absent",
            who("attrs", "checkout"),
            batch(
                vec![
                    resource(
                        Some("a"),
                        &[
                            ("deployment.id", "d1"),
                            ("vercel.project_id", "prj_checkout"),
                        ],
                        1,
                    ),
                    resource(Some("b"), &[("deployment.id", "d2")], 1),
                ],
                10,
            ),
            true,
            "allowed",
            vec![keep(), keep()],
            vec![],
        ),
        (
            "attributes: each violation by reason",
            who("attrs", "checkout"),
            batch(
                vec![
                    resource(Some("a"), &[], 1),
                    resource(
                        Some("b"),
                        &[("deployment.id", "d"), ("internal.debug", "1")],
                        2,
                    ),
                    resource(Some("c"), &[("deployment.id", "d"), ("secret", "x")], 3),
                    resource(
                        Some("d"),
                        &[("deployment.id", "d"), ("vercel.project_id", "prj_other")],
                        4,
                    ),
                    resource(
                        Some("e"),
                        &[
                            ("deployment.id", "d"),
                            ("vercel.project_id", "prj_checkout"),
                        ],
                        5,
                    ),
                ],
                10,
            ),
            true,
            "allowed_partial",
            vec![
                drop("attribute_missing"),
                drop("attribute_forbidden"),
                drop("attribute_forbidden"),
                drop("attribute_claim_mismatch"),
                keep(),
            ],
            vec![
                dc("attribute_missing", 1, 1),
                dc("attribute_forbidden", 2, 5),
                dc("attribute_claim_mismatch", 1, 4),
            ],
        ),
        (
            "attributes: equal-claim with the claim missing fails closed",
            principal("p", json!({"case": "attrs"})),
            batch(
                vec![resource(
                    Some("a"),
                    &[("deployment.id", "d"), ("vercel.project_id", "")],
                    1,
                )],
                10,
            ),
            true,
            "allowed_partial",
            vec![drop("attribute_claim_mismatch")],
            vec![dc("attribute_claim_mismatch", 1, 1)],
        ),
        (
            "max spans: at the limit",
            who("limits", "x"),
            batch(vec![resource(Some("a"), &[], 10)], 1000),
            true,
            "allowed",
            vec![keep()],
            vec![],
        ),
        (
            "max spans: over rejects even in drop mode",
            who("limits", "x"),
            batch(
                vec![resource(Some("a"), &[], 6), resource(Some("b"), &[], 5)],
                10,
            ),
            false,
            "too_many_spans",
            vec![],
            vec![],
        ),
        (
            "max bytes: over rejects",
            who("limits", "x"),
            batch(vec![resource(Some("a"), &[], 1)], 1001),
            false,
            "batch_too_large",
            vec![],
            vec![],
        ),
        (
            "binding narrows the role: both service lists must hold",
            who("narrowed", "checkout"),
            batch(vec![resource(Some("checkout-api"), &[], 1)], 10),
            true,
            "allowed",
            vec![keep()],
            vec![],
        ),
        (
            "binding narrows the role: role-only service refused",
            who("narrowed", "checkout"),
            batch(vec![resource(Some("checkout"), &[], 1)], 10),
            false,
            "service_not_allowed",
            vec![],
            vec![],
        ),
        (
            "binding narrows the role: tighter max spans",
            who("narrowed", "checkout"),
            batch(vec![resource(Some("checkout-api"), &[], 3)], 10),
            false,
            "too_many_spans",
            vec![],
            vec![],
        ),
        (
            "stamp missing claim fails closed",
            principal(
                "p",
                json!({"case": "stamp", "project": "checkout", "org": {"name": "acme"}}),
            ),
            batch(vec![resource(Some("a"), &[], 1)], 10),
            false,
            "stamp_claim_missing",
            vec![],
            vec![],
        ),
        (
            "rate key claim missing fails closed",
            principal("p", json!({"case": "rated-claim", "sub": "u"})),
            batch(vec![resource(Some("a"), &[], 1)], 10),
            false,
            "rate_key_claim_missing",
            vec![],
            vec![],
        ),
        (
            "rate key subject missing fails closed",
            principal("p", json!({"case": "rated-subject"})),
            batch(vec![resource(Some("a"), &[], 1)], 10),
            false,
            "rate_key_claim_missing",
            vec![],
            vec![],
        ),
    ];
    for (case, p, b, allowed, reason, verdicts, dropped) in rows {
        let d = set.decide(&p, &traces, &b);
        assert_eq!(
            (d.allowed, d.reason),
            (allowed, reason),
            "case: {case}: {d:?}"
        );
        assert_eq!(d.resources, verdicts, "case: {case}");
        assert_eq!(d.dropped, dropped, "case: {case}");
        assert_eq!(
            d.dropped_spans(),
            dropped.iter().map(|x| x.spans).sum::<usize>(),
            "case: {case}"
        );
        assert_eq!(
            d.protected,
            vec!["enduser.id", "spangate.", "tenant", "vercel.project_id"],
            "case: {case}"
        );
        if !allowed {
            assert!(d.rule.starts_with("binding["), "case: {case}: {}", d.rule);
            assert!(
                d.stamp.is_empty() && d.credential.is_none() && d.rate.is_none(),
                "case: {case}"
            );
        }
    }
}

#[test]
fn stamps_render_from_claims() {
    let set = load(&[("endpoints.yaml", ENDPOINTS), ("rules.yaml", CONSTRAINTS)]);
    let traces = set.endpoint_by_name("traces").unwrap().clone();
    let p = principal(
        "p",
        json!({"case": "stamp", "project": "checkout", "project_id": "prj_1", "org": {"name": "acme"}}),
    );
    let d = set.decide(&p, &traces, &batch(vec![resource(Some("a"), &[], 1)], 10));
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.rule, "binding[stamp]");
    assert_eq!(d.role.as_deref(), Some("plain"));
    assert_eq!(
        d.stamp,
        vec![
            ("tenant".to_string(), "acme/checkout".to_string()),
            ("vercel.project_id".to_string(), "prj_1".to_string())
        ]
    );
}

#[test]
fn rate_spec_and_key() {
    let set = load(&[("endpoints.yaml", ENDPOINTS), ("rules.yaml", CONSTRAINTS)]);
    let traces = set.endpoint_by_name("traces").unwrap().clone();
    let b = batch(vec![resource(Some("a"), &[], 1)], 10);
    let d = set.decide(
        &principal("p", json!({"case": "rated-subject", "sub": "alice"})),
        &traces,
        &b,
    );
    assert!(d.allowed);
    assert_eq!(
        d.rate,
        Some(RateSpec {
            requests_per_second: None,
            spans_per_second: Some(100),
            bytes_per_second: None,
            burst: None
        })
    );
    assert_eq!(d.rate_key, "binding[rated-subject]/alice");
    // The binding's rate replaces the role's; keyed by a claim.
    let d = set.decide(
        &principal(
            "p",
            json!({"case": "rated-claim", "sub": "bob", "project_id": "prj_9"}),
        ),
        &traces,
        &b,
    );
    assert!(d.allowed);
    assert_eq!(
        d.rate,
        Some(RateSpec {
            requests_per_second: Some(5),
            spans_per_second: None,
            bytes_per_second: None,
            burst: Some(3)
        })
    );
    assert_eq!(d.rate_key, "binding[rated-claim]/prj_9");
    // No rate: no key.
    let d = set.decide(
        &principal("p", json!({"case": "plain", "sub": "x"})),
        &traces,
        &b,
    );
    assert!(d.allowed && d.rate.is_none() && d.rate_key.is_empty());
}

#[test]
fn shadow_binding_reports_what_it_would_drop() {
    let set = load(&[("endpoints.yaml", ENDPOINTS), ("rules.yaml", CONSTRAINTS)]);
    let traces = set.endpoint_by_name("traces").unwrap().clone();
    let b = batch(
        vec![
            resource(Some("checkout"), &[], 1),
            resource(Some("other"), &[], 1),
        ],
        10,
    );
    let d = set.decide(
        &principal(
            "p",
            json!({"case": "plain", "sub": "x", "project": "checkout"}),
        ),
        &traces,
        &b,
    );
    // The enforced `plain` binding decides; the audit-mode `trial` binding
    // (earlier in the file) is reported with what it would have done.
    assert!(d.allowed);
    assert_eq!(d.rule, "binding[plain]");
    assert_eq!(d.resources, vec![keep(), keep()]);
    assert_eq!(
        d.shadow,
        vec![ShadowHit {
            rule: "binding[trial]".into(),
            would: "drop",
            reason: "allowed_partial"
        }]
    );
}

#[test]
fn decide_is_pure() {
    let set = load(&[("endpoints.yaml", ENDPOINTS), ("rules.yaml", CONSTRAINTS)]);
    let traces = set.endpoint_by_name("traces").unwrap().clone();
    let p = principal("p", json!({"case": "svc-drop", "project": "checkout"}));
    let b = batch(
        vec![
            resource(Some("checkout"), &[], 3),
            resource(Some("x"), &[], 2),
        ],
        100,
    );
    let first = set.decide(&p, &traces, &b);
    for _ in 0..10 {
        assert_eq!(set.decide(&p, &traces, &b), first);
    }
}

/// Entra ID and other IdPs leave large claims (`groups`) out of the token and
/// send a reference instead (`Principal::claims_overage`). A deny rule that
/// reads such a claim denies (fail closed); a binding that needs it does not
/// match, and the default deny says why.
#[test]
fn claims_overage_fails_closed() {
    let policy = r#"
roles:
  pub: { publish: { endpoints: [traces], services: ["*"] } }
  admin: { admin: [secrets:read] }
bindings:
  - { name: by-group, role: pub, credential: c, subjects: [{ provider: entra, claims: { tid: t1, groups: g-publishers } }] }
  - { name: by-app, role: pub, credential: c, subjects: [{ provider: entra, claims: { tid: t1, appid: app-1 } }] }
  - { name: admins, role: admin, subjects: [{ provider: entra, claims: { tid: t1, groups: g-admins } }] }
deny:
  - { name: blocked-group, subjects: [{ provider: entra, claims: { tid: t1, groups: g-blocked } }] }
"#;
    let set = load(&[("endpoints.yaml", ENDPOINTS), ("rules.yaml", policy)]);
    let traces = set.endpoint_by_name("traces").unwrap().clone();
    let with_overage = |claims: Value| {
        let mut p = principal("entra", claims);
        p.claims_overage = vec!["groups".into()];
        p
    };
    let empty = BatchSummary::default();

    // The blocked-group deny cannot be evaluated: deny.
    let d = set.decide(
        &with_overage(json!({"tid": "t1", "appid": "app-1"})),
        &traces,
        &empty,
    );
    assert_eq!(
        (d.allowed, d.rule.as_str(), d.reason),
        (false, "deny[blocked-group]", "claims_overage")
    );
    // Another tenant: the deny rule does not match on `tid`, and the binding
    // that needs `groups` cannot match.
    let d = set.decide(&with_overage(json!({"tid": "t2"})), &traces, &empty);
    assert_eq!((d.allowed, d.reason), (false, "no_match"));
    // The same principal without overage: allowed by app id.
    let d = set.decide(
        &principal("entra", json!({"tid": "t1", "appid": "app-1"})),
        &traces,
        &empty,
    );
    assert_eq!((d.allowed, d.rule.as_str()), (true, "binding[by-app]"));
    // Admin grants: the deny covers the admin API too.
    let g = set.admin_permissions(&with_overage(json!({"tid": "t1"})));
    assert_eq!(g.denied_by.as_deref(), Some("deny[blocked-group]"));
    assert!(!g.allows("secrets:read"));
    // Explain names the overage.
    let x = spangate::policy::explain(&set, &with_overage(json!({"tid": "t1"})), &traces, None);
    let text = x.to_string();
    assert!(
        text.contains("deny[blocked-group]: MATCH → deny (claims_overage) [DECIDED]"),
        "{text}"
    );
    assert!(
        text.contains(
            "claims.groups: not in the token (claims overage: the IdP sent a reference instead)"
        ),
        "{text}"
    );
}

#[test]
fn claims_overage_binding_without_deny_says_why() {
    let policy = r#"
roles:
  pub: { publish: { endpoints: [traces], services: ["*"] } }
bindings:
  - { name: by-group, role: pub, credential: c, subjects: [{ provider: entra, claims: { groups: g-publishers } }] }
"#;
    let set = load(&[("endpoints.yaml", ENDPOINTS), ("rules.yaml", policy)]);
    let traces = set.endpoint_by_name("traces").unwrap().clone();
    let mut p = principal("entra", json!({"sub": "s"}));
    p.claims_overage = vec!["groups".into()];
    let d = set.decide(&p, &traces, &BatchSummary::default());
    assert_eq!(
        (d.allowed, d.rule.as_str(), d.reason),
        (false, "default-deny", "claims_overage")
    );
    p.claims_overage.clear();
    let d = set.decide(&p, &traces, &BatchSummary::default());
    assert_eq!(d.reason, "no_match");
}
