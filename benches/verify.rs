//! Token verification cost: cold (full parse + signature + claims) versus a
//! verified-token cache hit, for ES256, RS256 and EdDSA tokens from the dev issuer.
//!
//! cargo bench --bench verify -- --warm-up-time 1 --measurement-time 3

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use spangate::client::{ClientOptions, HttpClient};
use spangate::dev::idp::{DevIdp, DevIdpOptions, DevKeyAlg};
use spangate::identity::{Identity, ProviderConfig};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("verify");
    for alg in [DevKeyAlg::Es256, DevKeyAlg::Rs256, DevKeyAlg::EdDsa] {
        let (idp, cold, cached, token) = rt.block_on(async {
            let idp = DevIdp::start(DevIdpOptions {
                alg,
                ..Default::default()
            })
            .await
            .expect("idp");
            let client = HttpClient::new(ClientOptions::default()).expect("client");
            let base = ProviderConfig::new(idp.issuer(), vec![idp.audience()]);
            let mut uncached = base.clone();
            uncached.token_cache_ttl = Duration::ZERO;
            let cold = Identity::start(
                &BTreeMap::from([("dev".to_string(), uncached)]),
                client.clone(),
            )
            .expect("start");
            let cached = Identity::start(&BTreeMap::from([("dev".to_string(), base)]), client)
                .expect("start");
            assert!(cold.wait_ready(Duration::from_secs(10)).await);
            assert!(cached.wait_ready(Duration::from_secs(10)).await);
            let token =
                idp.mint(json!({"sub": "bench", "project": "web", "environment": "production"}));
            cached.authenticate(&token).await.expect("valid");
            (idp, cold, cached, token)
        });
        let name = alg.name();
        group.bench_function(format!("{name}/cold"), |b| {
            b.to_async(&rt)
                .iter(|| async { cold.authenticate(&token).await.expect("valid") })
        });
        group.bench_function(format!("{name}/cached"), |b| {
            b.to_async(&rt)
                .iter(|| async { cached.authenticate(&token).await.expect("valid") })
        });
        drop(idp);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
