//! `spangate config check FILE`: validate a process config and the policy
//! directory it names without starting anything. Nothing is bound and
//! nothing is fetched (providers' issuers are not contacted); files the
//! config names (policies, TLS certificate and key, upstream CA) are read.
//!
//! Every problem prints as `file:line:column: error: message` (or
//! `file: error: message` when there is no position); the exit status is 0
//! when there are no errors (warnings allowed unless `--strict`), 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, ConfigError};
use crate::policy::{LintContext, check_dir};

/// Flags of `spangate config check`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigCheckArgs {
    /// Process config file (YAML) to check.
    pub file: PathBuf,
    /// Exit 1 on policy warnings too, not only on errors.
    #[arg(long)]
    pub strict: bool,
}

/// What a check found, for the binary to print and tests to read.
#[derive(Debug, Default)]
pub struct ConfigReport {
    /// `file:line:column: error: …` lines.
    pub errors: Vec<String>,
    /// `file:line:column: warning: …` lines.
    pub warnings: Vec<String>,
    /// Policy files read.
    pub policy_files: usize,
    /// Policy version when the set is valid.
    pub policy_version: Option<String>,
}

fn config_line(e: &ConfigError) -> String {
    match e.location {
        Some((l, c)) => format!("{}:{l}:{c}: error: {}", e.file, e.message),
        None => format!("{}: error: {}", e.file, e.message),
    }
}

/// A file the config names must be a readable regular file.
fn check_file(config: &Path, key: &str, path: &Path, errors: &mut Vec<String>) {
    if let Err(e) = std::fs::File::open(path).and_then(|f| f.metadata()) {
        errors.push(format!(
            "{}: error: {key}: cannot read {}: {e}",
            config.display(),
            path.display()
        ));
    }
}

/// Check `file` and the policies it points to.
pub fn check(file: &Path) -> ConfigReport {
    let mut report = ConfigReport::default();
    let cfg = match Config::load(file) {
        Ok(cfg) => cfg,
        Err(errs) => {
            report.errors = errs.0.iter().map(config_line).collect();
            return report;
        }
    };
    if let Some(tls) = &cfg.server.tls {
        check_file(
            file,
            "server.tls.cert_file",
            &tls.cert_file,
            &mut report.errors,
        );
        check_file(
            file,
            "server.tls.key_file",
            &tls.key_file,
            &mut report.errors,
        );
    }
    for (name, up) in &cfg.upstreams {
        if let Some(ca) = &up.ca_file {
            check_file(
                file,
                &format!("upstreams.{name}.ca_file"),
                ca,
                &mut report.errors,
            );
        }
    }
    let policies = check_dir(&cfg.policies, &LintContext::from_config(&cfg));
    let line = |kind: &str, d: &crate::policy::Diagnostic| {
        format!("{}:{}:{}: {kind}: {}", d.file, d.line, d.column, d.message)
    };
    report
        .errors
        .extend(policies.errors.iter().map(|d| line("error", d)));
    report.warnings = policies
        .warnings
        .iter()
        .map(|d| line("warning", d))
        .collect();
    report.policy_files = policies.files;
    report.policy_version = policies.version;
    report
}

/// Run `spangate config check`.
pub fn run(args: ConfigCheckArgs) -> anyhow::Result<ExitCode> {
    let report = check(&args.file);
    for l in report.errors.iter().chain(&report.warnings) {
        super::out(l)?;
    }
    let failed = !report.errors.is_empty() || (args.strict && !report.warnings.is_empty());
    if report.errors.is_empty() {
        super::out(format_args!(
            "{}: ok ({} policy file(s), policy version {}, {} warning(s))",
            args.file.display(),
            report.policy_files,
            report.policy_version.as_deref().unwrap_or("-"),
            report.warnings.len()
        ))?;
    } else {
        super::out(format_args!(
            "{}: {} error(s), {} warning(s)",
            args.file.display(),
            report.errors.len(),
            report.warnings.len()
        ))?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
