//! Differential fuzzing of the size-limit split: for every body and limit,
//! `split_to_fit` must not panic, must refuse as malformed exactly what the
//! wire scan refuses, and when it succeeds every piece is within the limit
//! and the pieces decode to the same (resource, scope, item) multiset as the
//! body (when the body decodes in full). An item too large must be reported
//! with its exact size. See `spangate::otlp::split::oracle::check`.
//!
//! First byte: bits 0–1 signal (0 traces, 1 metrics, 2 logs, 3 traces).
//! Next two bytes (little endian): the limit, taken modulo the body length
//! plus one, so most inputs are split. The rest is the protobuf body.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run otlp_split` (from `fuzz/`).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spangate::otlp::Signal;
use spangate::otlp::split::oracle::check;

fuzz_target!(|data: &[u8]| {
    let [sel, lo, hi, body @ ..] = data else {
        return;
    };
    let signal = match sel & 3 {
        1 => Signal::Metrics,
        2 => Signal::Logs,
        _ => Signal::Traces,
    };
    let max = usize::from(u16::from_le_bytes([*lo, *hi])) % (body.len() + 1);
    let body = Bytes::copy_from_slice(body);
    if let Err(disagreement) = check(signal, &body, max) {
        panic!("{signal:?} max {max}: {disagreement}");
    }
});
