//! Secrets: the `Secret` type, named credentials and their sources.
//!
//! SKELETON: bootstrap from env/file only; versioning, the persistent store and
//! rotation come with the secrets work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use zeroize::Zeroizing;

/// A secret value: redacted in `Debug`/`Display`, zeroized on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }
    /// The value, for the one place that injects it into a header.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn fingerprint(&self) -> String {
        crate::fingerprint(self.0.as_bytes())
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

/// Where a bootstrap value comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file (trailing newline trimmed).
    File(PathBuf),
}

/// `secrets:` in the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Persistent store file.
    pub store: Option<PathBuf>,
    /// Seed values by credential name (`{ env: VAR }` or `{ file: PATH }`).
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
    pub bootstrap: BTreeMap<String, SecretSource>,
}

impl SecretsConfig {
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
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
    #[error("credential {name}: environment variable {var} is not set")]
    MissingEnv { name: String, var: String },
    #[error("credential {name}: cannot read {path}: {reason}")]
    File {
        name: String,
        path: String,
        reason: String,
    },
    #[error("credential {name}: empty value")]
    Empty { name: String },
}

/// A snapshot of one credential, held by a request for its whole life.
#[derive(Debug, Clone)]
pub struct Credential {
    pub name: String,
    pub version: u64,
    pub value: Secret,
    /// The previous version while its grace period runs (used once when the
    /// upstream refuses the current value with 401/403).
    pub previous: Option<Secret>,
}

/// The credential store.
#[derive(Debug, Default)]
pub struct SecretStore {
    current: BTreeMap<String, Credential>,
}

impl SecretStore {
    /// Open the store and seed bootstrap values.
    pub fn open(cfg: &SecretsConfig) -> Result<Arc<SecretStore>, SecretsError> {
        let mut current = BTreeMap::new();
        for (name, src) in &cfg.bootstrap {
            let value = match src {
                SecretSource::Env(var) => {
                    std::env::var(var).map_err(|_| SecretsError::MissingEnv {
                        name: name.clone(),
                        var: var.clone(),
                    })?
                }
                SecretSource::File(p) => std::fs::read_to_string(p)
                    .map_err(|e| SecretsError::File {
                        name: name.clone(),
                        path: p.display().to_string(),
                        reason: e.kind().to_string(),
                    })?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            };
            if value.is_empty() {
                return Err(SecretsError::Empty { name: name.clone() });
            }
            current.insert(
                name.clone(),
                Credential {
                    name: name.clone(),
                    version: 1,
                    value: Secret::new(value),
                    previous: None,
                },
            );
        }
        Ok(Arc::new(SecretStore { current }))
    }

    /// The current version of a credential.
    pub fn current(&self, name: &str) -> Option<Credential> {
        self.current.get(name).cloned()
    }

    /// Names of all known credentials.
    pub fn names(&self) -> Vec<String> {
        self.current.keys().cloned().collect()
    }
}
