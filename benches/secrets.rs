//! Secrets store: the per-request read (`current`) and a durable rotation;
//! the admin API's failed-authentication throttle (the check every admin call
//! passes first) and parsing a rotate body straight into a `Secret`.
//!
//! cargo bench --bench secrets

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use spangate::admin::throttle::{AuthThrottle, AuthThrottleConfig, Verdict};
use spangate::secrets::{Secret, SecretStore, SecretsConfig};
use zeroize::Zeroizing;

fn bench_admin(c: &mut Criterion) {
    let throttle = AuthThrottle::new(AuthThrottleConfig {
        lockout: Duration::from_secs(3600),
        max_lockout: Duration::from_secs(3600),
        ..Default::default()
    });
    let now = Instant::now();
    let locked = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    for _ in 0..5 {
        if let Verdict::Proceed(a) = throttle.check(locked, now) {
            a.failed(now);
        }
    }
    let clean = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    c.bench_function("admin_throttle_check_clean_peer", |b| {
        b.iter(|| std::hint::black_box(matches!(throttle.check(clean, now), Verdict::Proceed(_))))
    });
    c.bench_function("admin_throttle_check_locked_peer", |b| {
        b.iter(|| {
            std::hint::black_box(matches!(
                throttle.check(locked, now),
                Verdict::Throttled { .. }
            ))
        })
    });

    #[derive(serde::Deserialize)]
    struct Rotate {
        value: Secret,
    }
    let body = Zeroizing::new(
        br#"{"value": "lightstep-token-0123456789abcdef0123456789abcdef\"x", "verify": false}"#
            .to_vec(),
    );
    c.bench_function("admin_rotate_body_into_secret", |b| {
        b.iter(|| {
            let r: Rotate = serde_json::from_slice(&body).expect("parse");
            std::hint::black_box(r.value.fingerprint().len())
        })
    });
}

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

criterion_group!(benches, bench, bench_admin);
criterion_main!(benches);
