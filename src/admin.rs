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

/// Serve the admin API until shutdown. SKELETON: health and metrics only.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: std::sync::Arc<crate::app::Shared>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let opts = crate::proxy::listener::ListenerOptions {
        tls: None,
        header_timeout: std::time::Duration::from_secs(10),
        max_connections: 64,
    };
    let handler = move |req: http::Request<hyper::body::Incoming>, _remote| {
        let shared = shared.clone();
        async move {
            let body = match req.uri().path() {
                "/healthz" => "ok\n".to_string(),
                "/metrics" => shared.metrics.encode(),
                _ => "not found\n".to_string(),
            };
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from(body),
            )))
        }
    };
    crate::proxy::listener::serve(
        listener,
        opts,
        handler,
        shutdown,
        std::time::Duration::from_secs(5),
    )
    .await;
}
