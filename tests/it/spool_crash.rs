//! Crash test with the real binary: `ack: spooled` on disk, the upstream
//! down, concurrent load of batches with known trace ids, `kill -9` at a
//! random moment, restart with the upstream back: every acknowledged trace
//! id must arrive. Every other round also `kill -9`s at a random point of
//! delivery, with the first batch of that delivery left hanging by the
//! upstream so that the window slides on past it: what may be re-delivered
//! is what was in flight, at most the window per kill, because the ledger
//! records batches finished out of order too (a batch finished behind one
//! still in flight is not re-sent). Duplicates are counted, reported and
//! held to that bound. The upstream `timeout` is long
//! (the recording upstream answers in microseconds) so that a timed-out
//! attempt on a loaded machine, a duplicate of another kind, cannot blur
//! the count.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use spangate::client::{HttpClient, OutBody};
use spangate::dev::upstream::{Behavior, RecordingUpstream};

const WINDOW: usize = 4;
const SAMPLE_TRACE: &str = "5b8efff798038103d269b633813fc60c";
const MIN_ROUNDS: usize = 5;
const MIN_ACKED: usize = 2000;
const SENDERS: usize = 8;

/// A running `spangate serve` (the real binary).
pub(crate) struct Proc {
    pub child: Child,
    pub otlp: std::net::SocketAddr,
    /// `http://ADDR/metrics` when the config has `metrics.listen`.
    pub metrics: Option<String>,
}

/// Start the binary with `config`; returns once it logged its addresses.
pub(crate) fn start(config: &Path) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spangate"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(config)
        .env("SPANGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spangate");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keep reading to the end so the child never blocks on a full pipe.
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["fields"]["message"] == "spangate listening"
                && let Some(a) = v["fields"]["otlp"].as_str()
            {
                let metrics = v["fields"]["metrics"]
                    .as_str()
                    .filter(|m| m.starts_with("http://"))
                    .map(str::to_string);
                let _ = tx.send((a.to_string(), metrics));
            }
        }
    });
    let (addr, metrics) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("spangate started");
    Proc {
        child,
        otlp: addr.parse().expect("address"),
        metrics,
    }
}

/// SIGTERM, then wait for the process to exit.
pub(crate) fn sigterm_and_wait(mut p: Proc) {
    let _ = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status();
    let _ = p.child.wait();
}

fn kill9(mut p: Proc) {
    let _ = p.child.kill();
    let _ = p.child.wait();
}

fn trace_ids(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    text.match_indices("\"traceId\":\"")
        .filter_map(|(i, m)| text.get(i + m.len()..i + m.len() + 32))
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Count trace ids the upstream received (accepted deliveries only: the
/// caller clears the recorder whenever it was answering 503).
fn harvest(up: &RecordingUpstream, counts: &mut BTreeMap<String, usize>) {
    for r in up.take() {
        for id in trace_ids(&r.body) {
            *counts.entry(id).or_default() += 1;
        }
    }
}

fn random_below(n: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % n as u128) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_random_moments_loses_no_acknowledged_batch() {
    let idp = crate::common::demo_idp().await;
    let upstream = RecordingUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (policies, token_file) = crate::common::binary_config_dir(dir.path());
    let config = dir.path().join("spangate.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
server: {{ listen: "127.0.0.1:0", max_body: 64KiB }}
admin: {{ listen: "127.0.0.1:0" }}
providers:
  dev: {{ issuer: "{issuer}", audiences: [{aud}] }}
upstreams:
  lightstep:
    url: "{url}"
    timeout: 20s
    ack: spooled
    spool: {{ dir: spool, fsync: always, window: {WINDOW}, drain: 1s, max_bytes: 256MiB }}
secrets:
  bootstrap: {{ lightstep-prod: {{ file: "{token}" }} }}
policies: "{policies}"
audit: {{ file: audit.jsonl }}
"#,
            issuer = idp.issuer(),
            aud = crate::common::AUDIENCE,
            url = upstream.url("/traces/otlp/v0.9"),
            token = token_file.display(),
            policies = policies.display(),
        ),
    )
    .unwrap();
    let claims = crate::common::demo_identities()
        .remove("edge-prod")
        .unwrap();
    let token = idp.mint(claims);
    let client = HttpClient::new(Default::default()).unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let mut acked_all: BTreeSet<String> = BTreeSet::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut delivery_kills = 0usize;
    let mut round = 0usize;
    while round < MIN_ROUNDS || acked_all.len() < MIN_ACKED {
        round += 1;
        // Upstream down: every acknowledgement comes from the spool alone.
        upstream.set_behavior(Behavior::Status(503));
        let p = start(&config);
        let acked = Arc::new(Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        for _ in 0..SENDERS {
            let (client, token, next, acked, stop) = (
                client.clone(),
                token.clone(),
                next.clone(),
                acked.clone(),
                stop.clone(),
            );
            let url = format!("http://{}/v1/traces", p.otlp);
            senders.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let id = format!("{:032x}", 0x00c0_ffee_0000_0000_u128 + n as u128);
                    let body =
                        spangate::dev::sample_batch_json("checkout", 1).replace(SAMPLE_TRACE, &id);
                    let req = http::Request::post(&url)
                        .header("content-type", "application/json")
                        .header("authorization", format!("Bearer {token}"))
                        .body(OutBody::new(Bytes::from(body)))
                        .unwrap();
                    match client.send(req, Duration::from_secs(10), 1 << 20).await {
                        Ok(r) if r.status() == 200 => acked.lock().unwrap().push(id),
                        Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                        // The process is gone: this round's load is over.
                        Err(_) => break,
                    }
                }
            }));
        }
        // kill -9 at a random moment of the load.
        let target = 350 + random_below(400);
        for _ in 0..2400 {
            if acked.lock().unwrap().len() >= target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_micros(random_below(3000) as u64)).await;
        kill9(p);
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            let _ = s.await;
        }
        let this_round = acked.lock().unwrap().clone();
        assert!(
            !this_round.is_empty(),
            "round {round}: nothing acknowledged"
        );
        acked_all.extend(this_round.iter().cloned());

        // Upstream back (what it recorded while answering 503 is not a delivery).
        upstream.clear();
        let kill_in_delivery = round.is_multiple_of(2);
        upstream.set_behavior(if kill_in_delivery {
            // One slow batch: the ones behind it finish first.
            Behavior::Times(1, Box::new(Behavior::Hang))
        } else {
            Behavior::Accept
        });
        let mut p = start(&config);
        if kill_in_delivery {
            // Also kill -9 at a random point of delivery.
            let target = 2 + random_below(this_round.len() / 2);
            for _ in 0..2000 {
                if upstream.received().len() >= target {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            kill9(p);
            delivery_kills += 1;
            p = start(&config);
        }
        let mut missing = Vec::new();
        for _ in 0..1200 {
            harvest(&upstream, &mut counts);
            missing = acked_all
                .iter()
                .filter(|id| !counts.contains_key(*id))
                .cloned()
                .collect();
            if missing.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        sigterm_and_wait(p);
        harvest(&upstream, &mut counts);
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged batches never arrived, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        eprintln!(
            "round {round}: {} acknowledged (total {}), all delivered",
            this_round.len(),
            acked_all.len()
        );
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "crash test: {round} rounds, {} acknowledged batches, all arrived; {duplicates} duplicate deliveries ({delivery_kills} kills during delivery, window {WINDOW})",
        acked_all.len()
    );
    assert!(acked_all.len() >= MIN_ACKED);
    assert!(
        duplicates <= WINDOW * delivery_kills,
        "{duplicates} duplicates > window {WINDOW} x {delivery_kills} kills during delivery"
    );
}
