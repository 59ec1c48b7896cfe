//! `spangate policy diff OLD_DIR NEW_DIR`: what a policy change does, rule by
//! rule and (with `--cases`) for sample identities, before it ships. The
//! comparison itself is `policy::diff` (pure); this is loading and printing.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::policy::PolicySet;
use crate::policy::diff::diff;

/// Exit status when access widens and `--allow-widen` is not given.
pub const EXIT_WIDENS: u8 = 4;

/// Output of `policy diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// Grouped by rule, for people.
    Text,
    /// One JSON document (for CI comments and bots).
    Json,
}

/// Flags of `spangate policy diff`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// Policy directory as it is now (e.g. a checkout of the main branch).
    pub old: PathBuf,
    /// Policy directory as it would be after the change.
    pub new: PathBuf,
    /// `policy test` case files, or directories of them: their identities,
    /// endpoints and batches are decided with both policies and every
    /// changed outcome is listed (expectations are ignored). Repeatable.
    #[arg(long)]
    pub cases: Vec<PathBuf>,
    /// Exit 0 even when access widens (the change was reviewed).
    #[arg(long)]
    pub allow_widen: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
}

/// Run `spangate policy diff`.
pub fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let load = |dir: &PathBuf| {
        PolicySet::load_dir(dir)
            .map_err(|e| anyhow::anyhow!("policy {} is invalid:\n{e}", dir.display()))
    };
    let (old, new) = (load(&args.old)?, load(&args.new)?);
    let samples = if args.cases.is_empty() {
        Vec::new()
    } else {
        super::policy_test::samples(&args.cases)?
    };
    let d = diff(&old, &new, &samples);
    match args.format {
        DiffFormat::Text => super::out(&d)?,
        DiffFormat::Json => super::out(serde_json::to_string_pretty(&d)?)?,
    }
    Ok(if d.widens && !args.allow_widen {
        ExitCode::from(EXIT_WIDENS)
    } else {
        ExitCode::SUCCESS
    })
}
