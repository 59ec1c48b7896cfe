//! In-process OIDC issuer for `spangate dev` and tests. SKELETON.
