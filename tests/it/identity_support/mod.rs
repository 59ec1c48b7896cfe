//! Shared helpers for the identity integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spangate::client::{ClientOptions, HttpClient};
use spangate::dev::idp::{DevIdp, DevIdpOptions, DevKeyAlg};
use spangate::identity::{AuthError, Identity, ProviderConfig};

pub const WAIT: Duration = Duration::from_secs(20);

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn client() -> HttpClient {
    HttpClient::new(ClientOptions::default()).expect("client")
}

pub async fn idp(alg: DevKeyAlg) -> DevIdp {
    DevIdp::start(DevIdpOptions {
        alg,
        ..Default::default()
    })
    .await
    .expect("dev idp")
}

pub async fn idp_with(opts: DevIdpOptions) -> DevIdp {
    DevIdp::start(opts).await.expect("dev idp")
}

/// A provider for a dev issuer, with fast retries (discovery on).
pub fn provider(idp: &DevIdp) -> ProviderConfig {
    let mut p = ProviderConfig::new(idp.issuer(), vec![idp.audience()]);
    p.retry_initial = Duration::from_millis(50);
    p.retry_max = Duration::from_millis(200);
    p
}

pub fn one(name: &str, p: ProviderConfig) -> BTreeMap<String, ProviderConfig> {
    BTreeMap::from([(name.to_string(), p)])
}

/// Start Identity and wait until it has keys.
pub async fn ready(providers: BTreeMap<String, ProviderConfig>) -> Arc<Identity> {
    let id = Identity::start(&providers, client()).expect("valid providers");
    assert!(
        id.wait_ready(WAIT).await,
        "identity not ready: {:?}",
        id.status()
    );
    id
}

pub async fn reason(id: &Identity, token: &str) -> &'static str {
    match id.authenticate(token).await {
        Ok(p) => panic!("token unexpectedly accepted: {p:?}"),
        Err(e) => e.reason(),
    }
}

pub fn is_unavailable(e: &AuthError) -> bool {
    matches!(e, AuthError::ProviderUnavailable { .. })
}

/// A random key id nobody publishes.
pub fn random_kid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Log lines captured from `tracing` on the current thread (the identity
/// tests run on a current-thread runtime, so the providers' tasks log here).
/// The audit module's in-memory sink does the buffering.
pub type Logs = spangate::audit::MemorySink;

/// Capture logs (DEBUG and up) on this thread until the guard drops.
pub fn capture_logs() -> (tracing::subscriber::DefaultGuard, Logs) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (tracing::subscriber::set_default(subscriber), logs)
}
