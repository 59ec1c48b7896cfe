//! Admin authentication and permissions.
//!
//! Two ways in:
//! * an OIDC bearer token, verified by [`Identity`], whose principal holds
//!   admin permissions in the policy (`roles.<r>.admin: [secrets:rotate, ...]`);
//! * the optional bootstrap token for first setup, configured only as its
//!   SHA-256 (`admin.bootstrap_token_sha256`) and compared in constant time.
//!   It holds every permission.
//!
//! Authentication sits behind [`AdminAuthenticator`] so the server can be
//! tested (and extended) without an IdP.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::identity::{AuthError, Identity, Principal};
use crate::policy::{PolicyHolder, PolicySet};

/// An admin permission, as written in policy `admin:` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Permission {
    /// Read credential metadata.
    #[serde(rename = "secrets:read")]
    SecretsRead,
    /// Rotate, roll back and retire credentials.
    #[serde(rename = "secrets:rotate")]
    SecretsRotate,
    /// Reload the policy set.
    #[serde(rename = "policy:reload")]
    PolicyReload,
    /// Validate policy files (dry run).
    #[serde(rename = "policy:validate")]
    PolicyValidate,
    /// Read the status page (and the spools' contents, metadata only).
    #[serde(rename = "status:read")]
    StatusRead,
    /// Replay dead letters and purge spools.
    #[serde(rename = "spool:manage")]
    SpoolManage,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 6] = [
        Permission::SecretsRead,
        Permission::SecretsRotate,
        Permission::PolicyReload,
        Permission::PolicyValidate,
        Permission::StatusRead,
        Permission::SpoolManage,
    ];

    /// The policy spelling (`secrets:rotate`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::SecretsRead => "secrets:read",
            Permission::SecretsRotate => "secrets:rotate",
            Permission::PolicyReload => "policy:reload",
            Permission::PolicyValidate => "policy:validate",
            Permission::StatusRead => "status:read",
            Permission::SpoolManage => "spool:manage",
        }
    }

    /// Parse the policy spelling.
    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Who made an admin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The bootstrap admin token.
    BootstrapToken,
    /// A verified OIDC principal.
    Oidc {
        /// Provider name from the config.
        provider: String,
        /// Verified `sub`.
        subject: String,
        /// Fingerprint of the token.
        token_fingerprint: String,
    },
}

impl Actor {
    /// `bootstrap-token` or `provider/subject` (audit lines).
    pub fn label(&self) -> String {
        match self {
            Actor::BootstrapToken => "bootstrap-token".into(),
            Actor::Oidc {
                provider, subject, ..
            } => format!("{provider}/{subject}"),
        }
    }
}

/// An authenticated admin caller and what they may do.
#[derive(Debug, Clone)]
pub struct AdminCaller {
    /// Who.
    pub actor: Actor,
    /// Granted permissions.
    pub permissions: BTreeSet<Permission>,
}

impl AdminCaller {
    /// True when `p` is granted.
    pub fn may(&self, p: Permission) -> bool {
        self.permissions.contains(&p)
    }
}

/// Why an admin call is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminAuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// The token is not valid (reason code from identity, or `bad_token`).
    #[error("invalid token ({0})")]
    Invalid(&'static str),
    /// The identity provider cannot be reached right now.
    #[error("identity provider unavailable")]
    Unavailable {
        /// Suggested wait.
        retry_after: Duration,
    },
}

/// Boxed future returned by [`AdminAuthenticator::authenticate`].
pub type AuthFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AdminCaller, AdminAuthError>> + Send + 'a>>;

/// Turns a bearer token into an [`AdminCaller`].
pub trait AdminAuthenticator: Send + Sync {
    /// Authenticate `token` (without the `Bearer ` prefix).
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a>;
}

/// Maps a principal to its admin permissions in a policy set.
pub type PermissionsFn = Arc<dyn Fn(&PolicySet, &Principal) -> BTreeSet<Permission> + Send + Sync>;

/// The admin permissions `principal` holds in `set`.
///
/// Deny by default: this branch's policy engine has no admin grants yet, so
/// this grants nothing. When the policy engine offers
/// `PolicySet::admin_permissions(&Principal)`, this function is the one place
/// to call it (mapping its strings through [`Permission::parse`]).
pub fn permissions_of(set: &PolicySet, principal: &Principal) -> BTreeSet<Permission> {
    set.admin_permissions(principal)
        .permissions
        .iter()
        .filter_map(|p| Permission::parse(&p.permission))
        .collect()
}

pub use crate::config::admin::parse_sha256_hex;

/// SHA-256 of a token (what `admin.bootstrap_token_sha256` holds), as hex.
pub fn sha256_hex(token: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The default authenticator: bootstrap token, then OIDC + policy permissions.
pub struct DefaultAuthenticator {
    bootstrap: Option<[u8; 32]>,
    identity: Arc<Identity>,
    policy: Arc<PolicyHolder>,
    permissions: PermissionsFn,
}

impl DefaultAuthenticator {
    /// Build one. `bootstrap_sha256` is the configured hash (already validated).
    pub fn new(
        bootstrap_sha256: Option<[u8; 32]>,
        identity: Arc<Identity>,
        policy: Arc<PolicyHolder>,
        permissions: PermissionsFn,
    ) -> Self {
        Self {
            bootstrap: bootstrap_sha256,
            identity,
            policy,
            permissions,
        }
    }

    fn is_bootstrap(&self, token: &str) -> bool {
        let Some(expected) = &self.bootstrap else {
            return false;
        };
        // A JWT-shaped credential passes the throttle during a lockout (its
        // signature decides); comparing it with the bootstrap hash would let
        // that path guess the bootstrap token.
        if super::throttle::looks_signed(token) {
            return false;
        }
        let got = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        got.as_ref().ct_eq(expected.as_slice()).into()
    }
}

impl AdminAuthenticator for DefaultAuthenticator {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        Box::pin(async move {
            if self.is_bootstrap(token) {
                return Ok(AdminCaller {
                    actor: Actor::BootstrapToken,
                    permissions: Permission::ALL.into_iter().collect(),
                });
            }
            let principal = self
                .identity
                .authenticate(token)
                .await
                .map_err(|e| match e {
                    AuthError::ProviderUnavailable { retry_after } => {
                        AdminAuthError::Unavailable { retry_after }
                    }
                    other => AdminAuthError::Invalid(other.reason()),
                })?;
            let permissions = (self.permissions)(&self.policy.current(), &principal);
            Ok(AdminCaller {
                actor: Actor::Oidc {
                    provider: principal.provider.clone(),
                    subject: principal.subject.clone(),
                    token_fingerprint: principal.token_fingerprint.clone(),
                },
                permissions,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_spellings_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
            assert_eq!(
                serde_json::to_value(p).ok(),
                Some(serde_json::Value::from(p.as_str()))
            );
        }
        assert_eq!(Permission::parse("secrets:*"), None);
    }

    #[test]
    fn sha256_hex_parses() {
        let h = sha256_hex("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(parse_sha256_hex(&h).is_some());
        assert!(parse_sha256_hex(&h[..62]).is_none());
        assert!(parse_sha256_hex(&"zz".repeat(32)).is_none());
        assert!(parse_sha256_hex("é".repeat(32).as_str()).is_none());
    }
}

#[cfg(test)]
mod permission_list_tests {
    use super::Permission;

    #[test]
    fn policy_linter_knows_exactly_the_admin_permissions() {
        let admin: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(admin, crate::policy::compile::KNOWN_ADMIN_PERMISSIONS);
    }
}
