//! Fuzz bearer tokens as raw bytes against two providers whose keys come
//! from a static JWKS (no network): size cap, JWS splitting, header and
//! payload decoding, issuer routing, key lookup, signature, claims, and the
//! verified-token cache. Nothing may panic; every accepted token must pass
//! the soundness oracle (`spangate_fuzz::jwt::check_accepted`), and the
//! cached verifier must agree with the uncached one.
//!
//! Seeds (`fuzz/corpus/jwt_verify/`) are real tokens signed by the fixed
//! fuzz keys. Mutating a signed token breaks its signature, so claim checks
//! behind the signature are the job of `jwt_structured`.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run jwt_verify` (from the repository root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spangate_fuzz::jwt::verifiers;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let _ = verifiers().authenticate(&token);
});
