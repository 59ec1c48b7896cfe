//! Verified-token cache: SHA-256 of the token → the verified [`Principal`].
//!
//! Bounded by weight (approximate bytes), each entry expires no later than the
//! token's `exp + leeway` (per-entry expiry) and no later than the provider's
//! `token_cache_ttl`. Entries verified by a key that leaves the JWKS are
//! invalidated. A hit skips signature verification, but the caller still
//! checks `exp + leeway` at hit time and that the key is still published.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

use super::Principal;

/// SHA-256 of a token.
pub(crate) type TokenHash = [u8; 32];

/// Hash a token for the cache key (the token itself is never stored as a key).
pub(crate) fn token_hash(token: &str) -> TokenHash {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// One verified token.
pub(crate) struct CachedToken {
    /// Index of the provider that verified it.
    pub provider: usize,
    /// Key that verified it (`None`: a keyless JWK).
    pub kid: Option<String>,
    /// `exp` of the token.
    pub exp: u64,
    /// Leeway in force when it was verified.
    pub leeway: u64,
    /// The result, shared by every hit (never cloned per request).
    pub principal: Arc<Principal>,
    ttl: Duration,
    weight: u32,
}

impl CachedToken {
    /// A cache entry living `ttl` (already capped by the caller at `exp + leeway`).
    pub fn new(
        provider: usize,
        kid: Option<String>,
        exp: u64,
        leeway: u64,
        principal: Arc<Principal>,
        ttl: Duration,
        token_len: usize,
    ) -> Self {
        let weight =
            u32::try_from(token_len.saturating_mul(2).saturating_add(512)).unwrap_or(u32::MAX);
        Self {
            provider,
            kid,
            exp,
            leeway,
            principal,
            ttl,
            weight,
        }
    }
}

struct PerEntry;

impl Expiry<TokenHash, Arc<CachedToken>> for PerEntry {
    fn expire_after_create(
        &self,
        _k: &TokenHash,
        v: &Arc<CachedToken>,
        _at: Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The cache.
pub(crate) struct TokenCache {
    inner: moka::sync::Cache<TokenHash, Arc<CachedToken>>,
}

impl TokenCache {
    /// A cache holding at most about `max_bytes` of entries.
    pub fn new(max_bytes: u64) -> Self {
        let inner = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &TokenHash, v: &Arc<CachedToken>| v.weight)
            .expire_after(PerEntry)
            .support_invalidation_closures()
            .build();
        Self { inner }
    }

    /// Look a token up.
    pub fn get(&self, hash: &TokenHash) -> Option<Arc<CachedToken>> {
        self.inner.get(hash)
    }

    /// Store a verified token.
    pub fn insert(&self, hash: TokenHash, entry: CachedToken) {
        if !entry.ttl.is_zero() {
            self.inner.insert(hash, Arc::new(entry));
        }
    }

    /// Drop one entry.
    pub fn invalidate(&self, hash: &TokenHash) {
        self.inner.invalidate(hash);
    }

    /// Drop every entry of `provider` verified by one of `kids`.
    pub fn invalidate_kids(&self, provider: usize, kids: HashSet<String>) {
        let result = self.inner.invalidate_entries_if(move |_, v| {
            v.provider == provider && v.kid.as_ref().is_some_and(|k| kids.contains(k))
        });
        if result.is_err() {
            // Closures are enabled at build time; fall back to dropping everything.
            self.inner.invalidate_all();
        }
    }

    /// Entries currently held (approximate; for tests).
    pub fn entry_count(&self) -> u64 {
        self.inner.run_pending_tasks();
        self.inner.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_same_key_any_byte_changed_another_key() {
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        // The same bytes from another allocation hash the same.
        let copy: String = token.chars().collect();
        assert_eq!(token_hash(token), token_hash(&copy));
        let mut seen = std::collections::HashSet::new();
        seen.insert(token_hash(token));
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            for delta in [1u8, 0x20, 0x80] {
                let mut b = bytes.to_vec();
                b[i] ^= delta;
                if let Ok(s) = String::from_utf8(b) {
                    assert!(seen.insert(token_hash(&s)), "collision at byte {i}");
                }
            }
        }
        // Prefixes and extensions are other keys too.
        assert_ne!(token_hash(token), token_hash(&token[..token.len() - 1]));
        assert_ne!(token_hash(token), token_hash(&format!("{token}A")));
        assert_eq!(token_hash(token).len(), 32);
    }
}
