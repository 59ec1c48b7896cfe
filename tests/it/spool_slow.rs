//! A slow-but-working upstream behind the real binary: every batch
//! acknowledged with `ack: spooled` arrives, and the duplicates a too-short
//! attempt timeout causes stay within the delivery window, counted by
//! `spangate_spool_possible_duplicates_total`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use spangate::client::{HttpClient, OutBody};
use spangate::dev::upstream::{Behavior, RecordingUpstream};

use crate::spool_crash::{sigterm_and_wait, start};

const WINDOW: usize = 4;
/// Three windows' worth: after the first window times out, the spool must
/// deliver the rest without resending.
const BATCHES: usize = 3 * WINDOW;
const SAMPLE_TRACE: &str = "5b8efff798038103d269b633813fc60c";

fn trace_id(n: usize) -> String {
    format!("{:032x}", 0x5_1000_u128 + n as u128)
}

/// Deliveries per trace id of ours.
fn arrivals(up: &RecordingUpstream) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in up.received() {
        let body = String::from_utf8_lossy(&r.body);
        for n in 0..BATCHES {
            let id = trace_id(n);
            if body.contains(&id) {
                *counts.entry(id).or_default() += 1;
            }
        }
    }
    counts
}

/// Issue 9's case, "upstream answers after 10 s, attempt timeout 5 s", scaled
/// down 5× to keep the test's wall time near 10 s: the upstream answers
/// after 2 s, the upstream `timeout` (the spool's first attempt timeout) is
/// 1 s, and `max_attempt_timeout` is left at its default (6 × `timeout`, so
/// 6 s, as 30 s would be for the issue's 5 s). The first window of attempts
/// times out although the upstream takes every one of them; the spool then
/// probes with the long timeout and delivers the rest without resending.
/// Checked with the real binary: all batches arrive, at most `window` of
/// them twice, and the duplicates metric counts at least what arrived twice
/// (an upper bound) and no more than the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_behind_the_binary_costs_at_most_a_window_of_duplicates() {
    let idp = crate::common::demo_idp().await;
    let upstream = RecordingUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    upstream.set_behavior(Behavior::Delay(Duration::from_secs(2)));
    let dir = tempfile::tempdir().unwrap();
    let (policies, token_file) = crate::common::binary_config_dir(dir.path());
    let config = dir.path().join("spangate.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
server: {{ listen: "127.0.0.1:0" }}
admin: {{ listen: "127.0.0.1:0" }}
metrics: {{ listen: "127.0.0.1:0" }}
providers:
  dev: {{ issuer: "{issuer}", audiences: [{aud}] }}
upstreams:
  lightstep:
    url: "{url}"
    timeout: 1s
    ack: spooled
    spool: {{ dir: "{spool}", window: {WINDOW}, drain: 1s }}
secrets:
  bootstrap: {{ lightstep-prod: {{ file: "{token}" }} }}
policies: "{policies}"
audit: {{ file: "{audit}" }}
"#,
            issuer = idp.issuer(),
            aud = crate::common::AUDIENCE,
            url = upstream.url("/traces/otlp/v0.9"),
            spool = dir.path().join("spool").display(),
            token = token_file.display(),
            policies = policies.display(),
            audit = dir.path().join("audit.jsonl").display(),
        ),
    )
    .unwrap();
    let p = start(&config);
    let metrics_url = p.metrics.clone().expect("metrics listener");
    let token = idp.mint(
        crate::common::demo_identities()
            .remove("edge-prod")
            .unwrap(),
    );
    let client = HttpClient::new(Default::default()).unwrap();
    for n in 0..BATCHES {
        let body =
            spangate::dev::sample_batch_json("checkout", 1).replace(SAMPLE_TRACE, &trace_id(n));
        let req = http::Request::post(format!("http://{}/v1/traces", p.otlp))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(OutBody::new(Bytes::from(body)))
            .unwrap();
        let resp = client
            .send(req, Duration::from_secs(10), 1 << 20)
            .await
            .expect("spangate answers");
        assert_eq!(resp.status(), 200, "acknowledged once spooled");
    }

    // Every batch delivered: all ids arrived and the spool audited each one.
    let audit = dir.path().join("audit.jsonl");
    let delivered = || {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "spool" && v["result"] == "delivered")
            .count()
    };
    let mut done = false;
    for _ in 0..1200 {
        if arrivals(&upstream).len() == BATCHES && delivered() == BATCHES {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = arrivals(&upstream);
    assert!(
        done,
        "not all delivered: {} of {BATCHES} ids arrived, {} delivered audit lines",
        counts.len(),
        delivered()
    );
    let duplicates: usize = counts.values().map(|c| c - 1).sum();

    let (status, text) = fetch(&client, &metrics_url).await;
    assert_eq!(status, 200);
    let counted: u64 = text
        .lines()
        .find(|l| l.starts_with("spangate_spool_possible_duplicates_total{upstream=\"lightstep\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("the duplicates metric");
    sigterm_and_wait(p);
    eprintln!(
        "slow upstream (2 s answers, 1 s timeout, window {WINDOW}): {BATCHES} batches, \
         {} deliveries, {duplicates} duplicates, metric {counted}",
        BATCHES + duplicates
    );
    assert!(
        duplicates <= WINDOW,
        "{duplicates} duplicates > window {WINDOW}"
    );
    assert!(
        counted >= duplicates as u64,
        "metric {counted} < {duplicates} observed"
    );
    assert!(
        counted <= WINDOW as u64,
        "metric {counted}: more resends than one window"
    );
}

async fn fetch(client: &HttpClient, url: &str) -> (u16, String) {
    let req = http::Request::get(url)
        .body(OutBody::new(Bytes::new()))
        .unwrap();
    let resp = client
        .send(req, Duration::from_secs(10), 1 << 22)
        .await
        .expect("metrics answer");
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(resp.body()).into_owned(),
    )
}
