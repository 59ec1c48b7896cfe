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

/// Every single-character change of `token` at `positions` that stays in the
/// base64url alphabet.
fn one_char_variants(token: &str, positions: &[usize]) -> Vec<String> {
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    for &i in positions {
        let mut bytes = token.as_bytes().to_vec();
        let Some(&c) = bytes.get(i) else { continue };
        if c == b'.' {
            continue;
        }
        // Neighbouring letter, and the same letter in the other case.
        let idx = alphabet.find(c as char).unwrap_or(0);
        let next = alphabet.as_bytes()[(idx + 1) % 64];
        for replacement in [next, c.to_ascii_uppercase(), c.to_ascii_lowercase()] {
            if replacement != c {
                bytes[i] = replacement;
                out.push(String::from_utf8(bytes.clone()).expect("ascii"));
            }
        }
    }
    out
}

#[tokio::test]
async fn identity_cache_is_never_served_for_a_token_one_byte_off() {
    for alg in [DevKeyAlg::Es256, DevKeyAlg::Rs256, DevKeyAlg::EdDsa] {
        let idp = idp(alg).await;
        let id = ready(one("dev", provider(&idp))).await;
        let good = idp.mint(json!({"sub": "victim", "role": "reader"}));
        let first = id.authenticate(&good).await.expect("valid");
        let verified = id.signature_verifications();
        // Same bytes: the same entry, no verification.
        assert_eq!(id.authenticate(&good).await.expect("hit"), first);
        assert_eq!(id.signature_verifications(), verified);

        let sig_start = good.rfind('.').expect("jws") + 1;
        let payload_start = good.find('.').expect("jws") + 1;
        let len = good.len();
        let positions = [
            0,
            5,
            payload_start,
            payload_start + 7,
            sig_start - 2,
            sig_start,
            sig_start + 1,
            (sig_start + len) / 2,
            len - 2,
            len - 1,
        ];
        let variants = one_char_variants(&good, &positions);
        assert!(variants.len() >= 15, "{alg:?}: {} variants", variants.len());
        for bad in &variants {
            assert_ne!(bad, &good);
            let before = id.signature_verifications();
            match id.authenticate(bad).await {
                Ok(p) => panic!("{alg:?}: a token one byte off was accepted: {p:?}"),
                Err(e) => {
                    let r = e.reason();
                    assert!(
                        [
                            "bad_signature",
                            "malformed",
                            "alg_not_allowed",
                            "unknown_key",
                            "bad_issuer",
                            "bad_type"
                        ]
                        .contains(&r),
                        "{alg:?}: {r}"
                    );
                    // A signature flip reaches the signature check again:
                    // the cached entry of the good token was not used.
                    if bad[..sig_start] == good[..sig_start] {
                        assert_eq!(r, "bad_signature", "{alg:?}");
                        assert_eq!(id.signature_verifications(), before + 1);
                    }
                }
            }
            // The failed attempt neither evicted nor replaced the good entry.
            let verified = id.signature_verifications();
            assert_eq!(id.authenticate(&good).await.expect("still cached"), first);
            assert_eq!(id.signature_verifications(), verified);
        }
        // A refused token is never cached: refused again, verified again.
        let flipped = variants
            .iter()
            .find(|v| v[..sig_start] == good[..sig_start])
            .expect("a signature variant");
        let before = id.signature_verifications();
        for _ in 0..3 {
            assert_eq!(reason(&id, flipped).await, "bad_signature");
        }
        assert_eq!(id.signature_verifications(), before + 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_cache_concurrent_good_and_flipped_tokens_never_mix() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", provider(&idp))).await;
    let good = idp.mint(json!({"sub": "victim"}));
    let mut bad = good.clone().into_bytes();
    let last = bad.len() - 3;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).expect("ascii");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let id = id.clone();
        let t = if i % 2 == 0 {
            good.clone()
        } else {
            bad.clone()
        };
        tasks.push(tokio::spawn(async move {
            (i % 2 == 0, id.authenticate(&t).await)
        }));
    }
    for t in tasks {
        let (is_good, r) = t.await.expect("task");
        if is_good {
            assert_eq!(r.expect("good token").subject, "victim");
        } else {
            assert_eq!(r.expect_err("flipped token").reason(), "bad_signature");
        }
    }
}
