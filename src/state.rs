//! Fleet state: what replicas of one gateway share through Redis.
//!
//! The embedded backends (the file-backed [`SecretStore`] and the in-process
//! [`RateLimiter`](crate::ratelimit::RateLimiter)) stay the single-node
//! default. With `state.redis` configured, [`Fleet`] adds:
//!
//! * **Credentials** ([`redis`]): one encrypted record per credential
//!   (AES-256-GCM, the record's key name as additional data), changed by an
//!   optimistic compare-and-set Lua script that also publishes the change;
//!   every replica subscribes, adopts the record into its local store (memory,
//!   plus its store file when configured) and reconciles periodically and on
//!   every reconnect. Requests only ever read the local snapshot, so a Redis
//!   outage never stops traffic; changes answer 503 until Redis is back.
//! * **Rate limits** ([`limits`]): GCRA per identity in one Lua script, with
//!   local leases of budget so most requests cost no round-trip.
//! * **Fleet view** ([`heartbeat`]): a TTL key per replica with its version,
//!   the credential versions it injects and its policy version.
//! * **Admin throttle**: failed admin authentications counted fleet-wide.
//!
//! [`CredentialBackend`] is the small interface the admin API changes
//! credentials through: embedded or Redis.

pub mod heartbeat;
pub mod limits;
pub mod link;
pub mod redis;
pub mod throttle;
pub mod view;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::secrets::{Change, Changed, SecretSource, SecretStore, SecretsError};

pub use self::redis::Fleet;

/// Default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "spangate:";
/// Default heartbeat interval (also the reachability probe).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Default full reconcile interval (the backstop behind pub/sub).
pub const DEFAULT_RECONCILE: Duration = Duration::from_secs(10);
/// Default timeout of one Redis command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);

/// `state:` in the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Shared state in Redis (or Valkey). Unset: every replica keeps its own.
    pub redis: Option<RedisConfig>,
}

/// What the rate limiter does while the state store is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Per-replica limits: the configured rate divided by the live replica count.
    #[default]
    Local,
    /// Refuse rate-limited traffic (429) until the store is back.
    Deny,
}

/// `state.redis:` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port[/db]` (or `rediss://` for TLS). Exactly one of
    /// `url` and `sentinel`.
    #[serde(default)]
    pub url: Option<String>,
    /// The master of a Sentinel-monitored group, followed across failovers.
    #[serde(default)]
    pub sentinel: Option<SentinelConfig>,
    /// Prefix of every key and channel (lets fleets share one Redis).
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Use TLS (same as a `rediss://` URL); server certificates are checked
    /// against the system roots.
    #[serde(default)]
    pub tls: bool,
    /// PEM CA bundle trusted for the Redis server instead of the system
    /// roots (needs TLS).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// ACL user name (`{ env: VAR }` or `{ file: PATH }`).
    #[serde(default)]
    pub username: Option<SecretSource>,
    /// Password (`{ env: VAR }` or `{ file: PATH }`).
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// Base64 of a 32-byte key, the same on every replica: encrypts
    /// credential values in Redis with AES-256-GCM.
    pub encryption_key: SecretSource,
    /// Rate limits while Redis is unreachable: `local` or `deny`.
    #[serde(default)]
    pub on_state_unavailable: OnUnavailable,
    /// How often a replica refreshes its heartbeat (TTL is three times this).
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How often every credential is re-read (behind pub/sub).
    #[serde(default = "default_reconcile", with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Timeout of one Redis command.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// This replica's name in the fleet view (default: host name + random suffix).
    #[serde(default)]
    pub replica_id: Option<String>,
}

/// `state.redis.sentinel:` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The monitored master's name (`sentinel monitor NAME ...`).
    pub master_name: String,
    /// Sentinel addresses, `host:port` each.
    pub nodes: Vec<String>,
    /// ACL user name for the sentinels (`{ env: VAR }` or `{ file: PATH }`).
    #[serde(default)]
    pub username: Option<SecretSource>,
    /// Password for the sentinels (`{ env: VAR }` or `{ file: PATH }`).
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// Talk TLS to the sentinels (`state.redis.ca_file` is trusted for them
    /// too). TLS to the master is `state.redis.tls`.
    #[serde(default)]
    pub tls: bool,
    /// Database number on the master.
    #[serde(default)]
    pub db: i64,
}

/// Most sentinel addresses accepted.
pub const MAX_SENTINELS: usize = 16;

fn default_prefix() -> String {
    DEFAULT_KEY_PREFIX.to_string()
}
fn default_heartbeat() -> Duration {
    DEFAULT_HEARTBEAT
}
fn default_reconcile() -> Duration {
    DEFAULT_RECONCILE
}
fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

impl StateConfig {
    /// Problems with this config, as messages (empty = valid).
    pub fn validate(&self) -> Vec<String> {
        let Some(r) = &self.redis else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match (&r.url, &r.sentinel) {
            (Some(_), Some(_)) => {
                out.push("redis: set either url or sentinel, not both".into());
            }
            (None, None) => out.push("redis: set url (or sentinel)".into()),
            (Some(url), None) => match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "redis" | "rediss" | "valkey" | "valkeys") => {
                    if u.password().is_some() || !u.username().is_empty() {
                        out.push(
                            "redis.url must not hold credentials; use redis.username / redis.password"
                                .into(),
                        );
                    }
                }
                Ok(u) => out.push(format!(
                    "redis.url: unsupported scheme {:?} (redis:// or rediss://)",
                    u.scheme()
                )),
                Err(e) => out.push(format!("redis.url: {e}")),
            },
            (None, Some(s)) => out.extend(s.validate()),
        }
        if r.key_prefix.len() > 64
            || r.key_prefix
                .bytes()
                .any(|b| matches!(b, b'{' | b'}') || !b.is_ascii_graphic())
        {
            out.push(
                "redis.key_prefix: at most 64 printable characters, no braces or spaces".into(),
            );
        }
        let url_tls = r
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with("rediss://") || u.starts_with("valkeys://"));
        let sentinel_tls = r.sentinel.as_ref().is_some_and(|s| s.tls);
        if r.ca_file.is_some() && !(r.tls || url_tls || sentinel_tls) {
            out.push("redis.ca_file needs TLS (tls: true or a rediss:// url)".into());
        }
        for (name, d) in [
            ("heartbeat_interval", r.heartbeat_interval),
            ("reconcile_interval", r.reconcile_interval),
            ("timeout", r.timeout),
        ] {
            if d.is_zero() {
                out.push(format!("redis.{name} must be greater than zero"));
            }
        }
        if let Some(id) = &r.replica_id
            && (id.is_empty()
                || id.len() > 128
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}'))
        {
            out.push("redis.replica_id: 1-128 printable characters, no braces".into());
        }
        out
    }

    /// Resolve relative paths against the config file's directory.
    pub fn resolve_relative(&mut self, dir: &Path) {
        let Some(r) = &mut self.redis else { return };
        if let Some(p) = &mut r.ca_file
            && p.is_relative()
        {
            *p = dir.join(&*p);
        }
        let (su, sp) = match &mut r.sentinel {
            Some(s) => (s.username.as_mut(), s.password.as_mut()),
            None => (None, None),
        };
        for src in [
            Some(&mut r.encryption_key),
            r.username.as_mut(),
            r.password.as_mut(),
            su,
            sp,
        ]
        .into_iter()
        .flatten()
        {
            if let SecretSource::File(p) = src
                && p.is_relative()
            {
                *p = dir.join(&*p);
            }
        }
    }
}

impl SentinelConfig {
    fn validate(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.master_name.is_empty()
            || self.master_name.len() > 128
            || !self.master_name.bytes().all(|b| b.is_ascii_graphic())
        {
            out.push("redis.sentinel.master_name: 1-128 printable characters".into());
        }
        if self.nodes.is_empty() || self.nodes.len() > MAX_SENTINELS {
            out.push(format!(
                "redis.sentinel.nodes: 1 to {MAX_SENTINELS} sentinel addresses (host:port)"
            ));
        }
        for n in &self.nodes {
            if split_host_port(n).is_none() {
                out.push(format!(
                    "redis.sentinel.nodes: {n:?} is not host:port (a sentinel's port is usually 26379)"
                ));
            }
        }
        if self.db < 0 {
            out.push("redis.sentinel.db must be 0 or more".into());
        }
        out
    }
}

/// `host:port` (IPv6 in brackets) → host and port.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty()
        || host.contains(['/', '@', ' '])
        || (host.contains(':') && !s.starts_with('['))
    {
        return None;
    }
    Some((host.to_string(), port))
}

/// Where credential changes go: the embedded store, or Redis (which every
/// replica then adopts).
#[derive(Clone)]
pub enum CredentialBackend {
    /// The local store (file or memory): the single-node default.
    Embedded(Arc<SecretStore>),
    /// The shared state in Redis.
    Redis(Arc<Fleet>),
}

impl std::fmt::Debug for CredentialBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CredentialBackend::Embedded(_) => "CredentialBackend::Embedded",
            CredentialBackend::Redis(_) => "CredentialBackend::Redis",
        })
    }
}

impl CredentialBackend {
    /// Apply one change (rotate, roll back, retire) to credential `name`.
    pub async fn change(&self, name: &str, change: Change) -> Result<Changed, SecretsError> {
        match self {
            CredentialBackend::Embedded(store) => {
                let store = Arc::clone(store);
                let name = name.to_string();
                tokio::task::spawn_blocking(move || store.change(&name, change))
                    .await
                    .map_err(|_| SecretsError::Encode {
                        reason: "credential change task failed".into(),
                    })?
            }
            CredentialBackend::Redis(fleet) => fleet.change(name, change).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use ::redis::cluster_routing::Slot;

    use super::limits::{GCRA_SCRIPT, key_hash};
    use super::redis::{CAS_SCRIPT, Keys};
    use super::throttle::FAIL_SCRIPT;

    /// The hash tag Redis Cluster hashes: between the first `{` and the
    /// next `}`, when not empty.
    fn hash_tag(key: &str) -> Option<&str> {
        let open = key.find('{')?;
        let rest = &key[open + 1..];
        let tag = &rest[..rest.find('}')?];
        (!tag.is_empty()).then_some(tag)
    }

    /// Every key of `keys` carries the same hash tag (so one slot), and the
    /// script touches keys only through `KEYS[1..=n]`.
    fn assert_one_slot(script: &str, keys: &[String]) {
        let first = &keys[0];
        let tag = hash_tag(first).unwrap_or_else(|| panic!("{first} has no hash tag"));
        for k in keys {
            assert_eq!(hash_tag(k), Some(tag), "{k} vs {first}");
            assert_eq!(Slot::for_key(k), Slot::for_key(first), "{k} vs {first}");
        }
        for (i, _) in script.match_indices("KEYS[") {
            let n: usize = script[i + 5..]
                .split(']')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            assert!(n <= keys.len(), "script reads KEYS[{n}] of {}", keys.len());
        }
        // Every command's key argument is one of KEYS (no key built inside
        // the script); TIME has no key and PUBLISH takes a channel.
        for (i, _) in script.match_indices("redis.call('") {
            let rest = &script[i + "redis.call('".len()..];
            let cmd = rest.split('\'').next().unwrap_or_default();
            if matches!(cmd, "TIME" | "PUBLISH") {
                continue;
            }
            let arg = rest[cmd.len() + 1..].trim_start_matches([',', ' ']);
            assert!(
                arg.starts_with("KEYS["),
                "{cmd} in a script takes a key that is not one of KEYS: {arg:.20}"
            );
        }
    }

    #[test]
    fn every_script_touches_one_hash_slot() {
        let long = "n".repeat(crate::secrets::MAX_NAME_LEN);
        for prefix in ["spangate:", "", "team-a/prod:"] {
            let k = Keys::new(prefix);
            for name in ["lightstep-prod", "a", "x.y_z-1", long.as_str()] {
                assert!(crate::secrets::valid_name(name));
                assert_one_slot(CAS_SCRIPT, &k.cas_keys(name));
            }
            for limit_key in ["tenant-a", "", "{x}", "sub:svc@corp"] {
                assert_one_slot(GCRA_SCRIPT, &k.gcra_keys(&key_hash(limit_key)));
            }
            // What the admin throttle keys peers by: IPv4, an IPv6 /64, a uid.
            for peer in ["10.1.2.3", "2001:db8::/64", "uid:1000"] {
                assert_one_slot(FAIL_SCRIPT, &k.auth_fail_keys(peer));
            }
        }
        // The slots differ between credentials, so a cluster spreads them.
        let k = Keys::new("spangate:");
        assert_ne!(
            Slot::for_key(k.credential("lightstep-prod")),
            Slot::for_key(k.credential("honeycomb"))
        );
    }
}
