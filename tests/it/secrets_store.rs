//! The persistent secrets store: restart, crash safety, corruption, file mode,
//! encryption at rest.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use spangate::secrets::{Secret, SecretSource, SecretStore, SecretsConfig, StoreKey, VersionState};

fn cfg(path: &Path) -> SecretsConfig {
    SecretsConfig {
        store: Some(path.to_path_buf()),
        ..Default::default()
    }
}

fn secret(v: &str) -> Secret {
    Secret::new(v.to_string())
}

fn open(path: &Path) -> Arc<SecretStore> {
    SecretStore::open(&cfg(path)).expect("open store")
}

#[test]
fn restart_after_rotation_keeps_rotated_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets.json");
    let seed = dir.path().join("seed.txt");
    std::fs::write(&seed, "seed-token-value\n").expect("seed file");
    let mut config = cfg(&path);
    config
        .bootstrap
        .insert("lp".into(), SecretSource::File(seed.clone()));

    let store = SecretStore::open(&config).expect("open");
    assert_eq!(
        store.current("lp").expect("seeded").value.expose(),
        "seed-token-value"
    );
    store
        .rotate(
            "lp",
            secret("rotated-token-value"),
            Duration::from_secs(3600),
            None,
        )
        .expect("rotate");
    drop(store);

    // The bootstrap source changes (or disappears): the store wins.
    std::fs::write(&seed, "another-seed\n").expect("rewrite seed");
    let store = SecretStore::open(&config).expect("reopen");
    let cred = store.current("lp").expect("credential");
    assert_eq!(cred.value.expose(), "rotated-token-value");
    assert_eq!(cred.version, 2);
    assert_eq!(
        cred.previous.as_ref().map(Secret::expose),
        Some("seed-token-value")
    );
    drop(store);

    std::fs::remove_file(&seed).expect("rm seed");
    let store = SecretStore::open(&config).expect("reopen without bootstrap source");
    assert_eq!(store.current("lp").expect("credential").version, 2);
}

#[test]
fn bootstrap_seeds_only_missing_credentials_and_fails_clearly_when_source_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets.json");
    let mut config = cfg(&path);
    config.bootstrap.insert(
        "missing".into(),
        SecretSource::File(dir.path().join("nope.txt")),
    );
    let err = SecretStore::open(&config).unwrap_err();
    assert_eq!(err.reason(), "bootstrap_file");
    assert!(err.to_string().contains("nope.txt"), "{err}");
    assert!(!path.exists(), "nothing is written when start-up fails");
}

#[test]
fn store_file_has_mode_0600_and_no_world_access_after_rewrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/dir/secrets.json");
    let store = open(&path);
    store
        .rotate("lp", secret("aaaa"), Duration::ZERO, None)
        .expect("rotate");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dmode = std::fs::metadata(path.parent().expect("dir"))
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dmode, 0o700, "created store directory is private");
    drop(store);
    // An operator loosened the mode: the next write restores 0600.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let store = open(&path);
    store
        .rotate("lp", secret("bbbb"), Duration::ZERO, None)
        .expect("rotate");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// Every way a store file can be broken: start-up refuses with a clear error
/// and the file stays byte-identical.
#[test]
fn corrupt_store_refuses_start_up_and_is_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.json");
    {
        let store = open(&good);
        store
            .rotate("lp", secret("first"), Duration::ZERO, None)
            .expect("rotate");
        store
            .rotate("lp", secret("second"), Duration::from_secs(600), None)
            .expect("rotate");
    }
    let good_text = std::fs::read_to_string(&good).expect("read");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", b"\x00\x01not json at all".to_vec()),
        (
            "truncated",
            good_text.as_bytes()[..good_text.len() / 2].to_vec(),
        ),
        (
            "wrong format",
            good_text
                .replace("spangate-secrets", "other-thing")
                .into_bytes(),
        ),
        (
            "future version",
            good_text
                .replace("\"version\": 1,", "\"version\": 9,")
                .into_bytes(),
        ),
        (
            "value edited",
            good_text.replace("\"second\"", "\"sec0nd\"").into_bytes(),
        ),
        (
            "two current",
            good_text
                .replace("\"previous\"", "\"current\"")
                .into_bytes(),
        ),
        (
            "unknown field",
            good_text.replacen("{", "{\"extra\": 1,", 1).into_bytes(),
        ),
    ];
    for (what, bytes) in cases {
        let path = dir.path().join(format!("{}.json", what.replace(' ', "-")));
        std::fs::write(&path, &bytes).expect("write case");
        let mut config = cfg(&path);
        config.bootstrap.insert(
            "other".into(),
            SecretSource::File(dir.path().join("absent")),
        );
        let err = SecretStore::open(&config).unwrap_err();
        assert_eq!(err.reason(), "store_corrupt", "{what}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
        assert!(
            !msg.contains("second") && !msg.contains("sec0nd"),
            "{what}: value leaked: {msg}"
        );
        assert_eq!(
            std::fs::read(&path).expect("read back"),
            bytes,
            "{what}: file changed"
        );
    }
}

#[test]
fn unreadable_store_refuses_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets.json");
    std::fs::create_dir(&path).expect("a directory where the file should be");
    let err = SecretStore::open(&cfg(&path)).unwrap_err();
    assert!(
        matches!(err.reason(), "store_io" | "store_corrupt"),
        "{err}"
    );
}

fn key(byte: u8) -> StoreKey {
    StoreKey::from_bytes(&[byte; 32]).expect("key")
}

#[test]
fn encryption_at_rest_round_trips_and_hides_values_and_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets.json");
    let value = "encrypted-token-9f8e7d6c5b4a";
    {
        let store = SecretStore::open_with_key(&cfg(&path), Some(key(7))).expect("open");
        store
            .rotate("lightstep-prod", secret(value), Duration::ZERO, None)
            .expect("rotate");
        assert!(store.encrypted());
    }
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(!text.contains(value), "value in the encrypted file");
    assert!(!text.contains("lightstep-prod"), "names are encrypted too");
    assert!(text.contains("AES-256-GCM"));

    let store = SecretStore::open_with_key(&cfg(&path), Some(key(7))).expect("reopen");
    assert_eq!(
        store
            .current("lightstep-prod")
            .expect("cred")
            .value
            .expose(),
        value
    );
    drop(store);

    // No key / wrong key: refused, file untouched.
    let before = std::fs::read(&path).expect("read");
    let err = SecretStore::open_with_key(&cfg(&path), None).unwrap_err();
    assert_eq!(err.reason(), "store_encrypted_no_key", "{err}");
    let err = SecretStore::open_with_key(&cfg(&path), Some(key(8))).unwrap_err();
    assert_eq!(err.reason(), "store_wrong_key", "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), before);

    // Tampered ciphertext: corrupt, untouched.
    let mut doc: serde_json::Value = serde_json::from_slice(&before).expect("json");
    let ct = doc["ciphertext"].as_str().expect("ciphertext").to_string();
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(ct)
        .expect("b64");
    raw[3] ^= 0x40;
    doc["ciphertext"] = base64::engine::general_purpose::STANDARD.encode(raw).into();
    let tampered = serde_json::to_vec(&doc).expect("json");
    std::fs::write(&path, &tampered).expect("write");
    let err = SecretStore::open_with_key(&cfg(&path), Some(key(7))).unwrap_err();
    assert_eq!(err.reason(), "store_corrupt", "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), tampered);
}

#[test]
fn plaintext_store_is_encrypted_when_a_key_is_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets.json");
    {
        let store = open(&path);
        store
            .rotate("lp", secret("plain-then-sealed"), Duration::ZERO, None)
            .expect("rotate");
    }
    assert!(
        std::fs::read_to_string(&path)
            .expect("read")
            .contains("plain-then-sealed")
    );
    let store = SecretStore::open_with_key(&cfg(&path), Some(key(3))).expect("open");
    assert!(
        !std::fs::read_to_string(&path)
            .expect("read")
            .contains("plain-then-sealed")
    );
    assert_eq!(
        store.current("lp").expect("cred").value.expose(),
        "plain-then-sealed"
    );
}

#[test]
fn key_from_environment_variable_is_required_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = cfg(&dir.path().join("s.json"));
    config.encryption_key_env = Some("SPANGATE_TEST_KEY_THAT_IS_NOT_SET".into());
    let err = SecretStore::open(&config).unwrap_err();
    assert_eq!(err.reason(), "bad_key");
    assert!(
        err.to_string()
            .contains("SPANGATE_TEST_KEY_THAT_IS_NOT_SET")
    );
}

#[test]
fn version_history_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.json");
    {
        let store = open(&path);
        for v in ["aa", "bb", "cc"] {
            store
                .rotate("lp", secret(v), Duration::from_secs(60), None)
                .expect("rotate");
        }
        store.retire("lp", 2).expect("retire");
    }
    let store = open(&path);
    let info = store.info("lp").expect("info");
    let states: Vec<(u64, VersionState)> =
        info.versions.iter().map(|v| (v.version, v.state)).collect();
    assert_eq!(
        states,
        vec![
            (3, VersionState::Current),
            (2, VersionState::Retired),
            (1, VersionState::Retired)
        ]
    );
    assert_eq!(info.versions[0].fingerprint, secret("cc").fingerprint());
    assert!(store.current("lp").expect("cred").previous.is_none());
}

// ---- crash safety: a child process rotates in a loop and is SIGKILLed ----

const CHILD_STORE: &str = "SPANGATE_TEST_CRASH_WRITER_STORE";
const CHILD_KEY: &str = "SPANGATE_TEST_CRASH_WRITER_KEY";

/// Not a test of its own: the body of the child process spawned by
/// `kill_during_store_writes_leaves_old_or_new_state`. Without the env var
/// (a normal test run) it returns at once.
#[test]
fn crash_writer_child() {
    let Some(path) = std::env::var_os(CHILD_STORE) else {
        return;
    };
    let mut config = cfg(Path::new(&path));
    if std::env::var_os(CHILD_KEY).is_some() {
        config.encryption_key_env = Some(CHILD_KEY.into());
    }
    let store = SecretStore::open(&config).expect("child open");
    let start = store.current("lp").map_or(0, |c| c.version);
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in (start + 1)..(start + 100_000) {
        if Instant::now() > deadline {
            break;
        }
        store
            .rotate(
                "lp",
                secret(&format!("value-{n}")),
                Duration::from_secs(3600),
                None,
            )
            .expect("child rotate");
        println!("wrote {n}");
    }
}

fn spawn_writer(path: &Path, key_b64: Option<&str>) -> std::process::Child {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        "secrets_store::crash_writer_child",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_STORE, path)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(k) = key_b64 {
        cmd.env(CHILD_KEY, k);
    }
    cmd.spawn().expect("spawn child")
}

fn crash_rounds(path: &Path, key_b64: Option<&str>) {
    let mut last_reported = 0u64;
    // 20 rounds; about one kill in ten lands between temp write and rename.
    for kill_after in (1u64..=20).map(|i| 1 + (i * 7) % 23) {
        let mut child = spawn_writer(path, key_b64);
        let stdout = child.stdout.take().expect("stdout");
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            if let Some(n) = line.strip_prefix("wrote ") {
                last_reported = n.trim().parse().expect("number");
                seen += 1;
                if seen == kill_after {
                    break;
                }
            }
        }
        assert_eq!(seen, kill_after, "child stopped early");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");

        // Reopen in this process: the file must parse to a valid state that is
        // the last reported write or a later one, value and version agreeing.
        let key = key_b64.map(|k| StoreKey::from_base64(k).expect("key"));
        let store =
            SecretStore::open_with_key(&cfg(path), key).expect("store parses after SIGKILL");
        let cred = store.current("lp").expect("credential present");
        assert!(cred.version >= last_reported, "lost a reported write");
        assert_eq!(cred.value.expose(), format!("value-{}", cred.version));
        if cred.version > 1 {
            assert_eq!(
                cred.previous.as_ref().map(Secret::expose),
                Some(format!("value-{}", cred.version - 1).as_str())
            );
        }
        let temps = std::fs::read_dir(path.parent().expect("dir"))
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .count();
        assert_eq!(temps, 0, "stale temp files are cleaned at open");
    }
}

#[test]
fn kill_during_store_writes_leaves_old_or_new_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    crash_rounds(&dir.path().join("plain.json"), None);
}

#[test]
fn kill_during_encrypted_store_writes_leaves_old_or_new_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = base64::engine::general_purpose::STANDARD.encode([0x5au8; 32]);
    crash_rounds(&dir.path().join("sealed.json"), Some(&k));
}
