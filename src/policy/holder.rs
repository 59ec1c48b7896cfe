//! The running policy set, swapped atomically on reload. What a reload
//! widens is [`super::diff::widening_changes`], the same comparison as
//! `spangate policy diff`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::{LintContext, PolicyErrors, PolicySet};

/// The running policy set, swapped atomically on reload; a failed reload
/// keeps the last good set and remembers why.
#[derive(Debug)]
pub struct PolicyHolder {
    dir: PathBuf,
    current: ArcSwap<PolicySet>,
    last_error: Mutex<Option<PolicyErrors>>,
    /// What the process config knows (upstream targets), checked on every load.
    ctx: Option<LintContext>,
}

impl PolicyHolder {
    /// Load the directory; an invalid set is an error (start-up refuses it).
    pub fn load(dir: &Path) -> Result<PolicyHolder, PolicyErrors> {
        PolicyHolder::load_in(dir, None)
    }

    /// [`PolicyHolder::load`], checking this load and every reload against
    /// `ctx` (e.g. [`LintContext::upstream_targets`] of the process config).
    pub fn load_in(dir: &Path, ctx: Option<LintContext>) -> Result<PolicyHolder, PolicyErrors> {
        let set = PolicySet::load_dir_in(dir, ctx.as_ref())?;
        Ok(PolicyHolder {
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(set),
            last_error: Mutex::new(None),
            ctx,
        })
    }

    /// Compile `dir` as a load of this holder would, without installing it.
    pub fn validate(&self, dir: &Path) -> Result<(), PolicyErrors> {
        PolicySet::load_dir_in(dir, self.ctx.as_ref()).map(|_| ())
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// Re-read the directory; on error keep the running set and remember why.
    /// The new set's version is `current().version()`.
    pub fn reload(&self) -> Result<(), PolicyErrors> {
        let set = self.load_candidate()?;
        self.install(set);
        Ok(())
    }

    /// Load the directory without installing it; an error is remembered
    /// (the running set stays).
    pub fn load_candidate(&self) -> Result<PolicySet, PolicyErrors> {
        PolicySet::load_dir_in(&self.dir, self.ctx.as_ref()).inspect_err(|e| self.fail(e.clone()))
    }

    /// Install a loaded set and clear the last error.
    pub fn install(&self, set: PolicySet) {
        self.current.store(Arc::new(set));
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Remember why the directory on disk is not the running set.
    pub fn fail(&self, e: PolicyErrors) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    /// Why the last reload failed, if it did (cleared by a good reload).
    pub fn last_error(&self) -> Option<PolicyErrors> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The policy directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
