//! `spangate dev`: the zero-setup default. An embedded OIDC issuer, a
//! recording upstream and the proxy, all on loopback, with the example
//! policies. Tests reuse the issuer and the upstream.

pub mod idp;
pub mod upstream;
