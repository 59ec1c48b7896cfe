//! Per-identity rate limits (requests/s, spans/s, bytes/s), bounded key memory.
//!
//! SKELETON: interface only.
