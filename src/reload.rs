//! Policy hot reload: a file watcher on the policy directory (debounced),
//! SIGHUP, and the admin endpoint all go through one [`Reloader`].
//!
//! A reload re-reads and validates the whole directory before it replaces the
//! running set ([`PolicyHolder::reload`]); a failed reload keeps the last good
//! set, logs every diagnostic at WARN with its file:line, writes an audit line
//! and is shown in the admin status until the next successful reload.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::audit::Audit;
use crate::policy::{Diagnostic, PolicyErrors, PolicyHolder};

/// Default quiet time after the last file event before a watch-triggered
/// reload (`policies_quiet_period`).
pub const DEBOUNCE: Duration = crate::config::DEFAULT_POLICIES_QUIET_PERIOD;

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A change in the policy directory.
    Watch,
    /// SIGHUP.
    Signal,
    /// `POST /admin/v1/policies/reload`.
    Admin,
}

impl Trigger {
    /// The one spelling of this trigger, in logs and audit lines alike.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Watch => "watch",
            Trigger::Signal => "signal",
            Trigger::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A diagnostic as JSON (admin responses, audit lines, status).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DiagnosticView {
    /// File the problem is in.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl From<&Diagnostic> for DiagnosticView {
    fn from(d: &Diagnostic) -> Self {
        DiagnosticView {
            file: d.file.clone(),
            line: d.line,
            column: d.column,
            message: d.message.clone(),
        }
    }
}

/// All diagnostics of a failed load, as JSON views.
pub fn diagnostics(e: &PolicyErrors) -> Vec<DiagnosticView> {
    e.0.iter().map(DiagnosticView::from).collect()
}

/// Reload history, for the admin status.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Successful reloads since start.
    pub reloads: u64,
    /// Failed reloads since start.
    pub failures: u64,
    /// RFC 3339 time of the last attempt.
    pub last_attempt_at: Option<String>,
    /// What started the last attempt.
    pub last_trigger: Option<Trigger>,
    /// `ok` or `error`.
    pub last_result: Option<&'static str>,
    /// Why the running set is not the one on disk (None when the last reload worked).
    pub last_error: Option<Vec<DiagnosticView>>,
    /// Whether the file watcher is running.
    pub watching: bool,
    /// Why the file watcher is not running.
    pub watch_error: Option<String>,
}

#[derive(Serialize)]
struct ReloadAudit<'a> {
    kind: &'static str,
    trigger: Trigger,
    actor: &'a str,
    dir: String,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<DiagnosticView>>,
    /// Version of the set now serving (on success).
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    /// Rules whose change widens access, with the widening lines, as
    /// `spangate policy diff` classifies them (one implementation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    widened: Vec<crate::policy::Widening>,
}

/// An extra check of a policy directory, run before the policy loader
/// (see [`Reloader::with_precheck`]).
pub type Precheck = Arc<dyn Fn(&Path) -> Result<(), PolicyErrors> + Send + Sync>;

/// Called after a successful reload.
pub type AfterReload = Box<dyn Fn() + Send + Sync>;

/// Runs reloads one at a time and keeps their history.
pub struct Reloader {
    holder: Arc<PolicyHolder>,
    audit: Audit,
    precheck: Option<Precheck>,
    gate: tokio::sync::Mutex<()>,
    status: Mutex<ReloadStatus>,
    /// `spangate_policy_reloads_total`, once the app wires it.
    counter: std::sync::OnceLock<crate::metrics::ReloadCounter>,
    /// Run after each successful reload (the app creates the metric series
    /// of new endpoints).
    after_reload: std::sync::OnceLock<AfterReload>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("dir", &self.holder.dir())
            .finish()
    }
}

impl Reloader {
    /// A reloader over `holder` (no watcher, no signal handler: see [`spawn_reloader`]).
    pub fn new(holder: Arc<PolicyHolder>, audit: Audit) -> Arc<Reloader> {
        Self::build(holder, audit, None)
    }

    /// A reloader that runs `precheck` on the directory before the policy
    /// loader, for reloads and validations alike (an organisation's extra
    /// lint, or a test's). A failing precheck is a failed reload.
    pub fn with_precheck(
        holder: Arc<PolicyHolder>,
        audit: Audit,
        precheck: Precheck,
    ) -> Arc<Reloader> {
        Self::build(holder, audit, Some(precheck))
    }

    fn build(holder: Arc<PolicyHolder>, audit: Audit, precheck: Option<Precheck>) -> Arc<Reloader> {
        Arc::new(Reloader {
            holder,
            audit,
            precheck,
            gate: tokio::sync::Mutex::new(()),
            status: Mutex::new(ReloadStatus::default()),
            counter: std::sync::OnceLock::new(),
            after_reload: std::sync::OnceLock::new(),
        })
    }

    /// Count every reload attempt in `counter` (by trigger and result).
    pub fn count_into(&self, counter: crate::metrics::ReloadCounter) {
        let _ = self.counter.set(counter);
    }

    /// Run `f` after every successful reload.
    pub fn after_reload(&self, f: AfterReload) {
        let _ = self.after_reload.set(f);
    }

    /// Validate `dir` as a reload would, without touching the running set (blocking).
    pub fn validate(&self, dir: &Path) -> Result<(), PolicyErrors> {
        if let Some(p) = &self.precheck {
            p(dir)?;
        }
        self.holder.validate(dir)
    }

    /// The policy holder this reloader updates.
    pub fn holder(&self) -> &Arc<PolicyHolder> {
        &self.holder
    }

    /// Re-read the policy directory; on success it replaces the running set,
    /// on failure the running set stays and the errors are reported.
    /// `actor` names who asked (audit line).
    pub async fn reload(&self, trigger: Trigger, actor: &str) -> Result<(), PolicyErrors> {
        let _one_at_a_time = self.gate.lock().await;
        let holder = Arc::clone(&self.holder);
        let precheck = self.precheck.clone();
        let work = move || {
            if let Some(p) = precheck {
                p(holder.dir())?;
            }
            let before = dir_snapshot(holder.dir());
            let set = holder.load_candidate()?;
            // Changed while it was read: not a state anyone wrote on purpose.
            if dir_snapshot(holder.dir()) != before {
                let e = PolicyErrors(vec![Diagnostic {
                    file: holder.dir().display().to_string(),
                    line: 0,
                    column: 0,
                    message: "policy directory changed while it was read; \
                              keeping the last good set until it is stable"
                        .into(),
                }]);
                holder.fail(e.clone());
                return Err(e);
            }
            let widened = crate::policy::widening_changes(&holder.current(), &set);
            let version = set.version().to_string();
            holder.install(set);
            Ok((version, widened))
        };
        let result = match tokio::task::spawn_blocking(work).await {
            Ok(r) => r,
            Err(_) => Err(PolicyErrors(vec![Diagnostic {
                file: self.holder.dir().display().to_string(),
                line: 0,
                column: 0,
                message: "policy reload task failed".into(),
            }])),
        };
        let dir = self.holder.dir().display().to_string();
        match &result {
            Ok((version, widened)) => {
                tracing::info!(trigger = trigger.as_str(), actor, dir = %dir, version = %version, "policy reloaded");
                for w in widened {
                    tracing::warn!(trigger = trigger.as_str(), actor, rule = %w.rule, change = w.change,
                        what = %w.what.join("; "), "policy reload widens access");
                }
            }
            Err(e) => {
                for d in &e.0 {
                    tracing::warn!(trigger = trigger.as_str(), file = %d.file, line = d.line, column = d.column,
                        problem = %d.message, "policy reload failed; keeping the last good policy set");
                }
            }
        }
        {
            let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
            st.last_attempt_at = Some(crate::audit::now_rfc3339());
            st.last_trigger = Some(trigger);
            match &result {
                Ok(_) => {
                    st.reloads += 1;
                    st.last_result = Some("ok");
                    st.last_error = None;
                }
                Err(e) => {
                    st.failures += 1;
                    st.last_result = Some("error");
                    st.last_error = Some(diagnostics(e));
                }
            }
        }
        if result.is_ok()
            && let Some(f) = self.after_reload.get()
        {
            f();
        }
        if let Some(c) = self.counter.get() {
            c.get_or_create(&crate::metrics::ReloadLabels {
                trigger: trigger.as_str(),
                result: if result.is_ok() { "ok" } else { "error" },
            })
            .inc();
        }
        let (version, widened) = match &result {
            Ok((v, w)) => (Some(v.clone()), w.clone()),
            Err(_) => (None, Vec::new()),
        };
        self.audit.emit_now(&ReloadAudit {
            kind: "policy_reload",
            trigger,
            actor,
            dir,
            result: if result.is_ok() { "ok" } else { "error" },
            errors: result.as_ref().err().map(diagnostics),
            version,
            widened,
        });
        result.map(|_| ())
    }

    /// Reload history and the current error, if any.
    pub fn status(&self) -> ReloadStatus {
        let mut st = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if st.last_error.is_none() {
            st.last_error = self.holder.last_error().as_ref().map(diagnostics);
        }
        st
    }

    fn set_watching(&self, watching: bool, error: Option<String>) {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.watching = watching;
        st.watch_error = error;
    }
}

/// The running watcher and signal tasks. Keep it alive for as long as reloads
/// should happen; [`ReloaderHandle::stop`] ends them.
#[derive(Debug)]
pub struct ReloaderHandle {
    reloader: Arc<Reloader>,
    tasks: Vec<JoinHandle<()>>,
}

impl ReloaderHandle {
    /// The reloader (hand it to the admin server so its reloads share history).
    pub fn reloader(&self) -> Arc<Reloader> {
        Arc::clone(&self.reloader)
    }

    /// Stop watching and listening for SIGHUP.
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Start the policy directory watcher (reloading once the directory has
/// been quiet for `quiet_period`) and the SIGHUP handler. Must be called
/// inside a tokio runtime. A watcher that cannot start is logged at WARN and
/// reported in status; SIGHUP and the admin endpoint still work.
pub fn spawn_reloader(
    holder: Arc<PolicyHolder>,
    audit: Audit,
    quiet_period: Duration,
) -> ReloaderHandle {
    spawn_with_quiet(Reloader::new(holder, audit), quiet_period)
}

/// [`spawn_reloader`] for a reloader built by the caller (e.g. with a
/// precheck), with the default quiet period.
pub fn spawn_with(reloader: Arc<Reloader>) -> ReloaderHandle {
    spawn_with_quiet(reloader, DEBOUNCE)
}

/// [`spawn_with`] with an explicit quiet period.
pub fn spawn_with_quiet(reloader: Arc<Reloader>, quiet_period: Duration) -> ReloaderHandle {
    let mut tasks = Vec::new();

    match start_watcher(&reloader, quiet_period) {
        Ok(task) => {
            reloader.set_watching(true, None);
            tasks.push(task);
        }
        Err(e) => {
            tracing::warn!(dir = %reloader.holder.dir().display(), error = %e,
                "cannot watch the policy directory; reload with SIGHUP or the admin API");
            reloader.set_watching(false, Some(e.to_string()));
        }
    }

    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            let r = Arc::clone(&reloader);
            tasks.push(tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = r.reload(Trigger::Signal, "sighup").await;
                }
            }));
        }
        Err(e) => tracing::warn!(error = %e, "cannot install the SIGHUP handler"),
    }

    ReloaderHandle { reloader, tasks }
}

/// What the policy files look like from outside: name, size and mtime of
/// every YAML file (through symlinks, as a ConfigMap mount has them) plus
/// the target of a ConfigMap's `..data` link. Two equal snapshots around a
/// read mean nobody wrote in between.
fn dir_snapshot(dir: &Path) -> Vec<(String, u64, Option<std::time::SystemTime>)> {
    let mut out = Vec::new();
    if let Ok(target) = std::fs::read_link(dir.join("..data")) {
        out.push((format!("..data -> {}", target.display()), 0, None));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
                continue;
            }
            let meta = std::fs::metadata(e.path()).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let mtime = meta.and_then(|m| m.modified().ok());
            out.push((name, len, mtime));
        }
    }
    out.sort();
    out
}

fn start_watcher(
    reloader: &Arc<Reloader>,
    quiet_period: Duration,
) -> notify::Result<JoinHandle<()>> {
    use notify::{EventKind, RecursiveMode, Watcher};

    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if !matches!(ev.kind, EventKind::Access(_)) => {
                // A full channel already holds a pending wake-up: dropping is fine.
                let _ = tx.try_send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "policy directory watch error"),
        })?;
    watcher.watch(reloader.holder.dir(), RecursiveMode::NonRecursive)?;
    let r = Arc::clone(reloader);
    Ok(tokio::spawn(async move {
        let _watcher = watcher; // lives as long as the task
        while rx.recv().await.is_some() {
            // Debounce: wait until the directory has been quiet for the
            // whole period, so a file written in pieces (a slow copy, an
            // editor's save, a ConfigMap's `..data` swap) is loaded once,
            // complete, and never half-written.
            loop {
                match tokio::time::timeout(quiet_period, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let _ = r.reload(Trigger::Watch, "file-watcher").await;
        }
    }))
}
