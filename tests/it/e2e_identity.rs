//! End-to-end: identity lifecycle seen through the proxy — an IdP that is
//! down at start, and an IdP that rotates its signing key while we serve.

use crate::common;

use std::time::{Duration, Instant};

use common::{Harness, Options};

const FAST_RETRY: &str =
    "    retry_initial: 50ms\n    retry_max: 200ms\n    unknown_kid_refetch_interval: 100ms\n";

#[tokio::test]
async fn idp_down_at_start_gives_retryable_503_then_recovers_without_restart() {
    let h = Harness::start_with(Options {
        idp_down: true,
        provider_extra: FAST_RETRY.into(),
        ..Default::default()
    })
    .await;
    // spangate started while the IdP is down; its tokens get a retryable 503.
    let token = h.token("edge-prod");
    let resp = h.send_json(Some(&token), "checkout").await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(h.last_audit()["reason"], "provider_unavailable");
    let ready = h
        .client
        .get(&h.url("/readyz"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready while no provider has keys");
    assert!(h.upstream.received().is_empty());

    // The IdP comes back: the background retry picks it up, no restart.
    h.idp.set_available(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = 0;
    while Instant::now() < deadline {
        status = h
            .send_json(Some(&token), "checkout")
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "recovered after the IdP came back");
    let ready = h
        .client
        .get(&h.url("/readyz"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn idp_key_rotation_is_picked_up_while_serving() {
    let h = Harness::start_with(Options {
        provider_extra: FAST_RETRY.into(),
        ..Default::default()
    })
    .await;
    let old = h.token("edge-prod");
    assert_eq!(h.send_json(Some(&old), "checkout").await.status(), 200);
    // New key: a token with an unknown kid triggers one (rate-limited) refetch.
    h.idp.rotate_key();
    let new = h.token("edge-prod");
    assert_eq!(h.send_json(Some(&new), "checkout").await.status(), 200);
    // The old key is still published: old tokens still work.
    assert_eq!(h.send_json(Some(&old), "checkout").await.status(), 200);
    h.stop().await;
}
