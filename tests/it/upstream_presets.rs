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
    with_upstream_opts(extra, Options::default()).await
}

async fn with_upstream_opts(extra: impl Fn(&str) -> String, opts: Options) -> Harness {
    // The recorder's base URL is only known once it runs: start it first.
    let idp = crate::common::demo_idp().await;
    let upstream =
        spangate::dev::upstream::RecordingUpstream::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let base = upstream.url("");
    Harness::start_app(
        Options {
            upstream_url: Some(base.clone()),
            upstream_extra: extra(&base),
            ..opts
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

/// A ~3 MB batch: 3 resources of the same service, 500 spans each with a
/// 2000-byte attribute; span ids are unique (the id is the span's number).
fn big_batch() -> (Bytes, usize) {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let kv = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    };
    let mut n = 0u64;
    let resource_spans = (0..3)
        .map(|r| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "checkout".into()),
                    kv("host.name", format!("host-{r}")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..500)
                    .map(|_| {
                        n += 1;
                        Span {
                            trace_id: vec![7; 16],
                            span_id: n.to_be_bytes().to_vec(),
                            name: format!("span-{n}"),
                            start_time_unix_nano: 1_700_000_000_000_000_000,
                            end_time_unix_nano: 1_700_000_000_100_000_000,
                            attributes: vec![kv("payload", "x".repeat(2000))],
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let body = ExportTraceServiceRequest { resource_spans }.encode_to_vec();
    (Bytes::from(body), n as usize)
}

async fn newrelic_splits_a_3mb_batch(protocol: &str) {
    let h = with_upstream_opts(
        |_| format!(", preset: newrelic, protocol: {protocol}"),
        Options {
            max_body: "8MiB",
            policies: Some(common::shipped_policies_unthrottled()),
            upstream_timeout: "10s",
            ..Default::default()
        },
    )
    .await;
    let (body, spans) = big_batch();
    assert!(body.len() > 3_000_000, "{}", body.len());
    let token = h.token("edge-prod");
    let resp = h
        .post(
            "/v1/traces",
            Some(&token),
            "application/x-protobuf",
            body,
            &[],
        )
        .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let got = h.upstream.received();
    assert!(got.len() >= 4, "{} requests", got.len());
    let mut ids = std::collections::BTreeSet::new();
    for r in &got {
        assert!(
            r.body.len() <= 1_000_000,
            "a request of {} bytes",
            r.body.len()
        );
        assert_eq!(r.header("api-key"), Some(LIGHTSTEP_TOKEN));
        assert_eq!(r.grpc, protocol == "grpc");
        let req = ExportTraceServiceRequest::decode(r.body.clone()).unwrap();
        for rs in &req.resource_spans {
            let attrs = &rs.resource.as_ref().unwrap().attributes;
            assert!(
                attrs.iter().any(|a| a.key == "service.name"),
                "resource kept whole"
            );
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    assert!(ids.insert(s.span_id.clone()), "span sent twice");
                }
            }
        }
    }
    assert_eq!(ids.len(), spans, "every span delivered");
    let audit = h.last_audit();
    assert_eq!(audit["upstream_pieces"], got.len(), "{audit}");
    assert_eq!(audit["upstream_attempts"], got.len(), "{audit}");
    if protocol == "grpc" {
        assert_eq!(audit["upstream_grpc_status"], 0, "{audit}");
    } else {
        assert!(audit.get("upstream_grpc_status").is_none(), "{audit}");
    }
    h.stop().await;
}

#[tokio::test]
async fn newrelic_splits_a_3mb_batch_into_requests_under_1mb_over_http() {
    newrelic_splits_a_3mb_batch("http").await;
}

#[tokio::test]
async fn newrelic_splits_a_3mb_batch_into_requests_under_1mb_over_grpc() {
    newrelic_splits_a_3mb_batch("grpc").await;
}

#[tokio::test]
async fn an_item_alone_over_the_limit_is_refused_with_413_and_never_sent() {
    let h = with_upstream_opts(
        |_| ", preset: newrelic, max_request_bytes: 1KiB".into(),
        Options::default(),
    )
    .await;
    let token = h.token("edge-prod");
    // One span whose own size is over 1 KiB.
    let mut json: Value =
        serde_json::from_str(&spangate::dev::sample_batch_json("checkout", 1)).unwrap();
    json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"][0]["value"]["stringValue"] =
        Value::String("y".repeat(4000));
    let resp = h
        .post(
            "/v1/traces",
            Some(&token),
            "application/json",
            json.to_string(),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 413, "{:?}", resp.body());
    assert_eq!(h.last_audit()["reason"], "over_upstream_limit");
    assert!(h.upstream.received().is_empty());
    h.stop().await;
}
