//! Fleet-wide rate limits: GCRA in Redis, with local leases.
//!
//! The per-identity limits (requests, spans, bytes per second, `burst`
//! seconds of allowance) mean the same as with the embedded limiter, but the
//! buckets live in Redis, so N replicas together admit the configured rate.
//!
//! * **GCRA in one script.** One key per dimension holds the theoretical
//!   arrival time (microseconds, Redis `TIME`). The script first checks that
//!   every dimension can cover what the batch needs, then charges all of
//!   them: a refused batch costs nothing, and the three dimensions change
//!   together or not at all.
//! * **Leases.** A replica asks for more than the batch needs (a lease of
//!   1/[`LEASE_DIVISOR`] of each bucket) and spends the rest locally, so most
//!   requests cost no round-trip; when a lease runs below half, it is topped
//!   up in the background. Unspent leases lapse after [`LEASE_TTL`]. What a
//!   lease holds is already charged in Redis: the fleet can under-admit by
//!   about one lease per replica and key while they are held, and over-admit
//!   by at most that much when a lease charged before a bucket refilled is
//!   spent after (bounded by the TTL).
//! * **Refusals.** After Redis refuses a batch, the replica refuses further
//!   batches of that key that its lease cannot cover for the wait Redis
//!   named (at most [`MAX_BLOCK`]) without asking again, so a flood of
//!   refused requests does not become a flood of Redis calls.
//! * **Degraded.** While Redis is unreachable, `on_state_unavailable: local`
//!   limits each replica to the configured rate divided by the number of
//!   replicas last seen alive; `deny` refuses rate-limited traffic (429).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ratelimit::{
    REASON_BATCH_EXCEEDS_BURST, REASON_RATE_LIMITED, RateLimited, RateLimiter, RateSpec,
    retry_after_secs,
};

use super::OnUnavailable;
use super::redis::Fleet;

/// Longest a refusal is remembered locally (a smaller batch may fit sooner
/// than the refused one would have).
pub const MAX_BLOCK: Duration = Duration::from_millis(250);
/// A lease is this fraction of a bucket.
pub const LEASE_DIVISOR: u64 = 100;
/// Unspent lease budget lapses after this long (budget charged long ago
/// should not add to a fresh bucket's burst).
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// KEYS: requests, spans, bytes keys (one hash tag). ARGV per dimension:
/// emission interval in µs (0 = unlimited), capacity, need, want.
/// Returns {1, grant_r, grant_s, grant_b} or {0, dimension, wait_ms}.
pub(crate) const GCRA_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats, avail = {}, {}
for i = 1, #KEYS do
  local T = tonumber(ARGV[(i - 1) * 4 + 1])
  if T > 0 then
    local cap = tonumber(ARGV[(i - 1) * 4 + 2])
    local need = tonumber(ARGV[(i - 1) * 4 + 3])
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if tat < now then tat = now end
    local a = cap - (tat - now) / T
    if a < need then
      return {0, i, math.ceil((need - a) * T / 1000)}
    end
    tats[i] = tat
    avail[i] = a
  end
end
local grants = {0, 0, 0}
for i = 1, #KEYS do
  local T = tonumber(ARGV[(i - 1) * 4 + 1])
  if T > 0 then
    local need = tonumber(ARGV[(i - 1) * 4 + 3])
    local want = tonumber(ARGV[(i - 1) * 4 + 4])
    local g = math.min(math.floor(avail[i]), want)
    if g < need then g = need end
    local tat = tats[i] + g * T
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
    grants[i] = g
  end
end
return {1, grants[1], grants[2], grants[3]}
"#;

const DIMS: [&str; 3] = ["requests", "spans", "bytes"];

/// One dimension of a spec: `None` unlimited, else (rate, capacity).
fn dims(spec: &RateSpec) -> [Option<(u64, u64)>; 3] {
    let burst = u64::from(spec.burst.unwrap_or(1).max(1));
    [
        spec.requests_per_second,
        spec.spans_per_second,
        spec.bytes_per_second,
    ]
    .map(|r| r.map(|r| (u64::from(r), u64::from(r).saturating_mul(burst))))
}

/// Budget leased from Redis for one key.
#[derive(Debug)]
struct Lease {
    spec: RateSpec,
    state: Mutex<LeaseState>,
    refilling: AtomicBool,
}

#[derive(Debug)]
struct LeaseState {
    have: [u64; 3],
    until: Instant,
    /// After a refusal: the fleet's bucket has no room before this instant
    /// (and which dimension said so), so further refusals need no round-trip.
    blocked: Option<(Instant, usize)>,
}

/// The fleet limiter: leases per key, plus the local fallback.
pub struct FleetLimiter {
    leases: moka::sync::Cache<String, Arc<Lease>>,
    local: RateLimiter,
    on_unavailable: OnUnavailable,
}

impl std::fmt::Debug for FleetLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetLimiter")
            .field("leases", &self.leases.entry_count())
            .finish()
    }
}

/// What one check needs per dimension.
type Need = [u64; 3];

impl FleetLimiter {
    /// Leases for at most `max_keys` keys.
    pub fn new(max_keys: u64, on_unavailable: OnUnavailable) -> FleetLimiter {
        FleetLimiter {
            leases: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(Duration::from_secs(60))
                .build(),
            local: RateLimiter::new(max_keys),
            on_unavailable,
        }
    }

    fn lease(&self, key: &str, spec: &RateSpec) -> Arc<Lease> {
        let fresh = || {
            Arc::new(Lease {
                spec: spec.clone(),
                state: Mutex::new(LeaseState {
                    have: [0; 3],
                    until: Instant::now(),
                    blocked: None,
                }),
                refilling: AtomicBool::new(false),
            })
        };
        let cur = self.leases.get_with_by_ref(key, fresh);
        if cur.spec == *spec {
            return cur;
        }
        let l = fresh();
        self.leases.insert(key.to_string(), l.clone());
        l
    }
}

fn lock(m: &Mutex<LeaseState>) -> std::sync::MutexGuard<'_, LeaseState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The spec one replica enforces alone when the fleet has `n` replicas: the
/// rate and the bucket divided by `n` (the rate rounded up, at least 1; the
/// burst chosen so the bucket is as close to a 1/n share as whole seconds
/// allow, using the tightest dimension).
pub fn scaled(spec: &RateSpec, n: usize) -> RateSpec {
    let n = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
    let burst = u64::from(spec.burst.unwrap_or(1).max(1));
    let rate = |r: Option<u32>| {
        r.map(|r| {
            if r == 0 {
                0
            } else {
                u32::try_from(u64::from(r).div_ceil(n))
                    .unwrap_or(u32::MAX)
                    .max(1)
            }
        })
    };
    let rates = [
        spec.requests_per_second,
        spec.spans_per_second,
        spec.bytes_per_second,
    ];
    // Whole seconds of allowance that keep each bucket near cap / n.
    let new_burst = rates
        .iter()
        .zip(rates.map(rate))
        .filter_map(|(old, new)| {
            let (old, new) = (u64::from((*old)?), u64::from(new?));
            (old > 0 && new > 0).then(|| (old * burst / n).div_ceil(new).max(1))
        })
        .min()
        .unwrap_or(burst);
    RateSpec {
        requests_per_second: rate(spec.requests_per_second),
        spans_per_second: rate(spec.spans_per_second),
        bytes_per_second: rate(spec.bytes_per_second),
        burst: Some(u32::try_from(new_burst).unwrap_or(u32::MAX)),
    }
}

pub(crate) fn key_hash(key: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    d.as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Fleet {
    /// Check one request against the fleet-wide limits of `key`.
    pub async fn check_rate(
        self: &Arc<Self>,
        key: &str,
        spec: &RateSpec,
        spans: u32,
        bytes: u32,
    ) -> Result<(), RateLimited> {
        if spec.is_unlimited() {
            return Ok(());
        }
        let d = dims(spec);
        let need: Need = [1, u64::from(spans), u64::from(bytes)];
        let burst_secs = u64::from(spec.burst.unwrap_or(1).max(1));
        for i in 0..3 {
            if let Some((rate, cap)) = d[i]
                && (need[i] > cap || (rate == 0 && need[i] > 0))
            {
                return Err(RateLimited {
                    retry_after: Duration::from_secs(burst_secs),
                    limit: DIMS[i],
                    reason: REASON_BATCH_EXCEEDS_BURST,
                });
            }
        }
        if !self.is_up() {
            return self.check_degraded(key, spec, spans, bytes);
        }
        self.metrics.rate_checks.inc();
        let lease = self.limits.lease(key, spec);
        let lease_size: Need = d.map(|x| x.map_or(0, |(_, cap)| (cap / LEASE_DIVISOR).max(1)));
        // Fast path: the lease covers the batch.
        let shortfall = {
            let mut st = lock(&lease.state);
            if Instant::now() >= st.until {
                st.have = [0; 3];
            }
            let mut short = [0u64; 3];
            for i in 0..3 {
                if d[i].is_some() {
                    short[i] = need[i].saturating_sub(st.have[i]);
                }
            }
            // The bucket said "not before T" and the lease cannot cover the
            // batch: refuse here, without asking again.
            if short != [0; 3]
                && let Some((t, dim)) = st.blocked
            {
                let now = Instant::now();
                if now < t {
                    return Err(RateLimited {
                        retry_after: retry_after_secs(t - now),
                        limit: DIMS.get(dim).copied().unwrap_or("requests"),
                        reason: REASON_RATE_LIMITED,
                    });
                }
                st.blocked = None;
            }
            if short == [0; 3] {
                for i in 0..3 {
                    if d[i].is_some() {
                        st.have[i] -= need[i];
                    }
                }
                // Below half a lease (or empty, for one-token leases): top
                // up in the background so the next request needs no round-trip.
                let low = (0..3).any(|i| d[i].is_some() && st.have[i] * 2 < lease_size[i]);
                drop(st);
                if low {
                    self.refill_in_background(key, &lease, d, lease_size);
                }
                return Ok(());
            }
            // Spend what the lease has on the batch; Redis grants the rest.
            for i in 0..3 {
                if d[i].is_some() {
                    st.have[i] = st.have[i].saturating_sub(need[i] - short[i]);
                }
            }
            short
        };
        self.metrics.rate_waits.inc();
        let want: Need = std::array::from_fn(|i| shortfall[i] + lease_size[i]);
        match self.gcra(key, d, shortfall, want).await {
            Ok(Ok(grants)) => {
                let mut st = lock(&lease.state);
                for i in 0..3 {
                    st.have[i] += grants[i].saturating_sub(shortfall[i]);
                }
                st.until = Instant::now() + LEASE_TTL;
                Ok(())
            }
            Ok(Err((dim, wait))) => {
                // Give back what the lease contributed: nothing was charged.
                let mut st = lock(&lease.state);
                for i in 0..3 {
                    if d[i].is_some() {
                        st.have[i] += need[i] - shortfall[i];
                    }
                }
                st.blocked = Some((Instant::now() + wait.min(MAX_BLOCK), dim));
                Err(RateLimited {
                    retry_after: retry_after_secs(wait),
                    limit: DIMS.get(dim).copied().unwrap_or("requests"),
                    reason: REASON_RATE_LIMITED,
                })
            }
            Err(()) => self.check_degraded(key, spec, spans, bytes),
        }
    }

    fn check_degraded(
        &self,
        key: &str,
        spec: &RateSpec,
        spans: u32,
        bytes: u32,
    ) -> Result<(), RateLimited> {
        self.metrics.rate_fallbacks.inc();
        match self.limits.on_unavailable {
            OnUnavailable::Local => {
                self.limits
                    .local
                    .check(key, &scaled(spec, self.live_replicas()), spans, bytes)
            }
            OnUnavailable::Deny => Err(RateLimited {
                retry_after: Duration::from_secs(1),
                limit: "requests",
                reason: REASON_RATE_LIMITED,
            }),
        }
    }

    fn refill_in_background(
        self: &Arc<Self>,
        key: &str,
        lease: &Arc<Lease>,
        d: [Option<(u64, u64)>; 3],
        lease_size: Need,
    ) {
        if lease.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let fleet = Arc::clone(self);
        let lease = Arc::clone(lease);
        let key = key.to_string();
        tokio::spawn(async move {
            if let Ok(Ok(grants)) = fleet.gcra(&key, d, [0; 3], lease_size).await {
                let mut st = lock(&lease.state);
                if Instant::now() >= st.until {
                    st.have = [0; 3];
                }
                for (have, g) in st.have.iter_mut().zip(grants) {
                    *have += g;
                }
                st.until = Instant::now() + LEASE_TTL;
            }
            lease.refilling.store(false, Ordering::Release);
        });
    }

    /// Run the GCRA script: `Ok(Ok(grants))`, `Ok(Err((dimension, wait)))`
    /// when refused, `Err(())` when Redis did not answer.
    async fn gcra(
        &self,
        key: &str,
        d: [Option<(u64, u64)>; 3],
        need: Need,
        want: Need,
    ) -> Result<Result<Need, (usize, Duration)>, ()> {
        let h = key_hash(key);
        let script = ::redis::Script::new(GCRA_SCRIPT);
        let mut inv = script.prepare_invoke();
        for k in self.keys.gcra_keys(&h) {
            inv.key(k);
        }
        for i in 0..3 {
            match d[i] {
                Some((rate, cap)) if rate > 0 => {
                    inv.arg(1_000_000f64 / rate as f64)
                        .arg(cap)
                        .arg(need[i])
                        .arg(want[i]);
                }
                _ => {
                    inv.arg(0).arg(0).arg(0).arg(0);
                }
            }
        }
        let mut conn = self.conn();
        let out: Vec<i64> = self
            .run(async move { inv.invoke_async(&mut conn).await })
            .await?;
        let n = |i: usize| out.get(i).copied().unwrap_or(0);
        if n(0) == 1 {
            let g = |i: usize| u64::try_from(n(i)).unwrap_or(0);
            Ok(Ok([g(1), g(2), g(3)]))
        } else {
            let dim = usize::try_from(n(1) - 1).unwrap_or(0);
            let wait = Duration::from_millis(u64::try_from(n(2)).unwrap_or(1000));
            Ok(Err((dim, wait)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_divides_rates_and_keeps_closed_closed() {
        let spec = RateSpec {
            requests_per_second: Some(10),
            spans_per_second: Some(0),
            bytes_per_second: None,
            burst: Some(3),
        };
        let s = scaled(&spec, 3);
        assert_eq!(s.requests_per_second, Some(4));
        assert_eq!(s.spans_per_second, Some(0));
        assert_eq!(s.bytes_per_second, None);
        // 30 / 3 = 10 requests of bucket at 4/s: 3 whole seconds.
        assert_eq!(s.burst, Some(3));
        assert_eq!(scaled(&spec, 0).requests_per_second, Some(10));
        assert_eq!(scaled(&spec, 100).requests_per_second, Some(1));
        // A slow rate keeps its share of the bucket in the burst: 300 / 3.
        let slow = RateSpec {
            requests_per_second: Some(1),
            burst: Some(300),
            ..Default::default()
        };
        let s = scaled(&slow, 3);
        assert_eq!((s.requests_per_second, s.burst), (Some(1), Some(100)));
    }

    #[test]
    fn key_hash_is_long_and_stable() {
        assert_eq!(key_hash("a").len(), 32);
        assert_eq!(key_hash("a"), key_hash("a"));
        assert_ne!(key_hash("a"), key_hash("b"));
    }
}
