//! Vercel-shaped traffic: what `@vercel/otel` puts on a function's resource,
//! and the harness knobs for a provider with the Vercel preset.

use serde_json::json;

use super::Options;

/// Options for a dev provider with `preset: vercel` (Vercel's tokens are
/// RS256; the dev IdP's demo identities carry `owner_id` and `project_id`).
pub fn preset_options() -> Options {
    Options {
        provider_extra: "    preset: vercel\n".into(),
        idp_alg: spangate::dev::idp::DevKeyAlg::Rs256,
        ..Default::default()
    }
}

/// An OTLP/JSON batch shaped like @vercel/otel's resource: two spans from
/// `service`, naming `project` and its `deployment` and a commit.
pub fn edge_batch(service: &str, project: &str, deployment: &str) -> String {
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "vercel.project_id", "value": {"stringValue": project}},
            {"key": "deployment.id", "value": {"stringValue": deployment}},
            {"key": "vercel.deployment_id", "value": {"stringValue": deployment}},
            {"key": "vcs.ref.head.revision", "value": {"stringValue": "9f3c2a1b"}},
            {"key": "vercel.sha", "value": {"stringValue": "9f3c2a1b"}},
        ]},
        "scopeSpans": [{"scope": {"name": "edge"}, "spans": [
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
             "name": "GET /", "kind": 2,
             "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000100000000"},
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175",
             "name": "GET /a", "kind": 2,
             "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000100000000"}
        ]}]
    }]})
    .to_string()
}

/// POST an [`edge_batch`] to `/v1/traces` with `token`.
pub async fn send_edge(
    h: &super::Harness,
    token: &str,
    service: &str,
    project: &str,
    deployment: &str,
) -> http::Response<bytes::Bytes> {
    h.post(
        "/v1/traces",
        Some(token),
        "application/json",
        edge_batch(service, project, deployment),
        &[],
    )
    .await
}
