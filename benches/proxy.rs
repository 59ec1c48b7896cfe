//! Whole-proxy cost: one OTLP/HTTP export through spangate (authenticate with
//! a cached token, decode, decide, stamp, re-encode, inject, forward) against
//! the same export sent straight to the same upstream, in the same run. The
//! ratio is spangate's added latency per batch on loopback.
//!
//! `cargo bench --bench proxy -- --warm-up-time 1 --measurement-time 5`

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use spangate::audit::Audit;
use spangate::client::{HttpClient, OutBody};
use spangate::config::Config;
use spangate::dev::idp::{DevIdp, DevIdpOptions};
use spangate::dev::upstream::RecordingUpstream;

fn batch(spans: usize) -> Bytes {
    let json = spangate::dev::sample_batch_json("checkout", spans);
    let req: ExportTraceServiceRequest = serde_json::from_str(&json).expect("valid OTLP/JSON");
    Bytes::from(req.encode_to_vec())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (idp, upstream, app, dir) = rt.block_on(async {
        let idp = DevIdp::start(DevIdpOptions {
            audience: "spangate".into(),
            identities: spangate::dev::demo_identities(),
            ..Default::default()
        })
        .await
        .expect("idp");
        let upstream = RecordingUpstream::start("127.0.0.1:0".parse().unwrap())
            .await
            .expect("upstream");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("tok"), "bench-token").unwrap();
        // The shipped policies, with the rate limit raised out of the way (the
        // limiter stays in the measured path).
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        for (name, text) in common::shipped_policies_unthrottled() {
            std::fs::write(policies.join(name), text).unwrap();
        }
        let text = format!(
            "server: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nproviders:\n  dev: {{ issuer: \"{}\", audiences: [spangate] }}\nupstreams:\n  lightstep: {{ url: \"{}\" }}\nsecrets:\n  bootstrap: {{ lightstep-prod: {{ file: \"{}\" }} }}\npolicies: \"{}\"\n",
            idp.issuer(),
            upstream.url("/traces/otlp/v0.9"),
            dir.path().join("tok").display(),
            policies.display()
        );
        let cfg = Config::parse(Path::new("bench.yaml"), &text).expect("config");
        let app = spangate::app::build(cfg, Audit::to_writer(Box::new(std::io::sink())))
            .await
            .expect("app");
        assert!(app.shared.identity.wait_ready(Duration::from_secs(10)).await);
        (idp, upstream, app, dir)
    });
    let token = idp.mint(
        spangate::dev::demo_identities()
            .remove("edge-prod")
            .unwrap(),
    );
    let client = HttpClient::new(Default::default()).expect("client");
    let proxy_url = format!("http://{}/v1/traces", app.proxy_addr);
    let direct_url = upstream.url("/traces/otlp/v0.9");

    let send = |url: &str, body: &Bytes, auth: bool| {
        let mut req = http::Request::post(url).header("content-type", "application/x-protobuf");
        if auth {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(OutBody::new(body.clone())).unwrap();
        let client = client.clone();
        async move {
            let resp = client
                .send(req, Duration::from_secs(10), 1 << 20)
                .await
                .expect("answer");
            assert_eq!(resp.status(), 200);
        }
    };
    let mut group = c.benchmark_group("export");
    for spans in [10, 100, 1000] {
        let body = batch(spans);
        group.throughput(Throughput::Elements(spans as u64));
        group.bench_with_input(
            BenchmarkId::new("direct_to_upstream", spans),
            &body,
            |b, body| {
                b.to_async(&rt).iter(|| send(&direct_url, body, false));
                upstream.clear();
            },
        );
        group.bench_with_input(
            BenchmarkId::new("through_spangate", spans),
            &body,
            |b, body| {
                b.to_async(&rt).iter(|| send(&proxy_url, body, true));
                upstream.clear();
            },
        );
    }
    group.finish();
    rt.block_on(app.shutdown());
    drop(dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
