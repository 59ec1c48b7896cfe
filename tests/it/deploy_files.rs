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
