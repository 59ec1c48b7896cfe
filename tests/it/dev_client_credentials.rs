//! The dev issuer's `client_credentials` grant, driven by exactly the
//! request the OpenTelemetry Collector's `oauth2client` extension sends
//! (Go's `golang.org/x/oauth2/clientcredentials`: HTTP Basic with the id and
//! secret form-encoded, a form body with `grant_type`, `scope` joined by
//! spaces and the `endpoint_params`, keys sorted; on a refused Basic attempt
//! it retries with `client_id`/`client_secret` in the body), and the token
//! it gets is accepted by the proxy.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use spangate::audit::{Audit, MemorySink};
use spangate::client::{HttpClient, OutBody};
use spangate::dev::{DEV_CLIENT_SECRET, DevArgs};

async fn post(
    client: &HttpClient,
    url: &str,
    basic: Option<(&str, &str)>,
    body: &str,
) -> (u16, serde_json::Value, http::HeaderMap) {
    let mut req = http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    if let Some((id, secret)) = basic {
        // x/oauth2: url.QueryEscape(id) + ":" + url.QueryEscape(secret).
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let raw = format!("{}:{}", enc(id), enc(secret));
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        req = req.header("authorization", format!("Basic {b64}"));
    }
    let req = req
        .body(OutBody::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = client
        .send(req, Duration::from_secs(10), 1 << 20)
        .await
        .expect("token endpoint answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let json = serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
    (status, json, headers)
}

#[tokio::test]
async fn oauth2client_request_gets_a_token_the_proxy_accepts() {
    let sink = MemorySink::default();
    let stack = spangate::dev::start(
        &DevArgs::ephemeral(),
        Audit::to_writer(Box::new(sink.clone())),
    )
    .await
    .expect("dev stack");
    let client = HttpClient::new(Default::default()).expect("client");
    let token_url = format!("{}/token", stack.idp.base_url());

    // The discovery document advertises the grant and both client auth styles.
    let disc = client
        .get(
            &format!("{}/.well-known/openid-configuration", stack.idp.issuer()),
            Duration::from_secs(10),
        )
        .await
        .expect("discovery");
    let disc: serde_json::Value = serde_json::from_slice(disc.body()).expect("json");
    assert_eq!(
        disc["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
    assert_eq!(
        disc["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );

    // extensions.oauth2client: { client_id: edge-prod, client_secret: ...,
    //   token_url: .../token, scopes: [traces:write], endpoint_params: { audience: spangate } }
    let body = "audience=spangate&grant_type=client_credentials&scope=traces%3Awrite";
    let (status, json, _) = post(
        &client,
        &token_url,
        Some(("edge-prod", DEV_CLIENT_SECRET)),
        body,
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["scope"], "traces:write");
    let expires_in = json["expires_in"].as_u64().expect("expires_in");
    assert!(expires_in > 0);
    let token = json["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode_claims(&token).expect("a JWT");
    assert_eq!(claims["azp"], "edge-prod");
    assert_eq!(claims["aud"], "spangate");
    assert_eq!(claims["scope"], "traces:write");
    assert_eq!(claims["environment"], "production");

    // The otlphttp exporter then sends `Authorization: Bearer <token>`.
    let req = http::Request::post(format!("http://{}/v1/traces", stack.app.proxy_addr))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(OutBody::new(Bytes::from(spangate::dev::sample_batch_json(
            "checkout", 2,
        ))))
        .expect("request");
    let resp = client
        .send(req, Duration::from_secs(10), 1 << 20)
        .await
        .expect("proxy answers");
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    assert_eq!(stack.upstream.received().len(), 1);

    // AuthStyleInParams (x/oauth2's fallback after a refused Basic attempt).
    let secret =
        url::form_urlencoded::byte_serialize(DEV_CLIENT_SECRET.as_bytes()).collect::<String>();
    let (status, json, _) = post(
        &client,
        &token_url,
        None,
        &format!("client_id=edge-prod&client_secret={secret}&grant_type=client_credentials"),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert!(
        json.get("scope").is_none(),
        "no scope asked, none granted: {json}"
    );

    // Wrong secret, unknown client, no credentials: 401 invalid_client.
    for (basic, body) in [
        (
            Some(("edge-prod", "wrong")),
            "grant_type=client_credentials",
        ),
        (
            Some(("nobody", DEV_CLIENT_SECRET)),
            "grant_type=client_credentials",
        ),
        (None, "grant_type=client_credentials"),
    ] {
        let (status, json, headers) = post(&client, &token_url, basic, body).await;
        assert_eq!(status, 401, "{basic:?}: {json}");
        assert_eq!(json["error"], "invalid_client");
        assert!(headers.contains_key("www-authenticate"));
    }
    let (status, json, _) = post(
        &client,
        &token_url,
        Some(("edge-prod", DEV_CLIENT_SECRET)),
        "grant_type=password",
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    stack.app.shutdown().await;
}
