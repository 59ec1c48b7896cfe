//! Secrets store: the per-request read (`current`) and a durable rotation.
//!
//! cargo bench --bench secrets

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use spangate::secrets::{Secret, SecretStore, SecretsConfig};

fn bench(c: &mut Criterion) {
    let mem = SecretStore::open(&SecretsConfig::default()).expect("store");
    for i in 0..10 {
        mem.rotate(
            &format!("cred-{i}"),
            Secret::new(format!("value-{i}-aaaa")),
            Duration::ZERO,
            None,
        )
        .expect("seed");
        mem.rotate(
            &format!("cred-{i}"),
            Secret::new(format!("value-{i}-bbbb")),
            Duration::from_secs(3600),
            None,
        )
        .expect("seed");
    }
    c.bench_function("secrets_current_with_previous", |b| {
        b.iter(|| std::hint::black_box(mem.current("cred-7")))
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let file = SecretStore::open(&SecretsConfig {
        store: Some(dir.path().join("s.json")),
        ..Default::default()
    })
    .expect("file store");
    let mut n = 0u64;
    let mut g = c.benchmark_group("secrets_rotate_file_fsync");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("rotate", |b| {
        b.iter(|| {
            n += 1;
            file.rotate(
                "lp",
                Secret::new(format!("rotated-{n}")),
                Duration::from_secs(60),
                None,
            )
            .expect("rotate")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
