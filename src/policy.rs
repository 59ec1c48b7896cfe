//! Policy: files, compile + lint, the pure `decide`, explain, snapshots.
//!
//! SKELETON: interface only; the policy work fills this in.

use std::path::Path;

use crate::identity::Principal;
use crate::otlp::BatchSummary;

/// A routable endpoint: request path → upstream name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub path: String,
    pub upstream: String,
}

/// A policy diagnostic with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// All diagnostics of a failed load.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct PolicyErrors(pub Vec<Diagnostic>);

/// What a decision did with one resource of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceVerdict {
    Keep,
    Drop { reason: String },
}

/// The outcome of `decide`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// The rule that made the decision (`deny[0]`, `bindings[2]`, `default`).
    pub rule: String,
    /// Low-cardinality reason code (`allowed`, `no_match`, `explicit_deny`, ...).
    pub reason: &'static str,
    /// Credential to inject (allowed only).
    pub credential: Option<String>,
    /// Verified attributes to stamp onto every resource.
    pub stamp: Vec<(String, String)>,
    /// Per-resource verdicts, in batch order.
    pub resources: Vec<ResourceVerdict>,
}

/// A compiled, immutable policy set.
#[derive(Debug, Default)]
pub struct PolicySet {
    endpoints: Vec<Endpoint>,
}

impl PolicySet {
    /// Load and compile every `*.yaml`/`*.yml` file in `dir`.
    pub fn load_dir(_dir: &Path) -> Result<PolicySet, PolicyErrors> {
        Ok(PolicySet::default())
    }

    pub fn endpoint_by_path(&self, path: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.path == path)
    }

    /// The pure authorization function.
    pub fn decide(&self, _principal: &Principal, endpoint: &Endpoint, _batch: &BatchSummary) -> Decision {
        Decision {
            allowed: false,
            rule: format!("default({})", endpoint.name),
            reason: "no_match",
            credential: None,
            stamp: Vec::new(),
            resources: Vec::new(),
        }
    }
}

/// The running policy set, swapped atomically on reload; a failed reload
/// keeps the last good set.
#[derive(Debug)]
pub struct PolicyHolder {
    dir: std::path::PathBuf,
    current: arc_swap::ArcSwap<PolicySet>,
    last_error: std::sync::Mutex<Option<PolicyErrors>>,
}

impl PolicyHolder {
    /// Load the directory; an invalid set is an error (start-up refuses it).
    pub fn load(dir: &Path) -> Result<PolicyHolder, PolicyErrors> {
        let set = PolicySet::load_dir(dir)?;
        Ok(PolicyHolder {
            dir: dir.to_path_buf(),
            current: arc_swap::ArcSwap::from_pointee(set),
            last_error: std::sync::Mutex::new(None),
        })
    }

    /// The current snapshot.
    pub fn current(&self) -> std::sync::Arc<PolicySet> {
        self.current.load_full()
    }

    /// Re-read the directory; on error keep the running set and remember why.
    pub fn reload(&self) -> Result<(), PolicyErrors> {
        match PolicySet::load_dir(&self.dir) {
            Ok(set) => {
                self.current.store(std::sync::Arc::new(set));
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Err(e) => {
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Why the last reload failed, if it did.
    pub fn last_error(&self) -> Option<PolicyErrors> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
