//! The admin failed-authentication throttle, shared by the fleet.
//!
//! Each replica keeps its own throttle (escalating lockouts, in-flight
//! limits, the global ceiling; see the admin throttle). On top of it,
//! failures are counted per peer in Redis: `max_failures` failures within
//! `window` on any replicas together lock the peer out of every replica for
//! `lockout`. A guesser spreading attempts over the replicas behind a load
//! balancer gets no more tries than against one. While Redis is unreachable
//! the local throttle alone applies.

use std::time::Duration;

use super::redis::Fleet;

/// KEYS: failures, lock (one hash tag: the peer). ARGV: max failures,
/// window ms, lockout ms. Returns the lockout in ms when this failure
/// started one, else 0.
pub(crate) const FAIL_SCRIPT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return tonumber(ARGV[3])
end
return 0
"#;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Fleet {
    /// How long `peer` stays locked out fleet-wide (`None`: not locked out,
    /// or Redis unreachable).
    pub async fn auth_locked(&self, peer: &str) -> Option<Duration> {
        if !self.is_up() {
            return None;
        }
        let key = self.keys.auth_lock(peer);
        let mut conn = self.conn();
        let ttl: i64 = self
            .run(async move { ::redis::cmd("PTTL").arg(&key).query_async(&mut conn).await })
            .await
            .ok()?;
        u64::try_from(ttl)
            .ok()
            .filter(|t| *t > 0)
            .map(Duration::from_millis)
    }

    /// Count one failed authentication of `peer`; returns the fleet-wide
    /// lockout it started, if any.
    pub async fn auth_failed(
        &self,
        peer: &str,
        max_failures: u32,
        window: Duration,
        lockout: Duration,
    ) -> Option<Duration> {
        if !self.is_up() {
            return None;
        }
        let script = ::redis::Script::new(FAIL_SCRIPT);
        let mut inv = script.prepare_invoke();
        let [failures, lock] = self.keys.auth_fail_keys(peer);
        inv.key(failures)
            .key(lock)
            .arg(max_failures.max(1))
            .arg(ms(window))
            .arg(ms(lockout));
        let mut conn = self.conn();
        let out: i64 = self
            .run(async move { inv.invoke_async(&mut conn).await })
            .await
            .ok()?;
        u64::try_from(out)
            .ok()
            .filter(|t| *t > 0)
            .map(Duration::from_millis)
    }

    /// A peer authenticated: forget its fleet-wide failures.
    pub async fn auth_succeeded(&self, peer: &str) {
        if !self.is_up() {
            return;
        }
        let key = self.keys.auth_failures(peer);
        let mut conn = self.conn();
        let _ = self
            .run(async move {
                ::redis::cmd("DEL")
                    .arg(&key)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
    }
}
