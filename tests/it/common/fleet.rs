//! Replicas of one fleet for the fleet tests: each is the whole app
//! (`app::build`) with its own IdP, upstream and local store file, sharing
//! one real Redis.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::Method;
use serde_json::{Value, json};

pub use super::wait_until;
use super::{Harness, Options, sha256_hex};

pub const ADMIN_TOKEN: &str = "fleet-admin-5d1c9e";
/// The state key every replica of a test fleet shares (base64 of 32 bytes).
pub fn state_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([0x5au8; 32])
}

/// Knobs of one replica.
pub struct Replica<'a> {
    pub id: &'a str,
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

impl<'a> Replica<'a> {
    /// Replica `id` of the fleet at `redis_url` under `prefix`: reconcile
    /// hourly (only pub/sub converges within a test), the shipped policies
    /// unthrottled, no extra config.
    pub fn new(id: &'a str, redis_url: &'a str, dir: &'a Path, prefix: &'a str) -> Self {
        Replica {
            id,
            redis_url,
            dir,
            prefix,
            reconcile: "1h",
            policies: None,
            extra_redis: "",
            extra_admin: "",
        }
    }

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
    url: "{url}"
    key_prefix: "{prefix}"
    encryption_key: {{ file: "{key}" }}
    replica_id: {id}
    heartbeat_interval: 200ms
    reconcile_interval: {reconcile}
    timeout: 1s
{extra}"#,
                url = self.redis_url,
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

/// Start one replica per id (`replica` builds each), in order.
pub async fn start_all<'a>(
    ids: &[&'a str],
    replica: impl Fn(&'a str) -> Replica<'a>,
) -> Vec<Arc<Harness>> {
    let mut out = Vec::new();
    for id in ids {
        out.push(Arc::new(replica(id).start().await));
    }
    out
}

/// Stop every replica (the caller holds the only reference).
pub async fn stop_all(replicas: Vec<Arc<Harness>>) {
    for h in replicas {
        Arc::try_unwrap(h).ok().expect("sole owner").stop().await;
    }
}

/// The version of `lightstep-prod` each replica injects now.
pub fn versions(replicas: &[Arc<Harness>]) -> Vec<u64> {
    replicas.iter().map(|h| injected(h)).collect()
}

/// Wait (bounded: 10 s) until every replica's fleet state satisfies `cond`
/// (e.g. `Fleet::is_up`); returns whether it did.
pub async fn wait_fleet<H: std::ops::Deref<Target = Harness>>(
    replicas: &[H],
    cond: impl Fn(&spangate::state::Fleet) -> bool,
) -> bool {
    wait_until(Duration::from_secs(10), || {
        replicas
            .iter()
            .all(|h| h.app.shared.fleet.as_deref().is_some_and(&cond))
    })
    .await
}

/// Poll a replica's status (bounded: 10 s) until `cond` holds; that status.
pub async fn wait_status(h: &Harness, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    super::poll(Duration::from_secs(10), async || {
        let st = status(h).await;
        cond(&st).then_some(st)
    })
    .await
    .unwrap_or_else(|| panic!("status never showed {what}"))
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
    h.rotate(
        "lightstep-prod",
        ADMIN_TOKEN,
        json!({"value": value, "grace": "1m", "verify": false}),
    )
    .await
}
