//! Throttling of failed admin authentication.
//!
//! Nothing else stops a caller from guessing the bootstrap token or replaying
//! bad OIDC tokens against the admin API, so every authenticated admin call
//! passes through [`AuthThrottle`] *before* its token is looked at. The
//! design must hold two properties at once (docs/security.md explains why):
//! a guesser cannot lock out a *different, valid* credential, and a locked
//! out guesser gets no oracle (a right guess answers like a wrong one).
//!
//! * **Keyed by peer and credential.** Failures are counted per peer key
//!   ([`PeerKey`]: the IPv4 address, the /64 prefix of an IPv6 address, or
//!   the uid of a Unix-socket peer) and de-duplicated by the fingerprint of
//!   the presented credential: repeating one wrong token (a stale script)
//!   counts once. `max_failures` distinct failures within `window` lock the
//!   peer out for `lockout`; on probation afterwards a single failure locks
//!   it again, twice as long each time, up to `max_lockout`.
//! * **A lockout refuses unknown shared secrets without a check.** While a
//!   peer is locked out, a credential that is neither known good nor signed
//!   gets 429 with `Retry-After` and is not checked: a right guess gets the
//!   same 429 as a wrong one, so the lockout is no oracle.
//! * **Known-good credentials pass.** A credential that authenticated *and*
//!   held the permission it asked for, from this peer, within the last hour,
//!   is checked even while the peer is locked out (or the global ceiling is
//!   reached): a guesser cannot lock an operator out of a credential the
//!   operator is using. The answer differs from a refusal only for a
//!   credential that has already proven valid from this peer; guessing it is
//!   guessing the credential (see docs/security.md on the bootstrap token).
//! * **Signed credentials pass.** A JWT-shaped credential is checked even
//!   while the peer is locked out: its signature cannot be guessed, so the
//!   check is no oracle, and a fresh OIDC admin token keeps working during an
//!   attack. (The bootstrap token is never compared against a JWT-shaped
//!   credential, so this path cannot be used to guess it.)
//! * **Success does not clear the peer.** Another caller at the same address
//!   succeeding says nothing about the guesser; it only marks the credential
//!   known good for that peer.
//! * **In flight.** A peer with failures on record may not have more unknown
//!   attempts in flight than it has failures left, so parallel connections
//!   cannot overshoot the threshold.
//! * **Global ceiling.** Every failure, from any peer, takes a token from a
//!   bucket of `global_max_failures` per `global_window`. While the bucket is
//!   empty, peers that have not authenticated successfully within the last
//!   hour are throttled without a check (scope `global`), known-good
//!   credentials excepted. So a guesser spread over many addresses gets at
//!   most `global_max_failures` checks per window.
//! * **Bounded memory.** Peer records, known-good credentials and the
//!   "recently authenticated" set live in moka caches with `max_peers`
//!   entries each; a peer remembers at most `max_failures` failing
//!   fingerprints.
//!
//! The decisions are pure functions of the recorded state and an explicit
//! `now`, so they are unit-tested below with synthetic addresses and times.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::config::admin::{
    AuthThrottleConfig, DEFAULT_GLOBAL_MAX_FAILURES, DEFAULT_GLOBAL_WINDOW, DEFAULT_LOCKOUT,
    DEFAULT_MAX_FAILURES, DEFAULT_MAX_LOCKOUT, DEFAULT_MAX_PEERS, DEFAULT_WINDOW,
    MAX_CONFIG_LOCKOUT, TRUSTED_FOR,
};

/// The key failures are counted under: an IPv4 address, the /64 prefix of
/// an IPv6 address, or the uid of a Unix-socket peer. IPv4-mapped IPv6
/// addresses count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKey {
    /// One IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
    /// A local user on the Unix socket (kernel-verified uid).
    Uid(u32),
}

impl From<IpAddr> for PeerKey {
    fn from(ip: IpAddr) -> PeerKey {
        PeerKey::of(ip)
    }
}

/// What the throttle knows about a presented credential before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// Fingerprint of the credential (never the credential).
    pub fingerprint: String,
    /// JWT-shaped: a signature decides, guessing is hopeless.
    pub signed: bool,
}

impl Presented {
    /// Describe a presented bearer token.
    pub fn of(token: &str) -> Presented {
        Presented {
            fingerprint: crate::fingerprint(token.as_bytes()),
            signed: looks_signed(token),
        }
    }
}

/// True when `token` has the shape of a JWS: three non-empty base64url
/// segments whose first decodes to a JSON object naming an `alg`. The
/// bootstrap token is never compared against such a token.
pub fn looks_signed(token: &str) -> bool {
    use base64::Engine;
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let b64url = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !(b64url(h) && b64url(p) && b64url(sig)) || h.len() > 4096 {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .is_some_and(|v| v.get("alg").is_some_and(|a| a.is_string()))
}

impl PeerKey {
    /// Derive the key of a peer address.
    pub fn of(ip: IpAddr) -> PeerKey {
        match ip {
            IpAddr::V4(v4) => PeerKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => PeerKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    let mut p = [0u8; 8];
                    p.copy_from_slice(o.get(..8).unwrap_or(&[0u8; 8]));
                    PeerKey::V6Prefix(p)
                }
            },
        }
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerKey::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            PeerKey::V6Prefix(p) => {
                let mut full = [0u8; 16];
                full[..8].copy_from_slice(p);
                write!(f, "{}/64", std::net::Ipv6Addr::from(full))
            }
            PeerKey::Uid(uid) => write!(f, "uid:{uid}"),
        }
    }
}

/// Which limit throttled a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The peer's own lockout (or its in-flight limit).
    Peer,
    /// The global failure ceiling.
    Global,
}

impl Scope {
    /// `peer` or `global` (audit field and metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Peer => "peer",
            Scope::Global => "global",
        }
    }
}

/// What a peer's record says.
#[derive(Debug, Default)]
struct PeerState {
    /// Failures in the current window.
    failures: u32,
    /// Start of the current window.
    window_start: Option<Instant>,
    /// Last failure.
    last_failure: Option<Instant>,
    /// Lockouts so far (the next lockout lasts `lockout * 2^strikes`).
    strikes: u32,
    /// End of the running (or last) lockout.
    locked_until: Option<Instant>,
    /// Attempts between `check` and their outcome.
    in_flight: u32,
    /// Fingerprints that failed in the current window (at most `max_failures`).
    failed: Vec<String>,
}

impl PeerState {
    /// Forget everything once the record has been quiet for `forget_after`.
    fn forget_if_stale(&mut self, now: Instant, forget_after: Duration) {
        let last = match (self.last_failure, self.locked_until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if last.is_some_and(|l| now.saturating_duration_since(l) > forget_after) {
            // `failed` goes with the rest.
            let in_flight = self.in_flight;
            *self = PeerState {
                in_flight,
                ..PeerState::default()
            };
        }
    }

    /// Failures that start the next lockout: `max` normally, 1 on probation.
    fn threshold(&self, max: u32) -> u32 {
        if self.strikes > 0 { 1 } else { max }
    }
}

/// Token bucket of failures across all peers.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The outcome of [`AuthThrottle::check`].
#[derive(Debug)]
pub enum Verdict<'a> {
    /// Check the token, then report with [`Attempt::failed`] or
    /// [`Attempt::succeeded`] (dropping the attempt reports neither).
    Proceed(Attempt<'a>),
    /// Refuse without looking at the token.
    Throttled {
        /// Which limit.
        scope: Scope,
        /// When to try again.
        retry_after: Duration,
    },
}

/// One authentication attempt that passed the throttle.
#[derive(Debug)]
pub struct Attempt<'a> {
    throttle: &'a AuthThrottle,
    key: PeerKey,
    /// Fingerprint of the presented credential (None: none or malformed).
    fingerprint: Option<String>,
    /// The record whose `in_flight` this attempt holds.
    reserved: Option<Arc<Mutex<PeerState>>>,
}

impl Attempt<'_> {
    /// The token was wrong. Returns the lockout this failure started, if any.
    pub fn failed(mut self, now: Instant) -> Option<Duration> {
        self.release();
        let fp = self.fingerprint.take();
        self.throttle.record_failure(self.key, fp, now)
    }

    /// The caller authenticated and holds the permission asked for.
    pub fn succeeded(mut self) {
        self.release();
        let fp = self.fingerprint.take();
        self.throttle.record_success(self.key, fp);
    }

    fn release(&mut self) {
        if let Some(state) = self.reserved.take() {
            let mut s = lock(&state);
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Counters of the throttle (shown in admin status).
#[derive(Debug, Default)]
pub struct ThrottleCounters {
    /// Calls refused by a peer lockout.
    pub throttled_peer: AtomicU64,
    /// Calls refused by the global ceiling.
    pub throttled_global: AtomicU64,
    /// Calls checked during a lockout or the global ceiling because their
    /// credential was known good or signed.
    pub passed_known: AtomicU64,
    /// Lockouts started.
    pub lockouts: AtomicU64,
    /// Failures recorded.
    pub failures: AtomicU64,
}

/// Failed-authentication throttle of the admin API (see the module docs).
pub struct AuthThrottle {
    cfg: AuthThrottleConfig,
    peers: moka::sync::Cache<PeerKey, Arc<Mutex<PeerState>>>,
    trusted: moka::sync::Cache<PeerKey, ()>,
    /// (peer, fingerprint) of credentials that succeeded within TRUSTED_FOR.
    known_good: moka::sync::Cache<(PeerKey, String), ()>,
    global: Mutex<Option<Bucket>>,
    counters: ThrottleCounters,
}

impl fmt::Debug for AuthThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthThrottle")
            .field("cfg", &self.cfg)
            .field("tracked", &self.peers.entry_count())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AuthThrottle {
    /// Build a throttle from its (validated) config.
    pub fn new(cfg: AuthThrottleConfig) -> Self {
        let capacity = cfg.max_peers.max(1);
        let peers = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_idle(cfg.forget_after().saturating_add(cfg.max_lockout))
            .build();
        let trusted = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(TRUSTED_FOR)
            .build();
        let known_good = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(TRUSTED_FOR)
            .build();
        Self {
            cfg,
            peers,
            trusted,
            known_good,
            global: Mutex::new(None),
            counters: ThrottleCounters::default(),
        }
    }

    /// The config in force.
    pub fn config(&self) -> &AuthThrottleConfig {
        &self.cfg
    }

    /// The counters.
    pub fn counters(&self) -> &ThrottleCounters {
        &self.counters
    }

    /// Peers with a record (approximate; moka counts lazily).
    pub fn tracked_peers(&self) -> u64 {
        self.peers.run_pending_tasks();
        self.peers.entry_count()
    }

    /// True while the global failure budget is used up.
    pub fn global_exhausted(&self, now: Instant) -> bool {
        self.global_wait(now).is_some()
    }

    /// Decide whether a call from `peer` without a (well-formed) credential
    /// may go on; see [`AuthThrottle::check_credential`].
    pub fn check(&self, peer: impl Into<PeerKey>, now: Instant) -> Verdict<'_> {
        self.check_credential(peer.into(), None, now)
    }

    /// Whether `cred` from `key` is checked even while the peer is locked
    /// out: known good from this peer, or signed.
    pub fn exempt(&self, key: PeerKey, cred: Option<&Presented>) -> bool {
        cred.is_some_and(|c| {
            c.signed || self.known_good.contains_key(&(key, c.fingerprint.clone()))
        })
    }

    /// Decide whether a call from `peer` presenting `cred` may have it
    /// checked (the module docs give the rules).
    pub fn check_credential(
        &self,
        key: PeerKey,
        cred: Option<&Presented>,
        now: Instant,
    ) -> Verdict<'_> {
        let fingerprint = cred.map(|c| c.fingerprint.clone());
        let proceed = |reserved| {
            Verdict::Proceed(Attempt {
                throttle: self,
                key,
                fingerprint: fingerprint.clone(),
                reserved,
            })
        };
        if !self.cfg.enabled {
            return proceed(None);
        }
        let known =
            cred.is_some_and(|c| self.known_good.contains_key(&(key, c.fingerprint.clone())));
        let signed = cred.is_some_and(|c| c.signed);
        let state = self.peers.get(&key);
        if let Some(state) = &state {
            let mut s = lock(state);
            s.forget_if_stale(now, self.cfg.forget_after());
            if let Some(until) = s.locked_until
                && until > now
            {
                drop(s);
                if known || signed {
                    self.counters.passed_known.fetch_add(1, Ordering::Relaxed);
                    return proceed(None);
                }
                return self.throttled(Scope::Peer, until - now);
            }
        }
        if let Some(wait) = self.global_wait(now)
            && !self.trusted.contains_key(&key)
        {
            if known {
                self.counters.passed_known.fetch_add(1, Ordering::Relaxed);
                return proceed(None);
            }
            return self.throttled(Scope::Global, wait);
        }
        if known || signed {
            return proceed(None);
        }
        let mut reserved = None;
        if let Some(state) = state {
            let mut s = lock(&state);
            if s.failures > 0 || s.strikes > 0 {
                let left = s
                    .threshold(self.cfg.max_failures)
                    .saturating_sub(s.failures);
                if s.in_flight >= left {
                    drop(s);
                    return self.throttled(Scope::Peer, Duration::from_secs(1));
                }
                s.in_flight += 1;
                drop(s);
                reserved = Some(state);
            }
        }
        proceed(reserved)
    }

    fn throttled(&self, scope: Scope, retry_after: Duration) -> Verdict<'_> {
        let c = match scope {
            Scope::Peer => &self.counters.throttled_peer,
            Scope::Global => &self.counters.throttled_global,
        };
        c.fetch_add(1, Ordering::Relaxed);
        Verdict::Throttled { scope, retry_after }
    }

    fn record_failure(
        &self,
        key: PeerKey,
        fingerprint: Option<String>,
        now: Instant,
    ) -> Option<Duration> {
        if !self.cfg.enabled {
            return None;
        }
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        self.take_global(now);
        let state = self.peers.get_with(key, Arc::default);
        let mut s = lock(&state);
        s.forget_if_stale(now, self.cfg.forget_after());
        let window_over = s
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) > self.cfg.window);
        if window_over {
            s.failures = 0;
            s.failed.clear();
            s.window_start = Some(now);
        }
        s.last_failure = Some(now);
        // The same wrong credential again is no new guess.
        if let Some(fp) = fingerprint {
            if s.failed.contains(&fp) {
                return None;
            }
            if s.failed.len() < self.cfg.max_failures as usize {
                s.failed.push(fp);
            }
        }
        s.failures = s.failures.saturating_add(1);
        if s.failures < s.threshold(self.cfg.max_failures) {
            return None;
        }
        let doubling = 2u32.saturating_pow(s.strikes.min(20));
        let lockout = self
            .cfg
            .lockout
            .checked_mul(doubling)
            .unwrap_or(self.cfg.max_lockout)
            .min(self.cfg.max_lockout);
        s.strikes = s.strikes.saturating_add(1);
        s.failures = 0;
        s.failed.clear();
        s.window_start = None;
        s.locked_until = Some(now + lockout);
        self.counters.lockouts.fetch_add(1, Ordering::Relaxed);
        Some(lockout)
    }

    fn record_success(&self, key: PeerKey, fingerprint: Option<String>) {
        if !self.cfg.enabled {
            return;
        }
        // The peer's record stays: another caller at the same address
        // succeeding says nothing about a guesser there.
        if let Some(fp) = fingerprint {
            self.known_good.insert((key, fp), ());
        }
        self.trusted.insert(key, ());
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let cap = f64::from(self.cfg.global_max_failures);
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * cap / self.cfg.global_window.as_secs_f64().max(1e-3)).min(cap);
        b.last = b.last.max(now);
    }

    /// Time until the global budget has a token again (None: not exhausted).
    fn global_wait(&self, now: Instant) -> Option<Duration> {
        if self.cfg.global_max_failures == 0 {
            return None;
        }
        let mut g = lock(&self.global);
        let b = g.as_mut()?;
        self.refill(b, now);
        if b.tokens >= 1.0 {
            return None;
        }
        let cap = f64::from(self.cfg.global_max_failures);
        let per_token = self.cfg.global_window.as_secs_f64() / cap;
        Some(Duration::from_secs_f64(
            ((1.0 - b.tokens) * per_token).max(0.001),
        ))
    }

    fn take_global(&self, now: Instant) {
        if self.cfg.global_max_failures == 0 {
            return;
        }
        let mut g = lock(&self.global);
        let b = g.get_or_insert_with(|| Bucket {
            tokens: f64::from(self.cfg.global_max_failures),
            last: now,
        });
        self.refill(b, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    let ms = d.as_millis();
    u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn cfg() -> AuthThrottleConfig {
        AuthThrottleConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(10),
            max_lockout: Duration::from_secs(35),
            global_max_failures: 0,
            ..Default::default()
        }
    }

    /// Fail once from `peer`; panics when throttled.
    fn fail(t: &AuthThrottle, peer: &str, now: Instant) -> Option<Duration> {
        match t.check(ip(peer), now) {
            Verdict::Proceed(a) => a.failed(now),
            Verdict::Throttled { scope, .. } => panic!("{peer} throttled ({scope:?})"),
        }
    }

    fn throttled(t: &AuthThrottle, peer: &str, now: Instant) -> Option<(Scope, Duration)> {
        match t.check(ip(peer), now) {
            Verdict::Proceed(_) => None,
            Verdict::Throttled { scope, retry_after } => Some((scope, retry_after)),
        }
    }

    #[test]
    fn peer_keys() {
        let a = PeerKey::of(ip("10.0.0.1"));
        assert_ne!(a, PeerKey::of(ip("10.0.0.2")));
        assert_eq!(a, PeerKey::of(ip("::ffff:10.0.0.1")), "v4-mapped is v4");
        let p = PeerKey::of(ip("2001:db8:1:2::1"));
        assert_eq!(p, PeerKey::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert_ne!(p, PeerKey::of(ip("2001:db8:1:3::1")));
        assert_eq!(p.to_string(), "2001:db8:1:2::/64");
        assert_eq!(a.to_string(), "10.0.0.1");
        assert_eq!(
            PeerKey::of(IpAddr::V6(Ipv6Addr::LOCALHOST)).to_string(),
            "::/64"
        );
        assert_eq!(
            PeerKey::of(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string(),
            "127.0.0.1"
        );
    }

    #[test]
    fn lockout_after_max_failures_and_other_peers_unaffected() {
        let t = AuthThrottle::new(cfg());
        let t0 = Instant::now();
        assert_eq!(fail(&t, "10.0.0.1", t0), None);
        assert_eq!(fail(&t, "10.0.0.1", t0), None);
        assert_eq!(fail(&t, "10.0.0.1", t0), Some(Duration::from_secs(10)));
        let (scope, wait) = throttled(&t, "10.0.0.1", t0 + Duration::from_secs(4)).expect("locked");
        assert_eq!((scope, wait), (Scope::Peer, Duration::from_secs(6)));
        // Same /32 only: the neighbour and an IPv6 peer are untouched.
        assert!(throttled(&t, "10.0.0.2", t0).is_none());
        assert!(throttled(&t, "2001:db8::1", t0).is_none());
        // The lockout ends on time.
        assert!(throttled(&t, "10.0.0.1", t0 + Duration::from_secs(10)).is_none());
        assert_eq!(t.counters().lockouts.load(Ordering::Relaxed), 1);
        assert_eq!(t.counters().throttled_peer.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn ipv6_peers_share_their_64() {
        let t = AuthThrottle::new(cfg());
        let t0 = Instant::now();
        fail(&t, "2001:db8:0:1::a", t0);
        fail(&t, "2001:db8:0:1::b", t0);
        fail(&t, "2001:db8:0:1::c", t0);
        assert!(throttled(&t, "2001:db8:0:1::d", t0).is_some());
        assert!(throttled(&t, "2001:db8:0:2::a", t0).is_none());
    }

    #[test]
    fn lockouts_double_on_probation_up_to_the_cap() {
        let t = AuthThrottle::new(cfg());
        let mut now = Instant::now();
        for _ in 0..3 {
            fail(&t, "10.0.0.1", now);
        }
        let mut got = Vec::new();
        for _ in 0..4 {
            // Wait out the lockout, then one failure on probation re-locks.
            let (_, wait) = throttled(&t, "10.0.0.1", now).expect("locked");
            now += wait;
            got.push(fail(&t, "10.0.0.1", now).expect("re-locked"));
        }
        let secs: Vec<u64> = got.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, vec![20, 35, 35, 35]);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t = AuthThrottle::new(cfg());
        let t0 = Instant::now();
        fail(&t, "10.0.0.1", t0);
        fail(&t, "10.0.0.1", t0);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(fail(&t, "10.0.0.1", later), None, "window restarted");
        assert_eq!(fail(&t, "10.0.0.1", later), None);
        assert!(fail(&t, "10.0.0.1", later).is_some());
    }

    #[test]
    fn record_is_forgotten_after_a_quiet_period() {
        let t = AuthThrottle::new(cfg());
        let t0 = Instant::now();
        for _ in 0..3 {
            fail(&t, "10.0.0.1", t0);
        }
        // forget_after = max(window 60s, max_lockout 35s) after the lockout end.
        let later = t0 + Duration::from_secs(10 + 61);
        assert_eq!(fail(&t, "10.0.0.1", later), None, "no probation any more");
    }

    #[test]
    fn success_marks_the_credential_known_good_and_keeps_the_peer_record() {
        let t = AuthThrottle::new(cfg());
        let t0 = Instant::now();
        let peer = PeerKey::of(ip("127.0.0.1"));
        let good = Presented::of("the-operators-token");
        match t.check_credential(peer, Some(&good), t0) {
            Verdict::Proceed(a) => a.succeeded(),
            Verdict::Throttled { .. } => panic!("throttled"),
        }
        // A guesser at the same address: three distinct wrong tokens.
        for i in 0..3 {
            let guess = Presented::of(&format!("guess-{i}"));
            match t.check_credential(peer, Some(&guess), t0) {
                Verdict::Proceed(a) => {
                    let locked = a.failed(t0);
                    assert_eq!(locked.is_some(), i == 2);
                }
                Verdict::Throttled { .. } => panic!("throttled before the lockout"),
            }
        }
        // Locked out: unknown credentials (right or wrong) are refused
        // unchecked, the operator's known-good credential is checked.
        let unknown = Presented::of("never-seen");
        assert!(matches!(
            t.check_credential(peer, Some(&unknown), t0),
            Verdict::Throttled {
                scope: Scope::Peer,
                ..
            }
        ));
        assert!(matches!(
            t.check_credential(peer, Some(&good), t0),
            Verdict::Proceed(_)
        ));
        // Known good is per peer: the same credential from elsewhere is unknown there.
        let other = PeerKey::of(ip("10.9.9.9"));
        for i in 0..3 {
            let guess = Presented::of(&format!("g{i}"));
            if let Verdict::Proceed(a) = t.check_credential(other, Some(&guess), t0) {
                a.failed(t0);
            }
        }
        assert!(matches!(
            t.check_credential(other, Some(&good), t0),
            Verdict::Throttled { .. }
        ));
    }

    #[test]
    fn repeating_one_wrong_credential_counts_once() {
        let t = AuthThrottle::new(cfg());
        let t0 = Instant::now();
        let peer = PeerKey::of(ip("10.0.0.1"));
        let stale = Presented::of("stale-token-in-a-cron-job");
        for _ in 0..10 {
            match t.check_credential(peer, Some(&stale), t0) {
                Verdict::Proceed(a) => assert_eq!(a.failed(t0), None),
                Verdict::Throttled { .. } => panic!("a repeated token must not lock the peer"),
            }
        }
    }

    #[test]
    fn signed_credentials_are_checked_during_a_lockout() {
        let t = AuthThrottle::new(cfg());
        let t0 = Instant::now();
        for _ in 0..3 {
            fail(&t, "10.0.0.1", t0);
        }
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        assert!(looks_signed(jwt));
        let peer = PeerKey::of(ip("10.0.0.1"));
        assert!(matches!(
            t.check_credential(peer, Some(&Presented::of(jwt)), t0),
            Verdict::Proceed(_)
        ));
        for not_jwt in [
            "a.b.c",
            "bootstrap-admin-token",
            "eyJhbGciOiJSUzI1NiJ9..c2ln",
            "x.y.z.w",
        ] {
            assert!(!looks_signed(not_jwt), "{not_jwt}");
        }
    }

    #[test]
    fn an_attempt_that_is_neither_failure_nor_success_changes_nothing() {
        // A 403 drops the attempt: it must not clear the count.
        let t = AuthThrottle::new(cfg());
        let t0 = Instant::now();
        fail(&t, "10.0.0.1", t0);
        fail(&t, "10.0.0.1", t0);
        match t.check(ip("10.0.0.1"), t0) {
            Verdict::Proceed(a) => drop(a),
            Verdict::Throttled { .. } => panic!("throttled"),
        }
        assert!(fail(&t, "10.0.0.1", t0).is_some(), "count kept");
    }

    #[test]
    fn attempts_in_flight_cannot_overshoot() {
        let t = AuthThrottle::new(cfg());
        let t0 = Instant::now();
        fail(&t, "10.0.0.1", t0);
        // Two failures left: two attempts may be in flight, the third waits.
        let a = t.check(ip("10.0.0.1"), t0);
        let b = t.check(ip("10.0.0.1"), t0);
        assert!(matches!(a, Verdict::Proceed(_)));
        assert!(matches!(b, Verdict::Proceed(_)));
        assert!(matches!(
            throttled(&t, "10.0.0.1", t0),
            Some((Scope::Peer, _))
        ));
        drop(a);
        assert!(throttled(&t, "10.0.0.1", t0).is_none(), "slot released");
        drop(b);
        // A clean peer is not limited in flight.
        let many: Vec<_> = (0..10).map(|_| t.check(ip("10.0.0.9"), t0)).collect();
        assert!(many.iter().all(|v| matches!(v, Verdict::Proceed(_))));
    }

    #[test]
    fn global_ceiling_throttles_unknown_peers_only() {
        let t = AuthThrottle::new(AuthThrottleConfig {
            max_failures: 100,
            global_max_failures: 4,
            global_window: Duration::from_secs(40),
            ..cfg()
        });
        let t0 = Instant::now();
        // 10.0.0.5 authenticated earlier: it stays usable.
        match t.check(ip("10.0.0.5"), t0) {
            Verdict::Proceed(a) => a.succeeded(),
            Verdict::Throttled { .. } => panic!("throttled"),
        }
        for i in 1..=4 {
            fail(&t, &format!("10.1.0.{i}"), t0);
        }
        assert!(t.global_exhausted(t0));
        let (scope, wait) = throttled(&t, "10.2.0.1", t0).expect("global");
        assert_eq!(scope, Scope::Global);
        assert_eq!(wait.as_secs(), 10, "one token per 10 s");
        assert!(throttled(&t, "10.0.0.5", t0).is_none(), "known peer passes");
        // One token refilled: one more check from anyone.
        let t1 = t0 + Duration::from_secs(10);
        assert!(!t.global_exhausted(t1));
        fail(&t, "10.2.0.1", t1);
        assert!(throttled(&t, "10.2.0.2", t1).is_some());
        assert_eq!(t.counters().throttled_global.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn disabled_throttle_never_throttles() {
        let t = AuthThrottle::new(AuthThrottleConfig {
            enabled: false,
            ..cfg()
        });
        let t0 = Instant::now();
        for _ in 0..50 {
            assert_eq!(fail(&t, "10.0.0.1", t0), None);
        }
        assert_eq!(t.tracked_peers(), 0);
    }

    #[test]
    fn config_validation() {
        assert!(AuthThrottleConfig::default().validate().is_empty());
        let bad = AuthThrottleConfig {
            max_failures: 0,
            lockout: Duration::ZERO,
            max_peers: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().len(), 3);
        let bad = AuthThrottleConfig {
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(30),
            ..Default::default()
        };
        assert_eq!(bad.validate().len(), 1);
        let off = AuthThrottleConfig {
            enabled: false,
            max_failures: 0,
            ..Default::default()
        };
        assert!(off.validate().is_empty());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
