//! The reference [`split_to_fit`](super::split_to_fit) is tested against: a
//! full prost decode of the body and of every piece, compared as multisets
//! of (resource context, scope context, metric context, item). Used by the
//! unit and property tests and the `otlp_split` fuzz target; not on any
//! request path.

use std::collections::HashSet;
use std::mem::take;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

use super::{SplitError, field_len, split_to_fit};
use crate::otlp::wire::{self, Fields, Signal};

/// One item with its context, each part re-encoded by prost: the
/// `Resource*` message without scopes, the `Scope*` message without items,
/// for metrics the `Metric` without data points (empty otherwise), the item.
pub type Item = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

/// A fully decoded body, flattened.
#[derive(Debug, Default)]
pub struct Flat {
    /// Every item with its context, sorted.
    pub items: Vec<Item>,
    /// The size of the smallest request carrying each unit the split cannot
    /// cut (an item with its context, or a message with nothing below it),
    /// exact when the body is canonically encoded.
    pub units: Vec<usize>,
}

/// Decode `raw` fully and flatten it.
pub fn flatten(signal: Signal, raw: &[u8]) -> Result<Flat, String> {
    let mut flat = Flat::default();
    let e = |e: prost::DecodeError| e.to_string();
    // Size of a request with one resource (context `r`), one scope (context
    // `s`, absent = none) holding `inner` bytes of one child field (absent = none).
    let unit = |r: usize, s: Option<usize>, inner: Option<usize>| {
        let scope = s.map_or(0, |s| {
            field_len(2, s + inner.map_or(0, |i| field_len(2, i)))
        });
        field_len(1, r + scope)
    };
    match signal {
        Signal::Traces => {
            for rs in ExportTraceServiceRequest::decode(raw)
                .map_err(e)?
                .resource_spans
            {
                let rc = ResourceSpans {
                    scope_spans: vec![],
                    ..rs.clone()
                }
                .encode_to_vec();
                if rs.scope_spans.is_empty() {
                    flat.units.push(unit(rc.len(), None, None));
                }
                for ss in rs.scope_spans {
                    let sc = ScopeSpans {
                        spans: vec![],
                        ..ss.clone()
                    }
                    .encode_to_vec();
                    if ss.spans.is_empty() {
                        flat.units.push(unit(rc.len(), Some(sc.len()), None));
                    }
                    for item in ss.spans {
                        let item = item.encode_to_vec();
                        flat.units
                            .push(unit(rc.len(), Some(sc.len()), Some(item.len())));
                        flat.items.push((rc.clone(), sc.clone(), vec![], item));
                    }
                }
            }
        }
        Signal::Logs => {
            for rl in ExportLogsServiceRequest::decode(raw)
                .map_err(e)?
                .resource_logs
            {
                let rc = ResourceLogs {
                    scope_logs: vec![],
                    ..rl.clone()
                }
                .encode_to_vec();
                if rl.scope_logs.is_empty() {
                    flat.units.push(unit(rc.len(), None, None));
                }
                for sl in rl.scope_logs {
                    let sc = ScopeLogs {
                        log_records: vec![],
                        ..sl.clone()
                    }
                    .encode_to_vec();
                    if sl.log_records.is_empty() {
                        flat.units.push(unit(rc.len(), Some(sc.len()), None));
                    }
                    for item in sl.log_records {
                        let item = item.encode_to_vec();
                        flat.units
                            .push(unit(rc.len(), Some(sc.len()), Some(item.len())));
                        flat.items.push((rc.clone(), sc.clone(), vec![], item));
                    }
                }
            }
        }
        Signal::Metrics => {
            for rm in ExportMetricsServiceRequest::decode(raw)
                .map_err(e)?
                .resource_metrics
            {
                let rc = ResourceMetrics {
                    scope_metrics: vec![],
                    ..rm.clone()
                }
                .encode_to_vec();
                if rm.scope_metrics.is_empty() {
                    flat.units.push(unit(rc.len(), None, None));
                }
                for sm in rm.scope_metrics {
                    let sc = ScopeMetrics {
                        metrics: vec![],
                        ..sm.clone()
                    }
                    .encode_to_vec();
                    if sm.metrics.is_empty() {
                        flat.units.push(unit(rc.len(), Some(sc.len()), None));
                    }
                    for mut m in sm.metrics {
                        let (variant, points, data_ctx) = take_points(&mut m);
                        let mc = m.encode_to_vec();
                        if points.is_empty() {
                            flat.units
                                .push(unit(rc.len(), Some(sc.len()), Some(mc.len())));
                        }
                        for p in points {
                            let one = mc.len() - field_len(variant, data_ctx)
                                + field_len(variant, data_ctx + field_len(1, p.len()));
                            flat.units.push(unit(rc.len(), Some(sc.len()), Some(one)));
                            flat.items.push((rc.clone(), sc.clone(), mc.clone(), p));
                        }
                    }
                }
            }
        }
    }
    flat.items.sort_unstable();
    Ok(flat)
}

/// Take a metric's data points out (encoded): the data field's number, the
/// points, and the length of the data message left without them.
fn take_points(m: &mut Metric) -> (u32, Vec<Vec<u8>>, usize) {
    fn enc<T: Message>(v: Vec<T>) -> Vec<Vec<u8>> {
        v.iter().map(Message::encode_to_vec).collect()
    }
    match m.data.as_mut() {
        None => (0, vec![], 0),
        Some(metric::Data::Gauge(g)) => (5, enc(take(&mut g.data_points)), g.encoded_len()),
        Some(metric::Data::Sum(s)) => (7, enc(take(&mut s.data_points)), s.encoded_len()),
        Some(metric::Data::Histogram(h)) => (9, enc(take(&mut h.data_points)), h.encoded_len()),
        Some(metric::Data::ExponentialHistogram(h)) => {
            (10, enc(take(&mut h.data_points)), h.encoded_len())
        }
        Some(metric::Data::Summary(s)) => (11, enc(take(&mut s.data_points)), s.encoded_len()),
    }
}

/// Split `raw` under `max` and check the result against a full decode:
///
/// - a body that fits comes back as is;
/// - split refuses as malformed exactly what the wire scan refuses;
/// - every piece is at most `max` bytes, scans, and the pieces together hold
///   the same (resource, scope, metric, item) multiset as the body;
/// - no piece could have taken the next piece's first resource whole;
/// - an item too large is reported with a size over `max`, and for a
///   canonically encoded body, the exact size of a unit that is over `max`.
///
/// Bodies the scan accepts and a full decode refuses (the differences
/// documented by the wire oracle) are only checked for sizes and scanning.
pub fn check(signal: Signal, raw: &Bytes, max: usize) -> Result<Vec<Bytes>, String> {
    let result = split_to_fit(signal, raw.clone(), max);
    if raw.len() <= max {
        return match result {
            Ok(p) if p.len() == 1 && p[0] == *raw => Ok(p),
            other => Err(format!(
                "a body that fits was not returned as is: {other:?}"
            )),
        };
    }
    let scanned = wire::scan(signal, raw.clone());
    let canonical = || wire::oracle::canonical(signal, raw).is_ok_and(|c| c == raw[..]);
    let pieces = match (result, &scanned) {
        (Err(SplitError::Malformed(_)), Err(_)) => return Ok(vec![]),
        (Err(SplitError::Malformed(e)), Ok(_)) => {
            return Err(format!("split refused a body the scan accepts: {e}"));
        }
        (Ok(_) | Err(SplitError::ItemTooLarge { .. }), Err(e)) => {
            return Err(format!("split went on with a body the scan refuses: {e}"));
        }
        (Err(SplitError::ItemTooLarge { size, max: m }), Ok(_)) => {
            if m != max || size <= max {
                return Err(format!(
                    "ItemTooLarge {{ size: {size}, max: {m} }} under max {max}"
                ));
            }
            if canonical() {
                let flat = flatten(signal, raw)?;
                if !flat.units.contains(&size) {
                    return Err(format!(
                        "ItemTooLarge size {size} is no unit's size ({:?})",
                        flat.units
                    ));
                }
            }
            return Ok(vec![]);
        }
        (Ok(pieces), Ok(_)) => pieces,
    };
    let Ok(scanned) = scanned else {
        return Err("unreachable: scan refused".into());
    };
    if pieces.is_empty() {
        return Err("no pieces".into());
    }
    for (i, p) in pieces.iter().enumerate() {
        if p.len() > max {
            return Err(format!("piece {i} is {} bytes, over {max}", p.len()));
        }
        if p.is_empty() && pieces.len() > 1 {
            return Err(format!("piece {i} is empty"));
        }
        wire::scan(signal, p.clone()).map_err(|e| format!("piece {i} does not scan: {e}"))?;
    }
    // No piece could have absorbed the next piece's first resource whole.
    let whole: HashSet<&[u8]> = scanned
        .resources
        .iter()
        .map(|r| raw.get(r.field.clone()).unwrap_or_default())
        .collect();
    for (i, w) in pieces.windows(2).enumerate() {
        let mut fields = Fields::new(&w[1], 0..w[1].len());
        if let Ok(Some(f)) = fields.next_field() {
            let first = w[1].get(f.start..f.end).unwrap_or_default();
            if whole.contains(first) && w[0].len() + first.len() <= max {
                return Err(format!(
                    "piece {i} ({} bytes) could have taken the next whole resource ({} bytes)",
                    w[0].len(),
                    first.len()
                ));
            }
        }
    }
    let Ok(want) = flatten(signal, raw) else {
        return Ok(pieces);
    };
    let mut got = Vec::with_capacity(want.items.len());
    for (i, p) in pieces.iter().enumerate() {
        let flat = flatten(signal, p).map_err(|e| format!("piece {i} does not decode: {e}"))?;
        got.extend(flat.items);
    }
    got.sort_unstable();
    if got != want.items {
        return Err(format!(
            "items differ: {} in the body, {} in the pieces",
            want.items.len(),
            got.len()
        ));
    }
    if canonical()
        && let Some(u) = want.units.iter().find(|&&u| u > max)
    {
        return Err(format!(
            "a unit of {u} bytes is over {max}, yet the split succeeded"
        ));
    }
    Ok(pieces)
}
