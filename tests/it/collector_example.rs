//! deploy/examples/collector-oauth2.yaml: the Collector itself cannot be
//! downloaded here, so this checks the example's structure (the extension is
//! declared, enabled and used by an otlphttp exporter in a traces pipeline)
//! and then performs the token request its `oauth2client` settings describe
//! (client id, scopes, endpoint_params) against `spangate dev`'s issuer and
//! sends a batch with the token to the exporter's endpoint path.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde_yaml::Value;
use spangate::audit::{Audit, MemorySink};
use spangate::client::{HttpClient, OutBody};
use spangate::dev::{DEV_CLIENT_SECRET, DevArgs};

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

#[tokio::test]
async fn collector_oauth2_example_is_wired_and_its_token_request_works() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/examples/collector-oauth2.yaml");
    let cfg: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("read")).expect("YAML");

    let ext = s(&cfg, &["extensions", "oauth2client"]);
    let client_id = ext["client_id"].as_str().expect("client_id");
    assert_eq!(
        ext["client_secret"].as_str(),
        Some("${env:SPANGATE_CLIENT_SECRET}")
    );
    let token_url = url::Url::parse(ext["token_url"].as_str().expect("token_url")).expect("url");
    let service = &cfg["service"];
    let enabled: Vec<&str> = service["extensions"]
        .as_sequence()
        .expect("service.extensions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(enabled.contains(&"oauth2client"), "extension enabled");
    let pipeline = s(service, &["pipelines", "traces"]);
    for part in ["receivers", "processors", "exporters"] {
        for name in pipeline[part].as_sequence().expect(part) {
            let name = name.as_str().expect("name");
            assert!(
                cfg[part].get(name).is_some(),
                "pipeline {part} {name} is declared"
            );
        }
    }
    let exporter_name = pipeline["exporters"][0].as_str().expect("exporter");
    assert!(exporter_name == "otlphttp" || exporter_name.starts_with("otlphttp/"));
    let exporter = &cfg["exporters"][exporter_name];
    assert_eq!(
        s(exporter, &["auth", "authenticator"]).as_str(),
        Some("oauth2client")
    );
    let endpoint = url::Url::parse(exporter["endpoint"].as_str().expect("endpoint")).expect("url");

    // The request oauth2client sends, built from the example's settings.
    let stack = spangate::dev::start(
        &DevArgs::ephemeral(),
        Audit::to_writer(Box::new(MemorySink::default())),
    )
    .await
    .expect("dev stack");
    let idp = url::Url::parse(&stack.idp.base_url()).expect("url");
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    let mut params: Vec<(String, String)> = ext["endpoint_params"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap_or_default().to_string(),
                        v.as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    params.push(("grant_type".into(), "client_credentials".into()));
    let scopes: Vec<&str> = ext["scopes"]
        .as_sequence()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !scopes.is_empty() {
        params.push(("scope".into(), scopes.join(" ")));
    }
    params.sort();
    for (k, v) in &params {
        form.append_pair(k, v);
    }
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        enc(client_id),
        enc(DEV_CLIENT_SECRET)
    ));
    let client = HttpClient::new(Default::default()).expect("client");
    let req = http::Request::post(format!(
        "http://127.0.0.1:{}{}",
        idp.port().expect("port"),
        token_url.path()
    ))
    .header("content-type", "application/x-www-form-urlencoded")
    .header("authorization", format!("Basic {basic}"))
    .body(OutBody::new(Bytes::from(form.finish())))
    .expect("request");
    let resp = client
        .send(req, Duration::from_secs(10), 1 << 20)
        .await
        .expect("token");
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let json: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
    let token = json["access_token"].as_str().expect("access_token");

    let traces_path = format!("{}/v1/traces", endpoint.path().trim_end_matches('/'));
    let req = http::Request::post(format!("http://{}{traces_path}", stack.app.proxy_addr))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(OutBody::new(Bytes::from(spangate::dev::sample_batch_json(
            "checkout", 1,
        ))))
        .expect("request");
    let resp = client
        .send(req, Duration::from_secs(10), 1 << 20)
        .await
        .expect("proxy");
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    // The example's addresses are `spangate dev`'s defaults.
    assert_eq!(token_url.port(), Some(spangate::dev::DEV_PORTS.idp));
    assert_eq!(endpoint.port(), Some(spangate::dev::DEV_PORTS.otlp));
    stack.app.shutdown().await;
}
