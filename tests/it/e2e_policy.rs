//! End-to-end: "Telemetry-aware policy" through the whole app — real HTTP on
//! 127.0.0.1, the dev IdP minting real tokens, the recording upstream, real
//! OTLP protobuf and JSON bodies, plain and gzip; plus the real `spangate`
//! binary for `policy explain` and `policy check`.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Harness, LIGHTSTEP_TOKEN, Options};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use serde_json::{Value, json};
use spangate::dev::upstream::Received;

// ───────────────────────── batches and encodings ─────────────────────────

/// Wire encoding of a test request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enc {
    Pb,
    Json,
}

impl Enc {
    fn content_type(self) -> &'static str {
        match self {
            Enc::Pb => "application/x-protobuf",
            Enc::Json => "application/json",
        }
    }
}

/// One resource of a test batch.
#[derive(Clone)]
struct Res {
    service: &'static str,
    spans: usize,
    attrs: Vec<(&'static str, &'static str)>,
    span_attrs: Vec<(&'static str, &'static str)>,
}

fn res(service: &'static str, spans: usize) -> Res {
    Res {
        service,
        spans,
        attrs: Vec::new(),
        span_attrs: vec![("http.route", "/checkout")],
    }
}

impl Res {
    fn attrs(mut self, a: &[(&'static str, &'static str)]) -> Res {
        self.attrs.extend_from_slice(a);
        self
    }
    fn span_attrs(mut self, a: &[(&'static str, &'static str)]) -> Res {
        self.span_attrs.extend_from_slice(a);
        self
    }
}

fn kvs(attrs: &[(&str, &str)]) -> Value {
    attrs
        .iter()
        .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
        .collect()
}

/// An OTLP/JSON batch (the shape `@opentelemetry/exporter-trace-otlp-http`
/// sends: hex ids, lowerCamelCase, 64-bit integers as strings).
fn batch(resources: &[Res]) -> Value {
    let rs: Vec<Value> = resources
        .iter()
        .enumerate()
        .map(|(r, res)| {
            let mut attrs = vec![("service.name", res.service)];
            attrs.extend_from_slice(&res.attrs);
            let spans: Vec<Value> = (0..res.spans)
                .map(|i| {
                    json!({
                        "traceId": format!("5b8efff798038103d269b633813fc6{r:02x}"),
                        "spanId": format!("eee19b7ec3c1{r:02x}{i:02x}"),
                        "name": format!("GET /r{r}/{i}"),
                        "kind": 2,
                        "startTimeUnixNano": "1700000000000000000",
                        "endTimeUnixNano": "1700000000100000000",
                        "attributes": kvs(&res.span_attrs),
                        "status": {"code": 1}
                    })
                })
                .collect();
            json!({
                "resource": {"attributes": kvs(&attrs)},
                "scopeSpans": [{"scope": {"name": "e2e", "version": "1.0.0"}, "spans": spans}]
            })
        })
        .collect();
    json!({ "resourceSpans": rs })
}

/// The same batch as opentelemetry-proto types.
fn proto(v: &Value) -> ExportTraceServiceRequest {
    serde_json::from_value(v.clone()).expect("test batch is valid OTLP/JSON")
}

fn encode(enc: Enc, v: &Value) -> Vec<u8> {
    match enc {
        Enc::Json => v.to_string().into_bytes(),
        Enc::Pb => proto(v).encode_to_vec(),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// POST `v` to /v1/traces in `enc`, gzip-compressed when `gz`.
async fn send(h: &Harness, token: &str, enc: Enc, gz: bool, v: &Value) -> http::Response<Bytes> {
    let body = encode(enc, v);
    if gz {
        h.post(
            "/v1/traces",
            Some(token),
            enc.content_type(),
            gzip(&body),
            &[("content-encoding", "gzip")],
        )
        .await
    } else {
        h.post("/v1/traces", Some(token), enc.content_type(), body, &[])
            .await
    }
}

/// What the upstream received, decoded with opentelemetry-proto types in
/// the encoding its content type names.
fn upstream_request(r: &Received) -> (Enc, ExportTraceServiceRequest) {
    match r.header("content-type") {
        Some("application/x-protobuf") => (
            Enc::Pb,
            ExportTraceServiceRequest::decode(&r.body[..]).expect("upstream got valid protobuf"),
        ),
        Some("application/json") => (
            Enc::Json,
            serde_json::from_slice(&r.body).expect("upstream got valid OTLP/JSON"),
        ),
        other => panic!("upstream content-type {other:?}"),
    }
}

/// The client's success body: an ExportTraceServiceResponse in `enc`.
fn export_response(enc: Enc, body: &[u8]) -> ExportTraceServiceResponse {
    match enc {
        Enc::Pb => ExportTraceServiceResponse::decode(body).expect("protobuf export response"),
        Enc::Json => serde_json::from_slice(body).expect("JSON export response"),
    }
}

/// The client's error body: a google.rpc.Status in `enc` → (code, message).
fn status(enc: Enc, body: &[u8]) -> (i32, String) {
    match enc {
        Enc::Pb => {
            let s = spangate::otlp::Status::decode(body).expect("protobuf google.rpc.Status");
            (s.code, s.message)
        }
        Enc::Json => {
            let v: Value = serde_json::from_slice(body).expect("JSON google.rpc.Status");
            (
                v["code"].as_i64().expect("code") as i32,
                v["message"].as_str().expect("message").to_string(),
            )
        }
    }
}

/// Every value of `key` among `attrs`, rendered as text.
fn values(attrs: &[KeyValue], key: &str) -> Vec<String> {
    attrs
        .iter()
        .filter(|kv| kv.key == key)
        .map(|kv| spangate::otlp::render_value(kv.value.as_ref()))
        .collect()
}

fn resource_attrs(req: &ExportTraceServiceRequest, i: usize) -> &[KeyValue] {
    req.resource_spans[i]
        .resource
        .as_ref()
        .map_or(&[], |r| &r.attributes)
}

fn content_type(resp: &http::Response<Bytes>) -> &str {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn start(name: &'static str, yaml: &str) -> Harness {
    Harness::start_with(Options {
        policies: Some(vec![(name, yaml.to_string())]),
        ..Default::default()
    })
    .await
}

// ───────────────────────── 1. round trips ─────────────────────────

/// Protobuf and JSON, plain and gzip, under the shipped policy: 200 in the
/// request's content type, the upstream gets valid OTLP in the same
/// encoding (and compression), every span intact, the verified stamps on
/// every resource, the injected Lightstep token.
#[tokio::test]
async fn allowed_batches_round_trip_in_every_encoding_plain_and_gzip() {
    let h = Harness::start().await;
    let token = h.token("edge-prod");
    for enc in [Enc::Pb, Enc::Json] {
        for gz in [false, true] {
            let case = format!("{enc:?} gzip={gz}");
            h.upstream.clear();
            let v = batch(&[
                res("checkout", 3).attrs(&[("service.version", "1.4.2")]),
                res("checkout-worker", 2),
            ]);
            let resp = send(&h, &token, enc, gz, &v).await;
            assert_eq!(resp.status(), 200, "{case}: {:?}", resp.body());
            assert_eq!(content_type(&resp), enc.content_type(), "{case}");
            let answer = export_response(enc, resp.body());
            assert!(
                answer
                    .partial_success
                    .as_ref()
                    .is_none_or(|p| p.rejected_spans == 0 && p.error_message.is_empty()),
                "{case}: {answer:?}"
            );

            let got = h.upstream.received();
            assert_eq!(got.len(), 1, "{case}");
            let r = &got[0];
            assert_eq!(r.header("lightstep-access-token"), Some(LIGHTSTEP_TOKEN));
            assert!(r.header("authorization").is_none(), "{case}");
            assert_eq!(
                r.content_encoding.as_deref(),
                gz.then_some("gzip"),
                "{case}: forwarded compressed iff received compressed"
            );
            let (up_enc, up) = upstream_request(r);
            assert_eq!(up_enc, enc, "{case}: same encoding upstream");

            let sent = proto(&v);
            assert_eq!(up.resource_spans.len(), 2, "{case}");
            for (i, (u, s)) in up
                .resource_spans
                .iter()
                .zip(&sent.resource_spans)
                .enumerate()
            {
                assert_eq!(
                    u.scope_spans, s.scope_spans,
                    "{case}: spans of resource {i}"
                );
                let attrs = resource_attrs(&up, i);
                // What the client sent is still there...
                for kv in resource_attrs(&sent, i) {
                    assert!(attrs.contains(kv), "{case}: lost {kv:?}");
                }
                // ...and the verified stamps, exactly once each.
                assert_eq!(
                    values(attrs, "vercel.project_id"),
                    ["prj_checkout"],
                    "{case}"
                );
                assert_eq!(
                    values(attrs, "deployment.environment.name"),
                    ["production"],
                    "{case}"
                );
            }

            let line = h.last_audit();
            assert_eq!(line["decision"], "allow", "{case}: {line}");
            assert_eq!(line["reason"], "allowed", "{case}");
            assert_eq!(line["rule"], "binding[edge-publishers]", "{case}");
            assert_eq!(line["spans"], 5, "{case}");
            assert_eq!(line["spans_dropped"], 0, "{case}");
            assert_eq!(line["upstream_status"], 200, "{case}");
        }
    }
    h.stop().await;
}

// ───────────────────────── 2 + 3. publish constraints ─────────────────────────

const CONSTRAINTS_POLICY: &str = r#"
endpoints:
  traces: { path: /v1/traces, upstream: lightstep }
protected_attributes: ["spangate.", enduser.id]
roles:
  reject-publisher:
    publish:
      endpoints: [traces]
      services: ["${claims.project}", "${claims.project}-*"]
      on_violation: reject
  drop-publisher:
    publish:
      endpoints: [traces]
      services: ["${claims.project}", "${claims.project}-*"]
      on_violation: drop
  attribute-publisher:
    publish:
      endpoints: [traces]
      services: ["${claims.project}"]
      require_attributes: [service.version]
      forbid_attributes: ["debug.*"]
      attributes_equal_claims: { vercel.project_id: claims.project_id }
bindings:
  - name: rejecting
    role: reject-publisher
    subjects: [{ provider: dev, claims: { owner_id: team_demo, tier: reject } }]
    credential: lightstep-prod
    stamp: { vercel.project_id: "${claims.project_id}" }
  - name: dropping
    role: drop-publisher
    subjects: [{ provider: dev, claims: { owner_id: team_demo, tier: drop } }]
    credential: lightstep-prod
    stamp: { vercel.project_id: "${claims.project_id}" }
  - name: attributes
    role: attribute-publisher
    subjects: [{ provider: dev, claims: { owner_id: team_demo, tier: attributes } }]
    credential: lightstep-prod
    stamp: { vercel.project_id: "${claims.project_id}" }
"#;

/// `on_violation: reject`: one wrong service.name denies the whole batch
/// (403, google.rpc.Status PERMISSION_DENIED, nothing upstream) and the audit
/// line names the reason and the rule; a compliant batch passes.
#[tokio::test]
async fn wrong_service_rejects_the_whole_batch_under_reject() {
    let h = start("constraints.yaml", CONSTRAINTS_POLICY).await;
    let token = h.token_with(json!({"tier": "reject"}));
    for enc in [Enc::Pb, Enc::Json] {
        let v = batch(&[res("checkout", 2), res("billing", 1)]);
        let resp = send(&h, &token, enc, false, &v).await;
        assert_eq!(resp.status(), 403, "{enc:?}");
        assert_eq!(content_type(&resp), enc.content_type());
        let (code, _) = status(enc, resp.body());
        assert_eq!(code, 7, "PERMISSION_DENIED");
        let line = h.last_audit();
        assert_eq!(line["decision"], "deny", "{line}");
        assert_eq!(line["reason"], "service_not_allowed", "{line}");
        assert_eq!(line["rule"], "binding[rejecting]", "{line}");
        assert_eq!(line["spans"], 3, "{line}");
    }
    assert!(
        h.upstream.received().is_empty(),
        "a rejected batch is never forwarded"
    );

    let ok = batch(&[res("checkout", 2), res("checkout-cron", 1)]);
    let resp = send(&h, &token, Enc::Pb, false, &ok).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.upstream.received().len(), 1);
    h.stop().await;
}

/// `on_violation: drop`: the wrong resource goes, the allowed one is
/// forwarded, and the client is told exactly how many spans were rejected
/// (OTLP partial_success), in protobuf and in JSON.
#[tokio::test]
async fn wrong_service_is_dropped_with_partial_success_counts() {
    let h = start("constraints.yaml", CONSTRAINTS_POLICY).await;
    let token = h.token_with(json!({"tier": "drop"}));
    const N: usize = 3;
    const M: usize = 2;
    for enc in [Enc::Pb, Enc::Json] {
        for gz in [false, true] {
            let case = format!("{enc:?} gzip={gz}");
            h.upstream.clear();
            let v = batch(&[res("checkout", N), res("billing", M)]);
            let resp = send(&h, &token, enc, gz, &v).await;
            assert_eq!(resp.status(), 200, "{case}");
            assert_eq!(content_type(&resp), enc.content_type(), "{case}");
            if enc == Enc::Json {
                // The wire form OTLP/JSON exporters read.
                let raw: Value = serde_json::from_slice(resp.body()).unwrap();
                let rejected = &raw["partialSuccess"]["rejectedSpans"];
                assert!(
                    rejected == &json!(M) || rejected == &json!(M.to_string()),
                    "{case}: {raw}"
                );
                assert!(
                    !raw["partialSuccess"]["errorMessage"]
                        .as_str()
                        .unwrap_or("")
                        .is_empty(),
                    "{case}: {raw}"
                );
            }
            let partial = export_response(enc, resp.body())
                .partial_success
                .expect("partial_success present");
            assert_eq!(partial.rejected_spans, M as i64, "{case}");
            assert!(
                partial.error_message.contains("service_not_allowed"),
                "{case}: {}",
                partial.error_message
            );

            let got = h.upstream.received();
            assert_eq!(got.len(), 1, "{case}");
            let (_, up) = upstream_request(&got[0]);
            assert_eq!(
                up.resource_spans.len(),
                1,
                "{case}: only the allowed resource"
            );
            assert_eq!(values(resource_attrs(&up, 0), "service.name"), ["checkout"]);
            assert_eq!(
                values(resource_attrs(&up, 0), "vercel.project_id"),
                ["prj_checkout"],
                "{case}: the kept resource is stamped"
            );
            assert_eq!(
                up.resource_spans[0].scope_spans,
                proto(&v).resource_spans[0].scope_spans,
                "{case}: the allowed spans are intact"
            );

            let line = h.last_audit();
            assert_eq!(line["decision"], "partial", "{case}: {line}");
            assert_eq!(line["reason"], "allowed_partial", "{case}: {line}");
            assert_eq!(line["status"], 200, "{case}");
            assert_eq!(line["spans"], N + M, "{case}");
            assert_eq!(line["spans_dropped"], M, "{case}");
            assert_eq!(
                line["dropped"],
                json!([{"reason": "service_not_allowed", "spans": M}]),
                "{case}"
            );
        }
    }
    h.stop().await;
}

/// Every resource dropped: an OTLP success with all spans rejected, and
/// nothing forwarded (an empty batch is not sent upstream).
#[tokio::test]
async fn batch_with_every_resource_dropped_forwards_nothing() {
    let h = start("constraints.yaml", CONSTRAINTS_POLICY).await;
    let token = h.token_with(json!({"tier": "drop"}));
    for enc in [Enc::Pb, Enc::Json] {
        let v = batch(&[res("billing", 2), res("payments", 3)]);
        let resp = send(&h, &token, enc, false, &v).await;
        assert_eq!(resp.status(), 200, "{enc:?}");
        assert_eq!(content_type(&resp), enc.content_type());
        let partial = export_response(enc, resp.body())
            .partial_success
            .expect("partial_success present");
        assert_eq!(partial.rejected_spans, 5);
        assert!(!partial.error_message.is_empty());
        let line = h.last_audit();
        assert_eq!(line["decision"], "partial", "{line}");
        assert_eq!(line["spans_dropped"], 5, "{line}");
        assert!(line.get("upstream_status").is_none(), "{line}");
    }
    assert!(h.upstream.received().is_empty());
    h.stop().await;
}

/// require_attributes, forbid_attributes and attributes_equal_claims: one
/// allowed and one violating batch each; the violation's reason is in the
/// audit line, and only the allowed batches reach the upstream.
#[tokio::test]
async fn required_forbidden_and_claim_equal_attributes() {
    let h = start("constraints.yaml", CONSTRAINTS_POLICY).await;
    let token = h.token_with(json!({"tier": "attributes"}));
    type Attrs = Vec<(&'static str, &'static str)>;
    let cases: [(&str, Attrs, u16, &str); 5] = [
        (
            "required present, project id equals the claim",
            vec![
                ("service.version", "1.0"),
                ("vercel.project_id", "prj_checkout"),
            ],
            200,
            "allowed",
        ),
        (
            "required present, no project id at all",
            vec![("service.version", "1.0"), ("debugger", "off")],
            200,
            "allowed",
        ),
        ("required missing", vec![], 403, "attribute_missing"),
        (
            "forbidden present",
            vec![("service.version", "1.0"), ("debug.trace", "on")],
            403,
            "attribute_forbidden",
        ),
        (
            "project id differs from the claim",
            vec![
                ("service.version", "1.0"),
                ("vercel.project_id", "prj_other"),
            ],
            403,
            "attribute_claim_mismatch",
        ),
    ];
    let mut forwarded = 0;
    for (name, attrs, want, reason) in cases {
        let v = batch(&[res("checkout", 1).attrs(&attrs)]);
        let resp = send(&h, &token, Enc::Json, false, &v).await;
        assert_eq!(resp.status(), want, "{name}");
        let line = h.last_audit();
        assert_eq!(line["reason"], reason, "{name}: {line}");
        assert_eq!(line["rule"], "binding[attributes]", "{name}: {line}");
        if want == 200 {
            forwarded += 1;
        }
        assert_eq!(h.upstream.received().len(), forwarded, "{name}");
    }
    for r in h.upstream.received() {
        let (_, up) = upstream_request(&r);
        assert_eq!(
            values(resource_attrs(&up, 0), "vercel.project_id"),
            ["prj_checkout"]
        );
    }
    h.stop().await;
}

// ───────────────────────── 4. spoofing ─────────────────────────

/// A client cannot set protected or stamped attributes: resource and span
/// attributes under `enduser.id`, `spangate.*` and the stamped keys are
/// stripped; the stamped values are the verified claims; everything else
/// the client sent is kept.
#[tokio::test]
async fn spoofed_attributes_are_stripped_and_verified_ones_stamped() {
    let h = Harness::start().await;
    let token = h.token_with(json!({"project_id": "prj_verified"}));
    for (enc, gz) in [(Enc::Pb, false), (Enc::Json, true)] {
        h.upstream.clear();
        let v = batch(&[res("checkout", 2)
            .attrs(&[
                ("enduser.id", "mallory"),
                ("spangate.subject", "owner:team_demo:project:admin"),
                ("spangate.rule", "binding[platform-admins]"),
                ("vercel.project_id", "prj_forged"),
                ("deployment.environment.name", "production-forged"),
                ("custom.team", "payments"),
            ])
            .span_attrs(&[
                ("enduser.id", "mallory"),
                ("spangate.verified", "true"),
                ("vercel.project_id", "prj_forged"),
            ])]);
        let resp = send(&h, &token, enc, gz, &v).await;
        assert_eq!(resp.status(), 200, "{enc:?}");
        let got = h.upstream.received();
        assert_eq!(got.len(), 1);
        let (_, up) = upstream_request(&got[0]);
        let attrs = resource_attrs(&up, 0);
        let keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_str()).collect();
        assert!(!keys.contains(&"enduser.id"), "{enc:?}: {keys:?}");
        assert!(
            !keys.iter().any(|k| k.starts_with("spangate.")),
            "{enc:?}: {keys:?}"
        );
        assert_eq!(values(attrs, "vercel.project_id"), ["prj_verified"]);
        assert_eq!(values(attrs, "deployment.environment.name"), ["production"]);
        assert_eq!(values(attrs, "custom.team"), ["payments"]);
        assert_eq!(values(attrs, "service.name"), ["checkout"]);
        let spans = &up.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        for s in spans {
            let keys: Vec<&str> = s.attributes.iter().map(|kv| kv.key.as_str()).collect();
            assert_eq!(keys, ["http.route"], "{enc:?}: span attributes");
        }
        let line = h.last_audit();
        assert_eq!(line["decision"], "allow", "{line}");
    }
    h.stop().await;
}

// ───────────────────────── 5. rate limits ─────────────────────────

const RATE_POLICY: &str = r#"
endpoints:
  traces: { path: /v1/traces, upstream: lightstep }
roles:
  request-limited:
    publish:
      endpoints: [traces]
      services: ["${claims.project}", "${claims.project}-*"]
      rate: { requests_per_second: 1, burst: 1 }
  span-limited:
    publish:
      endpoints: [traces]
      services: ["${claims.project}", "${claims.project}-*"]
      rate: { spans_per_second: 5 }
  project-limited:
    publish:
      endpoints: [traces]
      services: ["${claims.project}", "${claims.project}-*"]
      # 60 spans at once, then one per second: a full bucket takes a minute
      # to refill, so "shared" vs "independent" does not depend on timing.
      rate: { spans_per_second: 1, burst: 60 }
bindings:
  - name: few-requests
    role: request-limited
    subjects: [{ provider: dev, claims: { owner_id: team_demo, tier: requests } }]
    credential: lightstep-prod
  - name: few-spans
    role: span-limited
    subjects: [{ provider: dev, claims: { owner_id: team_demo, tier: spans } }]
    credential: lightstep-prod
  - name: per-project
    role: project-limited
    subjects: [{ provider: dev, claims: { owner_id: team_demo, tier: project } }]
    credential: lightstep-prod
    rate_key: claims.project_id
"#;

fn retry_after(resp: &http::Response<Bytes>) -> Option<u64> {
    resp.headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Over the request rate: 429 with `Retry-After` ≥ 1 and a RESOURCE_EXHAUSTED
/// Status, nothing forwarded for the refused request, audit reason
/// `rate_limited`; another identity is unaffected; the limited identity
/// recovers once the bucket refills (polled, bounded — no fixed sleeps).
#[tokio::test]
async fn request_rate_limit_gives_429_then_recovers_and_identities_are_independent() {
    let h = start("rate.yaml", RATE_POLICY).await;
    let alice = h.token_with(json!({"tier": "requests", "sub": "alice"}));
    let bob = h.token_with(json!({"tier": "requests", "sub": "bob"}));
    let v = batch(&[res("checkout", 1)]);

    // The bucket holds one request: sending more right away hits the limit.
    // (Bounded loop: even on a slow machine, 20 back-to-back requests cannot
    // all be a second apart.)
    let mut accepted = 0;
    let mut limited = None;
    for _ in 0..20 {
        let resp = send(&h, &alice, Enc::Json, false, &v).await;
        match resp.status().as_u16() {
            200 => accepted += 1,
            429 => {
                limited = Some(resp);
                break;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    let resp = limited.expect("the request rate limit must refuse a burst");
    assert!(accepted >= 1, "the first request fits the bucket");
    let ra = retry_after(&resp).expect("Retry-After in whole seconds");
    assert!(ra >= 1, "Retry-After {ra}");
    assert_eq!(content_type(&resp), "application/json");
    assert_eq!(status(Enc::Json, resp.body()).0, 8, "RESOURCE_EXHAUSTED");
    let line = h.last_audit();
    assert_eq!(line["status"], 429, "{line}");
    assert_eq!(line["decision"], "deny", "{line}");
    assert_eq!(line["reason"], "rate_limited", "{line}");
    assert_eq!(line["rule"], "binding[few-requests]", "{line}");
    assert_eq!(
        h.upstream.received().len(),
        accepted,
        "the refused request is not forwarded"
    );

    // Another identity has its own bucket: a fresh bucket always admits one.
    let resp = send(&h, &bob, Enc::Json, false, &v).await;
    assert_eq!(resp.status(), 200, "bob is not limited by alice's traffic");
    accepted += 1;

    // Recovery: poll until the limiter admits alice again (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    let recovered = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let resp = send(&h, &alice, Enc::Json, false, &v).await;
        match resp.status().as_u16() {
            200 => break true,
            429 => {}
            s => panic!("unexpected status {s}"),
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    assert!(recovered, "the rate limit must recover within 5 s");
    accepted += 1;
    assert_eq!(h.upstream.received().len(), accepted);
    h.stop().await;
}

/// A batch with more spans than the span bucket can ever hold is refused as
/// non-retryable (413, `batch_exceeds_burst`, no Retry-After) without
/// charging the bucket; a batch that fits passes right after.
#[tokio::test]
async fn batch_bigger_than_the_span_bucket_is_413_batch_exceeds_burst() {
    let h = start("rate.yaml", RATE_POLICY).await;
    let token = h.token_with(json!({"tier": "spans"}));
    let resp = send(&h, &token, Enc::Pb, false, &batch(&[res("checkout", 6)])).await;
    assert_eq!(resp.status(), 413);
    assert!(resp.headers().get("retry-after").is_none());
    assert_eq!(content_type(&resp), "application/x-protobuf");
    assert_eq!(status(Enc::Pb, resp.body()).0, 8, "RESOURCE_EXHAUSTED");
    let line = h.last_audit();
    assert_eq!(line["reason"], "batch_exceeds_burst", "{line}");
    assert_eq!(
        line["decision"], "deny",
        "a refusal is not an allow: {line}"
    );
    assert_eq!(line["status"], 413, "{line}");
    assert!(h.upstream.received().is_empty());
    // Nothing was charged: a fresh bucket of 5 admits 5 spans.
    let resp = send(&h, &token, Enc::Pb, false, &batch(&[res("checkout", 5)])).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.upstream.received().len(), 1);
    h.stop().await;
}

/// The bucket is keyed by `rate_key`: two subjects with the same
/// `project_id` share one, another project has its own.
#[tokio::test]
async fn rate_limit_buckets_follow_the_rate_key() {
    let h = start("rate.yaml", RATE_POLICY).await;
    let token = |sub: &str, project_id: &str| {
        h.token_with(json!({"tier": "project", "sub": sub, "project_id": project_id}))
    };
    let full = batch(&[res("checkout", 60)]);
    let resp = send(&h, &token("deploy-1", "prj_a"), Enc::Json, true, &full).await;
    assert_eq!(resp.status(), 200, "a fresh bucket holds 60 spans");
    // Same project, other subject: the same (now empty) bucket.
    let resp = send(&h, &token("deploy-2", "prj_a"), Enc::Json, true, &full).await;
    assert_eq!(resp.status(), 429, "prj_a's bucket is shared");
    assert!(retry_after(&resp).is_some_and(|s| s >= 1));
    let line = h.last_audit();
    assert_eq!(line["reason"], "rate_limited", "{line}");
    assert_eq!(line["rule"], "binding[per-project]", "{line}");
    // Another project: its own full bucket.
    let resp = send(&h, &token("deploy-3", "prj_b"), Enc::Json, true, &full).await;
    assert_eq!(resp.status(), 200, "prj_b is independent of prj_a");
    assert_eq!(h.upstream.received().len(), 2);
    h.stop().await;
}

// ───────────────────────── 6. gzip bomb ─────────────────────────

/// 50 MiB of zeros gzip to about 50 KiB: under the 64 KiB cap compressed, far
/// over it inflated. Refused as 413 `body_too_large`, nothing forwarded.
/// (That inflating stops at cap + 1 bytes is asserted structurally in
/// otlp's unit tests.)
#[tokio::test]
async fn gzip_bomb_is_refused_with_413() {
    let h = Harness::start().await;
    let token = h.token("edge-prod");
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..50 {
            e.write_all(&zeros).unwrap();
        }
        e.finish().unwrap()
    };
    assert!(
        bomb.len() < 64 * 1024,
        "compressed size {} must pass the compressed cap",
        bomb.len()
    );
    for enc in [Enc::Pb, Enc::Json] {
        let resp = h
            .post(
                "/v1/traces",
                Some(&token),
                enc.content_type(),
                bomb.clone(),
                &[("content-encoding", "gzip")],
            )
            .await;
        assert_eq!(resp.status(), 413, "{enc:?}");
        assert_eq!(content_type(&resp), enc.content_type());
        let _ = status(enc, resp.body());
        let line = h.last_audit();
        assert_eq!(line["reason"], "body_too_large", "{line}");
        assert_eq!(line["status"], 413, "{line}");
    }
    assert!(h.upstream.received().is_empty());
    h.stop().await;
}

// ───────────────────────── 7. malformed bodies ─────────────────────────

/// Malformed protobuf and JSON: 400 with a google.rpc.Status
/// (INVALID_ARGUMENT) in the request's encoding whose message says what is
/// wrong; nothing forwarded.
#[tokio::test]
async fn malformed_bodies_are_400_with_a_status_saying_what_is_wrong() {
    let h = Harness::start().await;
    let token = h.token("edge-prod");
    let duplicate = batch(&[res("checkout", 1).attrs(&[("service.name", "billing")])]);
    let mut short_id = batch(&[res("checkout", 1)]);
    short_id["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = json!("abcdef");
    let cases: Vec<(&str, Enc, Vec<u8>, &str)> = vec![
        (
            "protobuf garbage",
            Enc::Pb,
            // Field 1 (resource_spans), length 100, then only 3 bytes.
            vec![0x0a, 100, 1, 2, 3],
            "failed to decode Protobuf message",
        ),
        (
            "protobuf with a 3-byte span id",
            Enc::Pb,
            encode(Enc::Pb, &short_id),
            "spanId: expected 8 bytes, got 3",
        ),
        (
            "truncated JSON",
            Enc::Json,
            br#"{"resourceSpans": [{"scopeSpans": ["#.to_vec(),
            "line 1 column",
        ),
        (
            "JSON of the wrong shape",
            Enc::Json,
            br#"{"resourceSpans": "checkout"}"#.to_vec(),
            "invalid type",
        ),
        (
            // Policy reads the first service.name, a backend may show the
            // last: a duplicate key is a spoofing vector, refused outright.
            "protobuf with service.name twice",
            Enc::Pb,
            encode(Enc::Pb, &duplicate),
            "duplicate key \"service.name\"",
        ),
        (
            "JSON with a 3-byte span id",
            Enc::Json,
            encode(Enc::Json, &short_id),
            "spanId: expected 8 bytes, got 3",
        ),
    ];
    for (name, enc, body, want) in cases {
        let resp = h
            .post("/v1/traces", Some(&token), enc.content_type(), body, &[])
            .await;
        assert_eq!(resp.status(), 400, "{name}");
        assert_eq!(content_type(&resp), enc.content_type(), "{name}");
        let (code, message) = status(enc, resp.body());
        assert_eq!(code, 3, "{name}: INVALID_ARGUMENT");
        assert!(
            message.contains(want),
            "{name}: message {message:?} should contain {want:?}"
        );
        let line = h.last_audit();
        assert_eq!(line["reason"], "malformed_body", "{name}: {line}");
    }
    assert!(h.upstream.received().is_empty());
    h.stop().await;
}

// ───────────────────────── 8. shadow mode ─────────────────────────

const SHADOW_POLICY: &str = r#"
endpoints:
  traces: { path: /v1/traces, upstream: lightstep }
roles:
  publisher:
    publish:
      endpoints: [traces]
      services: ["${claims.project}", "${claims.project}-*"]
bindings:
  - name: publishers
    role: publisher
    subjects: [{ provider: dev, claims: { owner_id: team_demo, environment: production } }]
    credential: lightstep-prod
deny:
  - name: trial-block-checkout
    mode: audit
    subjects: [{ provider: dev, claims: { project: checkout } }]
"#;

/// A deny rule in `mode: audit` that matches does not deny: the batch is
/// forwarded, and the audit line records what the rule would have done.
#[tokio::test]
async fn shadow_deny_rule_is_recorded_but_not_enforced() {
    let h = start("shadow.yaml", SHADOW_POLICY).await;
    let resp = send(
        &h,
        &h.token("edge-prod"),
        Enc::Pb,
        true,
        &batch(&[res("checkout", 2)]),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.upstream.received().len(), 1);
    let line = h.last_audit();
    assert_eq!(line["decision"], "allow", "{line}");
    assert_eq!(line["rule"], "binding[publishers]", "{line}");
    assert_eq!(
        line["shadow"],
        json!([{"rule": "deny[trial-block-checkout]", "would": "deny", "reason": "explicit_deny"}]),
        "{line}"
    );
    // An identity the shadow rule does not match has no shadow entry.
    let other = h.token_with(json!({"project": "billing"}));
    let resp = send(&h, &other, Enc::Pb, false, &batch(&[res("billing", 1)])).await;
    assert_eq!(resp.status(), 200);
    assert!(h.last_audit().get("shadow").is_none());
    h.stop().await;
}

// ───────────────────────── 9. the CLI ─────────────────────────

fn spangate(args: &[&str]) -> (i32, String, String) {
    crate::common::cli::run(args, &[("SPANGATE_LOG", "warn")]).into()
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p.display().to_string()
}

fn explain(policies: &str, claims: &str, batch: Option<&str>, json: bool) -> (i32, String) {
    let mut args = vec![
        "policy",
        "explain",
        "--policies",
        policies,
        "--claims",
        claims,
        "--provider",
        "dev",
        "--endpoint",
        "traces",
    ];
    if let Some(b) = batch {
        args.extend(["--batch", b]);
    }
    if json {
        args.push("--json");
    }
    let (code, out, err) = spangate(&args);
    assert!(
        code == 0 || code == 3,
        "explain failed ({code}): {out}{err}"
    );
    (code, out)
}

/// `spangate policy explain` on the shipped policies: allow (exit 0),
/// deny by a rule (exit 3) and no match (exit 3), each naming the deciding
/// rule and saying why the others did not match; `--json` parses; batches
/// are read from OTLP/JSON and gzip'd protobuf files.
#[test]
fn policy_explain_cli_allow_deny_by_rule_and_no_match() {
    let dir = tempfile::tempdir().unwrap();
    let policies = common::repo_policies().display().to_string();
    let ids = common::demo_identities();
    let claims = |name: &str| write(dir.path(), &format!("{name}.json"), ids[name].to_string());
    let (prod, contractor, dev) = (
        claims("edge-prod"),
        claims("contractor"),
        claims("edge-dev"),
    );

    // Allow, no batch.
    let (code, out) = explain(&policies, &prod, None, false);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("decision: ALLOW (allowed) by binding[edge-publishers]\n"),
        "{out}"
    );
    assert!(out.contains("credential: lightstep-prod"), "{out}");
    assert!(
        out.contains("stamp: vercel.project_id = \"prj_checkout\""),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("binding[edge-publishers]") && l.contains("DECIDED")),
        "{out}"
    );
    // Why not, for the rules that did not decide.
    assert!(
        out.contains("claims.sub: \"owner:team_demo:project:checkout:environment:production\" not in [contractor-*]"),
        "{out}"
    );
    assert!(
        out.contains("role secrets-admin does not publish to endpoint traces"),
        "{out}"
    );

    // Allow with a batch (OTLP/JSON file): one resource dropped, and why.
    let b = write(
        dir.path(),
        "batch.json",
        batch(&[res("checkout", 2), res("billing", 1)]).to_string(),
    );
    let (code, out) = explain(&policies, &prod, Some(&b), false);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("decision: ALLOW (allowed_partial) by binding[edge-publishers]\n"),
        "{out}"
    );
    assert!(out.contains("batch: 2 resource(s), 3 span(s)"), "{out}");
    assert!(
        out.contains("dropped: 1 span(s) in 1 resource(s): service_not_allowed"),
        "{out}"
    );
    assert!(
        out.contains("resource 1: service.name \"billing\""),
        "{out}"
    );

    // Deny by a rule, with a gzip'd protobuf batch file.
    let pb = write(
        dir.path(),
        "batch.pb.gz",
        gzip(&encode(Enc::Pb, &batch(&[res("checkout", 4)]))),
    );
    let (code, out) = explain(&policies, &contractor, Some(&pb), false);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with("decision: DENY (explicit_deny) by deny[contractors]\n"),
        "{out}"
    );
    assert!(out.contains("batch: 1 resource(s), 4 span(s)"), "{out}");
    assert!(
        out.contains("role secrets-admin does not publish to endpoint traces"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("deny[contractors]")
            && l.contains("MATCH")
            && l.contains("DECIDED")),
        "{out}"
    );

    // No match: default deny, and each binding says why not.
    let (code, out) = explain(&policies, &dev, None, false);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with("decision: DENY (no_match) by default-deny\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "subjects[0]: claims.environment: \"development\" not in [production, preview]"
        ),
        "{out}"
    );
    assert!(
        out.contains("subjects[0]: claims.groups: missing, want [platform-admins]"),
        "{out}"
    );

    // --json: machine-readable, same decision.
    for (claims, allowed, rule) in [
        (&prod, true, "binding[edge-publishers]"),
        (&contractor, false, "deny[contractors]"),
        (&dev, false, "default-deny"),
    ] {
        let (code, out) = explain(&policies, claims, None, true);
        assert_eq!(code, if allowed { 0 } else { 3 });
        let v: Value = serde_json::from_str(&out).expect("--json output is JSON");
        assert_eq!(v["decision"]["allowed"], allowed, "{v}");
        assert_eq!(v["decision"]["rule"], rule, "{v}");
        assert_eq!(v["endpoint"], "traces");
        let bindings = v["bindings"].as_array().expect("bindings");
        assert!(!bindings.is_empty());
        if !allowed && rule == "default-deny" {
            assert!(
                bindings
                    .iter()
                    .all(|b| b["matched"] == false && !b["why_not"].as_array().unwrap().is_empty()),
                "{v}"
            );
        }
    }
}

/// `spangate policy check`: a broken directory exits 1 with
/// file:line:column; a binding whose subject matches every identity of its
/// provider is refused by the linter (fail-open); the shipped set passes.
#[test]
fn policy_check_cli_reports_locations_and_fail_open_subjects() {
    let (code, out, err) = spangate(&[
        "policy",
        "check",
        &common::repo_policies().display().to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("policy ok"), "{out}");

    let broken = tempfile::tempdir().unwrap();
    let file = write(
        broken.path(),
        "broken.yaml",
        "endpoints:\n  traces: { path: /v1/traces, upstream: lightstep }\nroles:\n  r:\n    publish: { endpoints: [traces], services: [\"x\"] }\nbindings:\n  - role: no-such-role\n    subjects: [{ provider: dev, claims: { sub: alice } }]\n    credential: lightstep-prod\n",
    );
    let (code, out, err) = spangate(&["policy", "check", &broken.path().display().to_string()]);
    assert_eq!(code, 1, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.contains("no-such-role"))
        .unwrap_or_else(|| panic!("no diagnostic for the unknown role: {out}"));
    let loc = line
        .strip_prefix(&format!("{file}:"))
        .unwrap_or_else(|| panic!("diagnostic must start with the file: {line}"));
    let mut parts = loc.splitn(3, ':');
    let (l, c) = (parts.next().unwrap(), parts.next().unwrap());
    assert_eq!(l, "7", "{line}");
    assert!(c.parse::<usize>().is_ok_and(|c| c >= 1), "{line}");
    assert!(line.contains(": error: "), "{line}");

    let syntax = tempfile::tempdir().unwrap();
    let file = write(
        syntax.path(),
        "syntax.yaml",
        "endpoints:\n  traces: [unclosed\n",
    );
    let (code, out, err) = spangate(&["policy", "check", &syntax.path().display().to_string()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("{file}:")), "{out}");

    let open = tempfile::tempdir().unwrap();
    write(
        open.path(),
        "open.yaml",
        "endpoints:\n  traces: { path: /v1/traces, upstream: lightstep }\nroles:\n  r:\n    publish: { endpoints: [traces], services: [\"${claims.project}\"] }\nbindings:\n  - name: everyone\n    role: r\n    subjects: [{ provider: dev, claims: { sub: \"*\" } }]\n    credential: lightstep-prod\n  - name: anyone\n    role: r\n    subjects: [{ provider: dev }]\n    credential: lightstep-prod\n",
    );
    let (code, out, err) = spangate(&["policy", "check", &open.path().display().to_string()]);
    assert_eq!(code, 1, "{out}{err}");
    let fail_open: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("error: subject matches every identity of provider `dev`"))
        .collect();
    assert_eq!(fail_open.len(), 2, "both open bindings are refused: {out}");
    assert!(fail_open.iter().all(|l| l.contains("open.yaml:")), "{out}");
}
