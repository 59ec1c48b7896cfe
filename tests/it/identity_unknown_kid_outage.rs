//! An unknown `kid` while the IdP is failing: the refetch cannot tell whether
//! the key is real, so the answer is a retryable `provider_unavailable` (503 +
//! Retry-After), never a 401 — and the IdP is still asked at most once per
//! `unknown_kid_refetch_interval`. A kid missing from a key set fetched
//! successfully stays `unknown_key`.

use crate::common;
use crate::identity_support;

use std::time::Duration;

use identity_support::*;
use serde_json::json;
use spangate::dev::idp::{DevIdpOptions, DevKeyAlg, Outage};
use spangate::identity::{AuthError, Identity, ProviderConfig};

const HOUR: Duration = Duration::from_secs(3600);

/// A provider whose unknown-kid refetches are limited to one per hour, so no
/// second refetch can happen during a test.
fn slow_refetch(idp: &spangate::dev::idp::DevIdp) -> ProviderConfig {
    let mut cfg = provider(idp);
    cfg.unknown_kid_refetch_interval = HOUR;
    cfg
}

fn retry_after(r: Result<spangate::identity::Principal, AuthError>) -> Duration {
    match r {
        Err(AuthError::ProviderUnavailable { retry_after }) => retry_after,
        other => panic!("expected provider_unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn identity_unknown_kid_while_the_idp_fails_is_retryable_not_401() {
    for outage in [
        Outage::Unavailable,
        Outage::ServerError,
        Outage::BadJson,
        Outage::Drop,
    ] {
        let idp = idp(DevKeyAlg::Es256).await;
        let id = ready(one("dev", slow_refetch(&idp))).await;
        let old = idp.mint(json!({"sub": "old"}));
        // The IdP rotates, then fails: tokens of the new key cannot be checked.
        idp.rotate_key();
        let new = idp.mint(json!({"sub": "new"}));
        idp.set_outage(outage);
        let before = idp.jwks_fetches();

        let wait = retry_after(id.authenticate(&new).await);
        assert!(
            wait >= Duration::from_secs(1) && wait <= HOUR,
            "{outage:?}: retry_after {wait:?}"
        );
        assert_eq!(
            idp.jwks_fetches(),
            before + 1,
            "{outage:?}: the unknown kid asked the IdP once"
        );
        if outage == Outage::Drop {
            assert!(idp.dropped_connections() >= 1);
        }
        // Within the rate-limit window after the failed fetch: 503 without asking again.
        retry_after(id.authenticate(&new).await);
        let other = idp.mint_with_header(json!({"kid": random_kid()}), json!({}));
        retry_after(id.authenticate(&other).await);
        assert_eq!(
            idp.jwks_fetches(),
            before + 1,
            "{outage:?}: no fetch inside the window"
        );

        let st = &id.status()[0];
        assert_eq!(st.state, "degraded", "{outage:?}: {st:?}");
        assert!(st.last_error.is_some());
        // Tokens of the keys we have still verify.
        assert_eq!(
            id.authenticate(&old).await.expect("old key kept").subject,
            "old"
        );
    }
}

#[tokio::test]
async fn identity_unknown_kid_is_accepted_once_the_idp_answers_again() {
    let idp = idp(DevKeyAlg::Es256).await;
    let mut cfg = provider(&idp);
    // Every unknown kid may refetch: recovery is visible without waiting.
    cfg.unknown_kid_refetch_interval = Duration::ZERO;
    let id = ready(one("dev", cfg)).await;
    idp.rotate_key();
    let new = idp.mint(json!({"sub": "new"}));
    idp.set_outage(Outage::ServerError);
    assert!(is_unavailable(
        &id.authenticate(&new).await.expect_err("IdP failing")
    ));
    idp.set_outage(Outage::None);
    assert_eq!(
        id.authenticate(&new).await.expect("IdP back").subject,
        "new"
    );
    assert_eq!(id.status()[0].state, "ready");
    assert_eq!(id.status()[0].keys, 2);
}

#[tokio::test]
async fn identity_kid_missing_from_a_good_fetch_stays_401_while_the_idp_is_down() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", slow_refetch(&idp))).await;
    let bogus = idp.mint_with_header(json!({"kid": random_kid()}), json!({}));
    let before = idp.jwks_fetches();
    // IdP up: the refetch succeeds and the kid is not there.
    assert_eq!(reason(&id, &bogus).await, "unknown_key");
    assert_eq!(idp.jwks_fetches(), before + 1);

    idp.set_outage(Outage::ServerError);
    // In the negative cache (after a successful fetch): still 401.
    assert_eq!(reason(&id, &bogus).await, "unknown_key");
    // Another unknown kid inside the window after a *successful* fetch: the
    // key set is recent, so 401 too, and the failing IdP is not asked.
    let other = idp.mint_with_header(json!({"kid": random_kid()}), json!({}));
    assert_eq!(reason(&id, &other).await, "unknown_key");
    assert_eq!(idp.jwks_fetches(), before + 1);
}

#[tokio::test]
async fn identity_failed_background_refresh_makes_later_unknown_kids_503() {
    let idp = idp_with(DevIdpOptions {
        jwks_max_age: Some(Duration::ZERO),
        ..Default::default()
    })
    .await;
    let mut cfg = slow_refetch(&idp);
    cfg.jwks_refresh_min = Duration::from_millis(50);
    cfg.jwks_refresh_max = Duration::from_millis(50);
    let id = ready(one("dev", cfg)).await;
    // Use up the on-demand refetch while the IdP is fine.
    let first = idp.mint_with_header(json!({"kid": random_kid()}), json!({}));
    assert_eq!(reason(&id, &first).await, "unknown_key");

    // Now the background refresh fails.
    idp.set_outage(Outage::Unavailable);
    let deadline = tokio::time::Instant::now() + WAIT;
    while id.status()[0].state != "degraded" && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(id.status()[0].state, "degraded");
    // The most recent fetch failed and the on-demand window is closed: a new
    // unknown kid cannot be judged.
    let other = idp.mint_with_header(json!({"kid": random_kid()}), json!({}));
    let wait = retry_after(id.authenticate(&other).await);
    assert!(wait >= Duration::from_secs(1) && wait <= HOUR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_unknown_kid_flood_against_a_failing_idp_costs_one_fetch() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", slow_refetch(&idp))).await;
    idp.set_outage(Outage::ServerError);
    let before = idp.jwks_fetches();
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let id = id.clone();
        let token = idp.mint_with_header(json!({"kid": random_kid()}), json!({"sub": "x"}));
        tasks.push(tokio::spawn(async move { id.authenticate(&token).await }));
    }
    for t in tasks {
        let r = t.await.expect("task");
        assert!(
            matches!(r, Err(AuthError::ProviderUnavailable { .. })),
            "{r:?}"
        );
    }
    assert_eq!(
        idp.jwks_fetches() - before,
        1,
        "500 random kids against a failing IdP: one fetch"
    );
}

#[tokio::test]
async fn identity_unknown_kid_while_the_idp_fails_is_503_with_retry_after_through_the_proxy() {
    let h = common::Harness::start_with(common::Options {
        provider_extra: "    unknown_kid_refetch_interval: 1h\n".into(),
        ..Default::default()
    })
    .await;
    h.idp.rotate_key();
    let token = h.token("edge-prod");
    h.idp.set_outage(Outage::ServerError);
    let resp = h.send_json(Some(&token), "checkout").await;
    assert_eq!(resp.status(), 503);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(h.last_audit()["reason"], "provider_unavailable");
    assert!(h.upstream.received().is_empty(), "nothing forwarded");

    // A random kid inside the window: 503 again, the IdP is not asked.
    let fetches = h.idp.jwks_fetches();
    let bogus = h
        .idp
        .mint_with_header(json!({"kid": random_kid()}), json!({}));
    assert_eq!(h.send_json(Some(&bogus), "checkout").await.status(), 503);
    assert_eq!(h.idp.jwks_fetches(), fetches);
    h.stop().await;
}

#[tokio::test]
async fn identity_unknown_kid_outage_does_not_touch_other_providers() {
    let a = idp(DevKeyAlg::Es256).await;
    let b = identity_support::idp(DevKeyAlg::Rs256).await;
    let mut providers = one("a", slow_refetch(&a));
    providers.insert("b".into(), slow_refetch(&b));
    let id: std::sync::Arc<Identity> = ready(providers).await;
    a.rotate_key();
    a.set_outage(Outage::ServerError);
    assert!(is_unavailable(
        &id.authenticate(&a.mint(json!({})))
            .await
            .expect_err("a failing")
    ));
    assert_eq!(
        id.authenticate(&b.mint(json!({"sub": "b"})))
            .await
            .expect("b fine")
            .provider,
        "b"
    );
}

#[tokio::test]
async fn identity_unknown_kid_while_the_idp_is_gone_is_retryable() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", slow_refetch(&idp))).await;
    let old = idp.mint(json!({"sub": "old"}));
    idp.rotate_key();
    let new = idp.mint(json!({"sub": "new"}));
    // The IdP process is gone: connections are refused.
    drop(idp);
    let wait = retry_after(id.authenticate(&new).await);
    assert!(wait >= Duration::from_secs(1) && wait <= HOUR);
    let st = &id.status()[0];
    assert_eq!(st.state, "degraded", "{st:?}");
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("JWKS fetch"))
    );
    assert_eq!(
        id.authenticate(&old).await.expect("old key kept").subject,
        "old"
    );
}
