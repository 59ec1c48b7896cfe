//! The file store: one JSON document, replaced atomically on every change.
//!
//! Write path: serialize → (seal) → temp file beside the store created with
//! mode 0600 → write → fsync → rename over the store → fsync the directory.
//! A crash at any point leaves either the old or the new file, never a mix;
//! a stale temp file from a crash is removed at the next start.
//!
//! Read path: a missing file is an empty store; a file that cannot be read,
//! parsed, decrypted or that breaks an invariant stops start-up with a clear
//! error and is never written over. A lock file (`<store>.lock`, advisory
//! `flock`) keeps two processes from sharing one store.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::crypto::{ALGORITHM, CryptoError, Sealed, StoreKey};
use super::{CredentialRecord, SecretsError, StoreState};

/// Value of the `format` field.
pub const FORMAT: &str = "spangate-secrets";
/// Current file format version.
pub const FORMAT_VERSION: u32 = 1;
/// Largest store file read at start-up.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Header of an encrypted store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptionHeader {
    alg: String,
    key_fingerprint: String,
    nonce: String,
}

/// The document on disk.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    version: u32,
    #[serde(with = "humantime_serde")]
    written_at: SystemTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption: Option<EncryptionHeader>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ciphertext: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credentials: Option<BTreeMap<String, CredentialRecord>>,
}

/// What [`FileStore::open`] found.
pub(crate) struct Opened {
    pub store: FileStore,
    /// The state in the file (`None` when the file does not exist yet).
    pub state: Option<StoreState>,
    /// True when the file is plaintext but a key is configured: the caller
    /// rewrites it (encrypted) at once.
    pub needs_encryption: bool,
}

/// An open, locked store file.
pub(crate) struct FileStore {
    path: PathBuf,
    key: Option<StoreKey>,
    _lock: File,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .field("encrypted", &self.key.is_some())
            .finish()
    }
}

fn io_err(path: &Path, op: &'static str, e: &std::io::Error) -> SecretsError {
    SecretsError::Io {
        path: path.display().to_string(),
        op,
        reason: e.kind().to_string(),
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> SecretsError {
    SecretsError::Corrupt {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

impl FileStore {
    /// Lock and read the store at `path`.
    pub fn open(path: &Path, key: Option<StoreKey>) -> Result<Opened, SecretsError> {
        let dir = parent_dir(path);
        if !dir.exists() {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            b.create(&dir)
                .map_err(|e| io_err(&dir, "create directory", &e))?;
        }
        let lock_path = sibling(path, ".lock", false);
        let lock = open_private(&lock_path, false)
            .map_err(|e| io_err(&lock_path, "open lock file", &e))?;
        lock.try_lock().map_err(|_| SecretsError::Locked {
            path: path.display().to_string(),
        })?;
        remove_stale_temps(path);

        let (state, needs_encryption) = match read_capped(path) {
            Ok(None) => (None, false),
            Ok(Some(bytes)) => {
                let (state, was_plain) = decode(path, &bytes, key.as_ref())?;
                (Some(state), was_plain && key.is_some())
            }
            Err(e) => return Err(e),
        };
        Ok(Opened {
            store: FileStore {
                path: path.to_path_buf(),
                key,
                _lock: lock,
            },
            state,
            needs_encryption,
        })
    }

    /// Path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the file is encrypted at rest.
    pub fn encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// Replace the file with `state`, atomically and durably.
    pub fn write(&self, state: &StoreState) -> Result<(), SecretsError> {
        let bytes = encode(state, self.key.as_ref())?;
        write_atomic(&self.path, &bytes, &mut |_| Ok(()))
            .map_err(|e| io_err(&self.path, "write", &e))
    }
}

/// Serialize `state` into the bytes of a store file.
pub(crate) fn encode(
    state: &StoreState,
    key: Option<&StoreKey>,
) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    let ser = |e: serde_json::Error| SecretsError::Encode {
        reason: e.to_string(),
    };
    let envelope = match key {
        None => Envelope {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            written_at: SystemTime::now(),
            encryption: None,
            ciphertext: None,
            credentials: Some(state.credentials.clone()),
        },
        Some(key) => {
            let plain = super::json::to_zeroizing_json(state, false, 0).map_err(ser)?;
            let Sealed { nonce, ciphertext } =
                key.seal(&plain).map_err(|_| SecretsError::Encode {
                    reason: "encryption failed".into(),
                })?;
            Envelope {
                format: FORMAT.into(),
                version: FORMAT_VERSION,
                written_at: SystemTime::now(),
                encryption: Some(EncryptionHeader {
                    alg: ALGORITHM.into(),
                    key_fingerprint: key.fingerprint().to_string(),
                    nonce,
                }),
                ciphertext: Some(ciphertext),
                credentials: None,
            }
        }
    };
    // Sized exactly (plus the newline): a plaintext store holds the values.
    let mut out = super::json::to_zeroizing_json(&envelope, true, 1).map_err(ser)?;
    out.push(b'\n');
    Ok(out)
}

/// Parse store-file bytes. Returns the state and whether it was plaintext.
pub(crate) fn decode(
    path: &Path,
    bytes: &[u8],
    key: Option<&StoreKey>,
) -> Result<(StoreState, bool), SecretsError> {
    let env: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(path, format!("not a valid store document: {e}")))?;
    if env.format != FORMAT {
        return Err(corrupt(
            path,
            format!("format is {:?}, expected {FORMAT:?}", env.format),
        ));
    }
    if env.version != FORMAT_VERSION {
        return Err(corrupt(
            path,
            format!("unsupported format version {}", env.version),
        ));
    }
    let (state, plain) = match (env.encryption, env.ciphertext, env.credentials) {
        (None, None, Some(credentials)) => (StoreState { credentials }, true),
        (Some(header), Some(ciphertext), None) => {
            if header.alg != ALGORITHM {
                return Err(corrupt(
                    path,
                    format!("unsupported encryption {:?}", header.alg),
                ));
            }
            let Some(key) = key else {
                return Err(SecretsError::EncryptedNoKey {
                    path: path.display().to_string(),
                });
            };
            if header.key_fingerprint != key.fingerprint() {
                return Err(SecretsError::WrongKey {
                    path: path.display().to_string(),
                    file_key: header.key_fingerprint,
                    configured_key: key.fingerprint().to_string(),
                });
            }
            let plain = key
                .open(&Sealed {
                    nonce: header.nonce,
                    ciphertext,
                })
                .map_err(|e| match e {
                    CryptoError::Open => corrupt(
                        path,
                        "ciphertext does not authenticate (tampered or truncated)",
                    ),
                    _ => corrupt(path, "malformed ciphertext"),
                })?;
            let state: StoreState = serde_json::from_slice(&plain).map_err(|e| {
                corrupt(path, format!("decrypted payload is not a valid store: {e}"))
            })?;
            (state, false)
        }
        _ => {
            return Err(corrupt(
                path,
                "needs either `credentials` or `encryption` + `ciphertext`",
            ));
        }
    };
    state.check().map_err(|m| corrupt(path, m))?;
    Ok((state, plain))
}

/// Read a file of at most [`MAX_FILE_BYTES`]; `Ok(None)` when it does not exist.
fn read_capped(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, SecretsError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "read", &e)),
    };
    let meta = f.metadata().map_err(|e| io_err(path, "read", &e))?;
    if !meta.is_file() {
        return Err(corrupt(path, "not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(corrupt(path, format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                "secrets store is readable by group/others; it is rewritten with mode 0600 on the next change");
        }
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    (&mut f)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_err(path, "read", &e))?;
    Ok(Some(buf))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "secrets".into())
}

/// `<dir>/<name><suffix>` or, hidden, `<dir>/.<name><suffix>`.
fn sibling(path: &Path, suffix: &str, hidden: bool) -> PathBuf {
    let dot = if hidden { "." } else { "" };
    parent_dir(path).join(format!("{dot}{}{suffix}", file_name(path)))
}

fn temp_prefix(path: &Path) -> String {
    format!(".{}.tmp-", file_name(path))
}

fn remove_stale_temps(path: &Path) {
    let prefix = temp_prefix(path);
    let Ok(entries) = std::fs::read_dir(parent_dir(path)) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let p = entry.path();
            match std::fs::remove_file(&p) {
                Ok(()) => {
                    tracing::info!(path = %p.display(), "removed a temp file left by an interrupted store write")
                }
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "cannot remove stale temp file")
                }
            }
        }
    }
}

fn open_private(path: &Path, create_new: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true);
    if create_new {
        o.create_new(true);
    } else {
        o.create(true).truncate(false);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// Points of an atomic write at which a test can inject a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteStage {
    /// The temp file is written and synced; the rename has not happened.
    BeforeRename,
    /// The rename happened; the directory is not yet synced.
    AfterRename,
}

/// Write `bytes` to `path` atomically: temp file (0600) → fsync → rename → fsync dir.
/// `hook` runs at each [`WriteStage`]; an error from it aborts the write there.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    hook: &mut dyn FnMut(WriteStage) -> std::io::Result<()>,
) -> std::io::Result<()> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = parent_dir(path);
    let tmp = dir.join(format!("{}{}-{n}", temp_prefix(path), std::process::id()));
    let result = (|| {
        let mut f = open_private(&tmp, true)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        hook(WriteStage::BeforeRename)?;
        std::fs::rename(&tmp, path)?;
        hook(WriteStage::AfterRename)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_before_rename_keeps_old_file_and_cleans_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        std::fs::write(&path, b"old").expect("seed");
        let err = write_atomic(&path, b"new", &mut |stage| {
            if stage == WriteStage::BeforeRename {
                Err(std::io::Error::other("injected"))
            } else {
                Ok(())
            }
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "temp file removed: {leftovers:?}");
    }

    #[test]
    fn failure_after_rename_has_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        std::fs::write(&path, b"old").expect("seed");
        let _ = write_atomic(&path, b"new", &mut |stage| {
            if stage == WriteStage::AfterRename {
                Err(std::io::Error::other("injected"))
            } else {
                Ok(())
            }
        });
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
    }

    #[test]
    fn stale_temps_are_removed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        let stale = dir.path().join(".s.json.tmp-1-0");
        std::fs::write(&stale, b"partial").expect("seed");
        let opened = FileStore::open(&path, None).expect("open");
        assert!(opened.state.is_none());
        assert!(!stale.exists());
    }

    #[test]
    fn second_open_of_same_store_is_refused_while_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        let first = FileStore::open(&path, None).expect("open");
        let second = FileStore::open(&path, None).err();
        assert!(
            matches!(second, Some(SecretsError::Locked { .. })),
            "{second:?}"
        );
        drop(first);
        assert!(FileStore::open(&path, None).is_ok());
    }
}
