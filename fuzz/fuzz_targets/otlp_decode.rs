//! Fuzz OTLP decoding: protobuf, OTLP/JSON (including the normalising
//! fallback) and capped gunzip. Nothing a client sends may panic, and a
//! decoded batch must re-encode and decode again.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run otlp_decode` (from the repository root).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spangate::otlp::{self, Encoding};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let body = match selector % 3 {
        0 => Bytes::copy_from_slice(body),
        1 => Bytes::copy_from_slice(body),
        _ => match otlp::gunzip_capped(body, 1 << 20) {
            Ok(b) => b,
            Err(_) => return,
        },
    };
    let encoding = if selector % 2 == 0 {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    if let Ok(mut batch) = otlp::decode(encoding, body) {
        let keep: Vec<bool> = (0..batch.summary.resources.len())
            .map(|i| i % 2 == 0)
            .collect();
        let outcome = otlp::rewrite(
            &mut batch,
            &keep,
            &[("spangate.subject".into(), "fuzz".into())],
            &["spangate.*".into()],
        );
        let out = otlp::forward_body(&batch, &outcome);
        assert!(
            otlp::decode(encoding, out).is_ok(),
            "re-encoded batch must decode"
        );
    }
});
