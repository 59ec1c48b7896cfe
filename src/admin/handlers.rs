//! Admin routing and handlers.
//!
//! Order for an authenticated endpoint, each stage for a reason:
//! 1. route — unknown paths (404) and wrong methods (405 + `Allow`) cost nothing;
//! 2. throttle — a peer locked out after failed authentications gets 429
//!    before its token is even looked at (no oracle, no CPU);
//! 3. authenticate — bootstrap token or OIDC; a bad token counts as a failure;
//! 4. check the permission (403 neither counts nor clears failures);
//! 5. read the body — capped (413), timed (408), zeroizing (it may carry a
//!    secret value), and JSON only (415);
//! 6. act, then one audit line and one metric, whatever the outcome.
//!
//! Every response carries `x-request-id`, `Cache-Control: no-store` and
//! `X-Content-Type-Options: nosniff`; the audit line carries the same
//! `request_id`. Audit lines name the actor (`bootstrap-token` or
//! `provider/subject`), the action, the result and fingerprints — never values.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::AdminPeer;
use super::auth::{
    Actor, AdminAuthError, AdminAuthenticator, AdminCaller, DefaultAuthenticator, Permission,
};
use super::respond::{AdminBody, ApiError, finish, json_response};
use super::throttle::{Attempt, AuthThrottle, Presented, Scope, Verdict, retry_after_secs};
use super::verify::{ProbeOutcome, probe};
use super::{AdminExtras, MAX_BODY, MetricsEncoder, PolicyVersionFn};
use crate::metrics::{AdminLabels, ThrottleLabels};
use crate::reload::{DiagnosticView, Reloader, Trigger, diagnostics};
use crate::secrets::{Change, Changed, Secret, check_value, valid_name};
use crate::shared::Shared;

/// A request body, wiped when dropped (a rotate body carries a secret value).
type BodyBuf = Zeroizing<Vec<u8>>;

/// Longest bearer token accepted.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Most files in one validate request.
const MAX_VALIDATE_FILES: usize = 64;

/// One routed admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /metrics`.
    Metrics,
    /// `GET /admin/v1/status`.
    Status,
    /// `GET /admin/v1/secrets`.
    ListSecrets,
    /// `GET /admin/v1/secrets/{name}`.
    GetSecret(String),
    /// `POST /admin/v1/secrets/{name}/rotate`.
    Rotate(String),
    /// `POST /admin/v1/secrets/{name}/rollback`.
    Rollback(String),
    /// `DELETE /admin/v1/secrets/{name}/versions/{v}`.
    Retire(String, u64),
    /// `POST /admin/v1/policies/reload`.
    PolicyReload,
    /// `POST /admin/v1/policies/validate`.
    PolicyValidate,
    /// `GET /admin/v1/spools`.
    Spools,
    /// `GET /admin/v1/spools/{upstream}`: queued batches and dead letters (metadata).
    SpoolInspect(String),
    /// `POST /admin/v1/spools/{upstream}/replay-dead`.
    SpoolReplayDead(String),
    /// `POST /admin/v1/spools/{upstream}/purge` (body `{"confirm": true, "dead": bool}`).
    SpoolPurge(String),
    /// `GET /admin/v1/deployments` and `/admin/v1/deployments/{project}`.
    Deployments(Option<String>),
}

impl Route {
    /// Route a request; unknown paths are 404, wrong methods 405.
    pub fn parse(method: &Method, path: &str) -> Result<Route, ApiError> {
        if path.len() > 512 {
            return Err(ApiError::NotFound);
        }
        let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        // GET resources also answer HEAD (RFC 9110 §9.3.2; hyper drops the body).
        let want = |m: Method, allow: &'static str, r: Route| {
            if *method == m || (m == Method::GET && *method == Method::HEAD) {
                Ok(r)
            } else {
                Err(ApiError::MethodNotAllowed { allow })
            }
        };
        let name = |n: &str| {
            if valid_name(n) {
                Ok(n.to_string())
            } else {
                Err(ApiError::NotFound)
            }
        };
        match segs.as_slice() {
            ["healthz"] => want(Method::GET, "GET, HEAD", Route::Healthz),
            ["readyz"] => want(Method::GET, "GET, HEAD", Route::Readyz),
            ["metrics"] => want(Method::GET, "GET, HEAD", Route::Metrics),
            ["admin", "v1", "status"] => want(Method::GET, "GET, HEAD", Route::Status),
            ["admin", "v1", "secrets"] => want(Method::GET, "GET, HEAD", Route::ListSecrets),
            ["admin", "v1", "secrets", n] => {
                want(Method::GET, "GET, HEAD", Route::GetSecret(name(n)?))
            }
            ["admin", "v1", "secrets", n, "rotate"] => {
                want(Method::POST, "POST", Route::Rotate(name(n)?))
            }
            ["admin", "v1", "secrets", n, "rollback"] => {
                want(Method::POST, "POST", Route::Rollback(name(n)?))
            }
            ["admin", "v1", "secrets", n, "versions", v] => {
                let v: u64 = v.parse().map_err(|_| ApiError::NotFound)?;
                want(Method::DELETE, "DELETE", Route::Retire(name(n)?, v))
            }
            ["admin", "v1", "policies", "reload"] => {
                want(Method::POST, "POST", Route::PolicyReload)
            }
            ["admin", "v1", "policies", "validate"] => {
                want(Method::POST, "POST", Route::PolicyValidate)
            }
            ["admin", "v1", "spools"] => want(Method::GET, "GET, HEAD", Route::Spools),
            ["admin", "v1", "spools", n] => {
                want(Method::GET, "GET, HEAD", Route::SpoolInspect(name(n)?))
            }
            ["admin", "v1", "spools", n, "replay-dead"] => {
                want(Method::POST, "POST", Route::SpoolReplayDead(name(n)?))
            }
            ["admin", "v1", "spools", n, "purge"] => {
                want(Method::POST, "POST", Route::SpoolPurge(name(n)?))
            }
            ["admin", "v1", "deployments"] => {
                want(Method::GET, "GET, HEAD", Route::Deployments(None))
            }
            ["admin", "v1", "deployments", p] => {
                want(Method::GET, "GET, HEAD", Route::Deployments(Some(name(p)?)))
            }
            _ => Err(ApiError::NotFound),
        }
    }

    /// Audit action name.
    pub fn action(&self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::Status => "status.read",
            Route::ListSecrets => "secrets.list",
            Route::GetSecret(_) => "secrets.read",
            Route::Rotate(_) => "secrets.rotate",
            Route::Rollback(_) => "secrets.rollback",
            Route::Retire(..) => "secrets.retire",
            Route::PolicyReload => "policy.reload",
            Route::PolicyValidate => "policy.validate",
            Route::Spools => "spool.status",
            Route::SpoolInspect(_) => "spool.inspect",
            Route::SpoolReplayDead(_) => "spool.replay_dead",
            Route::SpoolPurge(_) => "spool.purge",
            Route::Deployments(_) => "deployments.read",
        }
    }

    /// Permission needed (None: public endpoint).
    pub fn permission(&self) -> Option<Permission> {
        match self {
            Route::Healthz | Route::Readyz | Route::Metrics => None,
            Route::Status | Route::Deployments(_) => Some(Permission::StatusRead),
            Route::ListSecrets | Route::GetSecret(_) => Some(Permission::SecretsRead),
            Route::Rotate(_) | Route::Rollback(_) | Route::Retire(..) => {
                Some(Permission::SecretsRotate)
            }
            Route::PolicyReload => Some(Permission::PolicyReload),
            Route::PolicyValidate => Some(Permission::PolicyValidate),
            Route::Spools | Route::SpoolInspect(_) => Some(Permission::StatusRead),
            Route::SpoolReplayDead(_) | Route::SpoolPurge(_) => Some(Permission::SpoolManage),
        }
    }

    fn target(&self) -> Option<String> {
        match self {
            Route::GetSecret(n) | Route::Rotate(n) | Route::Rollback(n) | Route::Retire(n, _) => {
                Some(n.clone())
            }
            Route::PolicyReload | Route::PolicyValidate => Some("policies".into()),
            Route::SpoolInspect(n) | Route::SpoolReplayDead(n) | Route::SpoolPurge(n) => {
                Some(n.clone())
            }
            Route::Deployments(p) => p.clone(),
            Route::Spools
            | Route::Healthz
            | Route::Readyz
            | Route::Metrics
            | Route::Status
            | Route::ListSecrets => None,
        }
    }
}

/// One audit line of an admin call.
#[derive(Debug, Default, Serialize)]
struct AdminAudit {
    kind: &'static str,
    /// Same as the response's `x-request-id`.
    request_id: String,
    action: &'static str,
    actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_fingerprint: Option<String>,
    remote: String,
    /// Unix-socket peer credentials (kernel-verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    result: &'static str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    permission: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    forced: Option<bool>,
    /// `peer` or `global` when the throttle refused the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    throttle: Option<&'static str>,
    /// The key failures are counted under (IPv4 address or IPv6 /64), on
    /// throttled calls and on the failure that starts a lockout.
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    /// Seconds sent in `Retry-After` of a throttled call.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_s: Option<u64>,
    /// Seconds of the lockout this failed call started.
    #[serde(skip_serializing_if = "Option::is_none")]
    lockout_s: Option<u64>,
    duration_ms: f64,
}

/// Counters of admin calls (plain atomics, shown in status).
#[derive(Debug, Default)]
struct AdminCounters {
    requests: AtomicU64,
    unauthenticated: AtomicU64,
    forbidden: AtomicU64,
    failed: AtomicU64,
    throttled: AtomicU64,
}

/// State of a running admin server.
pub struct AdminState {
    shared: Arc<Shared>,
    auth: Arc<dyn AdminAuthenticator>,
    reloader: Arc<Reloader>,
    metrics: Option<MetricsEncoder>,
    policy_version: Option<PolicyVersionFn>,
    shutdown: watch::Receiver<bool>,
    started: Instant,
    counters: AdminCounters,
    throttle: AuthThrottle,
    body_timeout: Duration,
}

impl AdminState {
    /// Build the state from the shared app state and the optional wiring.
    pub fn new(shared: Arc<Shared>, extras: AdminExtras, shutdown: watch::Receiver<bool>) -> Self {
        let permissions = extras
            .permissions
            .unwrap_or_else(|| Arc::new(super::auth::permissions_of));
        let auth = extras.authenticator.unwrap_or_else(|| {
            Arc::new(DefaultAuthenticator::new(
                shared.config.admin.bootstrap_hash(),
                Arc::clone(&shared.identity),
                Arc::clone(&shared.policy),
                permissions,
            ))
        });
        let reloader = extras
            .reloader
            .unwrap_or_else(|| Reloader::new(Arc::clone(&shared.policy), shared.audit.clone()));
        let throttle = AuthThrottle::new(shared.config.admin.auth_throttle.clone());
        let body_timeout = shared.config.admin.body_timeout;
        Self {
            shared,
            auth,
            throttle,
            body_timeout,
            reloader,
            metrics: extras.metrics,
            policy_version: extras.policy_version,
            shutdown,
            started: Instant::now(),
            counters: AdminCounters::default(),
        }
    }

    /// Handle one request. Every response gets a fresh `x-request-id` (also
    /// in the audit line and in error bodies) and the common headers.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: impl Into<AdminPeer>,
    ) -> Response<AdminBody> {
        let peer = peer.into();
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut resp = self.dispatch(req, peer, &request_id).await;
        finish(&mut resp, &request_id);
        resp
    }

    async fn dispatch(
        &self,
        req: Request<Incoming>,
        peer: AdminPeer,
        request_id: &str,
    ) -> Response<AdminBody> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let route = match Route::parse(req.method(), req.uri().path()) {
            Ok(r) => r,
            Err(e) => return e.into_response(request_id),
        };
        let resp = match &route {
            Route::Healthz => Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({"status": "ok"}),
            )),
            Route::Readyz => Ok(self.readyz()),
            Route::Metrics => self.metrics(),
            _ => return self.authenticated(route, req, peer, request_id).await,
        };
        resp.unwrap_or_else(|e| e.into_response(request_id))
    }

    async fn authenticated(
        &self,
        route: Route,
        req: Request<Incoming>,
        peer: AdminPeer,
        request_id: &str,
    ) -> Response<AdminBody> {
        let started = Instant::now();
        let mut audit = AdminAudit {
            kind: "admin",
            request_id: request_id.to_string(),
            action: route.action(),
            actor: "anonymous".into(),
            remote: peer.describe(),
            peer_uid: match peer {
                AdminPeer::Unix { uid, .. } => Some(uid),
                AdminPeer::Tcp(_) => None,
            },
            peer_gid: match peer {
                AdminPeer::Unix { gid, .. } => Some(gid),
                AdminPeer::Tcp(_) => None,
            },
            peer_pid: match peer {
                AdminPeer::Unix { pid, .. } => pid,
                AdminPeer::Tcp(_) => None,
            },
            target: route.target(),
            ..Default::default()
        };
        let result = self.authorize_and_run(&route, req, peer, &mut audit).await;
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                let (_, code) = e.status_and_code();
                audit.reason.get_or_insert(code);
                e.into_response(request_id)
            }
        };
        let status = resp.status();
        audit.status = status.as_u16();
        audit.result = match status.as_u16() {
            _ if audit.throttle.is_some() => "throttled",
            200..=299 => "ok",
            401 => "unauthenticated",
            403 => "forbidden",
            400..=499 => "refused",
            _ => "error",
        };
        let counter = match audit.result {
            "unauthenticated" => Some(&self.counters.unauthenticated),
            "forbidden" => Some(&self.counters.forbidden),
            "throttled" => Some(&self.counters.throttled),
            "ok" => None,
            _ => Some(&self.counters.failed),
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let metrics = &self.shared.metrics;
        metrics
            .admin_requests
            .get_or_create(&AdminLabels {
                action: audit.action,
                result: audit.result,
            })
            .inc();
        if let Some(scope) = audit.throttle {
            metrics
                .admin_auth_throttled
                .get_or_create(&ThrottleLabels { scope })
                .inc();
        }
        match audit.result {
            "ok" => {}
            // Throttled calls are audited; logging each at INFO would let a
            // guesser flood the log (the lockout itself is a WARN).
            "throttled" => {
                tracing::debug!(request_id, action = audit.action, remote = %audit.remote,
                scope = audit.throttle.unwrap_or(""), "admin call throttled")
            }
            _ => {
                tracing::info!(request_id, action = audit.action, actor = %audit.actor, remote = %audit.remote,
                result = audit.result, reason = audit.reason.unwrap_or(""), status = audit.status,
                "admin call refused")
            }
        }
        audit.duration_ms = crate::logging::round_ms(started.elapsed());
        self.shared.audit.emit_now(&audit);
        resp
    }

    /// Record a failed authentication (here and, in a fleet, in the shared
    /// count); note and report a lockout it starts.
    async fn auth_failed(&self, attempt: Attempt<'_>, peer: AdminPeer, audit: &mut AdminAudit) {
        let local = attempt.failed(Instant::now());
        let cfg = self.throttle.config();
        let shared = match &self.shared.fleet {
            Some(f) if cfg.enabled => {
                let key = peer.throttle_key().to_string();
                f.auth_failed(&key, cfg.max_failures, cfg.window, cfg.lockout)
                    .await
            }
            _ => None,
        };
        if let Some(lockout) = local.or(shared) {
            let secs = retry_after_secs(lockout);
            audit.lockout_s = Some(secs);
            audit.peer = Some(peer.throttle_key().to_string());
            self.shared.metrics.admin_auth_lockouts.inc();
            tracing::warn!(
                peer = %peer.throttle_key(),
                lockout_s = secs,
                "admin API: too many failed authentications; peer locked out"
            );
        }
    }

    async fn authorize_and_run(
        &self,
        route: &Route,
        req: Request<Incoming>,
        peer: AdminPeer,
        audit: &mut AdminAudit,
    ) -> Result<Response<AdminBody>, ApiError> {
        // Before the token is checked: a locked-out peer learns nothing
        // about a credential that is neither known good nor signed (the
        // throttle sees only its fingerprint and shape).
        let presented = bearer(req.headers());
        let cred = match &presented {
            Bearer::Token(t) => Some(Presented::of(t)),
            Bearer::Missing | Bearer::Malformed => None,
        };
        // In a fleet, a peer locked out on any replica is locked out here
        // too, with the same exemptions as the local throttle (credentials
        // known good from this peer, signed tokens).
        if let Some(f) = &self.shared.fleet
            && self.throttle.config().enabled
            && !self.throttle.exempt(peer.throttle_key(), cred.as_ref())
            && let Some(retry_after) = f.auth_locked(&peer.throttle_key().to_string()).await
        {
            audit.throttle = Some(Scope::Peer.as_str());
            audit.peer = Some(peer.throttle_key().to_string());
            audit.retry_after_s = Some(retry_after_secs(retry_after));
            return Err(ApiError::Throttled {
                retry_after,
                scope: Scope::Peer,
            });
        }
        let attempt =
            match self
                .throttle
                .check_credential(peer.throttle_key(), cred.as_ref(), Instant::now())
            {
                Verdict::Proceed(a) => a,
                Verdict::Throttled { scope, retry_after } => {
                    audit.throttle = Some(scope.as_str());
                    audit.peer = Some(peer.throttle_key().to_string());
                    audit.retry_after_s = Some(retry_after_secs(retry_after));
                    return Err(ApiError::Throttled { retry_after, scope });
                }
            };
        let caller = match presented {
            // No token is no guess: neither a failure nor a success.
            Bearer::Missing => return Err(ApiError::Unauthenticated(AdminAuthError::Missing)),
            Bearer::Malformed => {
                self.auth_failed(attempt, peer, audit).await;
                return Err(ApiError::Unauthenticated(AdminAuthError::Invalid(
                    "malformed",
                )));
            }
            Bearer::Token(t) => {
                audit.token_fingerprint = Some(crate::fingerprint(t.as_bytes()));
                match self.auth.authenticate(&t).await {
                    Ok(caller) => caller,
                    Err(e @ AdminAuthError::Invalid(_)) => {
                        self.auth_failed(attempt, peer, audit).await;
                        return Err(ApiError::Unauthenticated(e));
                    }
                    // An unreachable IdP is not the caller's failure.
                    Err(e) => return Err(ApiError::Unauthenticated(e)),
                }
            }
        };
        audit.actor = caller.actor.label();
        if let Actor::Oidc {
            provider, subject, ..
        } = &caller.actor
        {
            audit.provider = Some(provider.clone());
            audit.subject = Some(subject.clone());
        }
        if let Some(p) = route.permission()
            && !caller.may(p)
        {
            // Valid token without the permission: the attempt is dropped, so
            // it neither counts as a failure nor clears earlier ones.
            audit.permission = Some(p.as_str());
            return Err(ApiError::Forbidden(p));
        }
        // A success does not clear the peer's shared failure count either:
        // another caller at the same address must not reset a guesser.
        attempt.succeeded();
        let body = read_body(req, self.body_timeout).await?;
        self.run(route, body, &caller, audit).await
    }

    async fn run(
        &self,
        route: &Route,
        body: BodyBuf,
        caller: &AdminCaller,
        audit: &mut AdminAudit,
    ) -> Result<Response<AdminBody>, ApiError> {
        match route {
            Route::Status => Ok(self.status()),
            Route::ListSecrets => Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({ "credentials": self.shared.secrets.list() }),
            )),
            Route::GetSecret(name) => {
                let info =
                    self.shared.secrets.info(name).ok_or_else(|| {
                        crate::secrets::SecretsError::NotFound { name: name.clone() }
                    })?;
                audit.new_version = Some(info.current_version);
                audit.new_fingerprint = Some(info.current_fingerprint.clone());
                Ok(json_response(StatusCode::OK, &info))
            }
            Route::Rotate(name) => self.rotate(name, body, audit).await,
            Route::Rollback(name) => {
                let Changed::RolledBack(r) = self
                    .shared
                    .credentials()
                    .change(name, Change::Rollback)
                    .await?
                else {
                    return Err(ApiError::Internal);
                };
                audit.old_version = Some(r.from_version);
                audit.old_fingerprint = Some(r.from_fingerprint.clone());
                audit.new_version = Some(r.to_version);
                audit.new_fingerprint = Some(r.to_fingerprint.clone());
                Ok(json_response(StatusCode::OK, &r))
            }
            Route::Retire(name, version) => {
                let Changed::Retired(r) = self
                    .shared
                    .credentials()
                    .change(name, Change::Retire(*version))
                    .await?
                else {
                    return Err(ApiError::Internal);
                };
                audit.old_version = Some(r.version);
                audit.old_fingerprint = Some(r.fingerprint.clone());
                Ok(json_response(StatusCode::OK, &r))
            }
            Route::PolicyReload => {
                let actor = caller.actor.label();
                match self.reloader.reload(Trigger::Admin, &actor).await {
                    Ok(()) => Ok(json_response(
                        StatusCode::OK,
                        &serde_json::json!({
                            "reloaded": true,
                            "version": self.policy_version(),
                        }),
                    )),
                    Err(e) => Err(ApiError::PolicyInvalid(diagnostics(&e))),
                }
            }
            Route::PolicyValidate => self.validate(body, audit).await,
            Route::Spools => Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({ "spools": self.spools_status() }),
            )),
            Route::SpoolInspect(n) => {
                let spool = self.spool(n)?;
                Ok(json_response(StatusCode::OK, &spool.inspect(100)))
            }
            Route::SpoolReplayDead(n) => {
                let spool = self.spool(n)?;
                let replayed = spool.replay_dead().await.map_err(spool_failed)?;
                Ok(json_response(
                    StatusCode::OK,
                    &serde_json::json!({ "upstream": n, "replayed": replayed }),
                ))
            }
            Route::SpoolPurge(n) => {
                let spool = self.spool(n)?;
                let req: PurgeRequest = if body.iter().all(u8::is_ascii_whitespace) {
                    PurgeRequest::default()
                } else {
                    parse_json(&body)?
                };
                if !req.confirm {
                    return Err(ApiError::BadRequest {
                        code: "confirm_required",
                        message: "purge deletes batches for good: send \"confirm\": true".into(),
                    });
                }
                let purged = spool.purge(req.dead).await.map_err(spool_failed)?;
                Ok(json_response(
                    StatusCode::OK,
                    &serde_json::json!({ "upstream": n, "purged": purged, "dead": req.dead }),
                ))
            }
            Route::Deployments(project) => {
                let projects = self.shared.deployments.snapshot(project.as_deref());
                if project.is_some() && projects.is_empty() {
                    return Err(ApiError::NotFound);
                }
                Ok(json_response(
                    StatusCode::OK,
                    &serde_json::json!({
                        "per_project": self.shared.config.deployments.per_project,
                        "max_projects": self.shared.config.deployments.max_projects,
                        "projects": projects,
                    }),
                ))
            }
            Route::Healthz | Route::Readyz | Route::Metrics => Err(ApiError::NotFound),
        }
    }

    async fn rotate(
        &self,
        name: &str,
        body: BodyBuf,
        audit: &mut AdminAudit,
    ) -> Result<Response<AdminBody>, ApiError> {
        // The value is unescaped from `body` straight into the `Secret`;
        // dropping `body` wipes the JSON text it came from.
        let req: RotateRequest = parse_json(&body)?;
        drop(body);
        let value = req.value;
        audit.new_fingerprint = Some(value.fingerprint());
        match self.shared.secrets.info(name) {
            Some(cur) => {
                audit.old_version = Some(cur.current_version);
                audit.old_fingerprint = Some(cur.current_fingerprint);
            }
            None if !req.create => {
                // At most a screenful of names in the message.
                const SHOWN: usize = 20;
                let mut known = self.shared.secrets.names();
                if known.len() > SHOWN {
                    let more = known.len() - SHOWN;
                    known.truncate(SHOWN);
                    known.push(format!("and {more} more"));
                }
                return Err(ApiError::UnknownCredential {
                    name: name.to_string(),
                    known,
                });
            }
            None => {}
        }
        check_value(value.expose()).map_err(|reason| {
            crate::secrets::SecretsError::InvalidValue {
                name: name.to_string(),
                reason,
            }
        })?;
        let grace = match &req.grace {
            None => self.shared.config.admin.default_grace,
            Some(g) => humantime::parse_duration(g).map_err(|_| ApiError::BadRequest {
                code: "invalid_grace",
                message: "grace must be a duration such as 10m, 1h or 0s".into(),
            })?,
        };
        let not_after = match &req.not_after {
            None => None,
            Some(t) => {
                Some(
                    humantime::parse_rfc3339_weak(t).map_err(|_| ApiError::BadRequest {
                        code: "invalid_not_after",
                        message: "not_after must be an RFC 3339 time such as 2030-01-01T00:00:00Z"
                            .into(),
                    })?,
                )
            }
        };
        if not_after.is_some_and(|n| n <= SystemTime::now()) {
            return Err(ApiError::BadRequest {
                code: "invalid_not_after",
                message: "not_after is in the past".into(),
            });
        }
        audit.forced = req.force.then_some(true);
        let mut verify = None;
        if req.verify {
            let (up_name, up) = self.pick_upstream(req.upstream.as_deref())?;
            audit.upstream = Some(up_name.clone());
            let outcome = probe(
                self.shared.upstream_client(&up_name),
                up,
                &value,
                &audit.request_id,
            )
            .await;
            audit.verify = Some(outcome.label());
            match (&outcome, req.force) {
                (ProbeOutcome::Accepted { .. }, _) | (_, true) => {}
                (ProbeOutcome::Rejected { status }, false) => {
                    self.shared.secrets.record_verify_failure(false);
                    return Err(ApiError::VerifyRejected {
                        upstream: up_name,
                        status: *status,
                    });
                }
                (ProbeOutcome::Unavailable { code, detail }, false) => {
                    self.shared.secrets.record_verify_failure(true);
                    return Err(ApiError::VerifyUnavailable {
                        upstream: up_name,
                        code,
                        detail: detail.clone(),
                    });
                }
            }
            verify = Some(VerifyView::from_outcome(&up_name, &outcome));
        } else {
            audit.verify = Some("skipped");
        }
        let change = Change::Rotate {
            value,
            grace,
            not_after,
        };
        let Changed::Rotated(r) = self.shared.credentials().change(name, change).await? else {
            return Err(ApiError::Internal);
        };
        audit.old_version = r.old_version;
        audit.old_fingerprint = r.old_fingerprint.clone();
        audit.new_version = Some(r.new_version);
        audit.new_fingerprint = Some(r.new_fingerprint.clone());
        Ok(json_response(
            StatusCode::OK,
            &RotateResponse {
                rotation: &r,
                verify,
                forced: req.force,
            },
        ))
    }

    fn pick_upstream(
        &self,
        wanted: Option<&str>,
    ) -> Result<(String, &crate::config::UpstreamConfig), ApiError> {
        let ups = &self.shared.config.upstreams;
        match wanted {
            Some(w) => ups
                .get_key_value(w)
                .map(|(k, v)| (k.clone(), v))
                .ok_or_else(|| ApiError::BadRequest {
                    code: "unknown_upstream",
                    message: format!(
                        "no such upstream; configured: {}",
                        ups.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                }),
            None => {
                let mut it = ups.iter();
                match (it.next(), it.next()) {
                    (Some((k, v)), None) => Ok((k.clone(), v)),
                    (None, _) => Err(ApiError::BadRequest {
                        code: "no_upstream",
                        message:
                            "no upstream is configured to verify against; send \"verify\": false"
                                .into(),
                    }),
                    (Some(_), Some(_)) => Err(ApiError::BadRequest {
                        code: "upstream_required",
                        message: format!(
                            "several upstreams are configured; name one in \"upstream\": {}",
                            ups.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    }),
                }
            }
        }
    }

    async fn validate(
        &self,
        body: BodyBuf,
        audit: &mut AdminAudit,
    ) -> Result<Response<AdminBody>, ApiError> {
        let result = if body.iter().all(u8::is_ascii_whitespace) {
            let dir = self.shared.policy.dir().to_path_buf();
            let r = Arc::clone(&self.reloader);
            blocking(move || r.validate(&dir).map_err(|e| diagnostics(&e))).await?
        } else {
            let req: ValidateRequest = parse_json(&body)?;
            validate_files(Arc::clone(&self.reloader), req.files).await?
        };
        let errors = result.err().unwrap_or_default();
        if !errors.is_empty() {
            audit.reason = Some("policy_invalid");
        }
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({ "valid": errors.is_empty(), "errors": errors }),
        ))
    }

    fn policy_version(&self) -> Option<String> {
        self.policy_version
            .as_ref()
            .map(|f| f(&self.shared.policy.current()))
    }

    fn metrics(&self) -> Result<Response<AdminBody>, ApiError> {
        let encode = self.metrics.as_ref().ok_or(ApiError::MetricsUnavailable)?;
        let mut resp = Response::new(Full::new(Bytes::from(encode())));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        Ok(resp)
    }

    /// 200 when the policy set is loaded and the secrets store is open (both
    /// hold once the app is built) and the server is not shutting down.
    /// Provider states are informational: an IdP outage must not take the
    /// proxy out of rotation (tokens of other providers, and cached keys,
    /// still verify).
    fn readyz(&self) -> Response<AdminBody> {
        let shutting_down = *self.shutdown.borrow();
        let providers: Vec<_> = self
            .shared
            .identity
            .status()
            .into_iter()
            .map(|p| serde_json::json!({"name": p.name, "state": p.state}))
            .collect();
        let body = serde_json::json!({
            "ready": !shutting_down,
            "policy": "loaded",
            "policy_last_reload": if self.reloader.status().last_error.is_some() { "error" } else { "ok" },
            "secrets_store": if self.shared.secrets.persistent() { "file" } else { "memory" },
            // Informational: a replica serves with its last known credentials
            // while the state store is down, so it stays ready.
            "state_store": self.shared.fleet.as_ref().map(|f| if f.is_up() { "ok" } else { "degraded: state store unreachable" }),
            "providers": providers,
            "shutting_down": shutting_down,
        });
        let status = if shutting_down {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        json_response(status, &body)
    }

    fn spools_status(&self) -> BTreeMap<String, serde_json::Value> {
        self.shared
            .spools
            .iter()
            .map(|(name, s)| (name.clone(), s.status()))
            .collect()
    }

    fn spool(&self, name: &str) -> Result<&crate::spool::Spool, ApiError> {
        self.shared
            .spools
            .get(name)
            .map(|s| s.as_ref())
            .ok_or_else(|| ApiError::BadRequest {
                code: "unknown_spool",
                message: format!(
                    "no spool for that upstream; spooled upstreams: {}",
                    self.shared
                        .spools
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    fn throttle_status(&self) -> serde_json::Value {
        let t = &self.throttle;
        let c = t.counters();
        serde_json::json!({
            "enabled": t.config().enabled,
            "tracked_peers": t.tracked_peers(),
            "global_exhausted": t.global_exhausted(Instant::now()),
            "failures": c.failures.load(Ordering::Relaxed),
            "lockouts": c.lockouts.load(Ordering::Relaxed),
            "throttled_peer": c.throttled_peer.load(Ordering::Relaxed),
            "throttled_global": c.throttled_global.load(Ordering::Relaxed),
            "passed_known_or_signed": c.passed_known.load(Ordering::Relaxed),
        })
    }

    fn status(&self) -> Response<AdminBody> {
        let secrets = &self.shared.secrets;
        let c = &self.counters;
        let body = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "providers": self.shared.identity.status(),
            "policy": {
                "dir": self.shared.policy.dir().display().to_string(),
                "version": self.policy_version(),
                "reload": self.reloader.status(),
            },
            "secrets": {
                "store": if secrets.persistent() { "file" } else { "memory" },
                "path": secrets.path().map(|p| p.display().to_string()),
                "encrypted": secrets.encrypted(),
                "credentials": secrets.list(),
                "counters": secrets.counters(),
            },
            "proxy": {
                "memory_budget_bytes": self.shared.config.server.memory_budget.as_u64(),
                "memory_in_use_bytes": self.shared.budget.in_use_bytes(),
                "spools": self.spools_status(),
            },
            "admin": {
                "requests": c.requests.load(Ordering::Relaxed),
                "unauthenticated": c.unauthenticated.load(Ordering::Relaxed),
                "forbidden": c.forbidden.load(Ordering::Relaxed),
                "failed": c.failed.load(Ordering::Relaxed),
                "throttled": c.throttled.load(Ordering::Relaxed),
                "auth_throttle": self.throttle_status(),
            },
            "fleet": self.shared.fleet.as_ref().map(|f| f.status()),
        });
        json_response(StatusCode::OK, &body)
    }
}

fn yes() -> bool {
    true
}

/// Body of `POST /admin/v1/spools/{upstream}/purge`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    /// Must be true: a purge cannot be undone.
    #[serde(default)]
    confirm: bool,
    /// Purge the dead letters instead of the queue.
    #[serde(default)]
    dead: bool,
}

fn spool_failed(e: crate::spool::SpoolOpError) -> ApiError {
    tracing::error!(error = %e, "spool operation failed");
    ApiError::Internal
}

/// Body of `POST /admin/v1/secrets/{name}/rotate`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    /// Parsed by `Secret`'s own `Deserialize`: no intermediate copy.
    value: Secret,
    #[serde(default)]
    grace: Option<String>,
    #[serde(default = "yes")]
    verify: bool,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
    /// Create the credential when no credential of that name exists. Without
    /// it an unknown name is refused, so a typo never creates a stray
    /// credential while the real one stays unrotated.
    #[serde(default)]
    create: bool,
}

#[derive(Serialize)]
struct VerifyView {
    upstream: String,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl VerifyView {
    fn from_outcome(upstream: &str, o: &ProbeOutcome) -> Self {
        let (status, detail) = match o {
            ProbeOutcome::Accepted { status } | ProbeOutcome::Rejected { status } => {
                (Some(*status), None)
            }
            ProbeOutcome::Unavailable { detail, .. } => (None, Some(detail.clone())),
        };
        VerifyView {
            upstream: upstream.to_string(),
            result: o.label(),
            status,
            detail,
        }
    }
}

#[derive(Serialize)]
struct RotateResponse<'a> {
    #[serde(flatten)]
    rotation: &'a crate::secrets::Rotation,
    verify: Option<VerifyView>,
    forced: bool,
}

/// Body of `POST /admin/v1/policies/validate` (empty body: the configured dir).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateRequest {
    /// File name → YAML text.
    files: BTreeMap<String, String>,
}

enum Bearer {
    Missing,
    Malformed,
    Token(zeroize::Zeroizing<String>),
}

fn bearer(headers: &HeaderMap) -> Bearer {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(v) = values.next() else {
        return Bearer::Missing;
    };
    if values.next().is_some() || v.len() > MAX_TOKEN_BYTES {
        return Bearer::Malformed;
    }
    let Ok(s) = v.to_str() else {
        return Bearer::Malformed;
    };
    let Some((scheme, token)) = s.split_once(' ') else {
        return Bearer::Malformed;
    };
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Bearer::Malformed;
    }
    Bearer::Token(zeroize::Zeroizing::new(token.to_string()))
}

/// Read the body into one zeroizing buffer: allocated once (the declared
/// length, or the cap for a chunked body) and never grown, so no partial copy
/// is left behind by a reallocation. Over the cap: 413. Slower than
/// `timeout`: 408. A non-empty body must be `application/json` (415).
async fn read_body(req: Request<Incoming>, timeout: Duration) -> Result<BodyBuf, ApiError> {
    let declared = match req.headers().get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(|l| l.parse::<u64>().ok()).ok_or(
            ApiError::BadRequest {
                code: "invalid_body",
                message: "invalid Content-Length".into(),
            },
        )?),
    };
    if declared.is_some_and(|l| l > MAX_BODY as u64) {
        return Err(ApiError::BodyTooLarge);
    }
    let json = is_json(req.headers());
    let capacity = declared.map_or(MAX_BODY, |l| l as usize);
    let mut buf: BodyBuf = Zeroizing::new(Vec::with_capacity(capacity));
    let capacity = buf.capacity().min(MAX_BODY);
    let mut body = req.into_body();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ApiError::BadRequest {
                code: "body_read",
                message: "cannot read the request body".into(),
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > capacity {
                    return Err(ApiError::BodyTooLarge);
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout)??;
    if !buf.is_empty() && !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(buf)
}

/// True when the one `Content-Type` is `application/json` (any case), with
/// no charset or `charset=utf-8` (RFC 8259: JSON is UTF-8).
fn is_json(headers: &HeaderMap) -> bool {
    let mut all = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return false;
    };
    let Ok(v) = v.to_str() else {
        return false;
    };
    let mut parts = v.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        && parts.all(|p| match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            Some(_) => true,
            None => p.trim().is_empty(),
        })
}

/// Parse a JSON body. Error messages never quote the body: only missing field
/// names (ours) and positions.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        let what = if text.starts_with("missing field") {
            text.split(" at line")
                .next()
                .unwrap_or("missing field")
                .to_string()
        } else {
            match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    "malformed JSON".into()
                }
                serde_json::error::Category::Data => "unexpected field or field type".into(),
                serde_json::error::Category::Io => "unreadable body".into(),
            }
        };
        ApiError::BadRequest {
            code: "invalid_body",
            message: format!(
                "invalid request body: {what} (line {}, column {})",
                e.line(),
                e.column()
            ),
        }
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::Internal)
}

fn valid_policy_file_name(n: &str) -> bool {
    n.len() <= 128
        && !n.starts_with('.')
        && (n.ends_with(".yaml") || n.ends_with(".yml"))
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Validate proposed policy files in a private temp directory (dry run).
async fn validate_files(
    reloader: Arc<Reloader>,
    files: BTreeMap<String, String>,
) -> Result<Result<(), Vec<DiagnosticView>>, ApiError> {
    if files.is_empty() || files.len() > MAX_VALIDATE_FILES {
        return Err(ApiError::BadRequest {
            code: "invalid_body",
            message: format!("files must hold 1 to {MAX_VALIDATE_FILES} policy files"),
        });
    }
    if let Some(bad) = files.keys().find(|n| !valid_policy_file_name(n)) {
        let _ = bad;
        return Err(ApiError::BadRequest {
            code: "invalid_file_name",
            message: "file names must be plain *.yaml or *.yml names of A-Z a-z 0-9 . _ -".into(),
        });
    }
    blocking(move || {
        let dir = std::env::temp_dir().join(format!("spangate-validate-{}", uuid::Uuid::new_v4()));
        let write = || -> std::io::Result<()> {
            let mut b = std::fs::DirBuilder::new();
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            b.create(&dir)?;
            for (name, text) in &files {
                std::fs::write(dir.join(name), text)?;
            }
            Ok(())
        };
        let out = match write() {
            Ok(()) => reloader.validate(&dir).map_err(|e| {
                diagnostics(&e)
                    .into_iter()
                    .map(|mut d| {
                        d.file = strip_dir(&d.file, &dir);
                        d
                    })
                    .collect()
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot write policy files for validation");
                Err(vec![DiagnosticView {
                    file: String::new(),
                    line: 0,
                    column: 0,
                    message: "the server could not stage the files for validation".into(),
                }])
            }
        };
        let _ = std::fs::remove_dir_all(&dir);
        out
    })
    .await
}

fn strip_dir(file: &str, dir: &Path) -> String {
    Path::new(file)
        .strip_prefix(dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| file.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let get = Method::GET;
        assert_eq!(
            Route::parse(&get, "/admin/v1/secrets").ok(),
            Some(Route::ListSecrets)
        );
        assert_eq!(
            Route::parse(&get, "/admin/v1/secrets/lp-prod").ok(),
            Some(Route::GetSecret("lp-prod".into()))
        );
        assert_eq!(
            Route::parse(&Method::DELETE, "/admin/v1/secrets/lp/versions/3").ok(),
            Some(Route::Retire("lp".into(), 3))
        );
        assert!(matches!(
            Route::parse(&get, "/admin/v1/secrets/lp/rotate"),
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        ));
        assert!(matches!(
            Route::parse(&get, "/admin/v1/secrets/a%2Fb"),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            Route::parse(&Method::DELETE, "/admin/v1/secrets/lp/versions/x"),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            Route::parse(&get, "/nope"),
            Err(ApiError::NotFound)
        ));
    }

    #[test]
    fn json_errors_do_not_echo_values() {
        let r: Result<RotateRequest, _> = parse_json(br#"{"value": 12345678, "grace": "1m"}"#);
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!msg.contains("12345678"), "{msg}");
        let r: Result<RotateRequest, _> = parse_json(br#"{"valu": "tok-abcdef"}"#);
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            !msg.contains("tok-abcdef") && !msg.contains("valu"),
            "{msg}"
        );
        let r: Result<RotateRequest, _> = parse_json(br#"{"grace": "1m"}"#);
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("missing field `value`"), "{msg}");
    }

    #[test]
    fn rotate_value_is_unescaped_into_the_secret() {
        let body: BodyBuf =
            Zeroizing::new(br#"{"value": "q\"uote\\back\u0021", "verify": false}"#.to_vec());
        let r: RotateRequest = parse_json(&body).expect("parses");
        assert_eq!(r.value.expose(), "q\"uote\\back!");
        assert!(!r.verify);
        let r: Result<RotateRequest, _> = parse_json(br#"{"value": "\ud800"}"#);
        assert!(matches!(
            r,
            Err(ApiError::BadRequest {
                code: "invalid_body",
                ..
            })
        ));
    }

    #[test]
    fn json_content_types() {
        let ct = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_str(v).expect("header"),
            );
            is_json(&h)
        };
        assert!(ct("application/json"));
        assert!(ct("Application/JSON; charset=UTF-8"));
        assert!(ct("application/json;charset=\"utf-8\""));
        assert!(!ct("application/json; charset=latin1"));
        assert!(!ct("text/plain"));
        assert!(!ct("application/jsonx"));
        assert!(!ct("application/x-www-form-urlencoded"));
        assert!(!is_json(&HeaderMap::new()));
        let mut two = HeaderMap::new();
        two.append(header::CONTENT_TYPE, "application/json".parse().expect("v"));
        two.append(header::CONTENT_TYPE, "text/plain".parse().expect("v"));
        assert!(!is_json(&two));
    }

    #[test]
    fn get_routes_answer_head_and_allow_lists_it() {
        assert_eq!(
            Route::parse(&Method::HEAD, "/healthz").ok(),
            Some(Route::Healthz)
        );
        assert!(matches!(
            Route::parse(&Method::POST, "/admin/v1/secrets"),
            Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" })
        ));
        assert!(matches!(
            Route::parse(&Method::HEAD, "/admin/v1/policies/reload"),
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        ));
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert!(matches!(bearer(&h), Bearer::Missing));
        h.insert(
            header::AUTHORIZATION,
            http::HeaderValue::from_static("Basic abc"),
        );
        assert!(matches!(bearer(&h), Bearer::Malformed));
        h.insert(
            header::AUTHORIZATION,
            http::HeaderValue::from_static("bearer tok"),
        );
        assert!(matches!(bearer(&h), Bearer::Token(t) if t.as_str() == "tok"));
    }

    #[test]
    fn policy_file_names() {
        assert!(valid_policy_file_name("a.yaml"));
        assert!(valid_policy_file_name("team-x_1.yml"));
        assert!(!valid_policy_file_name("../a.yaml"));
        assert!(!valid_policy_file_name(".hidden.yaml"));
        assert!(!valid_policy_file_name("a.json"));
    }
}
