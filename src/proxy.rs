//! SKELETON: filled in by the core work.
