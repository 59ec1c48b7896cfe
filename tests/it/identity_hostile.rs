//! Hostile tokens: each is refused with its exact reason code.

use crate::identity_support;

use base64::Engine;
use identity_support::*;
use serde_json::json;
use spangate::dev::idp::DevKeyAlg;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn raw(header: serde_json::Value, claims: serde_json::Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string()),
        B64.encode(sig)
    )
}

#[tokio::test]
async fn alg_none_and_symmetric_algorithms_are_never_accepted() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", provider(&idp))).await;
    let claims =
        json!({"iss": idp.issuer(), "aud": idp.audience(), "exp": now() + 600, "sub": "root"});
    for alg in ["none", "None", "NONE", "HS256", "HS512", "foo"] {
        let t = idp.mint_with_header(json!({"alg": alg}), claims.clone());
        assert_eq!(reason(&id, &t).await, "alg_not_allowed", "alg {alg}");
        let t = raw(
            json!({"alg": alg, "kid": idp.current_kid()}),
            claims.clone(),
            b"",
        );
        assert_eq!(
            reason(&id, &t).await,
            "alg_not_allowed",
            "alg {alg} unsigned"
        );
    }
    // Algorithm confusion: HMAC keyed with the public key, in several encodings.
    let jwk = idp.current_public_jwk();
    let x = B64.decode(jwk["x"].as_str().expect("x")).expect("b64");
    for secret in [jwk.to_string().into_bytes(), x] {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(idp.current_kid());
        let t = jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .expect("hs256");
        assert_eq!(reason(&id, &t).await, "alg_not_allowed");
    }
    assert_eq!(
        id.signature_verifications(),
        0,
        "no signature work for refused algorithms"
    );
}

#[tokio::test]
async fn header_key_sources_are_never_trusted() {
    let idp = idp(DevKeyAlg::Es256).await;
    let attacker = identity_support::idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", provider(&idp))).await;
    let claims = json!({"iss": idp.issuer(), "aud": idp.audience(), "sub": "admin"});

    // jku / x5u pointing at the attacker's keys, with the attacker's kid.
    for field in ["jku", "x5u"] {
        let t = attacker.mint_with_header(json!({field: attacker.jwks_uri()}), claims.clone());
        assert_eq!(reason(&id, &t).await, "unknown_key", "{field}");
    }
    assert_eq!(
        attacker.jwks_fetches(),
        0,
        "the attacker's URL was never fetched"
    );

    // Embedded jwk: with the victim's kid the signature fails; with its own kid the key is unknown.
    let t = attacker.mint_with_header(
        json!({"jwk": attacker.current_public_jwk(), "kid": idp.current_kid()}),
        claims.clone(),
    );
    assert_eq!(reason(&id, &t).await, "bad_signature");
    let t = attacker.mint_with_header(
        json!({"jwk": attacker.current_public_jwk()}),
        claims.clone(),
    );
    assert_eq!(reason(&id, &t).await, "unknown_key");

    // x5c with a (bogus) certificate chain.
    let t = attacker.mint_with_header(
        json!({"x5c": [base64::engine::general_purpose::STANDARD.encode(b"not a cert")], "kid": idp.current_kid()}),
        claims.clone(),
    );
    assert_eq!(reason(&id, &t).await, "bad_signature");
}

#[tokio::test]
async fn unknown_crit_is_rejected() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", provider(&idp))).await;
    for crit in [
        json!(["exp"]),
        json!(["b64"]),
        json!(["https://example.com/x"]),
        json!([]),
    ] {
        let t = idp.mint_with_header(json!({"crit": crit, "b64": false}), json!({}));
        assert_eq!(reason(&id, &t).await, "unsupported_crit", "crit {crit}");
    }
}

#[tokio::test]
async fn oversize_and_garbage() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", provider(&idp))).await;
    let big = idp.mint(json!({"pad": "x".repeat(20 * 1024)}));
    assert_eq!(reason(&id, &big).await, "too_large");
    assert_eq!(reason(&id, &"A".repeat(1 << 20)).await, "too_large");
    let h = B64.encode(r#"{"alg":"ES256"}"#);
    let p = B64.encode(format!(r#"{{"iss":"{}"}}"#, idp.issuer()));
    for g in [
        "garbage".to_string(),
        "a.b.c".to_string(),
        "....".to_string(),
        "ey.ey.ey.ey.ey".to_string(),
        format!("{}.{p}.AAAA", B64.encode("not json")),
        format!("{h}.{}.AAAA", B64.encode("not json")),
        format!("{h}.{}.AAAA", B64.encode("[1,2]")),
        format!("{}.{p}.AAAA", B64.encode(r#"{"alg":7}"#)),
        format!("{}.{p}.AAAA", B64.encode(r#"{"alg":"ES256","kid":5}"#)),
        "héllo.wörld.x".to_string(),
        "Bearer abc".to_string(),
    ] {
        assert_eq!(reason(&id, &g).await, "malformed", "{g:.40}");
    }
    assert_eq!(id.signature_verifications(), 0);
}

#[tokio::test]
async fn keys_are_bound_to_their_issuer() {
    let a = idp(DevKeyAlg::Es256).await;
    let b = identity_support::idp(DevKeyAlg::Es256).await;
    let mut providers = one("a", provider(&a));
    providers.insert("b".into(), provider(&b));
    let id = ready(providers).await;
    // b's key and kid, a's issuer: a does not know b's kid.
    let t = b.mint_with_header(json!({}), json!({"iss": a.issuer(), "aud": a.audience()}));
    assert_eq!(reason(&id, &t).await, "unknown_key");
    // b's key with a's kid: a's key does not verify it.
    let t = b.mint_with_header(
        json!({"kid": a.current_kid()}),
        json!({"iss": a.issuer(), "aud": a.audience()}),
    );
    assert_eq!(reason(&id, &t).await, "bad_signature");
    // A very long kid is refused without a fetch.
    let before = a.jwks_fetches();
    let t = a.mint_with_header(json!({"kid": "k".repeat(2000)}), json!({}));
    assert_eq!(reason(&id, &t).await, "unknown_key");
    assert_eq!(a.jwks_fetches(), before);
}
