//! JWT verification against a real in-process issuer: valid tokens and each
//! rejection with its exact reason code.

use crate::identity_support;

use identity_support::*;
use serde_json::json;
use spangate::dev::idp::{DevIdpOptions, DevKeyAlg};

#[tokio::test]
async fn es256_token_is_accepted_with_its_claims() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", provider(&idp))).await;
    let token = idp.mint(json!({"sub": "alice", "project": "web"}));
    let p = id.authenticate(&token).await.expect("valid token");
    assert_eq!(p.provider, "dev");
    assert_eq!(p.issuer, idp.issuer());
    assert_eq!(p.subject, "alice");
    assert_eq!(p.claims["project"], "web");
    assert!(p.expires_at.is_some_and(|e| e > now()));
    assert_eq!(p.token_fingerprint, spangate::fingerprint(token.as_bytes()));
    assert!(!format!("{p:?}").contains(&token));
    assert!(p.claims_overage.is_empty());
    let st = id.status();
    assert_eq!(st[0].state, "ready");
    assert_eq!(st[0].keys, 1);
    assert_eq!(st[0].algorithms, vec!["ES256".to_string()]);
}

#[tokio::test]
async fn rs256_token_is_accepted() {
    let idp = idp(DevKeyAlg::Rs256).await;
    let id = ready(one("dev", provider(&idp))).await;
    let p = id
        .authenticate(&idp.mint(json!({"sub": "bob"})))
        .await
        .expect("valid token");
    assert_eq!(p.subject, "bob");
}

#[tokio::test]
async fn each_claim_failure_has_its_reason() {
    let idp = idp(DevKeyAlg::Es256).await;
    let mut cfg = provider(&idp);
    cfg.required_claims
        .insert("tenant".into(), json!(["acme", "globex"]));
    let id = ready(one("dev", cfg)).await;
    let t = now();
    let ok = |extra: serde_json::Value| {
        let mut c = json!({"sub": "s", "tenant": "acme"});
        if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        idp.mint(c)
    };
    assert!(id.authenticate(&ok(json!({}))).await.is_ok());
    assert_eq!(reason(&id, "").await, "missing");
    assert_eq!(reason(&id, &ok(json!({"exp": t - 3600}))).await, "expired");
    // Within the default 30 s leeway.
    assert!(id.authenticate(&ok(json!({"exp": t - 5}))).await.is_ok());
    assert_eq!(
        reason(&id, &ok(json!({"nbf": t + 3600}))).await,
        "not_yet_valid"
    );
    assert!(id.authenticate(&ok(json!({"nbf": t + 5}))).await.is_ok());
    assert_eq!(
        reason(&id, &ok(json!({"aud": "someone-else"}))).await,
        "bad_audience"
    );
    assert_eq!(reason(&id, &ok(json!({"aud": null}))).await, "bad_audience");
    assert!(
        id.authenticate(&ok(json!({"aud": ["x", idp.audience()]})))
            .await
            .is_ok()
    );
    assert_eq!(
        reason(&id, &ok(json!({"iss": "https://evil.example.com"}))).await,
        "bad_issuer"
    );
    assert_eq!(reason(&id, &ok(json!({"iss": null}))).await, "bad_issuer");
    // Issuer match is exact: a trailing slash is another issuer.
    assert_eq!(
        reason(&id, &ok(json!({"iss": format!("{}/", idp.issuer())}))).await,
        "bad_issuer"
    );
    assert_eq!(
        reason(&id, &ok(json!({"tenant": "initech"}))).await,
        "bad_claims"
    );
    assert!(
        id.authenticate(&ok(json!({"tenant": ["x", "globex"]})))
            .await
            .is_ok()
    );
    assert_eq!(
        reason(&id, &ok(json!({"tenant": null}))).await,
        "bad_claims"
    );
    assert_eq!(reason(&id, &ok(json!({"exp": null}))).await, "bad_claims");
    assert_eq!(
        reason(&id, &ok(json!({"exp": "tomorrow"}))).await,
        "bad_claims"
    );
}

#[tokio::test]
async fn signature_by_another_key_with_the_same_kid_is_refused() {
    let idp = idp(DevKeyAlg::Es256).await;
    let attacker = idp_with(DevIdpOptions::default()).await;
    let id = ready(one("dev", provider(&idp))).await;
    let forged = attacker.mint_with_header(
        json!({"kid": idp.current_kid()}),
        json!({"iss": idp.issuer(), "aud": idp.audience(), "sub": "admin"}),
    );
    assert_eq!(reason(&id, &forged).await, "bad_signature");
    // A flipped signature byte on a real token.
    let good = idp.mint(json!({"sub": "a"}));
    let (head, sig) = good.rsplit_once('.').expect("jwt");
    let mut sig: Vec<char> = sig.chars().collect();
    sig[5] = if sig[5] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{head}.{}", sig.into_iter().collect::<String>());
    assert_eq!(reason(&id, &tampered).await, "bad_signature");
    // A modified payload under the original signature.
    let parts: Vec<&str> = good.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).expect("b64")).expect("json");
    claims["sub"] = json!("root");
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(reason(&id, &swapped).await, "bad_signature");
}

#[tokio::test]
async fn typ_rules() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", provider(&idp))).await;
    for typ in [
        json!("at+jwt"),
        json!("application/at+jwt"),
        json!("JWT"),
        json!(null),
    ] {
        let t = idp.mint_with_header(json!({"typ": typ}), json!({"sub": "a"}));
        assert!(
            id.authenticate(&t).await.is_ok(),
            "typ {typ} should be accepted"
        );
    }
    for typ in [json!("dpop+jwt"), json!("logout+jwt"), json!(7)] {
        let t = idp.mint_with_header(json!({"typ": typ}), json!({"sub": "a"}));
        assert_eq!(reason(&id, &t).await, "bad_type", "typ {typ}");
    }
    let mut strict = provider(&idp);
    strict.require_typ = Some("at+jwt".into());
    let id = ready(one("dev", strict)).await;
    assert!(
        id.authenticate(&idp.mint(json!({"sub": "a"})))
            .await
            .is_ok()
    );
    for typ in [json!("JWT"), json!(null)] {
        let t = idp.mint_with_header(json!({"typ": typ}), json!({"sub": "a"}));
        assert_eq!(reason(&id, &t).await, "bad_type");
    }
}

#[tokio::test]
async fn entra_groups_overage_is_visible() {
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", provider(&idp))).await;
    let t = idp.mint(json!({
        "sub": "u",
        "_claim_names": {"groups": "src1"},
        "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/u/getMemberObjects"}}
    }));
    let p = id.authenticate(&t).await.expect("valid");
    assert_eq!(p.claims_overage, vec!["groups".to_string()]);
    assert!(p.claims.get("groups").is_none());
}

#[tokio::test]
async fn provider_without_audience_is_refused_at_start() {
    let idp = idp(DevKeyAlg::Es256).await;
    let mut cfg = provider(&idp);
    cfg.audiences.clear();
    let errs = match spangate::identity::Identity::start(&one("dev", cfg), client()) {
        Ok(_) => panic!("accepted a provider without audiences"),
        Err(e) => e,
    };
    assert!(errs.iter().any(|e| e.contains("audiences")), "{errs:?}");
}

#[tokio::test]
async fn discovery_only_advertised_asymmetric_algorithms() {
    // ES256 issuer: an RS256-labelled token is refused even before key lookup.
    let idp = idp(DevKeyAlg::Es256).await;
    let id = ready(one("dev", provider(&idp))).await;
    let t = idp.mint_with_header(json!({"alg": "RS256"}), json!({"sub": "a"}));
    assert_eq!(reason(&id, &t).await, "alg_not_allowed");
    let t = idp.mint_with_header(json!({"alg": "ES384"}), json!({"sub": "a"}));
    assert_eq!(reason(&id, &t).await, "alg_not_allowed");
    assert!(id.authenticate(&idp.mint(json!({}))).await.is_ok());
}

#[tokio::test]
async fn discovery_with_a_path_issuer_and_the_okta_preset() {
    let idp = idp_with(DevIdpOptions {
        issuer_path: "/oauth2/default".into(),
        ..Default::default()
    })
    .await;
    assert!(idp.issuer().ends_with("/oauth2/default"));
    let mut cfg = provider(&idp);
    cfg.preset = Some(spangate::identity::Preset::Okta);
    let id = ready(one("okta", cfg)).await;
    assert!(idp.discovery_fetches() >= 1);
    assert!(
        id.authenticate(&idp.mint(json!({"sub": "a"})))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn discovery_with_a_trailing_slash_issuer_and_the_auth0_preset() {
    let idp = idp_with(DevIdpOptions {
        issuer_path: "/".into(),
        ..Default::default()
    })
    .await;
    assert!(idp.issuer().ends_with('/'));
    // Configured without the slash, as people write it.
    let mut cfg = provider(&idp);
    cfg.issuer = idp.issuer().trim_end_matches('/').to_string();
    cfg.preset = Some(spangate::identity::Preset::Auth0);
    let id = ready(one("auth0", cfg)).await;
    let p = id
        .authenticate(&idp.mint(json!({"sub": "auth0|x"})))
        .await
        .expect("valid");
    assert_eq!(p.issuer, idp.issuer());
}

#[tokio::test]
async fn token_endpoint_serves_named_identities() {
    let idp = idp_with(DevIdpOptions {
        identities: [(
            "edge".to_string(),
            json!({"sub": "edge-fn", "project": "web"}),
        )]
        .into(),
        ..Default::default()
    })
    .await;
    let id = ready(one("dev", provider(&idp))).await;
    let c = client();
    let resp = c
        .get(
            &format!("{}?identity=edge", idp.token_endpoint()),
            std::time::Duration::from_secs(5),
        )
        .await
        .expect("token endpoint");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let p = id
        .authenticate(body["access_token"].as_str().expect("token"))
        .await
        .expect("valid");
    assert_eq!(p.subject, "edge-fn");
    let req = http::Request::post(idp.token_endpoint())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"identity=edge",
        )))
        .expect("req");
    let resp = c
        .send(req, std::time::Duration::from_secs(5), 1 << 16)
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    let resp = c
        .get(
            &format!("{}?identity=nobody", idp.token_endpoint()),
            std::time::Duration::from_secs(5),
        )
        .await
        .expect("token endpoint");
    assert_eq!(resp.status(), 400);
}
