//! Differential fuzzing of the wire-level OTLP/JSON path: whenever the JSON
//! scan accepts a body, the full path (serde decode, validation, rewrite)
//! must accept it too with the same summary, and the spliced body must
//! decode to the same request as the full path's rewrite, with the same
//! outcome (`spangate::otlp::json_wire::oracle::compare`). A body the scan
//! declines is the full path's alone. Nothing may panic.
//!
//! First byte: bits 0–1 signal (0 traces, 1 metrics, 2 logs, 3 traces),
//! bit 2 stamp, bit 3 protect (and strip `k8s.pod` from resource 1 alone),
//! bits 4–7 keep/drop of the first four resources (later ones are kept).
//! The rest is the OTLP/JSON body; `fuzz/otlp_json_wire.dict` keeps
//! mutations JSON-shaped.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run otlp_json_wire -- -dict=otlp_json_wire.dict`
//! (from `fuzz/`).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spangate::otlp::Signal;
use spangate::otlp::json_wire::oracle::compare;
use spangate::otlp::wire::oracle::Edit;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let signal = match sel & 3 {
        1 => Signal::Metrics,
        2 => Signal::Logs,
        _ => Signal::Traces,
    };
    let protect = sel & 8 != 0;
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
        protected: if protect {
            vec!["spangate.*".into(), "k".into(), String::new()]
        } else {
            vec![]
        },
    };
    let strip: Vec<Vec<String>> = if protect {
        vec![vec![], vec!["k8s.pod".into()]]
    } else {
        vec![]
    };
    let body = Bytes::copy_from_slice(body);
    if let Err(disagreement) = compare(signal, &body, &edit, &strip) {
        panic!("{signal:?}: {disagreement}");
    }
});
