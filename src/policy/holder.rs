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
        let set = self.load_candidate()?;
        self.install(set);
        Ok(())
    }

    /// Load the directory without installing it; an error is remembered
    /// (the running set stays).
    pub fn load_candidate(&self) -> Result<PolicySet, PolicyErrors> {
        PolicySet::load_dir(&self.dir).inspect_err(|e| self.fail(e.clone()))
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

/// One rule whose change can let more through, by rule name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Widening {
    /// `deny[name]`, `binding[name]` or `role[name]`.
    pub rule: String,
    /// `removed`, `added` or `changed`.
    pub change: &'static str,
}

/// The changes from `old` to `new` that may widen access: deny rules removed
/// or changed, bindings added or changed, roles changed. A minimal summary
/// for the reload audit line (it does not decide whether a change narrows;
/// every change of those kinds is listed).
pub fn widening_changes(old: &PolicySet, new: &PolicySet) -> Vec<Widening> {
    use std::collections::BTreeMap;
    let mut out = Vec::new();
    let w = |rule: &str, change| Widening {
        rule: rule.to_string(),
        change,
    };
    let deny = |s: &PolicySet| -> BTreeMap<String, String> {
        s.deny
            .iter()
            .map(|d| {
                let shape = format!("{:?}|{:?}|{:?}", d.subjects, d.endpoints, d.mode);
                (d.rule.clone(), shape)
            })
            .collect()
    };
    let (old_deny, new_deny) = (deny(old), deny(new));
    for (rule, shape) in &old_deny {
        match new_deny.get(rule) {
            None => out.push(w(rule, "removed")),
            Some(n) if n != shape => out.push(w(rule, "changed")),
            Some(_) => {}
        }
    }
    let role_of = |s: &PolicySet, i: usize| s.roles.get(i).map(|r| r.name.clone());
    let bindings = |s: &PolicySet| -> BTreeMap<String, String> {
        s.bindings
            .iter()
            .map(|b| {
                let shape = format!(
                    "{:?}|{:?}|{:?}|{:?}|{:?}",
                    role_of(s, b.role),
                    b.subjects,
                    b.credential,
                    b.mode,
                    b.publish
                );
                (b.rule.clone(), shape)
            })
            .collect()
    };
    let (old_b, new_b) = (bindings(old), bindings(new));
    for (rule, shape) in &new_b {
        match old_b.get(rule) {
            None => out.push(w(rule, "added")),
            Some(o) if o != shape => out.push(w(rule, "changed")),
            Some(_) => {}
        }
    }
    let roles = |s: &PolicySet| -> BTreeMap<String, String> {
        s.roles
            .iter()
            .map(|r| (r.name.clone(), format!("{:?}|{:?}", r.publish, r.admin)))
            .collect()
    };
    let (old_r, new_r) = (roles(old), roles(new));
    for (name, shape) in &new_r {
        if old_r.get(name).is_some_and(|o| o != shape) {
            out.push(w(&format!("role[{name}]"), "changed"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "endpoints:\n  traces: { path: /v1/traces, upstream: u }\n";
    const EDGE: &str = "roles:\n  pub: { publish: { endpoints: [traces] } }\nbindings:\n  - name: b\n    role: pub\n    credential: c\n    subjects: [{ provider: p, claims: { team: a } }]\ndeny:\n  - name: contractors\n    subjects: [{ provider: p, claims: { sub: \"c-*\" } }]\n";

    fn set(edge: &str) -> PolicySet {
        PolicySet::from_texts(&[("a.yaml", BASE), ("b.yaml", edge)])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn removed_deny_and_widened_binding_are_named() {
        let old = set(EDGE);
        assert!(widening_changes(&old, &set(EDGE)).is_empty());
        let no_deny = EDGE.split("deny:").next().unwrap_or_default();
        let got = widening_changes(&old, &set(no_deny));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].change, "removed");
        assert!(got[0].rule.contains("contractors"), "{got:?}");
        let wider = EDGE.replace("team: a", "team: [a, b]");
        let got = widening_changes(&old, &set(&wider));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].change, "changed");
        assert!(got[0].rule.contains('b'), "{got:?}");
    }
}
