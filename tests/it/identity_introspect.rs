//! RFC 7662 introspection of opaque tokens against the dev issuer's endpoint.

use crate::identity_support;

use std::io::Write;

use identity_support::*;
use serde_json::json;
use spangate::dev::idp::{DevIdp, DevIdpOptions};
use spangate::identity::{AuthError, Identity, IntrospectionConfig};
use spangate::secrets::SecretSource;

async fn setup(secret_given: &str) -> (DevIdp, std::sync::Arc<Identity>, tempfile::NamedTempFile) {
    let idp = idp_with(DevIdpOptions {
        introspection_client: Some(("spangate".into(), "s3cret/+&".into())),
        ..Default::default()
    })
    .await;
    let mut f = tempfile::NamedTempFile::new().expect("tmp");
    writeln!(f, "{secret_given}").expect("write");
    let mut cfg = provider(&idp);
    cfg.introspection = Some(IntrospectionConfig {
        endpoint: idp.introspection_endpoint(),
        client_id: "spangate".into(),
        client_secret: SecretSource::File(f.path().to_path_buf()),
        cache_ttl: std::time::Duration::from_secs(60),
    });
    let id = ready(one("dev", cfg)).await;
    (idp, id, f)
}

#[tokio::test]
async fn active_token_is_accepted_and_cached() {
    let (idp, id, _f) = setup("s3cret/+&").await;
    let t = idp.mint_opaque(json!({"sub": "svc-1", "client_id": "edge", "scope": "traces.write"}));
    let p = id.authenticate(&t).await.expect("active");
    assert_eq!(p.subject, "svc-1");
    assert_eq!(p.claims["scope"], "traces.write");
    assert_eq!(p.issuer, idp.issuer());
    assert_eq!(idp.introspections(), 1);
    assert_eq!(id.authenticate(&t).await.expect("cached"), p);
    assert_eq!(idp.introspections(), 1, "second use served from cache");
    // JWTs of the same provider still verify locally.
    assert!(id.authenticate(&idp.mint(json!({}))).await.is_ok());
    assert_eq!(idp.introspections(), 1);
}

#[tokio::test]
async fn inactive_tokens() {
    let (idp, id, _f) = setup("s3cret/+&").await;
    assert_eq!(
        reason(&id, "opq_never_issued").await,
        "introspection_inactive"
    );
    assert_eq!(
        reason(&id, "opq_never_issued").await,
        "introspection_inactive"
    );
    assert_eq!(idp.introspections(), 1, "inactive answers are cached too");
    let revoked = idp.mint_opaque(json!({"sub": "x"}));
    idp.revoke(&revoked);
    assert_eq!(reason(&id, &revoked).await, "introspection_inactive");
    let expired = idp.mint_opaque(json!({"exp": now() - 10}));
    assert_eq!(reason(&id, &expired).await, "introspection_inactive");
    let wrong_aud = idp.mint_opaque(json!({"aud": "other"}));
    assert_eq!(reason(&id, &wrong_aud).await, "bad_audience");
}

#[tokio::test]
async fn client_authentication_is_checked() {
    let (idp, id, _f) = setup("wrong-secret").await;
    let t = idp.mint_opaque(json!({"sub": "svc"}));
    let err = id
        .authenticate(&t)
        .await
        .expect_err("our client auth is refused");
    assert!(
        matches!(err, AuthError::ProviderUnavailable { .. }),
        "{err:?}"
    );
    assert_eq!(idp.introspections(), 1);
    assert!(!format!("{err:?}").contains("wrong-secret"));
}

#[tokio::test]
async fn opaque_tokens_need_introspection_on_exactly_one_provider() {
    let idp = identity_support::idp(Default::default()).await;
    // No introspection: an opaque token is malformed.
    let id = ready(one("dev", provider(&idp))).await;
    assert_eq!(reason(&id, &idp.mint_opaque(json!({}))).await, "malformed");
    // Two providers with introspection are refused.
    let other = identity_support::idp(Default::default()).await;
    let intro = |i: &DevIdp| IntrospectionConfig {
        endpoint: i.introspection_endpoint(),
        client_id: "c".into(),
        client_secret: SecretSource::Env("PATH".into()),
        cache_ttl: std::time::Duration::from_secs(1),
    };
    let mut a = provider(&idp);
    a.introspection = Some(intro(&idp));
    let mut b = provider(&other);
    b.introspection = Some(intro(&other));
    let mut providers = one("a", a);
    providers.insert("b".into(), b);
    let errs = Identity::start(&providers, client())
        .err()
        .expect("refused");
    assert!(errs.iter().any(|e| e.contains("introspection")), "{errs:?}");
    // A missing secret source is refused at start, without its value anywhere.
    let mut c = provider(&idp);
    c.introspection = Some(IntrospectionConfig {
        client_secret: SecretSource::Env("SPANGATE_TEST_SURELY_UNSET_VAR".into()),
        ..intro(&idp)
    });
    let errs = Identity::start(&one("c", c), client())
        .err()
        .expect("refused");
    assert!(
        errs.iter()
            .any(|e| e.contains("SPANGATE_TEST_SURELY_UNSET_VAR")),
        "{errs:?}"
    );
}
