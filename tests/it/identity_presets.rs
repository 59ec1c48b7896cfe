//! Presets verify tokens shaped like each IdP's: issuer forms and claim shapes.
//! The dev issuer signs with real keys and puts the real IdP's issuer string in
//! the tokens; the provider fetches its JWKS from 127.0.0.1 via `jwks_uri`.

use crate::identity_support;

use std::sync::Arc;

use identity_support::*;
use serde_json::json;
use spangate::dev::idp::{DevIdp, DevIdpOptions, DevKeyAlg};
use spangate::identity::{Identity, Preset, ProviderConfig};

async fn issuer_like(issuer: &str, alg: DevKeyAlg) -> DevIdp {
    idp_with(DevIdpOptions {
        alg,
        issuer_override: Some(issuer.to_string()),
        ..Default::default()
    })
    .await
}

fn preset_cfg(idp: &DevIdp, preset: Preset, issuer: &str, audiences: &[&str]) -> ProviderConfig {
    let mut p = ProviderConfig::new(issuer, audiences.iter().map(|s| s.to_string()).collect());
    p.preset = Some(preset);
    p.jwks_uri = Some(idp.jwks_uri());
    p.retry_initial = std::time::Duration::from_millis(50);
    p.retry_max = std::time::Duration::from_millis(200);
    p
}

async fn start(name: &str, cfg: ProviderConfig) -> Arc<Identity> {
    ready(one(name, cfg)).await
}

#[tokio::test]
async fn okta_custom_authorization_server() {
    let iss = "https://acme.okta.com/oauth2/default";
    let idp = issuer_like(iss, DevKeyAlg::Rs256).await;
    let id = start(
        "okta",
        preset_cfg(&idp, Preset::Okta, iss, &["api://spangate"]),
    )
    .await;
    let t = idp.mint(json!({
        "ver": 1, "aud": "api://spangate", "sub": "alice@acme.com", "uid": "00u1abcd",
        "cid": "0oa1client", "scp": ["traces.write"], "groups": ["platform-admins"],
    }));
    let p = id.authenticate(&t).await.expect("okta token");
    assert_eq!(p.subject, "alice@acme.com");
    assert_eq!(p.claims["scp"], json!(["traces.write"]));
    // Org authorization server tokens (iss without /oauth2/) are refused.
    let org = idp.mint(json!({"iss": "https://acme.okta.com", "aud": "api://spangate"}));
    assert_eq!(reason(&id, &org).await, "bad_issuer");
    // And an org-AS issuer cannot even be configured with the okta preset.
    let errs = Identity::start(
        &one(
            "okta",
            preset_cfg(
                &idp,
                Preset::Okta,
                "https://acme.okta.com",
                &["api://spangate"],
            ),
        ),
        client(),
    )
    .err()
    .expect("org AS refused");
    assert!(
        errs.iter().any(|e| e.contains("org authorization server")),
        "{errs:?}"
    );
}

#[tokio::test]
async fn auth0_trailing_slash_issuer() {
    let idp = issuer_like("https://acme.us.auth0.com/", DevKeyAlg::Rs256).await;
    // Configured without the slash; Auth0 sends it with one.
    let id = start(
        "auth0",
        preset_cfg(
            &idp,
            Preset::Auth0,
            "https://acme.us.auth0.com",
            &["https://api.acme.com"],
        ),
    )
    .await;
    let t = idp.mint(json!({
        "sub": "auth0|abc", "aud": ["https://api.acme.com", "https://acme.us.auth0.com/userinfo"],
        "azp": "client123", "scope": "openid traces:write", "permissions": ["traces:write"],
        "https://acme.com/roles": ["publisher"],
    }));
    let p = id.authenticate(&t).await.expect("auth0 token");
    assert_eq!(p.issuer, "https://acme.us.auth0.com/");
    assert_eq!(p.claims["https://acme.com/roles"], json!(["publisher"]));
    let no_slash =
        idp.mint(json!({"iss": "https://acme.us.auth0.com", "aud": "https://api.acme.com"}));
    assert_eq!(reason(&id, &no_slash).await, "bad_issuer");
}

#[tokio::test]
async fn entra_v1_and_v2_issuers_of_one_tenant() {
    let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let v2 = format!("https://login.microsoftonline.com/{tid}/v2.0");
    let v1 = format!("https://sts.windows.net/{tid}/");
    let idp = issuer_like(&v2, DevKeyAlg::Rs256).await;
    // Configured with the v1 form: both are accepted.
    let id = start(
        "entra",
        preset_cfg(
            &idp,
            Preset::Entra,
            &v1,
            &["api://spangate", "6e74172b-be56-4843-9ff4-e66a39bb12e3"],
        ),
    )
    .await;
    let t2 = idp.mint(json!({
        "aud": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "tid": tid, "oid": "o1", "azp": "app",
        "roles": ["Traces.Publish"], "ver": "2.0", "sub": "s2",
    }));
    assert_eq!(id.authenticate(&t2).await.expect("v2").issuer, v2);
    let t1 = idp.mint(json!({
        "iss": v1, "aud": "api://spangate", "tid": tid, "oid": "o1", "appid": "app", "ver": "1.0",
        "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/x"}},
    }));
    let p1 = id.authenticate(&t1).await.expect("v1");
    assert_eq!(p1.issuer, v1);
    assert_eq!(p1.claims_overage, vec!["groups".to_string()]);
    let other_tenant = idp.mint(json!({"iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/", "aud": "api://spangate"}));
    assert_eq!(reason(&id, &other_tenant).await, "bad_issuer");
    // Entra signs with RS256 only.
    let es = issuer_like(&v2, DevKeyAlg::Es256).await;
    let id2 = start(
        "entra",
        preset_cfg(&es, Preset::Entra, &v2, &["api://spangate"]),
    )
    .await;
    assert_eq!(
        reason(&id2, &es.mint(json!({"aud": "api://spangate"}))).await,
        "alg_not_allowed"
    );
}

#[tokio::test]
async fn vercel_team_and_global_issuers() {
    let claims = json!({
        "aud": "https://vercel.com/acme", "sub": "owner:acme:project:web:environment:production",
        "owner": "acme", "owner_id": "team_abc", "project": "web", "project_id": "prj_123",
        "environment": "production", "scope": "owner:acme:project:web:environment:production",
    });
    for iss in ["https://oidc.vercel.com/acme", "https://oidc.vercel.com"] {
        let idp = issuer_like(iss, DevKeyAlg::Rs256).await;
        let id = start(
            "vercel",
            preset_cfg(&idp, Preset::Vercel, iss, &["https://vercel.com/acme"]),
        )
        .await;
        let p = id
            .authenticate(&idp.mint(claims.clone()))
            .await
            .expect("vercel token");
        assert_eq!(p.issuer, iss);
        assert_eq!(p.claims["owner_id"], "team_abc");
        assert_eq!(p.claims["environment"], "production");
        let other_team = idp.mint(json!({"aud": "https://vercel.com/evil"}));
        assert_eq!(reason(&id, &other_team).await, "bad_audience");
    }
}

#[tokio::test]
async fn cognito_access_tokens_use_client_id() {
    let iss = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123";
    let idp = issuer_like(iss, DevKeyAlg::Rs256).await;
    let mut cfg = preset_cfg(&idp, Preset::Cognito, iss, &["3n4b5urk1ft4fl3mg5e62d9ado"]);
    cfg.require_typ = None;
    let id = start("cognito", cfg).await;
    let access = |extra: serde_json::Value| {
        let mut c = json!({
            "aud": null, "client_id": "3n4b5urk1ft4fl3mg5e62d9ado", "token_use": "access",
            "scope": "spangate/traces.write", "username": "svc", "sub": "aaaa-bbbb",
            "cognito:groups": ["publishers"], "auth_time": now(), "jti": "j1",
        });
        if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        // Cognito access tokens carry no typ header.
        idp.mint_with_header(json!({"typ": null}), c)
    };
    let p = id
        .authenticate(&access(json!({})))
        .await
        .expect("cognito access token");
    assert_eq!(p.claims["cognito:groups"], json!(["publishers"]));
    assert_eq!(
        reason(&id, &access(json!({"token_use": "id"}))).await,
        "bad_claims"
    );
    assert_eq!(
        reason(&id, &access(json!({"client_id": "someone-else"}))).await,
        "bad_audience"
    );
}

#[tokio::test]
async fn keycloak_realm() {
    let iss = "https://sso.example.com/realms/acme";
    let idp = issuer_like(iss, DevKeyAlg::Rs256).await;
    let id = start(
        "keycloak",
        preset_cfg(&idp, Preset::Keycloak, iss, &["spangate"]),
    )
    .await;
    let t = idp.mint_with_header(
        json!({"typ": "JWT"}),
        json!({
            "aud": ["spangate", "account"], "azp": "edge-client", "typ": "Bearer",
            "preferred_username": "svc-edge", "realm_access": {"roles": ["publisher"]},
            "resource_access": {"spangate": {"roles": ["traces"]}}, "scope": "profile email",
        }),
    );
    let p = id.authenticate(&t).await.expect("keycloak token");
    assert_eq!(p.claims["realm_access"]["roles"], json!(["publisher"]));
}

#[tokio::test]
async fn google_both_issuer_spellings() {
    let iss = "https://accounts.google.com";
    let idp = issuer_like(iss, DevKeyAlg::Rs256).await;
    let id = start(
        "google",
        preset_cfg(
            &idp,
            Preset::Google,
            iss,
            &["123.apps.googleusercontent.com"],
        ),
    )
    .await;
    for i in ["https://accounts.google.com", "accounts.google.com"] {
        let t = idp.mint_with_header(
            json!({"typ": "JWT"}),
            json!({"iss": i, "aud": "123.apps.googleusercontent.com", "email": "ci@acme.com",
                   "email_verified": true, "hd": "acme.com", "sub": "1098"}),
        );
        assert_eq!(id.authenticate(&t).await.expect("google token").issuer, i);
    }
}

#[tokio::test]
async fn aws_iam_outbound_federation_nested_claims() {
    let iss = "https://abc123-def456.tokens.sts.global.api.aws";
    let role = "arn:aws:iam::123456789012:role/DataProcessingRole";
    for alg in [DevKeyAlg::Es384, DevKeyAlg::Rs256] {
        let idp = issuer_like(iss, alg).await;
        let id = start(
            "aws",
            preset_cfg(&idp, Preset::AwsIam, iss, &["https://spangate.acme.com"]),
        )
        .await;
        let t = idp.mint_with_header(
            json!({"typ": "JWT"}),
            json!({
                "aud": "https://spangate.acme.com", "sub": role, "jti": "x",
                "https://sts.amazonaws.com/": {
                    "aws_account": "123456789012", "source_region": "us-east-1",
                    "org_id": "o-abc", "principal_id": role,
                    "principal_tags": {"team": "edge"}, "request_tags": {"deployment": "prod"},
                },
            }),
        );
        let p = id.authenticate(&t).await.expect("aws token");
        assert_eq!(p.subject, role);
        assert_eq!(
            p.claims["https://sts.amazonaws.com/"]["aws_account"],
            "123456789012"
        );
        assert_eq!(
            p.claims["https://sts.amazonaws.com/"]["principal_tags"]["team"],
            "edge"
        );
    }
    // ES256 is not an AWS algorithm.
    let idp = issuer_like(iss, DevKeyAlg::Es256).await;
    let id = start(
        "aws",
        preset_cfg(&idp, Preset::AwsIam, iss, &["https://spangate.acme.com"]),
    )
    .await;
    assert_eq!(
        reason(&id, &idp.mint(json!({"aud": "https://spangate.acme.com"}))).await,
        "alg_not_allowed"
    );
}

#[tokio::test]
async fn preset_config_loads_from_yaml() {
    let y = r#"
okta: { issuer: "https://acme.okta.com/oauth2/default", audiences: [api://spangate], preset: okta }
auth0: { issuer: "https://acme.us.auth0.com", audiences: [https://api.acme.com], preset: auth0 }
entra: { issuer: "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0", audiences: [api://spangate], preset: entra }
vercel: { issuer: "https://oidc.vercel.com/acme", audiences: [https://vercel.com/acme], preset: vercel }
cognito: { issuer: "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC", audiences: [abc], preset: cognito }
keycloak: { issuer: "https://sso.example.com/realms/acme", audiences: [spangate], preset: keycloak }
google: { issuer: "https://accounts.google.com", audiences: [x.apps.googleusercontent.com], preset: google }
aws: { issuer: "https://abc.tokens.sts.global.api.aws", audiences: [https://spangate.acme.com], preset: aws-iam }
"#;
    let providers: std::collections::BTreeMap<String, ProviderConfig> =
        serde_yaml::from_str(y).expect("yaml");
    for (name, p) in &providers {
        assert!(p.validate().is_empty(), "{name}: {:?}", p.validate());
    }
    // Starting never contacts the IdPs synchronously.
    let id = Identity::start(&providers, client()).expect("start");
    assert_eq!(id.status().len(), 8);
    id.shutdown();
}
