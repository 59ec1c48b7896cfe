//! Periodic re-discovery: a moved `jwks_uri` is picked up without restart; a
//! discovery document with another `issuer` or a plain-http `jwks_uri` is
//! refused (logged, shown in status) and the previous `jwks_uri` kept.

use crate::identity_support;

use std::time::Duration;

use identity_support::*;
use serde_json::json;
use spangate::dev::idp::{DevIdp, DevIdpOptions, DevKeyAlg};
use spangate::identity::{Identity, ProviderConfig, ProviderStatus};

/// Poll the provider's status until `done` holds (bounded by `WAIT`).
async fn until(id: &Identity, what: &str, done: impl Fn(&ProviderStatus) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if done(&id.status()[0]) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}: {:?}", id.status()[0]);
}

/// Wait until the IdP served `n` more discovery documents (so at least one
/// whole re-discovery read the document as it is now).
async fn discoveries(idp: &DevIdp, n: usize) {
    let target = idp.discovery_fetches() + n;
    let deadline = tokio::time::Instant::now() + WAIT;
    while idp.discovery_fetches() < target && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        idp.discovery_fetches() >= target,
        "no re-discovery happened"
    );
}

fn rediscovering(idp: &DevIdp) -> ProviderConfig {
    let mut cfg = provider(idp);
    cfg.rediscovery_interval = Duration::from_millis(100);
    // No on-demand refetch can help: only re-discovery finds the new path.
    cfg.unknown_kid_refetch_interval = Duration::from_secs(3600);
    cfg
}

#[tokio::test]
async fn identity_moved_jwks_is_picked_up_by_periodic_rediscovery() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", rediscovering(&idp))).await;
    assert_eq!(id.status()[0].jwks_uri.as_deref(), Some(&*idp.jwks_uri()));

    // The IdP rotates and moves its JWKS, the old path still serving (overlap):
    // nothing fails, so only the periodic re-discovery can see the move.
    idp.rotate_key();
    idp.move_jwks("/v2/keys", true);
    let new_uri = idp.jwks_uri();
    assert!(new_uri.ends_with("/v2/keys"));
    until(&id, "the new jwks_uri", |s| {
        s.jwks_uri.as_deref() == Some(&*new_uri) && s.keys == 2
    })
    .await;
    assert!(idp.requests_to("/v2/keys") >= 1);
    let st = &id.status()[0];
    assert_eq!(st.state, "ready");
    assert!(st.discovery_error.is_none());
    let p = id
        .authenticate(&idp.mint(json!({"sub": "new-key"})))
        .await
        .expect("token of the new key, from the new JWKS");
    assert_eq!(p.subject, "new-key");
}

#[tokio::test]
async fn identity_moved_jwks_without_overlap_is_found_by_the_retry() {
    let idp = idp_with(DevIdpOptions {
        jwks_max_age: Some(Duration::ZERO),
        ..Default::default()
    })
    .await;
    let mut cfg = rediscovering(&idp);
    // Periodic re-discovery out of the way: the failed JWKS fetch triggers it.
    cfg.rediscovery_interval = Duration::from_secs(3600);
    cfg.jwks_refresh_min = Duration::from_millis(50);
    cfg.jwks_refresh_max = Duration::from_millis(50);
    let id = ready(one("dev", cfg)).await;
    let old_uri = idp.jwks_uri();

    idp.rotate_key();
    idp.move_jwks("/keys-2026", false);
    let new_uri = idp.jwks_uri();
    until(&id, "the moved jwks_uri", |s| {
        s.jwks_uri.as_deref() == Some(&*new_uri) && s.state == "ready" && s.keys == 2
    })
    .await;
    assert_ne!(old_uri, new_uri);
    assert!(
        id.authenticate(&idp.mint(json!({})))
            .await
            .is_ok_and(|p| p.provider == "dev")
    );
}

#[tokio::test]
async fn identity_rediscovery_refuses_another_issuer_and_keeps_the_old_jwks_uri() {
    let (_guard, logs) = capture_logs();
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", rediscovering(&idp))).await;
    let good_uri = idp.jwks_uri();
    let issuer = idp.issuer();
    let evil = format!("{}/evil/jwks", idp.base_url());
    let variants = [
        format!("{issuer}/"),
        issuer.replace("http://", "HTTP://"),
        issuer.replace("127.0.0.1", "localhost"),
        format!("{issuer}/other"),
        String::new(),
    ];
    for wrong in variants {
        idp.set_discovery_patch(json!({"issuer": wrong, "jwks_uri": evil}));
        discoveries(&idp, 2).await;
        until(&id, "the refusal", |s| s.discovery_error.is_some()).await;
        let st = &id.status()[0];
        assert_eq!(st.jwks_uri.as_deref(), Some(&*good_uri), "issuer {wrong:?}");
        assert_eq!(st.state, "ready", "the old keys keep serving");
        assert_eq!(idp.requests_to("/evil/jwks"), 0, "issuer {wrong:?}");
        assert!(
            id.authenticate(&idp.mint(json!({}))).await.is_ok(),
            "issuer {wrong:?}"
        );
    }
    assert!(
        logs.text().contains("keeping the previous jwks_uri"),
        "refusal logged"
    );

    // Back to a good document: the error clears.
    idp.set_discovery_patch(json!({}));
    until(&id, "a good re-discovery", |s| s.discovery_error.is_none()).await;
    assert_eq!(id.status()[0].jwks_uri.as_deref(), Some(&*good_uri));
}

#[tokio::test]
async fn identity_rediscovery_refuses_a_plain_http_jwks_uri() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", rediscovering(&idp))).await;
    let good_uri = idp.jwks_uri();
    // Right issuer, but keys over plain http from a non-loopback host.
    idp.set_discovery_patch(json!({"jwks_uri": "http://keys.example.com/jwks"}));
    until(&id, "the refusal", |s| {
        s.discovery_error
            .as_deref()
            .is_some_and(|e| e.contains("plain http"))
    })
    .await;
    let st = &id.status()[0];
    assert_eq!(st.jwks_uri.as_deref(), Some(&*good_uri));
    assert_eq!(st.state, "ready");
    assert!(id.authenticate(&idp.mint(json!({}))).await.is_ok());
}

#[tokio::test]
async fn identity_explicit_jwks_uri_never_discovers() {
    let idp = idp(DevKeyAlg::Es256).await;
    let mut cfg = rediscovering(&idp);
    cfg.jwks_uri = Some(idp.jwks_uri());
    cfg.algorithms = vec!["ES256".into()];
    cfg.jwks_refresh_min = Duration::from_millis(50);
    cfg.jwks_refresh_max = Duration::from_millis(50);
    let id = ready(one("dev", cfg)).await;
    let fetches = idp.jwks_fetches();
    let deadline = tokio::time::Instant::now() + WAIT;
    while idp.jwks_fetches() < fetches + 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(idp.jwks_fetches() >= fetches + 3, "refreshes ran");
    assert_eq!(idp.discovery_fetches(), 0);
    let st = &id.status()[0];
    assert_eq!(st.jwks_uri.as_deref(), Some(&*idp.jwks_uri()));
    assert!(st.discovery_error.is_none());
}

#[test]
fn identity_rediscovery_interval_is_bounded() {
    let mut cfg = ProviderConfig::new("https://idp.example.com", vec!["a".into()]);
    assert_eq!(cfg.rediscovery_interval, Duration::from_secs(3600));
    assert!(cfg.validate().is_empty());
    for bad in [Duration::ZERO, Duration::from_secs(24 * 3600 + 1)] {
        cfg.rediscovery_interval = bad;
        assert!(
            cfg.validate()
                .iter()
                .any(|e| e.contains("rediscovery_interval")),
            "{bad:?}"
        );
    }
    let yaml = "issuer: https://idp.example.com\naudiences: [a]\nrediscovery_interval: 15m\n";
    let cfg: ProviderConfig = serde_yaml::from_str(yaml).expect("parses");
    assert_eq!(cfg.rediscovery_interval, Duration::from_secs(900));
}
