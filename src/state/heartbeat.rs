//! Replica heartbeats: the fleet view.
//!
//! Every `heartbeat_interval` a replica writes `P replica:{ID}` (a JSON
//! [`ReplicaView`] with a TTL of three intervals) and its id into the
//! `P replicas` sorted set (score: the time of the heartbeat), then reads
//! back every replica seen within the TTL. The write doubles as the
//! reachability probe that turns the degraded state on and off, and the
//! count of live replicas scales the local rate limits during an outage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use ::redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::redis::Fleet;

/// Most replicas listed in the fleet view.
pub const MAX_REPLICAS: isize = 256;
/// Largest heartbeat record read back.
const MAX_RECORD_BYTES: usize = 16 * 1024;

/// One replica as it reports itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    /// Replica id.
    pub id: String,
    /// spangate version.
    pub version: String,
    /// Policy set version it enforces.
    pub policy_version: String,
    /// Credential name → version it injects.
    pub credentials: BTreeMap<String, u64>,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 time of this heartbeat.
    pub heartbeat_at: String,
    /// True for the replica that answered the status call.
    #[serde(default, skip_deserializing)]
    pub this: bool,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64)
}

impl Fleet {
    /// What this replica reports now.
    pub fn own_view(&self) -> ReplicaView {
        let credentials = self
            .store
            .names()
            .into_iter()
            .filter_map(|n| self.store.current(&n).map(|c| (n, c.version)))
            .collect();
        ReplicaView {
            id: self.replica_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            policy_version: self.policy.current().version().to_string(),
            credentials,
            started_at: rfc3339(self.started),
            heartbeat_at: rfc3339(SystemTime::now()),
            this: true,
        }
    }

    /// Write this replica's heartbeat and read the fleet back.
    pub async fn heartbeat(&self) -> Result<(), ()> {
        let interval = self.cfg.heartbeat_interval;
        let ttl = interval * 3;
        let now = SystemTime::now();
        let me = self.own_view();
        let body = serde_json::to_string(&me).map_err(|_| ())?;
        let key = self.keys.replica(&self.replica_id);
        let index = self.keys.replica_index();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.conn();
        let id = self.replica_id.clone();
        let cutoff = unix_ms(now) - ttl.as_millis() as f64;
        let ids: Vec<String> = self
            .run(async move {
                let mut pipe = ::redis::pipe();
                pipe.cmd("SET")
                    .arg(&key)
                    .arg(&body)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore()
                    .zadd(&index, &id, unix_ms(now))
                    .ignore()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&index)
                    .arg("-inf")
                    .arg(format!("({cutoff}"))
                    .ignore()
                    .zrevrange(&index, 0, MAX_REPLICAS - 1);
                let (ids,): (Vec<String>,) = pipe.query_async(&mut conn).await?;
                Ok(ids)
            })
            .await?;
        let mut views = Vec::with_capacity(ids.len());
        for id in ids {
            let mut conn = self.conn();
            let key = self.keys.replica(&id);
            let raw: Option<Vec<u8>> = self.run(async move { conn.get(&key).await }).await?;
            let Some(raw) = raw.filter(|r| r.len() <= MAX_RECORD_BYTES) else {
                continue;
            };
            if let Ok(mut v) = serde_json::from_slice::<ReplicaView>(&raw) {
                v.this = v.id == self.replica_id;
                views.push(v);
            }
        }
        views.sort_by(|a, b| a.id.cmp(&b.id));
        let live = views.len().max(1);
        self.live_replicas.store(live, Ordering::Relaxed);
        self.metrics
            .replicas
            .set(i64::try_from(live).unwrap_or(i64::MAX));
        self.replicas.store(Arc::new(views));
        Ok(())
    }

    pub(super) async fn heartbeat_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let _ = self.heartbeat().await;
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.heartbeat_interval) => {}
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { break },
            }
        }
        // Leave the fleet view at once on a clean shutdown.
        let mut conn = self.conn();
        let key = self.keys.replica(&self.replica_id);
        let index = self.keys.replica_index();
        let id = self.replica_id.clone();
        let _ = self
            .run(async move {
                let mut pipe = ::redis::pipe();
                pipe.del(&key).ignore().zrem(&index, &id).ignore();
                pipe.query_async::<()>(&mut conn).await
            })
            .await;
    }
}
