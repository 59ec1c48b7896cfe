//! Encryption at rest for the secrets store: AES-256-GCM (aws-lc-rs, the same
//! provider as TLS and JWT) with a fresh random 96-bit nonce per write.
//!
//! The key is 32 bytes, given base64-encoded in an environment variable named
//! by `secrets.encryption_key_env`. The key's fingerprint (a short SHA-256
//! prefix, safe to show) is stored beside the ciphertext so a wrong key is
//! reported as such instead of as a corrupt file.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

/// Algorithm name written into the store file.
pub const ALGORITHM: &str = "AES-256-GCM";

/// Additional authenticated data: binds the ciphertext to this file format.
const AAD: &[u8] = b"spangate-secrets:v1:AES-256-GCM";

/// Errors of key loading and sealing. Never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The environment variable is not set.
    #[error("environment variable {var} is not set")]
    MissingKey {
        /// The variable name.
        var: String,
    },
    /// The variable is not base64 of exactly 32 bytes.
    #[error("environment variable {var} must hold 32 bytes, base64-encoded")]
    BadKey {
        /// The variable name.
        var: String,
    },
    /// Authentication failed on open: wrong key or tampered file.
    #[error("decryption failed (wrong key or tampered file)")]
    Open,
    /// The nonce or ciphertext is not valid base64 / has a wrong length.
    #[error("malformed ciphertext")]
    Malformed,
    /// The crypto library refused to seal.
    #[error("encryption failed")]
    Seal,
}

/// An AES-256-GCM key for the store.
pub struct StoreKey {
    key: RandomizedNonceKey,
    fingerprint: String,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey(sha256:{})", self.fingerprint)
    }
}

/// One sealed payload, ready to be written as base64 fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// base64 of the 12-byte nonce.
    pub nonce: String,
    /// base64 of ciphertext || tag.
    pub ciphertext: String,
}

impl StoreKey {
    /// Read the key from environment variable `var`.
    pub fn from_env(var: &str) -> Result<StoreKey, CryptoError> {
        let text = Zeroizing::new(std::env::var(var).map_err(|_| CryptoError::MissingKey {
            var: var.to_string(),
        })?);
        Self::from_base64(text.trim()).map_err(|_| CryptoError::BadKey {
            var: var.to_string(),
        })
    }

    /// Build a key from base64 text (32 bytes once decoded).
    pub fn from_base64(text: &str) -> Result<StoreKey, CryptoError> {
        let bytes = Zeroizing::new(
            B64.decode(text)
                .map_err(|_| CryptoError::BadKey { var: String::new() })?,
        );
        Self::from_bytes(&bytes)
    }

    /// Build a key from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<StoreKey, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::BadKey { var: String::new() });
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes)
            .map_err(|_| CryptoError::BadKey { var: String::new() })?;
        Ok(StoreKey {
            key,
            fingerprint: crate::fingerprint(bytes),
        })
    }

    /// Short SHA-256 fingerprint of the key (safe to store and log).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Encrypt `plaintext` with a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Sealed, CryptoError> {
        self.seal_bound(AAD, plaintext)
    }

    /// Decrypt a sealed payload. The plaintext is zeroized when dropped.
    pub fn open(&self, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.open_bound(AAD, sealed)
    }

    /// [`seal`](Self::seal) with caller-chosen additional authenticated data
    /// (the shared state binds each record to its key name, so a record
    /// copied under another name does not open).
    pub fn seal_bound(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, CryptoError> {
        let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + 16));
        buf.extend_from_slice(plaintext);
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad), &mut *buf)
            .map_err(|_| CryptoError::Seal)?;
        let nonce: &[u8; NONCE_LEN] = nonce.as_ref();
        Ok(Sealed {
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(&*buf),
        })
    }

    /// [`open`](Self::open) with the additional authenticated data the
    /// payload was sealed with.
    pub fn open_bound(
        &self,
        aad: &[u8],
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let nonce_bytes = B64
            .decode(&sealed.nonce)
            .map_err(|_| CryptoError::Malformed)?;
        let nonce =
            Nonce::try_assume_unique_for_key(&nonce_bytes).map_err(|_| CryptoError::Malformed)?;
        let mut buf = Zeroizing::new(
            B64.decode(&sealed.ciphertext)
                .map_err(|_| CryptoError::Malformed)?,
        );
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
            .map_err(|_| CryptoError::Open)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> StoreKey {
        StoreKey::from_bytes(&[byte; 32]).expect("32-byte key")
    }

    #[test]
    fn seal_open_round_trip_with_fresh_nonces() {
        let k = key(7);
        let a = k.seal(b"hello store").expect("seal");
        let b = k.seal(b"hello store").expect("seal");
        assert_ne!(a.nonce, b.nonce, "every write uses a fresh nonce");
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(k.open(&a).expect("open").as_slice(), b"hello store");
    }

    #[test]
    fn wrong_key_and_tampering_are_refused() {
        let sealed = key(1).seal(b"payload").expect("seal");
        assert_eq!(key(2).open(&sealed).unwrap_err(), CryptoError::Open);
        let mut raw = B64.decode(&sealed.ciphertext).expect("b64");
        raw[0] ^= 1;
        let tampered = Sealed {
            nonce: sealed.nonce.clone(),
            ciphertext: B64.encode(raw),
        };
        assert_eq!(key(1).open(&tampered).unwrap_err(), CryptoError::Open);
    }

    #[test]
    fn key_must_be_32_bytes() {
        assert!(StoreKey::from_bytes(&[0; 16]).is_err());
        assert!(StoreKey::from_base64("not base64!").is_err());
        assert!(StoreKey::from_base64(&B64.encode([9u8; 32])).is_ok());
    }
}
