//! `spangate spool status|inspect|replay-dead|purge`: the spools of a
//! running proxy, through its admin API.

use std::process::ExitCode;

use anyhow::bail;
use http::Method;

use crate::admin::client::{DEFAULT_ADMIN_URL, call_json, token_from};

/// Flags of `spangate spool`.
#[derive(Debug, clap::Args)]
pub struct SpoolArgs {
    /// Admin API base URL.
    #[arg(long, global = true, default_value = DEFAULT_ADMIN_URL)]
    pub admin: String,
    /// Admin bearer token; prefer the SPANGATE_ADMIN_TOKEN environment
    /// variable (flags are visible in `ps`).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: SpoolCommand,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum SpoolCommand {
    /// Depth, bytes, oldest age and dead letters of every spool.
    Status,
    /// The oldest queued batches and the dead letters of one upstream's
    /// spool (metadata only: request id, endpoint, signal, identity,
    /// credential name, size, age).
    Inspect { upstream: String },
    /// Move every dead letter back into the queue for delivery.
    ReplayDead { upstream: String },
    /// Delete every queued batch (or, with --dead, every dead letter) for good.
    Purge {
        upstream: String,
        /// Purge the dead letters instead of the queue.
        #[arg(long)]
        dead: bool,
        /// Confirm: a purge cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

/// Run `spangate spool ...`.
pub async fn run(args: SpoolArgs) -> anyhow::Result<ExitCode> {
    let token = token_from(args.token);
    let url = args.admin.as_str();
    let out = match &args.command {
        SpoolCommand::Status => {
            call_json(url, token, Method::GET, "/admin/v1/spools", None).await?
        }
        SpoolCommand::Inspect { upstream } => {
            let path = format!("/admin/v1/spools/{upstream}");
            call_json(url, token, Method::GET, &path, None).await?
        }
        SpoolCommand::ReplayDead { upstream } => {
            let path = format!("/admin/v1/spools/{upstream}/replay-dead");
            call_json(url, token, Method::POST, &path, None).await?
        }
        SpoolCommand::Purge {
            upstream,
            dead,
            yes,
        } => {
            if !yes {
                bail!("purge deletes batches for good; add --yes to confirm");
            }
            let path = format!("/admin/v1/spools/{upstream}/purge");
            let body = serde_json::json!({ "confirm": true, "dead": dead });
            call_json(url, token, Method::POST, &path, Some(body)).await?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", render(&args.command, &out));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(cmd: &SpoolCommand, v: &serde_json::Value) -> String {
    let n = |v: &serde_json::Value, k: &str| v.get(k).map(|x| x.to_string()).unwrap_or_default();
    match cmd {
        SpoolCommand::Status => {
            let Some(spools) = v["spools"].as_object().filter(|m| !m.is_empty()) else {
                return "no spool configured".into();
            };
            let mut out = String::from(
                "UPSTREAM  STORAGE  ACK  BATCHES  IN_FLIGHT  BYTES  MAX_BYTES  OLDEST_MS  DEAD  DELIVERING",
            );
            for (name, s) in spools {
                out.push_str(&format!(
                    "\n{name}  {}  {}  {}  {}  {}  {}  {}  {}  {}",
                    s["storage"].as_str().unwrap_or("-"),
                    s["ack"].as_str().unwrap_or("-"),
                    n(s, "batches"),
                    n(s, "in_flight"),
                    n(s, "bytes"),
                    n(s, "max_bytes"),
                    n(s, "oldest_ms"),
                    n(s, "dead_letters"),
                    n(s, "delivering"),
                ));
            }
            out
        }
        SpoolCommand::Inspect { upstream } => {
            let mut out = format!(
                "spool {upstream}: {} queued, {} dead letters",
                n(v, "batches"),
                n(v, "dead_letters")
            );
            for (title, key) in [
                ("queued (oldest first)", "queued"),
                ("dead letters", "dead"),
            ] {
                let items = v[key].as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    continue;
                }
                out.push_str(&format!("\n{title}:"));
                for i in items {
                    out.push_str(&format!(
                        "\n  {}  endpoint={}  signal={}  {}/{}  credential={}  spans={}  bytes={}  age_ms={}{}",
                        i["request_id"].as_str().unwrap_or("-"),
                        i["endpoint"].as_str().unwrap_or("-"),
                        i["signal"].as_str().unwrap_or("-"),
                        i["provider"].as_str().unwrap_or("-"),
                        i["subject"].as_str().unwrap_or("-"),
                        i["credential"].as_str().unwrap_or("-"),
                        n(&i, "spans"),
                        n(&i, "bytes"),
                        n(&i, "age_ms"),
                        i.get("upstream_status")
                            .filter(|s| !s.is_null())
                            .map(|s| format!("  upstream_status={s}"))
                            .unwrap_or_default(),
                    ));
                }
            }
            out
        }
        SpoolCommand::ReplayDead { upstream } => {
            format!(
                "spool {upstream}: {} dead letters queued again",
                n(v, "replayed")
            )
        }
        SpoolCommand::Purge { upstream, dead, .. } => format!(
            "spool {upstream}: {} {} purged (one audit line each)",
            n(v, "purged"),
            if *dead {
                "dead letters"
            } else {
                "queued batches"
            }
        ),
    }
}
