//! A real `redis-server` on a free loopback port, for the fleet tests:
//! no persistence, its own temp dir, stopped by PID. Also a replica of
//! another one, or a Sentinel monitoring one.
//!
//! `SPANGATE_TEST_REDIS_SERVER` names another server binary (for example
//! `valkey-server`) to run the same tests against it.

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
    /// Extra command-line arguments (e.g. `--replicaof HOST PORT`).
    args: Vec<String>,
    /// Run as a Sentinel with this config file.
    sentinel_conf: Option<std::path::PathBuf>,
}

/// The server binary: `SPANGATE_TEST_REDIS_SERVER`, else `redis-server`.
pub fn server_binary() -> String {
    std::env::var("SPANGATE_TEST_REDIS_SERVER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "redis-server".to_string())
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
    // A server with a password answers, too: it refuses the PING.
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

impl RedisServer {
    /// Start one on a free port. Fails (with the install command) when
    /// redis-server is not installed: these tests never skip.
    pub fn start() -> RedisServer {
        Self::start_with(Vec::new(), None)
    }

    /// Start one with extra command-line arguments (e.g. `--requirepass`).
    pub fn start_args(args: &[&str]) -> RedisServer {
        Self::start_with(args.iter().map(|a| a.to_string()).collect(), None)
    }

    fn start_with(args: Vec<String>, sentinel: Option<(&RedisServer, &str)>) -> RedisServer {
        Self::start_full(args, sentinel, "")
    }

    /// A Sentinel as [`RedisServer::start_sentinel`] with extra config lines.
    pub fn start_sentinel_conf(master: &RedisServer, name: &str, extra: &str) -> RedisServer {
        Self::start_full(Vec::new(), Some((master, name)), extra)
    }

    fn start_full(
        args: Vec<String>,
        sentinel: Option<(&RedisServer, &str)>,
        extra: &str,
    ) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let sentinel_conf = sentinel.map(|(master, name)| {
            // Sentinel rewrites its config file: it lives in the temp dir.
            let conf = dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {name} 127.0.0.1 {mport} 1\n\
                     sentinel down-after-milliseconds {name} 1000\n\
                     sentinel failover-timeout {name} 10000\n\
                     sentinel parallel-syncs {name} 1\n{extra}",
                    dir = dir.path().display(),
                    mport = master.port,
                ),
            )
            .expect("sentinel.conf");
            conf
        });
        let mut r = RedisServer {
            child: None,
            port,
            dir,
            tls: None,
            args,
            sentinel_conf,
        };
        r.spawn();
        r
    }

    /// Start one that replicates `master`.
    pub fn start_replica_of(master: &RedisServer) -> RedisServer {
        Self::start_with(
            vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ],
            None,
        )
    }

    /// Start a Sentinel (quorum 1, master down after 1 s) monitoring
    /// `master` under `name`.
    pub fn start_sentinel(master: &RedisServer, name: &str) -> RedisServer {
        Self::start_with(Vec::new(), Some((master, name)))
    }

    /// The plain port.
    pub fn port(&self) -> u16 {
        self.port
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
            args: Vec::new(),
            sentinel_conf: None,
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
        let mut cmd = Command::new(server_binary());
        if let Some(conf) = &self.sentinel_conf {
            cmd.arg(conf).arg("--sentinel");
        }
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
        if self.sentinel_conf.is_none() {
            cmd.args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(self.dir.path())
                .args(&self.args);
        }
        let child = cmd
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): the fleet tests need a real Redis; \
                     install it with `apt-get install -y redis-server` (CI's .ci/run does)",
                    server_binary()
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
