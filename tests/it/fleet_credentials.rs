//! A fleet of three replicas sharing one real Redis: rotation through one
//! replica reaches all of them, the fleet view lists every replica, and
//! what Redis stores is ciphertext.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::fleet::{self, Replica};
use common::load;
use common::redis::RedisServer;
use common::{Harness, LIGHTSTEP_TOKEN};

const NEW_TOKEN: &str = "ls-fleet-rotated-4e7d";

async fn three(
    redis: &RedisServer,
    dir: &std::path::Path,
    prefix: &str,
    reconcile: &str,
) -> Vec<Arc<Harness>> {
    let url = redis.url();
    fleet::start_all(&["r1", "r2", "r3"], |id| Replica {
        reconcile,
        ..Replica::new(id, &url, dir, prefix)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rotation_through_one_replica_is_injected_by_all_within_a_second_and_no_request_fails()
 {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // Reconcile far away: only the pub/sub path can deliver within a second.
    let replicas = three(&redis, dir.path(), "rot:", "1h").await;
    // Every replica starts from the bootstrap value, v1, and the fleet agrees
    // on one record (pushed once by whichever replica got there first).
    assert!(
        fleet::wait_until(Duration::from_secs(10), || fleet::versions(&replicas)
            .iter()
            .all(|v| *v == 1))
        .await
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load = load::spawn_load(&replicas, &stop, 2);
    load::wait_for_traffic(&replicas, 10).await;

    let started = Instant::now();
    let (code, body) = fleet::rotate(&replicas[0], NEW_TOKEN).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["new_version"], 2, "{body}");
    let converged = fleet::wait_until(Duration::from_secs(1), || {
        fleet::versions(&replicas).iter().all(|v| *v == 2)
    })
    .await;
    let took = started.elapsed();
    assert!(
        converged,
        "not every replica injects v2 within 1 s of the rotation answer: {:?}",
        fleet::versions(&replicas)
    );
    eprintln!("fleet converged on the rotation {took:?} after the rotate call started");

    // Traffic after convergence carries the new token on every replica.
    for h in &replicas {
        h.upstream.clear();
    }
    load::wait_for_traffic(&replicas, 5).await;
    let statuses = load::finish_load(&stop, load).await;
    for h in &replicas {
        assert_eq!(h.last_injected().as_deref(), Some(NEW_TOKEN));
    }
    assert!(statuses.len() >= 60, "load ran: {}", statuses.len());
    let (checks, waits) = replicas.iter().fold((0, 0), |(c, w), h| {
        let m = h.app.shared.fleet.as_ref().unwrap().metrics();
        (c + m.rate_checks.get(), w + m.rate_waits.get())
    });
    eprintln!(
        "fleet rate limits under load: {checks} checks, {waits} waited for Redis ({:.2} %)",
        100.0 * waits as f64 / checks.max(1) as f64
    );
    assert!(
        checks >= statuses.len() as u64 - 6,
        "every request was checked fleet-wide"
    );
    load::assert_all_ok(&statuses);

    // The fleet view on any replica lists all three with the versions they inject.
    let st = fleet::wait_status(&replicas[1], "three replicas injecting v2", |st| {
        let reps = st["fleet"]["replicas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        reps.len() == 3 && reps.iter().all(|r| r["credentials"]["lightstep-prod"] == 2)
    })
    .await;
    assert_eq!(st["fleet"]["state"], "ok", "{st}");
    let ids: Vec<_> = st["fleet"]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["r1", "r2", "r3"]);
    let policy = st["policy"]["version"].clone();
    assert!(
        st["fleet"]["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["policy_version"] == policy)
    );
    let text = spangate::state::view::render_fleet(&st).expect("fleet text");
    assert!(
        text.contains("credential lightstep-prod: converged"),
        "{text}"
    );
    assert!(text.contains("r2 *"), "{text}");

    // A rollback through another replica reaches everyone too.
    let (code, body) = replicas[2]
        .admin(
            http::Method::POST,
            "/admin/v1/secrets/lightstep-prod/rollback",
            Some(fleet::ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        fleet::wait_until(Duration::from_secs(1), || replicas.iter().all(|h| {
            h.app
                .shared
                .secrets
                .current("lightstep-prod")
                .is_some_and(|c| c.version == 1 && c.value.expose() == LIGHTSTEP_TOKEN)
        }))
        .await
    );
    fleet::stop_all(replicas).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_values_in_redis_are_ciphertext_bound_to_their_key() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let h = Replica::new("solo", &url, dir.path(), "enc:").start().await;
    let (code, body) = fleet::rotate(&h, NEW_TOKEN).await;
    assert_eq!(code, 200, "{body}");

    let mut conn = redis.client().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.contains(&"enc:cred:{lightstep-prod}".to_string()),
        "{keys:?}"
    );
    // Every byte Redis holds, whatever the key type.
    let mut everything = String::new();
    for k in &keys {
        let t: String = redis::cmd("TYPE")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        let dump: Vec<String> = match t.as_str() {
            "string" => vec![
                redis::cmd("GET")
                    .arg(k)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
            ],
            "hash" => redis::cmd("HGETALL")
                .arg(k)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "set" => redis::cmd("SMEMBERS")
                .arg(k)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(k)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            other => panic!("unexpected key type {other} for {k}"),
        };
        everything.push_str(&dump.join("\n"));
    }
    assert!(!everything.contains(NEW_TOKEN) && !everything.contains(LIGHTSTEP_TOKEN));
    let blob: String = redis::cmd("HGET")
        .arg("enc:cred:{lightstep-prod}")
        .arg("blob")
        .query_async(&mut conn)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&blob).unwrap();
    assert_eq!(v["alg"], "AES-256-GCM");
    assert!(v["ciphertext"].as_str().is_some_and(|c| c.len() > 40));
    assert!(v.get("versions").is_none(), "no plaintext structure: {v}");

    // A record copied under another credential's key does not open there:
    // that replica keeps its own copy and says why in the log, not the value.
    let _: () = redis::cmd("HSET")
        .arg("enc:cred:{other}")
        .arg("rev")
        .arg(1)
        .arg("blob")
        .arg(&blob)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg("enc:credentials")
        .arg("other")
        .query_async(&mut conn)
        .await
        .unwrap();
    let f = h.app.shared.fleet.clone().unwrap();
    f.reconcile()
        .await
        .expect("reconcile runs past an unusable record");
    assert!(h.app.shared.secrets.current("other").is_none());
    assert_eq!(fleet::injected(&h), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_admin_failed_auth_throttle_is_shared_by_the_replicas() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let hs = fleet::start_all(&["t1", "t2"], |id| Replica {
        extra_admin: "  auth_throttle: { max_failures: 4, lockout: 1h, max_lockout: 1h }\n",
        ..Replica::new(id, &url, dir.path(), "thr:")
    })
    .await;
    assert!(fleet::wait_fleet(&hs, |f| f.is_up()).await);
    // Two wrong guesses on each replica: neither replica alone reaches 4.
    for h in &hs {
        for _ in 0..2 {
            let (code, _) = h
                .admin(
                    http::Method::GET,
                    "/admin/v1/status",
                    Some("wrong-guess"),
                    None,
                )
                .await;
            assert_eq!(code, 401);
        }
    }
    // The fleet saw 4: the peer is locked out everywhere, right token or not.
    for h in &hs {
        let (code, body) = h
            .admin(
                http::Method::GET,
                "/admin/v1/status",
                Some(fleet::ADMIN_TOKEN),
                None,
            )
            .await;
        assert_eq!(code, 429, "{body}");
        assert_eq!(body["error"], "auth_throttled");
    }
    fleet::stop_all(hs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_state_over_tls_to_redis() {
    let redis = RedisServer::start_tls();
    let (url, ca) = redis.tls().expect("tls");
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("    ca_file: \"{}\"\n", ca.display());
    let hs = fleet::start_all(&["s1", "s2"], |id| Replica {
        extra_redis: &extra,
        ..Replica::new(id, &url, dir.path(), "tls:")
    })
    .await;
    assert!(
        fleet::wait_fleet(&hs, |f| f.is_up()).await,
        "replicas reach Redis over TLS"
    );
    let (code, body) = fleet::rotate(&hs[0], NEW_TOKEN).await;
    assert_eq!(code, 200, "{body}");
    assert!(fleet::wait_until(Duration::from_secs(5), || fleet::injected(&hs[1]) == 2).await);
    // The record really went through this Redis (read on its plain port).
    let mut conn = redis.client().await;
    let rev: u64 = redis::cmd("HGET")
        .arg("tls:cred:{lightstep-prod}")
        .arg("rev")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(rev >= 2);
    fleet::stop_all(hs).await;
}
