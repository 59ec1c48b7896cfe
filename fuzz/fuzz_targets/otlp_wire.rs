//! Differential fuzzing of the wire-level OTLP path: for every body, the
//! wire scan and splice must agree with a full prost decode and the
//! full-decode rewrite (same summary, rewritten batches that decode to the
//! same request, same outcome), within the differences the oracle documents.
//! Nothing may panic.
//!
//! First byte: bits 0–1 signal (0 traces, 1 metrics, 2 logs, 3 traces),
//! bit 2 stamp, bit 3 protect, bits 4–7 keep/drop of the first four
//! resources (later ones are kept). The rest is the protobuf body.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run otlp_wire` (from `fuzz/`).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spangate::otlp::Signal;
use spangate::otlp::wire::oracle::{Edit, compare};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let signal = match sel & 3 {
        1 => Signal::Metrics,
        2 => Signal::Logs,
        _ => Signal::Traces,
    };
    let edit = Edit {
        keep: (0..64).map(|i| i >= 4 || sel & (0x10 << i) == 0).collect(),
        stamp: if sel & 4 != 0 {
            vec![
                ("spangate.subject".into(), "fuzz".into()),
                ("service.name".into(), "stamped".into()),
            ]
        } else {
            vec![]
        },
        protected: if sel & 8 != 0 {
            vec!["spangate.*".into(), "k".into(), String::new()]
        } else {
            vec![]
        },
    };
    let body = Bytes::copy_from_slice(body);
    if let Err(disagreement) = compare(signal, &body, &edit) {
        panic!("{signal:?}: {disagreement}");
    }
});
