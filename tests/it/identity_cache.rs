//! Verified-token cache: a hit skips the signature, an entry never outlives
//! exp + leeway, a removed key invalidates the tokens it verified.

use crate::identity_support;

use std::time::Duration;

use identity_support::*;
use serde_json::json;
use spangate::dev::idp::DevKeyAlg;

async fn sleep_until_past(t: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while now() <= t && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(now() > t);
}

#[tokio::test]
async fn a_hit_skips_signature_verification() {
    let idp = idp(DevKeyAlg::Rs256).await;
    let id = ready(one("dev", provider(&idp))).await;
    let t = idp.mint(json!({"sub": "a"}));
    let before = id.signature_verifications();
    let first = id.authenticate(&t).await.expect("valid");
    assert_eq!(id.signature_verifications(), before + 1);
    for _ in 0..10 {
        assert_eq!(id.authenticate(&t).await.expect("cached"), first);
    }
    assert_eq!(
        id.signature_verifications(),
        before + 1,
        "hits must not verify again"
    );
    assert!(id.cached_tokens() >= 1);
    // Another token is another entry.
    id.authenticate(&idp.mint(json!({"sub": "b"})))
        .await
        .expect("valid");
    assert_eq!(id.signature_verifications(), before + 2);
}

#[tokio::test]
async fn cache_can_be_disabled() {
    let idp = idp(DevKeyAlg::Es256).await;
    let mut cfg = provider(&idp);
    cfg.token_cache_ttl = Duration::ZERO;
    let id = ready(one("dev", cfg)).await;
    let t = idp.mint(json!({}));
    let before = id.signature_verifications();
    for _ in 0..3 {
        id.authenticate(&t).await.expect("valid");
    }
    assert_eq!(id.signature_verifications(), before + 3);
}

#[tokio::test]
async fn an_entry_never_outlives_exp_plus_leeway() {
    let idp = idp(DevKeyAlg::Es256).await;
    let mut cfg = provider(&idp);
    cfg.leeway = Duration::from_secs(1);
    let id = ready(one("dev", cfg)).await;
    // Already past exp, accepted only thanks to the leeway.
    let exp = now();
    let t = idp.mint(json!({"exp": exp}));
    id.authenticate(&t).await.expect("within leeway");
    id.authenticate(&t)
        .await
        .expect("cached, still within leeway");
    sleep_until_past(exp + 1).await;
    assert_eq!(reason(&id, &t).await, "expired");
    assert_eq!(reason(&id, &t).await, "expired");
}

#[tokio::test]
async fn a_removed_key_invalidates_cached_tokens() {
    let idp = idp(DevKeyAlg::Es256).await;
    let mut cfg = provider(&idp);
    cfg.unknown_kid_refetch_interval = Duration::ZERO;
    let id = ready(one("dev", cfg)).await;
    let old = idp.mint(json!({"sub": "old"}));
    id.authenticate(&old).await.expect("valid");
    let cached = id.signature_verifications();
    id.authenticate(&old).await.expect("cached");
    assert_eq!(id.signature_verifications(), cached);

    idp.rotate_key();
    let new = idp.mint(json!({"sub": "new"}));
    id.authenticate(&new).await.expect("new key fetched");
    // Old key still published: the cached entry still serves.
    id.authenticate(&old)
        .await
        .expect("old key still published");

    idp.retire_old_keys();
    let probe = idp.mint_with_header(json!({"kid": random_kid()}), json!({}));
    assert_eq!(reason(&id, &probe).await, "unknown_key");
    assert_eq!(reason(&id, &old).await, "unknown_key");
    assert!(id.authenticate(&new).await.is_ok());
}
