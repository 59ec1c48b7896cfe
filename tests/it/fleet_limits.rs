//! Shared rate limits across three replicas and one real Redis.
//!
//! Count-based, not timing-based: a bucket of 300 requests that refills at
//! 1 request per second, hit by 3 × 200 attempts. However fast or slow the
//! machine, the fleet admits the bucket (300) plus what refills while the
//! test runs (one per second), within ±10 %.

use crate::common;

use std::sync::Arc;
use std::time::Instant;

use common::Harness;
use common::fleet::{self, Replica};
use common::redis::RedisServer;

const BUCKET: usize = 300;
const ATTEMPTS_PER_REPLICA: usize = 200;

fn limited_policies() -> Vec<(&'static str, String)> {
    common::shipped_policies_with_rate("rate: { requests_per_second: 1, burst: 300 }")
}

async fn replicas(
    redis: &RedisServer,
    dir: &std::path::Path,
    prefix: &str,
    extra: &str,
) -> Vec<Arc<Harness>> {
    let url = redis.url();
    fleet::start_all(&["l1", "l2", "l3"], |id| Replica {
        policies: Some(limited_policies()),
        extra_redis: extra,
        ..Replica::new(id, &url, dir, prefix)
    })
    .await
}

/// `n` attempts from each replica, 4 at a time per replica; every status.
async fn hammer(replicas: &[Arc<Harness>], n: usize) -> Vec<u16> {
    let mut tasks = Vec::new();
    for h in replicas {
        for w in 0..4 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let token = h.token("edge-prod");
                let mut out = Vec::new();
                for _ in (w..n).step_by(4) {
                    out.push(
                        h.send_json(Some(&token), "checkout")
                            .await
                            .status()
                            .as_u16(),
                    );
                }
                out
            }));
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_shared_limit_across_three_replicas_admits_the_configured_budget() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let replicas = replicas(&redis, dir.path(), "rl:", "").await;
    // Wait until the replicas see Redis, so no check is decided locally.
    assert!(fleet::wait_fleet(&replicas, |f| f.is_up() && f.live_replicas() == 3).await);
    let started = Instant::now();
    let statuses = hammer(&replicas, ATTEMPTS_PER_REPLICA).await;
    let secs = started.elapsed().as_secs_f64();
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        admitted + limited,
        statuses.len(),
        "only 200 or 429: {statuses:?}"
    );
    // The bucket plus what refilled (1/s) during the run.
    let expected = BUCKET as f64 + secs.ceil();
    let lo = (expected * 0.9).floor() as usize;
    let hi = (expected * 1.1).ceil() as usize;
    eprintln!(
        "fleet limit: {admitted} admitted of {} attempts across 3 replicas in {secs:.2}s (expected {expected:.0}, window {lo}..={hi})",
        statuses.len()
    );
    assert!(
        (lo..=hi).contains(&admitted),
        "{admitted} admitted, expected {expected:.0} ±10 % (3 separate limiters would admit up to {})",
        3 * BUCKET
    );
    let (checks, waits) = replicas.iter().fold((0, 0), |(c, w), h| {
        let m = h.app.shared.fleet.as_ref().unwrap().metrics();
        (c + m.rate_checks.get(), w + m.rate_waits.get())
    });
    eprintln!("fleet limit: {checks} checks, {waits} waited for Redis");
    // Each replica alone would have admitted all of its 200: the limit is shared.
    let fallbacks: u64 = replicas
        .iter()
        .map(|h| {
            h.app
                .shared
                .fleet
                .as_ref()
                .unwrap()
                .metrics()
                .rate_fallbacks
                .get()
        })
        .sum();
    assert_eq!(fallbacks, 0, "every check went through the fleet");
    fleet::stop_all(replicas).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_limits_fall_back_to_local_scaled_or_deny_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let replicas = replicas(&redis, dir.path(), "rl2:", "").await;
    assert!(fleet::wait_fleet(&replicas, |f| f.is_up() && f.live_replicas() == 3).await);
    redis.stop();
    assert!(fleet::wait_fleet(&replicas, |f| !f.is_up()).await);
    // Local limits: each replica admits a third of the bucket (100).
    let statuses = hammer(&replicas[..1], 150).await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        (95..=110).contains(&admitted),
        "{admitted} admitted by one replica alone"
    );
    fleet::stop_all(replicas).await;

    // `deny`: rate-limited traffic is refused while the store is down.
    redis.restart();
    let deny = replicas_deny(&redis, dir.path()).await;
    redis.stop();
    assert!(fleet::wait_fleet(&[&deny], |f| !f.is_up()).await);
    let resp = deny
        .send_json(Some(&deny.token("edge-prod")), "checkout")
        .await;
    assert_eq!(resp.status(), 429);
    deny.stop().await;
}

async fn replicas_deny(redis: &RedisServer, dir: &std::path::Path) -> Harness {
    let url = redis.url();
    Replica {
        policies: Some(limited_policies()),
        extra_redis: "    on_state_unavailable: deny\n",
        ..Replica::new("d1", &url, dir, "rl3:")
    }
    .start()
    .await
}
