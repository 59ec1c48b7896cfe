//! Transport: HTTP/1.1, h2c and h2 over TLS on one port; header-read timeout.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::{Harness, Options};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let h = Harness::start().await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::post(h.url("/v1/traces"))
        .header("authorization", format!("Bearer {}", h.token("edge-prod")))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(spangate::dev::sample_batch_json(
            "checkout", 1,
        ))))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(h.upstream.received().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn tls_terminates_with_h2_and_http1() {
    spangate::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let (cert_file, key_file, ca_file) = (
        dir.path().join("c.pem"),
        dir.path().join("k.pem"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let h = Harness::start_with(Options {
        server_extra: format!(
            "  tls: {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
            cert_file.display(),
            key_file.display()
        ),
        ..Default::default()
    })
    .await;
    let client = spangate::client::HttpClient::new(spangate::client::ClientOptions {
        extra_ca_file: Some(&ca_file),
        ..Default::default()
    })
    .unwrap();
    let url = format!("https://localhost:{}/v1/traces", h.app.proxy_addr.port());
    let req = http::Request::post(&url)
        .header("authorization", format!("Bearer {}", h.token("edge-prod")))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(spangate::dev::sample_batch_json(
            "checkout", 1,
        ))))
        .unwrap();
    let resp = client
        .send(req, Duration::from_secs(10), 1 << 20)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2, "ALPN negotiates h2");
    // Plain HTTP to a TLS port is refused (no downgrade).
    let plain = h
        .client
        .get(
            &format!("http://127.0.0.1:{}/healthz", h.app.proxy_addr.port()),
            Duration::from_secs(3),
        )
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    assert_eq!(h.upstream.received().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let h = Harness::start_with(Options {
        server_extra: "  header_timeout: 200ms\n".into(),
        ..Default::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(h.app.proxy_addr)
        .await
        .unwrap();
    s.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The server must close (or answer 408) on its own; bounded wait.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "connection was not closed by the header timeout"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let h = Harness::start().await;
    let resp = h
        .client
        .get(&h.url("/healthz"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.body()[..], b"ok\n");
    h.stop().await;
}

/// An upstream's TLS acceptor for a `localhost` leaf (see [`test_pki`]) and
/// the CA file that trusts it.
pub(crate) fn tls_upstream_acceptor(
    dir: &std::path::Path,
) -> (tokio_rustls::TlsAcceptor, std::path::PathBuf) {
    let (cert_file, key_file, ca_file) = test_pki(dir);
    let acceptor = spangate::proxy::listener::tls_acceptor(&spangate::config::TlsConfig {
        cert_file,
        key_file,
    })
    .unwrap();
    (acceptor, ca_file)
}

/// A CA and a `localhost` leaf signed by it, as PEM files in `dir`.
pub(crate) fn test_pki(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &rcgen::Issuer::new(ca_params, &ca_key))
        .unwrap();
    let (c, k, a) = (
        dir.join("up.pem"),
        dir.join("up.key"),
        dir.join("up-ca.pem"),
    );
    std::fs::write(&c, leaf.pem()).unwrap();
    std::fs::write(&k, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&a, ca.pem()).unwrap();
    (c, k, a)
}

#[tokio::test]
async fn upstream_over_tls_uses_its_own_ca_file_and_refuses_unknown_issuers() {
    spangate::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (acceptor, ca_file) = tls_upstream_acceptor(dir.path());
    for trusted in [true, false] {
        let idp = crate::common::demo_idp().await;
        let upstream = spangate::dev::upstream::RecordingUpstream::start_with_tls(
            "127.0.0.1:0".parse().unwrap(),
            Some(acceptor.clone()),
        )
        .await
        .unwrap();
        let opts = Options {
            upstream_url: Some(format!(
                "https://localhost:{}/traces/otlp/v0.9",
                upstream.addr().port()
            )),
            upstream_extra: if trusted {
                format!(", ca_file: \"{}\"", ca_file.display())
            } else {
                String::new()
            },
            ..Default::default()
        };
        let h = Harness::start_app(opts, idp, upstream).await.unwrap();
        let resp = h.send_json(Some(&h.token("edge-prod")), "checkout").await;
        if trusted {
            assert_eq!(resp.status(), 200);
            let got = h.upstream.received();
            assert_eq!(got.len(), 1);
            assert_eq!(
                got[0].header("lightstep-access-token"),
                Some(common::LIGHTSTEP_TOKEN)
            );
        } else {
            // The webpki roots do not know this CA: never forwarded in clear, 502.
            assert_eq!(resp.status(), 502);
            assert_eq!(h.last_audit()["reason"], "upstream_unavailable");
            assert!(h.upstream.received().is_empty());
        }
        h.stop().await;
    }
}
