//! Wire-level OTLP/JSON: summarise and rewrite an `Export*ServiceRequest`
//! body without materialising spans, data points or log records, the JSON
//! analogue of [`super::wire`].
//!
//! [`scan`] reads the body with `serde_json` into borrowed, allocation-free
//! validating types that mirror the `opentelemetry-proto` serde types field
//! by field (same names, same required fields, same number forms), so a
//! body they accept is one the full decode accepts too, with the same
//! meaning. Only `resource` objects are decoded with the real types (they
//! feed the policy summary); the `resource*` entries and item attributes are
//! located as `RawValue` slices of the body (byte offsets by pointer
//! difference), spans, data points and log records are validated and
//! counted, never built.
//!
//! The scan is deliberately narrower than the full decode: whenever it meets
//! something it does not handle exactly it *declines* ([`Declined`]) and the
//! caller falls back to the full decode, which either accepts the body
//! (normalising it, see `json.rs`) or refuses it. Declined: `null` where the
//! serde types do not take it (ids, lists, numbers, strings; `null` is taken
//! where the serde types read an optional message or value: `resource`,
//! `scope`, `status`, an attribute's `value`, a log `body`, a histogram's
//! `sum`/`min`/`max`), numbers sent as strings where the serde types want
//! numbers, a member name with escapes where the scan matches it as a
//! borrowed string, a duplicate member anywhere the scan reads, the
//! positional (array) form of a message, ids that are not empty or exactly
//! 32 (trace) / 16 (span) hex digits, `bytesValue` attribute values, an
//! attribute value with more than one or an unknown member, unknown members
//! inside an attribute or a metric (the serde types buffer attribute values
//! and metrics, which changes nesting limits), nesting deeper than
//! [`MAX_VALUE_DEPTH`] attribute values, and duplicate resource attribute
//! keys. The oracle ([`oracle`]) and the
//! `otlp_json_wire` fuzz target check that every body the scan accepts is
//! accepted by the full decode with the same summary and rewrites to the
//! same request.
//!
//! [`JsonScan::splice_with`] rewrites by splicing: dropped entries are left
//! out of the `resource*` array (commas rejoined), a `resource` that changes
//! is serialised again with the serde types, a stripped item attribute is
//! cut out of its array; every other byte of the received body is copied
//! as it came.

#[doc(hidden)]
pub mod oracle;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::wire::Spliced;
use super::{BatchSummary, OtlpError, RewriteOutcome, Signal, is_protected};

/// Deepest nesting of attribute values (`arrayValue`/`kvlistValue`) the scan
/// takes; deeper values are declined (the full decode's recursion limit then
/// decides, in its own context).
pub const MAX_VALUE_DEPTH: u32 = 16;

/// Deepest JSON nesting of a `resource` object the scan decodes on its own
/// (well inside `serde_json`'s limit of 128 counted from the body).
const MAX_RESOURCE_DEPTH: usize = 64;

/// Why the scan handed a body to the full decode (not an error: the full
/// decode decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declined(pub String);

impl fmt::Display for Declined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn decline(what: impl fmt::Display) -> Declined {
    Declined(what.to_string())
}

/// One `resource*` entry of a scanned body.
#[derive(Debug, Clone)]
struct Entry {
    /// The value of its `resource` member (possibly `null`), if present.
    resource: Option<Range<usize>>,
    /// The decoded `Resource`, `None` when absent or `null`.
    decoded: Option<Resource>,
    /// Items under this entry.
    items: usize,
    /// Item attribute keys (span, data point, log record attributes).
    attrs: Vec<ItemAttr>,
}

/// One item attribute: its array (an id unique in the body), its key string
/// (without quotes) and, from [`JsonScan::locate`] only, the `KeyValue`
/// object.
#[derive(Debug, Clone)]
struct ItemAttr {
    array: u32,
    entry: Range<usize>,
    key: Range<usize>,
}

/// A scanned OTLP/JSON body: the policy summary plus where everything is.
#[derive(Debug, Clone)]
pub struct JsonScan {
    /// Which envelope the body holds.
    pub signal: Signal,
    /// What policy reads, as the full decode would summarise it.
    pub summary: BatchSummary,
    entries: Vec<Entry>,
    raw: Bytes,
}

/// Scan a decompressed OTLP/JSON body of `signal`; [`Declined`] when the
/// body is outside what the scan handles exactly (the full decode decides).
///
/// One pass: each entry is validated where it stands, its `resource` value
/// kept as a slice and decoded, item attribute keys noted. Where entries and
/// attributes begin and end is only worked out when a rewrite needs it
/// ([`JsonScan::locate`]).
pub fn scan(signal: Signal, raw: Bytes) -> Result<JsonScan, Declined> {
    let text = std::str::from_utf8(&raw).map_err(|_| decline("not UTF-8"))?;
    start(text, false);
    let parsed = match signal {
        Signal::Traces => serde_json::from_str::<TracesFast>(text).map(|e| e.resource_spans.0),
        Signal::Metrics => serde_json::from_str::<MetricsFast>(text).map(|e| e.resource_metrics.0),
        Signal::Logs => serde_json::from_str::<LogsFast>(text).map(|e| e.resource_logs.0),
    };
    let mut attrs = ATTRS.with(|a| std::mem::take(&mut *a.borrow_mut()));
    let parsed = parsed.map_err(decline)?;
    let mut total = 0usize;
    let mut summaries = Vec::with_capacity(parsed.len());
    let mut entries = Vec::with_capacity(parsed.len());
    // Attributes were recorded in body order; `upto` marks each entry's end.
    let mut rest = attrs.drain(..);
    let mut taken = 0usize;
    for (resource, items, upto) in parsed {
        let mine: Vec<ItemAttr> = rest.by_ref().take(upto - taken).collect();
        taken = upto;
        let (at, decoded) = match resource {
            None => (None, None),
            Some(r) => {
                let rt = r.get();
                let at = offset(rt).ok_or_else(|| decline("resource outside the body"))?;
                let decoded = if rt == "null" {
                    None
                } else {
                    Some(decode_resource(rt)?)
                };
                (Some(at..at + rt.len()), decoded)
            }
        };
        total = total.saturating_add(items);
        let kvs: &[KeyValue] = decoded.as_ref().map_or(&[], |r| &r.attributes);
        summaries.push(super::resource_summary(kvs, items));
        entries.push(Entry {
            resource: at,
            decoded,
            items,
            attrs: mine,
        });
    }
    Ok(JsonScan {
        signal,
        summary: BatchSummary {
            resources: summaries,
            spans: total,
            bytes: raw.len(),
        },
        entries,
        raw,
    })
}

/// Reset the per-thread scan state for `text`.
fn start(text: &str, locate: bool) {
    BODY.with(|b| b.set((text.as_ptr() as usize, text.len())));
    LOCATE.with(|l| l.set(locate));
    ARRAYS.with(|a| a.set(0));
    DEPTH.with(|d| d.set(0));
    ATTRS.with(|a| a.borrow_mut().clear());
}

/// Entries located in the body: the entry object and its item attributes
/// (each with its `KeyValue` object).
type Located = Vec<(Range<usize>, Vec<ItemAttr>)>;

/// Walk `text` again keeping every entry and item attribute as a slice:
/// entries as `RawValue`s parsed on their own, attributes likewise.
fn locate_text(signal: Signal, text: &str) -> Result<Located, Declined> {
    start(text, true);
    let result = locate_entries(signal, text);
    let mut attrs = ATTRS.with(|a| std::mem::take(&mut *a.borrow_mut()));
    LOCATE.with(|l| l.set(false));
    let ranges = result?;
    attrs.reverse();
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        let mut mine = Vec::new();
        while let Some(a) = attrs.last() {
            if a.entry.start >= range.end {
                break;
            }
            if let Some(a) = attrs.pop() {
                mine.push(a);
            }
        }
        out.push((range, mine));
    }
    Ok(out)
}

fn locate_entries(signal: Signal, text: &str) -> Result<Vec<Range<usize>>, Declined> {
    let entries: Vec<&RawValue> = match signal {
        Signal::Traces => serde_json::from_str::<TracesV>(text).map(|e| e.resource_spans),
        Signal::Metrics => serde_json::from_str::<MetricsV>(text).map(|e| e.resource_metrics),
        Signal::Logs => serde_json::from_str::<LogsV>(text).map(|e| e.resource_logs),
    }
    .map_err(decline)?;
    let mut ranges = Vec::with_capacity(entries.len());
    for e in entries {
        let t = e.get();
        if !t.starts_with('{') {
            return Err(decline("a resource entry that is not an object"));
        }
        match signal {
            Signal::Traces => entry::<ResourceSpansV>(t),
            Signal::Metrics => entry::<ResourceMetricsV>(t),
            Signal::Logs => entry::<ResourceLogsV>(t),
        }
        .map_err(decline)?;
        let start = offset(t).ok_or_else(|| decline("entry outside the body"))?;
        ranges.push(start..start + t.len());
    }
    Ok(ranges)
}

/// Decode a `resource` object with the serde types, as the full decode does.
fn decode_resource(text: &str) -> Result<Resource, Declined> {
    if !text.starts_with('{') {
        return Err(decline("a resource that is not an object"));
    }
    if nesting(text.as_bytes()) > MAX_RESOURCE_DEPTH {
        return Err(decline("resource nested too deep"));
    }
    let resource: Resource = serde_json::from_str(text).map_err(decline)?;
    if let Some(dup) = super::duplicate_key(&resource.attributes) {
        return Err(decline(format!("duplicate resource attribute {dup:?}")));
    }
    Ok(resource)
}

/// Deepest object/array nesting in a JSON text (strings skipped).
fn nesting(s: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_str, mut esc) = (false, false);
    for &b in s {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else {
            match b {
                b'"' => in_str = true,
                b'{' | b'[' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    max
}

/// What one kept entry's rewrite changes.
struct KeptEntry {
    index: usize,
    /// The new `resource` JSON, when it changes.
    resource: Option<Vec<u8>>,
    /// Whether an item attribute under it is cut.
    cuts: bool,
}

impl JsonScan {
    /// The body as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Where every entry and item attribute is (a second, slower walk; only
    /// for rewrites that drop an entry, add a `resource` member or cut an
    /// item attribute).
    fn locate(&self) -> Result<Located, OtlpError> {
        let text = std::str::from_utf8(&self.raw).map_err(OtlpError::malformed)?;
        let located = locate_text(self.signal, text).map_err(OtlpError::malformed)?;
        if located.len() != self.entries.len() {
            return Err(OtlpError::malformed("OTLP/JSON body changed between walks"));
        }
        Ok(located)
    }

    /// Rewrite the scanned body with the semantics of the protobuf splice
    /// ([`super::wire::Scan::splice_with`]) and the full-decode rewrite:
    /// drop entries not kept, strip protected and stamped keys from
    /// resource and item attributes, strip `resource_strip[i]` from entry
    /// `i` only, stamp every kept resource. Only the changed `resource`
    /// objects are serialised again; the rest is copied from the body.
    pub fn splice_with(
        &self,
        keep: &[bool],
        stamp: &[(String, String)],
        protected: &[String],
        resource_strip: &[Vec<String>],
    ) -> Result<Spliced, OtlpError> {
        let mut outcome = RewriteOutcome::default();
        let mut link_stripped = 0usize;
        let strip = |key: &str| is_protected(key, protected) || stamp.iter().any(|(k, _)| k == key);
        let check_strip = !protected.is_empty() || !stamp.is_empty();
        let body: &[u8] = &self.raw;
        let key_of = |a: &ItemAttr| {
            std::str::from_utf8(body.get(a.key.clone()).unwrap_or_default()).unwrap_or_default()
        };
        let mut kept: Vec<KeptEntry> = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            if !keep.get(i).copied().unwrap_or(false) {
                outcome.dropped_resources += 1;
                outcome.dropped_spans += e.items;
                continue;
            }
            outcome.kept_spans += e.items;
            let extra: &[String] = resource_strip.get(i).map_or(&[], Vec::as_slice);
            let mut new_resource = None;
            if check_strip || !extra.is_empty() {
                let mut resource = e.decoded.clone().unwrap_or_default();
                let before = resource.attributes.len();
                resource.attributes.retain(|kv| !extra.contains(&kv.key));
                let extra_stripped = before - resource.attributes.len();
                link_stripped += extra_stripped;
                let before = resource.attributes.len();
                resource.attributes.retain(|kv| !strip(&kv.key));
                let stripped = before - resource.attributes.len();
                outcome.stripped_attributes += stripped;
                if stripped > 0 || extra_stripped > 0 || !stamp.is_empty() {
                    resource
                        .attributes
                        .extend(stamp.iter().map(|(k, v)| string_attribute(k, v)));
                    new_resource =
                        Some(serde_json::to_vec(&resource).map_err(OtlpError::malformed)?);
                }
            }
            let cut = if check_strip {
                e.attrs.iter().filter(|a| strip(key_of(a))).count()
            } else {
                0
            };
            outcome.stripped_attributes += cut;
            kept.push(KeptEntry {
                index: i,
                resource: new_resource,
                cuts: cut > 0,
            });
        }
        outcome.changed = outcome.dropped_resources > 0
            || outcome.stripped_attributes > 0
            || link_stripped > 0
            || (!stamp.is_empty() && !kept.is_empty());
        let kept_resources = kept.len();
        if !outcome.changed {
            return Ok(Spliced {
                body: self.raw.clone(),
                outcome,
                kept_resources,
            });
        }
        let inserts = kept.iter().any(|k| {
            k.resource.is_some()
                && self
                    .entries
                    .get(k.index)
                    .is_some_and(|e| e.resource.is_none())
        });
        let needs_locating =
            outcome.dropped_resources > 0 || inserts || kept.iter().any(|k| k.cuts);
        if !needs_locating {
            // Only `resource` values change: replace them in place.
            let mut edits: Vec<(Range<usize>, &[u8])> = kept
                .iter()
                .filter_map(|k| {
                    let json = k.resource.as_deref()?;
                    let at = self.entries.get(k.index)?.resource.clone()?;
                    Some((at, json))
                })
                .collect();
            edits.sort_by_key(|(r, _)| r.start);
            let extra: usize = edits.iter().map(|(_, b)| b.len()).sum();
            let mut out = Vec::with_capacity(body.len() + extra);
            let mut pos = 0;
            for (r, bytes) in edits {
                out.extend_from_slice(body.get(pos..r.start).unwrap_or_default());
                out.extend_from_slice(bytes);
                pos = r.end;
            }
            out.extend_from_slice(body.get(pos..).unwrap_or_default());
            return Ok(Spliced {
                body: Bytes::from(out),
                outcome,
                kept_resources,
            });
        }
        let located = self.locate()?;
        let (Some((first, _)), Some((last, _))) = (located.first(), located.last()) else {
            return Ok(Spliced {
                body: self.raw.clone(),
                outcome,
                kept_resources,
            });
        };
        let mut out = Vec::with_capacity(body.len() + 64 * kept.len());
        out.extend_from_slice(body.get(..first.start).unwrap_or_default());
        for (n, k) in kept.iter().enumerate() {
            let (Some(e), Some((range, attrs))) = (self.entries.get(k.index), located.get(k.index))
            else {
                continue;
            };
            if n > 0 {
                out.push(b',');
            }
            let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
            if let Some(json) = &k.resource {
                match &e.resource {
                    Some(r) => edits.push((r.clone(), json.clone())),
                    None => {
                        let at = range.start + 1;
                        let inner = body.get(at..range.end - 1).unwrap_or_default();
                        let mut ins = b"\"resource\":".to_vec();
                        ins.extend_from_slice(json);
                        if !inner.trim_ascii().is_empty() {
                            ins.push(b',');
                        }
                        edits.push((at..at, ins));
                    }
                }
            }
            if k.cuts {
                let mut group = 0;
                while group < attrs.len() {
                    let array = attrs[group].array;
                    let end = attrs[group..]
                        .iter()
                        .position(|a| a.array != array)
                        .map_or(attrs.len(), |n| group + n);
                    let members = &attrs[group..end];
                    if members.iter().any(|a| strip(key_of(a))) {
                        let mut joined = Vec::new();
                        for a in members.iter().filter(|a| !strip(key_of(a))) {
                            if !joined.is_empty() {
                                joined.push(b',');
                            }
                            joined.extend_from_slice(body.get(a.entry.clone()).unwrap_or_default());
                        }
                        let span = members[0].entry.start..members[members.len() - 1].entry.end;
                        edits.push((span, joined));
                    }
                    group = end;
                }
            }
            edits.sort_by_key(|(r, _)| r.start);
            let mut pos = range.start;
            for (r, bytes) in &edits {
                out.extend_from_slice(body.get(pos..r.start).unwrap_or_default());
                out.extend_from_slice(bytes);
                pos = r.end;
            }
            out.extend_from_slice(body.get(pos..range.end).unwrap_or_default());
        }
        out.extend_from_slice(body.get(last.end..).unwrap_or_default());
        Ok(Spliced {
            body: Bytes::from(out),
            outcome,
            kept_resources,
        })
    }
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

// ---------------------------------------------------------------------------
// Scan state shared with the validating types (they are plain `Deserialize`
// impls, so the state travels beside them, per thread, reset by `start`).

thread_local! {
    /// Address and length of the body text (offsets by pointer difference).
    static BODY: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Whether item attributes are located (each kept as a slice and parsed
    /// on its own) or only their keys noted (the one-pass scan).
    static LOCATE: Cell<bool> = const { Cell::new(false) };
    /// Item attribute arrays seen so far (ids for [`ItemAttr::array`]).
    static ARRAYS: Cell<u32> = const { Cell::new(0) };
    /// Current attribute value nesting.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Item attributes found so far, in body order.
    static ATTRS: RefCell<Vec<ItemAttr>> = const { RefCell::new(Vec::new()) };
}

/// Offset of `s` (a slice of the body being scanned) in the body.
fn offset(s: &str) -> Option<usize> {
    let p = s.as_ptr() as usize;
    let (base, len) = BODY.with(Cell::get);
    (p >= base && p + s.len() <= base + len).then(|| p - base)
}

// ---------------------------------------------------------------------------
// Validating types. Each mirrors one serde type of opentelemetry-proto 0.33:
// same member names (camelCase), same required members (`#[serde(default)]`
// exactly where the real type has it), leaf types that take a subset of what
// the real leaf takes. Every struct starts with a `Guard` field so the
// positional (array) form of a struct, which serde also accepts, is declined.

/// Refuses to deserialise: placed first in every struct so a non-empty
/// positional (array) form fails; its name never occurs in OTLP/JSON.
#[derive(Default)]
struct Guard;

impl<'de> Deserialize<'de> for Guard {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(de::Error::custom("positional form of a message"))
    }
}

/// How many items (spans, data points, log records) a value holds.
trait Counted {
    fn items(&self) -> usize {
        0
    }
}

/// Any JSON string (the real type: `String`).
#[derive(Default)]
struct S;

impl<'de> Deserialize<'de> for S {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = S;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<S, E> {
                Ok(S)
            }
        }
        d.deserialize_str(V)
    }
}
impl Counted for S {}

/// A u64 as a number or a decimal string (the real `deserialize_string_to_u64`).
#[derive(Default)]
struct U64s;

impl<'de> Deserialize<'de> for U64s {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = U64s;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a u64 or a string holding one")
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<U64s, E> {
                Ok(U64s)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<U64s, E> {
                u64::try_from(v).map(|_| U64s).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<U64s, E> {
                v.parse::<u64>().map(|_| U64s).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}
impl Counted for U64s {}

/// An i64 as a number or a decimal string (the real `deserialize_string_to_i64`
/// and `intValue`'s number-or-string).
#[derive(Default)]
struct I64s;

impl<'de> Deserialize<'de> for I64s {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = I64s;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an i64 or a string holding one")
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<I64s, E> {
                Ok(I64s)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<I64s, E> {
                i64::try_from(v).map(|_| I64s).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<I64s, E> {
                v.parse::<i64>().map(|_| I64s).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON number read as f64 (the real `deserialize_f64_special` also takes
/// `"NaN"`, `"Infinity"` and decimal strings: declined here).
#[derive(Default)]
struct F64n;

impl<'de> Deserialize<'de> for F64n {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = F64n;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<F64n, E> {
                Ok(F64n)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<F64n, E> {
                Ok(F64n)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<F64n, E> {
                Ok(F64n)
            }
        }
        d.deserialize_any(V)
    }
}

impl Counted for f64 {}

/// An id of `N` bytes: empty or exactly `2N` hex digits (the real type takes
/// any hex, `0x` prefix included, and validation then refuses other lengths).
#[derive(Default)]
struct Hex<const N: usize>;

impl<'de, const N: usize> Deserialize<'de> for Hex<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<const N: usize> Visitor<'_> for V<N> {
            type Value = Hex<N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an empty string or {} hex digits", 2 * N)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Hex<N>, E> {
                if v.is_empty() || (v.len() == 2 * N && v.bytes().all(|b| b.is_ascii_hexdigit())) {
                    Ok(Hex)
                } else {
                    Err(E::custom(format!("id of {} characters", v.len())))
                }
            }
        }
        d.deserialize_str(V::<N>)
    }
}

/// A list, counting the items of its elements (the real type: `Vec<T>`).
struct Items<T>(usize, PhantomData<T>);

impl<T> Default for Items<T> {
    fn default() -> Self {
        Items(0, PhantomData)
    }
}

impl<'de, T: Deserialize<'de> + Counted> Deserialize<'de> for Items<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Counted> Visitor<'de> for V<T> {
            type Value = Items<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items<T>, A::Error> {
                let mut n = 0usize;
                while let Some(x) = seq.next_element::<T>()? {
                    n = n.saturating_add(x.items());
                }
                Ok(Items(n, PhantomData))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// Item attributes (`Vec<KeyValue>` of a span, data point or log record):
/// validated, and each one's place and key recorded for stripping.
#[derive(Default)]
struct ItemAttrs;

impl<'de> Deserialize<'de> for ItemAttrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ItemAttrs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of attributes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ItemAttrs, A::Error> {
                let array = ARRAYS.with(|a| {
                    a.set(a.get().wrapping_add(1));
                    a.get()
                });
                let outside = || de::Error::custom("attribute outside the body");
                if !LOCATE.with(Cell::get) {
                    while let Some(kv) = seq.next_element::<KvKey<'de>>()? {
                        let key = offset(kv.key).ok_or_else(outside)?;
                        ATTRS.with(|a| {
                            a.borrow_mut().push(ItemAttr {
                                array,
                                entry: 0..0,
                                key: key..key + kv.key.len(),
                            })
                        });
                    }
                    return Ok(ItemAttrs);
                }
                while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                    let text = raw.get();
                    let kv: KvKey<'_> = serde_json::from_str(text).map_err(de::Error::custom)?;
                    let (Some(entry), Some(key)) = (offset(text), offset(kv.key)) else {
                        return Err(outside());
                    };
                    ATTRS.with(|a| {
                        a.borrow_mut().push(ItemAttr {
                            array,
                            entry: entry..entry + text.len(),
                            key: key..key + kv.key.len(),
                        })
                    });
                }
                Ok(ItemAttrs)
            }
        }
        d.deserialize_seq(V)
    }
}

/// An item attribute (the real `KeyValue`), its key borrowed from the body.
/// Unknown members are declined: inside a `kvlistValue` the serde types
/// buffer them, which changes nesting limits (so for every `KeyValue`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KvKey<'a> {
    #[serde(rename = "\u{0}", default)]
    _g: Guard,
    key: &'a str,
    #[allow(dead_code)]
    value: Option<AnyV>,
    #[serde(default)]
    #[allow(dead_code)]
    key_strindex: i32,
}

/// Any other attribute (the real `KeyValue`; unknown members declined).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Kv {
    #[serde(rename = "\u{0}", default)]
    _g: Guard,
    #[allow(dead_code)]
    key: S,
    #[allow(dead_code)]
    value: Option<AnyV>,
    #[serde(default)]
    #[allow(dead_code)]
    key_strindex: i32,
}
impl Counted for Kv {}

/// An attribute value (the real `AnyValue`): an object with no member or
/// exactly one of `stringValue`, `boolValue`, `intValue`, `doubleValue`,
/// `arrayValue`, `kvlistValue`; anything else is declined.
struct AnyV;

impl<'de> Deserialize<'de> for AnyV {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyV;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an attribute value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyV, A::Error> {
                let depth = DEPTH.with(|d| {
                    d.set(d.get() + 1);
                    d.get()
                });
                if depth > MAX_VALUE_DEPTH {
                    return Err(de::Error::custom("attribute value nested too deep"));
                }
                let mut seen = false;
                while let Some(k) = map.next_key::<&'de str>()? {
                    if seen {
                        return Err(de::Error::custom("attribute value with two members"));
                    }
                    seen = true;
                    match k {
                        "stringValue" => map.next_value::<S>().map(drop)?,
                        "boolValue" => map.next_value::<bool>().map(drop)?,
                        "intValue" => map.next_value::<I64s>().map(drop)?,
                        "doubleValue" => map.next_value::<f64>().map(drop)?,
                        "arrayValue" => map.next_value::<ArrayV>().map(drop)?,
                        "kvlistValue" => map.next_value::<KvlistV>().map(drop)?,
                        other => {
                            return Err(de::Error::custom(format!(
                                "attribute value member {other:?}"
                            )));
                        }
                    }
                }
                DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
                Ok(AnyV)
            }
        }
        d.deserialize_map(V)
    }
}
impl Counted for AnyV {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArrayV {
    #[serde(rename = "\u{0}", default)]
    _g: Guard,
    #[allow(dead_code)]
    values: Items<AnyV>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KvlistV {
    #[serde(rename = "\u{0}", default)]
    _g: Guard,
    #[allow(dead_code)]
    values: Items<Kv>,
}

/// The real `InstrumentationScope`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
#[allow(dead_code)]
struct ScopeV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    name: S,
    version: S,
    attributes: Items<Kv>,
    dropped_attributes_count: u32,
}

// Envelopes and resource entries ------------------------------------------

fn raw_member<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct TracesV<'a> {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    #[serde(borrow)]
    resource_spans: Vec<&'a RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct MetricsV<'a> {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    #[serde(borrow)]
    resource_metrics: Vec<&'a RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct LogsV<'a> {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    #[serde(borrow)]
    resource_logs: Vec<&'a RawValue>,
}

/// A `resource*` entry: its `resource` value and item count.
trait EntryV<'a> {
    fn parts(self) -> (Option<&'a RawValue>, usize);
}

fn entry<'a, E: Deserialize<'a> + EntryV<'a>>(
    text: &'a str,
) -> Result<(Option<&'a RawValue>, usize), String> {
    serde_json::from_str::<E>(text)
        .map(E::parts)
        .map_err(|e| e.to_string())
}

/// The entries of an envelope, validated where they stand: per entry its
/// `resource` value, item count and how many item attributes were noted
/// up to its end.
type EntryList<'a> = Vec<(Option<&'a RawValue>, usize, usize)>;

struct Entries<'a, E>(EntryList<'a>, PhantomData<E>);

impl<E> Default for Entries<'_, E> {
    fn default() -> Self {
        Entries(Vec::new(), PhantomData)
    }
}

impl<'de: 'a, 'a, E: Deserialize<'de> + EntryV<'a>> Deserialize<'de> for Entries<'a, E> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, E>(PhantomData<(&'a (), E)>);
        impl<'de: 'a, 'a, E: Deserialize<'de> + EntryV<'a>> Visitor<'de> for V<'a, E> {
            type Value = Entries<'a, E>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of resource entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = Vec::new();
                while let Some(e) = seq.next_element::<Obj<E>>()? {
                    let (resource, items) = e.0.parts();
                    list.push((resource, items, ATTRS.with(|a| a.borrow().len())));
                }
                Ok(Entries(list, PhantomData))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// An object (not the positional form: entries get a `resource` member
/// inserted after their `{`).
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Buffer-free peek: a JSON object reaches `deserialize_map`'s
        // visitor, anything else fails there.
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct TracesFast<'a> {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    #[serde(borrow)]
    resource_spans: Entries<'a, ResourceSpansV<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct MetricsFast<'a> {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    #[serde(borrow)]
    resource_metrics: Entries<'a, ResourceMetricsV<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct LogsFast<'a> {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    #[serde(borrow)]
    resource_logs: Entries<'a, ResourceLogsV<'a>>,
}

macro_rules! resource_entry {
    ($name:ident, $scope:ident, $scopes:ident, $item:ident, $items:ident) => {
        #[derive(Deserialize, Default)]
        #[serde(default, rename_all = "camelCase")]
        struct $name<'a> {
            #[serde(rename = "\u{0}")]
            _g: Guard,
            #[serde(borrow, deserialize_with = "raw_member")]
            resource: Option<&'a RawValue>,
            $scopes: Items<$scope>,
            #[allow(dead_code)]
            schema_url: S,
        }

        impl<'a> EntryV<'a> for $name<'a> {
            fn parts(self) -> (Option<&'a RawValue>, usize) {
                (self.resource, self.$scopes.0)
            }
        }

        #[derive(Deserialize, Default)]
        #[serde(default, rename_all = "camelCase")]
        #[allow(dead_code)]
        struct $scope {
            #[serde(rename = "\u{0}")]
            _g: Guard,
            scope: Option<ScopeV>,
            $items: Items<$item>,
            schema_url: S,
        }

        impl Counted for $scope {
            fn items(&self) -> usize {
                self.$items.0
            }
        }
    };
}

resource_entry!(ResourceSpansV, ScopeSpansV, scope_spans, SpanV, spans);
resource_entry!(
    ResourceMetricsV,
    ScopeMetricsV,
    scope_metrics,
    MetricV,
    metrics
);
resource_entry!(
    ResourceLogsV,
    ScopeLogsV,
    scope_logs,
    LogRecordV,
    log_records
);

// Traces --------------------------------------------------------------------

/// The real `Span`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
#[allow(dead_code)]
struct SpanV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    trace_id: Hex<16>,
    span_id: Hex<8>,
    trace_state: S,
    parent_span_id: Hex<8>,
    flags: u32,
    name: S,
    kind: i32,
    start_time_unix_nano: U64s,
    end_time_unix_nano: U64s,
    attributes: ItemAttrs,
    dropped_attributes_count: u32,
    events: Items<EventV>,
    dropped_events_count: u32,
    links: Items<LinkV>,
    dropped_links_count: u32,
    status: Option<StatusV>,
}

impl Counted for SpanV {
    fn items(&self) -> usize {
        1
    }
}

/// The real `span::Event`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
#[allow(dead_code)]
struct EventV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    time_unix_nano: U64s,
    name: S,
    attributes: Items<Kv>,
    dropped_attributes_count: u32,
}
impl Counted for EventV {}

/// The real `span::Link`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
#[allow(dead_code)]
struct LinkV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    trace_id: Hex<16>,
    span_id: Hex<8>,
    trace_state: S,
    attributes: Items<Kv>,
    dropped_attributes_count: u32,
    flags: u32,
}
impl Counted for LinkV {}

/// The real `Status`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
#[allow(dead_code)]
struct StatusV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    message: S,
    code: i32,
}

// Logs ----------------------------------------------------------------------

/// The real `LogRecord`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
#[allow(dead_code)]
struct LogRecordV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    time_unix_nano: U64s,
    observed_time_unix_nano: U64s,
    severity_number: i32,
    severity_text: S,
    body: Option<AnyV>,
    attributes: ItemAttrs,
    dropped_attributes_count: u32,
    flags: u32,
    trace_id: Hex<16>,
    span_id: Hex<8>,
    event_name: S,
}

impl Counted for LogRecordV {
    fn items(&self) -> usize {
        1
    }
}

// Metrics -------------------------------------------------------------------
//
// The real `Metric`, `NumberDataPoint` and `Exemplar` flatten a oneof: serde
// buffers them (unknown members included) and reads the oneof leniently.
// Their mirrors are hand-written map visitors that take only known members,
// each at most once, and at most one member of the oneof; the structs below
// a metric refuse unknown members.

/// Read a map whose members are all known: `member(index, map)` reads the
/// value of member `names[index]`; unknown or repeated members fail.
fn known_members<'de, A: MapAccess<'de>>(
    mut map: A,
    names: &[&str],
    mut member: impl FnMut(usize, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    let mut seen = 0u32;
    while let Some(k) = map.next_key::<&'de str>()? {
        let Some(i) = names.iter().position(|n| *n == k) else {
            return Err(de::Error::custom(format!("unknown member {k:?}")));
        };
        if seen & (1 << i) != 0 {
            return Err(de::Error::custom(format!("duplicate member {k:?}")));
        }
        seen |= 1 << i;
        member(i, &mut map)?;
    }
    Ok(())
}

/// The real `Metric`.
struct MetricV(usize);

impl Counted for MetricV {
    fn items(&self) -> usize {
        self.0
    }
}

impl<'de> Deserialize<'de> for MetricV {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetricV;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a metric")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MetricV, A::Error> {
                const NAMES: &[&str] = &[
                    "name",
                    "description",
                    "unit",
                    "metadata",
                    "gauge",
                    "sum",
                    "histogram",
                    "exponentialHistogram",
                    "summary",
                ];
                let mut points: Option<usize> = None;
                known_members(map, NAMES, |i, map| {
                    let n = match i {
                        0..=2 => return map.next_value::<S>().map(drop),
                        3 => return map.next_value::<Items<Kv>>().map(drop),
                        4 => map.next_value::<GaugeV>()?.data_points.0,
                        5 => map.next_value::<SumV>()?.data_points.0,
                        6 => map.next_value::<HistogramV>()?.data_points.0,
                        7 => map.next_value::<ExpHistogramV>()?.data_points.0,
                        _ => map.next_value::<SummaryV>()?.data_points.0,
                    };
                    if points.replace(n).is_some() {
                        return Err(de::Error::custom("more than one data field"));
                    }
                    Ok(())
                })?;
                Ok(MetricV(points.unwrap_or(0)))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct GaugeV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    data_points: Items<NumberPointV>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct SumV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    data_points: Items<NumberPointV>,
    aggregation_temporality: i32,
    is_monotonic: bool,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct HistogramV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    data_points: Items<HistogramPointV>,
    aggregation_temporality: i32,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct ExpHistogramV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    data_points: Items<ExpHistogramPointV>,
    aggregation_temporality: i32,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct SummaryV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    data_points: Items<SummaryPointV>,
}

/// The real `NumberDataPoint` (oneof `asDouble` | `asInt`).
struct NumberPointV;

impl Counted for NumberPointV {
    fn items(&self) -> usize {
        1
    }
}

impl<'de> Deserialize<'de> for NumberPointV {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NumberPointV;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number data point")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NumberPointV, A::Error> {
                const NAMES: &[&str] = &[
                    "attributes",
                    "startTimeUnixNano",
                    "timeUnixNano",
                    "exemplars",
                    "flags",
                    "asDouble",
                    "asInt",
                ];
                let mut value = false;
                known_members(map, NAMES, |i, map| match i {
                    0 => map.next_value::<ItemAttrs>().map(drop),
                    1 | 2 => map.next_value::<U64s>().map(drop),
                    3 => map.next_value::<Items<ExemplarV>>().map(drop),
                    4 => map.next_value::<u32>().map(drop),
                    _ => {
                        if std::mem::replace(&mut value, true) {
                            return Err(de::Error::custom("asDouble and asInt"));
                        }
                        if i == 5 {
                            map.next_value::<f64>().map(drop)
                        } else {
                            map.next_value::<I64s>().map(drop)
                        }
                    }
                })?;
                Ok(NumberPointV)
            }
        }
        d.deserialize_map(V)
    }
}

/// The real `Exemplar` (oneof `asDouble` | `asInt`).
struct ExemplarV;
impl Counted for ExemplarV {}

impl<'de> Deserialize<'de> for ExemplarV {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExemplarV;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an exemplar")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ExemplarV, A::Error> {
                const NAMES: &[&str] = &[
                    "filteredAttributes",
                    "timeUnixNano",
                    "spanId",
                    "traceId",
                    "asDouble",
                    "asInt",
                ];
                let mut value = false;
                known_members(map, NAMES, |i, map| match i {
                    0 => map.next_value::<Items<Kv>>().map(drop),
                    1 => map.next_value::<U64s>().map(drop),
                    2 => map.next_value::<Hex<8>>().map(drop),
                    3 => map.next_value::<Hex<16>>().map(drop),
                    _ => {
                        if std::mem::replace(&mut value, true) {
                            return Err(de::Error::custom("asDouble and asInt"));
                        }
                        if i == 4 {
                            map.next_value::<f64>().map(drop)
                        } else {
                            map.next_value::<I64s>().map(drop)
                        }
                    }
                })?;
                Ok(ExemplarV)
            }
        }
        d.deserialize_map(V)
    }
}

/// The real `HistogramDataPoint`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct HistogramPointV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    attributes: ItemAttrs,
    start_time_unix_nano: U64s,
    time_unix_nano: U64s,
    count: U64s,
    sum: Option<f64>,
    bucket_counts: Items<U64s>,
    explicit_bounds: Items<f64>,
    exemplars: Items<ExemplarV>,
    flags: u32,
    min: Option<f64>,
    max: Option<f64>,
}

impl Counted for HistogramPointV {
    fn items(&self) -> usize {
        1
    }
}

/// The real `ExponentialHistogramDataPoint`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct ExpHistogramPointV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    attributes: ItemAttrs,
    start_time_unix_nano: U64s,
    time_unix_nano: U64s,
    count: U64s,
    sum: Option<f64>,
    scale: i32,
    zero_count: U64s,
    positive: Option<BucketsV>,
    negative: Option<BucketsV>,
    flags: u32,
    exemplars: Items<ExemplarV>,
    min: Option<f64>,
    max: Option<f64>,
    zero_threshold: f64,
}

impl Counted for ExpHistogramPointV {
    fn items(&self) -> usize {
        1
    }
}

/// The real `exponential_histogram_data_point::Buckets`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct BucketsV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    offset: i32,
    bucket_counts: Items<U64s>,
}

/// The real `SummaryDataPoint`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct SummaryPointV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    attributes: ItemAttrs,
    start_time_unix_nano: U64s,
    time_unix_nano: U64s,
    count: U64s,
    sum: f64,
    quantile_values: Items<QuantileV>,
    flags: u32,
}

impl Counted for SummaryPointV {
    fn items(&self) -> usize {
        1
    }
}

/// The real `summary_data_point::ValueAtQuantile`.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct QuantileV {
    #[serde(rename = "\u{0}")]
    _g: Guard,
    quantile: F64n,
    value: F64n,
}
impl Counted for QuantileV {}

#[cfg(test)]
mod tests;
