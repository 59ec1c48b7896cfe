//! Wire-level OTLP protobuf: summarise and rewrite an `Export*ServiceRequest`
//! without materialising spans, data points or log records.
//!
//! The three envelopes share one shape, which is all this module relies on:
//!
//! ```text
//! Export{Trace,Metrics,Logs}ServiceRequest { repeated Resource{Spans,Metrics,Logs} = 1 }
//! Resource* { Resource resource = 1; repeated Scope* = 2; string schema_url = 3 }
//! Scope*    { InstrumentationScope scope = 1; repeated <item> = 2; string schema_url = 3 }
//!   traces:  item = Span
//!   logs:    item = LogRecord
//!   metrics: item = Metric { oneof gauge=5 | sum=7 | histogram=9 |
//!                            exponential_histogram=10 | summary=11 { repeated data_points = 1 } }
//! ```
//!
//! [`scan`] walks that structure with prost's encoding primitives
//! (`decode_varint`, `WireType`): only the `Resource` messages are decoded
//! (with prost, on their own byte range); below a `Scope*` message the walk
//! reads field keys and lengths only, checking wire types of known fields,
//! id lengths (trace ids 16 bytes, span ids 8, last occurrence wins as in a
//! full decode) and counting items. Unknown fields of every wire type are
//! skipped; groups (wire types 3 and 4, unused by proto3) are refused. The
//! walk's depth is fixed by the schema (at most seven messages deep), so no
//! input can make it recurse further; the `Resource` decode keeps prost's own
//! recursion limit.
//!
//! [`Scan::splice`] rewrites by splicing: dropped `Resource*` messages are
//! left out, a `Resource` that changes is re-encoded, an item attribute that
//! must go is cut out, and only the length prefixes enclosing a change are
//! rewritten. Everything else is copied as byte ranges of the received body,
//! joined once into the output.
//!
//! Not checked below a `Scope*` message (a full decode would refuse these,
//! the backend will): UTF-8 of strings, the content of nested messages the
//! walk does not descend into (events, status, attribute values, scope).

#[doc(hidden)]
pub mod oracle;
mod schema;

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use prost::encoding::{WireType, decode_varint, encode_varint, encoded_len_varint};

use schema::{Kind, Role, spec};

use super::{BatchSummary, OtlpError, RewriteOutcome, is_protected};

/// An OTLP signal: which `Export*ServiceRequest` a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `ExportTraceServiceRequest`: items are spans.
    Traces,
    /// `ExportMetricsServiceRequest`: items are data points.
    Metrics,
    /// `ExportLogsServiceRequest`: items are log records.
    Logs,
}

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// `traces`, `metrics` or `logs`.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// What one item is called in messages: `spans`, `data points`, `log records`.
    pub fn items(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
            Signal::Logs => "log records",
        }
    }

    /// OTLP/JSON name of the request's repeated field (error paths).
    pub fn resource_field(self) -> &'static str {
        match self {
            Signal::Traces => "resourceSpans",
            Signal::Metrics => "resourceMetrics",
            Signal::Logs => "resourceLogs",
        }
    }

    fn scope_field(self) -> &'static str {
        match self {
            Signal::Traces => "scopeSpans",
            Signal::Metrics => "scopeMetrics",
            Signal::Logs => "scopeLogs",
        }
    }

    fn scope_kind(self) -> Kind {
        match self {
            Signal::Traces => Kind::ScopeSpans,
            Signal::Metrics => Kind::ScopeMetrics,
            Signal::Logs => Kind::ScopeLogs,
        }
    }
}

/// One `Resource*` message of a scanned body.
#[derive(Debug, Clone)]
pub struct ScannedResource {
    /// The whole field in the body: key, length prefix and message.
    pub field: Range<usize>,
    /// The `Resource*` message itself (after the length prefix).
    pub message: Range<usize>,
    /// Each `Resource` message inside it (normally one; a full decode merges
    /// repeated ones, and so does the scan).
    pub resource: Vec<Range<usize>>,
    /// Items under this resource (all scopes).
    pub items: usize,
    /// The decoded (merged) `Resource`, `None` when absent.
    decoded: Option<Resource>,
}

/// A scanned body: the policy summary plus where everything is.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Which envelope the body holds.
    pub signal: Signal,
    /// What policy reads, as a full decode would summarise it.
    pub summary: BatchSummary,
    /// One entry per `Resource*` message, in order (index = `keep` index).
    pub resources: Vec<ScannedResource>,
    /// The distinct keys of the attributes a splice may cut (item
    /// attributes), so a splice that cuts none skips the walk below scopes.
    item_keys: ItemKeys,
    raw: Bytes,
}

/// The distinct attribute keys met where [`Scan::splice`] cuts attributes
/// (the messages `Walker::strip_items` descends into), as byte ranges of
/// the body. Bounded: past [`ItemKeys::MAX`] distinct keys `overflow` is set
/// and a splice walks the items as if no key were known.
#[derive(Debug, Clone, Default)]
struct ItemKeys {
    keys: Vec<Range<usize>>,
    overflow: bool,
    /// Where the next lookup starts: items of one batch mostly repeat the
    /// same keys in the same order, so the key after the last one found is
    /// usually the next one met.
    hint: usize,
}

impl ItemKeys {
    const MAX: usize = 64;

    fn note(&mut self, body: &[u8], key: Range<usize>) {
        if self.overflow {
            return;
        }
        let k = body.get(key.clone()).unwrap_or_default();
        let n = self.keys.len();
        for j in 0..n {
            let i = (self.hint + j) % n;
            if body.get(self.keys[i].clone()) == Some(k) {
                self.hint = i + 1;
                return;
            }
        }
        if n == Self::MAX {
            self.overflow = true;
        } else {
            self.keys.push(key);
            self.hint = n + 1;
        }
    }

    /// Whether a splice may cut any item attribute under `strip`.
    fn any_cut(&self, body: &[u8], strip: &impl Fn(&str) -> bool) -> bool {
        self.overflow
            || self.keys.iter().any(|r| {
                let key = body.get(r.clone()).unwrap_or_default();
                match std::str::from_utf8(key) {
                    Ok(key) => strip(key),
                    Err(_) => strip(&String::from_utf8_lossy(key)),
                }
            })
    }
}

/// The result of [`Scan::splice`].
#[derive(Debug, Clone)]
pub struct Spliced {
    /// The body to forward (the received one, same allocation, when nothing changed).
    pub body: Bytes,
    /// What changed; `*_spans` fields count items of the scan's signal.
    pub outcome: RewriteOutcome,
    /// `Resource*` messages left in `body`.
    pub kept_resources: usize,
}

/// Walk a decompressed protobuf body of `signal` and summarise it.
///
/// Errors are [`OtlpError::Malformed`] saying what is wrong, where (the
/// OTLP/JSON path of the message) and at which byte offset of the body.
pub fn scan(signal: Signal, raw: Bytes) -> Result<Scan, OtlpError> {
    let mut w = Walker::new(&raw);
    let mut resources = Vec::new();
    let mut summaries = Vec::new();
    let mut total = 0usize;
    let mut fields = Fields::new(&raw, 0..raw.len());
    while let Some(f) = fields.next_field().map_err(|e| w.fail(e))? {
        if f.number != 1 {
            continue;
        }
        w.path.push((signal.resource_field(), resources.len()));
        w.expect(&f, schema::Wire::Len, "")?;
        let r = w.resource_x(signal, &f)?;
        w.path.pop();
        total = total.saturating_add(r.items);
        let attrs: &[KeyValue] = r.decoded.as_ref().map_or(&[], |x| &x.attributes);
        summaries.push(super::resource_summary(attrs, r.items));
        resources.push(r);
    }
    let summary = BatchSummary {
        resources: summaries,
        spans: total,
        bytes: raw.len(),
    };
    let item_keys = std::mem::take(&mut w.keys);
    Ok(Scan {
        signal,
        summary,
        resources,
        item_keys,
        raw,
    })
}

impl Scan {
    /// The body as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Rewrite the scanned body, with the semantics of the full-decode
    /// rewrite (`otlp::rewrite`):
    ///
    /// 1. leave out `resources[i]` unless `keep[i]` (missing = drop);
    /// 2. remove resource and item attributes (span, data point, log record
    ///    attributes) whose key is protected or stamped;
    /// 3. add every `stamp` entry as a string attribute to each kept
    ///    `Resource` (creating it when absent).
    ///
    /// Only the changed `Resource` messages are re-encoded; the rest is
    /// copied from the received body by byte range.
    pub fn splice(
        &self,
        keep: &[bool],
        stamp: &[(String, String)],
        protected: &[String],
    ) -> Result<Spliced, OtlpError> {
        self.splice_with(keep, stamp, protected, &[])
    }

    /// [`Scan::splice`], also removing the resource attributes named in
    /// `resource_strip[i]` from `resources[i]` only (the deployment link's
    /// per-resource strip; a missing entry strips nothing). Those removals
    /// make the body change but are not counted in `stripped_attributes`.
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
        // Walk below scopes only when some item attribute key is cut.
        let cut_items = check_strip && self.item_keys.any_cut(&self.raw, &strip);
        let mut w = Walker::new(&self.raw);
        let mut out = Pieces::default();
        let mut raw_from = 0usize;
        let mut kept = 0usize;
        for (i, r) in self.resources.iter().enumerate() {
            if !keep.get(i).copied().unwrap_or(false) {
                outcome.dropped_resources += 1;
                outcome.dropped_spans += r.items;
                out.raw(raw_from..r.field.start);
                raw_from = r.field.end;
                continue;
            }
            kept += 1;
            outcome.kept_spans += r.items;
            let extra: &[String] = resource_strip.get(i).map_or(&[], Vec::as_slice);
            if !check_strip && extra.is_empty() {
                continue;
            }
            w.path.push((self.signal.resource_field(), i));
            let new = w.splice_resource_x(
                self.signal,
                r,
                (stamp, extra),
                (&strip, cut_items),
                &mut outcome,
                &mut link_stripped,
            )?;
            w.path.pop();
            if let Some(p) = new {
                out.raw(raw_from..r.field.start);
                out.head(1, p.len);
                out.append(p);
                raw_from = r.field.end;
            }
        }
        out.raw(raw_from..self.raw.len());
        outcome.changed = outcome.dropped_resources > 0
            || outcome.stripped_attributes > 0
            || link_stripped > 0
            || (!stamp.is_empty() && kept > 0);
        let body = if outcome.changed {
            out.join(&self.raw)
        } else {
            self.raw.clone()
        };
        Ok(Spliced {
            body,
            outcome,
            kept_resources: kept,
        })
    }
}

/// One field as read from the wire.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub(super) number: u32,
    pub(super) wire: WireType,
    /// Offset of the key.
    pub(super) start: usize,
    /// Offset of the value (after the length prefix for length-delimited).
    pub(super) value: usize,
    /// Offset just past the field.
    pub(super) end: usize,
}

impl Field {
    pub(super) fn payload(&self) -> Range<usize> {
        self.value..self.end
    }
}

/// A wire-format problem at a byte offset (the path is added by the walker).
#[derive(Debug)]
pub(super) struct Fault {
    pub(super) at: usize,
    pub(super) what: Cow<'static, str>,
}

fn fault(at: usize, what: impl Into<Cow<'static, str>>) -> Fault {
    Fault {
        at,
        what: what.into(),
    }
}

/// Iterates the fields of one message (`range` of `body`).
pub(super) struct Fields<'a> {
    body: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Fields<'a> {
    pub(super) fn new(body: &'a [u8], range: Range<usize>) -> Fields<'a> {
        Fields {
            body,
            pos: range.start,
            end: range.end.min(body.len()),
        }
    }

    pub(super) fn next_field(&mut self) -> Result<Option<Field>, Fault> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let start = self.pos;
        let window = self.body.get(start..self.end).unwrap_or_default();
        let mut buf = window;
        let at = |buf: &[u8]| start + (window.len() - buf.len());
        let key =
            decode_varint(&mut buf).map_err(|_| fault(start, "invalid varint in field key"))?;
        let key =
            u32::try_from(key).map_err(|_| fault(start, format!("invalid field key {key}")))?;
        let number = key >> 3;
        if number == 0 {
            return Err(fault(start, "invalid field number 0"));
        }
        let wire = WireType::try_from(u64::from(key & 7)).map_err(|_| {
            fault(
                start,
                format!("field {number}: invalid wire type {}", key & 7),
            )
        })?;
        let value = at(buf);
        let left = self.end - value;
        let (value, end) = match wire {
            WireType::Varint => {
                decode_varint(&mut buf)
                    .map_err(|_| fault(value, format!("field {number}: invalid varint")))?;
                (value, at(buf))
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let n = if wire == WireType::SixtyFourBit { 8 } else { 4 };
                if left < n {
                    return Err(fault(
                        value,
                        format!("field {number}: {n}-byte value truncated ({left} bytes left)"),
                    ));
                }
                (value, value + n)
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf)
                    .map_err(|_| fault(value, format!("field {number}: invalid length varint")))?;
                let payload = at(buf);
                let left = self.end - payload;
                match usize::try_from(len) {
                    Ok(len) if len <= left => (payload, payload + len),
                    _ => {
                        return Err(fault(
                            value,
                            format!("field {number}: length {len} exceeds the {left} bytes left"),
                        ));
                    }
                }
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(fault(
                    start,
                    format!(
                        "field {number}: groups (wire type {}) are not supported",
                        wire as u8
                    ),
                ));
            }
        };
        self.pos = end;
        Ok(Some(Field {
            number,
            wire,
            start,
            value,
            end,
        }))
    }
}

/// Marks a path element without an index (a singular field).
const NO_INDEX: usize = usize::MAX;

/// Walk state: the body and the OTLP/JSON path of the message being walked
/// (a reused stack, formatted only for an error message).
struct Walker<'a> {
    body: &'a [u8],
    path: Vec<(&'static str, usize)>,
    /// Item attribute keys noted by [`Walker::check`].
    keys: ItemKeys,
}

impl<'a> Walker<'a> {
    fn new(body: &'a [u8]) -> Walker<'a> {
        Walker {
            body,
            path: Vec::with_capacity(8),
            keys: ItemKeys::default(),
        }
    }

    fn path_string(&self) -> String {
        let mut s = String::new();
        for (i, (name, index)) in self.path.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            s.push_str(name);
            if *index != NO_INDEX {
                s.push_str(&format!("[{index}]"));
            }
        }
        if s.is_empty() {
            s.push_str("request");
        }
        s
    }

    fn fail(&self, f: Fault) -> OtlpError {
        OtlpError::malformed(format!(
            "failed to decode Protobuf message: {}: {} at byte {}",
            self.path_string(),
            f.what,
            f.at
        ))
    }

    /// Refuse a known field with the wrong wire type (a full decode does too).
    fn expect(&self, f: &Field, wire: schema::Wire, name: &str) -> Result<(), OtlpError> {
        if wire.accepts(f.wire) {
            return Ok(());
        }
        let field = if name.is_empty() {
            String::new()
        } else {
            format!("{name}: ")
        };
        Err(self.fail(fault(
            f.start,
            format!(
                "{field}expected wire type {}, got {}",
                wire.describe(),
                describe(f.wire)
            ),
        )))
    }

    /// Scan one `Resource*` message (field `f` of the request).
    fn resource_x(&mut self, signal: Signal, f: &Field) -> Result<ScannedResource, OtlpError> {
        let mut out = ScannedResource {
            field: f.start..f.end,
            message: f.payload(),
            resource: Vec::new(),
            items: 0,
            decoded: None,
        };
        let mut scopes = 0usize;
        let mut fields = Fields::new(self.body, f.payload());
        while let Some(g) = fields.next_field().map_err(|e| self.fail(e))? {
            match g.number {
                1 => {
                    self.expect(&g, schema::Wire::Len, "resource")?;
                    let bytes = self.body.get(g.payload()).unwrap_or_default();
                    let resource = out.decoded.get_or_insert_with(Resource::default);
                    if let Err(e) = resource.merge(bytes) {
                        self.path.push(("resource", NO_INDEX));
                        let e = e.to_string();
                        let e = e
                            .strip_prefix("failed to decode Protobuf message: ")
                            .unwrap_or(&e)
                            .to_owned();
                        return Err(self.fail(fault(g.value, e)));
                    }
                    out.resource.push(g.payload());
                }
                2 => {
                    self.path.push((signal.scope_field(), scopes));
                    self.expect(&g, schema::Wire::Len, "")?;
                    let n = self.check(signal.scope_kind(), g.payload(), true)?;
                    self.path.pop();
                    scopes += 1;
                    out.items = out.items.saturating_add(n);
                }
                3 => {
                    self.expect(&g, schema::Wire::Len, "schemaUrl")?;
                    let bytes = self.body.get(g.payload()).unwrap_or_default();
                    if std::str::from_utf8(bytes).is_err() {
                        return Err(self.fail(fault(g.value, "schemaUrl: invalid UTF-8")));
                    }
                }
                _ => {}
            }
        }
        if let Some(resource) = &out.decoded
            && let Some(dup) = super::duplicate_key(&resource.attributes)
        {
            return Err(OtlpError::malformed(format!(
                "{}.resource.attributes: duplicate key {:?}",
                self.path_string(),
                super::truncate(dup.to_owned(), 100)
            )));
        }
        Ok(out)
    }

    /// Check a message of `kind` below a scope: wire types of known fields,
    /// id lengths; count items. Depth is bounded by the schema. `cut_path`:
    /// this message is one `strip_items` descends into, so the keys of its
    /// attributes are noted in `self.keys`.
    fn check(
        &mut self,
        kind: Kind,
        range: Range<usize>,
        cut_path: bool,
    ) -> Result<usize, OtlpError> {
        let mut items = 0usize;
        // Last seen length of each id field: (field number, length).
        let mut ids: [(u32, usize); 3] = [(0, 0); 3];
        // Occurrences of each child field so far (for error paths).
        let mut seen: [(u32, usize); 4] = [(0, 0); 4];
        // Metric: the data field seen (a oneof).
        let mut variant = 0u32;
        let mut fields = Fields::new(self.body, range);
        while let Some(f) = fields.next_field().map_err(|e| self.fail(e))? {
            let Some(s) = spec(kind, f.number) else {
                continue;
            };
            self.expect(&f, s.wire, s.name)?;
            match s.role {
                Role::Plain => {}
                Role::Attr => {
                    if cut_path {
                        let key = self.attribute_key(&f)?;
                        self.keys.note(self.body, key);
                    }
                }
                Role::Id(_) => {
                    let len = f.end - f.value;
                    if let Some(slot) = ids.iter_mut().find(|(n, _)| *n == f.number || *n == 0) {
                        *slot = (f.number, len);
                    }
                }
                Role::Child(child) => {
                    if kind == Kind::Metric && schema::is_metric_data(f.number) {
                        // A oneof: a full decode keeps only the last variant,
                        // which the items counted and checked here would not
                        // match. Encoders never send two; refuse it.
                        if variant != 0 && variant != f.number {
                            return Err(self.fail(fault(
                                f.start,
                                "more than one data field (gauge, sum, histogram, \
                                 exponentialHistogram, summary)",
                            )));
                        }
                        variant = f.number;
                    }
                    let index = if kind == Kind::Metric {
                        NO_INDEX
                    } else {
                        bump(&mut seen, f.number)
                    };
                    self.path.push((s.name, index));
                    let n = self.check(child, f.payload(), cut_path && child.holds_items())?;
                    self.path.pop();
                    items = items.saturating_add(n);
                }
            }
        }
        for (number, got) in ids {
            if number == 0 {
                break;
            }
            if let Some(schema::Spec {
                name,
                role: Role::Id(want),
                ..
            }) = spec(kind, number)
                && got != 0
                && got != want
            {
                return Err(OtlpError::malformed(format!(
                    "{}.{name}: expected {want} bytes, got {got}",
                    self.path_string()
                )));
            }
        }
        Ok(if kind.is_item() { 1 } else { items })
    }

    /// Rewrite one kept `Resource*` message: the new resource (stripped and
    /// stamped) and item attributes stripped below it. `None` when nothing in
    /// it changes. `extra` names resource attributes removed from this
    /// resource only (counted in `link_stripped`).
    fn splice_resource_x(
        &mut self,
        signal: Signal,
        r: &ScannedResource,
        (stamp, extra): (&[(String, String)], &[String]),
        (strip, cut_items): (&impl Fn(&str) -> bool, bool),
        outcome: &mut RewriteOutcome,
        link_stripped: &mut usize,
    ) -> Result<Option<Pieces>, OtlpError> {
        // The new Resource, when it changes.
        let mut resource = r.decoded.clone().unwrap_or_default();
        let before = resource.attributes.len();
        resource.attributes.retain(|kv| !extra.contains(&kv.key));
        let extra_stripped = before - resource.attributes.len();
        *link_stripped += extra_stripped;
        let before = resource.attributes.len();
        resource.attributes.retain(|kv| !strip(&kv.key));
        let stripped = before - resource.attributes.len();
        outcome.stripped_attributes += stripped;
        let new_resource = (stripped > 0 || extra_stripped > 0 || !stamp.is_empty()).then(|| {
            resource
                .attributes
                .extend(stamp.iter().map(|(k, v)| string_attribute(k, v)));
            resource.encode_to_vec()
        });

        let mut pieces: Option<Pieces> = None;
        let mut raw_from = r.message.start;
        let mut placed = false;
        if r.resource.is_empty()
            && let Some(bytes) = &new_resource
        {
            let p = pieces.get_or_insert_with(Pieces::default);
            p.head(1, bytes.len());
            p.owned(bytes.clone());
            placed = true;
        }
        let mut scopes = 0usize;
        let mut fields = Fields::new(self.body, r.message.clone());
        while let Some(f) = fields.next_field().map_err(|e| self.fail(e))? {
            match f.number {
                1 if f.wire == WireType::LengthDelimited => {
                    if let Some(bytes) = &new_resource {
                        let p = pieces.get_or_insert_with(Pieces::default);
                        p.raw(raw_from..f.start);
                        raw_from = f.end;
                        if !placed {
                            p.head(1, bytes.len());
                            p.owned(bytes.clone());
                            placed = true;
                        }
                    }
                }
                2 if f.wire == WireType::LengthDelimited && cut_items => {
                    self.path.push((signal.scope_field(), scopes));
                    scopes += 1;
                    let child =
                        self.strip_items(signal.scope_kind(), f.payload(), strip, outcome)?;
                    self.path.pop();
                    if let Some(c) = child {
                        let p = pieces.get_or_insert_with(Pieces::default);
                        p.raw(raw_from..f.start);
                        p.head(2, c.len);
                        p.append(c);
                        raw_from = f.end;
                    }
                }
                _ => {}
            }
        }
        Ok(pieces.map(|mut p| {
            p.raw(raw_from..r.message.end);
            p
        }))
    }

    /// Cut stripped item attributes out of a message of `kind`; `None` when
    /// nothing under it changes. Descends only towards items.
    fn strip_items(
        &mut self,
        kind: Kind,
        range: Range<usize>,
        strip: &impl Fn(&str) -> bool,
        outcome: &mut RewriteOutcome,
    ) -> Result<Option<Pieces>, OtlpError> {
        let mut pieces: Option<Pieces> = None;
        let mut raw_from = range.start;
        let mut fields = Fields::new(self.body, range.clone());
        while let Some(f) = fields.next_field().map_err(|e| self.fail(e))? {
            if f.wire != WireType::LengthDelimited {
                continue;
            }
            let Some(s) = spec(kind, f.number) else {
                continue;
            };
            match s.role {
                Role::Attr => {
                    let key = self.attribute_key(&f)?;
                    let key = self.body.get(key).unwrap_or_default();
                    // Item keys are not validated by the scan: valid UTF-8
                    // (the norm) is checked without building a string.
                    let stripped = match std::str::from_utf8(key) {
                        Ok(key) => strip(key),
                        Err(_) => strip(&String::from_utf8_lossy(key)),
                    };
                    if stripped {
                        outcome.stripped_attributes += 1;
                        let p = pieces.get_or_insert_with(Pieces::default);
                        p.raw(raw_from..f.start);
                        raw_from = f.end;
                    }
                }
                Role::Child(child) if child.holds_items() => {
                    self.path.push((s.name, NO_INDEX));
                    let c = self.strip_items(child, f.payload(), strip, outcome)?;
                    self.path.pop();
                    if let Some(c) = c {
                        let p = pieces.get_or_insert_with(Pieces::default);
                        p.raw(raw_from..f.start);
                        p.head(f.number, c.len);
                        p.append(c);
                        raw_from = f.end;
                    }
                }
                _ => {}
            }
        }
        Ok(pieces.map(|mut p| {
            p.raw(raw_from..range.end);
            p
        }))
    }

    /// Where the key of the `KeyValue` in field `f` is (field 1, the last
    /// occurrence; empty when absent).
    fn attribute_key(&self, f: &Field) -> Result<Range<usize>, OtlpError> {
        let p = f.payload();
        let b = self.body;
        // What encoders write: the key first (tag 0x0a, a one-byte length),
        // then at most the value (tag 0x12) ending the message exactly. So
        // no later key can follow, and the full walk below is not needed.
        if b.get(p.start) == Some(&0x0a)
            && let Some(&len) = b.get(p.start + 1)
            && len < 0x80
        {
            let key = p.start + 2..p.start + 2 + usize::from(len);
            if key.end == p.end {
                return Ok(key);
            }
            if key.end < p.end && b.get(key.end) == Some(&0x12) {
                let mut rest = b.get(key.end + 1..p.end).unwrap_or_default();
                if decode_varint(&mut rest).is_ok_and(|n| n == rest.len() as u64) {
                    return Ok(key);
                }
            }
        }
        let mut key = p.end..p.end;
        let mut fields = Fields::new(self.body, p);
        while let Some(g) = fields.next_field().map_err(|e| self.fail(e))? {
            if g.number == 1 && g.wire == WireType::LengthDelimited {
                key = g.payload();
            }
        }
        Ok(key)
    }
}

/// Index of the next occurrence of child field `number` in a message.
fn bump(seen: &mut [(u32, usize); 4], number: u32) -> usize {
    for slot in seen.iter_mut() {
        if slot.0 == number {
            slot.1 += 1;
            return slot.1 - 1;
        }
        if slot.0 == 0 {
            *slot = (number, 1);
            return 0;
        }
    }
    NO_INDEX
}

fn describe(w: WireType) -> &'static str {
    match w {
        WireType::Varint => "varint",
        WireType::SixtyFourBit => "64-bit",
        WireType::LengthDelimited => "length-delimited",
        WireType::StartGroup => "start-group",
        WireType::EndGroup => "end-group",
        WireType::ThirtyTwoBit => "32-bit",
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

/// A piece of the output.
#[derive(Debug)]
enum Piece {
    /// A byte range of the received body.
    Raw(Range<usize>),
    /// A field key and length prefix (at most 5 + 10 bytes).
    Head([u8; 16], u8),
    /// Newly encoded bytes (a rewritten `Resource`).
    Owned(Vec<u8>),
}

/// Output under construction: pieces and their total length.
#[derive(Debug, Default)]
struct Pieces {
    parts: Vec<Piece>,
    len: usize,
}

impl Pieces {
    /// Append a range of the body, merging with a directly preceding range.
    fn raw(&mut self, r: Range<usize>) {
        if r.is_empty() {
            return;
        }
        self.len += r.len();
        if let Some(Piece::Raw(last)) = self.parts.last_mut()
            && last.end == r.start
        {
            last.end = r.end;
            return;
        }
        self.parts.push(Piece::Raw(r));
    }

    /// Append the key and length prefix of length-delimited field `number`.
    fn head(&mut self, number: u32, len: usize) {
        let mut buf = [0u8; 16];
        let mut w = &mut buf[..];
        encode_varint(
            (u64::from(number) << 3) | WireType::LengthDelimited as u64,
            &mut w,
        );
        encode_varint(len as u64, &mut w);
        let n = encoded_len_varint((u64::from(number) << 3) | 2) + encoded_len_varint(len as u64);
        self.len += n;
        self.parts.push(Piece::Head(buf, n as u8));
    }

    fn owned(&mut self, bytes: Vec<u8>) {
        self.len += bytes.len();
        self.parts.push(Piece::Owned(bytes));
    }

    fn append(&mut self, other: Pieces) {
        self.len += other.len;
        for p in other.parts {
            match p {
                Piece::Raw(r) => {
                    self.len -= r.len();
                    self.raw(r);
                }
                p => self.parts.push(p),
            }
        }
    }

    /// One allocation of the final length, every piece copied once.
    fn join(&self, body: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(self.len);
        for p in &self.parts {
            match p {
                Piece::Raw(r) => out.extend_from_slice(body.get(r.clone()).unwrap_or_default()),
                Piece::Head(buf, n) => {
                    out.extend_from_slice(buf.get(..usize::from(*n)).unwrap_or_default())
                }
                Piece::Owned(v) => out.extend_from_slice(v),
            }
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
pub(super) mod tests;
