//! The Kubernetes ConfigMaps carry exactly the shipped configs and policies,
//! and the shipped configs load.

use std::path::Path;

fn check_configmap(cm_file: &str, config_file: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cm: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join(cm_file)).unwrap()).unwrap();
    for (key, file) in [
        ("spangate.yaml", config_file),
        ("endpoints.yaml", "policies/endpoints.yaml"),
        ("edge.yaml", "policies/edge.yaml"),
    ] {
        let want = std::fs::read_to_string(root.join(file)).unwrap();
        let got = cm["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{cm_file} has no {key}"));
        assert_eq!(
            got.trim_end(),
            want.trim_end(),
            "{key} in {cm_file} differs from {file}: regenerate the ConfigMap"
        );
    }
}

#[test]
fn configmap_matches_shipped_config_and_policies() {
    check_configmap("deploy/kubernetes/configmap.yaml", "deploy/spangate.yaml");
}

#[test]
fn fleet_and_sidecar_configmaps_match_their_configs_which_load() {
    check_configmap(
        "deploy/kubernetes/fleet/configmap.yaml",
        "deploy/spangate-fleet.yaml",
    );
    check_configmap(
        "deploy/kubernetes/sidecar/configmap.yaml",
        "deploy/spangate-sidecar.yaml",
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fleet = spangate::config::Config::load(&root.join("deploy/spangate-fleet.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let redis = fleet.state.redis.expect("the fleet config uses Redis");
    assert_eq!(redis.url, "redis://spangate-redis:6379");
    assert!(
        fleet.secrets.store.is_some(),
        "a local copy of the credentials"
    );
    let sidecar = spangate::config::Config::load(&root.join("deploy/spangate-sidecar.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        sidecar.state.redis.is_none(),
        "the sidecar is a single node"
    );
    assert!(sidecar.server.listen.ip().is_loopback());
    assert!(sidecar.secrets.store.is_some());
}

/// `deploy/examples/generic-oidc.yaml` (+ its policies) loads and lints clean
/// against its own config: no errors, no warnings.
#[test]
fn generic_oidc_example_loads_and_lints_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = spangate::config::Config::load(&root.join("deploy/examples/generic-oidc.yaml"))
        .expect("example config loads");
    let ctx = spangate::policy::LintContext::from_config(&cfg);
    let report = spangate::policy::check_dir(&cfg.policies, &ctx);
    assert!(report.is_ok(), "{report}");
    assert!(report.warnings.is_empty(), "{report}");
}

/// The generic OIDC example starts while its issuer is down (tokens get a
/// retryable 503, the OTLP port's /readyz is 503) and serves as soon as the
/// issuer answers, without a restart: what docs/identity.md promises.
#[tokio::test]
async fn generic_oidc_example_starts_with_the_idp_down_and_serves_once_it_is_up() {
    use spangate::audit::{Audit, MemorySink};
    use spangate::client::{HttpClient, OutBody};
    use std::time::{Duration, Instant};

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("deploy/examples/generic-oidc.yaml");
    let text = std::fs::read_to_string(&example).unwrap();
    let idp = spangate::dev::idp::DevIdp::start(spangate::dev::idp::DevIdpOptions {
        issuer_path: "/realms/spangate".into(),
        available: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let upstream = spangate::dev::upstream::RecordingUpstream::start(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("upstream-token");
    std::fs::write(&token_file, "example-upstream-token\n").unwrap();
    let mut text = text;
    for (from, to) in [
        ("listen: 0.0.0.0:4318", "listen: 127.0.0.1:0".to_string()),
        ("listen: 127.0.0.1:9901", "listen: 127.0.0.1:0".to_string()),
        (
            "issuer: https://sso.example.com/realms/acme",
            format!("issuer: \"{}\"", idp.issuer()),
        ),
        (
            "url: https://otlp.example.com/v1/traces",
            format!("url: \"{}\"", upstream.url("/v1/traces")),
        ),
        (
            "{ env: OTLP_BACKEND_TOKEN }",
            format!("{{ file: \"{}\" }}", token_file.display()),
        ),
        (
            "policies: generic-oidc-policies",
            format!(
                "policies: \"{}\"",
                root.join("deploy/examples/generic-oidc-policies").display()
            ),
        ),
    ] {
        assert!(text.contains(from), "the example no longer has `{from}`");
        text = text.replace(from, &to);
    }
    let cfg = spangate::config::Config::parse(&example, &text).expect("config");
    let audit = MemorySink::default();
    let app = spangate::app::build(cfg, Audit::to_writer(Box::new(audit.clone())))
        .await
        .expect("starts with the IdP down");
    let client = HttpClient::new(Default::default()).unwrap();
    let base = format!("http://{}", app.proxy_addr);
    let readyz = || async {
        let req = http::Request::get(format!("{base}/readyz"))
            .body(OutBody::new(bytes::Bytes::new()))
            .unwrap();
        client
            .send(req, Duration::from_secs(5), 1 << 20)
            .await
            .expect("readyz")
            .status()
    };
    let publish = |token: String, service: &'static str| {
        let client = &client;
        let base = &base;
        async move {
            let req = http::Request::post(format!("{base}/v1/traces"))
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {token}"))
                .body(OutBody::new(
                    spangate::dev::sample_batch_json(service, 2).into(),
                ))
                .unwrap();
            client
                .send(req, Duration::from_secs(10), 1 << 20)
                .await
                .expect("proxy answered")
        }
    };
    let publisher = serde_json::json!({
        "sub": "svc-checkout", "azp": "svc-checkout", "service": "checkout"
    });

    // IdP down: not ready, and a token is a retryable 503, nothing forwarded.
    assert_eq!(readyz().await, 503);
    let resp = publish(idp.mint(publisher.clone()), "checkout").await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let last = audit.lines().last().cloned().unwrap();
    assert_eq!(last["reason"], "provider_unavailable", "{last}");
    assert!(upstream.received().is_empty());

    // The IdP comes up: ready within the retry backoff, without a restart.
    idp.set_available(true);
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz().await != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready 30 s after the IdP came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The example policy: a `svc-*` client publishes as its `service` claim,
    // stamped with its client id; another service, another client or a
    // disabled client is refused.
    let resp = publish(idp.mint(publisher.clone()), "checkout").await;
    assert_eq!(resp.status(), 200, "{:?}", audit.lines().last());
    let got = upstream.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-api-key"), Some("example-upstream-token"));
    let body = String::from_utf8_lossy(&got[0].body);
    assert!(
        body.contains("enduser.id") && body.contains("svc-checkout"),
        "{body}"
    );
    let resp = publish(idp.mint(publisher), "billing").await;
    assert_eq!(resp.status(), 403);
    let web = serde_json::json!({"sub": "web", "azp": "web-app", "service": "checkout"});
    let resp = publish(idp.mint(web), "checkout").await;
    assert_eq!(resp.status(), 403);
    assert_eq!(audit.lines().last().unwrap()["reason"], "no_match");
    let disabled =
        serde_json::json!({"sub": "old", "azp": "svc-disabled-old", "service": "checkout"});
    let resp = publish(idp.mint(disabled), "checkout").await;
    assert_eq!(resp.status(), 403);
    assert_eq!(audit.lines().last().unwrap()["reason"], "explicit_deny");
    assert_eq!(upstream.received().len(), 1);
    app.shutdown().await;
}

fn yaml_docs(path: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .collect()
}

/// Prometheus can reach the metrics listener the shipped config opens: the
/// pod declares the port and the scrape annotations, the Service exposes it
/// by name, and the ServiceMonitor selects that Service and port.
#[test]
fn metrics_port_is_scrapeable_in_the_manifests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = spangate::config::Config::load(&root.join("deploy/spangate.yaml")).unwrap();
    let port = cfg
        .metrics
        .listen
        .expect("metrics.listen in the shipped config")
        .port();
    let docs = yaml_docs("deploy/kubernetes/gateway.yaml");
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let dep = kind("Deployment");
    let pod = &dep["spec"]["template"];
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        ann["prometheus.io/port"].as_str(),
        Some(port.to_string().as_str())
    );
    assert_eq!(ann["prometheus.io/path"].as_str(), Some("/metrics"));
    let ports = pod["spec"]["containers"][0]["ports"].as_sequence().unwrap();
    assert!(
        ports.iter().any(|p| p["name"].as_str() == Some("metrics")
            && p["containerPort"].as_u64() == Some(u64::from(port))),
        "container port {port} named metrics"
    );
    let svc = kind("Service");
    assert!(
        svc["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["name"].as_str() == Some("metrics")
                && p["targetPort"].as_str() == Some("metrics")),
        "service port named metrics"
    );
    let np = kind("NetworkPolicy");
    assert!(
        np["spec"]["ingress"][0]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["port"].as_u64() == Some(u64::from(port))),
        "network policy admits the metrics port"
    );
    let sm = &yaml_docs("deploy/kubernetes/prometheus-operator/servicemonitor.yaml")[0];
    assert_eq!(sm["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    assert_eq!(sm["kind"].as_str(), Some("ServiceMonitor"));
    let selector = sm["spec"]["selector"]["matchLabels"].as_mapping().unwrap();
    for (k, v) in selector {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selects the Service"
        );
    }
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(ep["port"].as_str(), Some("metrics"));
    assert_eq!(ep["path"].as_str(), Some("/metrics"));
}

/// The Grafana dashboard is one consistent document: unique panel ids,
/// panels that do not overlap on the 24-column grid, every `$variable` a
/// query uses defined in `templating`, and the Vercel deployment markers and
/// panels in it (not in a side file).
#[test]
fn grafana_dashboard_is_consistent_and_carries_the_deployment_panels() {
    use serde_json::Value;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/spangate-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = std::collections::BTreeSet::new();
    let mut cells = std::collections::BTreeMap::new();
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "panel {id} wider than the grid");
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), id) {
                    panic!("panels {other} and {id} overlap at x={cx} y={cy}");
                }
            }
        }
    }
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let text = dash.to_string();
    let mut rest = text.as_str();
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let name: String = rest
            .trim_start_matches('{')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // Grafana's own: $__rate_interval, $__all, ...
        if name.is_empty() || name.starts_with("__") {
            continue;
        }
        assert!(vars.contains(&name.as_str()), "${name} is not a variable");
    }
    assert!(vars.contains(&"project"), "{vars:?}");
    let markers = dash["annotations"]["list"].as_array().expect("annotations");
    assert!(
        markers.iter().any(|a| a["expr"]
            .as_str()
            .is_some_and(|e| e.contains("spangate_deployment_first_seen_timestamp_seconds"))),
        "no deployment marker"
    );
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for t in [
        "Vercel deployments",
        "Spans per deployment",
        "Denied batches per deployment",
    ] {
        assert!(titles.contains(&t), "{t} missing: {titles:?}");
    }
    assert!(
        !root.join("deploy/grafana/deployments-panel.json").exists(),
        "the deployment panels live in the dashboard"
    );
}
