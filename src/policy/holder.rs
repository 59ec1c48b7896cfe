//! The running policy set, swapped atomically on reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::{PolicyErrors, PolicySet};

/// The running policy set, swapped atomically on reload; a failed reload
/// keeps the last good set and remembers why.
#[derive(Debug)]
pub struct PolicyHolder {
    dir: PathBuf,
    current: ArcSwap<PolicySet>,
    last_error: Mutex<Option<PolicyErrors>>,
}

impl PolicyHolder {
    /// Load the directory; an invalid set is an error (start-up refuses it).
    pub fn load(dir: &Path) -> Result<PolicyHolder, PolicyErrors> {
        let set = PolicySet::load_dir(dir)?;
        Ok(PolicyHolder {
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(set),
            last_error: Mutex::new(None),
        })
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// Re-read the directory; on error keep the running set and remember why.
    /// The new set's version is `current().version()`.
    pub fn reload(&self) -> Result<(), PolicyErrors> {
        match PolicySet::load_dir(&self.dir) {
            Ok(set) => {
                self.current.store(Arc::new(set));
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Err(e) => {
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                Err(e)
            }
        }
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
