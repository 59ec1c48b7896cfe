//! The CLI side of the admin API: `spangate secrets ...` and `spangate policy
//! reload|validate` are thin clients of the admin endpoints. Clap-free: the
//! binary maps its arguments to an [`AdminCommand`] and calls [`run`].
//!
//! A new credential value never comes from the command line: argv is visible
//! to every local user (`ps`, `/proc/<pid>/cmdline`) and lands in shell
//! history. It comes from an environment variable (`--value-env VAR`), a file
//! (`--value-file PATH`) or standard input.

use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::client::{ClientOptions, HttpClient, OutBody};
use crate::secrets::{Secret, check_value};

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
    #[error("admin API error {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Reason code.
        code: String,
        /// Server message.
        message: String,
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

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    message: String,
    #[serde(default)]
    errors: Vec<Diag>,
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
        } => {
            let value = read_value(&value).await?;
            let body = serde_json::json!({
                "value": value.expose(),
                "grace": grace,
                "verify": verify,
                "force": force,
                "upstream": upstream,
                "not_after": not_after,
            });
            let body = Zeroizing::new(
                serde_json::to_vec(&body)
                    .map_err(|e| AdminClientError::BadResponse(e.to_string()))?,
            );
            drop(value);
            let r: RotateView = client
                .call(
                    Method::POST,
                    &format!("/admin/v1/secrets/{name}/rotate"),
                    Some(Bytes::from(body.to_vec())),
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

async fn read_value(src: &ValueSource) -> Result<Secret, AdminClientError> {
    let value = match src {
        ValueSource::Env(var) => Zeroizing::new(std::env::var(var).map_err(|_| {
            AdminClientError::Value(format!("environment variable {var} is not set"))
        })?),
        ValueSource::File(p) => {
            let text = tokio::fs::read_to_string(p)
                .await
                .map_err(|e| AdminClientError::File {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?;
            trim_newline(Zeroizing::new(text))
        }
        ValueSource::Stdin => {
            let text = tokio::task::spawn_blocking(|| {
                let mut buf = Zeroizing::new(String::new());
                std::io::stdin()
                    .take(crate::secrets::MAX_SECRET_BYTES as u64 + 2)
                    .read_to_string(&mut buf)
                    .map(|_| buf)
            })
            .await
            .map_err(|_| AdminClientError::Value("cannot read standard input".into()))?
            .map_err(|e| AdminClientError::Value(format!("cannot read standard input: {e}")))?;
            trim_newline(text)
        }
    };
    check_value(&value)
        .map_err(|reason| AdminClientError::Value(format!("invalid value ({reason})")))?;
    Ok(Secret::new(value.to_string()))
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

struct Client {
    http: HttpClient,
    base: String,
    token: Option<Secret>,
}

impl Client {
    fn new(admin_url: &str, token: Option<Secret>) -> Result<Self, AdminClientError> {
        let bad = |reason| AdminClientError::BadUrl {
            url: admin_url.to_string(),
            reason,
        };
        let url = url::Url::parse(admin_url).map_err(|_| bad("not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("no query or fragment allowed"));
        }
        let http = HttpClient::new(ClientOptions::default()).map_err(|e| {
            AdminClientError::Unreachable {
                url: admin_url.to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            http,
            base: admin_url.trim_end_matches('/').to_string(),
            token,
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T, AdminClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.token {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
                AdminClientError::Value("the admin token is not a valid header value".into())
            })?;
            v.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, v);
        }
        let req = req
            .body(OutBody::new(body.unwrap_or_default()))
            .map_err(|_| AdminClientError::BadUrl {
                url: self.base.clone(),
                reason: "cannot build a request for this URL",
            })?;
        let resp = self
            .http
            .send(req, CALL_TIMEOUT, 4 << 20)
            .await
            .map_err(|e| AdminClientError::Unreachable {
                url: self.base.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status();
        let body = resp.into_body();
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| AdminClientError::BadResponse(e.to_string()));
        }
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
            },
        })
    }
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
    fn newline_trimmed_once() {
        assert_eq!(trim_newline(Zeroizing::new("a\r\n".into())).as_str(), "a");
        assert_eq!(trim_newline(Zeroizing::new("a\n\n".into())).as_str(), "a\n");
    }
}
