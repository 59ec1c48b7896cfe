//! OTLP/gRPC through the parts of the pipeline that are not gRPC's own: the
//! durable spool with `ack: spooled`, and Trace Drain endpoints (OTLP/HTTP
//! only).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use spangate::dev::upstream::Behavior;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{self, Harness, Options};
use crate::signals_http::{metrics_batch, traces_batch};

const POLICY: &str = "endpoints:
  traces: { path: /v1/traces, upstream: lightstep }
  metrics: { path: /v1/metrics, upstream: lightstep }
roles:
  pub:
    publish:
      endpoints: [traces, metrics]
      services: [\"${claims.project}\"]
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

/// Traces only through a drain endpoint; metrics through a bearer one.
const DRAIN_POLICY: &str = "endpoints:
  drain: { path: /v1/vercel/drain, upstream: lightstep, auth: vercel-drain, signal: traces }
  metrics: { path: /v1/metrics, upstream: lightstep }
roles:
  pub:
    publish:
      endpoints: [metrics]
  drain:
    publish:
      endpoints: [drain]
bindings:
  - name: edge
    role: pub
    subjects:
      - provider: dev
        claims: { owner_id: team_demo }
    credential: lightstep-prod
  - name: acme-drain
    role: drain
    subjects: [{ provider: vercel-drain, claims: { sub: acme-prod } }]
    credential: lightstep-prod
";

async fn channel(h: &Harness) -> Channel {
    let addr = h.app.grpc_addr.expect("gRPC listener");
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    req
}

#[tokio::test]
async fn grpc_metrics_with_ack_spooled_are_ok_once_durable_then_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start_with(Options {
        policies: Some(vec![("p.yaml", POLICY.to_string())]),
        server_extra: "  grpc_listen: 127.0.0.1:0".into(),
        upstream_extra: format!(
            ", ack: spooled, spool: {{ dir: \"{}\" }}",
            dir.path().display()
        ),
        upstream_timeout: "2s",
        ..Default::default()
    })
    .await;
    let ch = channel(&h).await;
    // The upstream hangs: the answer cannot come from it.
    h.upstream.set_behavior(Behavior::Hang);
    let token = h.token("edge-prod");
    let resp = MetricsServiceClient::new(ch)
        .export(authed(metrics_batch(&["checkout"], 3), &token))
        .await
        .expect("OK once spooled");
    assert!(resp.get_ref().partial_success.is_none());
    let line = h.last_audit();
    assert_eq!(line["transport"], "grpc");
    assert_eq!(line["signal"], "metrics");
    assert_eq!(line["reason"], "spooled");
    assert_eq!(line["grpc_status"], 0);
    let request_id = line["request_id"].as_str().expect("id").to_string();

    h.upstream.set_behavior(Behavior::Accept);
    crate::common::until("spool delivery", || {
        h.audit_lines()
            .iter()
            .any(|l| l["kind"] == "spool" && l["result"] == "delivered")
    })
    .await;
    let got: Vec<_> = h
        .upstream
        .received()
        .into_iter()
        .filter(|r| r.header("x-request-id") == Some(request_id.as_str()))
        .collect();
    let last = got.last().expect("delivered");
    assert_eq!(last.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(
        last.header("lightstep-access-token"),
        Some(common::LIGHTSTEP_TOKEN)
    );
    // The spooled body is the stamped metrics batch, not a trace envelope.
    let sent = ExportMetricsServiceRequest::decode(last.body.as_ref()).expect("metrics protobuf");
    assert_eq!(sent.resource_metrics.len(), 1);
    let attrs = &sent.resource_metrics[0]
        .resource
        .as_ref()
        .expect("resource")
        .attributes;
    assert!(attrs.iter().any(|kv| kv.key == "vercel.project_id"));
    h.stop().await;
}

#[tokio::test]
async fn drain_endpoints_take_no_grpc_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("drain-secret");
    std::fs::write(&secret_file, "drain-secret-grpc-7c1e").expect("write secret");
    let h = Harness::start_with(Options {
        policies: Some(vec![("p.yaml", DRAIN_POLICY.to_string())]),
        server_extra: "  grpc_listen: 127.0.0.1:0".into(),
        bootstrap_extra: format!(r#", drain-acme: {{ file: "{}" }}"#, secret_file.display()),
        top_extra: "drains:\n  acme-prod: { secret: drain-acme }\n".into(),
        ..Default::default()
    })
    .await;
    let ch = channel(&h).await;
    let token = h.token("edge-prod");

    // Traces are served only by the drain endpoint: not over gRPC, and the
    // answer lists what is.
    let err = TraceServiceClient::new(ch.clone())
        .export(authed(traces_batch(&["checkout"], 1), &token))
        .await
        .expect_err("no gRPC traces endpoint");
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert!(
        err.message().contains("MetricsService/Export"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("TraceService"), "{}", err.message());

    // A drain signature is no gRPC credential: without a bearer token the
    // call is unauthenticated, whatever it carries.
    let mut req = tonic::Request::new(traces_batch(&["checkout"], 1));
    req.metadata_mut().insert(
        "x-vercel-signature",
        "0123456789abcdef0123456789abcdef01234567"
            .parse()
            .expect("ascii"),
    );
    let err = TraceServiceClient::new(ch.clone())
        .export(req)
        .await
        .expect_err("unauthenticated");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(!err.message().contains("Service"), "{}", err.message());

    // The bearer endpoint of the other signal still takes gRPC.
    MetricsServiceClient::new(ch)
        .export(authed(metrics_batch(&["checkout"], 2), &token))
        .await
        .expect("metrics accepted");
    assert_eq!(h.upstream.received().len(), 1);
    std::mem::forget(dir);
    h.stop().await;
}
