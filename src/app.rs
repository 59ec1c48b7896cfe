//! Wires the process: builds shared state, binds listeners, spawns tasks, and
//! returns the bound addresses plus a shutdown handle (so tests run the whole
//! app on port 0).

use std::sync::Arc;

use crate::audit::Audit;
use crate::client::HttpClient;
use crate::config::Config;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::policy::PolicyHolder;
use crate::secrets::SecretStore;

/// State shared by the proxy and admin listeners.
pub struct Shared {
    pub config: Config,
    pub identity: Arc<Identity>,
    pub policy: Arc<PolicyHolder>,
    pub secrets: Arc<SecretStore>,
    pub client: HttpClient,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
}
