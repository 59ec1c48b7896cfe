//! The reference the wire path is tested against: a full prost decode of the
//! request, the same validation, the same summary and a rewrite of the
//! decoded message (for traces, exactly the full-decode path the proxy uses
//! for JSON). Used by the unit and property tests and the `otlp_wire` fuzz
//! target; not on any request path.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{Exemplar, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::{Signal, scan};
use crate::otlp::{self, BatchSummary, Encoding, RewriteOutcome, is_protected};

/// A rewrite request: which resources to keep, what to stamp and protect.
#[derive(Debug, Clone, Default)]
pub struct Edit {
    /// `keep[i]`: keep resource `i` (missing = drop).
    pub keep: Vec<bool>,
    /// Attributes to stamp.
    pub stamp: Vec<(String, String)>,
    /// Protected key patterns.
    pub protected: Vec<String>,
}

/// Full decode, validation and summary of a protobuf body.
pub fn full_summary(signal: Signal, raw: &Bytes) -> Result<BatchSummary, String> {
    match signal {
        Signal::Traces => otlp::decode(Encoding::Protobuf, raw.clone())
            .map(|b| b.summary)
            .map_err(|e| e.to_string()),
        Signal::Metrics => {
            let req =
                ExportMetricsServiceRequest::decode(raw.clone()).map_err(|e| e.to_string())?;
            let mut resources = Vec::new();
            for (r, rm) in req.resource_metrics.iter().enumerate() {
                check_resource(rm.resource.as_ref(), r)?;
                let mut items = 0usize;
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        for ex in exemplars(m.data.as_ref()) {
                            check_id(&ex.trace_id, 16)?;
                            check_id(&ex.span_id, 8)?;
                        }
                        items += points(m.data.as_ref());
                    }
                }
                resources.push((rm.resource.as_ref(), items));
            }
            Ok(summary(resources, raw.len()))
        }
        Signal::Logs => {
            let req = ExportLogsServiceRequest::decode(raw.clone()).map_err(|e| e.to_string())?;
            let mut resources = Vec::new();
            for (r, rl) in req.resource_logs.iter().enumerate() {
                check_resource(rl.resource.as_ref(), r)?;
                let mut items = 0usize;
                for sl in &rl.scope_logs {
                    for lr in &sl.log_records {
                        check_id(&lr.trace_id, 16)?;
                        check_id(&lr.span_id, 8)?;
                        items += 1;
                    }
                }
                resources.push((rl.resource.as_ref(), items));
            }
            Ok(summary(resources, raw.len()))
        }
    }
}

/// Full decode, rewrite and re-encode (the received body when unchanged).
pub fn full_rewrite(
    signal: Signal,
    raw: &Bytes,
    edit: &Edit,
) -> Result<(Bytes, RewriteOutcome), String> {
    let (keep, stamp, protected) = (&edit.keep, &edit.stamp, &edit.protected);
    let strip = |k: &str| is_protected(k, protected) || stamp.iter().any(|(s, _)| s == k);
    let check_strip = !protected.is_empty() || !stamp.is_empty();
    let mut out = RewriteOutcome::default();
    // Resource part, shared by metrics and logs.
    let resource = |res: &mut Option<Resource>, out: &mut RewriteOutcome| {
        if check_strip && let Some(r) = res.as_mut() {
            out.stripped_attributes += retain(&mut r.attributes, &strip);
        }
        if !stamp.is_empty() {
            res.get_or_insert_with(Resource::default)
                .attributes
                .extend(stamp.iter().map(|(k, v)| super::string_attribute(k, v)));
        }
    };
    let kept = |i: usize| keep.get(i).copied().unwrap_or(false);
    let body = match signal {
        Signal::Traces => {
            let mut batch =
                otlp::decode(Encoding::Protobuf, raw.clone()).map_err(|e| e.to_string())?;
            let outcome = otlp::rewrite(&mut batch, keep, stamp, protected);
            return Ok((otlp::forward_body(&batch, &outcome), outcome));
        }
        Signal::Metrics => {
            let mut req =
                ExportMetricsServiceRequest::decode(raw.clone()).map_err(|e| e.to_string())?;
            let mut i = 0;
            req.resource_metrics.retain(|rm| {
                let k = kept(i);
                i += 1;
                if !k {
                    out.dropped_resources += 1;
                    out.dropped_spans += rm
                        .scope_metrics
                        .iter()
                        .flat_map(|s| &s.metrics)
                        .map(|m| points(m.data.as_ref()))
                        .sum::<usize>();
                }
                k
            });
            for rm in &mut req.resource_metrics {
                resource(&mut rm.resource, &mut out);
                for m in rm.scope_metrics.iter_mut().flat_map(|s| &mut s.metrics) {
                    out.kept_spans += points(m.data.as_ref());
                    if check_strip {
                        out.stripped_attributes += strip_points(m.data.as_mut(), &strip);
                    }
                }
            }
            out.changed = out.dropped_resources > 0
                || out.stripped_attributes > 0
                || (!stamp.is_empty() && !req.resource_metrics.is_empty());
            Bytes::from(req.encode_to_vec())
        }
        Signal::Logs => {
            let mut req =
                ExportLogsServiceRequest::decode(raw.clone()).map_err(|e| e.to_string())?;
            let mut i = 0;
            req.resource_logs.retain(|rl| {
                let k = kept(i);
                i += 1;
                if !k {
                    out.dropped_resources += 1;
                    out.dropped_spans += rl
                        .scope_logs
                        .iter()
                        .map(|s| s.log_records.len())
                        .sum::<usize>();
                }
                k
            });
            for rl in &mut req.resource_logs {
                resource(&mut rl.resource, &mut out);
                for lr in rl.scope_logs.iter_mut().flat_map(|s| &mut s.log_records) {
                    out.kept_spans += 1;
                    if check_strip {
                        out.stripped_attributes += retain(&mut lr.attributes, &strip);
                    }
                }
            }
            out.changed = out.dropped_resources > 0
                || out.stripped_attributes > 0
                || (!stamp.is_empty() && !req.resource_logs.is_empty());
            Bytes::from(req.encode_to_vec())
        }
    };
    Ok((if out.changed { body } else { raw.clone() }, out))
}

/// Decode a body of `signal` and encode it again: two bodies mean the same
/// request exactly when this gives the same bytes (unknown fields dropped,
/// repeated singular messages merged, canonical field order).
pub fn canonical(signal: Signal, raw: &Bytes) -> Result<Vec<u8>, String> {
    let e = |e: prost::DecodeError| e.to_string();
    Ok(match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(raw.clone())
            .map_err(e)?
            .encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceRequest::decode(raw.clone())
            .map_err(e)?
            .encode_to_vec(),
        Signal::Logs => ExportLogsServiceRequest::decode(raw.clone())
            .map_err(e)?
            .encode_to_vec(),
    })
}

/// Run the wire path and the full path on one body and say where they
/// disagree. Agreement means: both refuse, or both accept with the same
/// summary and rewrites that decode to the same request with the same
/// outcome. Documented differences, accepted here:
///
/// - the wire path does not decode inside `Scope*` messages (UTF-8 of
///   strings, nested messages it does not descend into): a full decode may
///   refuse what the wire path accepts when its error lies there;
/// - the wire path refuses groups and a metric with two different data
///   fields, which a full decode skips or resolves (last one wins);
/// - a resource nested deeper than prost's recursion limit counted from the
///   request (the wire path decodes `Resource` on its own, two levels less).
pub fn compare(signal: Signal, raw: &Bytes, edit: &Edit) -> Result<(), String> {
    let full = full_summary(signal, raw);
    let wire = scan(signal, raw.clone());
    let scanned = match (full, wire) {
        (Err(_), Err(_)) => return Ok(()),
        (Ok(_), Err(e)) => {
            let e = e.to_string();
            if e.contains("groups (wire type") || e.contains("more than one data field") {
                return Ok(());
            }
            return Err(format!("wire refused what a full decode accepts: {e}"));
        }
        (Err(e), Ok(_)) => {
            let scope = match signal {
                Signal::Traces => "ScopeSpans.",
                Signal::Metrics => "ScopeMetrics.",
                Signal::Logs => "ScopeLogs.",
            };
            if e.contains(scope) || e.contains("recursion limit") {
                return Ok(());
            }
            return Err(format!("wire accepted what a full decode refuses: {e}"));
        }
        (Ok(full), Ok(wire)) => {
            if full != wire.summary {
                return Err(format!(
                    "summaries differ:\nfull {full:?}\nwire {:?}",
                    wire.summary
                ));
            }
            wire
        }
    };
    let spliced = scanned
        .splice(&edit.keep, &edit.stamp, &edit.protected)
        .map_err(|e| format!("splice failed after a good scan: {e}"))?;
    let (body, outcome) = full_rewrite(signal, raw, edit)?;
    if spliced.outcome != outcome {
        return Err(format!(
            "outcomes differ: full {outcome:?}, wire {:?}",
            spliced.outcome
        ));
    }
    if outcome.changed {
        let a = canonical(signal, &body)?;
        let b = canonical(signal, &spliced.body)
            .map_err(|e| format!("spliced body does not decode: {e}"))?;
        if a != b {
            return Err("rewritten batches differ".into());
        }
    } else if spliced.body != *raw {
        return Err("unchanged batch was not passed through".into());
    }
    // The output is itself a valid body whose scan agrees with its summary.
    let again = scan(signal, spliced.body.clone())
        .map_err(|e| format!("spliced body does not scan: {e}"))?;
    let again_full = full_summary(signal, &spliced.body)?;
    if again.summary != again_full {
        return Err("summaries of the rewritten batch differ".into());
    }
    Ok(())
}

fn check_resource(resource: Option<&Resource>, r: usize) -> Result<(), String> {
    match resource.and_then(|x| otlp::duplicate_key(&x.attributes)) {
        Some(dup) => Err(format!("resource {r}: duplicate key {dup:?}")),
        None => Ok(()),
    }
}

fn check_id(id: &[u8], want: usize) -> Result<(), String> {
    if id.is_empty() || id.len() == want {
        Ok(())
    } else {
        Err(format!("id of {} bytes, want {want}", id.len()))
    }
}

fn summary(resources: Vec<(Option<&Resource>, usize)>, bytes: usize) -> BatchSummary {
    let mut total = 0usize;
    let resources = resources
        .into_iter()
        .map(|(r, items)| {
            total += items;
            let attrs: &[KeyValue] = r.map_or(&[], |r| &r.attributes);
            otlp::resource_summary(attrs, items)
        })
        .collect();
    BatchSummary {
        resources,
        spans: total,
        bytes,
    }
}

fn points(data: Option<&metric::Data>) -> usize {
    match data {
        None => 0,
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
    }
}

fn exemplars(data: Option<&metric::Data>) -> Vec<&Exemplar> {
    match data {
        None | Some(metric::Data::Summary(_)) => Vec::new(),
        Some(metric::Data::Gauge(g)) => g.data_points.iter().flat_map(|p| &p.exemplars).collect(),
        Some(metric::Data::Sum(s)) => s.data_points.iter().flat_map(|p| &p.exemplars).collect(),
        Some(metric::Data::Histogram(h)) => {
            h.data_points.iter().flat_map(|p| &p.exemplars).collect()
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            h.data_points.iter().flat_map(|p| &p.exemplars).collect()
        }
    }
}

fn strip_points(data: Option<&mut metric::Data>, strip: &impl Fn(&str) -> bool) -> usize {
    match data {
        None => 0,
        Some(metric::Data::Gauge(g)) => g
            .data_points
            .iter_mut()
            .map(|p| retain(&mut p.attributes, strip))
            .sum(),
        Some(metric::Data::Sum(s)) => s
            .data_points
            .iter_mut()
            .map(|p| retain(&mut p.attributes, strip))
            .sum(),
        Some(metric::Data::Histogram(h)) => h
            .data_points
            .iter_mut()
            .map(|p| retain(&mut p.attributes, strip))
            .sum(),
        Some(metric::Data::ExponentialHistogram(h)) => h
            .data_points
            .iter_mut()
            .map(|p| retain(&mut p.attributes, strip))
            .sum(),
        Some(metric::Data::Summary(s)) => s
            .data_points
            .iter_mut()
            .map(|p| retain(&mut p.attributes, strip))
            .sum(),
    }
}

fn retain(attrs: &mut Vec<KeyValue>, strip: &impl Fn(&str) -> bool) -> usize {
    let before = attrs.len();
    attrs.retain(|kv| !strip(&kv.key));
    before - attrs.len()
}
