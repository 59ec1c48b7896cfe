//! The OTLP/HTTP request path. One request, one direction:
//!
//! ```text
//! authenticate ─▶ route ─▶ read body ─▶ decode ─▶ authorize ─▶ rate-limit
//!   ─▶ rewrite ─▶ credential ─▶ forward ─▶ respond ─▶ record
//! ```
//! Each stage is a plain call on owned data; every outcome, allowed or not,
//! ends in exactly one audit line and one metrics update.

pub mod grpc;
pub mod listener;
pub mod nofile;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use crate::audit::{DropCount, RequestAudit};
use crate::budget;
use crate::deployments;
use crate::drains::{self, DrainError};
use crate::error::ProxyError;
use crate::forward as upstream;
use crate::identity::AuthError;
use crate::metrics::{RequestLabels, SpanLabels};
use crate::otlp::{self, Encoding};
use crate::policy::{EndpointAuth, ResourceVerdict};
use crate::shared::Shared;

/// Response body type of both listeners.
pub type RespBody = Full<Bytes>;

/// Which protocol a request came in on. The pipeline is the same; only
/// routing, body framing and the response mapping differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/HTTP: the path names a policy endpoint; `Content-Type` and
    /// `Content-Encoding` say how the body is encoded.
    Http,
    /// OTLP/gRPC: the path names a gRPC service method; the body is one
    /// length-prefixed protobuf message (see [`grpc`]).
    Grpc,
}

/// hyper entry point for OTLP/HTTP: run the pipeline, answer, and record.
pub async fn handle<B>(
    shared: Arc<Shared>,
    req: Request<B>,
    remote: SocketAddr,
) -> Result<Response<RespBody>, Infallible>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    // Cheap unauthenticated probe for load balancers.
    if req.method() == Method::GET {
        match req.uri().path() {
            "/healthz" => return Ok(Response::new(Full::new(Bytes::from_static(b"ok\n")))),
            "/readyz" => return Ok(readiness(&shared)),
            _ => {}
        }
    }
    let (resp, mut rec, started) = run(&shared, req, remote, Transport::Http).await;
    let mut resp = resp.map(Full::new);
    rec.status = resp.status().as_u16();
    finish(&shared, &mut rec, started, resp.headers_mut());
    Ok(resp)
}

/// Run the pipeline for one request of either transport: the response as
/// OTLP/HTTP would answer it (status, headers, body in the request's
/// encoding; protobuf for gRPC) and the audit record so far.
pub(crate) async fn run<B>(
    shared: &Shared,
    req: Request<B>,
    remote: SocketAddr,
    transport: Transport,
) -> (Response<Bytes>, RequestAudit, Instant)
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let mut rec = RequestAudit {
        kind: "otlp",
        transport: match transport {
            Transport::Http => "http",
            Transport::Grpc => "grpc",
        },
        request_id: uuid::Uuid::new_v4().to_string(),
        remote: remote.to_string(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        decision: "error",
        reason: "internal",
        ..Default::default()
    };
    // Error bodies follow the request's encoding; protobuf when it is unknown
    // (and always for gRPC).
    let encoding = match transport {
        Transport::Http => header_str(req.headers(), &header::CONTENT_TYPE)
            .and_then(|ct| Encoding::from_content_type(Some(ct)))
            .unwrap_or(Encoding::Protobuf),
        Transport::Grpc => Encoding::Protobuf,
    };

    let resp = match pipeline(shared, req, transport, &mut rec).await {
        Ok(resp) => resp,
        Err(err) => {
            let er = err.response();
            rec.decision = err.decision(rec.decision);
            rec.reason = er.reason;
            if rec.detail.is_none() {
                rec.detail = Some(err.to_string());
            }
            if let ProxyError::Forbidden { rule, .. } = &err {
                rec.rule = Some(rule.clone());
            }
            err.to_http(encoding)
        }
    };
    (resp, rec, started)
}

/// Stamp the request id on the response, then record metrics and write the
/// request's one audit line (`rec.status` already set by the transport).
pub(crate) fn finish(
    shared: &Shared,
    rec: &mut RequestAudit,
    started: Instant,
    headers: &mut HeaderMap,
) {
    headers.insert(
        "x-request-id",
        HeaderValue::from_str(&rec.request_id).unwrap_or(HeaderValue::from_static("invalid")),
    );
    let elapsed = started.elapsed();
    rec.duration_ms = crate::logging::round_ms(elapsed);
    record_metrics(shared, rec, elapsed.as_secs_f64());
    shared.audit.emit(rec);
}

/// The stages, top to bottom. Returns the client response or the error that
/// ended the request; `rec` collects what the audit line needs on the way.
async fn pipeline<B>(
    shared: &Shared,
    req: Request<B>,
    transport: Transport,
    rec: &mut RequestAudit,
) -> Result<Response<Bytes>, ProxyError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let deadline = Instant::now() + shared.config.server.request_timeout;
    let (parts, body) = req.into_parts();

    // Authenticate first: nothing about the deployment (endpoints, limits) is
    // revealed to a caller without a valid token. After this stage nothing
    // reads the Authorization header again. A Trace Drain delivery (a
    // signature and no Authorization header) is signed over its body, so it
    // is verified once the body is read, below.
    // Drains deliver over OTLP/HTTP only: on gRPC the bearer token is required.
    let drain_delivery = transport == Transport::Http
        && parts.headers.contains_key(drains::SIGNATURE_HEADER)
        && !parts.headers.contains_key(header::AUTHORIZATION);
    let bearer = if drain_delivery {
        None
    } else {
        let token = bearer_token(&parts.headers).map_err(ProxyError::Auth)?;
        let (fp, principal) = shared.identity.authenticate_with_fingerprint(token).await;
        rec.token_fp = Some(fp);
        let principal = principal.map_err(ProxyError::Auth)?;
        rec.provider = Some(principal.provider.clone());
        rec.subject = Some(principal.subject.clone());
        Some(principal)
    };

    // Route: one policy snapshot serves the whole request, even across a
    // reload. Unknown routes are answered with what is served, which is
    // only said to authenticated callers. An unverified drain delivery
    // learns nothing about other paths: anything but a drain endpoint is a
    // 401 for it. gRPC calls only reach bearer endpoints.
    let policy = shared.policy.current();
    let routed = match transport {
        Transport::Http => policy.endpoint_by_path(parts.uri.path()),
        Transport::Grpc => grpc::signal_of_method(parts.uri.path())
            .and_then(|signal| grpc::endpoint_for(&policy, signal)),
    };
    let endpoint = match (routed.cloned(), drain_delivery) {
        (Some(ep), false) if ep.auth == EndpointAuth::Bearer => ep,
        (Some(ep), true) if ep.auth == EndpointAuth::VercelDrain => ep,
        (None, false) => {
            return Err(match transport {
                Transport::Http => ProxyError::NotFound(
                    policy.endpoints().iter().map(|e| e.path.clone()).collect(),
                ),
                Transport::Grpc => ProxyError::UnknownService(grpc::served_services(&policy)),
            });
        }
        _ => return Err(ProxyError::Drain(DrainError::WrongEndpoint)),
    };
    rec.endpoint = Some(endpoint.name.clone());
    rec.signal = Some(endpoint.signal.as_str());
    if parts.method != Method::POST {
        return Err(ProxyError::MethodNotAllowed);
    }

    // Read the body: content type first (cheap 415), then the cap measured
    // after decompression, bounded in time.
    let (encoding, compression) = match transport {
        Transport::Http => (
            Encoding::from_content_type(header_str(&parts.headers, &header::CONTENT_TYPE))
                .ok_or(ProxyError::UnsupportedContentType)?,
            header_str(&parts.headers, &header::CONTENT_ENCODING),
        ),
        Transport::Grpc => (
            Encoding::Protobuf,
            header_str(&parts.headers, &grpc::GRPC_ENCODING),
        ),
    };
    let cap = usize::try_from(shared.config.server.max_body.as_u64()).unwrap_or(usize::MAX);
    // Memory budget: the declared length (the whole cap when undeclared)
    // while reading, then the real cost once the size is known. Held until
    // the response is built.
    let wait = shared.config.server.overload_wait;
    let declared = header_str(&parts.headers, &header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(cap as u64, |n| n.min(cap as u64));
    let mut held = shared
        .budget
        .reserve(declared, wait)
        .await
        .map_err(ProxyError::Overloaded)?;
    let wire = tokio::time::timeout_at(deadline.into(), async {
        match transport {
            Transport::Http => otlp::read_wire(body, compression, cap)
                .await
                .map(|w| (w, compression)),
            Transport::Grpc => otlp::read_grpc_wire(body, compression, cap).await,
        }
    })
    .await
    .map_err(|_| ProxyError::RequestTimeout)??;
    // The content coding of the wire bytes (`gzip` for a compressed gRPC
    // message whatever its `grpc-encoding` spelling).
    let (wire, content_encoding) = wire;
    let inflate = |wire| async move {
        tokio::time::timeout_at(deadline.into(), otlp::inflate(wire, content_encoding, cap))
            .await
            .map_err(|_| ProxyError::RequestTimeout)?
            .map_err(ProxyError::from)
    };
    let (principal, raw) = match bearer {
        Some(p) => (p, inflate(wire).await?),
        None => {
            // The signature covers the body as sent; for a compressed
            // delivery it is also accepted over the decompressed body (the
            // bytes Vercel's own verification example hashes).
            let compressed =
                content_encoding.is_some_and(|ce| !ce.eq_ignore_ascii_case("identity"));
            let (verified, raw) = match verify_drain(shared, &parts, &wire) {
                Ok(v) => (v, inflate(wire).await?),
                Err(ProxyError::Drain(DrainError::Mismatch(_))) if compressed => {
                    let raw = inflate(wire).await?;
                    (verify_drain(shared, &parts, &raw)?, raw)
                }
                Err(e) => return Err(e),
            };
            rec.drain_secret = Some(match verified.matched {
                drains::Matched::Current => "current",
                drains::Matched::Previous => "previous",
            });
            let p = Arc::new(verified.principal());
            rec.provider = Some(p.provider.clone());
            rec.subject = Some(p.subject.clone());
            (p, raw)
        }
    };
    rec.bytes = raw.len();
    shared
        .budget
        .resize(
            &mut held,
            (raw.len() as u64).saturating_mul(budget::CHARGE_FACTOR),
            wait,
        )
        .await
        .map_err(ProxyError::Overloaded)?;

    // Decode: the policy governs what is published, so it needs the batch
    // summary. Protobuf and OTLP/JSON are scanned at the wire level
    // (resources decoded, items only counted and checked; JSON the scan
    // declines is parsed in full). Large bodies off the async worker.
    let received = otlp::receive_off_thread(endpoint.signal, encoding, raw).await?;
    let fwd_encoding = received.forward_encoding(encoding);
    let summary = received.summary();
    rec.spans = summary.spans;
    rec.services = Some(service_names(summary));

    // Deployment link: which resources' deployment ids the identity vouches
    // for (recorded whatever the decision, so denials count per deployment).
    let links = deployment_links(shared, &principal, summary);
    let drain = principal.provider == drains::PROVIDER;

    // Authorize: a pure function of (policy, principal, endpoint, batch).
    let decision = policy.decide(&principal, &endpoint, summary);
    rec.rule = Some(decision.rule.clone());
    rec.role = decision.role.clone();
    // Audit-mode rules are recorded whatever the outcome.
    rec.shadow = decision
        .shadow
        .iter()
        .filter_map(|h| serde_json::to_value(h).ok())
        .collect();
    if !decision.allowed {
        record_deployments(shared, &links, summary, &decision, false, drain, rec);
        return Err(ProxyError::Forbidden {
            rule: decision.rule.clone(),
            reason: decision.reason,
        });
    }
    rec.decision = "allow";
    rec.reason = decision.reason;

    // Rate-limit per identity (binding + key claim), after the decision so
    // the limit is the one the matching binding declares.
    if let Some(spec) = &decision.rate {
        let spec = crate::ratelimit::RateSpec::from(spec);
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let checked = shared
            .check_rate(
                &decision.rate_key,
                &spec,
                n(summary.spans),
                n(summary.bytes),
            )
            .await
            .map_err(|e| match e.reason {
                crate::ratelimit::REASON_BATCH_EXCEEDS_BURST => {
                    ProxyError::BatchExceedsBurst { limit: e.limit }
                }
                _ => ProxyError::RateLimited {
                    retry_after: e.retry_after,
                    limit: e.limit,
                },
            });
        if checked.is_err() {
            record_deployments(shared, &links, summary, &decision, false, drain, rec);
        }
        checked?;
    }
    // Counted as published once policy and the rate limit let it through.
    record_deployments(shared, &links, summary, &decision, true, drain, rec);

    // Rewrite: drop non-compliant resources, strip spoofable attributes,
    // stamp verified identity. Protobuf is spliced (only changed resources
    // re-encoded); JSON is re-encoded only when something changed.
    let keep: Vec<bool> = decision
        .resources
        .iter()
        .map(|v| matches!(v, ResourceVerdict::Keep))
        .collect();
    let spans_dropped = decision.dropped_spans();
    rec.spans_dropped = spans_dropped;
    rec.dropped = decision
        .dropped
        .iter()
        .map(|d| DropCount {
            reason: d.reason.to_string(),
            spans: d.spans,
        })
        .collect();
    if spans_dropped > 0 {
        rec.decision = "partial";
    }
    // Deployment attributes the identity cannot vouch for are stripped per
    // resource (rare: a resource claiming another project's deployment), in
    // the same splice as the rest for every signal. Indexes are the
    // summary's.
    let mut resource_strip: Vec<Vec<String>> = Vec::new();
    for (i, l) in links.iter().enumerate() {
        if let deployments::ResourceLink::Strip { keys, why } = l {
            if resource_strip.len() <= i {
                resource_strip.resize(i + 1, Vec::new());
            }
            if let Some(slot) = resource_strip.get_mut(i) {
                slot.clone_from(keys);
            }
            rec.deployment_stripped
                .push(format!("resource {i}: {} stripped: {why}", keys.join(", ")));
        }
    }
    let rewritten =
        received.rewrite_with(&keep, &decision.stamp, &decision.protected, &resource_strip)?;
    let rejected_spans = i64::try_from(spans_dropped).unwrap_or(i64::MAX);
    let Some(body) = rewritten.body else {
        // Everything was dropped: nothing to forward, the client still gets
        // an OTLP success with partial_success (exporters must not retry it).
        return Ok(export_ok(
            endpoint.signal,
            encoding,
            rejected_spans,
            &drop_message(rec),
        ));
    };

    // Credential: one snapshot for the request's whole life, even across a rotation.
    let cred_name = decision
        .credential
        .clone()
        .ok_or_else(|| ProxyError::CredentialUnavailable(String::new()))?;
    let credential = shared
        .secrets
        .current(&cred_name)
        .ok_or_else(|| ProxyError::CredentialUnavailable(cred_name.clone()))?;
    rec.credential = Some(cred_name);
    rec.credential_version = Some(credential.version);

    let up_cfg = shared
        .config
        .upstreams
        .get(&endpoint.upstream)
        .ok_or_else(|| ProxyError::UpstreamUnknown(endpoint.upstream.clone()))?;
    rec.upstream = Some(endpoint.upstream.clone());
    let fwd_gzip = content_encoding.is_some_and(|ce| ce.trim().eq_ignore_ascii_case("gzip"));
    let spool = shared.spools.get(&endpoint.upstream);
    let spooled = |body: Bytes, rec: &RequestAudit| crate::spool::Spooled {
        body,
        encoding: fwd_encoding,
        gzip: fwd_gzip,
        signal: Some(endpoint.signal),
        user_agent: parts.headers.get(header::USER_AGENT).cloned(),
        credential: credential.name.clone(),
        request_id: rec.request_id.clone(),
        endpoint: endpoint.name.clone(),
        provider: rec.provider.clone(),
        subject: rec.subject.clone(),
        spans: rec.spans - spans_dropped,
        enqueued_ms: crate::spool::now_ms(),
    };

    // `ack: spooled`: durable in the spool is the answer; delivery is the
    // spool's (its own audit line records it). Never a 200 for a batch that
    // is not stored (a gRPC client gets OK only once it is durable).
    if let Some(spool) = spool
        && spool.ack() == crate::spool::AckMode::Spooled
    {
        let item = spooled(body, rec);
        return match spool.append(item).await {
            Ok(()) => {
                rec.reason = "spooled";
                rec.detail = Some("acknowledged once durably spooled (ack: spooled)".into());
                Ok(export_ok(
                    endpoint.signal,
                    encoding,
                    rejected_spans,
                    &drop_message(rec),
                ))
            }
            Err(e) => Err(ProxyError::SpoolRefused(e)),
        };
    }

    // Forward with retries on retryable upstream answers, inside the deadline.
    let spool_body = body.clone();
    let fwd = upstream::Forward {
        name: &endpoint.upstream,
        config: up_cfg,
        signal: endpoint.signal,
        body,
        encoding: fwd_encoding,
        gzip: fwd_gzip,
        user_agent: parts.headers.get(header::USER_AGENT),
        request_id: &rec.request_id,
        credential: &credential,
        deadline,
        attempt_timeout: up_cfg.timeout,
        max_attempts: upstream::MAX_ATTEMPTS,
    };
    let result = upstream::forward(
        shared.upstream_client(&endpoint.upstream),
        &shared.metrics,
        fwd,
    )
    .await;
    rec.upstream_attempts = result.attempts;
    rec.upstream_pieces = (result.pieces > 1).then_some(result.pieces);
    rec.credential_fallback = result.used_previous;
    if result.used_previous {
        shared.metrics.credential_fallbacks.inc();
        shared.secrets.record_fallback();
    }
    // The upstream could not take it: with a spool, keep the batch and let
    // the exporter (which may never retry) see success; the spool's own
    // audit line records the delivery.
    if let Some(spool) = spool
        && crate::spool::spoolable(&result.outcome)
    {
        let item = spooled(spool_body, rec);
        let upstream_said = match &result.outcome {
            Ok(a) => {
                rec.upstream_status = Some(a.status.as_u16());
                rec.upstream_grpc_status = a.grpc_status;
                format!("upstream answered {}", a.status.as_u16())
            }
            Err(e) => e.to_string(),
        };
        match spool.append(item).await {
            Ok(()) => {
                rec.reason = "spooled";
                rec.detail = Some(format!("{upstream_said}; batch spooled for delivery"));
                return Ok(export_ok(
                    endpoint.signal,
                    encoding,
                    rejected_spans,
                    &drop_message(rec),
                ));
            }
            Err(e) => rec.detail = Some(format!("{upstream_said}; {e}")),
        }
    }
    let answer = result.outcome?;
    rec.upstream_status = Some(answer.status.as_u16());
    rec.upstream_grpc_status = answer.grpc_status;
    let label = |outcome| SpanLabels {
        endpoint: endpoint.name.clone(),
        outcome,
    };
    if answer.status.is_success() {
        shared
            .metrics
            .spans
            .get_or_create(&label("forwarded"))
            .inc_by((rec.spans - spans_dropped) as u64);
    }

    // Respond in the request's encoding; merge our drops into the upstream's
    // partial_success so the exporter sees one honest count.
    Ok(respond(
        endpoint.signal,
        encoding,
        answer,
        rejected_spans,
        &drop_message(rec),
    ))
}

/// Verify a Trace Drain delivery's signature over the body as received.
fn verify_drain(
    shared: &Shared,
    parts: &http::request::Parts,
    wire: &[u8],
) -> Result<drains::Verified, ProxyError> {
    let mut values = parts.headers.get_all(drains::SIGNATURE_HEADER).iter();
    let value = values
        .next()
        // Only a request carrying the header is a drain delivery; a request
        // with neither it nor a token is a 401 `missing` before routing.
        .ok_or(ProxyError::Drain(DrainError::Malformed))?;
    if values.next().is_some() {
        return Err(ProxyError::Drain(DrainError::Malformed));
    }
    let signature = drains::parse_signature(value.as_bytes()).map_err(ProxyError::Drain)?;
    let (name, cfg) =
        drains::drain_name(parts.uri.query(), &shared.config.drains).map_err(ProxyError::Drain)?;
    drains::verify(&shared.secrets, name, cfg, &signature, wire).map_err(ProxyError::Drain)
}

/// The deployment link for a Vercel identity (a provider with the Vercel
/// preset, or a Trace Drain); empty for everyone else.
fn deployment_links(
    shared: &Shared,
    principal: &crate::identity::Principal,
    summary: &otlp::BatchSummary,
) -> Vec<deployments::ResourceLink> {
    let trust = if principal.provider == drains::PROVIDER {
        deployments::Trust::Drain
    } else if shared
        .config
        .providers
        .get(&principal.provider)
        .and_then(|p| p.preset)
        == Some(crate::identity::Preset::Vercel)
    {
        deployments::Trust::Token {
            project_id: principal
                .claims
                .get("project_id")
                .and_then(serde_json::Value::as_str),
        }
    } else {
        return Vec::new();
    };
    deployments::link(trust, summary)
}

/// Count each linked resource against its deployment: published when the
/// batch `passed` (policy and rate limit) and the decision kept the
/// resource, denied otherwise.
///
/// A Trace Drain's resource names its project itself (the signature proves
/// the drain, not the project): only the policy's keep vouches for it, so a
/// `drain` delivery's resources that were not kept are not recorded (a drain
/// secret must not create or count deployments of projects it may not
/// publish for). A Vercel token's project is vouched by the token, so its
/// denials count.
#[allow(clippy::too_many_arguments)]
fn record_deployments(
    shared: &Shared,
    links: &[deployments::ResourceLink],
    summary: &otlp::BatchSummary,
    decision: &crate::policy::Decision,
    passed: bool,
    drain: bool,
    rec: &mut RequestAudit,
) {
    for (i, l) in links.iter().enumerate() {
        if let deployments::ResourceLink::Linked {
            project,
            deployment,
            revision,
        } = l
        {
            let kept = passed
                && decision.allowed
                && matches!(decision.resources.get(i), Some(ResourceVerdict::Keep));
            if drain && !kept {
                continue;
            }
            let spans = summary.resources.get(i).map_or(0, |r| r.spans);
            shared
                .deployments
                .record(project, deployment, revision.as_deref(), spans, kept);
            let id = format!("{project}/{deployment}");
            if !rec.deployments.contains(&id) {
                rec.deployments.push(id);
            }
        }
    }
}

/// `/readyz`: 200 when at least one identity provider has keys (or none is
/// configured). One IdP being down must not take the whole fleet out of
/// service: its tokens get a retryable 503 while the others keep working.
///
/// Anyone who reaches the OTLP port may ask, so the answer is only ready or
/// not ready: issuers, key URLs, algorithms and the policy version stay on
/// the admin listener's `/readyz` and status.
fn readiness(shared: &Shared) -> Response<RespBody> {
    let providers = shared.identity.status();
    let ready = providers.is_empty()
        || providers
            .iter()
            .any(|p| p.state == "ready" || p.state == "degraded");
    let (status, body): (_, &'static [u8]) = if ready {
        (StatusCode::OK, b"ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, b"not ready\n")
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Extract the bearer token. Exactly one Authorization header, scheme
/// `Bearer` (any case), non-empty token.
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::Missing)?;
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn service_names(summary: &otlp::BatchSummary) -> Vec<String> {
    let mut names: Vec<String> = summary
        .resources
        .iter()
        .map(|r| r.service_name.clone().unwrap_or_else(|| "(none)".into()))
        .collect();
    names.sort();
    names.dedup();
    names.truncate(16);
    names
}

fn drop_message(rec: &RequestAudit) -> String {
    let items = rec
        .signal
        .and_then(otlp::signal_by_name)
        .map_or("spans", otlp::Signal::items);
    rec.dropped
        .iter()
        .map(|d| {
            format!(
                "{} {items} dropped by spangate policy: {}",
                d.spans, d.reason
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn export_ok(
    signal: otlp::Signal,
    encoding: Encoding,
    rejected: i64,
    message: &str,
) -> Response<Bytes> {
    let mut resp = Response::new(otlp::export_response_for(
        signal, encoding, rejected, message,
    ));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    resp
}

/// The client's answer from the upstream's: status passes through; the body
/// passes through when it is in the request's encoding, otherwise a
/// well-formed OTLP body takes its place.
fn respond(
    signal: otlp::Signal,
    encoding: Encoding,
    answer: upstream::Answer,
    rejected: i64,
    message: &str,
) -> Response<Bytes> {
    let same_type = answer
        .content_type
        .as_deref()
        .and_then(|ct| Encoding::from_content_type(Some(ct)))
        == Some(encoding);
    if answer.status.is_success() {
        if rejected == 0 && same_type {
            let mut resp = Response::new(answer.body);
            *resp.status_mut() = answer.status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(encoding.content_type()),
            );
            return resp;
        }
        let (up_rejected, up_msg) = if same_type {
            otlp::parse_export_response(encoding, &answer.body).unwrap_or_default()
        } else {
            (0, String::new())
        };
        let msg = [message, up_msg.as_str()]
            .iter()
            .filter(|m| !m.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("; ");
        let mut resp = export_ok(signal, encoding, rejected.saturating_add(up_rejected), &msg);
        *resp.status_mut() = answer.status;
        return resp;
    }
    let body = if same_type {
        answer.body
    } else {
        let code = match answer.status {
            StatusCode::TOO_MANY_REQUESTS => 8,
            s if s.is_server_error() => 14,
            _ => 3,
        };
        otlp::status_body(encoding, code, "upstream refused the batch")
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = answer.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    if let Some(ra) = answer.retry_after {
        h.insert(header::RETRY_AFTER, ra);
    }
    resp
}

fn record_metrics(shared: &Shared, rec: &RequestAudit, seconds: f64) {
    let m = &shared.metrics;
    m.request_duration.observe(seconds);
    let endpoint = rec.endpoint.clone().unwrap_or_else(|| "-".into());
    m.requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint.clone(),
            signal: rec.signal.unwrap_or("-"),
            decision: rec.decision,
            reason: rec.reason,
            status: rec.status,
        })
        .inc();
    if rec.spans_dropped > 0 {
        m.spans
            .get_or_create(&SpanLabels {
                endpoint: endpoint.clone(),
                outcome: "dropped",
            })
            .inc_by(rec.spans_dropped as u64);
    }
    if rec.decision == "deny" && rec.spans > 0 {
        m.spans
            .get_or_create(&SpanLabels {
                endpoint,
                outcome: "denied",
            })
            .inc_by(rec.spans as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_token_forms() {
        assert_eq!(bearer_token(&headers(&[])), Err(AuthError::Missing));
        assert_eq!(bearer_token(&headers(&["Bearer abc"])), Ok("abc"));
        assert_eq!(bearer_token(&headers(&["bearer  abc "])), Ok("abc"));
        assert_eq!(
            bearer_token(&headers(&["Basic abc"])),
            Err(AuthError::Missing)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer "])),
            Err(AuthError::Missing)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer"])),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(AuthError::Malformed)
        );
    }
}
