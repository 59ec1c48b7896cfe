//! spangate: an identity-aware proxy for OTLP telemetry.
//!
//! A request flows through the stages documented in [`proxy`]; every stage is a
//! plain function on owned data. Shared state (policy set, key sets, secrets) is
//! held behind `Arc` snapshots so reloads and rotations never block a request.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod audit;
pub mod budget;
pub mod cli;
pub mod client;
pub mod config;
pub mod deployments;
pub mod dev;
pub mod drains;
pub mod error;
pub mod forward;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod otlp;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod scrape;
pub mod secrets;
pub mod shared;
pub mod spool;
pub mod state;

/// Short, stable, non-reversible fingerprint of a secret or token: the first
/// 12 hex digits of its SHA-256. Safe to log.
pub fn fingerprint(value: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value);
    fingerprint_of_sha256(digest.as_ref())
}

/// [`fingerprint`] of a value whose SHA-256 is already known (the request
/// path hashes a token once, for the verified-token cache and the audit line).
pub fn fingerprint_of_sha256(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(12);
    for b in digest.iter().take(6) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Install the process-wide rustls crypto provider (aws-lc-rs, the same one
/// jsonwebtoken uses). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
