//! Replicas of one fleet for the fleet tests: each is the whole app
//! (`app::build`) with its own IdP, upstream and local store file, sharing
//! one real Redis.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use http::Method;
use serde_json::{Value, json};

use super::{Harness, Options, sha256_hex};

pub const ADMIN_TOKEN: &str = "fleet-admin-5d1c9e";
/// The state key every replica of a test fleet shares (base64 of 32 bytes).
pub fn state_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([0x5au8; 32])
}

/// Knobs of one replica.
pub struct Replica<'a> {
    pub id: &'a str,
    /// `state.redis.url`; empty: none (then `extra_redis` holds `sentinel:`).
    pub redis_url: &'a str,
    /// Directory for the key file and this replica's store file.
    pub dir: &'a Path,
    pub prefix: &'a str,
    pub reconcile: &'a str,
    pub policies: Option<Vec<(&'static str, String)>>,
    pub extra_redis: &'a str,
    /// Extra lines under `admin:` (indented two spaces).
    pub extra_admin: &'a str,
}

impl Replica<'_> {
    pub async fn start(self) -> Harness {
        let key_file = self.dir.join("state.key");
        if !key_file.exists() {
            std::fs::write(&key_file, state_key()).unwrap();
        }
        let store = self.dir.join(format!("{}-secrets.json", self.id));
        Harness::start_with(Options {
            admin_extra: format!(
                "  bootstrap_token_sha256: {}\n{}",
                sha256_hex(ADMIN_TOKEN),
                self.extra_admin
            ),
            secrets_extra: format!("  store: \"{}\"\n", store.display()),
            policies: Some(
                self.policies
                    .unwrap_or_else(super::shipped_policies_unthrottled),
            ),
            top_extra: format!(
                r#"state:
  redis:
{url}    key_prefix: "{prefix}"
    encryption_key: {{ file: "{key}" }}
    replica_id: {id}
    heartbeat_interval: 200ms
    reconcile_interval: {reconcile}
    timeout: 1s
{extra}"#,
                url = if self.redis_url.is_empty() {
                    String::new()
                } else {
                    format!("    url: \"{}\"\n", self.redis_url)
                },
                prefix = self.prefix,
                key = key_file.display(),
                id = self.id,
                reconcile = self.reconcile,
                extra = self.extra_redis,
            ),
            ..Default::default()
        })
        .await
    }
}

/// The version of `lightstep-prod` a replica injects now.
pub fn injected(h: &Harness) -> u64 {
    h.app
        .shared
        .secrets
        .current("lightstep-prod")
        .map_or(0, |c| c.version)
}

/// Wait (bounded by `limit`) until `cond` holds; returns whether it did.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// GET the admin status of a replica.
pub async fn status(h: &Harness) -> Value {
    let (code, body) = h
        .admin(Method::GET, "/admin/v1/status", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(code, 200, "{body}");
    body
}

/// Rotate `lightstep-prod` through a replica's admin API.
pub async fn rotate(h: &Harness, value: &str) -> (u16, Value) {
    h.admin(
        Method::POST,
        "/admin/v1/secrets/lightstep-prod/rotate",
        Some(ADMIN_TOKEN),
        Some(json!({"value": value, "grace": "1m", "verify": false})),
    )
    .await
}

/// Send batches from `workers` tasks per replica until `stop`; every status.
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

/// Wait (bounded) until every replica's upstream has seen `n` more requests.
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
