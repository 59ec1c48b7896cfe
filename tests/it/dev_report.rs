//! `spangate dev` shows the product working: per batch received upstream,
//! the services, span names, span count, stamped identity and the injected
//! credential version (never its value).

use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use spangate::audit::{Audit, MemorySink};
use spangate::client::{HttpClient, OutBody};
use spangate::dev::report::{self, ReportContext};
use spangate::dev::upstream::Received;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    dev: spangate::dev::DevArgs,
}

/// Wait (bounded) until the captured text has `n` batch headers.
async fn wait_batches(out: &MemorySink, n: usize) -> String {
    for _ in 0..200 {
        let text = out.text();
        if text.matches("upstream <- ").count() >= n {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("printed so far:\n{}", out.text());
}

#[tokio::test]
async fn recording_upstream_prints_services_spans_stamps_and_credential_version() {
    let any = "127.0.0.1:0";
    let args = Args::parse_from([
        "dev",
        "--listen",
        any,
        "--grpc-listen",
        any,
        "--admin-listen",
        any,
        "--idp-listen",
        any,
        "--upstream-listen",
        any,
        "--metrics-listen",
        any,
    ]);
    let stack = spangate::dev::start(&args.dev, Audit::to_writer(Box::new(MemorySink::default())))
        .await
        .expect("dev stack");
    let out = MemorySink::default();
    let printer = tokio::spawn(report::print_feed(
        stack.upstream.subscribe(),
        stack.app.shared.clone(),
        Box::new(out.clone()),
    ));
    let client = HttpClient::new(Default::default()).unwrap();
    let url = format!("http://{}/v1/traces", stack.app.proxy_addr);
    let token = stack.idp.mint(
        spangate::dev::demo_identities()
            .remove("edge-prod")
            .unwrap(),
    );
    // Five spans, and a spoofed stamped attribute the proxy must replace.
    let mut body: serde_json::Value =
        serde_json::from_str(&spangate::dev::sample_batch_json("checkout", 5)).unwrap();
    body["resourceSpans"][0]["resource"]["attributes"]
        .as_array_mut()
        .unwrap()
        .push(
            serde_json::json!({"key": "vercel.project_id", "value": {"stringValue": "prj_evil"}}),
        );
    let send = |body: String| {
        let req = http::Request::post(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(OutBody::new(Bytes::from(body)))
            .unwrap();
        client.send(req, Duration::from_secs(10), 1 << 20)
    };
    let resp = send(body.to_string()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = wait_batches(&out, 1).await;
    let first: Vec<&str> = text.lines().collect();
    assert_eq!(
        first[0],
        format!(
            "upstream <- {} 5 spans (JSON, {} bytes)",
            spangate::dev::UPSTREAM_PATH,
            stack.upstream.received()[0].body.len()
        ),
        "{text}"
    );
    assert_eq!(first[1], r#"  services   "checkout""#, "{text}");
    assert_eq!(
        first[2],
        r#"  spans      "GET /checkout/0", "GET /checkout/1", "GET /checkout/2" (+2 more)"#,
        "{text}"
    );
    assert_eq!(
        first[3],
        "  stamped    deployment.environment.name=production vercel.project_id=prj_checkout",
        "{text}"
    );
    assert_eq!(
        first[4],
        format!(
            "  credential {} v1 in lightstep-access-token (sha256:{}); client token stripped",
            spangate::dev::DEV_CREDENTIAL,
            stack.lightstep_token_fp
        ),
        "{text}"
    );

    // After a rotation the next batch names the new version.
    let new_value = "dev-lightstep-rotated-value";
    let secrets = stack.app.shared.secrets.clone();
    tokio::task::spawn_blocking(move || {
        secrets
            .rotate(
                spangate::dev::DEV_CREDENTIAL,
                spangate::secrets::Secret::new(new_value.to_string()),
                Duration::from_secs(60),
                None,
            )
            .expect("rotate")
    })
    .await
    .unwrap();
    let resp = send(spangate::dev::sample_batch_json("checkout-api", 1))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = wait_batches(&out, 2).await;
    let second: Vec<&str> = text.lines().skip(5).collect();
    assert!(second[0].contains(" 1 span (JSON, "), "{text}");
    assert_eq!(second[1], r#"  services   "checkout-api""#, "{text}");
    assert_eq!(
        second[4],
        format!(
            "  credential {} v2 in lightstep-access-token (sha256:{}); client token stripped",
            spangate::dev::DEV_CREDENTIAL,
            spangate::fingerprint(new_value.as_bytes())
        ),
        "{text}"
    );
    // Never a credential value or the client's token.
    assert!(
        !text.contains(new_value) && !text.contains(&token),
        "{text}"
    );
    printer.abort();
    stack.app.shutdown().await;
}

#[test]
fn a_body_that_is_not_otlp_is_reported_not_hidden() {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/x-protobuf".parse().unwrap());
    headers.insert("authorization", "Bearer leaked".parse().unwrap());
    let r = Received {
        path: "/v1/traces".into(),
        headers,
        body: Bytes::from_static(b"\xff\xff\xff"),
        content_encoding: None,
        grpc: false,
        at: std::time::Instant::now(),
    };
    let lines = report::describe(&r, &ReportContext::default());
    assert!(
        lines[0].starts_with("upstream <- /v1/traces 3 bytes, not an OTLP trace batch:"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        "  credential none injected; client Authorization header PRESENT (bug!)"
    );
}
