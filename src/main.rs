//! The `spangate` binary: parses flags, starts logging, loads config and
//! hands over to `app::build` (or to a CLI verb).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

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
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy directory; exits non-zero with file:line:column errors.
    Check {
        /// Policy directory.
        dir: PathBuf,
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
                Some(p) => spangate::audit::Audit::file(p)
                    .with_context(|| format!("audit file {}", p.display()))?,
                None => spangate::audit::Audit::stdout(),
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
        Command::Policy { command } => match command {
            PolicyCommand::Check { dir } => match spangate::policy::PolicySet::load_dir(&dir) {
                Ok(_) => {
                    println!("{}: ok", dir.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            },
        },
    }
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
