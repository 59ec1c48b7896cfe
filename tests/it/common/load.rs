//! Steady traffic through one or more harnesses while something changes
//! (a rotation, a Redis outage), and waiting for it to flow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Harness, wait_until};

/// Send batches back to back from `workers` tasks per harness until `stop`
/// (bounded: at most 5000 requests or 60 s per worker); each task returns
/// every status it got.
pub fn spawn_load(
    replicas: &[Arc<Harness>],
    stop: &Arc<AtomicBool>,
    workers: usize,
) -> Vec<tokio::task::JoinHandle<Vec<u16>>> {
    let mut out = Vec::new();
    for h in replicas {
        for _ in 0..workers {
            let h = h.clone();
            let stop = stop.clone();
            out.push(tokio::spawn(async move {
                let token = h.token("edge-prod");
                let mut statuses = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed)
                    && statuses.len() < 5000
                    && Instant::now() < deadline
                {
                    statuses.push(
                        h.send_json(Some(&token), "checkout")
                            .await
                            .status()
                            .as_u16(),
                    );
                }
                statuses
            }));
        }
    }
    out
}

/// Stop the load and collect every status.
pub async fn finish_load(
    stop: &Arc<AtomicBool>,
    load: Vec<tokio::task::JoinHandle<Vec<u16>>>,
) -> Vec<u16> {
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in load {
        all.extend(t.await.unwrap());
    }
    all
}

/// Wait (bounded) until every harness's upstream has seen `n` more requests.
pub async fn wait_for_traffic(replicas: &[Arc<Harness>], n: usize) {
    let start: Vec<usize> = replicas
        .iter()
        .map(|h| h.upstream.received().len())
        .collect();
    let ok = wait_until(Duration::from_secs(20), || {
        replicas
            .iter()
            .zip(&start)
            .all(|(h, s)| h.upstream.received().len() >= s + n)
    })
    .await;
    assert!(ok, "traffic did not flow through every replica");
}

/// Every request of the load was answered 200.
pub fn assert_all_ok(statuses: &[u16]) {
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        statuses.len()
    );
}
