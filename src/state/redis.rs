//! The Redis side of the fleet: connection, credentials, pub/sub, reconcile.
//!
//! ## Keys (prefix `P`, default `spangate:`)
//! | key | type | holds |
//! |---|---|---|
//! | `P cred:{NAME}` | hash | `rev` (counter), `blob` (sealed credential record) |
//! | `P credentials` | set | credential names (for reconcile) |
//! | `P events` | channel | `{"name":..,"rev":..}` after every change |
//! | `P replica:{ID}` | string, TTL | one replica's heartbeat (see `heartbeat`) |
//! | `P replicas` | sorted set | replica ids by last heartbeat |
//! | `P rl:{HASH}:r`, `:s`, `:b` | string, TTL | GCRA theoretical arrival times (see `limits`) |
//! | `P authfail:{PEER}` / `P authlock:{PEER}` | string, TTL | shared admin throttle |
//!
//! Every script touches keys of one hash tag only, so the layout works on
//! Redis Cluster; the set and sorted-set indexes are single keys.
//!
//! ## A change
//! Read `rev` + `blob`, open the record, apply the [`Change`] with the same
//! code the embedded store uses, seal the result, and write it with a Lua
//! compare-and-set on `rev` that also publishes the event. A concurrent
//! change by another replica makes the CAS fail; the change is retried on
//! the fresh record (bounded). The replica that made the change adopts it at
//! once; the others adopt it from the event or, if it was missed, from the
//! next reconcile (every `reconcile_interval` and after every reconnect).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use ::redis::AsyncCommands;
use ::redis::aio::ConnectionManagerConfig;
use arc_swap::ArcSwap;
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::RedisConfig;
use super::heartbeat::ReplicaView;
use super::link::{Conn, Link};
use super::{RedisConfig as Cfg, SentinelConfig};
use crate::policy::PolicyHolder;
use crate::secrets::crypto::{ALGORITHM, Sealed, StoreKey};
use crate::secrets::{Change, Changed, CredentialRecord, SecretStore, SecretsError, valid_name};

/// Optimistic retries of one change before it answers `state_conflict`.
const MAX_CAS_ATTEMPTS: usize = 8;
/// Longest wait between reconnect attempts of the subscriber.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Largest event payload accepted from the channel.
const MAX_EVENT_BYTES: usize = 512;

/// Compare-and-set of one credential record; publishes the change.
/// KEYS[1] record; ARGV: expected rev, blob, channel, name. Returns the new
/// rev, or -1 when the record changed in between.
pub(crate) const CAS_SCRIPT: &str = r#"
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= tonumber(ARGV[1]) then return -1 end
rev = rev + 1
redis.call('HSET', KEYS[1], 'rev', rev, 'blob', ARGV[2])
redis.call('PUBLISH', ARGV[3], cjson.encode({name = ARGV[4], rev = rev}))
return rev
"#;

/// Key names of one fleet.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }
    /// The record of credential `name` (hash tag: the name).
    pub fn credential(&self, name: &str) -> String {
        format!("{}cred:{{{name}}}", self.prefix)
    }
    /// The set of credential names.
    pub fn credential_index(&self) -> String {
        format!("{}credentials", self.prefix)
    }
    /// The change channel.
    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }
    /// One replica's heartbeat.
    pub fn replica(&self, id: &str) -> String {
        format!("{}replica:{{{id}}}", self.prefix)
    }
    /// The replica index.
    pub fn replica_index(&self) -> String {
        format!("{}replicas", self.prefix)
    }
    /// GCRA key of one rate-limit key hash and dimension (`r`, `s`, `b`).
    pub fn rate(&self, key_hash: &str, dim: &str) -> String {
        format!("{}rl:{{{key_hash}}}:{dim}", self.prefix)
    }
    /// Failure counter of one admin peer.
    pub fn auth_failures(&self, peer: &str) -> String {
        format!("{}authfail:{{{peer}}}", self.prefix)
    }
    /// Lockout marker of one admin peer.
    pub fn auth_lock(&self, peer: &str) -> String {
        format!("{}authlock:{{{peer}}}", self.prefix)
    }

    // The KEYS of every script, built here only: on Redis Cluster a script
    // may touch keys of one hash slot only, so each list shares one hash
    // tag (checked by `state::tests::every_script_touches_one_hash_slot`).

    /// KEYS of the credential compare-and-set script.
    pub fn cas_keys(&self, name: &str) -> [String; 1] {
        [self.credential(name)]
    }
    /// KEYS of the GCRA script: requests, spans, bytes of one limit key.
    pub fn gcra_keys(&self, key_hash: &str) -> [String; 3] {
        ["r", "s", "b"].map(|d| self.rate(key_hash, d))
    }
    /// KEYS of the admin failed-auth script: failures, lockout.
    pub fn auth_fail_keys(&self, peer: &str) -> [String; 2] {
        [self.auth_failures(peer), self.auth_lock(peer)]
    }
}

/// A credential record as stored in Redis (sealed).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Blob {
    alg: String,
    key_fingerprint: String,
    nonce: String,
    ciphertext: String,
}

/// A change event on the channel.
#[derive(Deserialize)]
struct Event {
    name: String,
    rev: u64,
}

/// Metrics of the fleet state.
#[derive(Debug, Clone, Default)]
pub struct StateMetrics {
    /// 1 while the state store answers, 0 while it is unreachable.
    pub up: Gauge,
    /// Redis commands that failed or timed out.
    pub errors: Counter,
    /// Credential records adopted from the state store.
    pub adopted: Counter,
    /// Rate-limit checks decided locally because the store was unreachable.
    pub rate_fallbacks: Counter,
    /// Live replicas seen at the last heartbeat.
    pub replicas: Gauge,
    /// Rate-limit checks made against the fleet's buckets.
    pub rate_checks: Counter,
    /// Of those, checks that waited for a round-trip to Redis (the lease
    /// did not cover the batch).
    pub rate_waits: Counter,
}

impl StateMetrics {
    /// Add these metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "state_store_up",
            "1 when the shared state store (Redis) answers; 0 = degraded: state store unreachable",
            self.up.clone(),
        );
        registry.register(
            "state_store_errors",
            "Shared state store commands that failed or timed out",
            self.errors.clone(),
        );
        registry.register(
            "state_credentials_adopted",
            "Credential records adopted from the shared state store",
            self.adopted.clone(),
        );
        registry.register(
            "state_rate_limit_fallbacks",
            "Rate-limit checks decided by this replica alone because the state store was unreachable",
            self.rate_fallbacks.clone(),
        );
        registry.register(
            "state_rate_limit_checks",
            "Rate-limit checks made against the fleet-wide buckets",
            self.rate_checks.clone(),
        );
        registry.register(
            "state_rate_limit_waits",
            "Fleet rate-limit checks that waited for Redis (the local lease did not cover the batch)",
            self.rate_waits.clone(),
        );
        registry.register(
            "state_replicas",
            "Live replicas in the fleet (heartbeats seen)",
            self.replicas.clone(),
        );
    }
}

/// A replica's handle on the shared state.
pub struct Fleet {
    pub(crate) cfg: RedisConfig,
    pub(crate) keys: Keys,
    pub(crate) link: Arc<Link>,
    key: StoreKey,
    pub(crate) store: Arc<SecretStore>,
    pub(crate) policy: Arc<PolicyHolder>,
    pub(crate) replica_id: String,
    pub(crate) started: SystemTime,
    up: AtomicBool,
    /// Woken when the store becomes reachable again (the subscriber then
    /// stops waiting out its backoff).
    reachable: tokio::sync::Notify,
    /// Highest record revision adopted per credential; held while adopting
    /// so adoptions of one credential never run out of order.
    revs: tokio::sync::Mutex<HashMap<String, u64>>,
    pub(crate) replicas: ArcSwap<Vec<ReplicaView>>,
    pub(crate) live_replicas: AtomicUsize,
    pub(crate) metrics: StateMetrics,
    reconciles: AtomicU64,
    pub(crate) limits: super::limits::FleetLimiter,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("replica_id", &self.replica_id)
            .field("prefix", &self.keys.prefix)
            .field("up", &self.is_up())
            .finish()
    }
}

/// Why the fleet state could not be set up (config-level problems only:
/// an unreachable Redis is not one).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A credential or key source cannot be read.
    #[error("state.redis: {0}")]
    Secret(#[from] SecretsError),
    /// The encryption key is not base64 of 32 bytes.
    #[error("state.redis.encryption_key must be base64 of exactly 32 bytes")]
    BadKey,
    /// The URL or client settings are refused by the Redis client.
    #[error("state.redis.url: {0}")]
    Client(String),
    /// The Sentinel settings are refused by the Redis client.
    #[error("state.redis.sentinel: {0}")]
    Sentinel(String),
}

impl Fleet {
    /// Set up the fleet state. Never waits for Redis: the connection is made
    /// lazily and retried with backoff, so a replica starts (from its local
    /// store) while Redis is down.
    pub fn new(
        cfg: &RedisConfig,
        store: Arc<SecretStore>,
        policy: Arc<PolicyHolder>,
        rate_limit_keys: u64,
    ) -> Result<Arc<Fleet>, FleetError> {
        let key_text = cfg.encryption_key.read("state.redis.encryption_key")?;
        let key =
            StoreKey::from_base64(key_text.expose().trim()).map_err(|_| FleetError::BadKey)?;
        let mgr_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(3);
        let ca = match &cfg.ca_file {
            None => None,
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                FleetError::Client(format!("ca_file {}: {}", path.display(), e.kind()))
            })?),
        };
        let link = match (&cfg.url, &cfg.sentinel) {
            (Some(url), _) => Link::direct(direct_client(cfg, url, ca)?, mgr_cfg, cfg.timeout)
                .map_err(|e| FleetError::Client(e.to_string()))?,
            (None, Some(s)) => Link::sentinel(
                sentinel_client(cfg, s, ca)?,
                &s.master_name,
                mgr_cfg,
                cfg.timeout,
            ),
            (None, None) => {
                return Err(FleetError::Client("set url (or sentinel)".into()));
            }
        };
        let replica_id = cfg.replica_id.clone().unwrap_or_else(default_replica_id);
        let keys = Keys::new(&cfg.key_prefix);
        Ok(Arc::new(Fleet {
            limits: super::limits::FleetLimiter::new(rate_limit_keys, cfg.on_state_unavailable),
            cfg: cfg.clone(),
            keys,
            link: Arc::new(link),
            key,
            store,
            policy,
            replica_id,
            started: SystemTime::now(),
            up: AtomicBool::new(false),
            reachable: tokio::sync::Notify::new(),
            revs: tokio::sync::Mutex::new(HashMap::new()),
            replicas: ArcSwap::from_pointee(Vec::new()),
            live_replicas: AtomicUsize::new(1),
            metrics: StateMetrics::default(),
            reconciles: AtomicU64::new(0),
        }))
    }

    /// A connection to the state store's node in use (cheap).
    pub(crate) fn conn(&self) -> Conn {
        self.link.conn()
    }

    /// Metrics of the fleet state (register them once at start-up).
    pub fn metrics(&self) -> &StateMetrics {
        &self.metrics
    }

    /// This replica's id in the fleet view.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// True while the state store answers.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Live replicas seen at the last heartbeat (at least 1: this one).
    pub fn live_replicas(&self) -> usize {
        self.live_replicas.load(Ordering::Relaxed).max(1)
    }

    /// Full reconciles completed.
    pub fn reconciles(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }

    /// The fleet section of `status`.
    pub fn status(&self) -> serde_json::Value {
        let up = self.is_up();
        serde_json::json!({
            "store": "redis",
            "state": if up { "ok" } else { "degraded" },
            "message": if up { "state store reachable" } else { "degraded: state store unreachable" },
            "replica_id": self.replica_id,
            "key_prefix": self.keys.prefix,
            "mode": if self.link.is_sentinel() { "sentinel" } else { "standalone" },
            "node": self.link.address(),
            "on_state_unavailable": match self.cfg.on_state_unavailable {
                super::OnUnavailable::Local => "local",
                super::OnUnavailable::Deny => "deny",
            },
            "live_replicas": self.live_replicas(),
            "replicas": &**self.replicas.load(),
            "reconciles": self.reconciles(),
        })
    }

    /// Record the outcome of a Redis command (reachability, metrics).
    pub(crate) fn observe<T>(&self, r: &Result<T, ()>) {
        let now_up = r.is_ok();
        let was = self.up.swap(now_up, Ordering::Relaxed);
        self.metrics.up.set(i64::from(now_up));
        if !now_up {
            self.metrics.errors.inc();
        }
        if was != now_up {
            if now_up {
                self.reachable.notify_waiters();
                tracing::info!("state store reachable again");
            } else {
                tracing::warn!(
                    "degraded: state store unreachable; serving with the last known credentials"
                );
            }
        }
    }

    /// Run one Redis command with the configured timeout; any failure is
    /// `Err(())` (already counted and logged at reachability changes).
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, ()>
    where
        F: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        let r = match tokio::time::timeout(self.cfg.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "state store command failed");
                Err(())
            }
            Err(_) => Err(()),
        };
        if r.is_err() {
            // Sentinel: the master may have moved; ask again.
            self.link.suspect();
        }
        self.observe(&r);
        r
    }

    fn aad(&self, name: &str) -> Vec<u8> {
        format!("spangate-state:v1:{}", self.keys.credential(name)).into_bytes()
    }

    fn seal(&self, name: &str, rec: &CredentialRecord) -> Result<String, SecretsError> {
        let plain = crate::secrets::json::to_zeroizing_json(rec, false, 0).map_err(|e| {
            SecretsError::Encode {
                reason: e.to_string(),
            }
        })?;
        let Sealed { nonce, ciphertext } =
            self.key
                .seal_bound(&self.aad(name), &plain)
                .map_err(|_| SecretsError::Encode {
                    reason: "encryption failed".into(),
                })?;
        serde_json::to_string(&Blob {
            alg: ALGORITHM.into(),
            key_fingerprint: self.key.fingerprint().to_string(),
            nonce,
            ciphertext,
        })
        .map_err(|e| SecretsError::Encode {
            reason: e.to_string(),
        })
    }

    fn open(&self, name: &str, blob: &[u8]) -> Result<CredentialRecord, SecretsError> {
        let corrupt = |reason: String| SecretsError::StateCorrupt {
            name: name.to_string(),
            reason,
        };
        let b: Blob = serde_json::from_slice(blob)
            .map_err(|e| corrupt(format!("not a sealed record: {e}")))?;
        if b.alg != ALGORITHM {
            return Err(corrupt(format!("unsupported encryption {:?}", b.alg)));
        }
        if b.key_fingerprint != self.key.fingerprint() {
            return Err(corrupt(format!(
                "sealed with key sha256:{}, this replica has sha256:{}",
                b.key_fingerprint,
                self.key.fingerprint()
            )));
        }
        let plain = self
            .key
            .open_bound(
                &self.aad(name),
                &Sealed {
                    nonce: b.nonce,
                    ciphertext: b.ciphertext,
                },
            )
            .map_err(|_| corrupt("does not authenticate (tampered or wrong key)".into()))?;
        let rec: CredentialRecord = serde_json::from_slice(&plain)
            .map_err(|e| corrupt(format!("not a credential record: {e}")))?;
        rec.check(name).map_err(corrupt)?;
        Ok(rec)
    }

    /// The record of `name` in Redis with its revision (`None`: no record).
    async fn fetch(&self, name: &str) -> Result<Option<(u64, CredentialRecord)>, SecretsError> {
        let mut conn = self.conn();
        let key = self.keys.credential(name);
        let (rev, blob): (Option<u64>, Option<Vec<u8>>) = self
            .run(async move {
                ::redis::cmd("HMGET")
                    .arg(&key)
                    .arg("rev")
                    .arg("blob")
                    .query_async(&mut conn)
                    .await
            })
            .await
            .map_err(|()| SecretsError::StateUnavailable)?;
        match (rev, blob) {
            (Some(rev), Some(blob)) => {
                let blob = zeroize::Zeroizing::new(blob);
                Ok(Some((rev, self.open(name, &blob)?)))
            }
            _ => Ok(None),
        }
    }

    /// Compare-and-set; `Some(new rev)` on success, `None` on a conflict.
    async fn cas(
        &self,
        name: &str,
        expect: u64,
        blob: String,
    ) -> Result<Option<u64>, SecretsError> {
        let mut conn = self.conn();
        let [key] = self.keys.cas_keys(name);
        let channel = self.keys.events();
        let script = ::redis::Script::new(CAS_SCRIPT);
        let name_owned = name.to_string();
        let rev: i64 = self
            .run(async move {
                script
                    .key(key)
                    .arg(expect)
                    .arg(blob)
                    .arg(channel)
                    .arg(name_owned)
                    .invoke_async(&mut conn)
                    .await
            })
            .await
            .map_err(|()| SecretsError::StateUnavailable)?;
        let Ok(rev) = u64::try_from(rev) else {
            return Ok(None);
        };
        // The index is another key (another slot on a cluster): added after.
        let mut conn = self.conn();
        let index = self.keys.credential_index();
        let n = name.to_string();
        let _ = self
            .run(async move { conn.sadd::<_, _, i64>(&index, &n).await })
            .await;
        Ok(Some(rev))
    }

    /// Apply a change through Redis (atomic per credential), then adopt it here.
    pub async fn change(&self, name: &str, change: Change) -> Result<Changed, SecretsError> {
        change.validate(name)?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (rev, base) = match self.fetch(name).await? {
                Some((rev, rec)) => (rev, Some(rec)),
                // Not in Redis yet (e.g. a bootstrap value no replica has
                // pushed): continue from the local record's versions.
                None => (0, self.store.record(name)),
            };
            let mut state = crate::secrets::StoreState::default();
            if let Some(base) = base {
                state.insert(name, base);
            }
            let (out, changed) = state.apply(name, change.clone(), SystemTime::now())?;
            if !changed {
                return Ok(out);
            }
            let Some(rec) = state.take(name) else {
                return Err(SecretsError::NotFound {
                    name: name.to_string(),
                });
            };
            let blob = self.seal(name, &rec)?;
            if let Some(new_rev) = self.cas(name, rev, blob).await? {
                self.adopt(name, new_rev, rec).await?;
                self.store.note(name, &out);
                return Ok(out);
            }
        }
        Err(SecretsError::StateConflict {
            name: name.to_string(),
        })
    }

    /// Make a record fetched at `rev` the local one, unless a newer one was
    /// adopted already.
    async fn adopt(&self, name: &str, rev: u64, rec: CredentialRecord) -> Result<(), SecretsError> {
        let mut revs = self.revs.lock().await;
        if revs.get(name).is_some_and(|known| *known >= rev) {
            return Ok(());
        }
        let store = Arc::clone(&self.store);
        let n = name.to_string();
        let changed = tokio::task::spawn_blocking(move || store.adopt(&n, rec))
            .await
            .map_err(|_| SecretsError::Encode {
                reason: "adopt task failed".into(),
            })??;
        revs.insert(name.to_string(), rev);
        if changed {
            self.metrics.adopted.inc();
            tracing::debug!(credential = %name, rev, "credential record adopted from the state store");
        }
        Ok(())
    }

    /// Fetch one credential and adopt it when newer.
    async fn refresh(&self, name: &str) -> Result<(), SecretsError> {
        if let Some((rev, rec)) = self.fetch(name).await?
            && !self.push_if_later(name, rev, &rec).await?
        {
            self.adopt(name, rev, rec).await?;
        }
        Ok(())
    }

    /// When this replica knows a later history of `name` than the record
    /// fetched at `rev` (Redis lost data: restarted without persistence, an
    /// older snapshot, or a failover that lost the last writes), write ours
    /// back instead of adopting the older one. `Ok(true)`: handled here.
    async fn push_if_later(
        &self,
        name: &str,
        rev: u64,
        remote: &CredentialRecord,
    ) -> Result<bool, SecretsError> {
        let Some(local) = self.store.record(name) else {
            return Ok(false);
        };
        if local.last_version() <= remote.last_version() {
            return Ok(false);
        }
        let blob = self.seal(name, &local)?;
        // On a conflict (changed meanwhile) the next event or reconcile
        // compares again.
        if let Some(rev) = self.cas(name, rev, blob).await? {
            tracing::warn!(credential = %name, "state store had an older history of this credential; pushed this replica's");
            self.adopt(name, rev, local).await?;
        }
        Ok(true)
    }

    /// Bring this replica and Redis into agreement: adopt every record in
    /// Redis, push local credentials Redis does not have (bootstrap values),
    /// and retire previous versions whose grace ended.
    pub async fn reconcile(&self) -> Result<(), SecretsError> {
        let mut conn = self.conn();
        let index = self.keys.credential_index();
        let remote: Vec<String> = self
            .run(async move { conn.smembers(&index).await })
            .await
            .map_err(|()| SecretsError::StateUnavailable)?;
        let mut names: BTreeSet<String> = remote.into_iter().filter(|n| valid_name(n)).collect();
        names.extend(self.store.record_names());
        let now = SystemTime::now();
        for name in names {
            match self.fetch(&name).await {
                Ok(Some((rev, rec))) => {
                    if self.push_if_later(&name, rev, &rec).await? {
                        continue;
                    }
                    let lapsed = rec.has_lapsed_previous(now);
                    self.adopt(&name, rev, rec).await?;
                    if lapsed {
                        self.change(&name, Change::Expire).await?;
                    }
                }
                Ok(None) => {
                    if let Some(local) = self.store.record(&name) {
                        let blob = self.seal(&name, &local)?;
                        if let Some(rev) = self.cas(&name, 0, blob).await? {
                            tracing::info!(credential = %name, "credential pushed to the state store");
                            self.adopt(&name, rev, local).await?;
                        } else {
                            self.refresh(&name).await?;
                        }
                    }
                }
                Err(e @ SecretsError::StateUnavailable) => return Err(e),
                Err(e) => {
                    // One unusable record must not stop the others; the
                    // replica keeps its last good copy of this one.
                    tracing::error!(credential = %name, reason = e.reason(), error = %e,
                        "state store record cannot be used; keeping the local copy");
                }
            }
        }
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Start the background tasks: the change subscriber (with a full
    /// reconcile after every (re)subscribe), the periodic reconcile, and the
    /// heartbeat.
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(Arc::clone(self).subscriber(shutdown.clone())),
            tokio::spawn(Arc::clone(self).reconciler(shutdown.clone())),
            tokio::spawn(Arc::clone(self).heartbeat_loop(shutdown.clone())),
            tokio::spawn(Arc::clone(&self.link).watch(self.cfg.reconcile_interval, shutdown)),
        ]
    }

    async fn subscriber(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let mut generation = self.link.generation();
        loop {
            if *shutdown.borrow() {
                return;
            }
            generation.borrow_and_update();
            let pubsub = tokio::time::timeout(self.cfg.timeout, async {
                let Some(client) = self.link.client() else {
                    return Err(::redis::RedisError::from((
                        ::redis::ErrorKind::Io,
                        "no state store master resolved yet",
                    )));
                };
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(self.keys.events()).await?;
                Ok::<_, ::redis::RedisError>(ps)
            })
            .await;
            match pubsub {
                Ok(Ok(mut ps)) => {
                    backoff = Duration::from_millis(100);
                    // Redis may have restarted (revisions start over): forget
                    // them and compare records by content this once.
                    self.revs.lock().await.clear();
                    // Anything published while we were not listening.
                    if let Err(e) = self.reconcile().await {
                        tracing::debug!(reason = e.reason(), "reconcile after subscribe failed");
                    }
                    let mut stream = ps.on_message();
                    loop {
                        tokio::select! {
                            msg = stream.next() => match msg {
                                Some(msg) => self.on_event(msg.get_payload_bytes()).await,
                                None => break,
                            },
                            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
                            // Sentinel failover: subscribe on the new master.
                            _ = generation.changed() => break,
                        }
                    }
                    if generation.has_changed().unwrap_or(false) {
                        tracing::debug!("state store master changed; subscribing again");
                        continue;
                    }
                    self.observe::<()>(&Err(()));
                    self.link.suspect();
                    tracing::debug!("state store subscription ended; reconnecting");
                }
                _ => {
                    self.observe::<()>(&Err(()));
                    self.link.suspect();
                }
            }
            tokio::select! {
                _ = generation.changed() => {}
                _ = tokio::time::sleep(backoff) => {}
                _ = self.reachable.notified() => {}
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn on_event(&self, payload: &[u8]) {
        if payload.len() > MAX_EVENT_BYTES {
            return;
        }
        let Ok(ev) = serde_json::from_slice::<Event>(payload) else {
            tracing::debug!("ignoring a malformed state event");
            return;
        };
        if !valid_name(&ev.name) {
            return;
        }
        {
            let revs = self.revs.lock().await;
            if revs.get(&ev.name).is_some_and(|known| *known >= ev.rev) {
                return;
            }
        }
        if let Err(e) = self.refresh(&ev.name).await {
            tracing::warn!(credential = %ev.name, reason = e.reason(), "cannot adopt a changed credential; the next reconcile retries");
        }
    }

    async fn reconciler(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.reconcile_interval) => {}
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
            }
            if let Err(e) = self.reconcile().await {
                tracing::debug!(reason = e.reason(), "periodic reconcile failed");
            }
        }
    }
}

/// The client of a fixed node (`state.redis.url`).
fn direct_client(cfg: &Cfg, url: &str, ca: Option<Vec<u8>>) -> Result<::redis::Client, FleetError> {
    let mut url = url.to_string();
    if cfg.tls && url.starts_with("redis://") {
        url = url.replacen("redis://", "rediss://", 1);
    }
    let mut info = ::redis::IntoConnectionInfo::into_connection_info(url.as_str())
        .map_err(|e| FleetError::Client(e.to_string()))?;
    let mut settings = info.redis_settings().clone();
    if let Some(u) = &cfg.username {
        settings = settings.set_username(u.read("state.redis.username")?.expose());
    }
    if let Some(p) = &cfg.password {
        settings = settings.set_password(p.read("state.redis.password")?.expose());
    }
    info = info.set_redis_settings(settings);
    match ca {
        None => ::redis::Client::open(info),
        Some(pem) => ::redis::Client::build_with_tls(
            info,
            ::redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            },
        ),
    }
    .map_err(|e| FleetError::Client(e.to_string()))
}

/// The Sentinel client (`state.redis.sentinel`): sentinels with their own
/// credentials and TLS; the master with `state.redis.username/password/tls`.
fn sentinel_client(
    cfg: &Cfg,
    s: &SentinelConfig,
    ca: Option<Vec<u8>>,
) -> Result<::redis::sentinel::SentinelClient, FleetError> {
    use ::redis::sentinel::{SentinelClientBuilder, SentinelServerType};
    let client_err = |e: ::redis::RedisError| FleetError::Sentinel(e.to_string());
    let mut nodes = Vec::with_capacity(s.nodes.len());
    for n in &s.nodes {
        let (host, port) = super::split_host_port(n)
            .ok_or_else(|| FleetError::Sentinel(format!("{n:?} is not host:port")))?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let scheme = if s.tls { "rediss" } else { "redis" };
        let info = ::redis::IntoConnectionInfo::into_connection_info(
            format!("{scheme}://{host}:{port}").as_str(),
        )
        .map_err(client_err)?;
        nodes.push(info.addr().clone());
    }
    let mut b = SentinelClientBuilder::new(nodes, &s.master_name, SentinelServerType::Master)
        .map_err(client_err)?
        .set_client_to_redis_db(s.db);
    if let Some(u) = &s.username {
        b = b.set_client_to_sentinel_username(u.read("state.redis.sentinel.username")?.expose());
    }
    if let Some(p) = &s.password {
        b = b.set_client_to_sentinel_password(p.read("state.redis.sentinel.password")?.expose());
    }
    if let Some(u) = &cfg.username {
        b = b.set_client_to_redis_username(u.read("state.redis.username")?.expose());
    }
    if let Some(p) = &cfg.password {
        b = b.set_client_to_redis_password(p.read("state.redis.password")?.expose());
    }
    if cfg.tls {
        b = b.set_client_to_redis_tls_mode(::redis::TlsMode::Secure);
        if let Some(pem) = &ca {
            b = b.set_client_to_redis_certificates(::redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            });
        }
    }
    if s.tls
        && let Some(pem) = ca
    {
        b = b.set_client_to_sentinel_certificates(::redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        });
    }
    b.build().map_err(client_err)
}

/// `HOSTNAME` (the pod name on Kubernetes) plus a random suffix, so two
/// processes on one host never share an id.
fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 64
                && h.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
        })
        .unwrap_or_else(|| "spangate".to_string());
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", id.get(..8).unwrap_or(&id))
}
