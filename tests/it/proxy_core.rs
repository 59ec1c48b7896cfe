//! End-to-end: the whole app on port 0, the dev IdP and a recording upstream.
//! Issue 2's request path: authenticate, route, authorize, inject, forward.

use crate::common;

use std::time::Duration;

use common::{Harness, LIGHTSTEP_TOKEN, Options};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn allowed_batch_is_forwarded_with_injected_token_and_without_client_credentials() {
    let h = Harness::start().await;
    let token = h.token("edge-prod");
    let body = spangate::dev::sample_batch_json("checkout", 3);
    let resp = h
        .post(
            "/v1/traces",
            Some(&token),
            "application/json",
            body,
            &[
                ("Lightstep-Access-Token", "client-smuggled"),
                ("cookie", "a=b"),
                ("x-api-key", "k"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200, "body: {:?}", resp.body());
    assert_eq!(resp.headers()["content-type"], "application/json");
    let got = h.upstream.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/traces/otlp/v0.9");
    assert_eq!(r.header("lightstep-access-token"), Some(LIGHTSTEP_TOKEN));
    assert_eq!(
        r.headers.get_all("lightstep-access-token").iter().count(),
        1
    );
    assert!(r.header("authorization").is_none());
    assert!(r.header("cookie").is_none());
    assert!(r.header("x-api-key").is_none());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let sent: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        sent["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let line = h.last_audit();
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["provider"], "dev");
    assert_eq!(line["endpoint"], "traces");
    assert_eq!(line["status"], 200);
    assert_eq!(line["upstream_status"], 200);
    assert_eq!(line["spans"], 3);
    assert!(line["rule"].as_str().unwrap().contains("binding"), "{line}");
    // The token and the injected secret never reach the audit log.
    let text = h.audit.text();
    assert!(!text.contains(&token));
    assert!(!text.contains(LIGHTSTEP_TOKEN));
    h.stop().await;
}

#[tokio::test]
async fn protobuf_batch_round_trips() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let h = Harness::start().await;
    let json = spangate::dev::sample_batch_json("checkout", 2);
    let req: ExportTraceServiceRequest = serde_json::from_str(&json).unwrap();
    let resp = h
        .post(
            "/v1/traces",
            Some(&h.token("edge-prod")),
            "application/x-protobuf",
            req.encode_to_vec(),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let got = h.upstream.received();
    assert_eq!(got.len(), 1);
    let sent = ExportTraceServiceRequest::decode(&got[0].body[..]).unwrap();
    assert_eq!(sent.resource_spans[0].scope_spans[0].spans.len(), 2);
    h.stop().await;
}

/// Every bad token is a 401 with `WWW-Authenticate`, its own reason code in
/// the audit line, and nothing upstream.
#[tokio::test]
async fn bad_tokens_are_401_with_reason_and_nothing_forwarded() {
    let h = Harness::start().await;
    let good = h.token("edge-prod");
    let header = jsonwebtoken::decode_header(&good).unwrap();
    let kid = header.kid.clone().unwrap();
    let base = common::demo_identities().remove("edge-prod").unwrap();
    let with = |extra: Value| {
        let mut c = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    // A different key that claims the IdP's kid: a forged signature.
    let rogue = {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        EncodingKey::from_ec_der(pkcs8.as_ref())
    };
    let mut forged_header = Header::new(Algorithm::ES256);
    forged_header.kid = Some(kid.clone());
    let issued = with(
        json!({"iss": h.idp.issuer(), "aud": common::AUDIENCE, "exp": now() + 600, "iat": now()}),
    );
    let forged = jsonwebtoken::encode(&forged_header, &issued, &rogue).unwrap();
    // HS256 keyed with the IdP's public JWK material (algorithm confusion).
    let jwks: Value = {
        let resp = h
            .client
            .get(
                &format!("{}/.well-known/jwks.json", h.idp.issuer()),
                Duration::from_secs(5),
            )
            .await;
        match resp {
            Ok(r) if r.status() == 200 => serde_json::from_slice(r.body()).unwrap(),
            _ => {
                let d = h
                    .client
                    .get(
                        &format!("{}/.well-known/openid-configuration", h.idp.issuer()),
                        Duration::from_secs(5),
                    )
                    .await
                    .unwrap();
                let d: Value = serde_json::from_slice(d.body()).unwrap();
                let r = h
                    .client
                    .get(d["jwks_uri"].as_str().unwrap(), Duration::from_secs(5))
                    .await
                    .unwrap();
                serde_json::from_slice(r.body()).unwrap()
            }
        }
    };
    let public_material = jwks["keys"][0].to_string();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let confused = jsonwebtoken::encode(
        &hs_header,
        &issued,
        &EncodingKey::from_secret(public_material.as_bytes()),
    )
    .unwrap();
    // alg "none": header and payload only.
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(&issued)
    );

    let cases: Vec<(&str, Option<String>, &[&str])> = vec![
        ("missing", None, &["missing"]),
        ("garbage", Some("not.a.jwt".into()), &["malformed"]),
        (
            "expired",
            Some(
                h.idp
                    .mint(with(json!({"exp": now() - 3600, "iat": now() - 7200}))),
            ),
            &["expired"],
        ),
        (
            "not yet valid",
            Some(h.idp.mint(with(json!({"nbf": now() + 3600})))),
            &["not_yet_valid"],
        ),
        (
            "wrong audience",
            Some(h.idp.mint(with(json!({"aud": "someone-else"})))),
            &["bad_audience"],
        ),
        (
            "wrong issuer",
            Some(h.idp.mint(with(json!({"iss": "https://evil.example.com"})))),
            &["bad_issuer"],
        ),
        ("bad signature", Some(forged), &["bad_signature"]),
        ("alg none", Some(none), &["alg_not_allowed", "malformed"]),
        (
            "HS256 with public key",
            Some(confused),
            &["alg_not_allowed"],
        ),
    ];
    for (name, token, reasons) in cases {
        let resp = h.send_json(token.as_deref(), "checkout").await;
        assert_eq!(resp.status(), 401, "{name}");
        let www = resp.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            www.starts_with("Bearer") && www.contains("error=\"invalid_token\""),
            "{name}: {www}"
        );
        let line = h.last_audit();
        assert_eq!(line["status"], 401, "{name}");
        assert_eq!(line["decision"], "deny", "{name}");
        let reason = line["reason"].as_str().unwrap();
        assert!(
            reasons.contains(&reason),
            "{name}: reason {reason}, want one of {reasons:?}"
        );
        if let Some(t) = &token {
            assert!(
                !h.audit.text().contains(t.as_str()),
                "{name}: token leaked into audit"
            );
            assert!(!String::from_utf8_lossy(resp.body()).contains(t.as_str()));
        }
    }
    assert!(
        h.upstream.received().is_empty(),
        "nothing may reach upstream"
    );
    h.stop().await;
}

#[tokio::test]
async fn policy_deny_is_403_and_explicit_deny_beats_allow() {
    let h = Harness::start().await;
    // edge-dev: environment "development" matches no binding → default deny.
    let resp = h.send_json(Some(&h.token("edge-dev")), "checkout").await;
    assert_eq!(resp.status(), 403);
    let line = h.last_audit();
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["status"], 403);
    assert!(line["rule"].is_string(), "{line}");
    // contractor: would match the production binding, but the deny rule wins.
    let resp = h.send_json(Some(&h.token("contractor")), "checkout").await;
    assert_eq!(resp.status(), 403);
    let line = h.last_audit();
    assert!(line["rule"].as_str().unwrap().contains("deny"), "{line}");
    assert!(h.upstream.received().is_empty());
    h.stop().await;
}

const GLOB_POLICY: &str = r#"
endpoints:
  traces: { path: /v1/traces, upstream: lightstep }
roles:
  publisher:
    publish:
      endpoints: [traces]
      services: ["${claims.project}", "${claims.project}-*"]
bindings:
  - name: team-groups
    role: publisher
    subjects:
      - provider: dev
        claims: { groups: "team-*", environment: [production, preview] }
    credential: lightstep-prod
"#;

#[tokio::test]
async fn glob_and_array_claims_match() {
    let h = Harness::start_with(Options {
        policies: Some(vec![("p.yaml", GLOB_POLICY.to_string())]),
        ..Default::default()
    })
    .await;
    let ok = h.token_with(json!({"groups": ["eng", "team-payments"]}));
    assert_eq!(h.send_json(Some(&ok), "checkout").await.status(), 200);
    let ok_preview = h.token_with(json!({"groups": ["team-x"], "environment": "preview"}));
    assert_eq!(
        h.send_json(Some(&ok_preview), "checkout-worker")
            .await
            .status(),
        200
    );
    let no_group = h.token_with(json!({"groups": ["eng", "ops"]}));
    assert_eq!(h.send_json(Some(&no_group), "checkout").await.status(), 403);
    let no_claim = h.token("edge-prod");
    assert_eq!(h.send_json(Some(&no_claim), "checkout").await.status(), 403);
    let wrong_env = h.token_with(json!({"groups": ["team-x"], "environment": "development"}));
    assert_eq!(
        h.send_json(Some(&wrong_env), "checkout").await.status(),
        403
    );
    assert_eq!(h.upstream.received().len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn unknown_path_is_404_and_oversize_is_413() {
    let h = Harness::start().await;
    let token = h.token("edge-prod");
    let resp = h
        .post("/v1/metrics", Some(&token), "application/json", "{}", &[])
        .await;
    assert_eq!(resp.status(), 404);
    // max_body is 64KiB in the harness.
    let big = spangate::dev::sample_batch_json("checkout", 600);
    assert!(big.len() > 64 * 1024);
    let resp = h
        .post("/v1/traces", Some(&token), "application/json", big, &[])
        .await;
    assert_eq!(resp.status(), 413);
    assert_eq!(h.last_audit()["reason"], "body_too_large");
    let resp = h
        .post("/v1/traces", Some(&token), "text/plain", "hello", &[])
        .await;
    assert_eq!(resp.status(), 415);
    assert!(h.upstream.received().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn error_bodies_are_otlp_status_in_the_request_encoding() {
    use prost::Message;
    let h = Harness::start().await;
    let resp = h.send_json(None, "checkout").await;
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(v["code"], 16);
    assert!(v["message"].as_str().unwrap().contains("token"));
    let resp = h
        .post(
            "/v1/traces",
            None,
            "application/x-protobuf",
            Vec::<u8>::new(),
            &[],
        )
        .await;
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    #[derive(prost::Message)]
    struct Status {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let st = Status::decode(&resp.body()[..]).unwrap();
    assert_eq!(st.code, 16);
    h.stop().await;
}

#[tokio::test]
async fn invalid_policy_stops_startup_with_file_and_line() {
    let broken = "endpoints:\n  traces: { path: /v1/traces, upstream: lightstep }\nroles:\n  r:\n    publish: { endpoints: [traces], services: [\"x\"] }\nbindings:\n  - role: no-such-role\n    subjects: [{ provider: dev, claims: { sub: alice } }]\n    credential: lightstep-prod\n";
    let err = match Harness::try_start(Options {
        policies: Some(vec![("broken.yaml", broken.to_string())]),
        ..Default::default()
    })
    .await
    {
        Ok(_) => panic!("start-up must refuse an invalid policy"),
        Err(e) => e,
    };
    assert!(err.contains("broken.yaml:7:"), "{err}");
    assert!(err.contains("no-such-role"), "{err}");
}

#[tokio::test]
async fn upstream_down_is_502_and_hanging_is_504() {
    let h = Harness::start_with(Options {
        upstream_down: true,
        ..Default::default()
    })
    .await;
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 502);
    assert!(resp.headers().contains_key("retry-after"));
    let line = h.last_audit();
    assert_eq!(line["reason"], "upstream_unavailable");
    assert_eq!(line["upstream_attempts"], 3);
    h.stop().await;

    let h = Harness::start_with(Options {
        upstream_timeout: "300ms",
        ..Default::default()
    })
    .await;
    h.upstream
        .set_behavior(spangate::dev::upstream::Behavior::Hang);
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 504);
    assert_eq!(h.last_audit()["reason"], "upstream_timeout");
    h.stop().await;
}

#[tokio::test]
async fn retryable_upstream_status_is_retried_then_passed_through() {
    let h = Harness::start().await;
    h.upstream
        .set_behavior(spangate::dev::upstream::Behavior::Status(503));
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(h.upstream.received().len(), 3, "three attempts");
    h.upstream
        .set_behavior(spangate::dev::upstream::Behavior::Status(400));
    h.upstream.clear();
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(resp.status(), 400);
    assert_eq!(h.upstream.received().len(), 1, "400 is not retried");
    h.stop().await;
}

#[tokio::test]
async fn upstream_refusing_the_credential_is_a_502_not_a_401() {
    let h = Harness::start().await;
    h.upstream
        .accept_only("lightstep-access-token", Some(&["some-other-token"]));
    let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
    assert_eq!(
        resp.status(),
        502,
        "the client's token was fine; exporters must keep the data"
    );
    assert_eq!(h.last_audit()["reason"], "upstream_auth_failed");
    h.stop().await;
}
