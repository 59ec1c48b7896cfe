//! A real `redis-server` on a free loopback port, for the fleet tests:
//! no persistence, its own temp dir, stopped by PID.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// TLS port and the CA that signed the server's certificate (PEM file).
    tls: Option<(u16, std::path::PathBuf)>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// True when something answers PING with PONG on `port`.
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

impl RedisServer {
    /// Start one on a free port. Fails (with the install command) when
    /// redis-server is not installed: these tests never skip.
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            tls: None,
        };
        r.spawn();
        r
    }

    /// Start one that also listens with TLS (certificate for 127.0.0.1 and
    /// localhost, signed by a fresh CA); the plain port stays for readiness
    /// checks and raw reads.
    pub fn start_tls() -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(dir.path().join("server.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), leaf_key.serialize_pem()).unwrap();
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            dir,
            tls: Some((free_port(), ca_file)),
        };
        r.spawn();
        r
    }

    /// `rediss://127.0.0.1:TLS_PORT` and the CA file, when started with TLS.
    pub fn tls(&self) -> Option<(String, std::path::PathBuf)> {
        self.tls
            .as_ref()
            .map(|(p, ca)| (format!("rediss://127.0.0.1:{p}"), ca.clone()))
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        if let Some((tls_port, ca)) = &self.tls {
            cmd.arg("--tls-port")
                .arg(tls_port.to_string())
                .arg("--tls-cert-file")
                .arg(self.dir.path().join("server.pem"))
                .arg("--tls-key-file")
                .arg(self.dir.path().join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no"]);
        }
        let child = cmd
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the fleet tests need a real Redis; \
                     install it with `apt-get install -y redis-server` (CI's .ci/run does)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it (by PID) and wait until the port no longer answers.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while answers(self.port) {
            assert!(Instant::now() < deadline, "redis-server still answers");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start it again on the same port (empty: it keeps no data).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A client for reading raw keys.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connect")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
