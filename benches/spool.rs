//! Spool benchmark, all in one run so the ratios compare like with like:
//! 1. accept latency (p50/p99) with a 300 ms upstream: `ack: spooled` versus
//!    `ack: upstream`;
//! 2. accepted batches per second at 50 spans, 16 concurrent clients:
//!    `ack: spooled` with `fsync: always`, with `fsync: interval(5ms)`, and
//!    the memory-only baseline (`ack: upstream`, memory spool, upstream
//!    answering at once: no disk in the path).
//!
//! `cargo bench --bench spool` (release) or, quicker and noisier,
//! `cargo bench --bench spool --profile dev`. The machine is shared: read
//! ratios, not absolutes. It first prints what one fdatasync costs on that
//! disk now: the floor of an `fsync: always` acknowledgement.
//! `SPANGATE_BENCH_DIR=/dev/shm` puts the spools on a tmpfs instead (fsync
//! free), which shows what spangate itself adds.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use spangate::audit::Audit;
use spangate::client::{HttpClient, OutBody};
use spangate::config::Config;
use spangate::dev::idp::{DevIdp, DevIdpOptions};
use spangate::dev::upstream::{Behavior, RecordingUpstream};

fn batch(spans: usize) -> Bytes {
    let json = spangate::dev::sample_batch_json("checkout", spans);
    let req: ExportTraceServiceRequest = serde_json::from_str(&json).expect("valid OTLP/JSON");
    Bytes::from(req.encode_to_vec())
}

struct Setup {
    app: spangate::app::App,
    upstream: RecordingUpstream,
    _dir: tempfile::TempDir,
}

async fn setup(idp: &DevIdp, upstream_extra: &str) -> Setup {
    let upstream = RecordingUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("upstream");
    let dir = tempdir();
    std::fs::write(dir.path().join("tok"), "bench-token").unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for (name, text) in common::shipped_policies_unthrottled() {
        std::fs::write(policies.join(name), text).unwrap();
    }
    let extra = upstream_extra.replace("DIR", &dir.path().join("spool").display().to_string());
    let text = format!(
        "server: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nproviders:\n  dev: {{ issuer: \"{}\", audiences: [spangate] }}\nupstreams:\n  lightstep: {{ url: \"{}\", timeout: 5s{extra} }}\nsecrets:\n  bootstrap: {{ lightstep-prod: {{ file: \"{}\" }} }}\npolicies: \"{}\"\n",
        idp.issuer(),
        upstream.url("/traces/otlp/v0.9"),
        dir.path().join("tok").display(),
        policies.display()
    );
    let cfg = Config::parse(Path::new("bench.yaml"), &text).expect("config");
    let app = spangate::app::build(cfg, Audit::to_writer(Box::new(std::io::sink())))
        .await
        .expect("app");
    assert!(
        app.shared
            .identity
            .wait_ready(Duration::from_secs(10))
            .await
    );
    Setup {
        app,
        upstream,
        _dir: dir,
    }
}

async fn send(client: &HttpClient, url: &str, token: &str, body: &Bytes) -> u16 {
    let req = http::Request::post(url)
        .header("content-type", "application/x-protobuf")
        .header("authorization", format!("Bearer {token}"))
        .body(OutBody::new(body.clone()))
        .unwrap();
    client
        .send(req, Duration::from_secs(30), 1 << 20)
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Latencies of `n` requests from `conc` clients.
async fn latencies(s: &Setup, token: &str, body: &Bytes, n: usize, conc: usize) -> Vec<Duration> {
    let client = HttpClient::new(Default::default()).unwrap();
    let url = format!("http://{}/v1/traces", s.app.proxy_addr);
    let left = Arc::new(AtomicU64::new(n as u64));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, url, token, body, left) = (
            client.clone(),
            url.clone(),
            token.to_string(),
            body.clone(),
            left.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                .is_ok()
            {
                let t = Instant::now();
                let status = send(&client, &url, &token, &body).await;
                assert_eq!(status, 200);
                out.push(t.elapsed());
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

/// A scratch directory for one setup: under `SPANGATE_BENCH_DIR` when set
/// (e.g. a tmpfs, to see what the spool costs without the disk), else the
/// system temp dir.
fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("SPANGATE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("tempdir")
}

/// Durations of `n` fdatasyncs, each after a 2 KiB append, in the
/// kind of directory the spools of this run use (see [`tempdir`]).
fn fsync_floor(n: usize) -> Vec<Duration> {
    use std::io::Write;
    let dir = tempdir();
    let mut f = std::fs::File::create(dir.path().join("floor")).expect("file");
    let block = [0u8; 2048];
    let mut out: Vec<Duration> = (0..n)
        .map(|_| {
            f.write_all(&block).expect("write");
            let t = Instant::now();
            f.sync_data().expect("fdatasync");
            t.elapsed()
        })
        .collect();
    out.sort();
    out
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Accepted batches per second from `conc` clients over `secs`.
async fn throughput(s: &Setup, token: &str, body: &Bytes, conc: usize, secs: f64) -> f64 {
    let client = HttpClient::new(Default::default()).unwrap();
    let url = format!("http://{}/v1/traces", s.app.proxy_addr);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, url, token, body, stop, ok) = (
            client.clone(),
            url.clone(),
            token.to_string(),
            body.clone(),
            stop.clone(),
            ok.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if send(&client, &url, &token, &body).await == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let n = ok.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    n as f64 / elapsed
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let idp = DevIdp::start(DevIdpOptions {
            audience: "spangate".into(),
            identities: spangate::dev::demo_identities(),
            ..Default::default()
        })
        .await
        .expect("idp");
        let token = idp.mint(
            spangate::dev::demo_identities()
                .remove("edge-prod")
                .unwrap(),
        );
        let small = batch(5);
        let fifty = batch(50);

        // 0. The floor: what one fdatasync of a small append costs on the
        // disk the spool uses, now (an `fsync: always` acknowledgement
        // cannot be faster than this).
        let floor = fsync_floor(400);
        println!(
            "fdatasync of a 2 KiB append on the spool's disk (n={}):",
            floor.len()
        );
        println!(
            "  p50 {:>8.2?}  p99 {:>8.2?}",
            pct(&floor, 0.5),
            pct(&floor, 0.99)
        );

        // 1. Accept latency with a 300 ms upstream.
        let slow = Behavior::Delay(Duration::from_millis(300));
        let mut rows = Vec::new();
        for (label, extra) in [
            (
                "ack: spooled, fsync: always",
                ", ack: spooled, spool: { dir: \"DIR\", fsync: always, max_bytes: 1GiB }",
            ),
            (
                "ack: spooled, fsync: interval(5ms)",
                ", ack: spooled, spool: { dir: \"DIR\", fsync: interval(5ms), max_bytes: 1GiB }",
            ),
        ] {
            eprintln!("phase: latency, {label}");
            let s = setup(&idp, extra).await;
            s.upstream.set_behavior(slow.clone());
            let _ = latencies(&s, &token, &small, 50, 4).await; // warm-up
            rows.push((label, latencies(&s, &token, &small, 2000, 4).await));
            s.app.shutdown().await;
        }
        eprintln!("phase: latency, ack: upstream");
        let s = setup(&idp, "").await;
        s.upstream.set_behavior(slow);
        let upstream = latencies(&s, &token, &small, 80, 4).await;
        s.app.shutdown().await;
        println!("accept latency, 300 ms upstream, 4 concurrent clients, 5-span batches:");
        rows.push(("ack: upstream", upstream));
        for (label, v) in &rows {
            println!(
                "  {label:<36} n={:5}  p50 {:>8.2?}  p99 {:>8.2?}",
                v.len(),
                pct(v, 0.5),
                pct(v, 0.99)
            );
        }
        let up99 = pct(&rows[2].1, 0.99).as_secs_f64();
        println!(
            "  ratio p99 upstream/spooled: always {:.0}x, interval {:.0}x",
            up99 / pct(&rows[0].1, 0.99).as_secs_f64(),
            up99 / pct(&rows[1].1, 0.99).as_secs_f64()
        );

        // 2. Throughput at 50 spans, 16 concurrent clients, upstream answering at once.
        let secs = 5.0;
        let mut rows = Vec::new();
        for (label, extra) in [
            (
                "memory-only (ack: upstream, memory spool)",
                ", spool: { max_bytes: 1GiB }",
            ),
            (
                "ack: spooled, fsync: always",
                ", ack: spooled, spool: { dir: \"DIR\", fsync: always, max_bytes: 1GiB }",
            ),
            (
                "ack: spooled, fsync: interval(5ms)",
                ", ack: spooled, spool: { dir: \"DIR\", fsync: interval(5ms), max_bytes: 1GiB }",
            ),
        ] {
            eprintln!("phase: throughput, {label}");
            let s = setup(&idp, extra).await;
            let _ = throughput(&s, &token, &fifty, 16, 1.0).await; // warm-up
            let rate = throughput(&s, &token, &fifty, 16, secs).await;
            s.app.shutdown().await;
            rows.push((label, rate));
        }
        println!("throughput, 50-span batches, 16 concurrent clients, {secs} s each:");
        let base = rows[0].1;
        for (label, rate) in &rows {
            println!(
                "  {label:<44} {rate:>8.0} batches/s  {:.2}x memory-only",
                rate / base
            );
        }
    });
}
