//! Admin API: a second listener (loopback by default) over the same secrets
//! store and policy set.
//!
//! SKELETON: config only; the admin work fills this in.

use std::net::SocketAddr;

use serde::Deserialize;

pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// `admin:` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.parse().expect("valid default"),
        }
    }
}

impl AdminConfig {
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}
