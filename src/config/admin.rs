//! `admin:` in the process config: the admin listener, its bootstrap token
//! and the failed-authentication throttle. Lives beneath `config` so that
//! loading a config never depends on the admin API's runtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where the admin listener listens: a TCP address, or a Unix domain socket
/// written `unix:/path` (access by file mode; peers known by uid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminListen {
    /// A TCP address (loopback unless `allow_non_loopback`).
    Tcp(SocketAddr),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

impl AdminListen {
    /// The TCP address, if this is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            AdminListen::Tcp(a) => Some(*a),
            AdminListen::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for AdminListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminListen::Tcp(a) => write!(f, "{a}"),
            AdminListen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl std::str::FromStr for AdminListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("unix:") {
            Some("") => Err("unix: needs a socket path, e.g. unix:/run/spangate/admin.sock".into()),
            Some(path) => Ok(AdminListen::Unix(PathBuf::from(path))),
            None => s
                .parse::<SocketAddr>()
                .map(AdminListen::Tcp)
                .map_err(|e| format!("{s:?} is neither host:port nor unix:/path ({e})")),
        }
    }
}

impl<'de> Deserialize<'de> for AdminListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl From<SocketAddr> for AdminListen {
    fn from(a: SocketAddr) -> Self {
        AdminListen::Tcp(a)
    }
}

/// Default file mode of the admin Unix socket: owner only.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;

/// Default admin listen address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// Default grace period of a rotation.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(600);
/// Default time allowed to read a request body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// `admin:` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener (default `127.0.0.1:9901`), or
    /// `unix:/path` for a Unix domain socket.
    pub listen: AdminListen,
    /// File mode of the Unix socket, octal (default `"0600"`: owner only).
    pub socket_mode: String,
    /// Allow a non-loopback `listen` address (default false: refused).
    pub allow_non_loopback: bool,
    /// SHA-256 (64 hex digits) of the bootstrap admin token, which holds every
    /// admin permission. Unset: only OIDC admins (default).
    pub bootstrap_token_sha256: Option<String>,
    /// Grace period of a rotation whose request names none (default `10m`).
    #[serde(with = "humantime_serde")]
    pub default_grace: Duration,
    /// Time allowed to receive a request body once its head is in (default
    /// `10s`); a slower body gets 408 and the connection is closed.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Throttling of failed authentication (see the admin API's throttle).
    pub auth_throttle: AuthThrottleConfig,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: AdminListen::Tcp(SocketAddr::from(([127, 0, 0, 1], 9901))),
            socket_mode: format!("{DEFAULT_SOCKET_MODE:04o}"),
            allow_non_loopback: false,
            bootstrap_token_sha256: None,
            default_grace: DEFAULT_GRACE,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            auth_throttle: AuthThrottleConfig::default(),
        }
    }
}

impl AdminConfig {
    /// Problems with this config, as messages (empty = valid).
    pub fn validate(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let AdminListen::Tcp(a) = &self.listen
            && !a.ip().is_loopback()
            && !self.allow_non_loopback
        {
            out.push(format!(
                "listen {a} is not a loopback address; the admin API rotates credentials, \
                 so set allow_non_loopback: true to expose it deliberately"
            ));
        }
        if self.socket_mode().is_none() {
            out.push("socket_mode must be an octal file mode such as \"0600\" or \"0660\"".into());
        }
        if let Some(h) = &self.bootstrap_token_sha256
            && parse_sha256_hex(h).is_none()
        {
            out.push("bootstrap_token_sha256 must be 64 hex digits (the SHA-256 of the token, not the token)".into());
        }
        if self.default_grace > crate::secrets::MAX_GRACE {
            out.push("default_grace is longer than 30 days".into());
        }
        if self.body_timeout.is_zero() || self.body_timeout > Duration::from_secs(300) {
            out.push("body_timeout must be between 1ms and 5m".into());
        }
        out.extend(self.auth_throttle.validate());
        out
    }

    /// The Unix socket's file mode (None when not octal or out of range).
    pub fn socket_mode(&self) -> Option<u32> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
    }

    /// The bootstrap token hash, parsed (None when unset or invalid).
    pub fn bootstrap_hash(&self) -> Option<[u8; 32]> {
        self.bootstrap_token_sha256
            .as_deref()
            .and_then(parse_sha256_hex)
    }
}

/// Default failures within [`DEFAULT_WINDOW`] that start a lockout.
pub const DEFAULT_MAX_FAILURES: u32 = 5;
/// Default window in which failures are counted.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Default first lockout.
pub const DEFAULT_LOCKOUT: Duration = Duration::from_secs(30);
/// Default longest lockout.
pub const DEFAULT_MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Default number of peers tracked.
pub const DEFAULT_MAX_PEERS: u64 = 10_000;
/// Default global failure budget per [`DEFAULT_GLOBAL_WINDOW`].
pub const DEFAULT_GLOBAL_MAX_FAILURES: u32 = 300;
/// Default window of the global failure budget.
pub const DEFAULT_GLOBAL_WINDOW: Duration = Duration::from_secs(60);
/// How long a peer counts as "recently authenticated" for the global ceiling.
pub const TRUSTED_FOR: Duration = Duration::from_secs(3600);
/// Longest lockout accepted in the config.
pub const MAX_CONFIG_LOCKOUT: Duration = Duration::from_secs(24 * 3600);

/// `admin.auth_throttle` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthThrottleConfig {
    /// Throttle failed authentication at all (default true).
    pub enabled: bool,
    /// Failures within `window` that lock a peer out (default 5).
    pub max_failures: u32,
    /// Window in which failures are counted (default `5m`).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// First lockout; doubles with each further lockout (default `30s`).
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
    /// Cap of the growing lockout (default `15m`).
    #[serde(with = "humantime_serde")]
    pub max_lockout: Duration,
    /// Peers tracked at most (default 10000).
    pub max_peers: u64,
    /// Failures from all peers per `global_window` before unknown peers are
    /// throttled (default 300; 0 disables the global ceiling).
    pub global_max_failures: u32,
    /// Window of the global budget (default `1m`).
    #[serde(with = "humantime_serde")]
    pub global_window: Duration,
}

impl Default for AuthThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_failures: DEFAULT_MAX_FAILURES,
            window: DEFAULT_WINDOW,
            lockout: DEFAULT_LOCKOUT,
            max_lockout: DEFAULT_MAX_LOCKOUT,
            max_peers: DEFAULT_MAX_PEERS,
            global_max_failures: DEFAULT_GLOBAL_MAX_FAILURES,
            global_window: DEFAULT_GLOBAL_WINDOW,
        }
    }
}

impl AuthThrottleConfig {
    /// Problems with this config, as messages (empty = valid).
    pub fn validate(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.enabled {
            return out;
        }
        if self.max_failures == 0 {
            out.push("auth_throttle.max_failures must be at least 1".into());
        }
        if self.window.is_zero() {
            out.push("auth_throttle.window must be longer than 0s".into());
        }
        if self.lockout.is_zero() {
            out.push("auth_throttle.lockout must be longer than 0s".into());
        }
        if self.max_lockout < self.lockout {
            out.push("auth_throttle.max_lockout must be at least lockout".into());
        }
        if self.max_lockout > MAX_CONFIG_LOCKOUT || self.window > MAX_CONFIG_LOCKOUT {
            out.push("auth_throttle.window and max_lockout must be at most 24h".into());
        }
        if self.max_peers == 0 {
            out.push("auth_throttle.max_peers must be at least 1".into());
        }
        if self.global_max_failures > 0 && self.global_window.is_zero() {
            out.push("auth_throttle.global_window must be longer than 0s".into());
        }
        out
    }

    /// How long a peer's record is kept after its last failure.
    pub fn forget_after(&self) -> Duration {
        self.window.max(self.max_lockout)
    }
}

/// Parse a SHA-256 given as 64 hex digits.
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
