//! EdDSA (Ed25519, RFC 8037) end to end, and PS256: real keys from the dev
//! issuer, algorithms from discovery, and the same refusals as the others.

use crate::common;
use crate::identity_support;

use base64::Engine;
use identity_support::*;
use serde_json::json;
use spangate::dev::idp::{DevIdp, DevIdpOptions, DevKeyAlg};
use spangate::dev::upstream::RecordingUpstream;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Replace the signature segment of a compact JWS.
fn with_signature(token: &str, sig: &[u8]) -> String {
    let (input, _) = token.rsplit_once('.').expect("three segments");
    format!("{input}.{}", B64.encode(sig))
}

#[tokio::test]
async fn identity_eddsa_token_verifies_with_algorithms_from_discovery() {
    let idp = idp(DevKeyAlg::EdDsa).await;
    assert_eq!(idp.current_public_jwk()["kty"], "OKP");
    assert_eq!(idp.current_public_jwk()["crv"], "Ed25519");
    let id = ready(one("dev", provider(&idp))).await;
    assert_eq!(id.status()[0].algorithms, vec!["EdDSA".to_string()]);
    let t = idp.mint(json!({"sub": "edge"}));
    let before = id.signature_verifications();
    let p = id.authenticate(&t).await.expect("EdDSA token verifies");
    assert_eq!(p.subject, "edge");
    assert_eq!(id.signature_verifications(), before + 1);
}

#[tokio::test]
async fn identity_eddsa_is_refused_when_the_provider_excludes_it() {
    let idp = idp(DevKeyAlg::EdDsa).await;
    let mut cfg = provider(&idp);
    cfg.algorithms = vec!["ES256".into(), "RS256".into()];
    let id = ready(one("dev", cfg)).await;
    let t = idp.mint(json!({"sub": "edge"}));
    assert_eq!(reason(&id, &t).await, "alg_not_allowed");
    assert_eq!(id.signature_verifications(), 0);
}

#[tokio::test]
async fn identity_eddsa_forgeries_are_refused() {
    let idp = idp(DevKeyAlg::EdDsa).await;
    let id = ready(one("dev", provider(&idp))).await;
    let good = idp.mint(json!({"sub": "edge"}));
    // All-zero signature, a flipped bit, a truncated one, one too long.
    let sig = B64
        .decode(good.rsplit_once('.').expect("jws").1)
        .expect("b64");
    assert_eq!(sig.len(), 64);
    let mut flipped = sig.clone();
    flipped[10] ^= 1;
    let mut long = sig.clone();
    long.push(0);
    for bad in [vec![0u8; 64], flipped, sig[..63].to_vec(), long] {
        assert_eq!(
            reason(&id, &with_signature(&good, &bad)).await,
            "bad_signature"
        );
    }
    // An ES256 key cannot be used for EdDSA and vice versa, whatever the header says.
    let es = identity_support::idp(DevKeyAlg::Es256).await;
    let t = es.mint_with_header(
        json!({"alg": "EdDSA", "kid": idp.current_kid()}),
        json!({"iss": idp.issuer(), "aud": idp.audience()}),
    );
    assert_eq!(reason(&id, &t).await, "bad_signature");
    let t = idp.mint_with_header(json!({"alg": "ES256"}), json!({}));
    assert_eq!(reason(&id, &t).await, "alg_not_allowed");
    assert!(id.authenticate(&good).await.is_ok());
}

#[tokio::test]
async fn identity_ps256_token_verifies_and_rs256_is_not_its_alias() {
    let idp = idp(DevKeyAlg::Ps256).await;
    let id = ready(one("dev", provider(&idp))).await;
    assert!(id.authenticate(&idp.mint(json!({}))).await.is_ok());
    // The PSS signature under an RS256 header: the JWK says PS256.
    let t = idp.mint_with_header(json!({"alg": "RS256"}), json!({}));
    assert_eq!(reason(&id, &t).await, "alg_not_allowed");
}

#[tokio::test]
async fn identity_eddsa_through_the_whole_proxy() {
    let idp = DevIdp::start(DevIdpOptions {
        alg: DevKeyAlg::EdDsa,
        audience: common::AUDIENCE.to_string(),
        identities: common::demo_identities(),
        ..Default::default()
    })
    .await
    .expect("dev idp");
    let upstream = RecordingUpstream::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("upstream");
    let h = common::Harness::start_app(common::Options::default(), idp, upstream)
        .await
        .expect("harness");
    let token = h.token("edge-prod");
    let header: serde_json::Value = serde_json::from_slice(
        &B64.decode(token.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(header["alg"], "EdDSA");
    let resp = h.send_json(Some(&token), "checkout").await;
    assert_eq!(resp.status(), 200, "{:?}", h.last_audit());
    assert_eq!(h.upstream.received().len(), 1);
    assert_eq!(h.last_audit()["decision"], "allow");

    // A forged EdDSA token is refused with its reason and nothing is forwarded.
    let forged = with_signature(&token, &[0u8; 64]);
    let resp = h.send_json(Some(&forged), "checkout").await;
    assert_eq!(resp.status(), 401);
    assert_eq!(h.last_audit()["reason"], "bad_signature");
    assert_eq!(h.upstream.received().len(), 1);
    h.stop().await;
}
