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
