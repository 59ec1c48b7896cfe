//! Fuzz OTLP/JSON text (seeded with real exporter output and used with the
//! `fuzz/otlp_json.dict` dictionary, so mutations stay JSON-shaped): the
//! serde fast path, the normalising fallback, id and duplicate-key checks,
//! and the summary. A batch that decodes must survive the re-encoding the
//! proxy does after a rewrite: OTLP/JSON and protobuf encodings of the
//! decoded request must decode to the same request, and a rewrite must
//! produce a body that decodes.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run otlp_json -- -dict=fuzz/otlp_json.dict`
//! (from the repository root).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spangate::otlp::{self, Encoding};

fuzz_target!(|data: &[u8]| {
    let Ok(mut batch) = otlp::decode(Encoding::Json, Bytes::copy_from_slice(data)) else {
        return;
    };
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        let body = otlp::encode_request(encoding, &batch.request);
        let again = otlp::decode(encoding, body)
            .unwrap_or_else(|e| panic!("{encoding:?} re-encoding does not decode: {e}"));
        assert!(
            again.request == batch.request,
            "{encoding:?} round trip changed the request"
        );
        assert_eq!(again.summary.resources, batch.summary.resources);
    }
    let keep: Vec<bool> = (0..batch.summary.resources.len()).map(|i| i != 1).collect();
    let outcome = otlp::rewrite(
        &mut batch,
        &keep,
        &[("spangate.subject".into(), "fuzz".into())],
        &["spangate.".into(), "enduser.id".into()],
    );
    let out = otlp::forward_body(&batch, &outcome);
    assert!(
        otlp::decode(Encoding::Json, out).is_ok(),
        "rewritten batch must decode"
    );
});
