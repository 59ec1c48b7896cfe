//! Per-identity rate limits (requests/s, spans/s, bytes/s), bounded key memory.
//!
//! Each key (an opaque string the policy side composes, e.g. binding name +
//! claim value) owns up to three GCRA token buckets from `governor`, one per
//! configured limit. The buckets live in a `moka` cache with a maximum number
//! of keys and a time-to-idle, so memory stays bounded however many
//! identities show up; an evicted key comes back with full buckets, which is
//! what an idle key would have had anyway once the idle time exceeds the
//! bucket's refill time.
//!
//! ## Semantics
//! - `requests_per_second`, `spans_per_second`, `bytes_per_second`: the
//!   sustained rate of each bucket; `None` = that dimension is unlimited.
//! - `burst`: bucket size in *seconds of allowance*, the same for all three
//!   limits (one number cannot be an absolute count of requests, spans and
//!   bytes at once). Default 1: a bucket holds one second's worth
//!   (`requests_per_second` requests, ...). `burst: 5` with
//!   `spans_per_second: 1000` lets 5000 spans through at once, then 1000/s.
//! - A rate of 0 refuses everything in that dimension (reason
//!   `batch_exceeds_burst`): a policy should not say that, but if it does the
//!   result is closed, not open.
//!
//! ## Checking three buckets without charging for refusals
//! `governor` charges a bucket only when `check_n` succeeds, but it cannot
//! hold a charge and release it later. So `check`:
//! 1. first compares the batch against each bucket's capacity (pure
//!    arithmetic, nothing charged): a batch larger than a bucket can ever hold
//!    is refused as `batch_exceeds_burst` — retrying it would loop forever,
//!    so the proxy should answer it as non-retryable;
//! 2. then charges spans, then bytes, then the request itself — the request
//!    bucket last, so a batch refused for spans or bytes never costs the
//!    client a request slot. If bytes refuses after spans passed, those spans
//!    stay charged: at most one batch's worth per refusal, and the refused
//!    client is told to wait `Retry-After` anyway. The alternative (a mutex
//!    and a refund ledger around governor) buys little for that edge.
//!
//! A spec change for a key (policy reload) rebuilds its buckets.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{InsufficientCapacity, Quota};

/// Default time a key's buckets are kept without traffic.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(600);

/// Runtime rate limits for one identity (the policy file's type converts into
/// this). See the module doc for the meaning of each field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RateSpec {
    /// Sustained requests per second; `None` = unlimited.
    pub requests_per_second: Option<u32>,
    /// Sustained spans per second; `None` = unlimited.
    pub spans_per_second: Option<u32>,
    /// Sustained decompressed body bytes per second; `None` = unlimited.
    pub bytes_per_second: Option<u32>,
    /// Bucket size in seconds of allowance (default 1).
    pub burst: Option<u32>,
}

impl RateSpec {
    /// True when no limit is set (the limiter is then a no-op).
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_second.is_none()
            && self.spans_per_second.is_none()
            && self.bytes_per_second.is_none()
    }
}

impl From<&crate::policy::RateSpec> for RateSpec {
    fn from(p: &crate::policy::RateSpec) -> Self {
        let n = |v: Option<u64>| v.map(|v| u32::try_from(v).unwrap_or(u32::MAX));
        RateSpec {
            requests_per_second: n(p.requests_per_second),
            spans_per_second: n(p.spans_per_second),
            bytes_per_second: n(p.bytes_per_second),
            burst: p.burst,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason} on {limit}: retry after {}s", retry_after.as_secs())]
pub struct RateLimited {
    /// How long to wait before retrying: whole seconds, at least 1
    /// (the `Retry-After` value).
    pub retry_after: Duration,
    /// Which limit refused: `requests`, `spans` or `bytes`.
    pub limit: &'static str,
    /// `rate_limited` (retry after `retry_after`) or `batch_exceeds_burst`
    /// (this batch can never pass: it is larger than the bucket; the client
    /// must send smaller batches, so answer it as non-retryable).
    pub reason: &'static str,
}

/// Reason: over the rate, retry later.
pub const REASON_RATE_LIMITED: &str = "rate_limited";
/// Reason: batch larger than the bucket can ever hold.
pub const REASON_BATCH_EXCEEDS_BURST: &str = "batch_exceeds_burst";

type Bucket<C> =
    governor::RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One key's buckets, built for one spec.
struct KeyLimits<C: Clock> {
    spec: RateSpec,
    requests: Limit<C>,
    spans: Limit<C>,
    bytes: Limit<C>,
}

/// One dimension: unlimited, closed (rate 0) or a bucket of `capacity`.
enum Limit<C: Clock> {
    Unlimited,
    Closed,
    Bucket { bucket: Bucket<C>, capacity: u32 },
}

impl<C: Clock> Limit<C> {
    fn new(rate: Option<u32>, burst_secs: u32, clock: &C) -> Limit<C>
    where
        C: Clone,
    {
        let Some(rate) = rate else {
            return Limit::Unlimited;
        };
        let Some(rate) = NonZeroU32::new(rate) else {
            return Limit::Closed;
        };
        let capacity = rate.saturating_mul(NonZeroU32::new(burst_secs).unwrap_or(NonZeroU32::MIN));
        let quota = Quota::per_second(rate).allow_burst(capacity);
        Limit::Bucket {
            bucket: governor::RateLimiter::direct_with_clock(quota, clock.clone()),
            capacity: capacity.get(),
        }
    }

    /// Step 1: can a batch of `n` ever pass?
    fn fits(&self, n: u32) -> bool {
        match self {
            Limit::Unlimited => true,
            Limit::Closed => n == 0,
            Limit::Bucket { capacity, .. } => n <= *capacity,
        }
    }

    /// Step 2: charge `n`, or say how long to wait.
    fn charge(&self, n: u32, clock: &C) -> Result<(), Duration> {
        let Limit::Bucket { bucket, .. } = self else {
            return Ok(()); // Unlimited, or Closed with n == 0 (fits() ran first)
        };
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        match bucket.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(clock.now())),
            // fits() already refused this; treat a race with a spec change alike.
            Err(InsufficientCapacity(_)) => Err(Duration::MAX),
        }
    }
}

/// Whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> Duration {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

/// Per-key rate limiter with bounded key memory.
pub struct RateLimiter<C: Clock + Clone = DefaultClock> {
    keys: moka::sync::Cache<String, Arc<KeyLimits<C>>>,
    clock: C,
}

impl<C: Clock + Clone> std::fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("keys", &self.keys.entry_count())
            .finish()
    }
}

impl RateLimiter<DefaultClock> {
    /// A limiter remembering at most `max_keys` keys, each for
    /// [`DEFAULT_IDLE`] without traffic.
    pub fn new(max_keys: u64) -> Self {
        Self::with_clock(max_keys, DEFAULT_IDLE, DefaultClock::default())
    }
}

impl<C> RateLimiter<C>
where
    C: Clock + Clone + Send + Sync + 'static,
{
    /// A limiter with an explicit idle time and clock (tests use
    /// `governor::clock::FakeRelativeClock`).
    pub fn with_clock(max_keys: u64, idle: Duration, clock: C) -> Self {
        let keys = moka::sync::Cache::builder()
            .max_capacity(max_keys)
            .time_to_idle(idle)
            .build();
        RateLimiter { keys, clock }
    }

    /// Check one request of `spans` spans and `bytes` decompressed bytes for
    /// `key` under `spec`. Charges all configured buckets on success; on
    /// refusal, see the module doc for what may have been charged.
    pub fn check(
        &self,
        key: &str,
        spec: &RateSpec,
        spans: u32,
        bytes: u32,
    ) -> Result<(), RateLimited> {
        if spec.is_unlimited() {
            return Ok(());
        }
        let limits = self.limits(key, spec);
        let dims = [
            ("spans", &limits.spans, spans),
            ("bytes", &limits.bytes, bytes),
            ("requests", &limits.requests, 1),
        ];
        let burst_secs = u64::from(spec.burst.unwrap_or(1).max(1));
        for (limit, l, n) in dims {
            if !l.fits(n) {
                return Err(RateLimited {
                    retry_after: Duration::from_secs(burst_secs),
                    limit,
                    reason: REASON_BATCH_EXCEEDS_BURST,
                });
            }
        }
        for (limit, l, n) in dims {
            if let Err(wait) = l.charge(n, &self.clock) {
                let (retry_after, reason) = if wait == Duration::MAX {
                    (Duration::from_secs(burst_secs), REASON_BATCH_EXCEEDS_BURST)
                } else {
                    (retry_after_secs(wait), REASON_RATE_LIMITED)
                };
                return Err(RateLimited {
                    retry_after,
                    limit,
                    reason,
                });
            }
        }
        Ok(())
    }

    /// The key's buckets for `spec`, rebuilt when the spec changed.
    fn limits(&self, key: &str, spec: &RateSpec) -> Arc<KeyLimits<C>> {
        let current = self
            .keys
            .get_with_by_ref(key, || Arc::new(self.build(spec)));
        if current.spec == *spec {
            return current;
        }
        let fresh = Arc::new(self.build(spec));
        self.keys.insert(key.to_owned(), fresh.clone());
        fresh
    }

    fn build(&self, spec: &RateSpec) -> KeyLimits<C> {
        let burst = spec.burst.unwrap_or(1).max(1);
        KeyLimits {
            spec: spec.clone(),
            requests: Limit::new(spec.requests_per_second, burst, &self.clock),
            spans: Limit::new(spec.spans_per_second, burst, &self.clock),
            bytes: Limit::new(spec.bytes_per_second, burst, &self.clock),
        }
    }

    /// Keys currently remembered (approximate until [`Self::run_pending_tasks`]).
    pub fn key_count(&self) -> u64 {
        self.keys.entry_count()
    }

    /// Run the cache's pending evictions now (moka otherwise does this
    /// lazily on later operations).
    pub fn run_pending_tasks(&self) {
        self.keys.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limiter(max_keys: u64) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            RateLimiter::with_clock(max_keys, DEFAULT_IDLE, clock.clone()),
            clock,
        )
    }

    fn rps(n: u32) -> RateSpec {
        RateSpec {
            requests_per_second: Some(n),
            ..Default::default()
        }
    }

    #[test]
    fn requests_up_to_burst_then_refused() {
        let (rl, clock) = limiter(100);
        let spec = RateSpec {
            burst: Some(2),
            ..rps(5)
        };
        for i in 0..10 {
            assert_eq!(rl.check("k", &spec, 1, 1), Ok(()), "request {i}");
        }
        let err = rl.check("k", &spec, 1, 1).expect_err("11th refused");
        assert_eq!(err.limit, "requests");
        assert_eq!(err.reason, REASON_RATE_LIMITED);
        assert!(err.retry_after >= Duration::from_secs(1));
        assert_eq!(err.retry_after.subsec_nanos(), 0);
        // One token comes back after 1/5 s.
        clock.advance(Duration::from_millis(200));
        assert_eq!(rl.check("k", &spec, 1, 1), Ok(()));
        assert!(rl.check("k", &spec, 1, 1).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            retry_after_secs(Duration::from_millis(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry_after_secs(Duration::from_millis(1001)),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_after_secs(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        // A slow limit: 1 request per second, second request waits ~1s.
        let (rl, _clock) = limiter(10);
        assert!(rl.check("k", &rps(1), 0, 0).is_ok());
        let err = rl.check("k", &rps(1), 0, 0).expect_err("refused");
        assert_eq!(err.retry_after, Duration::from_secs(1));
    }

    #[test]
    fn spans_limit_and_refused_batches_cost_no_request() {
        let (rl, clock) = limiter(10);
        let spec = RateSpec {
            requests_per_second: Some(2),
            spans_per_second: Some(100),
            ..Default::default()
        };
        assert!(rl.check("k", &spec, 80, 0).is_ok());
        let err = rl.check("k", &spec, 30, 0).expect_err("spans over");
        assert_eq!((err.limit, err.reason), ("spans", REASON_RATE_LIMITED));
        // The refused batch did not use the second request slot.
        assert!(rl.check("k", &spec, 20, 0).is_ok());
        let err = rl.check("k", &spec, 0, 0).expect_err("requests over");
        assert_eq!(err.limit, "requests");
        clock.advance(Duration::from_secs(1));
        assert!(rl.check("k", &spec, 100, 0).is_ok());
    }

    #[test]
    fn bytes_limit() {
        let (rl, clock) = limiter(10);
        let spec = RateSpec {
            bytes_per_second: Some(1_000_000),
            ..Default::default()
        };
        assert!(rl.check("k", &spec, 10, 600_000).is_ok());
        let err = rl.check("k", &spec, 10, 600_000).expect_err("bytes over");
        assert_eq!((err.limit, err.reason), ("bytes", REASON_RATE_LIMITED));
        assert_eq!(err.retry_after, Duration::from_secs(1));
        clock.advance(Duration::from_millis(600));
        assert!(rl.check("k", &spec, 10, 600_000).is_ok());
    }

    #[test]
    fn batch_larger_than_burst_is_a_clear_refusal() {
        let (rl, clock) = limiter(10);
        let spec = RateSpec {
            requests_per_second: Some(10),
            spans_per_second: Some(1000),
            burst: Some(2),
            ..Default::default()
        };
        let err = rl.check("k", &spec, 2001, 0).expect_err("too big");
        assert_eq!(
            (err.limit, err.reason),
            ("spans", REASON_BATCH_EXCEEDS_BURST)
        );
        // It stays refused however long the client waits.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(
            rl.check("k", &spec, 2001, 0).map_err(|e| e.reason),
            Err(REASON_BATCH_EXCEEDS_BURST)
        );
        // And nothing was charged: the full burst is still there.
        assert!(rl.check("k", &spec, 2000, 0).is_ok());
        for _ in 0..19 {
            assert!(rl.check("k", &spec, 0, 0).is_ok());
        }
        assert!(rl.check("k", &spec, 0, 0).is_err());
    }

    #[test]
    fn zero_rate_is_closed() {
        let (rl, _clock) = limiter(10);
        let spec = RateSpec {
            spans_per_second: Some(0),
            ..Default::default()
        };
        assert_eq!(
            rl.check("k", &spec, 1, 0).map_err(|e| (e.limit, e.reason)),
            Err(("spans", REASON_BATCH_EXCEEDS_BURST))
        );
        // A batch with no spans has nothing to charge.
        assert!(rl.check("k", &spec, 0, 0).is_ok());
    }

    #[test]
    fn keys_are_independent() {
        let (rl, _clock) = limiter(10);
        let spec = rps(1);
        assert!(rl.check("binding-a:team1", &spec, 0, 0).is_ok());
        assert!(rl.check("binding-a:team1", &spec, 0, 0).is_err());
        assert!(rl.check("binding-a:team2", &spec, 0, 0).is_ok());
        assert!(rl.check("binding-b:team1", &spec, 0, 0).is_ok());
    }

    #[test]
    fn unlimited_spec_tracks_no_keys() {
        let (rl, _clock) = limiter(10);
        for i in 0..100 {
            assert!(
                rl.check(&format!("k{i}"), &RateSpec::default(), u32::MAX, u32::MAX)
                    .is_ok()
            );
        }
        rl.run_pending_tasks();
        assert_eq!(rl.key_count(), 0);
    }

    #[test]
    fn key_memory_is_bounded() {
        let max = 50u64;
        let (rl, _clock) = limiter(max);
        for i in 0..(10 * max) {
            let _ = rl.check(&format!("key-{i}"), &rps(10), 0, 0);
        }
        rl.run_pending_tasks();
        assert!(rl.key_count() <= max, "{} keys kept", rl.key_count());
        assert!(rl.key_count() > 0);
    }

    #[test]
    fn spec_change_rebuilds_buckets() {
        let (rl, _clock) = limiter(10);
        assert!(rl.check("k", &rps(1), 0, 0).is_ok());
        assert!(rl.check("k", &rps(1), 0, 0).is_err());
        // Policy reload raises the limit: fresh buckets under the new spec.
        let raised = rps(3);
        for _ in 0..3 {
            assert!(rl.check("k", &raised, 0, 0).is_ok());
        }
        assert!(rl.check("k", &raised, 0, 0).is_err());
        // And back.
        assert!(rl.check("k", &rps(1), 0, 0).is_ok());
        assert!(rl.check("k", &rps(1), 0, 0).is_err());
    }

    #[test]
    fn default_clock_limiter_refuses_immediately_after_burst() {
        let rl = RateLimiter::new(10);
        let spec = rps(3);
        for _ in 0..3 {
            assert!(rl.check("k", &spec, 0, 0).is_ok());
        }
        let err = rl.check("k", &spec, 0, 0).expect_err("refused");
        assert!(err.retry_after >= Duration::from_secs(1));
    }
}
