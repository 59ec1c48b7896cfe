//! The reference the JSON wire path is tested against: the full path the
//! proxy took for OTLP/JSON before it (`otlp::receive_full`: traces decoded
//! with the serde types and rewritten in full, metrics and logs decoded,
//! converted to protobuf and spliced). Used by the unit and property tests
//! and the `otlp_json_wire` fuzz target; not on any request path.

use bytes::Bytes;

use super::scan;
use crate::otlp::wire::oracle::{Edit, canonical as canonical_protobuf};
use crate::otlp::{self, Encoding, Signal};

/// What [`compare`] found, when the two paths do not disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The JSON wire path declined the body (the full path decides alone).
    Declined(String),
    /// Both paths accepted it and agree.
    Agreed,
}

/// A body in `encoding` as canonical protobuf bytes: two bodies mean the
/// same request exactly when these are equal.
pub fn canonical(signal: Signal, encoding: Encoding, body: &Bytes) -> Result<Vec<u8>, String> {
    match encoding {
        Encoding::Protobuf => canonical_protobuf(signal, body),
        Encoding::Json => otlp::json_to_protobuf(signal, body)
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string()),
    }
}

/// Run the JSON wire path and the full path on one OTLP/JSON body and say
/// where they disagree. When the wire path accepts the body, the full path
/// must accept it too with the same summary, and the two rewrites (with
/// `edit` and the per-resource `resource_strip`) must have the same outcome
/// and decode to the same request; an unchanged body must pass through as
/// received; the rewritten body must be accepted again with a summary both
/// paths agree on.
pub fn compare(
    signal: Signal,
    raw: &Bytes,
    edit: &Edit,
    resource_strip: &[Vec<String>],
) -> Result<Verdict, String> {
    let wire = match scan(signal, raw.clone()) {
        Ok(s) => s,
        Err(d) => return Ok(Verdict::Declined(d.0)),
    };
    let full = otlp::receive_full(signal, Encoding::Json, raw.clone())
        .map_err(|e| format!("wire accepted what the full path refuses: {e}"))?;
    if full.summary() != &wire.summary {
        return Err(format!(
            "summaries differ:\nfull {:?}\nwire {:?}",
            full.summary(),
            wire.summary
        ));
    }
    let full_encoding = full.forward_encoding(Encoding::Json);
    let spliced = wire
        .splice_with(&edit.keep, &edit.stamp, &edit.protected, resource_strip)
        .map_err(|e| format!("splice failed after a good scan: {e}"))?;
    let rewritten = full
        .rewrite_with(&edit.keep, &edit.stamp, &edit.protected, resource_strip)
        .map_err(|e| format!("full rewrite failed: {e}"))?;
    if spliced.outcome != rewritten.outcome {
        return Err(format!(
            "outcomes differ: full {:?}, wire {:?}",
            rewritten.outcome, spliced.outcome
        ));
    }
    let Some(full_body) = rewritten.body else {
        if spliced.kept_resources > 0 {
            return Err("the full path forwards nothing, the wire path a body".into());
        }
        return Ok(Verdict::Agreed);
    };
    if spliced.kept_resources == 0 {
        return Err("the wire path forwards nothing, the full path a body".into());
    }
    if !spliced.outcome.changed {
        if spliced.body != *raw {
            return Err("unchanged batch was not passed through".into());
        }
        return Ok(Verdict::Agreed);
    }
    let a = canonical(signal, full_encoding, &full_body)?;
    let b = canonical(signal, Encoding::Json, &spliced.body)
        .map_err(|e| format!("spliced body does not decode: {e}"))?;
    if a != b {
        return Err(format!(
            "rewritten batches differ; spliced body: {}",
            String::from_utf8_lossy(&spliced.body)
        ));
    }
    // The output is itself a good body, and the wire path reads it (when it
    // does) as the full path does.
    let again_full = otlp::receive_full(signal, Encoding::Json, spliced.body.clone())
        .map_err(|e| format!("spliced body refused by the full path: {e}"))?;
    if let Ok(again) = scan(signal, spliced.body.clone())
        && again.summary != *again_full.summary()
    {
        return Err("summaries of the rewritten batch differ".into());
    }
    Ok(Verdict::Agreed)
}
