//! Prometheus metrics with low-cardinality labels (reason codes, endpoint names).

/// All metrics of the process.
#[derive(Debug, Default)]
pub struct Metrics {}
