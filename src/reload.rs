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
use crate::policy::{Diagnostic, PolicyErrors, PolicyHolder, PolicySet};

/// Quiet time after the last file event before a watch-triggered reload.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

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
}

/// An extra check of a policy directory, run before the policy loader
/// (see [`Reloader::with_precheck`]).
pub type Precheck = Arc<dyn Fn(&Path) -> Result<(), PolicyErrors> + Send + Sync>;

/// Runs reloads one at a time and keeps their history.
pub struct Reloader {
    holder: Arc<PolicyHolder>,
    audit: Audit,
    precheck: Option<Precheck>,
    gate: tokio::sync::Mutex<()>,
    status: Mutex<ReloadStatus>,
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
        })
    }

    /// Validate `dir` as a reload would, without touching the running set (blocking).
    pub fn validate(&self, dir: &Path) -> Result<(), PolicyErrors> {
        if let Some(p) = &self.precheck {
            p(dir)?;
        }
        validate_dir(dir)
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
            holder.reload()
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
            Ok(()) => tracing::info!(trigger = ?trigger, actor, dir = %dir, "policy reloaded"),
            Err(e) => {
                for d in &e.0 {
                    tracing::warn!(trigger = ?trigger, file = %d.file, line = d.line, column = d.column,
                        problem = %d.message, "policy reload failed; keeping the last good policy set");
                }
            }
        }
        {
            let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
            st.last_attempt_at = Some(crate::audit::now_rfc3339());
            st.last_trigger = Some(trigger);
            match &result {
                Ok(()) => {
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
        self.audit.emit_now(&ReloadAudit {
            kind: "policy_reload",
            trigger,
            actor,
            dir,
            result: if result.is_ok() { "ok" } else { "error" },
            errors: result.as_ref().err().map(diagnostics),
        });
        result
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

/// Validate a policy directory without touching the running set (blocking).
pub fn validate_dir(dir: &Path) -> Result<(), PolicyErrors> {
    PolicySet::load_dir(dir).map(|_| ())
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

/// Start the policy directory watcher (debounced by [`DEBOUNCE`]) and the
/// SIGHUP handler. Must be called inside a tokio runtime. A watcher that cannot
/// start is logged at WARN and reported in status; SIGHUP and the admin
/// endpoint still work.
pub fn spawn_reloader(holder: Arc<PolicyHolder>, audit: Audit) -> ReloaderHandle {
    spawn_with(Reloader::new(holder, audit))
}

/// [`spawn_reloader`] for a reloader built by the caller (e.g. with a precheck).
pub fn spawn_with(reloader: Arc<Reloader>) -> ReloaderHandle {
    let mut tasks = Vec::new();

    match start_watcher(&reloader) {
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

fn start_watcher(reloader: &Arc<Reloader>) -> notify::Result<JoinHandle<()>> {
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
            // Debounce: wait for a quiet period so an editor's write-rename
            // sequence or a multi-file copy reloads once.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let _ = r.reload(Trigger::Watch, "file-watcher").await;
        }
    }))
}
