//! The `spangate` binary: parses flags, starts logging, loads config and
//! hands over to `app::build` (or to a CLI verb).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use spangate::admin::client::{AdminCommand, ValueSource};

#[derive(Parser)]
#[command(
    name = "spangate",
    version,
    about = "Identity-aware proxy for OTLP telemetry"
)]
struct Cli {
    /// Log format on stderr (audit lines go to stdout or the audit file).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Process config file (YAML).
        #[arg(long, short, env = "SPANGATE_CONFIG", default_value = "spangate.yaml")]
        config: PathBuf,
    },
    /// Zero-setup demo: embedded OIDC issuer, recording upstream and the proxy on loopback.
    Dev(spangate::dev::DevArgs),
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Manage upstream credentials through the admin API.
    Secrets {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Show the running proxy's status (admin API).
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// How to reach the admin API.
#[derive(clap::Args)]
struct AdminArgs {
    /// Admin API base URL.
    #[arg(long, global = true, default_value = spangate::admin::client::DEFAULT_ADMIN_URL)]
    admin: String,
    /// Admin bearer token (an OIDC token with admin permissions, or the
    /// bootstrap token). Prefer the SPANGATE_ADMIN_TOKEN environment variable:
    /// flags are visible in `ps`.
    #[arg(long, global = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// List credentials (metadata and fingerprints only).
    List,
    /// Show one credential's versions.
    Show { name: String },
    /// Rotate a credential. The new value is read from --value-env, --value-file
    /// or stdin, never from the command line.
    Rotate {
        name: String,
        /// Read the new value from this environment variable.
        #[arg(long, conflicts_with = "value_file")]
        value_env: Option<String>,
        /// Read the new value from this file.
        #[arg(long)]
        value_file: Option<PathBuf>,
        /// How long the previous value stays usable (e.g. 10m).
        #[arg(long)]
        grace: Option<String>,
        /// Skip the upstream probe that checks the new value first.
        #[arg(long)]
        no_verify: bool,
        /// Activate even if the upstream refuses the new value.
        #[arg(long)]
        force: bool,
        /// Upstream to probe (needed when several are configured).
        #[arg(long)]
        upstream: Option<String>,
        /// Retire this version automatically after this RFC 3339 time.
        #[arg(long)]
        not_after: Option<String>,
    },
    /// Make the previous version current again (while it is in its grace period).
    Rollback { name: String },
    /// Retire one version (not the current one).
    Retire { name: String, version: u64 },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate and lint a policy directory; exits non-zero with file:line:column errors.
    Check {
        /// Policy directory.
        dir: PathBuf,
        /// Process config: also check credential, upstream and provider names against it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Exit non-zero on warnings too.
        #[arg(long)]
        strict: bool,
    },
    /// Explain the decision for an identity on an endpoint: the deciding rule,
    /// and for every binding and deny rule whether it matched and why not.
    Explain(spangate::cli::ExplainArgs),
    /// Run table tests (identity + endpoint + batch → expected decision)
    /// against a policy directory; exits non-zero when a case fails.
    Test(spangate::cli::policy_test::TestArgs),
    /// Ask the running proxy to reload its policy directory (admin API).
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Ask the running proxy to validate its policy directory without loading it (admin API).
    Validate {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let cfg = spangate::config::Config::load(&config)?;
            let audit = match &cfg.audit.file {
                Some(p) => spangate::audit::Audit::background_file(p)
                    .with_context(|| format!("audit file {}", p.display()))?,
                None => {
                    spangate::audit::Audit::background_stdout().context("audit writer thread")?
                }
            };
            let app = spangate::app::build(cfg, audit).await?;
            let trigger = app.shutdown_trigger();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutting down: draining in-flight requests");
                let _ = trigger.send(true);
            });
            app.join().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(args) => spangate::dev::run(args).await,
        Command::Status { admin } => admin_call(admin, AdminCommand::Status).await,
        Command::Secrets { admin, command } => {
            let cmd = match command {
                SecretsCommand::List => AdminCommand::SecretsList,
                SecretsCommand::Show { name } => AdminCommand::SecretsShow { name },
                SecretsCommand::Rotate {
                    name,
                    value_env,
                    value_file,
                    grace,
                    no_verify,
                    force,
                    upstream,
                    not_after,
                } => AdminCommand::SecretsRotate {
                    name,
                    value: match (value_env, value_file) {
                        (Some(var), _) => ValueSource::Env(var),
                        (None, Some(path)) => ValueSource::File(path),
                        (None, None) => ValueSource::Stdin,
                    },
                    grace,
                    verify: !no_verify,
                    force,
                    upstream,
                    not_after,
                },
                SecretsCommand::Rollback { name } => AdminCommand::SecretsRollback { name },
                SecretsCommand::Retire { name, version } => {
                    AdminCommand::SecretsRetire { name, version }
                }
            };
            admin_call(admin, cmd).await
        }
        Command::Policy { command } => match command {
            PolicyCommand::Check {
                dir,
                config,
                strict,
            } => {
                let ctx = match config {
                    Some(path) => {
                        let cfg = spangate::config::Config::load(&path)?;
                        spangate::policy::LintContext::from_config(&cfg)
                    }
                    None => spangate::policy::LintContext::new(),
                };
                let report = spangate::policy::check_dir(&dir, &ctx);
                println!("{report}");
                let failed = !report.is_ok() || (strict && !report.warnings.is_empty());
                Ok(if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
            PolicyCommand::Explain(args) => spangate::cli::explain(args),
            PolicyCommand::Test(args) => spangate::cli::policy_test::run(args),
            PolicyCommand::Reload { admin } => admin_call(admin, AdminCommand::PolicyReload).await,
            PolicyCommand::Validate { admin } => {
                admin_call(admin, AdminCommand::PolicyValidate { files: Vec::new() }).await
            }
        },
    }
}

async fn admin_call(admin: AdminArgs, cmd: AdminCommand) -> anyhow::Result<ExitCode> {
    let token = spangate::admin::client::token_from(admin.token);
    let out = spangate::admin::client::run(cmd, &admin.admin, token).await?;
    println!("{}", out.trim_end());
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SPANGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
