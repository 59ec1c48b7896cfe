//! The CLI side of the admin API: `spangate secrets ...` and `spangate policy
//! reload|validate` are thin clients of the admin endpoints. Clap-free: the
//! binary maps its arguments to an [`AdminCommand`] and calls [`run`].
//!
//! A new credential value never comes from the command line: argv is visible
//! to every local user (`ps`, `/proc/<pid>/cmdline`) and lands in shell
//! history. It comes from an environment variable (`--value-env VAR`), a file
//! (`--value-file PATH`) or standard input.
//!
//! The value is read into a zeroizing buffer allocated once (files and stdin
//! are read unbuffered, so no library buffer holds it), and the request body
//! is serialized into another zeroizing buffer that hyper sends from without
//! copying it into a `Vec` of its own (`Bytes::from_owner`). See
//! [`read_value`] for what is not covered.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::client::{ClientOptions, HttpClient, OutBody};
use crate::secrets::{MAX_SECRET_BYTES, Secret, check_value, read_bounded, zeroizing_utf8};

/// Default admin API URL.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9901";
/// Environment variable holding the admin token.
pub const TOKEN_ENV: &str = "SPANGATE_ADMIN_TOKEN";
/// Timeout of one admin call (a rotation includes the upstream probe).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where `secrets rotate` reads the new value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// `--value-env VAR`.
    Env(String),
    /// `--value-file PATH` (one trailing newline trimmed).
    File(PathBuf),
    /// Standard input (one trailing newline trimmed).
    Stdin,
}

/// One admin CLI command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// `spangate secrets list`.
    SecretsList,
    /// `spangate secrets show NAME`.
    SecretsShow {
        /// Credential name.
        name: String,
    },
    /// `spangate secrets rotate NAME [--value-env VAR | --value-file PATH] [--grace 10m]
    /// [--no-verify] [--force] [--upstream NAME] [--not-after RFC3339]`.
    SecretsRotate {
        /// Credential name.
        name: String,
        /// Where the new value comes from.
        value: ValueSource,
        /// Grace period of the old value (server default when None).
        grace: Option<String>,
        /// Probe the upstream with the new value first (default true).
        verify: bool,
        /// Activate even if the probe fails.
        force: bool,
        /// Upstream to probe (needed when several are configured).
        upstream: Option<String>,
        /// Expiry of the new value (RFC 3339).
        not_after: Option<String>,
        /// Create the credential if it does not exist (otherwise an unknown
        /// name is refused by the server).
        create: bool,
    },
    /// `spangate secrets rollback NAME`.
    SecretsRollback {
        /// Credential name.
        name: String,
    },
    /// `spangate secrets retire NAME VERSION`.
    SecretsRetire {
        /// Credential name.
        name: String,
        /// Version to retire.
        version: u64,
    },
    /// `spangate policy reload`.
    PolicyReload,
    /// `spangate policy validate --remote [FILE...]`: validate files on the
    /// server (none: the server's configured directory).
    PolicyValidate {
        /// Local policy files to send.
        files: Vec<PathBuf>,
    },
    /// `spangate status`.
    Status,
}

/// Errors of the admin client. Never contain a token or value.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    /// The `--admin` URL is not usable.
    #[error("invalid admin URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Connection or timeout.
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// 401.
    #[error("the admin API needs a valid token ({code}): set {TOKEN_ENV} or pass --token")]
    Unauthenticated {
        /// Reason code from the server.
        code: String,
    },
    /// 403.
    #[error("not allowed: {message}")]
    Forbidden {
        /// Server message (names the missing permission).
        message: String,
    },
    /// Any other error answer.
    #[error("admin API error {status} {code}: {message}{}", request_id_suffix(.request_id))]
    Api {
        /// HTTP status.
        status: u16,
        /// Reason code.
        code: String,
        /// Server message.
        message: String,
        /// The server's `x-request-id` (also in its audit line).
        request_id: Option<String>,
    },
    /// The policy is invalid (reload refused or validation failed).
    #[error("policy is invalid:\n{0}")]
    PolicyInvalid(String),
    /// The new value cannot be read or is unusable.
    #[error("cannot use the new value: {0}")]
    Value(String),
    /// A local file cannot be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected response from the admin API: {0}")]
    BadResponse(String),
}

fn request_id_suffix(id: &Option<String>) -> String {
    id.as_ref()
        .map(|id| format!(" (request id {id})"))
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    message: String,
    #[serde(default)]
    errors: Vec<Diag>,
    #[serde(default)]
    request_id: Option<String>,
}

/// Body of a rotate call, serialized from borrowed fields.
#[derive(Serialize)]
struct RotateBody<'a> {
    value: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    grace: Option<&'a str>,
    verify: bool,
    force: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<&'a str>,
    /// Sent only when true, so the body stays what older servers accept.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    create: bool,
}

impl RotateBody<'_> {
    /// Serialize into a zeroizing buffer of exactly the right size.
    fn to_zeroizing_json(&self) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
        crate::secrets::json::to_zeroizing_json(self, false, 0)
    }
}

#[derive(Deserialize)]
struct Diag {
    file: String,
    line: usize,
    column: usize,
    message: String,
}

fn render_diags(d: &[Diag]) -> String {
    d.iter()
        .map(|d| format!("  {}:{}:{}: {}", d.file, d.line, d.column, d.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run one admin command against `admin_url` and return its human output.
pub async fn run(
    cmd: AdminCommand,
    admin_url: &str,
    token: Option<Secret>,
) -> Result<String, AdminClientError> {
    let client = Client::new(admin_url, token)?;
    match cmd {
        AdminCommand::SecretsList => {
            #[derive(Deserialize)]
            struct List {
                credentials: Vec<CredentialView>,
            }
            let list: List = client.call(Method::GET, "/admin/v1/secrets", None).await?;
            Ok(render_list(&list.credentials))
        }
        AdminCommand::SecretsShow { name } => {
            let c: CredentialView = client
                .call(Method::GET, &format!("/admin/v1/secrets/{name}"), None)
                .await?;
            Ok(render_credential(&c))
        }
        AdminCommand::SecretsRotate {
            name,
            value,
            grace,
            verify,
            force,
            upstream,
            not_after,
            create,
        } => {
            let value = read_value(&value).await?;
            let body = RotateBody {
                value: value.expose(),
                grace: grace.as_deref(),
                verify,
                force,
                upstream: upstream.as_deref(),
                not_after: not_after.as_deref(),
                create,
            }
            .to_zeroizing_json()
            .map_err(|e| AdminClientError::Value(format!("cannot encode the request: {e}")))?;
            drop(value);
            // The body's bytes are wiped when the last `Bytes` handle drops.
            let r: RotateView = client
                .call(
                    Method::POST,
                    &format!("/admin/v1/secrets/{name}/rotate"),
                    Some(Bytes::from_owner(body)),
                )
                .await?;
            Ok(render_rotation(&r))
        }
        AdminCommand::SecretsRollback { name } => {
            #[derive(Deserialize)]
            struct R {
                name: String,
                from_version: u64,
                from_fingerprint: String,
                to_version: u64,
                to_fingerprint: String,
            }
            let r: R = client
                .call(
                    Method::POST,
                    &format!("/admin/v1/secrets/{name}/rollback"),
                    Some(Bytes::new()),
                )
                .await?;
            Ok(format!(
                "rolled back {}: v{} (sha256:{}) retired, v{} (sha256:{}) is current again\n",
                r.name, r.from_version, r.from_fingerprint, r.to_version, r.to_fingerprint
            ))
        }
        AdminCommand::SecretsRetire { name, version } => {
            #[derive(Deserialize)]
            struct R {
                name: String,
                version: u64,
                fingerprint: String,
                changed: bool,
            }
            let r: R = client
                .call(
                    Method::DELETE,
                    &format!("/admin/v1/secrets/{name}/versions/{version}"),
                    None,
                )
                .await?;
            Ok(if r.changed {
                format!(
                    "retired {} v{} (sha256:{})\n",
                    r.name, r.version, r.fingerprint
                )
            } else {
                format!(
                    "{} v{} (sha256:{}) was already retired\n",
                    r.name, r.version, r.fingerprint
                )
            })
        }
        AdminCommand::PolicyReload => {
            #[derive(Deserialize)]
            struct R {
                version: Option<String>,
            }
            let r: R = client
                .call(
                    Method::POST,
                    "/admin/v1/policies/reload",
                    Some(Bytes::new()),
                )
                .await?;
            Ok(match r.version {
                Some(v) => format!("policy reloaded (version {v})\n"),
                None => "policy reloaded\n".into(),
            })
        }
        AdminCommand::PolicyValidate { files } => {
            let body = if files.is_empty() {
                Bytes::new()
            } else {
                let mut map = serde_json::Map::new();
                for f in &files {
                    let text =
                        tokio::fs::read_to_string(f)
                            .await
                            .map_err(|e| AdminClientError::File {
                                path: f.display().to_string(),
                                reason: e.to_string(),
                            })?;
                    let name = f
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    map.insert(name, text.into());
                }
                Bytes::from(
                    serde_json::to_vec(&serde_json::json!({ "files": map })).unwrap_or_default(),
                )
            };
            #[derive(Deserialize)]
            struct R {
                valid: bool,
                errors: Vec<Diag>,
            }
            let r: R = client
                .call(Method::POST, "/admin/v1/policies/validate", Some(body))
                .await?;
            if r.valid {
                Ok("policy is valid\n".into())
            } else {
                Err(AdminClientError::PolicyInvalid(render_diags(&r.errors)))
            }
        }
        AdminCommand::Status => {
            let v: serde_json::Value = client.call(Method::GET, "/admin/v1/status", None).await?;
            let mut s = serde_json::to_string_pretty(&v)
                .map_err(|e| AdminClientError::BadResponse(e.to_string()))?;
            s.push('\n');
            Ok(s)
        }
    }
}

/// Read the token from `--token` or [`TOKEN_ENV`] (helper for the binary).
pub fn token_from(flag: Option<String>) -> Option<Secret> {
    flag.or_else(|| std::env::var(TOKEN_ENV).ok())
        .filter(|t| !t.is_empty())
        .map(Secret::new)
}

/// Read the new value.
///
/// Covered: the bytes land in one zeroizing buffer, allocated once and never
/// grown; files and stdin are read through an unbuffered file descriptor
/// (`std::io::Stdin` keeps its own 8 KiB buffer, which is never wiped); the
/// buffer becomes the `Secret` without a copy.
/// Not covered: `--value-env` (the process environment keeps the original
/// for the process's life, and `std::env::var` copies it), the kernel's pipe
/// and page-cache buffers, and the sending side (see [`run`]).
async fn read_value(src: &ValueSource) -> Result<Secret, AdminClientError> {
    let limit = MAX_SECRET_BYTES + 2; // value + "\r\n"
    let value = match src {
        ValueSource::Env(var) => Zeroizing::new(std::env::var(var).map_err(|_| {
            AdminClientError::Value(format!("environment variable {var} is not set"))
        })?),
        ValueSource::File(p) => {
            let path = p.clone();
            let bytes = tokio::task::spawn_blocking(move || {
                std::fs::File::open(&path).and_then(|mut f| read_bounded(&mut f, limit))
            })
            .await
            .map_err(|_| AdminClientError::Value("cannot read the value file".into()))?
            .map_err(|e| AdminClientError::File {
                path: p.display().to_string(),
                reason: e.to_string(),
            })?;
            trim_newline(utf8(bytes)?)
        }
        ValueSource::Stdin => {
            let bytes = tokio::task::spawn_blocking(move || {
                let mut input = unbuffered_stdin()?;
                read_bounded(&mut input, limit)
            })
            .await
            .map_err(|_| AdminClientError::Value("cannot read standard input".into()))?
            .map_err(|e| AdminClientError::Value(format!("cannot read standard input: {e}")))?;
            trim_newline(utf8(bytes)?)
        }
    };
    check_value(&value)
        .map_err(|reason| AdminClientError::Value(format!("invalid value ({reason})")))?;
    Ok(Secret::from_zeroizing(value))
}

fn utf8(bytes: Zeroizing<Vec<u8>>) -> Result<Zeroizing<String>, AdminClientError> {
    zeroizing_utf8(bytes).ok_or_else(|| AdminClientError::Value("the value is not UTF-8".into()))
}

/// Standard input as an unbuffered reader (a duplicate of fd 0 on Unix).
#[cfg(unix)]
fn unbuffered_stdin() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    Ok(std::fs::File::from(fd))
}

/// Standard input (buffered by std on this platform).
#[cfg(not(unix))]
fn unbuffered_stdin() -> std::io::Result<std::io::Stdin> {
    Ok(std::io::stdin())
}

fn trim_newline(mut s: Zeroizing<String>) -> Zeroizing<String> {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

/// One admin API call returning its JSON answer (for verbs that render it
/// themselves, such as `spangate spool`).
pub async fn call_json(
    admin_url: &str,
    token: Option<Secret>,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, AdminClientError> {
    let client = Client::new(admin_url, token)?;
    client
        .call(method, path, body.map(|b| Bytes::from(b.to_string())))
        .await
}

struct Client {
    http: HttpClient,
    base: String,
    /// `--admin unix:/path`: the admin API's Unix socket.
    unix: Option<std::path::PathBuf>,
    token: Option<Secret>,
}

impl Client {
    fn new(admin_url: &str, token: Option<Secret>) -> Result<Self, AdminClientError> {
        let bad = |reason| AdminClientError::BadUrl {
            url: admin_url.to_string(),
            reason,
        };
        let http = HttpClient::new(ClientOptions::default()).map_err(|e| {
            AdminClientError::Unreachable {
                url: admin_url.to_string(),
                reason: e.to_string(),
            }
        })?;
        if let Some(path) = admin_url.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("unix: needs a socket path"));
            }
            return Ok(Self {
                http,
                base: admin_url.to_string(),
                unix: Some(std::path::PathBuf::from(path)),
                token,
            });
        }
        let url = url::Url::parse(admin_url).map_err(|_| bad("not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("no query or fragment allowed"));
        }
        Ok(Self {
            http,
            base: admin_url.trim_end_matches('/').to_string(),
            unix: None,
            token,
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T, AdminClientError> {
        let url = match &self.unix {
            Some(_) => format!("http://admin{path}"),
            None => format!("{}{}", self.base, path),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, bearer_header(t)?);
        }
        let req = req
            .body(OutBody::new(body.unwrap_or_default()))
            .map_err(|_| AdminClientError::BadUrl {
                url: self.base.clone(),
                reason: "cannot build a request for this URL",
            })?;
        let sent = match &self.unix {
            Some(sock) => send_unix(sock, req).await,
            None => self
                .http
                .send(req, CALL_TIMEOUT, 4 << 20)
                .await
                .map_err(|e| e.to_string()),
        };
        let resp = sent.map_err(|reason| AdminClientError::Unreachable {
            url: self.base.clone(),
            reason,
        })?;
        let status = resp.status();
        let resp_request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.into_body();
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| AdminClientError::BadResponse(e.to_string()));
        }
        let request_id = resp_request_id.clone();
        let err: ErrorBody = serde_json::from_slice(&body).map_err(|_| {
            AdminClientError::BadResponse(format!("HTTP {status} without a JSON error body"))
        })?;
        Err(match status.as_u16() {
            401 => AdminClientError::Unauthenticated { code: err.error },
            403 => AdminClientError::Forbidden {
                message: err.message,
            },
            _ if err.error == "policy_invalid" => {
                AdminClientError::PolicyInvalid(render_diags(&err.errors))
            }
            s => AdminClientError::Api {
                status: s,
                code: err.error,
                message: err.message,
                request_id: err.request_id.or(request_id),
            },
        })
    }
}

/// One request over the admin API's Unix socket (HTTP/1.1), body capped at 4 MiB.
#[cfg(unix)]
async fn send_unix(
    sock: &std::path::Path,
    req: Request<OutBody>,
) -> Result<http::Response<Bytes>, String> {
    use http_body_util::BodyExt;
    let work = async {
        let stream = tokio::net::UnixStream::connect(sock)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = http_body_util::Limited::new(body, 4 << 20)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body))
    };
    tokio::time::timeout(CALL_TIMEOUT, work)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[cfg(not(unix))]
async fn send_unix(
    _sock: &std::path::Path,
    _req: Request<OutBody>,
) -> Result<http::Response<Bytes>, String> {
    Err("Unix sockets are not supported on this platform".into())
}

/// `Authorization: Bearer <token>`, sensitive, its bytes wiped on drop.
fn bearer_header(token: &Secret) -> Result<HeaderValue, AdminClientError> {
    let t = token.expose().as_bytes();
    let mut buf = Zeroizing::new(Vec::with_capacity(7 + t.len()));
    buf.extend_from_slice(b"Bearer ");
    buf.extend_from_slice(t);
    let mut v = HeaderValue::from_maybe_shared(Bytes::from_owner(buf)).map_err(|_| {
        AdminClientError::Value("the admin token is not a valid header value".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Credential metadata as received (mirrors [`crate::secrets::CredentialInfo`]).
#[derive(Deserialize)]
struct CredentialView {
    name: String,
    current_version: u64,
    current_fingerprint: String,
    previous_version: Option<u64>,
    versions: Vec<VersionView>,
}

#[derive(Deserialize)]
struct VersionView {
    version: u64,
    fingerprint: String,
    state: String,
    created_at: String,
    grace_until: Option<String>,
    not_after: Option<String>,
    expired: bool,
}

#[derive(Deserialize)]
struct VerifyView {
    upstream: String,
    result: String,
    status: Option<u16>,
    detail: Option<String>,
}

#[derive(Deserialize)]
struct RotateView {
    name: String,
    old_version: Option<u64>,
    old_fingerprint: Option<String>,
    new_version: u64,
    new_fingerprint: String,
    grace_until: Option<String>,
    retired: Vec<u64>,
    verify: Option<VerifyView>,
    forced: bool,
}

fn render_list(list: &[CredentialView]) -> String {
    if list.is_empty() {
        return "no credentials\n".into();
    }
    let mut s = format!(
        "{:<24} {:>7}  {:<19} {:>8}  {}\n",
        "NAME", "CURRENT", "FINGERPRINT", "PREVIOUS", "GRACE UNTIL"
    );
    for c in list {
        let grace = c
            .versions
            .iter()
            .find(|v| Some(v.version) == c.previous_version)
            .and_then(|v| v.grace_until.clone())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{:<24} {:>7}  sha256:{:<12} {:>8}  {}",
            c.name,
            format!("v{}", c.current_version),
            c.current_fingerprint,
            c.previous_version
                .map_or("-".to_string(), |v| format!("v{v}")),
            grace
        );
    }
    s
}

fn render_credential(c: &CredentialView) -> String {
    let mut s = format!(
        "{} (current v{}, sha256:{})\n",
        c.name, c.current_version, c.current_fingerprint
    );
    for v in &c.versions {
        let _ = write!(
            s,
            "  v{:<5} {:<9} sha256:{}  created {}",
            v.version, v.state, v.fingerprint, v.created_at
        );
        if let Some(g) = &v.grace_until {
            let _ = write!(s, "  grace until {g}");
        }
        if let Some(n) = &v.not_after {
            let _ = write!(
                s,
                "  not after {n}{}",
                if v.expired { " (EXPIRED)" } else { "" }
            );
        }
        s.push('\n');
    }
    s
}

fn render_rotation(r: &RotateView) -> String {
    let mut s = match (&r.old_version, &r.old_fingerprint) {
        (Some(v), Some(fp)) => format!(
            "rotated {}: v{v} (sha256:{fp}) -> v{} (sha256:{})\n",
            r.name, r.new_version, r.new_fingerprint
        ),
        _ => format!(
            "created {}: v{} (sha256:{})\n",
            r.name, r.new_version, r.new_fingerprint
        ),
    };
    match (&r.grace_until, r.old_version) {
        (Some(g), Some(v)) => {
            let _ = writeln!(s, "  v{v} stays valid as previous until {g}");
        }
        (None, Some(v)) => {
            let _ = writeln!(s, "  v{v} retired at once (no grace)");
        }
        _ => {}
    }
    if !r.retired.is_empty() {
        let list: Vec<String> = r.retired.iter().map(|v| format!("v{v}")).collect();
        let _ = writeln!(s, "  retired: {}", list.join(", "));
    }
    match &r.verify {
        Some(v) => {
            let _ = write!(s, "  verify against {}: {}", v.upstream, v.result);
            if let Some(st) = v.status {
                let _ = write!(s, " (HTTP {st})");
            }
            if let Some(d) = &v.detail {
                let _ = write!(s, " ({d})");
            }
            s.push('\n');
        }
        None => s.push_str("  verify: skipped\n"),
    }
    if r.forced {
        s.push_str("  forced: activated regardless of the verify result\n");
    }
    s
}

/// `GET` an admin API path and return its JSON body (for CLI verbs that
/// render the answer themselves, e.g. `spangate deployments`).
pub async fn get_json(
    admin_url: &str,
    token: Option<Secret>,
    path: &str,
) -> Result<serde_json::Value, AdminClientError> {
    Client::new(admin_url, token)?
        .call(Method::GET, path, None)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_refused() {
        for u in ["not a url", "ftp://x", "http://127.0.0.1:9901/?q=1"] {
            assert!(
                matches!(Client::new(u, None), Err(AdminClientError::BadUrl { .. })),
                "{u}"
            );
        }
    }

    #[test]
    fn rotate_body_is_exact_json_in_a_buffer_that_never_grew() {
        let value = "q\"\\/\t\u{7f}x".repeat(50);
        let body = RotateBody {
            value: &value,
            grace: Some("1m"),
            verify: true,
            force: false,
            upstream: None,
            not_after: None,
            create: false,
        };
        let buf = body.to_zeroizing_json().expect("encode");
        let back: serde_json::Value = serde_json::from_slice(&buf).expect("json");
        assert!(
            back.get("create").is_none(),
            "create is sent only when true"
        );
        assert_eq!(back["value"], value.as_str());
        assert_eq!(back["grace"], "1m");
        assert!(back.get("upstream").is_none());
        // Worst case: every byte escaped as \u00XX.
        let ctl = "\u{1}".repeat(100);
        let body = RotateBody {
            value: &ctl,
            ..body
        };
        let buf = body.to_zeroizing_json().expect("encode");
        assert!(buf.len() > 600);
        assert_eq!(buf.len(), buf.capacity());
    }

    #[test]
    fn bearer_header_is_sensitive() {
        let v = bearer_header(&Secret::new("tok".into())).expect("header");
        assert!(v.is_sensitive());
        assert_eq!(v.as_bytes(), b"Bearer tok");
    }

    #[test]
    fn newline_trimmed_once() {
        assert_eq!(trim_newline(Zeroizing::new("a\r\n".into())).as_str(), "a");
        assert_eq!(trim_newline(Zeroizing::new("a\n\n".into())).as_str(), "a\n");
    }
}
