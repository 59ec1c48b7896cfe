//! The part of the OTLP schema the wire walk knows: for each message kind
//! below a `Scope*` message, the fields it checks (wire type), descends into,
//! validates as ids, or may strip (item attributes). Field numbers are those
//! of opentelemetry-proto v1 (`trace.proto`, `metrics.proto`, `logs.proto`);
//! every other field is unknown to the walk and skipped.

use prost::encoding::WireType;

/// A message kind the walk descends into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    ScopeSpans,
    ScopeMetrics,
    ScopeLogs,
    Span,
    Link,
    LogRecord,
    Metric,
    Gauge,
    Sum,
    Histogram,
    ExpHistogram,
    Summary,
    NumberPoint,
    HistogramPoint,
    ExpHistogramPoint,
    SummaryPoint,
    Exemplar,
}

impl Kind {
    /// Kinds that are counted as one item each (a span, a data point, a
    /// log record): what policy limits and `partial_success` count.
    pub(super) fn is_item(self) -> bool {
        matches!(
            self,
            Kind::Span
                | Kind::LogRecord
                | Kind::NumberPoint
                | Kind::HistogramPoint
                | Kind::ExpHistogramPoint
                | Kind::SummaryPoint
        )
    }

    /// Whether stripping item attributes has to descend into this kind
    /// (links and exemplars carry no item attributes).
    pub(super) fn holds_items(self) -> bool {
        !matches!(self, Kind::Link | Kind::Exemplar)
    }
}

/// The wire type(s) a known field may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    Len,
    Varint,
    I64,
    I32,
    /// A repeated scalar: packed (length-delimited) or one `I64` per value.
    RepeatedI64,
}

impl Wire {
    pub(super) fn accepts(self, actual: WireType) -> bool {
        match self {
            Wire::Len => actual == WireType::LengthDelimited,
            Wire::Varint => actual == WireType::Varint,
            Wire::I64 => actual == WireType::SixtyFourBit,
            Wire::I32 => actual == WireType::ThirtyTwoBit,
            Wire::RepeatedI64 => {
                actual == WireType::SixtyFourBit || actual == WireType::LengthDelimited
            }
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Wire::Len => "length-delimited",
            Wire::Varint => "varint",
            Wire::I64 => "64-bit",
            Wire::I32 => "32-bit",
            Wire::RepeatedI64 => "64-bit or packed",
        }
    }
}

/// What the walk does with a known field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Wire type checked, content not read.
    Plain,
    /// A message the walk descends into.
    Child(Kind),
    /// A trace id (16 bytes) or span id (8 bytes): empty or exactly this long
    /// (the last occurrence counts, as in a full decode).
    Id(usize),
    /// The item's attributes (`KeyValue`), which stripping may remove.
    Attr,
}

/// One known field: its OTLP/JSON name (for error paths), wire type, role.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spec {
    pub name: &'static str,
    pub wire: Wire,
    pub role: Role,
}

const fn f(name: &'static str, wire: Wire, role: Role) -> Option<Spec> {
    Some(Spec { name, wire, role })
}

use Role::{Attr, Child, Id, Plain};
use Wire::{I32, I64, Len, RepeatedI64, Varint};

/// The spec of field `number` of `kind`, `None` for an unknown field.
pub(super) fn spec(kind: Kind, number: u32) -> Option<Spec> {
    match (kind, number) {
        // Scope* { scope = 1; items = 2; schema_url = 3 }
        (Kind::ScopeSpans | Kind::ScopeMetrics | Kind::ScopeLogs, 1) => f("scope", Len, Plain),
        (Kind::ScopeSpans, 2) => f("spans", Len, Child(Kind::Span)),
        (Kind::ScopeMetrics, 2) => f("metrics", Len, Child(Kind::Metric)),
        (Kind::ScopeLogs, 2) => f("logRecords", Len, Child(Kind::LogRecord)),
        (Kind::ScopeSpans | Kind::ScopeMetrics | Kind::ScopeLogs, 3) => f("schemaUrl", Len, Plain),

        (Kind::Span, 1) => f("traceId", Len, Id(16)),
        (Kind::Span, 2) => f("spanId", Len, Id(8)),
        (Kind::Span, 3) => f("traceState", Len, Plain),
        (Kind::Span, 4) => f("parentSpanId", Len, Id(8)),
        (Kind::Span, 5) => f("name", Len, Plain),
        (Kind::Span, 6) => f("kind", Varint, Plain),
        (Kind::Span, 7) => f("startTimeUnixNano", I64, Plain),
        (Kind::Span, 8) => f("endTimeUnixNano", I64, Plain),
        (Kind::Span, 9) => f("attributes", Len, Attr),
        (Kind::Span, 10) => f("droppedAttributesCount", Varint, Plain),
        (Kind::Span, 11) => f("events", Len, Plain),
        (Kind::Span, 12) => f("droppedEventsCount", Varint, Plain),
        (Kind::Span, 13) => f("links", Len, Child(Kind::Link)),
        (Kind::Span, 14) => f("droppedLinksCount", Varint, Plain),
        (Kind::Span, 15) => f("status", Len, Plain),
        (Kind::Span, 16) => f("flags", I32, Plain),

        (Kind::Link, 1) => f("traceId", Len, Id(16)),
        (Kind::Link, 2) => f("spanId", Len, Id(8)),
        (Kind::Link, 3) => f("traceState", Len, Plain),
        (Kind::Link, 4) => f("attributes", Len, Plain),
        (Kind::Link, 5) => f("droppedAttributesCount", Varint, Plain),
        (Kind::Link, 6) => f("flags", I32, Plain),

        (Kind::LogRecord, 1) => f("timeUnixNano", I64, Plain),
        (Kind::LogRecord, 2) => f("severityNumber", Varint, Plain),
        (Kind::LogRecord, 3) => f("severityText", Len, Plain),
        (Kind::LogRecord, 5) => f("body", Len, Plain),
        (Kind::LogRecord, 6) => f("attributes", Len, Attr),
        (Kind::LogRecord, 7) => f("droppedAttributesCount", Varint, Plain),
        (Kind::LogRecord, 8) => f("flags", I32, Plain),
        (Kind::LogRecord, 9) => f("traceId", Len, Id(16)),
        (Kind::LogRecord, 10) => f("spanId", Len, Id(8)),
        (Kind::LogRecord, 11) => f("observedTimeUnixNano", I64, Plain),
        (Kind::LogRecord, 12) => f("eventName", Len, Plain),

        (Kind::Metric, 1) => f("name", Len, Plain),
        (Kind::Metric, 2) => f("description", Len, Plain),
        (Kind::Metric, 3) => f("unit", Len, Plain),
        (Kind::Metric, 5) => f("gauge", Len, Child(Kind::Gauge)),
        (Kind::Metric, 7) => f("sum", Len, Child(Kind::Sum)),
        (Kind::Metric, 9) => f("histogram", Len, Child(Kind::Histogram)),
        (Kind::Metric, 10) => f("exponentialHistogram", Len, Child(Kind::ExpHistogram)),
        (Kind::Metric, 11) => f("summary", Len, Child(Kind::Summary)),
        (Kind::Metric, 12) => f("metadata", Len, Plain),

        (Kind::Gauge, 1) => f("dataPoints", Len, Child(Kind::NumberPoint)),
        (Kind::Sum, 1) => f("dataPoints", Len, Child(Kind::NumberPoint)),
        (Kind::Sum, 2) => f("aggregationTemporality", Varint, Plain),
        (Kind::Sum, 3) => f("isMonotonic", Varint, Plain),
        (Kind::Histogram, 1) => f("dataPoints", Len, Child(Kind::HistogramPoint)),
        (Kind::Histogram, 2) => f("aggregationTemporality", Varint, Plain),
        (Kind::ExpHistogram, 1) => f("dataPoints", Len, Child(Kind::ExpHistogramPoint)),
        (Kind::ExpHistogram, 2) => f("aggregationTemporality", Varint, Plain),
        (Kind::Summary, 1) => f("dataPoints", Len, Child(Kind::SummaryPoint)),

        (Kind::NumberPoint, 2) => f("startTimeUnixNano", I64, Plain),
        (Kind::NumberPoint, 3) => f("timeUnixNano", I64, Plain),
        (Kind::NumberPoint, 4) => f("asDouble", I64, Plain),
        (Kind::NumberPoint, 5) => f("exemplars", Len, Child(Kind::Exemplar)),
        (Kind::NumberPoint, 6) => f("asInt", I64, Plain),
        (Kind::NumberPoint, 7) => f("attributes", Len, Attr),
        (Kind::NumberPoint, 8) => f("flags", Varint, Plain),

        (Kind::HistogramPoint, 2) => f("startTimeUnixNano", I64, Plain),
        (Kind::HistogramPoint, 3) => f("timeUnixNano", I64, Plain),
        (Kind::HistogramPoint, 4) => f("count", I64, Plain),
        (Kind::HistogramPoint, 5) => f("sum", I64, Plain),
        (Kind::HistogramPoint, 6) => f("bucketCounts", RepeatedI64, Plain),
        (Kind::HistogramPoint, 7) => f("explicitBounds", RepeatedI64, Plain),
        (Kind::HistogramPoint, 8) => f("exemplars", Len, Child(Kind::Exemplar)),
        (Kind::HistogramPoint, 9) => f("attributes", Len, Attr),
        (Kind::HistogramPoint, 10) => f("flags", Varint, Plain),
        (Kind::HistogramPoint, 11) => f("min", I64, Plain),
        (Kind::HistogramPoint, 12) => f("max", I64, Plain),

        (Kind::ExpHistogramPoint, 1) => f("attributes", Len, Attr),
        (Kind::ExpHistogramPoint, 2) => f("startTimeUnixNano", I64, Plain),
        (Kind::ExpHistogramPoint, 3) => f("timeUnixNano", I64, Plain),
        (Kind::ExpHistogramPoint, 4) => f("count", I64, Plain),
        (Kind::ExpHistogramPoint, 5) => f("sum", I64, Plain),
        (Kind::ExpHistogramPoint, 6) => f("scale", Varint, Plain),
        (Kind::ExpHistogramPoint, 7) => f("zeroCount", I64, Plain),
        (Kind::ExpHistogramPoint, 8) => f("positive", Len, Plain),
        (Kind::ExpHistogramPoint, 9) => f("negative", Len, Plain),
        (Kind::ExpHistogramPoint, 10) => f("flags", Varint, Plain),
        (Kind::ExpHistogramPoint, 11) => f("exemplars", Len, Child(Kind::Exemplar)),
        (Kind::ExpHistogramPoint, 12) => f("min", I64, Plain),
        (Kind::ExpHistogramPoint, 13) => f("max", I64, Plain),
        (Kind::ExpHistogramPoint, 14) => f("zeroThreshold", I64, Plain),

        (Kind::SummaryPoint, 2) => f("startTimeUnixNano", I64, Plain),
        (Kind::SummaryPoint, 3) => f("timeUnixNano", I64, Plain),
        (Kind::SummaryPoint, 4) => f("count", I64, Plain),
        (Kind::SummaryPoint, 5) => f("sum", I64, Plain),
        (Kind::SummaryPoint, 6) => f("quantileValues", Len, Plain),
        (Kind::SummaryPoint, 7) => f("attributes", Len, Attr),
        (Kind::SummaryPoint, 8) => f("flags", Varint, Plain),

        (Kind::Exemplar, 2) => f("timeUnixNano", I64, Plain),
        (Kind::Exemplar, 3) => f("asDouble", I64, Plain),
        (Kind::Exemplar, 4) => f("spanId", Len, Id(8)),
        (Kind::Exemplar, 5) => f("traceId", Len, Id(16)),
        (Kind::Exemplar, 6) => f("asInt", I64, Plain),
        (Kind::Exemplar, 7) => f("filteredAttributes", Len, Plain),

        _ => None,
    }
}

/// The data fields of `Metric` (a oneof: the same variant twice merges, a
/// different one would replace it in a full decode).
pub(super) fn is_metric_data(number: u32) -> bool {
    matches!(number, 5 | 7 | 9 | 10 | 11)
}
