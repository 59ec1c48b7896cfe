//! Key lifecycle: rotation without restart, IdP down at start, failed refresh
//! keeps the last good keys, unknown-kid floods are bounded, two providers.

use crate::identity_support;

use std::time::Duration;

use identity_support::*;
use serde_json::json;
use spangate::dev::idp::{DevIdpOptions, DevKeyAlg};
use spangate::identity::{AuthError, Identity};

#[tokio::test]
async fn rotation_is_picked_up_without_restart() {
    let idp = idp(DevKeyAlg::Es256).await;
    let mut cfg = provider(&idp);
    // Every unknown kid may refetch (deterministic refresh for the test).
    cfg.unknown_kid_refetch_interval = Duration::ZERO;
    let id = ready(one("dev", cfg)).await;
    let old_kid = idp.current_kid();
    let old = idp.mint(json!({"sub": "old"}));
    assert!(id.authenticate(&old).await.is_ok());

    let new_kid = idp.rotate_key();
    assert_ne!(new_kid, old_kid);
    let new = idp.mint(json!({"sub": "new"}));
    let fetches = idp.jwks_fetches();
    assert_eq!(
        id.authenticate(&new)
            .await
            .expect("new kid accepted")
            .subject,
        "new"
    );
    assert_eq!(
        idp.jwks_fetches(),
        fetches + 1,
        "the unknown kid caused exactly one refetch"
    );
    // Old key still published: an old-kid token minted now is fine.
    assert!(id.authenticate(&old).await.is_ok());

    idp.retire_old_keys();
    // Another unknown kid triggers the refetch that sees the old key gone.
    let probe = idp.mint_with_header(json!({"kid": random_kid()}), json!({}));
    assert_eq!(reason(&id, &probe).await, "unknown_key");
    assert_eq!(reason(&id, &old).await, "unknown_key");
    assert!(id.authenticate(&new).await.is_ok());
    assert_eq!(id.status()[0].keys, 1);
}

#[tokio::test]
async fn background_refresh_drops_retired_keys() {
    let idp = idp_with(DevIdpOptions {
        jwks_max_age: Some(Duration::ZERO),
        ..Default::default()
    })
    .await;
    let mut cfg = provider(&idp);
    cfg.jwks_refresh_min = Duration::from_millis(100);
    cfg.jwks_refresh_max = Duration::from_millis(100);
    let id = ready(one("dev", cfg)).await;
    let old = idp.mint(json!({"sub": "old"}));
    assert!(id.authenticate(&old).await.is_ok());
    idp.rotate_key();
    idp.retire_old_keys();
    // No request triggers anything: only the background refresh can see it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        match id.authenticate(&old).await {
            Err(e) => {
                last = Some(e);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(last, Some(AuthError::UnknownKey));
    assert!(id.authenticate(&idp.mint(json!({}))).await.is_ok());
}

#[tokio::test]
async fn idp_down_at_start_then_up() {
    let idp = idp_with(DevIdpOptions {
        available: false,
        ..Default::default()
    })
    .await;
    let id = Identity::start(&one("dev", provider(&idp)), client())
        .expect("start never waits on the IdP");
    assert!(!id.ready());
    let token = idp.mint(json!({"sub": "a"}));
    match id.authenticate(&token).await {
        Err(AuthError::ProviderUnavailable { retry_after }) => {
            assert!(retry_after >= Duration::from_secs(1));
            assert!(retry_after <= Duration::from_secs(60));
        }
        other => panic!("expected provider_unavailable, got {other:?}"),
    }
    // Wait until the first attempt has failed, then the state says so.
    let deadline = tokio::time::Instant::now() + WAIT;
    while idp.discovery_fetches() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while id.status()[0].state == "starting" && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = &id.status()[0];
    assert_eq!(st.state, "unavailable");
    assert!(
        st.last_error.as_deref().is_some_and(|e| e.contains("503")),
        "{st:?}"
    );

    idp.set_available(true);
    assert!(id.wait_ready(WAIT).await, "{:?}", id.status());
    assert_eq!(
        id.authenticate(&token).await.expect("now accepted").subject,
        "a"
    );
    assert_eq!(id.status()[0].state, "ready");
    assert!(id.status()[0].last_error.is_none());
}

#[tokio::test]
async fn failed_refresh_keeps_the_last_good_keys() {
    let idp = idp(DevKeyAlg::Es256).await;
    let mut cfg = provider(&idp);
    cfg.unknown_kid_refetch_interval = Duration::ZERO;
    let id = ready(one("dev", cfg)).await;
    idp.set_available(false);
    let probe = idp.mint_with_header(json!({"kid": random_kid()}), json!({}));
    // The refetch failed: the kid cannot be judged, so retryable, not 401.
    assert_eq!(reason(&id, &probe).await, "provider_unavailable");
    let st = &id.status()[0];
    assert_eq!(st.state, "degraded");
    assert_eq!(st.keys, 1);
    // A fresh (uncached) token still verifies with the kept keys.
    assert!(
        id.authenticate(&idp.mint(json!({"sub": "b"})))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_costs_the_idp_at_most_one_fetch() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", provider(&idp))).await;
    let before = idp.jwks_fetches();
    for _wave in 0..2 {
        let mut tasks = Vec::new();
        for _ in 0..500 {
            let id = id.clone();
            let token = idp.mint_with_header(json!({"kid": random_kid()}), json!({"sub": "x"}));
            tasks.push(tokio::spawn(async move { id.authenticate(&token).await }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("task"), Err(AuthError::UnknownKey));
        }
    }
    let extra = idp.jwks_fetches() - before;
    assert!(extra <= 1, "{extra} JWKS fetches for 1000 random kids");
    assert_eq!(extra, 1, "the first unknown kid should have refetched once");
    // Good tokens are unaffected.
    assert!(id.authenticate(&idp.mint(json!({}))).await.is_ok());
}

#[tokio::test]
async fn two_providers_routed_by_iss_one_down() {
    let a = idp(DevKeyAlg::Es256).await;
    let b = idp_with(DevIdpOptions {
        alg: DevKeyAlg::Rs256,
        available: false,
        ..Default::default()
    })
    .await;
    let mut providers = one("a", provider(&a));
    providers.insert("b".into(), provider(&b));
    let id = Identity::start(&providers, client()).expect("start");
    assert!(
        !id.wait_ready(Duration::from_millis(300)).await,
        "b is down"
    );

    // a works while b is down.
    let deadline = tokio::time::Instant::now() + WAIT;
    while id.authenticate(&a.mint(json!({}))).await.is_err()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pa = id
        .authenticate(&a.mint(json!({"sub": "from-a"})))
        .await
        .expect("a works");
    assert_eq!(pa.provider, "a");
    let tb = b.mint(json!({"sub": "from-b"}));
    assert!(is_unavailable(
        &id.authenticate(&tb).await.expect_err("b down")
    ));

    // A token of b with a's kid, signed by b: verified only against b's keys.
    b.set_available(true);
    assert!(id.wait_ready(WAIT).await);
    let pb = id.authenticate(&tb).await.expect("b works");
    assert_eq!(pb.provider, "b");
    let cross = b.mint_with_header(json!({"kid": a.current_kid()}), json!({"iss": b.issuer()}));
    assert_eq!(reason(&id, &cross).await, "unknown_key");
    // a's key and kid, b's iss: b allows only RS256, so a's ES256 is refused outright.
    let cross = a.mint_with_header(json!({"kid": a.current_kid()}), json!({"iss": b.issuer()}));
    assert_eq!(reason(&id, &cross).await, "alg_not_allowed");
}
