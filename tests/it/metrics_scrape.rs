//! The metrics listener: scrapeable without a token, every family present
//! at zero before the first event, process and build metrics, no secrets;
//! and every metric the shipped Grafana dashboard and Prometheus alert
//! rules query exists in what a running spangate serves.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::common::{Harness, LIGHTSTEP_TOKEN, Options, vercel};

/// Series Prometheus writes itself for every target (not in any exposition).
const WRITTEN_BY_PROMETHEUS: &[&str] = &["up"];

/// PromQL keywords that look like identifiers.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
    "start",
    "end",
    // Aggregation operators (may stand before `by (…)` / `without (…)`).
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Skip a quoted string starting at `i` (the quote); returns the index after it.
fn skip_string(c: &[char], i: usize) -> usize {
    let q = c[i];
    let mut j = i + 1;
    while j < c.len() {
        if c[j] == '\\' && q != '`' {
            j += 2;
            continue;
        }
        if c[j] == q {
            return j + 1;
        }
        j += 1;
    }
    j
}

/// Skip from an opening bracket at `i` to after its closing one, stepping
/// over strings (a label value may contain brackets).
fn skip_group(c: &[char], i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut j = i;
    while j < c.len() {
        match c[j] {
            '"' | '\'' | '`' => {
                j = skip_string(c, j);
                continue;
            }
            ch if ch == open => depth += 1,
            ch if ch == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

fn is_ident_start(ch: char) -> bool {
    ch.is_ascii_alphabetic() || ch == '_' || ch == ':'
}

fn is_ident(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || ch == '_' || ch == ':'
}

/// The metric names a PromQL expression selects: identifiers that are not
/// functions (followed by `(`), keywords, label names (in `{…}`, `by (…)`,
/// `on (…)`, …), strings, numbers, durations or Grafana variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let c: Vec<char> = expr.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        match ch {
            '"' | '\'' | '`' => i = skip_string(&c, i),
            '{' => i = skip_group(&c, i, '{', '}'),
            '[' => i = skip_group(&c, i, '[', ']'),
            '#' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '$' => {
                i += 1;
                if i < c.len() && c[i] == '{' {
                    i = skip_group(&c, i, '{', '}');
                } else {
                    while i < c.len() && is_ident(c[i]) {
                        i += 1;
                    }
                }
            }
            _ if ch.is_ascii_digit()
                || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // Numbers and durations: 0.5, 1e3, 0x1f, 5m, 1h30m.
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.' || c[i] == '_') {
                    i += 1;
                }
            }
            _ if is_ident_start(ch) => {
                let start = i;
                while i < c.len() && is_ident(c[i]) {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let mut j = i;
                while j < c.len() && c[j].is_whitespace() {
                    j += 1;
                }
                let lower = word.to_ascii_lowercase();
                let call = j < c.len() && c[j] == '(';
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if call {
                        i = skip_group(&c, j, '(', ')');
                    }
                } else if call || KEYWORDS.contains(&lower.as_str()) {
                    // A function, an aggregation or an operator keyword.
                } else {
                    out.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Grafana's `label_values(metric, label)`: only the first argument is a selector.
fn grafana_query_selector(q: &str) -> String {
    let q = q.trim();
    match q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        Some(args) => match args.rsplit_once(',') {
            Some((selector, _label)) => selector.to_string(),
            None => String::new(),
        },
        None => q.to_string(),
    }
}

#[test]
fn promql_names_ignore_functions_labels_and_keywords() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (instance, reason) (rate(spangate_requests_total{status=~"5..",x="}{"}[5m])) / ignoring(reason) group_left sum without (le) (rate(b_total[$__rate_interval] offset 1h))"#
        ),
        vec!["b_total", "spangate_requests_total"]
    );
    assert_eq!(
        names(
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) > 0.5 * on(instance) group_left(version) info_metric"
        ),
        vec!["info_metric", "x_bucket"]
    );
    assert_eq!(
        names("time() - a_seconds > 25 * 3600 and a_seconds > 0 or vector(1e3) unless bool c"),
        vec!["a_seconds", "c"]
    );
    assert_eq!(
        names(r#"label_replace(m, "dst", "$1", "src", "(.*)") == 1 # comment with words"#),
        vec!["m"]
    );
    assert_eq!(
        names(&grafana_query_selector(
            "label_values(spangate_build_info, instance)"
        )),
        vec!["spangate_build_info"]
    );
    assert_eq!(names("max(x{a=\"b\"}) by (provider)"), vec!["x"]);
}

/// Sample names in an OpenMetrics/Prometheus text exposition.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The sample names each declared family may have (from its `# TYPE`
/// line, OpenMetrics suffixes by type), plus the samples present: what a
/// query may select even before the family has a series.
fn declared_names(text: &str) -> BTreeSet<String> {
    let mut out = sample_names(text);
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (Some(name), Some(kind)) = (it.next(), it.next()) else {
            panic!("malformed TYPE line: {l}");
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "gauge" | "unknown" | "stateset" => &[""],
            "info" => &["_info"],
            "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            other => panic!("unknown metric type {other} in {l}"),
        };
        out.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    out
}

/// The value of one exact series line (`name{labels}` as printed).
fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Every PromQL expression in the shipped dashboard and alert rules, with where it came from.
fn shipped_expressions() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let alerts: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("deploy/prometheus/spangate-alerts.yaml")).unwrap(),
    )
    .unwrap();
    for group in alerts["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .expect("alert name");
            let expr = rule["expr"].as_str().expect("expr");
            out.push((format!("alert {name}"), expr.to_string()));
        }
    }
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/spangate-dashboard.json")).unwrap(),
    )
    .unwrap();
    fn walk(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                let title = m.get("title").and_then(Value::as_str).unwrap_or("");
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => {
                            out.push((format!("panel {path}{title}"), e.clone()))
                        }
                        ("definition", Value::String(q)) => {
                            out.push((format!("variable {path}"), grafana_query_selector(q)))
                        }
                        _ => walk(v, &format!("{path}{k}/"), out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, path, out)),
            _ => {}
        }
    }
    walk(&dash, "", &mut out);
    out
}

async fn start() -> Harness {
    Harness::start_with(Options {
        top_extra: "metrics: { listen: 127.0.0.1:0 }".into(),
        upstream_extra: ", spool: { max_bytes: 1MiB, max_age: 1m }".into(),
        ..Default::default()
    })
    .await
}

/// Every metric name a PromQL expression of the dashboard or the alerts
/// selects is in `names` (or written by Prometheus itself); `what` names
/// the set in the failure message.
fn assert_queried_in(exprs: &[(String, String)], names: &BTreeSet<String>, what: &str) {
    let mut missing = Vec::new();
    for (origin, expr) in exprs {
        let selected = metric_names(expr);
        assert!(!selected.is_empty(), "{origin}: no metric in {expr}");
        for n in selected {
            if !names.contains(&n) && !WRITTEN_BY_PROMETHEUS.contains(&n.as_str()) {
                missing.push(format!("{origin}: {n}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queried but not {what}:\n{}\n{what}: {names:?}",
        missing.join("\n")
    );
}

/// The series of the deployment the dashboard test publishes for.
const DASH_DEPLOYMENT: &str =
    r#"spangate_deployment_batches_total{project="prj_checkout",deployment="dpl_dash"}"#;

#[tokio::test]
async fn every_metric_in_the_dashboard_and_alerts_is_served() {
    // The Vercel preset, so that a Vercel-shaped batch links its deployment
    // (the per-deployment series exist only once a deployment was seen).
    let h = Harness::start_with(Options {
        top_extra: "metrics: { listen: 127.0.0.1:0 }".into(),
        upstream_extra: ", spool: { max_bytes: 1MiB, max_age: 1m }".into(),
        ..vercel::preset_options()
    })
    .await;
    let addr = h.app.metrics_addr.expect("metrics listener bound");
    let url = format!("http://{addr}/metrics");
    let exprs = shipped_expressions();
    assert!(exprs.len() >= 40, "dashboard + alerts: {}", exprs.len());

    // Before any traffic: every family the dashboard and the alerts query is
    // declared (its HELP and TYPE lines), even those with no series yet.
    let (status, ct, text) = h.fetch(&url, http::Method::GET).await;
    assert_eq!(status, 200, "{text}");
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert_eq!(
        series_value(&text, DASH_DEPLOYMENT),
        None,
        "no deployment seen yet"
    );
    assert_queried_in(&exprs, &declared_names(&text), "declared before traffic");

    // A real Vercel-shaped batch (an RS256 token with owner_id/project_id
    // from the dev IdP, @vercel/otel's resource attributes): its deployment
    // is linked, and then every queried name has samples.
    let token = h.token("edge-prod");
    let resp = vercel::send_edge(&h, &token, "checkout", "prj_checkout", "dpl_dash").await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let (_, _, text) = h.fetch(&url, http::Method::GET).await;
    assert_eq!(series_value(&text, DASH_DEPLOYMENT), Some(1.0), "{text}");
    assert_queried_in(&exprs, &sample_names(&text), "served");
    h.stop().await;
}

#[tokio::test]
async fn metrics_listener_serves_zeros_process_and_build_metrics_without_a_token() {
    let h = start().await;
    let addr = h.app.metrics_addr.expect("metrics listener bound");
    let url = format!("http://{addr}/metrics");
    let (status, _, text) = h.fetch(&url, http::Method::GET).await;
    assert_eq!(status, 200);

    // Families with labels exist with zero values before any event.
    for series in [
        r#"spangate_requests_total{endpoint="traces",signal="traces",decision="deny",reason="no_match",status="403"}"#,
        r#"spangate_requests_total{endpoint="traces",signal="traces",decision="allow",reason="allowed",status="200"}"#,
        r#"spangate_requests_total{endpoint="traces",signal="traces",decision="error",reason="overloaded",status="503"}"#,
        r#"spangate_requests_total{endpoint="traces",signal="traces",decision="allow",reason="upstream_unavailable",status="502"}"#,
        r#"spangate_requests_total{endpoint="-",signal="-",decision="deny",reason="expired",status="401"}"#,
        r#"spangate_requests_total{endpoint="-",signal="-",decision="deny",reason="provider_unavailable",status="503"}"#,
        r#"spangate_spans_total{endpoint="traces",outcome="forwarded"}"#,
        r#"spangate_upstream_attempts_total{upstream="lightstep",outcome="timeout"}"#,
        r#"spangate_spool_batches_total{upstream="lightstep",outcome="expired"}"#,
        r#"spangate_admin_requests_total{action="secrets.rotate",result="error"}"#,
        r#"spangate_credential_rotation_failures_total{reason="upstream_rejected"}"#,
        r#"spangate_spool_queued_batches{upstream="lightstep"}"#,
        r#"spangate_spool_oldest_age_seconds{upstream="lightstep"}"#,
        r#"spangate_identity_provider_state{provider="dev",state="unavailable"}"#,
        r#"spangate_policy_reloads_total{trigger="admin",result="ok"}"#,
    ] {
        assert_eq!(
            series_value(&text, series),
            Some(0.0),
            "{series} in\n{text}"
        );
    }
    // State read at scrape time.
    assert_eq!(
        series_value(
            &text,
            r#"spangate_identity_provider_state{provider="dev",state="ready"}"#
        ),
        Some(1.0)
    );
    let jwks_at = series_value(
        &text,
        r#"spangate_identity_jwks_last_success_timestamp_seconds{provider="dev"}"#,
    )
    .expect("jwks timestamp");
    assert!(jwks_at > 1.6e9, "{jwks_at}");
    assert_eq!(
        series_value(
            &text,
            r#"spangate_credential_current_version{credential="lightstep-prod"}"#
        ),
        Some(1.0)
    );
    assert!(
        series_value(
            &text,
            r#"spangate_credential_age_seconds{credential="lightstep-prod"}"#
        )
        .is_some_and(|a| (0.0..3600.0).contains(&a))
    );
    assert_eq!(
        series_value(&text, "spangate_memory_budget_bytes"),
        Some((128u64 << 20) as f64)
    );
    // Build and process metrics.
    let build = format!(
        r#"spangate_build_info{{version="{}",target_os="{}",target_arch="{}"}}"#,
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    assert_eq!(series_value(&text, &build), Some(1.0), "{text}");
    if cfg!(target_os = "linux") {
        assert!(series_value(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
        assert!(series_value(&text, "process_open_fds").is_some_and(|v| v > 0.0));
        assert!(series_value(&text, "process_start_time_seconds").is_some_and(|v| v > 1.6e9));
    }
    // Never a credential value (only names and fingerprints anywhere).
    assert!(!text.contains(LIGHTSTEP_TOKEN));

    // Traffic moves the counters.
    let token = h.token("edge-prod");
    assert_eq!(h.send_json(Some(&token), "checkout").await.status(), 200);
    assert_eq!(h.send_json(None, "checkout").await.status(), 401);
    let (_, _, text) = h.fetch(&url, http::Method::GET).await;
    assert_eq!(
        series_value(
            &text,
            r#"spangate_requests_total{endpoint="traces",signal="traces",decision="allow",reason="allowed",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series_value(
            &text,
            r#"spangate_requests_total{endpoint="-",signal="-",decision="deny",reason="missing",status="401"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        series_value(
            &text,
            r#"spangate_spans_total{endpoint="traces",outcome="forwarded"}"#
        ),
        Some(2.0)
    );

    // A reload through the admin API is counted.
    let admin = h.token("admin");
    let (status, body) = h.reload_policies(&admin).await;
    assert_eq!(status, 200, "{body}");
    let (_, _, text) = h.fetch(&url, http::Method::GET).await;
    assert_eq!(
        series_value(
            &text,
            r#"spangate_policy_reloads_total{trigger="admin",result="ok"}"#
        ),
        Some(1.0),
        "{text}"
    );

    // The listener serves nothing else, and only reads.
    let (status, _, _) = h
        .fetch(&format!("http://{addr}/admin/v1/status"), http::Method::GET)
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = h.fetch(&url, http::Method::POST).await;
    assert_eq!(status, 405);
    // The admin listener's /metrics serves the same families.
    let (status, _, admin_text) = h
        .fetch(
            &format!("http://{}/metrics", h.app.admin_addr),
            http::Method::GET,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(sample_names(&admin_text), sample_names(&text));
    h.stop().await;
}

#[tokio::test]
async fn no_metrics_listener_unless_configured() {
    let h = Harness::start().await;
    assert_eq!(h.app.metrics_addr, None);
    h.stop().await;
}

#[tokio::test]
async fn endpoints_added_by_a_reload_get_their_zero_series() {
    let files = ["endpoints.yaml", "edge.yaml"]
        .into_iter()
        .map(|n| {
            (
                n,
                std::fs::read_to_string(crate::common::repo_policies().join(n)).unwrap(),
            )
        })
        .collect();
    let h = Harness::start_with(Options {
        policies: Some(files),
        top_extra: "metrics: { listen: 127.0.0.1:0 }".into(),
        ..Default::default()
    })
    .await;
    let url = format!("http://{}/metrics", h.app.metrics_addr.unwrap());
    let series = r#"spangate_requests_total{endpoint="extra",signal="traces",decision="deny",reason="no_match",status="403"}"#;
    let (_, _, text) = h.fetch(&url, http::Method::GET).await;
    assert_eq!(series_value(&text, series), None);
    std::fs::write(
        h.dir.path().join("policies/extra.yaml"),
        "endpoints:\n  extra: { path: /extra/v1/traces, upstream: lightstep }\n",
    )
    .unwrap();
    let admin = h.token("admin");
    let (status, body) = h.reload_policies(&admin).await;
    assert_eq!(status, 200, "{body}");
    let (_, _, text) = h.fetch(&url, http::Method::GET).await;
    assert_eq!(series_value(&text, series), Some(0.0), "{text}");
    h.stop().await;
}
