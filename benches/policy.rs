//! Policy decision speed: `cargo bench --bench policy`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use spangate::identity::Principal;
use spangate::otlp::{BatchSummary, ResourceSummary};
use spangate::policy::PolicySet;

fn principal(claims: Value) -> Principal {
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    Principal::from_verified_claims("dev", "http://127.0.0.1:1", claims)
}

/// The shipped policy plus `extra` bindings that never match (to measure scaling).
fn policy(extra: usize) -> (tempfile::TempDir, PolicySet) {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for f in ["endpoints.yaml", "edge.yaml"] {
        std::fs::copy(shipped.join(f), dir.path().join(f)).unwrap();
    }
    let mut more = String::from("bindings:\n");
    for i in 0..extra {
        more.push_str(&format!(
            "  - {{ role: edge-publisher, credential: lightstep-prod, subjects: [{{ provider: dev, claims: {{ owner_id: team_{i}, environment: [production, preview] }} }}] }}\n"
        ));
    }
    // Sorted after edge.yaml, so the demo identity matches before these.
    std::fs::write(
        dir.path().join("zz-more.yaml"),
        if extra > 0 { more } else { String::new() },
    )
    .unwrap();
    let set = PolicySet::load_dir(dir.path()).unwrap();
    (dir, set)
}

fn batch(resources: usize) -> BatchSummary {
    let resources: Vec<ResourceSummary> = (0..resources)
        .map(|i| ResourceSummary {
            service_name: Some(if i % 2 == 0 {
                "checkout-api".into()
            } else {
                "billing".into()
            }),
            attributes: vec![
                ("service.name".into(), "checkout-api".into()),
                ("deployment.id".into(), format!("d{i}")),
            ],
            spans: 50,
        })
        .collect();
    BatchSummary {
        spans: resources.iter().map(|r| r.spans).sum(),
        bytes: 10_000,
        resources,
    }
}

fn bench(c: &mut Criterion) {
    let allowed = principal(json!({
        "sub": "owner:team_demo:project:checkout:environment:production",
        "owner_id": "team_demo", "project": "checkout", "project_id": "prj_checkout", "environment": "production",
    }));
    let nomatch = principal(
        json!({"sub": "owner:team_x:project:y:environment:production", "owner_id": "team_x", "environment": "production"}),
    );
    let (_d0, small) = policy(0);
    let ep = small.endpoint_by_name("traces").unwrap().clone();
    let b1 = batch(1);
    let b8 = batch(8);
    c.bench_function("decide/allow/1-resource", |b| {
        b.iter(|| black_box(small.decide(&allowed, &ep, &b1)))
    });
    c.bench_function("decide/allow-drop/8-resources", |b| {
        b.iter(|| black_box(small.decide(&allowed, &ep, &b8)))
    });
    c.bench_function("decide/no-match/3-rules", |b| {
        b.iter(|| black_box(small.decide(&nomatch, &ep, &b1)))
    });
    let (_d1, big) = policy(200);
    c.bench_function("decide/no-match/203-rules", |b| {
        b.iter(|| black_box(big.decide(&nomatch, &ep, &b1)))
    });
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    c.bench_function("load_dir/shipped", |b| {
        b.iter(|| black_box(PolicySet::load_dir(&shipped).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
