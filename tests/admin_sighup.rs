//! SIGHUP reloads the policy set. In its own test binary: the signal goes to
//! the whole process, and other reload tests must not see it.

#[path = "it/admin_support/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{Harness, Options, eventually};

#[tokio::test]
async fn sighup_triggers_a_reload() {
    let h = Harness::start(Options {
        spawn_reloader: true,
        ..Default::default()
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let audit = h.audit.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            audit.lines().iter().any(|l| {
                l["kind"] == "policy_reload" && l["trigger"] == "signal" && l["result"] == "ok"
            })
        })
        .await,
        "SIGHUP did not reload"
    );
    h.stop().await;
}
