//! The durable spool in process: `ack: spooled`, a full spool and a full
//! disk (503 retryable, nothing evicted), a corrupt tail recovered with its
//! audit line, drain keeping batches on disk, dead letters and their replay,
//! a slow upstream (duplicates within the window), and the admin verbs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use spangate::dev::upstream::Behavior;

use crate::common::{Harness, Options};

const ADMIN: &str = "spool-admin-token";
const SAMPLE_TRACE: &str = "5b8efff798038103d269b633813fc60c";

fn opts(dir: &Path, spool_extra: &str, timeout: &'static str) -> Options {
    Options {
        upstream_extra: format!(
            ", ack: spooled, spool: {{ dir: \"{}\"{spool_extra} }}",
            dir.display()
        ),
        upstream_timeout: timeout,
        admin_extra: format!(
            "  bootstrap_token_sha256: {}\n",
            crate::common::sha256_hex(ADMIN)
        ),
        policies: Some(crate::common::shipped_policies_unthrottled()),
        ..Default::default()
    }
}

fn trace_id(n: usize) -> String {
    format!("{:032x}", 0xfeed_0000_u128 + n as u128)
}

async fn send(h: &Harness, token: &str, n: usize) -> http::Response<bytes::Bytes> {
    let body = spangate::dev::sample_batch_json("checkout", 2).replace(SAMPLE_TRACE, &trace_id(n));
    h.post("/v1/traces", Some(token), "application/json", body, &[])
        .await
}

fn spool_lines(h: &Harness, result: &str) -> Vec<Value> {
    h.audit_lines()
        .into_iter()
        .filter(|l| l["kind"] == "spool" && l["result"] == result)
        .collect()
}

fn delivered_ids(h: &Harness) -> Vec<String> {
    h.upstream
        .received()
        .iter()
        .filter_map(|r| {
            let body = std::str::from_utf8(&r.body).ok()?;
            (0..10_000)
                .map(trace_id)
                .find(|t| body.contains(t.as_str()))
        })
        .collect()
}

/// Stop the app but keep the IdP and upstream for a restart.
async fn restart(h: Harness, o: Options) -> Harness {
    let Harness {
        idp, upstream, app, ..
    } = h;
    app.shutdown().await;
    Harness::start_app(o, idp, upstream)
        .await
        .unwrap_or_else(|e| panic!("restart: {e}"))
}

#[tokio::test]
async fn ack_spooled_answers_before_the_upstream_and_delivers_with_the_current_credential() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(opts(dir.path(), "", "2s")).await;
    h.upstream.set_behavior(Behavior::Hang);
    let token = h.token("edge-prod");
    let resp = send(&h, &token, 1).await;
    assert_eq!(resp.status(), 200, "acknowledged without the upstream");
    let line = h.last_audit();
    assert_eq!(line["reason"], "spooled");
    let request_id = line["request_id"].as_str().unwrap().to_string();
    h.upstream.set_behavior(Behavior::Accept);
    crate::common::until("delivery", || !spool_lines(&h, "delivered").is_empty()).await;
    let got: Vec<_> = h
        .upstream
        .received()
        .into_iter()
        .filter(|r| r.header("x-request-id") == Some(request_id.as_str()))
        .collect();
    assert!(!got.is_empty());
    assert_eq!(
        got.last().unwrap().header("lightstep-access-token"),
        Some(crate::common::LIGHTSTEP_TOKEN)
    );
    assert_eq!(got.last().unwrap().header("authorization"), None);
    h.stop().await;
}

#[tokio::test]
async fn a_full_spool_answers_503_retryable_and_evicts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(opts(dir.path(), ", max_bytes: 3KiB", "2s")).await;
    h.upstream.set_behavior(Behavior::Status(503));
    let token = h.token("edge-prod");
    let mut acked = Vec::new();
    let mut refused = None;
    for n in 0..20 {
        let resp = send(&h, &token, n).await;
        match resp.status().as_u16() {
            200 => acked.push(n),
            503 => {
                refused = Some(resp);
                break;
            }
            s => panic!("unexpected {s}"),
        }
    }
    let refused = refused.expect("the spool filled up");
    assert!(!acked.is_empty());
    assert!(refused.headers().contains_key("retry-after"));
    let line = h.last_audit();
    assert_eq!(line["reason"], "spool_full", "{line}");
    assert!(
        line["detail"].as_str().unwrap().contains("spool full"),
        "{line}"
    );
    assert_eq!(
        h.app.shared.spools["lightstep"].len(),
        acked.len(),
        "nothing evicted"
    );
    // Space returns when the upstream does: every acknowledged batch arrives,
    // and new batches are taken again.
    h.upstream.set_behavior(Behavior::Accept);
    crate::common::until("all acknowledged delivered", || {
        spool_lines(&h, "delivered").len() == acked.len()
    })
    .await;
    let ids = delivered_ids(&h);
    for n in &acked {
        assert!(ids.contains(&trace_id(*n)), "{n} missing");
    }
    assert_eq!(send(&h, &token, 99).await.status(), 200);
    h.stop().await;
}

/// A real full file system: a 1 MiB tmpfs (needs mount privileges; where
/// they are missing the max_bytes test above covers the refusal path).
#[tokio::test]
async fn a_full_disk_answers_503_and_recovers_when_space_returns() {
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("tmpfs");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("tmpfs mount not permitted here: the max_bytes test covers the refusal");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let spool_dir = mnt.join("spool");
    let h = Harness::start_with(opts(&spool_dir, ", max_bytes: 64MiB", "2s")).await;
    h.upstream.set_behavior(Behavior::Status(503));
    // Fill the file system with something else, leaving a little room.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let token = h.token("edge-prod");
    let mut acked = Vec::new();
    let mut refused = false;
    for n in 0..200 {
        let resp = send(&h, &token, n).await;
        match resp.status().as_u16() {
            200 => acked.push(n),
            503 => {
                assert!(resp.headers().contains_key("retry-after"));
                let line = h.last_audit();
                assert_eq!(line["reason"], "spool_disk", "{line}");
                refused = true;
                break;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert!(refused, "the disk filled up");
    // Space returns: new batches are taken, and everything acknowledged arrives.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(send(&h, &token, 500).await.status(), 200);
    acked.push(500);
    h.upstream.set_behavior(Behavior::Accept);
    crate::common::until("all acknowledged delivered", || {
        spool_lines(&h, "delivered").len() >= acked.len()
    })
    .await;
    let ids = delivered_ids(&h);
    for n in &acked {
        assert!(ids.contains(&trace_id(*n)), "{n} missing");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_corrupt_tail_is_cut_and_audited_and_the_rest_delivered_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let o = || opts(&spool_dir, ", drain: 100ms", "2s");
    let h = Harness::start_with(o()).await;
    h.upstream.set_behavior(Behavior::Status(503));
    let token = h.token("edge-prod");
    for n in 0..3 {
        assert_eq!(send(&h, &token, n).await.status(), 200);
    }
    let h = {
        let Harness {
            idp, upstream, app, ..
        } = h;
        app.shutdown().await;
        // A torn write: half a record's worth of garbage after the last one.
        let seg = spangate::spool::log::list_segments(&spool_dir)
            .unwrap()
            .into_iter()
            .map(|id| spool_dir.join(spangate::spool::log::segment_name(id)))
            .rfind(|p| std::fs::metadata(p).unwrap().len() > 0)
            .expect("a segment with records");
        let mut data = std::fs::read(&seg).unwrap();
        data.extend_from_slice(&[0x40, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]);
        std::fs::write(&seg, &data).unwrap();
        Harness::start_app(o(), idp, upstream).await.unwrap()
    };
    let rec: Vec<Value> = spool_lines(&h, "recovered");
    assert_eq!(rec.len(), 1, "{:#?}", h.audit_lines());
    assert_eq!(rec[0]["discarded_bytes"], 11);
    assert_eq!(h.app.shared.spools["lightstep"].len(), 3);
    h.upstream.set_behavior(Behavior::Accept);
    crate::common::until("replayed", || spool_lines(&h, "delivered").len() == 3).await;
    let metrics = h.app.shared.metrics.encode();
    assert!(
        metrics.contains(r#"spangate_spool_discarded_bytes_total{upstream="lightstep"} 11"#),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test]
async fn shutdown_keeps_undelivered_batches_on_disk_and_the_next_start_delivers_them() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let o = || opts(&spool_dir, ", drain: 200ms", "2s");
    let h = Harness::start_with(o()).await;
    h.upstream.set_behavior(Behavior::Status(503));
    let token = h.token("edge-prod");
    for n in 0..4 {
        assert_eq!(send(&h, &token, n).await.status(), 200);
    }
    let audit = h.audit.clone();
    let h = restart(h, o()).await;
    let kept: Vec<Value> = audit
        .lines()
        .into_iter()
        .filter(|l| l["kind"] == "spool")
        .collect();
    assert_eq!(kept.len(), 4, "{kept:#?}");
    assert!(kept.iter().all(|l| l["result"] == "kept"), "{kept:#?}");
    h.upstream.set_behavior(Behavior::Accept);
    crate::common::until("replayed", || spool_lines(&h, "delivered").len() == 4).await;
    let ids = delivered_ids(&h);
    for n in 0..4 {
        assert!(ids.contains(&trace_id(n)));
    }
    h.stop().await;
}

#[tokio::test]
async fn a_non_retryable_answer_dead_letters_and_replay_dead_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let o = || opts(&spool_dir, "", "2s");
    let h = Harness::start_with(o()).await;
    h.upstream.set_behavior(Behavior::Status(400));
    let token = h.token("edge-prod");
    assert_eq!(send(&h, &token, 1).await.status(), 200);
    crate::common::until("dead letter", || {
        !spool_lines(&h, "dead_lettered").is_empty()
    })
    .await;
    let dead = spool_lines(&h, "dead_lettered")[0].clone();
    assert_eq!(dead["upstream_status"], 400);
    // Dead letters are on disk: they survive a restart.
    let h = restart(h, o()).await;
    let (code, v) = h
        .admin(
            http::Method::GET,
            "/admin/v1/spools/lightstep",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["dead_letters"], 1, "{v}");
    assert_eq!(v["dead"][0]["credential"], "lightstep-prod");
    assert_eq!(v["dead"][0]["request_id"], dead["request_id"]);
    h.upstream.set_behavior(Behavior::Accept);
    let (code, v) = h
        .admin(
            http::Method::POST,
            "/admin/v1/spools/lightstep/replay-dead",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["replayed"], 1);
    crate::common::until("replayed delivery", || {
        !spool_lines(&h, "delivered").is_empty()
    })
    .await;
    assert_eq!(
        spool_lines(&h, "delivered")[0]["request_id"],
        dead["request_id"],
        "the request id is kept"
    );
    let (_, status) = h
        .admin(http::Method::GET, "/admin/v1/spools", Some(ADMIN), None)
        .await;
    assert_eq!(status["spools"]["lightstep"]["dead_letters"], 0, "{status}");
    h.stop().await;
}

#[tokio::test]
async fn purge_needs_confirmation_and_audits_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(opts(dir.path(), "", "2s")).await;
    h.upstream.set_behavior(Behavior::Status(503));
    let token = h.token("edge-prod");
    for n in 0..3 {
        assert_eq!(send(&h, &token, n).await.status(), 200);
    }
    let path = "/admin/v1/spools/lightstep/purge";
    let (code, v) = h
        .admin(
            http::Method::POST,
            path,
            Some(ADMIN),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(h.app.shared.spools["lightstep"].len(), 3);
    let (code, v) = h
        .admin(
            http::Method::POST,
            path,
            Some(ADMIN),
            Some(serde_json::json!({"confirm": true})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["purged"], 3);
    assert_eq!(spool_lines(&h, "purged").len(), 3);
    assert!(h.app.shared.spools["lightstep"].is_empty());
    h.stop().await;
}

/// The upstream answers after 1 s; the attempt timeout is 300 ms (the
/// issue's 10 s / 5 s, scaled down to keep CI fast). The first window of
/// attempts times out (the upstream processed them anyway), the spool then
/// probes with its long timeout, learns, and delivers the rest without
/// further resends: duplicates stay within the window.
#[tokio::test]
async fn a_slow_upstream_gets_at_most_a_window_of_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(opts(
        dir.path(),
        ", window: 4, max_attempt_timeout: 3s",
        "300ms",
    ))
    .await;
    h.upstream
        .set_behavior(Behavior::Delay(Duration::from_secs(1)));
    let token = h.token("edge-prod");
    const N: usize = 12;
    for n in 0..N {
        assert_eq!(send(&h, &token, n).await.status(), 200);
    }
    crate::common::until("all delivered", || spool_lines(&h, "delivered").len() == N).await;
    let ids = delivered_ids(&h);
    let duplicates = ids.len() - N;
    eprintln!(
        "slow upstream: {} deliveries for {N} batches, {duplicates} duplicates",
        ids.len()
    );
    for n in 0..N {
        assert!(ids.contains(&trace_id(n)), "{n} missing");
    }
    assert!(duplicates <= 4, "duplicates {duplicates} > window 4");
    let metrics = h.app.shared.metrics.encode();
    let counted: u64 = metrics
        .lines()
        .find(|l| l.starts_with("spangate_spool_possible_duplicates_total{upstream=\"lightstep\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        counted >= duplicates as u64,
        "metric {counted} < observed {duplicates}"
    );
    h.stop().await;
}

async fn cli(h: &Harness, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_spangate"))
        .arg("spool")
        .args(args)
        .args(["--admin", &format!("http://{}", h.app.admin_addr)])
        .env("SPANGATE_ADMIN_TOKEN", ADMIN)
        .output()
        .await
        .expect("run spangate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn the_spool_cli_shows_inspects_and_purges_only_with_yes() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(opts(dir.path(), "", "2s")).await;
    h.upstream.set_behavior(Behavior::Status(503));
    let token = h.token("edge-prod");
    for n in 0..2 {
        assert_eq!(send(&h, &token, n).await.status(), 200);
    }
    let (ok, out) = cli(&h, &["status"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("lightstep  disk  spooled  2"), "{out}");
    let (ok, out) = cli(&h, &["inspect", "lightstep"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("2 queued") && out.contains("credential=lightstep-prod"),
        "{out}"
    );
    assert!(
        !out.contains(crate::common::LIGHTSTEP_TOKEN),
        "never the value"
    );
    let (ok, out) = cli(&h, &["purge", "lightstep"]).await;
    assert!(!ok && out.contains("--yes"), "{out}");
    assert_eq!(h.app.shared.spools["lightstep"].len(), 2);
    let (ok, out) = cli(&h, &["purge", "lightstep", "--yes"]).await;
    assert!(ok && out.contains("2 queued batches purged"), "{out}");
    assert!(h.app.shared.spools["lightstep"].is_empty());
    h.stop().await;
}

/// Delivery backs off by at least the upstream's `Retry-After` (the dev
/// upstream sends `Retry-After: 1` with its 503), not by its own first
/// steps (250 ms, 500 ms), and delivers once the upstream accepts.
#[tokio::test]
async fn delivery_waits_at_least_the_upstreams_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start_with(opts(dir.path(), "", "2s")).await;
    h.upstream.set_behavior(Behavior::Status(503));
    let mut events = h.upstream.subscribe();
    let token = h.token("edge-prod");
    assert_eq!(send(&h, &token, 7).await.status(), 200);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        // One batch queued: every request the upstream sees is an attempt at it.
        tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("delivery attempts keep coming")
            .expect("upstream events");
        seen.push(std::time::Instant::now());
    }
    for pair in seen.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(800),
            "attempts {gap:?} apart: Retry-After (1 s) not honoured"
        );
    }
    h.upstream.set_behavior(Behavior::Accept);
    crate::common::until("delivery", || !spool_lines(&h, "delivered").is_empty()).await;
    assert!(delivered_ids(&h).contains(&trace_id(7)));
    h.stop().await;
}
