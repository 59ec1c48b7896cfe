//! OTLP/gRPC ingress with a real tonic client: the same pipeline, audit and
//! limits as OTLP/HTTP, answered with gRPC status codes.

use crate::common;
use crate::signals_http::{logs_batch, metrics_batch, traces_batch};

use common::{Harness, Options};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

const POLICY: &str = "endpoints:
  traces: { path: /v1/traces, upstream: lightstep }
  metrics: { path: /v1/metrics, upstream: lightstep }
  logs: { path: /v1/logs, upstream: lightstep }
roles:
  pub:
    publish:
      endpoints: [traces, metrics, logs]
      services: [\"${claims.project}\"]
      rate: { requests_per_second: 3, burst: 1 }
      on_violation: drop
bindings:
  - name: edge
    role: pub
    subjects:
      - provider: dev
        claims: { owner_id: team_demo }
    credential: lightstep-prod
    stamp:
      vercel.project_id: \"${claims.project_id}\"
";

async fn start() -> (Harness, Channel) {
    let h = Harness::start_with(Options {
        policies: Some(vec![("p.yaml", POLICY.to_string())]),
        server_extra: "  grpc_listen: 127.0.0.1:0".into(),
        ..Default::default()
    })
    .await;
    let addr = h.app.grpc_addr.expect("gRPC listener");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    (h, channel)
}

fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    req
}

/// The `google.rpc.RetryInfo` delay in a status's details, if any.
fn retry_delay(status: &tonic::Status) -> Option<i64> {
    let s = spangate::otlp::Status::decode(status.details()).ok()?;
    s.details
        .iter()
        .find(|a| a.type_url == spangate::otlp::RETRY_INFO_TYPE)
        .and_then(|a| spangate::otlp::RetryInfo::decode(a.value.as_slice()).ok())
        .and_then(|r| r.retry_delay)
        .map(|d| d.seconds)
}

#[tokio::test]
async fn the_three_signals_over_grpc_are_authorized_stamped_and_forwarded() {
    let (h, ch) = start().await;
    let token = h.token("edge-prod");

    let resp = TraceServiceClient::new(ch.clone())
        .export(authed(traces_batch(&["checkout"], 2), &token))
        .await
        .expect("traces accepted");
    assert!(resp.get_ref().partial_success.is_none());
    let line = h.last_audit();
    assert_eq!(line["transport"], "grpc");
    assert_eq!(line["signal"], "traces");
    assert_eq!(line["grpc_status"], 0);
    assert_eq!(line["decision"], "allow");

    // A foreign resource is dropped and counted in partial_success.
    let resp = MetricsServiceClient::new(ch.clone())
        .export(authed(metrics_batch(&["checkout", "payments"], 4), &token))
        .await
        .expect("metrics accepted");
    let p = resp.get_ref().partial_success.clone().expect("partial");
    assert_eq!(p.rejected_data_points, 4);
    assert!(p.error_message.contains("4 data points dropped"), "{p:?}");

    let resp = LogsServiceClient::new(ch.clone())
        .export(authed(logs_batch(&["checkout"], 3), &token))
        .await
        .expect("logs accepted");
    assert!(resp.get_ref().partial_success.is_none());
    assert_eq!(h.last_audit()["signal"], "logs");

    let got = h.upstream.received();
    assert_eq!(
        got.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/traces/otlp/v0.9"; 3]
    );
    for r in &got {
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(
            r.header("lightstep-access-token"),
            Some(common::LIGHTSTEP_TOKEN)
        );
        assert!(r.header("authorization").is_none());
    }
    let sent = ExportTraceServiceRequest::decode(got[0].body.as_ref()).unwrap();
    let attrs = &sent.resource_spans[0].resource.as_ref().unwrap().attributes;
    assert!(attrs.iter().any(|kv| kv.key == "vercel.project_id"));
    h.stop().await;
}

#[tokio::test]
async fn hostile_tokens_are_unauthenticated_and_never_forwarded() {
    let (h, ch) = start().await;
    let good = h.token("edge-prod");
    // Same claims, signature of another key: flip the last signature char.
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let cases: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Basic dXNlcjpwYXNz".into()),
        Some("Bearer not.a.jwt".into()),
        Some(format!("Bearer {forged}")),
        Some(format!("Bearer {}", "A".repeat(4_000))),
    ];
    for auth in cases {
        let mut req = tonic::Request::new(traces_batch(&["checkout"], 1));
        if let Some(a) = &auth {
            req.metadata_mut()
                .insert("authorization", a.parse().expect("ascii"));
        }
        let err = TraceServiceClient::new(ch.clone())
            .export(req)
            .await
            .expect_err("refused");
        let what = auth.as_deref().map_or(0, str::len);
        assert_eq!(
            err.code(),
            Code::Unauthenticated,
            "authorization of {what} chars"
        );
        let line = h.last_audit();
        assert_eq!(line["grpc_status"], 16);
        assert_eq!(line["decision"], "deny");
    }
    // An unknown service is not revealed without a token either.
    let err = LogsServiceClient::new(ch.clone())
        .export(tonic::Request::new(logs_batch(&["checkout"], 1)))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(h.upstream.received().is_empty());
    assert!(!h.audit.text().contains(&forged));
    h.stop().await;
}

#[tokio::test]
async fn rate_limited_calls_get_resource_exhausted_with_retry_info() {
    let (h, ch) = start().await;
    let token = h.token("edge-prod");
    let mut client = TraceServiceClient::new(ch);
    let mut limited = None;
    // 3 requests per second with a one-second bucket: within a few calls
    // one is refused.
    for _ in 0..10 {
        match client
            .export(authed(traces_batch(&["checkout"], 1), &token))
            .await
        {
            Ok(_) => {}
            Err(e) => {
                limited = Some(e);
                break;
            }
        }
    }
    let err = limited.expect("a call was rate limited");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let delay = retry_delay(&err).expect("RetryInfo detail");
    assert!(delay >= 1, "{delay}");
    assert_eq!(h.last_audit()["reason"], "rate_limited");
    h.stop().await;
}

#[tokio::test]
async fn oversize_gzip_message_is_refused_after_decompression_without_retry_info() {
    let (h, ch) = start().await;
    let token = h.token("edge-prod");
    // ~1 MiB of span names compresses to a few KiB: under the 64 KiB cap on
    // the wire, far over it once inflated.
    let mut batch = traces_batch(&["checkout"], 1);
    batch.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(1 << 20);
    let mut client = TraceServiceClient::new(ch)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_encoding_message_size(4 << 20);
    let err = client
        .export(authed(batch, &token))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(retry_delay(&err), None, "oversize is not retryable");
    let line = h.last_audit();
    assert_eq!(line["reason"], "body_too_large");
    assert!(h.upstream.received().is_empty());
    // Nothing stays charged to the memory budget.
    assert_eq!(h.app.shared.budget.in_use_bytes(), 0);

    // A small gzip message goes through.
    let ok = TraceServiceClient::new(
        Channel::from_shared(format!("http://{}", h.app.grpc_addr.unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
    .send_compressed(tonic::codec::CompressionEncoding::Gzip)
    .export(authed(traces_batch(&["checkout"], 2), &token))
    .await;
    assert!(ok.is_ok(), "{ok:?}");
    h.stop().await;
}

#[tokio::test]
async fn unknown_service_and_path_list_what_is_served_to_authenticated_callers() {
    let (h, ch) = start().await;
    let token = h.token("edge-prod");
    // A raw call on a method spangate does not serve.
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
    );
    let err = grpc
        .unary::<ExportTraceServiceRequest, ExportTraceServiceRequest, _>(
            authed(traces_batch(&["checkout"], 1), &token),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("unimplemented");
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    for svc in [
        "TraceService/Export",
        "MetricsService/Export",
        "LogsService/Export",
    ] {
        assert!(err.message().contains(svc), "{}", err.message());
    }
    assert_eq!(h.last_audit()["reason"], "unknown_service");

    let resp = h
        .post("/v1/profiles", Some(&token), "application/json", "{}", &[])
        .await;
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("/v1/traces, /v1/metrics, /v1/logs") || msg.contains("/v1/logs"),
        "{msg}"
    );
    // Anonymous callers learn nothing.
    let resp = h
        .post("/v1/profiles", None, "application/json", "{}", &[])
        .await;
    assert_eq!(resp.status(), 401);
    assert!(!String::from_utf8_lossy(resp.body()).contains("/v1/"));
    h.stop().await;
}
