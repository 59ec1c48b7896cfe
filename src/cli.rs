//! Glue for CLI verbs that are more than a call: `policy explain`,
//! `policy test`, `policy diff`, `config check`, and the human `status`.
//!
//! Everything the verbs print goes through [`out`], which returns write
//! errors instead of panicking like `println!`: a closed pipe
//! (`spangate status | head -1`) ends the program quietly
//! ([`is_broken_pipe`], [`EXIT_BROKEN_PIPE`]).

pub mod config_check;
pub mod deployments;
pub mod policy_diff;
pub mod policy_test;
pub mod spool;
pub mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::Bytes;

use crate::identity::Principal;
use crate::otlp::{self, Encoding};
use crate::policy::PolicySet;

/// Flags of `spangate policy explain`.
#[derive(Debug, Clone, clap::Args)]
#[command(group = clap::ArgGroup::new("identity").required(true).args(["token", "claims"]))]
pub struct ExplainArgs {
    /// Policy directory.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// A JWT whose claims to explain. It is decoded, NOT verified: explain is
    /// about policy; authentication is `serve`'s job. Use `-` to read stdin.
    #[arg(long)]
    pub token: Option<String>,
    /// A JSON file of claims (as a verified token would carry them).
    #[arg(long)]
    pub claims: Option<PathBuf>,
    /// Provider name the identity comes from. Defaults to the provider whose
    /// issuer equals the claims' `iss` in `--config`, else the only provider
    /// the policy names.
    #[arg(long)]
    pub provider: Option<String>,
    /// Process config, to map `iss` to a provider name.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Endpoint name (as in the policy's `endpoints`).
    #[arg(long)]
    pub endpoint: String,
    /// An OTLP batch (`.json` = OTLP/JSON, anything else = protobuf; gzip is detected).
    #[arg(long)]
    pub batch: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Exit status when standard output is a closed pipe: 128 + SIGPIPE, what a
/// shell reports for a program the signal ended (as `yes | head -1` does
/// under `set -o pipefail`).
pub const EXIT_BROKEN_PIPE: u8 = 141;

/// Exit status of `policy explain` when the decision is a deny.
pub const EXIT_DENY: u8 = 3;

/// Write `text` and a newline to standard output and flush. Unlike
/// `println!`, a closed pipe is an error to return, not a panic.
pub fn out(text: impl std::fmt::Display) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()
}

/// Whether `err` (or anything in its chain) is a write to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Run `spangate policy explain`.
pub fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let set = PolicySet::load_dir(&args.policies)
        .map_err(|e| anyhow::anyhow!("policy {} is invalid:\n{e}", args.policies.display()))?;
    let (claims, fp) = match (&args.token, &args.claims) {
        (Some(token), _) => {
            let token = if token == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                s.trim().to_string()
            } else {
                token.clone()
            };
            let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(&token)
                .map_err(|_| anyhow::anyhow!("--token is not a decodable JWT"))?;
            (claims, crate::fingerprint(token.as_bytes()))
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            let claims = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            (claims, String::from("-"))
        }
        (None, None) => bail!("give --token or --claims"),
    };
    let serde_json::Value::Object(claims) = claims else {
        bail!("claims must be a JSON object");
    };
    let issuer = claims
        .get("iss")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let provider = match (&args.provider, &args.config) {
        (Some(p), _) => p.clone(),
        (None, Some(cfg)) => {
            let cfg = crate::config::Config::load(cfg)?;
            cfg.providers
                .iter()
                .find(|(_, p)| {
                    p.issuer == issuer
                        || p.issuer.trim_end_matches('/') == issuer.trim_end_matches('/')
                })
                .map(|(name, _)| name.clone())
                .with_context(|| {
                    format!("no provider in the config has issuer {issuer:?}; pass --provider")
                })?
        }
        (None, None) => {
            bail!("pass --provider NAME (or --config FILE to map the token's iss to a provider)")
        }
    };
    let endpoint = set
        .endpoint_by_name(&args.endpoint)
        .cloned()
        .with_context(|| format!("no endpoint named {:?} in the policy", args.endpoint))?;
    let batch = match &args.batch {
        None => None,
        Some(path) => Some(load_batch(path)?),
    };
    // The same derivation `serve` applies to verified claims (subject, exp,
    // claims overage), so explain sees what a request would.
    let mut principal = Principal::from_verified_claims(&provider, &issuer, claims);
    principal.token_fingerprint = fp;
    let explanation = crate::policy::explain(
        &set,
        &principal,
        &endpoint,
        batch.as_ref().map(|b| &b.summary),
    );
    if args.json {
        out(serde_json::to_string_pretty(&explanation)?)?;
    } else {
        out(&explanation)?;
    }
    Ok(if explanation.decision.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DENY)
    })
}

/// Read an OTLP batch file: `.json` = OTLP/JSON, anything else protobuf;
/// gzip is detected by its magic bytes.
pub(crate) fn load_batch(path: &std::path::Path) -> anyhow::Result<otlp::Batch> {
    let raw = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let raw = if raw.starts_with(&[0x1f, 0x8b]) {
        otlp::gunzip_capped(&raw, 64 << 20)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    } else {
        Bytes::from(raw)
    };
    let enc = if path.extension().is_some_and(|e| e == "json") {
        Encoding::Json
    } else {
        Encoding::Protobuf
    };
    otlp::decode(enc, raw).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
