//! Identity stamping: drop resources policy refused, strip attributes a
//! client must not set, add the verified ones.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::{Batch, encode};

/// What [`rewrite`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewriteOutcome {
    /// True when the request differs from the body received, so it must be
    /// re-encoded ([`forward_body`] does this only then).
    pub changed: bool,
    /// `resource_spans` entries removed (`keep[i] == false`).
    pub dropped_resources: usize,
    /// Spans inside the removed resources.
    pub dropped_spans: usize,
    /// Spans left in the request.
    pub kept_spans: usize,
    /// Client-sent resource and span attributes removed because their key is
    /// protected or stamped.
    pub stripped_attributes: usize,
}

/// Whether `key` is protected by one of `protected`: an entry ending in `*`
/// is a prefix (without the `*`), an entry ending in `.` is a prefix (with
/// the `.`), any other entry must equal the key exactly.
///
/// `"spangate.*"` and `"spangate."` both protect `spangate.subject`;
/// `"spangate.*"` also protects `spangate.` itself and `spangate.x.y`.
/// A bare `"*"` protects every key.
pub fn is_protected(key: &str, protected: &[String]) -> bool {
    protected.iter().any(|p| {
        if let Some(prefix) = p.strip_suffix('*') {
            key.starts_with(prefix)
        } else if p.ends_with('.') {
            key.starts_with(p.as_str())
        } else {
            key == p
        }
    })
}

/// Remove resource attributes `keys` from `resource_spans[index]` (before
/// [`rewrite`] drops resources, so the index is the summary's). Returns how
/// many were removed.
pub fn strip_resource_keys(batch: &mut Batch, index: usize, keys: &[String]) -> usize {
    batch
        .request
        .resource_spans
        .get_mut(index)
        .and_then(|rs| rs.resource.as_mut())
        .map_or(0, |r| {
            retain_count(&mut r.attributes, &|k: &str| keys.iter().any(|x| x == k))
        })
}

/// Rewrite a batch in place:
///
/// 1. drop `resource_spans[i]` unless `keep[i]` is true (a missing entry
///    counts as false: fail closed), counting the spans dropped;
/// 2. remove every resource attribute and span attribute whose key is
///    protected (see [`is_protected`]) or equals a stamped key, so a client
///    can neither spoof nor shadow a stamped value;
/// 3. add each `stamp` entry as a string attribute to every remaining
///    `Resource` (creating the resource if the client sent none).
///
/// Scope, event and link attributes are left alone. The batch `summary`
/// keeps describing the batch as received; the outcome says what changed.
pub fn rewrite(
    batch: &mut Batch,
    keep: &[bool],
    stamp: &[(String, String)],
    protected: &[String],
) -> RewriteOutcome {
    let mut out = RewriteOutcome::default();
    let strip = |key: &str| is_protected(key, protected) || stamp.iter().any(|(k, _)| k == key);

    let mut index = 0usize;
    batch.request.resource_spans.retain(|rs| {
        let kept = keep.get(index).copied().unwrap_or(false);
        index += 1;
        if !kept {
            out.dropped_resources += 1;
            out.dropped_spans += rs
                .scope_spans
                .iter()
                .map(|ss| ss.spans.len())
                .sum::<usize>();
        }
        kept
    });

    let check_strip = !protected.is_empty() || !stamp.is_empty();
    for rs in &mut batch.request.resource_spans {
        if check_strip {
            if let Some(resource) = rs.resource.as_mut() {
                out.stripped_attributes += retain_count(&mut resource.attributes, &strip);
            }
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    out.stripped_attributes += retain_count(&mut span.attributes, &strip);
                }
            }
        }
        out.kept_spans += rs
            .scope_spans
            .iter()
            .map(|ss| ss.spans.len())
            .sum::<usize>();
        if !stamp.is_empty() {
            let resource = rs.resource.get_or_insert_with(Resource::default);
            resource
                .attributes
                .extend(stamp.iter().map(|(k, v)| string_attribute(k, v)));
        }
    }

    out.changed = out.dropped_resources > 0
        || out.stripped_attributes > 0
        || (!stamp.is_empty() && !batch.request.resource_spans.is_empty());
    out
}

/// Remove attributes whose key matches `strip`; return how many went.
fn retain_count(attrs: &mut Vec<KeyValue>, strip: &impl Fn(&str) -> bool) -> usize {
    let before = attrs.len();
    attrs.retain(|kv| !strip(&kv.key));
    before - attrs.len()
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        key_strindex: 0,
    }
}

/// The body to forward: the received bytes untouched when the rewrite changed
/// nothing (cheap pass-through), otherwise the re-encoded request.
pub fn forward_body(batch: &Batch, outcome: &RewriteOutcome) -> Bytes {
    if outcome.changed {
        encode(batch)
    } else {
        batch.raw.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn protected_matching() {
        let prot = p(&["spangate.*", "vercel.", "service.namespace"]);
        assert!(is_protected("spangate.subject", &prot));
        assert!(is_protected("spangate.", &prot));
        assert!(is_protected("vercel.project_id", &prot));
        assert!(!is_protected("vercel", &prot));
        assert!(is_protected("service.namespace", &prot));
        assert!(!is_protected("service.namespace.x", &prot));
        assert!(!is_protected("service.name", &prot));
        assert!(is_protected("anything", &p(&["*"])));
        assert!(!is_protected("anything", &[]));
    }
}
