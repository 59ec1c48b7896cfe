//! What `spangate dev` prints for each batch the recording upstream
//! receives: the services, the first span names, the span count, the
//! identity attributes spangate stamped, and which credential version was
//! injected (name, version and fingerprint, never the value). It is the
//! product's point made visible: what arrives upstream is the client's
//! batch, with verified identity on it and the client's token gone.

use std::io::Write;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::dev::upstream::Received;
use crate::otlp::{self, Encoding};
use crate::shared::Shared;

/// Span names shown per batch.
pub const SHOWN_SPAN_NAMES: usize = 3;
/// Services shown per batch.
pub const SHOWN_SERVICES: usize = 8;

/// A known credential version: (fingerprint, credential name, version).
pub type KnownVersion = (String, String, u64);

/// What the report needs to know about the running proxy.
#[derive(Debug, Clone, Default)]
pub struct ReportContext {
    /// Protected attribute keys/prefixes of the running policy: every stamped
    /// key is among them, and spangate strips client-sent ones, so a
    /// protected attribute that reaches the upstream was stamped by spangate.
    pub protected: Vec<String>,
    /// Headers that carry an injected credential (one per upstream).
    pub credential_headers: Vec<String>,
    /// Every credential version the store knows.
    pub versions: Vec<KnownVersion>,
}

impl ReportContext {
    /// Read the running proxy's policy, upstream headers and credential versions.
    pub fn from_shared(shared: &Shared) -> ReportContext {
        let mut credential_headers: Vec<String> = shared
            .config
            .upstreams
            .values()
            .map(|u| u.credential_header.to_ascii_lowercase())
            .collect();
        credential_headers.sort();
        credential_headers.dedup();
        let versions = shared
            .secrets
            .list()
            .into_iter()
            .flat_map(|c| {
                let name = c.name;
                c.versions
                    .into_iter()
                    .map(move |v| (v.fingerprint, name.clone(), v.version))
            })
            .collect();
        ReportContext {
            protected: shared.policy.current().protected_attributes().to_vec(),
            credential_headers,
            versions,
        }
    }
}

/// The lines printed for one received request.
pub fn describe(r: &Received, ctx: &ReportContext) -> Vec<String> {
    let mut lines = Vec::new();
    let ct = r.header("content-type");
    let decoded = Encoding::from_content_type(ct)
        .ok_or_else(|| format!("content type {}", ct.unwrap_or("(none)")))
        .and_then(|enc| {
            otlp::decode(enc, r.body.clone())
                .map(|b| (enc, b))
                .map_err(|e| e.to_string())
        });
    match decoded {
        Ok((enc, batch)) => {
            let kind = match enc {
                Encoding::Protobuf => "protobuf",
                Encoding::Json => "JSON",
            };
            let spans = batch.summary.spans;
            lines.push(format!(
                "upstream <- {} {} span{} ({kind}, {} bytes{})",
                r.path,
                spans,
                if spans == 1 { "" } else { "s" },
                r.body.len(),
                if r.content_encoding.as_deref() == Some("gzip") {
                    " after gunzip"
                } else {
                    ""
                },
            ));
            let mut services: Vec<String> = batch
                .summary
                .resources
                .iter()
                .map(|res| res.service_name.clone().unwrap_or_else(|| "(none)".into()))
                .collect();
            services.sort();
            services.dedup();
            lines.push(format!("  services   {}", shown(&services, SHOWN_SERVICES)));
            let names: Vec<String> = batch
                .request
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .map(|s| s.name.clone())
                .collect();
            lines.push(format!("  spans      {}", shown(&names, SHOWN_SPAN_NAMES)));
            let mut stamped: Vec<String> = batch
                .summary
                .resources
                .iter()
                .flat_map(|res| &res.attributes)
                .filter(|(k, _)| crate::policy::is_protected(&ctx.protected, k))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            stamped.sort();
            stamped.dedup();
            lines.push(format!(
                "  stamped    {}",
                if stamped.is_empty() {
                    "(nothing)".to_string()
                } else {
                    stamped.join(" ")
                }
            ));
        }
        Err(e) => lines.push(format!(
            "upstream <- {} {} bytes, not an OTLP trace batch: {e}",
            r.path,
            r.body.len()
        )),
    }
    lines.push(format!("  credential {}", credential(r, ctx)));
    lines
}

/// `a, b, c (+2 more)`.
fn shown(items: &[String], n: usize) -> String {
    if items.is_empty() {
        return "(none)".into();
    }
    let mut s = items
        .iter()
        .take(n)
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > n {
        s.push_str(&format!(" (+{} more)", items.len() - n));
    }
    s
}

fn credential(r: &Received, ctx: &ReportContext) -> String {
    let injected = ctx
        .credential_headers
        .iter()
        .find_map(|h| r.header(h).map(|v| (h, crate::fingerprint(v.as_bytes()))));
    let mut s = match injected {
        Some((header, fp)) => {
            let which = ctx
                .versions
                .iter()
                .find(|(f, _, _)| *f == fp)
                .map(|(_, name, v)| format!("{name} v{v}"))
                .unwrap_or_else(|| "unknown version".into());
            format!("{which} in {header} (sha256:{fp})")
        }
        None => "none injected".into(),
    };
    s.push_str(if r.header("authorization").is_some() {
        "; client Authorization header PRESENT (bug!)"
    } else {
        "; client token stripped"
    });
    s
}

/// Print every request the upstream receives to `out` until the feed closes.
/// The credential versions are re-read per batch, so a rotation shows.
pub async fn print_feed(
    mut feed: broadcast::Receiver<Received>,
    shared: Arc<Shared>,
    mut out: Box<dyn Write + Send>,
) {
    loop {
        match feed.recv().await {
            Ok(r) => {
                let ctx = ReportContext::from_shared(&shared);
                for line in describe(&r, &ctx) {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let _ = writeln!(
                    out,
                    "upstream <- ({n} batches not shown: printing fell behind)"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
