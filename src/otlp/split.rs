//! Split one OTLP protobuf `Export*ServiceRequest` into requests that each
//! fit an upstream's request size limit (New Relic refuses bodies over 1 MB),
//! at the wire level.
//!
//! [`split_to_fit`] returns the body itself when it fits. Otherwise it checks
//! the body with [`wire::scan`] (so it splits exactly what the proxy accepts)
//! and packs it greedily, in order, into pieces of at most `max` bytes, each a
//! complete request of the same signal. It splits at the coarsest boundary
//! that fits:
//!
//! 1. whole `Resource*` messages: one that does not fit in the current piece
//!    starts the next piece when it fits there alone;
//! 2. otherwise the resource is split into its `Scope*` messages, with the
//!    same rule one level down, then into items: spans, log records, and for
//!    metrics whole `Metric` messages first, then data points. A piece opens
//!    at the current position of the walk: every field of each enclosing
//!    message other than the one being split (the `Resource` and its
//!    `schema_url`, the `InstrumentationScope` and its `schema_url`, a
//!    metric's name, description, unit and metadata, a sum's temporality and
//!    monotonicity, unknown fields) is copied into every piece, before the
//!    children that piece carries.
//!
//! So a `Metric` too large for one piece becomes several `Metric` messages
//! with the same metadata and type, each with a subset of the data points.
//! Every item lands in exactly one piece, in the original order. An item that
//! alone, with its context, exceeds `max` is [`SplitError::ItemTooLarge`]:
//! nothing is dropped silently. A message with no items below it (an empty
//! scope, a metric without data points) is kept, under the same rule.
//!
//! Nothing is decoded below the envelope: items and contexts are byte ranges
//! of the received body, and only the length prefixes of the messages that
//! enclose a split are written anew. A piece that is one contiguous range of
//! the body (whole resources, in order) shares the body's allocation; any
//! other piece is joined once into a buffer of its exact length.
//!
//! The output of a body that holds no resource at all (only unknown fields)
//! is one empty request.

#[doc(hidden)]
pub mod oracle;

use std::ops::Range;

use bytes::Bytes;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use super::OtlpError;
use super::wire::{self, Fault, Field, Fields, Signal};

/// Why a body could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The body is not a valid request of the signal (what the wire scan says).
    #[error("malformed body: {0}")]
    Malformed(String),
    /// One span, data point or log record, with its resource and scope
    /// context, is larger than the limit on its own.
    #[error(
        "one item (span, data point or log record) with its resource and scope is \
         {size} bytes, over the request limit of {max} bytes"
    )]
    ItemTooLarge {
        /// Size of the smallest request that carries the item.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// Split `body`, a decompressed protobuf `Export*ServiceRequest` of `signal`,
/// into requests of at most `max` bytes that together carry every item once
/// (see the module documentation). A body that fits is returned as is,
/// unchecked (the proxy scanned it already).
pub fn split_to_fit(signal: Signal, body: Bytes, max: usize) -> Result<Vec<Bytes>, SplitError> {
    if body.len() <= max {
        return Ok(vec![body]);
    }
    wire::scan(signal, body.clone()).map_err(|e| match e {
        OtlpError::Malformed(m) => SplitError::Malformed(m),
        other => SplitError::Malformed(other.to_string()),
    })?;
    let mut s = Splitter {
        body: &body,
        max,
        signal,
        root: 0,
        stack: Vec::with_capacity(4),
        depth: 0,
        segs: Vec::new(),
        pieces: Vec::new(),
    };
    let mut fields = Fields::new(&body, 0..body.len());
    while let Some(f) = fields.next_field().map_err(malformed)? {
        if f.number == 1 {
            s.place(Node::Resource, &f)?;
        }
    }
    s.flush();
    if s.pieces.is_empty() {
        s.pieces.push(Bytes::new());
    }
    Ok(s.pieces)
}

fn malformed(f: Fault) -> SplitError {
    SplitError::Malformed(format!("{} at byte {}", f.what, f.at))
}

/// What a child field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// `Resource*` (field 1 of the request).
    Resource,
    /// `Scope*` (field 2 of a `Resource*`).
    Scope,
    /// `Metric` (field 2 of `ScopeMetrics`).
    Metric,
    /// A span, log record or data point: never split.
    Item,
}

/// Length of a length-delimited field `number` whose payload is `len` bytes.
fn field_len(number: u32, len: usize) -> usize {
    key_len(number) + encoded_len_varint(len as u64) + len
}

/// One enclosing message of the walk's position (a `Resource*`, `Scope*`,
/// `Metric` or metric data message being split).
#[derive(Debug, Default)]
struct Level {
    /// Its field number in the parent.
    number: u32,
    /// Its fields other than the children being split (copied into every piece).
    ctx: Vec<Range<usize>>,
    ctx_len: usize,
    /// Bytes of children placed in the current piece.
    body_len: usize,
    /// Index of its head in `segs` when open in the current piece.
    head: Option<usize>,
    /// Whether it was opened in any piece.
    placed: bool,
}

/// A part of the piece under construction.
#[derive(Debug)]
enum Seg {
    /// A byte range of the body.
    Raw(Range<usize>),
    /// The key and length prefix of a length-delimited field.
    Head { number: u32, len: usize },
}

struct Splitter<'a> {
    body: &'a Bytes,
    max: usize,
    signal: Signal,
    /// Bytes of the current piece at the request level (closed `Resource*` fields).
    root: usize,
    /// Enclosing messages, outermost first; `stack[..depth]` is live (the
    /// rest keeps its buffers for reuse).
    stack: Vec<Level>,
    depth: usize,
    segs: Vec<Seg>,
    pieces: Vec<Bytes>,
}

impl Splitter<'_> {
    /// Size of the current piece (or, `fresh`, of a new one) once every live
    /// level is open and `extra` bytes are added inside the innermost.
    fn size(&self, extra: usize, fresh: bool) -> usize {
        let mut inner = extra;
        for l in self.stack[..self.depth].iter().rev() {
            let body = if fresh { 0 } else { l.body_len };
            inner = field_len(l.number, l.ctx_len + body + inner);
        }
        if fresh { inner } else { self.root + inner }
    }

    fn push_raw(&mut self, r: Range<usize>) {
        if r.is_empty() {
            return;
        }
        if let Some(Seg::Raw(last)) = self.segs.last_mut()
            && last.end == r.start
        {
            last.end = r.end;
            return;
        }
        self.segs.push(Seg::Raw(r));
    }

    /// Open every live level not yet open in the current piece (head and context).
    fn open_all(&mut self) {
        for i in 0..self.depth {
            if self.stack[i].head.is_some() {
                continue;
            }
            let number = self.stack[i].number;
            self.stack[i].head = Some(self.segs.len());
            self.stack[i].placed = true;
            self.segs.push(Seg::Head { number, len: 0 });
            for k in 0..self.stack[i].ctx.len() {
                let r = self.stack[i].ctx[k].clone();
                self.push_raw(r);
            }
        }
    }

    /// Add `range` of the body inside the innermost live level.
    fn add(&mut self, range: Range<usize>) {
        self.open_all();
        let len = range.len();
        self.push_raw(range);
        match self.depth.checked_sub(1) {
            Some(i) => self.stack[i].body_len += len,
            None => self.root += len,
        }
    }

    /// Close level `i` in the current piece: write its length, count it in its parent.
    fn close(&mut self, i: usize) {
        let l = &mut self.stack[i];
        let Some(h) = l.head.take() else {
            return;
        };
        let len = l.ctx_len + l.body_len;
        l.body_len = 0;
        let number = l.number;
        if let Some(seg) = self.segs.get_mut(h) {
            *seg = Seg::Head { number, len };
        }
        let n = field_len(number, len);
        match i.checked_sub(1) {
            Some(p) => self.stack[p].body_len += n,
            None => self.root += n,
        }
    }

    /// Finish the current piece (closing the open levels; they reopen in the
    /// next piece when something is added below them).
    fn flush(&mut self) {
        for i in (0..self.depth).rev() {
            self.close(i);
        }
        if self.segs.is_empty() {
            return;
        }
        let piece = match self.segs.as_slice() {
            [Seg::Raw(r)] => self.body.slice(r.clone()),
            segs => {
                let mut out = Vec::with_capacity(self.root);
                for s in segs {
                    match s {
                        Seg::Raw(r) => out.extend_from_slice(&self.body[r.clone()]),
                        Seg::Head { number, len } => {
                            encode_key(*number, WireType::LengthDelimited, &mut out);
                            encode_varint(*len as u64, &mut out);
                        }
                    }
                }
                debug_assert_eq!(out.len(), self.root);
                Bytes::from(out)
            }
        };
        self.pieces.push(piece);
        self.segs.clear();
        self.root = 0;
    }

    /// Place child field `f` (a `kind`) inside the innermost live level:
    /// whole in the current piece, whole in a new piece, or split below.
    fn place(&mut self, kind: Node, f: &Field) -> Result<(), SplitError> {
        let whole = f.end - f.start;
        if self.size(whole, false) <= self.max {
            self.add(f.start..f.end);
            return Ok(());
        }
        let alone = self.size(whole, true);
        if alone <= self.max {
            self.flush();
            self.add(f.start..f.end);
            return Ok(());
        }
        match kind {
            Node::Item => Err(SplitError::ItemTooLarge {
                size: alone,
                max: self.max,
            }),
            Node::Resource | Node::Scope | Node::Metric => self.descend(kind, f),
        }
    }

    /// Split `f` (a `kind`): its context becomes a level, its children are placed.
    fn descend(&mut self, kind: Node, f: &Field) -> Result<(), SplitError> {
        let payload = f.payload();
        let is_child = |g: &Field| match kind {
            Node::Metric => is_metric_data(g.number),
            _ => g.number == 2,
        };
        self.push(f.number);
        let mut fields = Fields::new(self.body, payload.clone());
        while let Some(g) = fields.next_field().map_err(malformed)? {
            if !is_child(&g) {
                self.push_ctx(g.start..g.end);
            }
        }
        let child = match (kind, self.signal) {
            (Node::Resource, _) => Node::Scope,
            (Node::Scope, Signal::Metrics) => Node::Metric,
            _ => Node::Item,
        };
        if kind == Node::Metric {
            self.metric_data(payload)?;
        } else {
            let mut fields = Fields::new(self.body, payload);
            while let Some(g) = fields.next_field().map_err(malformed)? {
                if is_child(&g) {
                    length_delimited(&g)?;
                    self.place(child, &g)?;
                }
            }
        }
        self.pop()
    }

    /// The data field of a metric being split (`payload`): one level for its
    /// data message (every occurrence's fields other than data points, as a
    /// full decode merges them), and its data points as items.
    fn metric_data(&mut self, payload: Range<usize>) -> Result<(), SplitError> {
        let mut variant = None;
        let mut fields = Fields::new(self.body, payload.clone());
        while let Some(g) = fields.next_field().map_err(malformed)? {
            if !is_metric_data(g.number) {
                continue;
            }
            length_delimited(&g)?;
            if variant.is_some_and(|v| v != g.number) {
                return Err(SplitError::Malformed(format!(
                    "metric with more than one data field at byte {}",
                    g.start
                )));
            }
            if variant.is_none() {
                self.push(g.number);
                variant = Some(g.number);
            }
            let mut inner = Fields::new(self.body, g.payload());
            while let Some(h) = inner.next_field().map_err(malformed)? {
                if h.number != 1 {
                    self.push_ctx(h.start..h.end);
                }
            }
        }
        if variant.is_none() {
            return Ok(());
        }
        let mut fields = Fields::new(self.body, payload);
        while let Some(g) = fields.next_field().map_err(malformed)? {
            if !is_metric_data(g.number) {
                continue;
            }
            let mut inner = Fields::new(self.body, g.payload());
            while let Some(h) = inner.next_field().map_err(malformed)? {
                if h.number == 1 {
                    length_delimited(&h)?;
                    self.place(Node::Item, &h)?;
                }
            }
        }
        self.pop()
    }

    /// Start a level for a message (field `number` of its parent) being split.
    fn push(&mut self, number: u32) {
        if self.stack.len() == self.depth {
            self.stack.push(Level::default());
        }
        let l = &mut self.stack[self.depth];
        l.number = number;
        l.ctx.clear();
        l.ctx_len = 0;
        l.body_len = 0;
        l.head = None;
        l.placed = false;
        self.depth += 1;
    }

    /// Add a context field to the innermost level.
    fn push_ctx(&mut self, r: Range<usize>) {
        if let Some(l) = self
            .depth
            .checked_sub(1)
            .and_then(|i| self.stack.get_mut(i))
        {
            l.ctx_len += r.len();
            l.ctx.push(r);
        }
    }

    /// End the innermost level. A message that had nothing below it is kept
    /// with its context alone, under the same limit as an item.
    fn pop(&mut self) -> Result<(), SplitError> {
        let Some(i) = self.depth.checked_sub(1) else {
            return Ok(());
        };
        if !self.stack[i].placed {
            if self.size(0, false) > self.max {
                let alone = self.size(0, true);
                if alone > self.max {
                    return Err(SplitError::ItemTooLarge {
                        size: alone,
                        max: self.max,
                    });
                }
                self.flush();
            }
            self.open_all();
        }
        self.close(i);
        self.depth = i;
        Ok(())
    }
}

fn length_delimited(f: &Field) -> Result<(), SplitError> {
    if f.wire == WireType::LengthDelimited {
        Ok(())
    } else {
        Err(SplitError::Malformed(format!(
            "field {} is not length-delimited at byte {}",
            f.number, f.start
        )))
    }
}

/// The data fields of `Metric`: gauge, sum, histogram, exponential histogram, summary.
fn is_metric_data(number: u32) -> bool {
    matches!(number, 5 | 7 | 9 | 10 | 11)
}

#[cfg(test)]
mod tests;
