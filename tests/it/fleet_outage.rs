//! Redis outages: traffic continues with the last known credentials,
//! changes answer 503, status and metrics say degraded, and the fleet
//! reconverges when Redis is back, without a restart.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::fleet::{self, Replica};
use common::load;
use common::redis::RedisServer;
use common::{Harness, LIGHTSTEP_TOKEN};

const SECOND: &str = "ls-fleet-second-8a2f";
const THIRD: &str = "ls-fleet-third-c04b";

fn replica<'a>(id: &'a str, url: &'a str, dir: &'a std::path::Path) -> Replica<'a> {
    Replica {
        reconcile: "500ms",
        ..Replica::new(id, url, dir, "out:")
    }
}

async fn wait_status(h: &Harness, state: &str) -> serde_json::Value {
    fleet::wait_status(h, state, |st| st["fleet"]["state"] == state).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_redis_outage_keeps_traffic_refuses_changes_and_reconverges_without_restart() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let a = Arc::new(replica("a", &url, dir.path()).start().await);
    let b = Arc::new(replica("b", &url, dir.path()).start().await);
    let replicas = vec![a.clone(), b.clone()];
    let (code, body) = fleet::rotate(&a, SECOND).await;
    assert_eq!(code, 200, "{body}");
    assert!(fleet::wait_until(Duration::from_secs(5), || fleet::injected(&b) == 2).await);
    wait_status(&a, "ok").await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = load::spawn_load(&replicas, &stop, 2);
    load::wait_for_traffic(&replicas, 5).await;

    // Redis goes away under load.
    redis.stop();
    let st = wait_status(&a, "degraded").await;
    assert_eq!(st["fleet"]["message"], "degraded: state store unreachable");
    load::wait_for_traffic(&replicas, 10).await;
    // Rotation fails clearly while the state store is down.
    let (code, body) = fleet::rotate(&b, THIRD).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"], "state_unavailable", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("state store unreachable"),
        "{body}"
    );
    // Still ready: the replica serves with what it knows.
    let ready = a
        .client
        .get(
            &format!("http://{}/readyz", a.app.admin_addr),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let text = a.metrics_text().await;
    assert!(text.contains("spangate_state_store_up 0"), "{text}");
    // Requests kept the last known credential.
    for h in &replicas {
        assert_eq!(fleet::injected(h), 2);
        assert_eq!(h.last_injected().as_deref(), Some(SECOND));
    }

    // Redis comes back empty (no persistence): the replicas push what they
    // know, and the fleet works again without a restart.
    redis.restart();
    wait_status(&a, "ok").await;
    wait_status(&b, "ok").await;
    let mut code = 0;
    for _ in 0..100 {
        let (c, _) = fleet::rotate(&b, THIRD).await;
        code = c;
        if c == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, 200, "rotation works again once Redis is back");
    assert!(
        fleet::wait_until(Duration::from_secs(5), || fleet::versions(&replicas)
            .iter()
            .all(|v| *v == 3))
        .await,
        "both replicas inject v3: {:?}",
        fleet::versions(&replicas)
    );
    let statuses = load::finish_load(&stop, load).await;
    load::assert_all_ok(&statuses);
    let text = a.metrics_text().await;
    assert!(text.contains("spangate_state_store_up 1"), "{text}");
    drop((a, b));
    fleet::stop_all(replicas).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_replica_started_while_redis_is_down_serves_from_its_local_store_and_converges() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    // A replica that knows v2 in its local store, then stops.
    let first = replica("late", &url, dir.path()).start().await;
    let (code, body) = fleet::rotate(&first, SECOND).await;
    assert_eq!(code, 200, "{body}");
    first.stop().await;

    redis.stop();
    // It starts again while Redis is down: it serves at once with v2 from
    // its store file (not the bootstrap value).
    let late = replica("late", &url, dir.path()).start().await;
    assert_eq!(fleet::injected(&late), 2);
    let resp = late
        .send_json(Some(&late.token("edge-prod")), "checkout")
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(late.last_injected().as_deref(), Some(SECOND));
    assert_eq!(
        wait_status(&late, "degraded").await["fleet"]["state"],
        "degraded"
    );

    // Redis is back (empty) and another replica rotates: the late one converges.
    redis.restart();
    let other = replica("other", &url, dir.path()).start().await;
    wait_status(&late, "ok").await;
    // The late replica pushed its v2; the other adopts it, then rotates to v3.
    if !fleet::wait_until(Duration::from_secs(5), || fleet::injected(&other) == 2).await {
        let mut conn = redis.client().await;
        let rec: Vec<String> = redis::cmd("HMGET")
            .arg("out:cred:{lightstep-prod}")
            .arg("rev")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        panic!(
            "other injects v{}, late v{}; redis rev {rec:?}; late: {}; other: {}",
            fleet::injected(&other),
            fleet::injected(&late),
            fleet::status(&late).await["fleet"],
            fleet::status(&other).await["fleet"],
        );
    }
    let (code, body) = fleet::rotate(&other, THIRD).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["new_version"], 3, "{body}");
    assert!(fleet::wait_until(Duration::from_secs(5), || fleet::injected(&late) == 3).await);
    let resp = late
        .send_json(Some(&late.token("edge-prod")), "checkout")
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(late.last_injected().as_deref(), Some(THIRD));
    assert!(!LIGHTSTEP_TOKEN.is_empty());
    late.stop().await;
    other.stop().await;
}
