//! The fleet behind Redis Sentinel, with real processes: a master, a
//! replica and one Sentinel (quorum 1) on loopback. Two spangate replicas
//! find the master through the Sentinel, rotate a credential, live through
//! a failover under load with the last credentials, and rotate again on the
//! new master.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::fleet::{self, Replica};
use common::load;
use common::redis::RedisServer;
use common::{Harness, LIGHTSTEP_TOKEN};

const MASTER_NAME: &str = "spangate-it";
const TOKEN_1: &str = "ls-sentinel-first-71c2";
const TOKEN_2: &str = "ls-sentinel-after-failover-9a0e";
const PREFIX: &str = "sent:";

/// One command against the server on `port`.
async fn query<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await
}

/// Poll `check` every 50 ms until it holds or `limit` passes.
async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The master address the Sentinel gives for the group.
async fn sentinel_master_port(sentinel: u16) -> Option<u16> {
    let addr: Vec<String> = query(
        sentinel,
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
    )
    .await
    .ok()?;
    addr.get(1)?.parse().ok()
}

async fn start_replica(id: &str, dir: &std::path::Path, sentinel: u16) -> Harness {
    let extra = format!(
        "    sentinel:\n      master_name: {MASTER_NAME}\n      nodes: [\"127.0.0.1:{sentinel}\"]\n"
    );
    Replica {
        id,
        redis_url: "",
        dir,
        prefix: PREFIX,
        // The periodic backstop far away: the replicas follow the failover
        // from the Sentinel's announcement or a refused command.
        reconcile: "1h",
        policies: None,
        extra_redis: &extra,
        extra_admin: "",
    }
    .start()
    .await
}

/// The rev of the credential record on the server on `port`.
async fn record_rev(port: u16) -> Option<u64> {
    let key = format!("{PREFIX}cred:{{lightstep-prod}}");
    query::<Option<u64>>(port, &["HGET", &key, "rev"])
        .await
        .ok()
        .flatten()
}

/// Rotate through `h` until it answers 200 (503 while the state store is
/// being re-resolved is expected right after a failover); the new version.
async fn rotate_until_ok(h: &Harness, value: &str, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let (code, body) = fleet::rotate(h, value).await;
        if code == 200 {
            return body["new_version"].as_u64().expect("new_version");
        }
        assert_eq!(
            code, 503,
            "only 'state store unavailable' is expected: {body}"
        );
        assert!(
            Instant::now() < deadline,
            "rotation still refused {limit:?} later: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_follows_a_sentinel_failover_rotation_works_on_the_new_master_and_traffic_never_stops()
 {
    failover(Failover::Command).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_follows_sentinel_when_the_master_is_killed_rotation_answers_503_until_the_new_master()
 {
    failover(Failover::KillMaster).await;
}

/// How the master goes away.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Failover {
    /// `SENTINEL FAILOVER` (the old master stays up and becomes a replica).
    Command,
    /// The master process is killed; the Sentinel notices (1 s) and promotes.
    KillMaster,
}

async fn failover(how: Failover) {
    let mut master = RedisServer::start();
    let replica = RedisServer::start_replica_of(&master);
    let (mport, rport) = (master.port(), replica.port());
    wait_for(Duration::from_secs(20), "the replica to sync", || async {
        query::<String>(rport, &["INFO", "replication"])
            .await
            .is_ok_and(|i| i.contains("master_link_status:up"))
    })
    .await;
    let sentinel = RedisServer::start_sentinel(&master, MASTER_NAME);
    let sport = sentinel.port();
    wait_for(
        Duration::from_secs(30),
        "the Sentinel to see the replica",
        || async {
            query::<Vec<HashMap<String, String>>>(sport, &["SENTINEL", "REPLICAS", MASTER_NAME])
                .await
                .is_ok_and(|rs| {
                    rs.iter().any(|r| {
                        r.get("port").map(String::as_str) == Some(&rport.to_string())
                            && r.get("flags").map(String::as_str) == Some("slave")
                            && r.get("master-link-status").map(String::as_str) == Some("ok")
                    })
                })
        },
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let replicas = vec![
        Arc::new(start_replica("s1", dir.path(), sport).await),
        Arc::new(start_replica("s2", dir.path(), sport).await),
    ];
    // Both find the master through the Sentinel and agree on v1.
    let master_addr = format!("127.0.0.1:{mport}");
    for h in &replicas {
        let mut st = serde_json::Value::Null;
        let found = common::wait_until(Duration::from_secs(10), || {
            let f = h.app.shared.fleet.as_ref().expect("fleet");
            // The snapshot is taken after the checks, so it is as new as they.
            let up = f.is_up() && fleet::injected(h) == 1;
            st = f.status();
            up && st["node"] == master_addr.as_str()
        })
        .await;
        assert!(found, "replica did not reach the master: {st}");
        assert_eq!(st["mode"], "sentinel", "{st}");
        assert_eq!(st["node"], master_addr.as_str(), "{st}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = load::spawn_load(&replicas, &stop, 2);
    load::wait_for_traffic(&replicas, 10).await;

    // Rotation through the Sentinel-resolved master reaches both replicas.
    let (code, body) = fleet::rotate(&replicas[0], TOKEN_1).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["new_version"], 2, "{body}");
    assert!(
        common::wait_until(Duration::from_secs(5), || replicas
            .iter()
            .all(|h| fleet::injected(h) == 2))
        .await,
        "both replicas inject v2"
    );
    let rev_before = record_rev(mport).await.expect("record on the master");
    wait_for(
        Duration::from_secs(10),
        "the record to reach the replica",
        || async { record_rev(rport).await == Some(rev_before) },
    )
    .await;

    // Failover: the Sentinel promotes the replica.
    for h in &replicas {
        h.upstream.clear();
    }
    match how {
        Failover::Command => {
            let ok: String = query(sport, &["SENTINEL", "FAILOVER", MASTER_NAME])
                .await
                .expect("SENTINEL FAILOVER");
            assert_eq!(ok, "OK");
        }
        Failover::KillMaster => {
            master.stop();
            // No master can be reached before the Sentinel promotes one
            // (it waits 1 s to call the master down): changes answer 503.
            let (code, body) = fleet::rotate(&replicas[0], "ls-never-applied").await;
            assert_eq!(code, 503, "{body}");
            let f = replicas[0].app.shared.fleet.as_ref().expect("fleet");
            assert!(
                common::wait_until(Duration::from_secs(5), || f.status()["state"] == "degraded")
                    .await,
                "status says degraded while no master answers"
            );
        }
    }
    wait_for(
        Duration::from_secs(30),
        "the Sentinel to name the replica master",
        || async { sentinel_master_port(sport).await == Some(rport) },
    )
    .await;
    wait_for(
        Duration::from_secs(30),
        "the promoted replica to act as master",
        || async {
            query::<String>(rport, &["INFO", "replication"])
                .await
                .is_ok_and(|i| i.contains("role:master"))
        },
    )
    .await;
    // Traffic went on through the failover with the last credentials.
    load::wait_for_traffic(&replicas, 5).await;
    for h in &replicas {
        let got = h.upstream.received();
        assert!(!got.is_empty());
        assert!(
            got.iter()
                .all(|r| r.header("lightstep-access-token") == Some(TOKEN_1)),
            "every request around the failover carried the last rotated credential"
        );
    }

    // Both replicas follow the Sentinel to the new master.
    let new_addr = format!("127.0.0.1:{rport}");
    let failover_done = Instant::now();
    assert!(
        common::wait_until(Duration::from_secs(10), || replicas.iter().all(|h| {
            h.app.shared.fleet.as_ref().expect("fleet").status()["node"] == new_addr.as_str()
        }))
        .await,
        "replicas follow the failover"
    );
    eprintln!(
        "replicas followed the new master {:?} after the Sentinel named it",
        failover_done.elapsed()
    );

    // Rotation works again, now on the new master, through the other replica.
    let v = rotate_until_ok(&replicas[1], TOKEN_2, Duration::from_secs(30)).await;
    assert!(v >= 3, "a new version after v2: {v}");
    let converged = common::wait_until(Duration::from_secs(5), || {
        replicas.iter().all(|h| fleet::injected(h) == v)
    })
    .await;
    assert!(
        converged,
        "both replicas inject v{v}: {:?}",
        replicas
            .iter()
            .map(|h| fleet::injected(h))
            .collect::<Vec<_>>()
    );
    let rev_after = record_rev(rport).await.expect("record on the new master");
    assert!(
        rev_after > rev_before,
        "the new master holds the new record: rev {rev_after} after {rev_before}"
    );
    // Commands still in flight on the old master's connection fail after
    // the switch (each one marks the store unreachable until the next
    // success): the state settles on "ok" with the next heartbeats.
    for h in &replicas {
        let f = h.app.shared.fleet.as_ref().expect("fleet");
        let settled = common::wait_until(Duration::from_secs(10), || {
            let st = f.status();
            st["state"] == "ok" && st["node"] == new_addr.as_str()
        })
        .await;
        assert!(settled, "{}", f.status());
    }
    for h in &replicas {
        h.upstream.clear();
    }
    load::wait_for_traffic(&replicas, 5).await;
    let statuses = load::finish_load(&stop, load).await;
    for h in &replicas {
        assert_eq!(
            h.upstream
                .received()
                .last()
                .and_then(|r| r.header("lightstep-access-token")),
            Some(TOKEN_2)
        );
    }
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty() && statuses.len() >= 40,
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        statuses.len()
    );
    assert_ne!(TOKEN_1, LIGHTSTEP_TOKEN);
    for h in replicas {
        Arc::try_unwrap(h).ok().expect("sole owner").stop().await;
    }
    drop((sentinel, replica, master));
}

/// Password-protected master and Sentinel: the sentinels' password and the
/// master's are separate settings, both read from files; without the
/// sentinels' password no master is found (degraded, changes 503), with it
/// rotation works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_finds_a_password_protected_master_through_a_password_protected_sentinel() {
    const MASTER_PW: &str = "master-pw-3c9d1e";
    const SENTINEL_PW: &str = "sentinel-pw-77ab02";
    let master = RedisServer::start_args(&["--requirepass", MASTER_PW]);
    let sentinel = RedisServer::start_sentinel_conf(
        &master,
        MASTER_NAME,
        &format!("sentinel auth-pass {MASTER_NAME} {MASTER_PW}\nrequirepass {SENTINEL_PW}\n"),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.pw"), MASTER_PW).unwrap();
    std::fs::write(dir.path().join("sentinel.pw"), SENTINEL_PW).unwrap();
    std::fs::write(dir.path().join("wrong.pw"), "not-the-password").unwrap();
    let start = |id: &'static str, sentinel_pw: &'static str| {
        let extra = format!(
            "    password: {{ file: \"{mp}\" }}\n    sentinel:\n      master_name: {MASTER_NAME}\n      nodes: [\"127.0.0.1:{sp}\"]\n      password: {{ file: \"{spw}\" }}\n",
            mp = dir.path().join("master.pw").display(),
            sp = sentinel.port(),
            spw = dir.path().join(sentinel_pw).display(),
        );
        let dir = dir.path().to_path_buf();
        async move {
            Replica {
                id,
                redis_url: "",
                dir: &dir,
                prefix: PREFIX,
                reconcile: "1h",
                policies: None,
                extra_redis: &extra,
                extra_admin: "",
            }
            .start()
            .await
        }
    };

    // The wrong sentinel password: serves from its local store, degraded.
    let wrong = start("w1", "wrong.pw").await;
    let (code, body) = fleet::rotate(&wrong, "ls-never-applied").await;
    assert_eq!(code, 503, "{body}");
    let st = wrong.app.shared.fleet.as_ref().expect("fleet").status();
    assert_eq!(st["state"], "degraded", "{st}");
    assert!(st["node"].is_null(), "{st}");
    assert_eq!(
        fleet::injected(&wrong),
        1,
        "serves its bootstrap credential"
    );
    let statuses = {
        let token = wrong.token("edge-prod");
        wrong.send_json(Some(&token), "checkout").await.status()
    };
    assert_eq!(statuses, 200);
    wrong.stop().await;

    // The right one: finds the master and rotates there.
    let h = start("p1", "sentinel.pw").await;
    let f = h.app.shared.fleet.as_ref().expect("fleet");
    assert!(
        common::wait_until(Duration::from_secs(10), || f.is_up()).await,
        "{}",
        f.status()
    );
    assert_eq!(
        f.status()["node"],
        format!("127.0.0.1:{}", master.port()).as_str()
    );
    let v = rotate_until_ok(&h, TOKEN_1, Duration::from_secs(10)).await;
    assert_eq!(v, 2);
    let client =
        redis::Client::open(format!("redis://:{MASTER_PW}@127.0.0.1:{}", master.port())).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let rev: Option<u64> = redis::cmd("HGET")
        .arg(format!("{PREFIX}cred:{{lightstep-prod}}"))
        .arg("rev")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(rev.is_some_and(|r| r >= 1), "the record is on the master");
    h.stop().await;
    drop((sentinel, master));
}
