//! The one outbound HTTP client stack (hyper-util + hyper-rustls on aws-lc-rs),
//! shared by OIDC discovery, JWKS fetches, introspection and upstream forwarding.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Request body type used by every outbound call.
pub type OutBody = Full<Bytes>;

/// Errors of the outbound client. Messages never contain header values.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect/transport error: {0}")]
    Transport(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("response body over {0} bytes")]
    TooLarge(usize),
    #[error("bad CA file {path}: {reason}")]
    BadCa { path: String, reason: String },
}

/// A pooled HTTP/1.1 + HTTP/2 client over rustls. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, OutBody>,
}

/// Options for [`HttpClient::new`].
#[derive(Clone, Debug, Default)]
pub struct ClientOptions<'a> {
    /// Extra PEM CA bundle trusted in addition to the webpki roots.
    pub extra_ca_file: Option<&'a Path>,
    /// TCP connect timeout.
    pub connect_timeout: Option<Duration>,
    /// HTTP/2 only (gRPC): ALPN `h2` over TLS, prior-knowledge h2c over
    /// plain TCP; one multiplexed connection per host, reconnected by the
    /// pool when it fails.
    pub http2_only: bool,
}

impl HttpClient {
    pub fn new(opts: ClientOptions<'_>) -> Result<Self, ClientError> {
        crate::install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = opts.extra_ca_file {
            let bad = |reason: String| ClientError::BadCa {
                path: path.display().to_string(),
                reason,
            };
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?;
            let mut added = 0;
            for cert in certs {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(bad("no certificates found".into()));
            }
        }
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(opts.connect_timeout.unwrap_or(Duration::from_secs(5))));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector = if opts.http2_only {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().enable_http2().wrap_connector(http)
        };
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .http2_only(opts.http2_only)
            .http2_keep_alive_interval(opts.http2_only.then_some(Duration::from_secs(30)))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Ok(Self { inner })
    }

    /// Send a request and read the whole response body (at most `max_body`
    /// bytes), all within `timeout`.
    pub async fn send(
        &self,
        req: http::Request<OutBody>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<http::Response<Bytes>, ClientError> {
        self.send_with_trailers(req, timeout, max_body)
            .await
            .map(|(resp, _)| resp)
    }

    /// [`HttpClient::send`], keeping the response trailers (gRPC status).
    pub async fn send_with_trailers(
        &self,
        req: http::Request<OutBody>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<(http::Response<Bytes>, Option<http::HeaderMap>), ClientError> {
        let fut = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| ClientError::Transport(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let collected = Limited::new(body, max_body).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ClientError::TooLarge(max_body)
                } else {
                    ClientError::Transport(e.to_string())
                }
            })?;
            let trailers = collected.trailers().cloned();
            Ok((
                http::Response::from_parts(parts, collected.to_bytes()),
                trailers,
            ))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    /// GET a URL (used by discovery, JWKS); 1 MiB cap.
    pub async fn get(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<http::Response<Bytes>, ClientError> {
        let req = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(OutBody::default())
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        self.send(req, timeout, 1 << 20).await
    }
}

/// Render an error and its sources on one line (no header values are ever in these).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
