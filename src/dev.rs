//! SKELETON: filled in by the core work.
pub mod idp;
