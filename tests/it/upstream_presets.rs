//! Upstream presets through the whole app: the credential in the shape the
//! backend documents (Basic for Grafana Cloud, `Api-Token` for Dynatrace,
//! ...), the preset's per-signal path, OTLP/JSON converted for
//! protobuf-only backends; and config errors at file:line.

use crate::common;

use std::path::Path;

use bytes::Bytes;
use common::{Harness, LIGHTSTEP_TOKEN, Options};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;

async fn with_upstream(extra: impl Fn(&str) -> String) -> Harness {
    // The recorder's base URL is only known once it runs: start it first.
    let idp = spangate::dev::idp::DevIdp::start(spangate::dev::idp::DevIdpOptions {
        audience: common::AUDIENCE.to_string(),
        identities: common::demo_identities(),
        ..Default::default()
    })
    .await
    .unwrap();
    let upstream =
        spangate::dev::upstream::RecordingUpstream::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let base = upstream.url("");
    Harness::start_app(
        Options {
            upstream_url: Some(base.clone()),
            upstream_extra: extra(&base),
            ..Default::default()
        },
        idp,
        upstream,
    )
    .await
    .unwrap()
}

async fn send_json(h: &Harness) -> http::Response<Bytes> {
    let token = h.token("edge-prod");
    h.post(
        "/v1/traces",
        Some(&token),
        "application/json",
        spangate::dev::sample_batch_json("checkout", 2),
        &[],
    )
    .await
}

#[tokio::test]
async fn grafana_cloud_gets_basic_auth_of_instance_id_and_token_on_its_otlp_path() {
    let h = with_upstream(|_| ", preset: grafana-cloud, instance_id: \"424242\"".into()).await;
    let resp = send_json(&h).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let got = h.upstream.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/otlp/v1/traces");
    use base64::Engine as _;
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("424242:{LIGHTSTEP_TOKEN}"))
    );
    assert_eq!(got[0].header("authorization"), Some(want.as_str()));
    assert!(got[0].header("lightstep-access-token").is_none());
    h.stop().await;
}

#[tokio::test]
async fn dynatrace_gets_an_api_token_and_protobuf_even_from_a_json_client() {
    let h = with_upstream(|_| ", preset: dynatrace".into()).await;
    let resp = send_json(&h).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    // The JSON client still gets JSON back.
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = serde_json::from_slice(resp.body()).unwrap();
    assert!(v.is_object());
    let got = h.upstream.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/api/v2/otlp/v1/traces");
    let want = format!("Api-Token {LIGHTSTEP_TOKEN}");
    assert_eq!(got[0].header("authorization"), Some(want.as_str()));
    assert_eq!(
        got[0].header("content-type"),
        Some("application/x-protobuf")
    );
    let sent = ExportTraceServiceRequest::decode(got[0].body.clone()).unwrap();
    assert_eq!(sent.resource_spans[0].scope_spans[0].spans.len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn datadog_gets_its_api_key_and_protocol_header() {
    let h = with_upstream(|_| ", preset: datadog".into()).await;
    assert_eq!(send_json(&h).await.status(), 200);
    let got = h.upstream.received();
    assert_eq!(got[0].path, "/v1/traces");
    assert_eq!(got[0].header("dd-api-key"), Some(LIGHTSTEP_TOKEN));
    assert_eq!(got[0].header("dd-protocol"), Some("otlp"));
    assert!(got[0].header("authorization").is_none());
    h.stop().await;
}

#[tokio::test]
async fn honeycomb_over_grpc_gets_its_team_header_in_metadata() {
    let h = with_upstream(|_| ", preset: honeycomb, protocol: grpc".into()).await;
    assert_eq!(send_json(&h).await.status(), 200);
    let got = h.upstream.received();
    assert!(got[0].grpc);
    assert_eq!(got[0].header("x-honeycomb-team"), Some(LIGHTSTEP_TOKEN));
    h.stop().await;
}

#[test]
fn preset_errors_name_the_file_and_line() {
    let text = "\
upstreams:
  dt:
    preset: dynatrace
    url: https://abc.live.dynatrace.com
    protocol: grpc
  gc:
    preset: grafana-cloud
    url: https://otlp-gateway-prod-us-east-0.grafana.net/otlp
";
    let err = spangate::config::Config::parse(Path::new("spangate.yaml"), text)
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("spangate.yaml:5") && err.contains("dynatrace does not accept OTLP/gRPC"),
        "{err}"
    );
    assert!(
        err.contains("spangate.yaml:7") && err.contains("needs instance_id"),
        "{err}"
    );
}
