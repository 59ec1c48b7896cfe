//! The Kubernetes ConfigMap carries exactly the shipped config and policies.

use std::path::Path;

#[test]
fn configmap_matches_shipped_config_and_policies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cm: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("deploy/kubernetes/configmap.yaml")).unwrap(),
    )
    .unwrap();
    for (key, file) in [
        ("spangate.yaml", "deploy/spangate.yaml"),
        ("endpoints.yaml", "policies/endpoints.yaml"),
        ("edge.yaml", "policies/edge.yaml"),
    ] {
        let want = std::fs::read_to_string(root.join(file)).unwrap();
        let got = cm["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("configmap has no {key}"));
        assert_eq!(
            got.trim_end(),
            want.trim_end(),
            "{key} differs from {file}: regenerate the ConfigMap"
        );
    }
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
