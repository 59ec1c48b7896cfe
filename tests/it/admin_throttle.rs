//! Failed admin authentication is throttled per peer (and globally), against
//! a real admin server on 127.0.0.1.
//!
//! Distinct peers: Linux routes all of 127.0.0.0/8 to loopback, so a client
//! socket bound to 127.0.0.2 reaches the server as a second peer. The key
//! derivation itself (IPv4 /32, IPv6 /64, v4-mapped) and the timing rules are
//! unit-tested with synthetic addresses and clocks in `admin::throttle`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{self, BOOTSTRAP, Harness, Options, PEER_1, Reply, StaticAuth};
use spangate::admin::AdminExtras;
use spangate::admin::auth::Permission;

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

async fn list_secrets(h: &Harness, peer: std::net::IpAddr, auth: Option<&str>) -> Reply {
    let header;
    let headers: Vec<(&str, &str)> = match auth {
        Some(a) => {
            header = a.to_string();
            vec![("authorization", header.as_str())]
        }
        None => Vec::new(),
    };
    h.call_from(
        peer,
        "GET",
        "/admin/v1/secrets",
        &headers,
        Vec::new(),
        false,
    )
    .await
}

#[tokio::test]
async fn admin_bad_tokens_lock_the_peer_out_and_the_right_token_is_not_checked() {
    let h = Harness::start(Options {
        admin_yaml: "  auth_throttle: { lockout: 1h, max_lockout: 1h }\n".into(),
        ..Default::default()
    })
    .await;
    // Five failures (default max_failures): four wrong tokens and one
    // malformed Authorization header.
    for i in 0..4 {
        let r = list_secrets(&h, PEER_1, Some(&bearer(&format!("wrong-guess-{i}")))).await;
        assert_eq!(r.status, 401, "{:?}", r.body);
        assert!(r.header("retry-after").is_none());
    }
    let fifth = list_secrets(&h, PEER_1, Some("Basic d3JvbmctZ3Vlc3M=")).await;
    assert_eq!(fifth.status, 401);
    let line = h.audit_for(&fifth.request_id());
    assert_eq!(line.len(), 1);
    assert_eq!(line[0]["lockout_s"], 3600, "{}", line[0]);

    // Locked out: a wrong token and the right one get the same 429.
    let wrong = list_secrets(&h, PEER_1, Some(&bearer("wrong-guess-5"))).await;
    let right = list_secrets(&h, PEER_1, Some(&bearer(BOOTSTRAP))).await;
    let none = list_secrets(&h, PEER_1, None).await;
    for r in [&wrong, &right, &none] {
        assert_eq!(r.status, 429, "{:?}", r.body);
        assert_eq!(r.body["error"], "auth_throttled");
        let secs: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((60..=3600).contains(&secs), "{secs}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    assert_eq!(wrong.body["message"], right.body["message"]);

    // The audit line of the throttled right token: peer, no token.
    let lines = h.audit_for(&right.request_id());
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["result"], "throttled", "{line}");
    assert_eq!(line["throttle"], "peer");
    assert_eq!(line["status"], 429);
    assert_eq!(line["reason"], "auth_throttled");
    assert_eq!(line["actor"], "anonymous");
    assert!(
        line["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.1:"))
    );
    assert!(line.get("token_fingerprint").is_none(), "{line}");
    assert!(line["retry_after_s"].as_u64().is_some());
    assert_eq!(line["peer"], "127.0.0.1");

    // Metrics: 3 throttled calls, one lockout.
    let text = h.shared.metrics.encode();
    assert!(
        text.contains("spangate_admin_auth_throttled_total{scope=\"peer\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("spangate_admin_auth_lockouts_total 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "spangate_admin_requests_total{action=\"secrets.list\",result=\"throttled\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains(
        "spangate_admin_requests_total{action=\"secrets.list\",result=\"unauthenticated\"} 5"
    ));
    h.assert_never_leaked(&[BOOTSTRAP, "wrong-guess-"]);
    h.stop().await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn admin_lockout_of_one_peer_leaves_another_peer_alone() {
    use harness::PEER_2;
    let h = Harness::start(Options {
        admin_yaml: "  auth_throttle: { max_failures: 3, lockout: 1h, max_lockout: 1h }\n".into(),
        ..Default::default()
    })
    .await;
    for i in 0..3 {
        let r = list_secrets(&h, PEER_1, Some(&bearer(&format!("bad-{i}")))).await;
        assert_eq!(r.status, 401);
    }
    assert_eq!(
        list_secrets(&h, PEER_1, Some(&bearer(BOOTSTRAP)))
            .await
            .status,
        429
    );
    // 127.0.0.2 is a different peer: its token is checked as usual.
    let ok = list_secrets(&h, PEER_2, Some(&bearer(BOOTSTRAP))).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let bad = list_secrets(&h, PEER_2, Some(&bearer("bad-from-2"))).await;
    assert_eq!(bad.status, 401);
    let line = &h.audit_for(&ok.request_id())[0];
    assert!(
        line["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.2:")),
        "{line}"
    );
    // Status shows the counters (asked from the healthy peer).
    let st = h
        .call_from(
            PEER_2,
            "GET",
            "/admin/v1/status",
            &[("authorization", &bearer(BOOTSTRAP))],
            Vec::new(),
            false,
        )
        .await;
    assert_eq!(st.status, 200);
    let t = &st.body["admin"]["auth_throttle"];
    assert_eq!(t["lockouts"], 1, "{t}");
    assert_eq!(t["throttled_peer"], 1);
    assert_eq!(t["failures"], 4);
    assert_eq!(st.body["admin"]["throttled"], 1);
    h.stop().await;
}

#[tokio::test]
async fn admin_lockout_ends_then_the_right_token_works_and_stays_usable() {
    let h = Harness::start(Options {
        admin_yaml: "  auth_throttle: { max_failures: 2, lockout: 300ms, max_lockout: 300ms }\n"
            .into(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        list_secrets(&h, PEER_1, Some(&bearer("nope-1")))
            .await
            .status,
        401
    );
    let second = list_secrets(&h, PEER_1, Some(&bearer("nope-2"))).await;
    assert_eq!(second.status, 401);
    assert_eq!(h.audit_for(&second.request_id())[0]["lockout_s"], 1);

    // Poll with the right token (bounded): only 429s until the lockout ends,
    // then 200. The token is never refused as invalid.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut statuses = Vec::new();
    loop {
        let r = list_secrets(&h, PEER_1, Some(&bearer(BOOTSTRAP))).await;
        statuses.push(r.status);
        if r.status != 429 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (last, before) = statuses.split_last().expect("polled");
    assert_eq!(*last, 200, "{statuses:?}");
    assert!(before.iter().all(|s| *s == 429), "{statuses:?}");

    // The success does not clear the peer's record (another caller at the
    // same address proves nothing about the guesser): on probation, one
    // more failure locks the peer again...
    let again = list_secrets(&h, PEER_1, Some(&bearer("nope-3"))).await;
    assert_eq!(again.status, 401);
    let line = &h.audit_for(&again.request_id())[0];
    assert!(line.get("lockout_s").is_some(), "{line}");
    // ...but the credential that just worked is known good and still works.
    let ok = list_secrets(&h, PEER_1, Some(&bearer(BOOTSTRAP))).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    h.stop().await;
}

#[tokio::test]
async fn admin_forbidden_calls_neither_count_nor_clear_failures() {
    let auth = StaticAuth::default().with("reader-token", "reader", &[Permission::SecretsRead]);
    let h = Harness::start(Options {
        admin_yaml: "  auth_throttle: { max_failures: 3, lockout: 1h, max_lockout: 1h }\n".into(),
        extras: AdminExtras {
            authenticator: Some(Arc::new(auth)),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let rotate = |token: &'static str| {
        let h = &h;
        async move {
            h.call_from(
                PEER_1,
                "POST",
                "/admin/v1/secrets/lp/rotate",
                &[
                    ("authorization", &bearer(token)),
                    ("content-type", "application/json"),
                ],
                br#"{"value": "v", "verify": false}"#.to_vec(),
                false,
            )
            .await
        }
    };
    assert_eq!(rotate("guess-a").await.status, 401);
    assert_eq!(rotate("guess-b").await.status, 401);
    // A valid token without secrets:rotate, repeated: 403, and no reset.
    for _ in 0..5 {
        assert_eq!(rotate("reader-token").await.status, 403);
    }
    let third = rotate("guess-c").await;
    assert_eq!(third.status, 401);
    assert_eq!(h.audit_for(&third.request_id())[0]["lockout_s"], 3600);
    // Now even the reader's allowed call is throttled.
    let r = list_secrets(&h, PEER_1, Some(&bearer("reader-token"))).await;
    assert_eq!(r.status, 429);
    assert!(h.shared.secrets.current("lp").is_none());
    h.stop().await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn admin_global_ceiling_throttles_unknown_peers_but_not_recent_admins() {
    use harness::{PEER_2, PEER_3};
    let h = Harness::start(Options {
        admin_yaml:
            "  auth_throttle: { max_failures: 100, global_max_failures: 3, global_window: 24h }\n"
                .into(),
        ..Default::default()
    })
    .await;
    // 127.0.0.2 is an operator who authenticated before the attack.
    assert_eq!(
        list_secrets(&h, PEER_2, Some(&bearer(BOOTSTRAP)))
            .await
            .status,
        200
    );
    // Three failures anywhere use up the global budget (one back per 8 h).
    for i in 0..3 {
        let r = list_secrets(&h, PEER_1, Some(&bearer(&format!("spray-{i}")))).await;
        assert_eq!(r.status, 401);
    }
    // A peer never seen before is throttled without a check, even with the
    // right token; so is the sprayer.
    let fresh = list_secrets(&h, PEER_3, Some(&bearer(BOOTSTRAP))).await;
    assert_eq!(fresh.status, 429, "{:?}", fresh.body);
    let line = &h.audit_for(&fresh.request_id())[0];
    assert_eq!(line["throttle"], "global", "{line}");
    assert_eq!(line["result"], "throttled");
    assert!(line.get("token_fingerprint").is_none());
    assert_eq!(
        list_secrets(&h, PEER_1, Some(&bearer("spray-3")))
            .await
            .status,
        429
    );
    // The operator keeps working.
    assert_eq!(
        list_secrets(&h, PEER_2, Some(&bearer(BOOTSTRAP)))
            .await
            .status,
        200
    );
    let text = h.shared.metrics.encode();
    assert!(
        text.contains("spangate_admin_auth_throttled_total{scope=\"global\"} 2"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test]
async fn admin_throttle_can_be_disabled_and_bad_config_is_refused() {
    let h = Harness::start(Options {
        admin_yaml: "  auth_throttle: { enabled: false }\n".into(),
        ..Default::default()
    })
    .await;
    let mut seen = BTreeSet::new();
    for i in 0..12 {
        seen.insert(
            list_secrets(&h, PEER_1, Some(&bearer(&format!("x-{i}"))))
                .await
                .status,
        );
    }
    assert_eq!(seen, BTreeSet::from([401]));
    assert_eq!(
        list_secrets(&h, PEER_1, Some(&bearer(BOOTSTRAP)))
            .await
            .status,
        200
    );
    h.stop().await;

    for (yaml, needle) in [
        (
            "admin: { auth_throttle: { max_failures: 0 } }\n",
            "max_failures",
        ),
        (
            "admin: { auth_throttle: { lockout: 10m, max_lockout: 1m } }\n",
            "max_lockout",
        ),
        ("admin: { auth_throttle: { lockout: 0s } }\n", "lockout"),
        ("admin: { auth_throttle: { bogus: 1 } }\n", "bogus"),
    ] {
        let err = spangate::config::Config::parse(std::path::Path::new("x.yaml"), yaml)
            .expect_err("refused");
        assert!(err.to_string().contains(needle), "{yaml}: {err}");
    }
}
