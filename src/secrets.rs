//! Secrets: the [`Secret`] type, versioned upstream credentials, rotation with
//! a grace period, and the store that keeps them.
//!
//! * Every named credential has versions; each version has a fingerprint
//!   (short SHA-256), created/activated times, a state (`current`, `previous`,
//!   `retired`) and an optional `not_after`.
//! * Requests read [`SecretStore::current`]: a lock-free load of an `Arc`
//!   snapshot. A request keeps the [`Credential`] it started with, so a
//!   rotation never changes a credential under a request in flight.
//! * A rotation makes the new value current and keeps the old one as
//!   `previous` for a grace period (exposed as [`Credential::previous`]); when
//!   the grace ends (or its `not_after` passes) the previous version is hidden
//!   at once and retired by [`SecretStore::expire_due`] (run by the
//!   maintenance task). A retired version keeps its metadata, never its value.
//! * The store is a file (see [`file`]) when `secrets.store` is set, optionally
//!   encrypted at rest (see [`crypto`]); otherwise it lives in memory.
//!
//! Values are never logged, serialized into responses, or put into errors.
//!
//! ## Secret values in memory
//! A new value is kept out of ordinary heap copies on its way in: the admin
//! API reads the body into one zeroizing buffer allocated once (declared
//! length, or the 64 KiB cap for a chunked body) and never grown; the rotate
//! body's `value` deserializes as a borrowed raw value unescaped straight into
//! a zeroizing buffer (see [`json`]), so neither a `String` copy nor
//! serde_json's scratch buffer ever holds it; the body buffer is wiped as soon
//! as the value is out. The CLI side is described in `admin::client`. The
//! store file is serialized (and, when encrypted, its plaintext) into
//! zeroizing buffers sized exactly by a counting pass, and read back straight
//! into [`Secret`]. The proxy's per-request credential header comes from
//! [`Secret::header_value`]: marked sensitive, wiped when hyper drops the
//! request.
//!
//! Not covered: hyper's own read and write buffers (request bytes pass
//! through the server connection's buffer; header bytes are copied into its
//! write buffer), rustls' buffers when the admin URL is https, kernel socket,
//! pipe and page-cache buffers, the process environment (`--value-env` and
//! `bootstrap: { env: ... }` values stay in it for the process's life), swap
//! and core dumps.

pub mod crypto;
pub mod file;
pub mod json;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use crypto::StoreKey;
use file::FileStore;

/// Largest accepted secret value, in bytes.
pub const MAX_SECRET_BYTES: usize = 8 * 1024;
/// Retired versions kept (metadata only) per credential; older ones are dropped.
pub const MAX_RETIRED_VERSIONS: usize = 16;
/// Longest credential name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest grace period accepted.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A secret value: redacted in `Debug`/`Display`, zeroized when the last clone
/// is dropped. Clones share one allocation (cheap per request).
#[derive(Clone)]
pub struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    /// Wrap a value.
    pub fn new(value: String) -> Self {
        Secret(Arc::new(Zeroizing::new(value)))
    }
    /// Wrap a value that is already zeroizing (moves it; no copy).
    pub fn from_zeroizing(value: Zeroizing<String>) -> Self {
        Secret(Arc::new(value))
    }
    /// The value as a sensitive HTTP header value whose bytes are wiped when
    /// the last clone of the header is dropped. (hyper still copies header
    /// bytes into its own write buffer; that copy is not wiped.)
    pub fn header_value(&self) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
        let owned = Zeroizing::new(self.0.as_bytes().to_vec());
        let mut v = http::HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(owned))?;
        v.set_sensitive(true);
        Ok(v)
    }
    /// The value, for the one place that injects it into a header.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Short SHA-256 fingerprint (safe to log).
    pub fn fingerprint(&self) -> String {
        crate::fingerprint(self.0.as_bytes())
    }
    /// Constant-time equality of two values.
    pub fn ct_eq(&self, other: &Secret) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(sha256:{})", self.fingerprint())
    }
}
impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.fingerprint())
    }
}

/// A JSON string straight into a `Secret`, for a struct field of type
/// `Secret` parsed with `serde_json::from_slice` (or `from_str`).
///
/// The value is taken as a borrowed [`serde_json::value::RawValue`] — a slice
/// of the caller's input buffer, which the caller keeps in a zeroizing buffer —
/// and unescaped by [`json::unescape`] into a zeroizing buffer of its own. No
/// `String` or `Value` copy is made, and serde_json's scratch buffer (which
/// would hold an unescaped copy of a value with escapes) is never used.
///
/// Works only with serde_json over a borrowed input: other deserializers, or
/// `serde_json::from_reader`/`from_value`, refuse it with an error rather
/// than make untracked copies.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let raw: &'de serde_json::value::RawValue = Deserialize::deserialize(d)?;
        let value = json::unescape(raw.get()).map_err(D::Error::custom)?;
        Ok(Secret::from_zeroizing(value))
    }
}

/// Check that a value can be injected as an HTTP header value and is not too
/// large. Returns a reason code on failure (never the value).
pub fn check_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("empty");
    }
    if value.len() > MAX_SECRET_BYTES {
        return Err("too_large");
    }
    if value.trim() != value {
        return Err("surrounding_whitespace");
    }
    if http::HeaderValue::from_str(value).is_err() {
        return Err("not_a_header_value");
    }
    Ok(())
}

/// Read at most `limit + 1` bytes from `r` into a zeroizing buffer that is
/// allocated once and never grows (a reallocation would leave a copy of the
/// bytes read so far in freed memory). More than `limit` bytes come back as
/// `limit + 1`, so the caller's size check refuses them. Read unbuffered
/// sources (a `File`, not `Stdin`, whose own buffer is never wiped).
pub fn read_bounded(
    r: &mut impl std::io::Read,
    limit: usize,
) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(vec![0u8; limit.saturating_add(1)]);
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Turn zeroizing bytes into a zeroizing `String` without copying them;
/// `None` (and the bytes wiped) when they are not UTF-8.
pub fn zeroizing_utf8(mut bytes: Zeroizing<Vec<u8>>) -> Option<Zeroizing<String>> {
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(s) => Some(Zeroizing::new(s)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            None
        }
    }
}

/// True when `name` is a valid credential name: 1–64 of `[A-Za-z0-9._-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Where a secret value comes from: `{ env: VAR }` or `{ file: PATH }` in YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "SecretSourceFile")]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file (trailing newline trimmed).
    File(PathBuf),
}

/// The YAML shape of [`SecretSource`]: exactly one of the two keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretSourceFile {
    env: Option<String>,
    file: Option<PathBuf>,
}

impl TryFrom<SecretSourceFile> for SecretSource {
    type Error = &'static str;
    fn try_from(f: SecretSourceFile) -> Result<Self, Self::Error> {
        match (f.env, f.file) {
            (Some(var), None) => Ok(SecretSource::Env(var)),
            (None, Some(path)) => Ok(SecretSource::File(path)),
            _ => Err("a secret source is exactly one of `env: VAR` or `file: PATH`"),
        }
    }
}

impl SecretSource {
    /// Read the value.
    pub fn read(&self, name: &str) -> Result<Secret, SecretsError> {
        let value = match self {
            SecretSource::Env(var) => {
                Zeroizing::new(std::env::var(var).map_err(|_| SecretsError::MissingEnv {
                    name: name.to_string(),
                    var: var.clone(),
                })?)
            }
            SecretSource::File(p) => {
                let file_err = |reason: String| SecretsError::File {
                    name: name.to_string(),
                    path: p.display().to_string(),
                    reason,
                };
                let bytes = std::fs::File::open(p)
                    .and_then(|mut f| read_bounded(&mut f, MAX_SECRET_BYTES + 2))
                    .map_err(|e| file_err(e.kind().to_string()))?;
                let mut text = zeroizing_utf8(bytes).ok_or_else(|| file_err("not UTF-8".into()))?;
                let keep = text.trim_end_matches(['\n', '\r']).len();
                text.truncate(keep);
                text
            }
        };
        check_value(&value).map_err(|reason| SecretsError::InvalidValue {
            name: name.to_string(),
            reason,
        })?;
        Ok(Secret::from_zeroizing(value))
    }
}

/// `secrets:` in the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Persistent store file. Unset: an in-memory store (rotations are lost on restart).
    pub store: Option<PathBuf>,
    /// Seed values by credential name (`{ env: VAR }` or `{ file: PATH }`);
    /// used only when the store has no such credential.
    pub bootstrap: BTreeMap<String, SecretSource>,
    /// Name of an environment variable holding a base64 32-byte key: encrypts
    /// the store file at rest with AES-256-GCM. Requires `store`.
    pub encryption_key_env: Option<String>,
}

impl SecretsConfig {
    /// Problems with this config, as messages (empty = valid).
    pub fn validate(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in self.bootstrap.keys() {
            if !valid_name(name) {
                out.push(format!(
                    "bootstrap.{name}: credential names are 1-{MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -"
                ));
            }
        }
        match &self.encryption_key_env {
            Some(v) if v.is_empty() => out.push("encryption_key_env must not be empty".into()),
            Some(_) if self.store.is_none() => out.push(
                "encryption_key_env needs `store` (an in-memory store is never written)".into(),
            ),
            _ => {}
        }
        out
    }

    /// Resolve relative paths against the config file's directory.
    pub fn resolve_relative(&mut self, dir: &Path) {
        if let Some(p) = &mut self.store
            && p.is_relative()
        {
            *p = dir.join(&*p);
        }
        for src in self.bootstrap.values_mut() {
            if let SecretSource::File(p) = src
                && p.is_relative()
            {
                *p = dir.join(&*p);
            }
        }
    }
}

/// Errors of the secrets module (never contain values).
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A bootstrap environment variable is not set.
    #[error("credential {name}: environment variable {var} is not set")]
    MissingEnv {
        /// Credential name.
        name: String,
        /// Variable name.
        var: String,
    },
    /// A bootstrap file cannot be read.
    #[error("credential {name}: cannot read {path}: {reason}")]
    File {
        /// Credential name.
        name: String,
        /// File path.
        path: String,
        /// I/O error kind.
        reason: String,
    },
    /// A value is empty, too large or not a valid header value.
    #[error("credential {name}: invalid value ({reason})")]
    InvalidValue {
        /// Credential name.
        name: String,
        /// Reason code from [`check_value`].
        reason: &'static str,
    },
    /// A credential name outside `[A-Za-z0-9._-]{1,64}`.
    #[error("invalid credential name")]
    InvalidName,
    /// No credential of that name.
    #[error("credential {name} not found")]
    NotFound {
        /// Credential name.
        name: String,
    },
    /// No version of that number.
    #[error("credential {name} has no version {version}")]
    UnknownVersion {
        /// Credential name.
        name: String,
        /// Version asked for.
        version: u64,
    },
    /// Retiring the current version.
    #[error(
        "credential {name}: version {version} is current and cannot be retired (rotate or roll back first)"
    )]
    CannotRetireCurrent {
        /// Credential name.
        name: String,
        /// The current version.
        version: u64,
    },
    /// Rollback without a previous version in its grace period.
    #[error(
        "credential {name}: no previous version to roll back to (none, or its grace period ended)"
    )]
    NoPrevious {
        /// Credential name.
        name: String,
    },
    /// Rotation to the value that is already current.
    #[error("credential {name}: the new value equals the current one")]
    Unchanged {
        /// Credential name.
        name: String,
    },
    /// Grace period longer than [`MAX_GRACE`].
    #[error("grace period too long (at most {max:?})", max = MAX_GRACE)]
    GraceTooLong,
    /// The store file cannot be parsed or breaks an invariant.
    #[error(
        "secrets store {path} is corrupt: {reason}; refusing to start and leaving the file untouched"
    )]
    Corrupt {
        /// Store path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An I/O operation on the store failed.
    #[error("secrets store {path}: cannot {op}: {reason}")]
    Io {
        /// Path involved.
        path: String,
        /// Operation.
        op: &'static str,
        /// I/O error kind.
        reason: String,
    },
    /// Another process holds the store's lock.
    #[error("secrets store {path} is in use by another process (lock held)")]
    Locked {
        /// Store path.
        path: String,
    },
    /// The file is encrypted but no key is configured.
    #[error(
        "secrets store {path} is encrypted; set secrets.encryption_key_env to the variable holding its key"
    )]
    EncryptedNoKey {
        /// Store path.
        path: String,
    },
    /// The configured key is not the one the file was written with.
    #[error(
        "secrets store {path} was encrypted with key sha256:{file_key}, the configured key is sha256:{configured_key}"
    )]
    WrongKey {
        /// Store path.
        path: String,
        /// Fingerprint recorded in the file.
        file_key: String,
        /// Fingerprint of the configured key.
        configured_key: String,
    },
    /// The encryption key is missing or malformed.
    #[error("secrets encryption key: {0}")]
    Key(crypto::CryptoError),
    /// Serialization or sealing failed.
    #[error("cannot encode the secrets store: {reason}")]
    Encode {
        /// What failed.
        reason: String,
    },
    /// The shared state store (Redis) cannot be reached: changes are refused
    /// until it is back (requests keep the last known credentials).
    #[error("degraded: state store unreachable; credential changes are refused until it is back")]
    StateUnavailable,
    /// Other replicas kept changing the credential while this change was
    /// being applied (optimistic retries exhausted).
    #[error("credential {name} is being changed concurrently; try again")]
    StateConflict {
        /// Credential name.
        name: String,
    },
    /// A record in the shared state store cannot be opened or breaks an invariant.
    #[error("state store record for credential {name} is unusable: {reason}")]
    StateCorrupt {
        /// Credential name.
        name: String,
        /// What is wrong (never a value).
        reason: String,
    },
}

impl SecretsError {
    /// Stable, low-cardinality reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            SecretsError::MissingEnv { .. } => "missing_env",
            SecretsError::File { .. } => "bootstrap_file",
            SecretsError::InvalidValue { .. } => "invalid_value",
            SecretsError::InvalidName => "invalid_name",
            SecretsError::NotFound { .. } => "not_found",
            SecretsError::UnknownVersion { .. } => "unknown_version",
            SecretsError::CannotRetireCurrent { .. } => "cannot_retire_current",
            SecretsError::NoPrevious { .. } => "no_previous",
            SecretsError::Unchanged { .. } => "unchanged",
            SecretsError::GraceTooLong => "grace_too_long",
            SecretsError::Corrupt { .. } => "store_corrupt",
            SecretsError::Io { .. } => "store_io",
            SecretsError::Locked { .. } => "store_locked",
            SecretsError::EncryptedNoKey { .. } => "store_encrypted_no_key",
            SecretsError::WrongKey { .. } => "store_wrong_key",
            SecretsError::Key(_) => "bad_key",
            SecretsError::Encode { .. } => "store_encode",
            SecretsError::StateUnavailable => "state_unavailable",
            SecretsError::StateConflict { .. } => "state_conflict",
            SecretsError::StateCorrupt { .. } => "state_corrupt",
        }
    }
}

// Not a `source()`: the message already prints it.
impl From<crypto::CryptoError> for SecretsError {
    fn from(e: crypto::CryptoError) -> Self {
        SecretsError::Key(e)
    }
}

/// A snapshot of one credential, held by a request for its whole life.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Credential name.
    pub name: String,
    /// Current version number.
    pub version: u64,
    /// Current value.
    pub value: Secret,
    /// The previous version while its grace period runs (used once when the
    /// upstream refuses the current value with 401/403).
    pub previous: Option<Secret>,
}

/// Lifecycle state of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Injected into upstream requests.
    Current,
    /// The version before the current one, kept during its grace period.
    Previous,
    /// No longer used; only metadata is kept.
    Retired,
}

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionOrigin {
    /// Seeded from `secrets.bootstrap`.
    Bootstrap,
    /// Set by a rotation.
    Rotate,
}

/// The stored value of a version (serialized only into the store file).
#[derive(Clone)]
struct StoredValue(Secret);

impl Serialize for StoredValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose())
    }
}
impl<'de> Deserialize<'de> for StoredValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Secret::deserialize(d).map(StoredValue)
    }
}

/// One version as persisted.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionRecord {
    version: u64,
    fingerprint: String,
    state: VersionState,
    origin: VersionOrigin,
    #[serde(with = "humantime_serde")]
    created_at: SystemTime,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    activated_at: Option<SystemTime>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    grace_until: Option<SystemTime>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    retired_at: Option<SystemTime>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    not_after: Option<SystemTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<StoredValue>,
}

impl VersionRecord {
    /// The instant the previous version stops being usable.
    fn usable_until(&self) -> Option<SystemTime> {
        match (self.grace_until, self.not_after) {
            (Some(g), Some(n)) => Some(g.min(n)),
            (g, n) => g.or(n),
        }
    }

    fn retire(&mut self, now: SystemTime) {
        self.state = VersionState::Retired;
        self.value = None;
        self.grace_until = None;
        self.retired_at = Some(now);
    }
}

/// One credential as persisted: versions in ascending order.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialRecord {
    versions: Vec<VersionRecord>,
}

impl CredentialRecord {
    fn current(&self) -> Option<&VersionRecord> {
        self.versions
            .iter()
            .find(|v| v.state == VersionState::Current)
    }
    fn previous(&self) -> Option<&VersionRecord> {
        self.versions
            .iter()
            .find(|v| v.state == VersionState::Previous)
    }
    fn prune(&mut self) {
        let retired = self
            .versions
            .iter()
            .filter(|v| v.state == VersionState::Retired)
            .count();
        let mut drop = retired.saturating_sub(MAX_RETIRED_VERSIONS);
        self.versions.retain(|v| {
            if drop > 0 && v.state == VersionState::Retired {
                drop -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// The whole persisted state.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreState {
    credentials: BTreeMap<String, CredentialRecord>,
}

impl StoreState {
    /// Invariants every loaded state must hold; a message names the first break.
    fn check(&self) -> Result<(), String> {
        for (name, rec) in &self.credentials {
            if !valid_name(name) {
                return Err(format!("invalid credential name {name:?}"));
            }
            let mut last = 0;
            let (mut current, mut previous) = (0, 0);
            for v in &rec.versions {
                if v.version <= last {
                    return Err(format!(
                        "{name}: versions not strictly ascending at {}",
                        v.version
                    ));
                }
                last = v.version;
                match (v.state, &v.value) {
                    (VersionState::Current, Some(_)) => current += 1,
                    (VersionState::Previous, Some(_)) if v.grace_until.is_some() => previous += 1,
                    (VersionState::Retired, None) => {}
                    (state, value) => {
                        return Err(format!(
                            "{name}: version {} is {state:?} {} a value",
                            v.version,
                            if value.is_some() { "with" } else { "without" }
                        ));
                    }
                }
                if let Some(value) = &v.value {
                    if value.0.fingerprint() != v.fingerprint {
                        return Err(format!(
                            "{name}: version {} does not match its fingerprint",
                            v.version
                        ));
                    }
                    if let Err(reason) = check_value(value.0.expose()) {
                        return Err(format!(
                            "{name}: version {} has an invalid value ({reason})",
                            v.version
                        ));
                    }
                }
            }
            if current != 1 || previous > 1 {
                return Err(format!(
                    "{name}: needs exactly one current version and at most one previous (has {current} and {previous})"
                ));
            }
        }
        Ok(())
    }

    fn rotate(
        &mut self,
        name: &str,
        value: Secret,
        grace: Duration,
        not_after: Option<SystemTime>,
        origin: VersionOrigin,
        now: SystemTime,
    ) -> Result<Rotation, SecretsError> {
        let rec = self.credentials.entry(name.to_string()).or_default();
        if let Some(cur) = rec.current()
            && cur.value.as_ref().is_some_and(|v| v.0.ct_eq(&value))
        {
            return Err(SecretsError::Unchanged {
                name: name.to_string(),
            });
        }
        let mut retired = Vec::new();
        let mut old = None;
        for v in &mut rec.versions {
            match v.state {
                VersionState::Previous => {
                    v.retire(now);
                    retired.push(v.version);
                }
                VersionState::Current => {
                    old = Some((v.version, v.fingerprint.clone()));
                    if grace.is_zero() {
                        v.retire(now);
                        retired.push(v.version);
                    } else {
                        v.state = VersionState::Previous;
                        v.grace_until = Some(now + grace);
                    }
                }
                VersionState::Retired => {}
            }
        }
        let version = rec.versions.last().map_or(1, |v| v.version + 1);
        let fingerprint = value.fingerprint();
        rec.versions.push(VersionRecord {
            version,
            fingerprint: fingerprint.clone(),
            state: VersionState::Current,
            origin,
            created_at: now,
            activated_at: Some(now),
            grace_until: None,
            retired_at: None,
            not_after,
            value: Some(StoredValue(value)),
        });
        rec.prune();
        Ok(Rotation {
            name: name.to_string(),
            old_version: old.as_ref().map(|o| o.0),
            old_fingerprint: old.map(|o| o.1),
            new_version: version,
            new_fingerprint: fingerprint,
            grace_until: (!grace.is_zero()).then(|| rfc3339(now + grace)),
            retired,
        })
    }
}

/// One change to one credential. Both backends (the embedded store and the
/// shared Redis state) apply it with [`StoreState::apply`], so versions,
/// grace and retirement behave the same everywhere.
#[derive(Debug, Clone)]
pub enum Change {
    /// Make a value current (see [`SecretStore::rotate`]).
    Rotate {
        /// The new value.
        value: Secret,
        /// How long the old current version stays usable.
        grace: Duration,
        /// Optional hard end of the new version.
        not_after: Option<SystemTime>,
    },
    /// Make the previous version current again.
    Rollback,
    /// Retire a version.
    Retire(u64),
    /// Retire previous versions whose grace period or `not_after` passed.
    Expire,
}

/// What a [`Change`] did.
#[derive(Debug, Clone)]
pub enum Changed {
    /// A rotation.
    Rotated(Rotation),
    /// A rollback.
    RolledBack(Rollback),
    /// A retirement.
    Retired(Retirement),
    /// Versions retired because their grace ended.
    Expired(Vec<u64>),
}

impl Change {
    /// Check the arguments of a change before it touches any store.
    pub fn validate(&self, name: &str) -> Result<(), SecretsError> {
        if !valid_name(name) {
            return Err(SecretsError::InvalidName);
        }
        if let Change::Rotate { value, grace, .. } = self {
            check_value(value.expose()).map_err(|reason| SecretsError::InvalidValue {
                name: name.to_string(),
                reason,
            })?;
            if *grace > MAX_GRACE {
                return Err(SecretsError::GraceTooLong);
            }
        }
        Ok(())
    }
}

impl StoreState {
    /// Apply `change` to credential `name`. Returns what it did and whether
    /// the state changed (an unchanged state is not written anywhere).
    pub(crate) fn apply(
        &mut self,
        name: &str,
        change: Change,
        now: SystemTime,
    ) -> Result<(Changed, bool), SecretsError> {
        match change {
            Change::Rotate {
                value,
                grace,
                not_after,
            } => self
                .rotate(name, value, grace, not_after, VersionOrigin::Rotate, now)
                .map(|r| (Changed::Rotated(r), true)),
            Change::Rollback => self
                .rollback(name, now)
                .map(|r| (Changed::RolledBack(r), true)),
            Change::Retire(version) => self.retire(name, version, now).map(|r| {
                let changed = r.changed;
                (Changed::Retired(r), changed)
            }),
            Change::Expire => {
                let mut out = Vec::new();
                if let Some(rec) = self.credentials.get_mut(name) {
                    for v in &mut rec.versions {
                        if v.state == VersionState::Previous
                            && v.usable_until().is_none_or(|u| u <= now)
                        {
                            v.retire(now);
                            out.push(v.version);
                        }
                    }
                    rec.prune();
                }
                let changed = !out.is_empty();
                Ok((Changed::Expired(out), changed))
            }
        }
    }

    fn rollback(&mut self, name: &str, now: SystemTime) -> Result<Rollback, SecretsError> {
        let rec = self
            .credentials
            .get_mut(name)
            .ok_or_else(|| SecretsError::NotFound {
                name: name.to_string(),
            })?;
        let usable = rec
            .previous()
            .and_then(|p| p.usable_until())
            .is_some_and(|until| now < until);
        if !usable {
            return Err(SecretsError::NoPrevious {
                name: name.to_string(),
            });
        }
        let (mut from, mut to) = (None, None);
        for v in &mut rec.versions {
            match v.state {
                VersionState::Current => {
                    from = Some((v.version, v.fingerprint.clone()));
                    v.retire(now);
                }
                VersionState::Previous => {
                    to = Some((v.version, v.fingerprint.clone()));
                    v.state = VersionState::Current;
                    v.grace_until = None;
                    v.activated_at = Some(now);
                }
                VersionState::Retired => {}
            }
        }
        rec.prune();
        match (from, to) {
            (Some(from), Some(to)) => Ok(Rollback {
                name: name.to_string(),
                from_version: from.0,
                from_fingerprint: from.1,
                to_version: to.0,
                to_fingerprint: to.1,
            }),
            _ => Err(SecretsError::NoPrevious {
                name: name.to_string(),
            }),
        }
    }

    fn retire(
        &mut self,
        name: &str,
        version: u64,
        now: SystemTime,
    ) -> Result<Retirement, SecretsError> {
        let rec = self
            .credentials
            .get_mut(name)
            .ok_or_else(|| SecretsError::NotFound {
                name: name.to_string(),
            })?;
        let v = rec
            .versions
            .iter_mut()
            .find(|v| v.version == version)
            .ok_or_else(|| SecretsError::UnknownVersion {
                name: name.to_string(),
                version,
            })?;
        let changed = match v.state {
            VersionState::Current => {
                return Err(SecretsError::CannotRetireCurrent {
                    name: name.to_string(),
                    version,
                });
            }
            VersionState::Previous => {
                v.retire(now);
                true
            }
            VersionState::Retired => false,
        };
        let out = Retirement {
            name: name.to_string(),
            version,
            fingerprint: v.fingerprint.clone(),
            changed,
        };
        rec.prune();
        Ok(out)
    }
}

impl StoreState {
    /// Put one credential's record in (the shared state builds one-credential states).
    pub(crate) fn insert(&mut self, name: &str, rec: CredentialRecord) {
        self.credentials.insert(name.to_string(), rec);
    }

    /// Take one credential's record out.
    pub(crate) fn take(&mut self, name: &str) -> Option<CredentialRecord> {
        self.credentials.remove(name)
    }
}

impl CredentialRecord {
    /// True when a previous version's grace (or `not_after`) has passed but
    /// it is not retired yet.
    pub(crate) fn has_lapsed_previous(&self, now: SystemTime) -> bool {
        self.previous()
            .is_some_and(|p| p.usable_until().is_none_or(|u| u <= now))
    }

    /// The highest version number the record knows (retired ones included):
    /// histories only grow, so a higher number is a later history.
    pub(crate) fn last_version(&self) -> u64 {
        self.versions.last().map_or(0, |v| v.version)
    }

    /// The invariants of a loaded record (see [`StoreState::check`]).
    pub(crate) fn check(&self, name: &str) -> Result<(), String> {
        let mut one = StoreState::default();
        one.credentials.insert(name.to_string(), self.clone());
        one.check()
    }

    /// Everything but the values, for comparing two records cheaply.
    #[allow(clippy::type_complexity)]
    fn shape(
        &self,
    ) -> Vec<(
        u64,
        &str,
        VersionState,
        Option<SystemTime>,
        Option<SystemTime>,
    )> {
        self.versions
            .iter()
            .map(|v| {
                (
                    v.version,
                    v.fingerprint.as_str(),
                    v.state,
                    v.grace_until,
                    v.not_after,
                )
            })
            .collect()
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Result of a rotation (metadata only).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rotation {
    /// Credential name.
    pub name: String,
    /// The version that was current before (None for a new credential).
    pub old_version: Option<u64>,
    /// Its fingerprint.
    pub old_fingerprint: Option<String>,
    /// The new current version.
    pub new_version: u64,
    /// Its fingerprint.
    pub new_fingerprint: String,
    /// When the old version's grace period ends (None: retired at once).
    pub grace_until: Option<String>,
    /// Versions retired by this rotation.
    pub retired: Vec<u64>,
}

/// Result of a rollback (metadata only).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rollback {
    /// Credential name.
    pub name: String,
    /// The version that was current and is now retired.
    pub from_version: u64,
    /// Its fingerprint.
    pub from_fingerprint: String,
    /// The version that is current again.
    pub to_version: u64,
    /// Its fingerprint.
    pub to_fingerprint: String,
}

/// Result of retiring a version.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Retirement {
    /// Credential name.
    pub name: String,
    /// The version.
    pub version: u64,
    /// Its fingerprint.
    pub fingerprint: String,
    /// False when it was already retired.
    pub changed: bool,
}

/// Metadata of one version, as shown by the admin API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VersionInfo {
    /// Version number.
    pub version: u64,
    /// Short SHA-256 of the value.
    pub fingerprint: String,
    /// Effective state (a previous version past its grace shows as retired).
    pub state: VersionState,
    /// How it was created.
    pub origin: VersionOrigin,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub activated_at: Option<String>,
    /// End of the grace period (previous only).
    pub grace_until: Option<String>,
    /// RFC 3339.
    pub retired_at: Option<String>,
    /// RFC 3339.
    pub not_after: Option<String>,
    /// True when `not_after` has passed.
    pub expired: bool,
}

/// Metadata of one credential, as shown by the admin API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CredentialInfo {
    /// Credential name.
    pub name: String,
    /// The current version.
    pub current_version: u64,
    /// Its fingerprint.
    pub current_fingerprint: String,
    /// The previous version while its grace period runs.
    pub previous_version: Option<u64>,
    /// All known versions, newest first.
    pub versions: Vec<VersionInfo>,
}

/// The current version of one credential (metadata only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentVersion {
    /// Credential name.
    pub name: String,
    /// Current version number.
    pub version: u64,
    /// When it became current.
    pub since: SystemTime,
}

/// Counters of secrets operations (plain atomics, shown in status).
#[derive(Debug, Default)]
pub struct SecretCounters {
    rotations: AtomicU64,
    rollbacks: AtomicU64,
    retirements: AtomicU64,
    expirations: AtomicU64,
    fallbacks: AtomicU64,
    verify_rejections: AtomicU64,
    verify_unavailable: AtomicU64,
}

/// A copy of [`SecretCounters`].
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Successful rotations.
    pub rotations: u64,
    /// Successful rollbacks.
    pub rollbacks: u64,
    /// Versions retired by the admin.
    pub retirements: u64,
    /// Previous versions retired because their grace period or not_after ended.
    pub expirations: u64,
    /// Requests the proxy retried with the previous value after a 401/403.
    pub fallbacks: u64,
    /// Rotations refused because the upstream rejected the new value.
    pub verify_rejections: u64,
    /// Rotations refused because the upstream could not be reached.
    pub verify_unavailable: u64,
}

/// Live view of one credential (what requests read).
struct Live {
    version: u64,
    value: Secret,
    previous: Option<(Secret, SystemTime)>,
}

struct Inner {
    state: StoreState,
    file: Option<FileStore>,
    warned_expired: HashSet<(String, u64)>,
}

/// The credential store.
pub struct SecretStore {
    snapshot: ArcSwap<HashMap<String, Arc<Live>>>,
    inner: Mutex<Inner>,
    counters: SecretCounters,
    changed: tokio::sync::Notify,
    path: Option<PathBuf>,
    encrypted: bool,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("path", &self.path)
            .field("encrypted", &self.encrypted)
            .field("names", &self.names())
            .finish()
    }
}

impl SecretStore {
    /// Open the store (reading and locking the file when configured) and seed
    /// bootstrap values for credentials the store does not have.
    pub fn open(cfg: &SecretsConfig) -> Result<Arc<SecretStore>, SecretsError> {
        let key = match &cfg.encryption_key_env {
            Some(var) => Some(StoreKey::from_env(var)?),
            None => None,
        };
        Self::open_with_key(cfg, key)
    }

    /// [`open`](Self::open) with an explicit encryption key instead of
    /// `cfg.encryption_key_env` (which is ignored).
    pub fn open_with_key(
        cfg: &SecretsConfig,
        key: Option<StoreKey>,
    ) -> Result<Arc<SecretStore>, SecretsError> {
        let (file, state, mut dirty) = match &cfg.store {
            Some(path) => {
                let opened = FileStore::open(path, key)?;
                (
                    Some(opened.store),
                    opened.state.unwrap_or_default(),
                    opened.needs_encryption,
                )
            }
            None => {
                tracing::warn!(
                    "secrets.store is not set: credentials live in memory and rotations are lost on restart"
                );
                (None, StoreState::default(), false)
            }
        };
        let mut state = state;
        let now = SystemTime::now();
        for (name, src) in &cfg.bootstrap {
            if state.credentials.contains_key(name) {
                continue;
            }
            if !valid_name(name) {
                return Err(SecretsError::InvalidName);
            }
            let value = src.read(name)?;
            let r = state.rotate(
                name,
                value,
                Duration::ZERO,
                None,
                VersionOrigin::Bootstrap,
                now,
            )?;
            tracing::info!(credential = %name, version = r.new_version, fingerprint = %r.new_fingerprint,
                "seeded credential from bootstrap");
            dirty = true;
        }
        if dirty && let Some(f) = &file {
            f.write(&state)?;
        }
        let store = SecretStore {
            snapshot: ArcSwap::from_pointee(HashMap::new()),
            path: file.as_ref().map(|f| f.path().to_path_buf()),
            encrypted: file.as_ref().is_some_and(|f| f.encrypted()),
            inner: Mutex::new(Inner {
                state,
                file,
                warned_expired: HashSet::new(),
            }),
            counters: SecretCounters::default(),
            changed: tokio::sync::Notify::new(),
        };
        {
            let inner = store.lock();
            store.publish(&inner.state);
        }
        Ok(Arc::new(store))
    }

    /// The current version of a credential: a lock-free snapshot read. The
    /// previous value is included only while its grace period runs.
    pub fn current(&self, name: &str) -> Option<Credential> {
        let snap = self.snapshot.load();
        let live = snap.get(name)?;
        let previous = match &live.previous {
            Some((secret, until)) if SystemTime::now() < *until => Some(secret.clone()),
            _ => None,
        };
        Some(Credential {
            name: name.to_string(),
            version: live.version,
            value: live.value.clone(),
            previous,
        })
    }

    /// Names of all known credentials.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.snapshot.load().keys().cloned().collect();
        names.sort();
        names
    }

    /// The store file, when persistent.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// True when the store is a file.
    pub fn persistent(&self) -> bool {
        self.path.is_some()
    }

    /// True when the store file is encrypted at rest.
    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// The current version of every credential and when it became current
    /// (for the credential age metrics). Never a value.
    pub fn current_versions(&self) -> Vec<CurrentVersion> {
        let inner = self.lock();
        inner
            .state
            .credentials
            .iter()
            .filter_map(|(name, rec)| {
                let cur = rec.current()?;
                Some(CurrentVersion {
                    name: name.clone(),
                    version: cur.version,
                    since: cur.activated_at.unwrap_or(cur.created_at),
                })
            })
            .collect()
    }

    /// Metadata of every credential.
    pub fn list(&self) -> Vec<CredentialInfo> {
        let now = SystemTime::now();
        let inner = self.lock();
        inner
            .state
            .credentials
            .iter()
            .map(|(n, r)| info(n, r, now))
            .collect()
    }

    /// Metadata of one credential.
    pub fn info(&self, name: &str) -> Option<CredentialInfo> {
        let inner = self.lock();
        inner
            .state
            .credentials
            .get(name)
            .map(|r| info(name, r, SystemTime::now()))
    }

    /// Make `value` the current version of `name` (creating the credential if
    /// needed); the old current version stays usable for `grace`.
    /// Blocking (file write): call from `spawn_blocking` in async code.
    pub fn rotate(
        &self,
        name: &str,
        value: Secret,
        grace: Duration,
        not_after: Option<SystemTime>,
    ) -> Result<Rotation, SecretsError> {
        match self.change(
            name,
            Change::Rotate {
                value,
                grace,
                not_after,
            },
        )? {
            Changed::Rotated(r) => Ok(r),
            _ => Err(SecretsError::Encode {
                reason: "unexpected change outcome".into(),
            }),
        }
    }

    /// Make the previous version current again (while its grace period runs);
    /// the version rolled back from is retired.
    pub fn rollback(&self, name: &str) -> Result<Rollback, SecretsError> {
        match self.change(name, Change::Rollback)? {
            Changed::RolledBack(r) => Ok(r),
            _ => Err(SecretsError::Encode {
                reason: "unexpected change outcome".into(),
            }),
        }
    }

    /// Retire a version (ends a previous version's grace period early). The
    /// current version cannot be retired.
    pub fn retire(&self, name: &str, version: u64) -> Result<Retirement, SecretsError> {
        match self.change(name, Change::Retire(version))? {
            Changed::Retired(r) => Ok(r),
            _ => Err(SecretsError::Encode {
                reason: "unexpected change outcome".into(),
            }),
        }
    }

    /// Apply one change to this store (the embedded backend): validate,
    /// persist, publish, count and log. Blocking (file write).
    pub fn change(&self, name: &str, change: Change) -> Result<Changed, SecretsError> {
        change.validate(name)?;
        let out = self.mutate(|state, now| state.apply(name, change, now))?;
        self.note(name, &out);
        Ok(out)
    }

    /// Count and log a change made here or adopted from the shared state.
    pub fn note(&self, name: &str, changed: &Changed) {
        match changed {
            Changed::Rotated(r) => {
                self.counters.rotations.fetch_add(1, Ordering::Relaxed);
                use crate::logging::OrNone;
                tracing::info!(credential = %name, old_version = %OrNone(&r.old_version), old_fingerprint = %OrNone(&r.old_fingerprint),
                    new_version = r.new_version, new_fingerprint = %r.new_fingerprint, grace_until = %OrNone(&r.grace_until),
                    "credential rotated");
            }
            Changed::RolledBack(r) => {
                self.counters.rollbacks.fetch_add(1, Ordering::Relaxed);
                tracing::info!(credential = %name, from_version = r.from_version, from_fingerprint = %r.from_fingerprint,
                    to_version = r.to_version, to_fingerprint = %r.to_fingerprint, "credential rolled back");
            }
            Changed::Retired(r) => {
                if r.changed {
                    self.counters.retirements.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(credential = %name, version = r.version, fingerprint = %r.fingerprint, "credential version retired");
                }
            }
            Changed::Expired(versions) => {
                for version in versions {
                    self.counters.expirations.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(credential = %name, version, "previous credential version retired (grace period over)");
                }
            }
        }
    }

    /// A copy of one credential's record (values included), for the shared
    /// state backend.
    pub(crate) fn record(&self, name: &str) -> Option<CredentialRecord> {
        self.lock().state.credentials.get(name).cloned()
    }

    /// Names of every credential in the local state (retired-only included).
    pub(crate) fn record_names(&self) -> Vec<String> {
        self.lock().state.credentials.keys().cloned().collect()
    }

    /// Make `rec` the local record of `name` (it came from the shared state):
    /// persisted to the local store file first when there is one, then
    /// published to requests. Returns false when the local record already
    /// had that shape (nothing written). Blocking (file write).
    pub(crate) fn adopt(&self, name: &str, rec: CredentialRecord) -> Result<bool, SecretsError> {
        rec.check(name)
            .map_err(|reason| SecretsError::StateCorrupt {
                name: name.to_string(),
                reason,
            })?;
        self.mutate(|state, _| {
            let same = state
                .credentials
                .get(name)
                .is_some_and(|old| old.shape() == rec.shape());
            if !same {
                state.credentials.insert(name.to_string(), rec);
            }
            Ok((!same, !same))
        })
    }

    /// Retire every previous version whose grace period or `not_after` has
    /// passed, and warn once about current versions past their `not_after`.
    /// Returns the `(name, version)` pairs retired. Blocking (file write).
    pub fn expire_due(&self) -> Result<Vec<(String, u64)>, SecretsError> {
        let expired = self.mutate(|state, now| {
            let mut out = Vec::new();
            let names: Vec<String> = state.credentials.keys().cloned().collect();
            for name in names {
                if let (Changed::Expired(versions), true) =
                    state.apply(&name, Change::Expire, now)?
                {
                    out.extend(versions.into_iter().map(|v| (name.clone(), v)));
                }
            }
            let changed = !out.is_empty();
            Ok((out, changed))
        })?;
        for (name, version) in &expired {
            self.note(name, &Changed::Expired(vec![*version]));
        }
        self.warn_expired_current();
        Ok(expired)
    }

    fn warn_expired_current(&self) {
        let now = SystemTime::now();
        let mut inner = self.lock();
        let mut late = Vec::new();
        for (name, rec) in &inner.state.credentials {
            if let Some(cur) = rec.current()
                && cur.not_after.is_some_and(|n| n <= now)
            {
                late.push((name.clone(), cur.version, cur.fingerprint.clone()));
            }
        }
        for (name, version, fp) in late {
            if inner.warned_expired.insert((name.clone(), version)) {
                tracing::warn!(credential = %name, version, fingerprint = %fp,
                    "current credential is past its not_after; it is still injected: rotate it");
            }
        }
    }

    /// When [`expire_due`](Self::expire_due) next has work (earliest grace end
    /// or `not_after` of a previous version, or a current version's `not_after`).
    pub fn next_deadline(&self) -> Option<SystemTime> {
        let inner = self.lock();
        inner
            .state
            .credentials
            .values()
            .flat_map(|r| r.versions.iter())
            .filter_map(|v| match v.state {
                VersionState::Previous => v.usable_until(),
                VersionState::Current => v.not_after,
                VersionState::Retired => None,
            })
            .min()
    }

    /// Run [`expire_due`](Self::expire_due) at each deadline (and at least
    /// every minute) until `shutdown` turns true.
    pub fn spawn_maintenance(
        self: &Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let wait = store
                    .next_deadline()
                    .map(|d| {
                        d.duration_since(SystemTime::now())
                            .unwrap_or(Duration::ZERO)
                    })
                    .unwrap_or(Duration::from_secs(60))
                    .min(Duration::from_secs(60));
                tokio::select! {
                    _ = tokio::time::sleep(wait + Duration::from_millis(5)) => {}
                    _ = store.changed.notified() => continue,
                    r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
                }
                let s = Arc::clone(&store);
                match tokio::task::spawn_blocking(move || s.expire_due()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(reason = e.reason(), error = %e, "cannot retire expired credential versions");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    Err(e) => tracing::error!(error = %e, "credential maintenance task failed"),
                }
            }
        })
    }

    /// Count one request retried with the previous value (called by the proxy).
    pub fn record_fallback(&self) {
        self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a rotation refused by the verify probe (`unavailable`: the upstream
    /// could not be reached, otherwise it rejected the value).
    pub fn record_verify_failure(&self, unavailable: bool) {
        let c = if unavailable {
            &self.counters.verify_unavailable
        } else {
            &self.counters.verify_rejections
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Current counter values.
    pub fn counters(&self) -> CountersSnapshot {
        let c = &self.counters;
        CountersSnapshot {
            rotations: c.rotations.load(Ordering::Relaxed),
            rollbacks: c.rollbacks.load(Ordering::Relaxed),
            retirements: c.retirements.load(Ordering::Relaxed),
            expirations: c.expirations.load(Ordering::Relaxed),
            fallbacks: c.fallbacks.load(Ordering::Relaxed),
            verify_rejections: c.verify_rejections.load(Ordering::Relaxed),
            verify_unavailable: c.verify_unavailable.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply `f` to a copy of the state; when it reports a change, persist the
    /// copy first and only then make it the running state.
    fn mutate<T>(
        &self,
        f: impl FnOnce(&mut StoreState, SystemTime) -> Result<(T, bool), SecretsError>,
    ) -> Result<T, SecretsError> {
        let mut inner = self.lock();
        let mut next = inner.state.clone();
        let (out, changed) = f(&mut next, SystemTime::now())?;
        if changed {
            if let Some(file) = &inner.file {
                file.write(&next)?;
            }
            inner.state = next;
            self.publish(&inner.state);
            self.changed.notify_one();
        }
        Ok(out)
    }

    fn publish(&self, state: &StoreState) {
        let mut map = HashMap::with_capacity(state.credentials.len());
        for (name, rec) in &state.credentials {
            let Some(cur) = rec.current() else { continue };
            let Some(value) = &cur.value else { continue };
            let previous = rec.previous().and_then(|p| {
                let until = p.usable_until()?;
                Some((p.value.as_ref()?.0.clone(), until))
            });
            map.insert(
                name.clone(),
                Arc::new(Live {
                    version: cur.version,
                    value: value.0.clone(),
                    previous,
                }),
            );
        }
        self.snapshot.store(Arc::new(map));
    }
}

fn info(name: &str, rec: &CredentialRecord, now: SystemTime) -> CredentialInfo {
    let mut versions: Vec<VersionInfo> = rec
        .versions
        .iter()
        .rev()
        .map(|v| {
            let lapsed =
                v.state == VersionState::Previous && v.usable_until().is_none_or(|u| u <= now);
            VersionInfo {
                version: v.version,
                fingerprint: v.fingerprint.clone(),
                state: if lapsed {
                    VersionState::Retired
                } else {
                    v.state
                },
                origin: v.origin,
                created_at: rfc3339(v.created_at),
                activated_at: v.activated_at.map(rfc3339),
                grace_until: if lapsed {
                    None
                } else {
                    v.grace_until.map(rfc3339)
                },
                retired_at: if lapsed {
                    v.usable_until().map(rfc3339)
                } else {
                    v.retired_at.map(rfc3339)
                },
                not_after: v.not_after.map(rfc3339),
                expired: v.not_after.is_some_and(|n| n <= now),
            }
        })
        .collect();
    versions.shrink_to_fit();
    let cur = versions.iter().find(|v| v.state == VersionState::Current);
    CredentialInfo {
        name: name.to_string(),
        current_version: cur.map_or(0, |c| c.version),
        current_fingerprint: cur.map(|c| c.fingerprint.clone()).unwrap_or_default(),
        previous_version: versions
            .iter()
            .find(|v| v.state == VersionState::Previous)
            .map(|v| v.version),
        versions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem_store() -> Arc<SecretStore> {
        SecretStore::open(&SecretsConfig::default()).expect("open")
    }

    fn s(v: &str) -> Secret {
        Secret::new(v.to_string())
    }

    #[test]
    fn secret_is_redacted() {
        let v = s("super-secret-value");
        assert!(!format!("{v:?}").contains("super-secret"));
        assert!(!format!("{v}").contains("super-secret"));
        assert!(format!("{v}").starts_with("sha256:"));
    }

    #[test]
    fn secret_deserializes_from_a_borrowed_json_buffer_only() {
        #[derive(Deserialize)]
        struct Body {
            value: Secret,
        }
        let buf = Zeroizing::new(br#"{"value": "a\"b\\c\/d\u0041"}"#.to_vec());
        let b: Body = serde_json::from_slice(&buf).expect("parses");
        assert_eq!(b.value.expose(), "a\"b\\c/dA");
        assert!(!format!("{:?}", b.value).contains("a\"b"));
        let b: Body = serde_json::from_str(r#"{"value":"plain"}"#).expect("from_str");
        assert_eq!(b.value.expose(), "plain");
        // Non-strings are refused without quoting the input.
        let err = serde_json::from_slice::<Body>(br#"{"value": 123456789}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("must be a JSON string") && !err.contains("123456789"),
            "{err}"
        );
        // A reader would need serde_json's scratch buffer: refused.
        assert!(serde_json::from_reader::<_, Body>(&br#"{"value":"x"}"#[..]).is_err());
    }

    #[test]
    fn read_bounded_reads_at_most_limit_plus_one_into_one_allocation() {
        let data = [b'x'; 100];
        let got = read_bounded(&mut &data[..], 10).expect("read");
        assert_eq!(
            got.len(),
            11,
            "one byte over the limit shows it is too large"
        );
        assert_eq!(got.capacity(), 11);
        let got = read_bounded(&mut &data[..5], 10).expect("read");
        assert_eq!(got.as_slice(), b"xxxxx");
        assert!(zeroizing_utf8(Zeroizing::new(vec![0xff, 0xfe])).is_none());
        assert_eq!(
            zeroizing_utf8(Zeroizing::new(b"ok".to_vec()))
                .as_deref()
                .map(String::as_str),
            Some("ok")
        );
    }

    #[test]
    fn header_value_is_sensitive_and_exact() {
        let v = s("tok-123").header_value().expect("header");
        assert!(v.is_sensitive());
        assert_eq!(v.as_bytes(), b"tok-123");
        assert!(s("bad\nvalue").header_value().is_err());
    }

    #[test]
    fn rotation_keeps_previous_during_grace_and_snapshots_do_not_change() {
        let store = mem_store();
        store
            .rotate("lp", s("one"), Duration::ZERO, None)
            .expect("first");
        let held = store.current("lp").expect("credential");
        let r = store
            .rotate("lp", s("two"), Duration::from_secs(600), None)
            .expect("rotate");
        assert_eq!((r.old_version, r.new_version), (Some(1), 2));
        assert_eq!(
            held.value.expose(),
            "one",
            "a held snapshot keeps its value"
        );
        let now = store.current("lp").expect("credential");
        assert_eq!(now.value.expose(), "two");
        assert_eq!(now.previous.as_ref().map(Secret::expose), Some("one"));
        let info = store.info("lp").expect("info");
        assert_eq!(info.previous_version, Some(1));
        assert_eq!(info.current_version, 2);
    }

    #[test]
    fn second_rotation_retires_the_older_previous() {
        let store = mem_store();
        store
            .rotate("lp", s("one"), Duration::ZERO, None)
            .expect("1");
        store
            .rotate("lp", s("two"), Duration::from_secs(60), None)
            .expect("2");
        let r = store
            .rotate("lp", s("three"), Duration::from_secs(60), None)
            .expect("3");
        assert_eq!(r.retired, vec![1]);
        let cred = store.current("lp").expect("credential");
        assert_eq!(cred.previous.as_ref().map(Secret::expose), Some("two"));
    }

    #[test]
    fn unchanged_value_is_refused() {
        let store = mem_store();
        store
            .rotate("lp", s("one"), Duration::ZERO, None)
            .expect("1");
        let e = store
            .rotate("lp", s("one"), Duration::ZERO, None)
            .unwrap_err();
        assert_eq!(e.reason(), "unchanged");
    }

    #[test]
    fn invalid_values_and_names_are_refused() {
        let store = mem_store();
        for bad in ["", " padded", "line\nbreak", "tab\x07bell"] {
            let e = store
                .rotate("lp", s(bad), Duration::ZERO, None)
                .unwrap_err();
            assert_eq!(e.reason(), "invalid_value");
            assert!(!e.to_string().contains("padded"));
        }
        let e = store
            .rotate("a/b", s("x"), Duration::ZERO, None)
            .unwrap_err();
        assert_eq!(e.reason(), "invalid_name");
    }

    #[test]
    fn rollback_and_retire_rules() {
        let store = mem_store();
        store
            .rotate("lp", s("one"), Duration::ZERO, None)
            .expect("1");
        assert_eq!(store.rollback("lp").unwrap_err().reason(), "no_previous");
        store
            .rotate("lp", s("two"), Duration::from_secs(60), None)
            .expect("2");
        assert_eq!(
            store.retire("lp", 2).unwrap_err().reason(),
            "cannot_retire_current"
        );
        assert_eq!(
            store.retire("lp", 9).unwrap_err().reason(),
            "unknown_version"
        );
        let rb = store.rollback("lp").expect("rollback");
        assert_eq!((rb.from_version, rb.to_version), (2, 1));
        let cred = store.current("lp").expect("cred");
        assert_eq!(cred.value.expose(), "one");
        assert!(cred.previous.is_none());
        assert_eq!(store.rollback("lp").unwrap_err().reason(), "no_previous");
        // retiring an already-retired version is a no-op
        assert!(!store.retire("lp", 2).expect("retire").changed);
    }

    #[test]
    fn expired_grace_hides_previous_and_expire_due_retires_it() {
        let store = mem_store();
        store
            .rotate("lp", s("one"), Duration::ZERO, None)
            .expect("1");
        store
            .rotate("lp", s("two"), Duration::from_millis(1), None)
            .expect("2");
        std::thread::sleep(Duration::from_millis(5));
        assert!(store.current("lp").expect("cred").previous.is_none());
        let info = store.info("lp").expect("info");
        assert_eq!(info.previous_version, None);
        assert_eq!(
            store.expire_due().expect("expire"),
            vec![("lp".to_string(), 1)]
        );
        assert_eq!(store.counters().expirations, 1);
    }

    #[test]
    fn not_after_bounds_the_previous_version() {
        let store = mem_store();
        let past = SystemTime::now() - Duration::from_secs(1);
        store
            .rotate("lp", s("one"), Duration::ZERO, Some(past))
            .expect("1");
        store
            .rotate("lp", s("two"), Duration::from_secs(600), None)
            .expect("2");
        assert!(store.current("lp").expect("cred").previous.is_none());
        assert!(
            store
                .info("lp")
                .expect("info")
                .versions
                .iter()
                .any(|v| v.version == 1 && v.expired)
        );
    }

    #[test]
    fn retired_history_is_bounded() {
        let store = mem_store();
        for i in 0..(MAX_RETIRED_VERSIONS + 10) {
            store
                .rotate("lp", s(&format!("v{i}")), Duration::ZERO, None)
                .expect("rotate");
        }
        let info = store.info("lp").expect("info");
        assert_eq!(info.versions.len(), MAX_RETIRED_VERSIONS + 1);
    }

    #[test]
    fn config_validation() {
        let mut cfg = SecretsConfig::default();
        cfg.bootstrap
            .insert("bad name".into(), SecretSource::Env("X".into()));
        cfg.encryption_key_env = Some("K".into());
        let errs = cfg.validate();
        assert_eq!(errs.len(), 2, "{errs:?}");
    }
}
