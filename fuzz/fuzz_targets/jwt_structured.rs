//! Fuzz tokens built from structure: arbitrary JOSE header and claims
//! (named valid and hostile values, or any JSON), signed for real by one of
//! the fixed fuzz keys, then optionally tampered with. Because the signature
//! is real, fuzzing reaches everything behind it: `exp`/`nbf`/leeway,
//! audiences (string or list, `aud` or Cognito's `client_id`), required
//! claims, `typ`, key/alg compatibility and `kid`-less key selection.
//!
//! Beyond "no panic": an accepted token must be untampered, its header `alg`
//! must be the one it was really signed with (no algorithm confusion), and
//! it must pass the soundness oracle (`spangate_fuzz::jwt::check_accepted`).
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run jwt_structured` (from the repository root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spangate_fuzz::jwt::{TokenSpec, now_secs, verifiers};

fuzz_target!(|spec: TokenSpec| {
    let v = verifiers();
    let built = spec.build(&v.keys, now_secs());
    if v.authenticate(&built.token).is_ok() {
        assert!(
            !built.tampered,
            "accepted a token that is not what was signed"
        );
        assert_eq!(
            built.header_alg.as_deref(),
            Some(spec.signer.alg()),
            "accepted a token whose header alg is not its signing alg"
        );
    }
});
