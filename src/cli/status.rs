//! `spangate status --format human`: a short summary of the admin API's
//! `GET /admin/v1/status` document for people. The renderer reads the JSON
//! tolerantly (a field an older or newer server lacks prints as `-`), so the
//! CLI and the server may differ by a version.

use std::fmt::Write as _;

use serde_json::Value;

/// How `spangate status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    /// `human` when standard output is a terminal, `json` otherwise.
    Auto,
    /// A summary for people.
    Human,
    /// The admin API's status document, pretty-printed.
    Json,
}

impl StatusFormat {
    /// Resolve `auto` against whether stdout is a terminal.
    pub fn resolve(self, stdout_is_terminal: bool) -> StatusFormat {
        match self {
            StatusFormat::Auto if stdout_is_terminal => StatusFormat::Human,
            StatusFormat::Auto => StatusFormat::Json,
            other => other,
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

fn bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// Render the status document for people: one block per area, problems first
/// in each line so a glance finds them.
pub fn render(v: &Value) -> String {
    let mut o = String::new();
    let uptime = v["uptime_seconds"].as_u64().map_or("-".into(), duration);
    let _ = writeln!(o, "spangate {}, up {uptime}", s(&v["version"]));

    let _ = writeln!(o, "\nidentity providers:");
    match v["providers"].as_array() {
        Some(ps) if !ps.is_empty() => {
            for p in ps {
                let _ = write!(
                    o,
                    "  {:<12} {:<11} keys={} issuer={}",
                    s(&p["name"]),
                    s(&p["state"]),
                    s(&p["keys"]),
                    s(&p["issuer"])
                );
                if let Some(e) = p["last_error"].as_str() {
                    let _ = write!(o, "\n               last error: {e}");
                }
                o.push('\n');
            }
        }
        _ => o.push_str("  (none)\n"),
    }

    let pol = &v["policy"];
    let reload = &pol["reload"];
    let _ = writeln!(
        o,
        "\npolicy: version {} from {}",
        s(&pol["version"]),
        s(&pol["dir"])
    );
    let _ = writeln!(
        o,
        "  reloads {} ok / {} failed, last {} ({}), watcher {}",
        s(&reload["reloads"]),
        s(&reload["failures"]),
        s(&reload["last_result"]),
        s(&reload["last_attempt_at"]),
        if reload["watching"].as_bool() == Some(true) {
            "on".to_string()
        } else {
            format!("off ({})", s(&reload["watch_error"]))
        }
    );
    if let Some(errs) = reload["last_error"].as_array() {
        let _ = writeln!(o, "  the running policy is NOT the one on disk:");
        for d in errs {
            let _ = writeln!(
                o,
                "    {}:{}:{}: {}",
                s(&d["file"]),
                s(&d["line"]),
                s(&d["column"]),
                s(&d["message"])
            );
        }
    }

    let sec = &v["secrets"];
    let _ = writeln!(
        o,
        "\ncredentials: store {}{}{}",
        s(&sec["store"]),
        sec["path"]
            .as_str()
            .map(|p| format!(" at {p}"))
            .unwrap_or_default(),
        if sec["encrypted"].as_bool() == Some(true) {
            ", encrypted"
        } else {
            ""
        }
    );
    match sec["credentials"].as_array() {
        Some(cs) if !cs.is_empty() => {
            for c in cs {
                let prev = c["previous_version"]
                    .as_u64()
                    .map(|p| format!(", v{p} in grace"))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "  {:<20} v{} (sha256:{}){prev}",
                    s(&c["name"]),
                    s(&c["current_version"]),
                    s(&c["current_fingerprint"])
                );
            }
        }
        _ => o.push_str("  (none)\n"),
    }
    if let Some(c) = sec["counters"].as_object() {
        let parts: Vec<String> = c.iter().map(|(k, v)| format!("{k}={}", s(v))).collect();
        let _ = writeln!(o, "  {}", parts.join(" "));
    }

    let px = &v["proxy"];
    let _ = writeln!(
        o,
        "\nproxy: memory {} in use of {}",
        px["memory_in_use_bytes"].as_u64().map_or("-".into(), bytes),
        px["memory_budget_bytes"].as_u64().map_or("-".into(), bytes),
    );
    if let Some(spools) = px["spools"].as_object() {
        for (name, sp) in spools {
            let _ = write!(
                o,
                "  spool {name} ({}, ack {}): {} batch(es), {} in flight, {} of {}, oldest {}, {} dead letter(s)",
                sp["dir"]
                    .as_str()
                    .map_or_else(|| s(&sp["storage"]), |d| format!("disk at {d}")),
                s(&sp["ack"]),
                s(&sp["batches"]),
                s(&sp["in_flight"]),
                sp["bytes"].as_u64().map_or("-".into(), bytes),
                sp["max_bytes"].as_u64().map_or("-".into(), bytes),
                sp["oldest_ms"]
                    .as_u64()
                    .map_or("-".into(), |ms| duration(ms / 1000)),
                s(&sp["dead_letters"]),
            );
            let _ = writeln!(
                o,
                "{}",
                if sp["delivering"].as_bool() == Some(false) {
                    ", not delivering (shutting down)"
                } else {
                    ""
                }
            );
        }
    }

    let ad = &v["admin"];
    let _ = write!(
        o,
        "\nadmin API: {} request(s), {} unauthenticated, {} forbidden, {} failed, {} throttled",
        s(&ad["requests"]),
        s(&ad["unauthenticated"]),
        s(&ad["forbidden"]),
        s(&ad["failed"]),
        s(&ad["throttled"])
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn auto_follows_the_terminal() {
        assert_eq!(StatusFormat::Auto.resolve(true), StatusFormat::Human);
        assert_eq!(StatusFormat::Auto.resolve(false), StatusFormat::Json);
        assert_eq!(StatusFormat::Json.resolve(true), StatusFormat::Json);
        assert_eq!(StatusFormat::Human.resolve(false), StatusFormat::Human);
    }

    #[test]
    fn durations_read_like_uptime() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(125), "2m05s");
        assert_eq!(duration(3 * 3600 + 7 * 60), "3h07m");
        assert_eq!(duration(2 * 86_400 + 3600), "2d01h");
    }

    #[test]
    fn renders_problems_and_tolerates_missing_fields() {
        let v = json!({
            "version": "1.2.3",
            "uptime_seconds": 61,
            "providers": [{"name": "okta", "state": "degraded", "keys": 2,
                           "issuer": "https://okta.example", "last_error": "jwks: HTTP 503"}],
            "policy": {"dir": "/etc/p", "version": "abc",
                       "reload": {"reloads": 1, "failures": 1, "last_result": "error",
                                  "watching": false, "watch_error": "inotify limit",
                                  "last_error": [{"file": "a.yaml", "line": 3, "column": 5, "message": "bad"}]}},
            "secrets": {"store": "file", "path": "/var/lib/s.json", "encrypted": true,
                        "credentials": [{"name": "lp", "current_version": 2,
                                         "current_fingerprint": "ab12", "previous_version": 1}]},
        });
        let out = render(&v);
        assert!(out.starts_with("spangate 1.2.3, up 1m01s"), "{out}");
        assert!(out.contains("okta         degraded    keys=2"), "{out}");
        assert!(out.contains("last error: jwks: HTTP 503"), "{out}");
        assert!(out.contains("NOT the one on disk"), "{out}");
        assert!(out.contains("a.yaml:3:5: bad"), "{out}");
        assert!(out.contains("watcher off (inotify limit)"), "{out}");
        assert!(
            out.contains("lp                   v2 (sha256:ab12), v1 in grace"),
            "{out}"
        );
        assert!(
            out.contains("store file at /var/lib/s.json, encrypted"),
            "{out}"
        );
        // Absent sections print placeholders instead of failing.
        assert!(out.contains("proxy: memory - in use of -"), "{out}");
        assert!(render(&json!({})).contains("(none)"));
    }

    #[test]
    fn shows_each_spool_with_its_storage_and_dead_letters() {
        let v = json!({"proxy": {"spools": {
            "lightstep": {"storage": "disk", "dir": "/var/lib/spangate/spool/lightstep",
                          "ack": "spooled", "batches": 3, "in_flight": 2, "bytes": 3072,
                          "max_bytes": 1_048_576, "oldest_ms": 65_000, "dead_letters": 1,
                          "delivering": true},
            "honeycomb": {"storage": "memory", "dir": null, "ack": "upstream", "batches": 0,
                          "in_flight": 0, "bytes": 0, "max_bytes": 1024, "oldest_ms": null,
                          "dead_letters": 0, "delivering": false},
        }}});
        let out = render(&v);
        assert!(
            out.contains("  spool lightstep (disk at /var/lib/spangate/spool/lightstep, ack spooled): 3 batch(es), 2 in flight, "),
            "{out}"
        );
        assert!(out.contains("oldest 1m05s, 1 dead letter(s)\n"), "{out}");
        assert!(
            out.contains("  spool honeycomb (memory, ack upstream): 0 batch(es), 0 in flight, "),
            "{out}"
        );
        assert!(
            out.contains("oldest -, 0 dead letter(s), not delivering (shutting down)\n"),
            "{out}"
        );
    }
}
