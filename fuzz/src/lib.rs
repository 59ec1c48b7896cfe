//! Shared harness code of the spangate fuzz targets (not part of spangate).
//!
//! - [`jwt`]: fixed fuzz-only signing keys, their JWKS, two network-free
//!   verifiers built with `Identity::with_static_jwks`, a structured token
//!   description that is signed for real, and the soundness oracle every
//!   accepted token must pass.
//! - [`json`]: an arbitrary JSON value, for claims, headers and OTLP bodies.
#![forbid(unsafe_code)]

pub mod json;
pub mod jwt;

/// Lines of `text` as a YAML parser counts them: `\r\n`, `\r`, `\n` and the
/// YAML 1.1 breaks NEL, LS and PS each end a line. Used to check that a
/// reported error position lies inside the file.
pub fn yaml_lines(text: &str) -> usize {
    let mut lines = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines += 1;
            }
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => lines += 1,
            _ => {}
        }
    }
    lines
}
