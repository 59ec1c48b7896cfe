//! Read, parse, validate and lint a policy directory, and build the runtime
//! [`PolicySet`]. One function serves start-up, reload and `policy check`:
//! every problem is collected with the file:line:column of its node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use super::claims::ClaimPath;
use super::lint::LintContext;
use super::locate::{Pos, Seg, YamlIndex, ypath};
use super::matcher::{ClaimMatcher, Glob, SubjectMatcher};
use super::model::{
    BindingFile, DenyFile, Mode, OnViolation, PolicyFile, PublishFile, SubjectFile,
};
use super::template::{Pattern, Template};
use super::{Diagnostic, Endpoint, PolicySet, RateSpec};

/// Largest policy file we read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most policy files in one directory.
pub const MAX_FILES: usize = 256;

/// Admin permissions the admin API checks (kept equal to
/// `admin::auth::Permission::ALL` by a test there).
pub const KNOWN_ADMIN_PERMISSIONS: &[&str] = &[
    "secrets:read",
    "secrets:rotate",
    "policy:reload",
    "policy:validate",
    "status:read",
    "spool:manage",
];

/// One policy file's text.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// Path as shown in diagnostics.
    pub display: String,
    /// File name (used in default rule names, `edge.yaml#0`).
    pub name: String,
    pub text: String,
}

/// Where a rule came from.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// Diagnostic path of the file.
    pub file: String,
    /// Position of the rule.
    pub pos: Pos,
}

impl Origin {
    /// `file:line:column`.
    pub fn location(&self) -> String {
        format!("{}:{}:{}", self.file, self.pos.line, self.pos.column)
    }
}

/// Runtime role.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub name: String,
    pub publish: Option<Publish>,
    pub admin: Vec<String>,
}

/// Runtime publish grant (role) or narrowing (binding).
#[derive(Debug, Clone)]
pub(crate) struct Publish {
    /// Endpoint names; `None` on a binding that does not narrow.
    pub endpoints: Option<Vec<String>>,
    pub constraints: Constraints,
}

/// Runtime publish constraints.
#[derive(Debug, Clone, Default)]
pub(crate) struct Constraints {
    pub services: Option<Vec<Pattern>>,
    pub max_spans: Option<u64>,
    pub max_bytes: Option<u64>,
    pub rate: Option<RateSpec>,
    pub require: Vec<String>,
    pub forbid: Vec<Glob>,
    pub equal: Vec<(String, ClaimPath)>,
    /// Attribute → allowed values (`attribute_values`).
    pub values: Vec<(String, Vec<String>)>,
    pub on_violation: Option<OnViolation>,
}

/// What a binding's rate limit is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RateKey {
    Subject,
    Claim(ClaimPath),
}

/// Runtime binding.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    /// `binding[name]` or `binding[file#index]`.
    pub rule: String,
    /// Index into `PolicySet::roles`.
    pub role: usize,
    pub subjects: Vec<SubjectMatcher>,
    pub credential: Option<String>,
    pub stamp: Vec<(String, Template)>,
    pub rate_key: RateKey,
    pub mode: Mode,
    pub publish: Option<Publish>,
    pub origin: Origin,
}

/// Runtime deny rule.
#[derive(Debug, Clone)]
pub(crate) struct DenyRule {
    /// `deny[name]` or `deny[file#index]`.
    pub rule: String,
    pub subjects: Vec<SubjectMatcher>,
    pub endpoints: Option<Vec<String>>,
    pub mode: Mode,
    pub origin: Origin,
}

/// Result of compiling a directory.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub set: Option<PolicySet>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    pub files: usize,
}

/// Read every `*.yaml` / `*.yml` regular file of `dir` (not hidden), sorted by name.
/// Paths in diagnostics are absolute, so a message names the file wherever
/// the process runs from; problems with no position in a file carry line 0
/// (printed as just the path).
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<Source>, Vec<Diagnostic>> {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let dir = absolute.as_path();
    let whole = |file: &Path, message: String| Diagnostic {
        file: file.display().to_string(),
        line: 0,
        column: 0,
        message,
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| vec![whole(dir, format!("cannot read policy directory: {e}"))])?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| vec![whole(dir, format!("cannot read policy directory: {e}"))])?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if !is_yaml || name.starts_with('.') {
            continue;
        }
        // Follow symlinks (ConfigMap mounts are symlinks); skip directories.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => paths.push((name, path, m.len())),
            Ok(_) => {}
            Err(e) => return Err(vec![whole(&path, format!("cannot read policy file: {e}"))]),
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(vec![whole(
            dir,
            "no policy files (*.yaml, *.yml) in directory".into(),
        )]);
    }
    if paths.len() > MAX_FILES {
        return Err(vec![whole(
            dir,
            format!("more than {MAX_FILES} policy files"),
        )]);
    }
    let mut out = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for (name, path, len) in paths {
        if len > MAX_FILE_BYTES {
            errors.push(whole(
                &path,
                format!("policy file larger than {MAX_FILE_BYTES} bytes"),
            ));
            continue;
        }
        match std::fs::read_to_string(&path) {
            // A 0-byte (or blank) file is a write in progress or a mistake,
            // never a policy: refusing it keeps the last good set serving.
            Ok(text) if text.trim().is_empty() => errors.push(whole(
                &path,
                "policy file is empty (a file without rules must say so, e.g. with a comment)"
                    .into(),
            )),
            Ok(text) => out.push(Source {
                display: path.display().to_string(),
                name,
                text,
            }),
            Err(e) => errors.push(whole(&path, format!("cannot read policy file: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A parsed file with its location index.
struct Parsed<'a> {
    src: &'a Source,
    file: PolicyFile,
    index: YamlIndex,
}

/// Diagnostics sink.
#[derive(Default)]
struct Diags {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Diags {
    fn error(&mut self, file: &str, pos: Pos, message: impl Into<String>) {
        self.errors.push(diag(file, pos, message.into()));
    }
    fn warn(&mut self, file: &str, pos: Pos, message: impl Into<String>) {
        self.warnings.push(diag(file, pos, message.into()));
    }
}

fn diag(file: &str, pos: Pos, message: String) -> Diagnostic {
    Diagnostic {
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        message,
    }
}

/// Parse one file; on failure, a diagnostic at serde's location.
fn parse(src: &Source) -> Result<PolicyFile, Diagnostic> {
    // A file of only comments (or empty) is an empty policy.
    let is_blank = src
        .text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---");
    if is_blank {
        return Ok(PolicyFile::default());
    }
    if let Some((line, column)) = super::locate::flow_too_deep(&src.text) {
        return Err(diag(
            &src.display,
            Pos { line, column },
            super::locate::flow_too_deep_message(),
        ));
    }
    serde_yaml::from_str::<PolicyFile>(&src.text).map_err(|e| {
        let pos = e
            .location()
            .map(|l| Pos {
                line: l.line(),
                column: l.column(),
            })
            .unwrap_or(Pos::START);
        let mut message = e.to_string();
        let suffix = format!(" at line {} column {}", pos.line, pos.column);
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
        diag(&src.display, pos, message)
    })
}

/// Compile sources; `ctx` adds the lints that need the process config.
pub(crate) fn compile(sources: &[Source], ctx: Option<&LintContext>) -> Compiled {
    let mut d = Diags::default();
    let mut parsed = Vec::with_capacity(sources.len());
    for src in sources {
        match parse(src) {
            Ok(file) => {
                let index = YamlIndex::build(&src.text);
                for dup in index.duplicates() {
                    d.error(
                        &src.display,
                        dup.second,
                        format!(
                            "duplicate key `{}` (first at line {} column {})",
                            dup.key, dup.first.line, dup.first.column
                        ),
                    );
                }
                parsed.push(Parsed { src, index, file });
            }
            Err(e) => d.errors.push(e),
        }
    }
    // Cross-file references are only checked when every file parsed, so one
    // syntax error does not cascade into "unknown role" noise.
    let check_refs = d.errors.is_empty();
    let mut c = Compiler {
        d,
        check_refs,
        ctx,
        endpoint_names: HashMap::new(),
        role_names: HashMap::new(),
        rule_names: HashMap::new(),
    };
    let set = c.compile(&parsed, sources);
    let Compiler { mut d, .. } = c;
    d.errors
        .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    d.warnings
        .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    let set = if d.errors.is_empty() {
        let mut set = set;
        set.warnings = d.warnings.clone();
        Some(set)
    } else {
        None
    };
    Compiled {
        set,
        errors: d.errors,
        warnings: d.warnings,
        files: sources.len(),
    }
}

struct Compiler<'c> {
    d: Diags,
    check_refs: bool,
    ctx: Option<&'c LintContext>,
    /// name → "file:line:column" of the first definition.
    endpoint_names: HashMap<String, String>,
    role_names: HashMap<String, (String, usize)>,
    rule_names: HashMap<String, String>,
}

fn loc(file: &str, pos: Pos) -> String {
    format!("{file}:{}:{}", pos.line, pos.column)
}

impl Compiler<'_> {
    fn compile(&mut self, parsed: &[Parsed<'_>], sources: &[Source]) -> PolicySet {
        let mut set = PolicySet {
            version: version(sources),
            ..PolicySet::default()
        };
        let mut endpoint_paths: HashMap<String, String> = HashMap::new();

        // Endpoints first: roles and deny rules refer to them.
        for p in parsed {
            let file = p.src.display.as_str();
            for (name, ep) in &p.file.endpoints {
                let key = p.index.key(&ypath!["endpoints", name]);
                if let Some(first) = self.endpoint_names.get(name) {
                    self.d.error(
                        file,
                        key,
                        format!("endpoint `{name}` is defined twice (first at {first})"),
                    );
                    continue;
                }
                self.endpoint_names.insert(name.clone(), loc(file, key));
                let path_pos = p.index.value(&ypath!["endpoints", name, "path"]);
                if !ep.path.starts_with('/') {
                    self.d.error(
                        file,
                        path_pos,
                        format!("endpoint path `{}` must start with `/`", ep.path),
                    );
                }
                if let Some(first) = endpoint_paths.get(&ep.path) {
                    self.d.error(
                        file,
                        path_pos,
                        format!("endpoint path `{}` is already used by {first}", ep.path),
                    );
                } else {
                    endpoint_paths.insert(
                        ep.path.clone(),
                        format!("endpoint `{name}` at {}", loc(file, path_pos)),
                    );
                }
                let up_pos = p.index.value(&ypath!["endpoints", name, "upstream"]);
                if ep.upstream.is_empty() {
                    self.d.error(file, up_pos, "upstream must not be empty");
                } else if let Some(ups) = self.ctx.and_then(|c| c.upstreams.as_ref())
                    && !ups.contains(&ep.upstream)
                {
                    self.d.warn(
                        file,
                        up_pos,
                        format!(
                            "unknown upstream `{}` (not in the process config)",
                            ep.upstream
                        ),
                    );
                }
                let by_path = crate::otlp::signal_of_path(&ep.path);
                let signal = match ep.signal.as_deref() {
                    None => by_path.unwrap_or(crate::otlp::Signal::Traces),
                    Some(declared) => {
                        let sig_pos = p.index.value(&ypath!["endpoints", name, "signal"]);
                        match crate::otlp::signal_by_name(declared) {
                            None => {
                                self.d.error(
                                    file,
                                    sig_pos,
                                    format!(
                                        "unknown signal `{declared}` (expected traces, metrics or logs)"
                                    ),
                                );
                                crate::otlp::Signal::Traces
                            }
                            Some(sig) => {
                                if let Some(implied) = by_path
                                    && implied != sig
                                {
                                    self.d.error(
                                        file,
                                        sig_pos,
                                        format!(
                                            "endpoint path `{}` is the standard {} path but signal is `{declared}`",
                                            ep.path,
                                            implied.as_str()
                                        ),
                                    );
                                }
                                sig
                            }
                        }
                    }
                };
                if let Some(has) = self.ctx.and_then(|c| c.upstream_signals.get(&ep.upstream))
                    && !has.contains(&signal)
                {
                    let offers: Vec<&str> = has.iter().map(|s| s.as_str()).collect();
                    self.d.error(
                        file,
                        up_pos,
                        format!(
                            "endpoint `{name}` carries {} but upstream `{}` has no {} target (it forwards {}): give the upstream a `preset`, a standard `/v1/traces` url or `paths.{}`",
                            signal.as_str(),
                            ep.upstream,
                            signal.as_str(),
                            if offers.is_empty() { "nothing".to_string() } else { offers.join(", ") },
                            signal.as_str()
                        ),
                    );
                }
                set.endpoints.push(Endpoint {
                    name: name.clone(),
                    path: ep.path.clone(),
                    upstream: ep.upstream.clone(),
                    signal,
                    auth: ep.auth,
                });
            }
        }

        if set.endpoints.is_empty()
            && self.check_refs
            && let Some(first) = sources.first()
        {
            self.d.warn(
                &first.display,
                Pos::START,
                "no endpoints defined: every request will be 404",
            );
        }

        // Roles.
        for p in parsed {
            let file = p.src.display.as_str();
            for (name, role) in &p.file.roles {
                let base = ypath!["roles", name];
                let key = p.index.key(&base);
                if let Some((first, _)) = self.role_names.get(name) {
                    self.d.error(
                        file,
                        key,
                        format!("role `{name}` is defined twice (first at {first})"),
                    );
                    continue;
                }
                self.role_names
                    .insert(name.clone(), (loc(file, key), set.roles.len()));
                let publish = role
                    .publish
                    .as_ref()
                    .and_then(|pf| self.publish(p, &ypath!["roles", name, "publish"], pf, true));
                if role.publish.is_none() && role.admin.is_empty() {
                    self.d.warn(
                        file,
                        key,
                        format!("role `{name}` grants nothing (no publish, no admin)"),
                    );
                }
                for (i, perm) in role.admin.iter().enumerate() {
                    if !KNOWN_ADMIN_PERMISSIONS.contains(&perm.as_str()) {
                        self.d.warn(
                            file,
                            p.index.value(&ypath!["roles", name, "admin", i]),
                            format!(
                                "unknown admin permission `{perm}` (known: {})",
                                KNOWN_ADMIN_PERMISSIONS.join(", ")
                            ),
                        );
                    }
                }
                set.roles.push(Role {
                    name: name.clone(),
                    publish,
                    admin: role.admin.clone(),
                });
            }
        }

        // Deny rules and bindings, in file order.
        let mut used_roles = BTreeSet::new();
        for p in parsed {
            for (i, rule) in p.file.deny.iter().enumerate() {
                if let Some(r) = self.deny(p, i, rule) {
                    set.deny.push(r);
                }
            }
            for (i, b) in p.file.bindings.iter().enumerate() {
                if let Some(idx) = self.role_names.get(&b.role).map(|(_, idx)| *idx) {
                    used_roles.insert(idx);
                }
                if let Some(r) = self.binding(p, i, b, &set) {
                    set.bindings.push(r);
                }
            }
        }

        // Protected attributes: declared ones plus every stamped key.
        let mut protected = BTreeSet::new();
        for p in parsed {
            for (i, key) in p.file.protected_attributes.iter().enumerate() {
                if key.is_empty() || key == "." {
                    self.d.error(
                        &p.src.display,
                        p.index.value(&ypath!["protected_attributes", i]),
                        "protected attribute must be a key or a prefix ending in `.`",
                    );
                } else {
                    protected.insert(key.clone());
                }
            }
        }
        for b in &set.bindings {
            protected.extend(b.stamp.iter().map(|(k, _)| k.clone()));
        }
        set.protected = protected.into_iter().collect();

        // Unused roles (only meaningful when every file parsed).
        if self.check_refs {
            for p in parsed {
                for name in p.file.roles.keys() {
                    let Some((_, idx)) = self.role_names.get(name) else {
                        continue;
                    };
                    if !used_roles.contains(idx) {
                        self.d.warn(
                            &p.src.display,
                            p.index.key(&ypath!["roles", name]),
                            format!("role `{name}` is not used by any binding"),
                        );
                    }
                }
            }
        }
        set
    }

    /// The rule's display name; records an error if a given name is empty or taken.
    fn rule_name(
        &mut self,
        p: &Parsed<'_>,
        kind: &str,
        i: usize,
        name: Option<&String>,
        base: &[Seg],
    ) -> String {
        let file = p.src.display.as_str();
        match name {
            Some(n) => {
                let pos = p.index.value(&[base, &[Seg::from("name")]].concat());
                if n.is_empty() {
                    self.d.error(file, pos, "rule name must not be empty");
                } else if let Some(first) = self.rule_names.get(n) {
                    self.d.error(
                        file,
                        pos,
                        format!("rule name `{n}` is used twice (first at {first})"),
                    );
                } else {
                    self.rule_names.insert(n.clone(), loc(file, pos));
                }
                format!("{kind}[{n}]")
            }
            None => format!("{kind}[{}#{i}]", p.src.name),
        }
    }

    fn deny(&mut self, p: &Parsed<'_>, i: usize, rule: &DenyFile) -> Option<DenyRule> {
        let file = p.src.display.as_str();
        let base = ypath!["deny", i];
        let name = self.rule_name(p, "deny", i, rule.name.as_ref(), &base);
        let subjects = self.subjects(p, &base, &rule.subjects, None);
        if let Some(eps) = &rule.endpoints {
            if eps.is_empty() {
                self.d.error(
                    file,
                    p.index.value(&ypath!["deny", i, "endpoints"]),
                    "endpoints must not be empty (omit it to cover every endpoint)",
                );
            }
            for (j, ep) in eps.iter().enumerate() {
                self.endpoint_ref(p, &ypath!["deny", i, "endpoints", j], ep);
            }
        }
        Some(DenyRule {
            rule: name,
            subjects: subjects?,
            endpoints: rule.endpoints.clone(),
            mode: rule.mode,
            origin: Origin {
                file: file.to_string(),
                pos: p.index.value(&base),
            },
        })
    }

    fn binding(
        &mut self,
        p: &Parsed<'_>,
        i: usize,
        b: &BindingFile,
        set: &PolicySet,
    ) -> Option<Binding> {
        let file = p.src.display.as_str();
        let base = ypath!["bindings", i];
        let at = |rest: &[Seg]| [base.as_slice(), rest].concat();
        let rule = self.rule_name(p, "binding", i, b.name.as_ref(), &base);
        let role_pos = p.index.value(&at(&ypath!["role"]));
        let role_idx = self.role_names.get(&b.role).map(|(_, idx)| *idx);
        let role = role_idx.and_then(|idx| set.roles.get(idx));
        if role_idx.is_none() && self.check_refs {
            self.d
                .error(file, role_pos, format!("unknown role `{}`", b.role));
        }
        let providers: Vec<&str> = b.subjects.iter().map(|s| s.provider.as_str()).collect();
        let subjects = self.subjects(p, &base, &b.subjects, Some(b.allow_any_subject));

        // Credential.
        let publishes = role.is_some_and(|r| r.publish.is_some());
        let cred_pos = p.index.value(&at(&ypath!["credential"]));
        match (&b.credential, publishes) {
            (None, true) => self.d.error(
                file,
                p.index.value(&base),
                format!(
                    "binding grants publish (role `{}`) but names no credential",
                    b.role
                ),
            ),
            (Some(c), _) if c.is_empty() => {
                self.d.error(file, cred_pos, "credential must not be empty")
            }
            (Some(c), true) => {
                if let Some(known) = self.ctx.and_then(|x| x.credentials.as_ref())
                    && !known.contains(c)
                {
                    self.d.warn(
                        file,
                        cred_pos,
                        format!(
                            "unknown credential `{c}` (not bootstrapped in the process config)"
                        ),
                    );
                }
            }
            (Some(_), false) if role.is_some() => self.d.warn(
                file,
                cred_pos,
                "credential has no effect: the role does not publish",
            ),
            _ => {}
        }

        // Stamps.
        let mut stamp = Vec::new();
        if !b.stamp.is_empty() && role.is_some() && !publishes {
            self.d.warn(
                file,
                p.index.key(&at(&ypath!["stamp"])),
                "stamp has no effect: the role does not publish",
            );
        }
        for (key, text) in &b.stamp {
            let kpos = p.index.key(&at(&ypath!["stamp", key]));
            let vpos = p.index.value(&at(&ypath!["stamp", key]));
            if key.is_empty() {
                self.d
                    .error(file, kpos, "stamp attribute key must not be empty");
                continue;
            }
            match Template::parse(text) {
                Ok(t) => {
                    for c in t.claims() {
                        self.claim_sent(file, vpos, &providers, c);
                    }
                    stamp.push((key.clone(), t));
                }
                Err(e) => self.d.error(file, vpos, format!("bad template: {e}")),
            }
        }

        // Rate key.
        let rate_key = match b.rate_key.as_deref() {
            None | Some("subject") => Some(RateKey::Subject),
            Some(text) => {
                let pos = p.index.value(&at(&ypath!["rate_key"]));
                match ClaimPath::parse_whole_reference(text) {
                    Ok(path) => {
                        self.claim_sent(file, pos, &providers, &path);
                        Some(RateKey::Claim(path))
                    }
                    Err(e) => {
                        self.d.error(
                            file,
                            pos,
                            format!("rate_key must be `subject` or `claims.<path>`: {e}"),
                        );
                        None
                    }
                }
            }
        };

        // Binding-level constraints.
        let publish = b
            .publish
            .as_ref()
            .and_then(|pf| self.publish(p, &at(&ypath!["publish"]), pf, false));
        if b.publish.is_some() && role.is_some() && !publishes {
            self.d.warn(
                file,
                p.index.key(&at(&ypath!["publish"])),
                "publish constraints have no effect: the role does not publish",
            );
        }
        // A binding narrows the role's endpoints; naming others is a mistake.
        if let (Some(Some(role_eps)), Some(Some(own))) = (
            role.map(|r| r.publish.as_ref().and_then(|p| p.endpoints.as_ref())),
            b.publish.as_ref().map(|p| p.endpoints.as_ref()),
        ) {
            for (j, ep) in own.iter().enumerate() {
                if !role_eps.contains(ep) {
                    self.d.warn(
                        file,
                        p.index.value(&at(&ypath!["publish", "endpoints", j])),
                        format!(
                            "endpoint `{ep}` is not in role `{}`'s publish.endpoints: \
                             the binding never applies to it",
                            b.role
                        ),
                    );
                }
            }
        }
        // Templates in the role are rendered from this binding's subjects' claims.
        if let Some(Publish { constraints, .. }) = role.and_then(|r| r.publish.as_ref()) {
            if let Some(services) = &constraints.services {
                for pat in services {
                    for c in pat.claims() {
                        self.claim_sent(file, role_pos, &providers, c);
                    }
                }
            }
            for (_, c) in &constraints.equal {
                self.claim_sent(file, role_pos, &providers, c);
            }
        }

        Some(Binding {
            rule,
            role: role_idx?,
            subjects: subjects?,
            credential: b.credential.clone(),
            stamp,
            rate_key: rate_key?,
            mode: b.mode,
            publish,
            origin: Origin {
                file: file.to_string(),
                pos: p.index.value(&base),
            },
        })
    }

    /// Warn when a provider is known not to send the claim a template reads.
    fn claim_sent(&mut self, file: &str, pos: Pos, providers: &[&str], path: &ClaimPath) {
        let Some(ctx) = self.ctx else { return };
        for provider in providers {
            if let Some(Some(claims)) = ctx.providers.as_ref().and_then(|p| p.get(*provider))
                && !claims.contains(path.root())
            {
                self.d.warn(
                    file,
                    pos,
                    format!(
                        "provider `{provider}` may not send claim `{}` (reads claims.{path})",
                        path.root()
                    ),
                );
            }
        }
    }

    fn endpoint_ref(&mut self, p: &Parsed<'_>, path: &[Seg], name: &str) {
        if self.check_refs && !self.endpoint_names.contains_key(name) {
            self.d.error(
                &p.src.display,
                p.index.value(path),
                format!("unknown endpoint `{name}`"),
            );
        }
    }

    /// Compile subject matchers; `allow_any` is `Some` for bindings (where a
    /// matcher that accepts every identity of a provider is an error).
    fn subjects(
        &mut self,
        p: &Parsed<'_>,
        base: &[Seg],
        subjects: &[SubjectFile],
        allow_any: Option<bool>,
    ) -> Option<Vec<SubjectMatcher>> {
        let file = p.src.display.as_str();
        let spath = [base, &[Seg::from("subjects")]].concat();
        if subjects.is_empty() {
            self.d
                .error(file, p.index.value(&spath), "subjects must not be empty");
            return None;
        }
        let mut out = Vec::with_capacity(subjects.len());
        let mut ok = true;
        for (i, s) in subjects.iter().enumerate() {
            let sp = [spath.as_slice(), &[Seg::from(i)]].concat();
            let provider_pos = p
                .index
                .value(&[sp.as_slice(), &[Seg::from("provider")]].concat());
            if s.provider.is_empty() {
                self.d
                    .error(file, provider_pos, "provider must not be empty");
                ok = false;
            } else if let Some(providers) = self.ctx.and_then(|c| c.providers.as_ref())
                && !providers.contains_key(&s.provider)
            {
                self.d.warn(
                    file,
                    provider_pos,
                    format!(
                        "unknown provider `{}` (not in the process config)",
                        s.provider
                    ),
                );
            }
            let mut claims = Vec::with_capacity(s.claims.len());
            for (key, value) in &s.claims {
                let cp = [sp.as_slice(), &[Seg::from("claims"), Seg::from(key)]].concat();
                let path = match ClaimPath::parse(key) {
                    Ok(path) => path,
                    Err(e) => {
                        self.d.error(file, p.index.key(&cp), e.to_string());
                        ok = false;
                        continue;
                    }
                };
                self.claim_sent(file, p.index.key(&cp), &[s.provider.as_str()], &path);
                match self.claim_values(p, &cp, value) {
                    Some(any_of) => claims.push(ClaimMatcher { path, any_of }),
                    None => ok = false,
                }
            }
            let m = SubjectMatcher {
                provider: s.provider.clone(),
                claims,
            };
            if allow_any == Some(false) && m.is_universal() && ok {
                self.d.error(
                    file,
                    p.index.value(&sp),
                    format!(
                        "subject matches every identity of provider `{}` (no claims, or only `*` globs); \
                         add claim matchers or set `allow_any_subject: true`",
                        s.provider
                    ),
                );
            }
            out.push(m);
        }
        ok.then_some(out)
    }

    fn claim_values(
        &mut self,
        p: &Parsed<'_>,
        path: &[Seg],
        value: &serde_yaml::Value,
    ) -> Option<Vec<Glob>> {
        use serde_yaml::Value as Y;
        let file = p.src.display.as_str();
        let scalar = |v: &Y| match v {
            Y::String(s) => Some(s.clone()),
            Y::Number(n) => Some(n.to_string()),
            Y::Bool(b) => Some(b.to_string()),
            Y::Null | Y::Sequence(_) | Y::Mapping(_) | Y::Tagged(_) => None,
        };
        let items: Vec<(Vec<Seg>, &Y)> = match value {
            Y::Sequence(seq) => {
                if seq.is_empty() {
                    self.d
                        .error(file, p.index.value(path), "an empty list matches nothing");
                    return None;
                }
                seq.iter()
                    .enumerate()
                    .map(|(i, v)| ([path, &[Seg::from(i)]].concat(), v))
                    .collect()
            }
            other => vec![(path.to_vec(), other)],
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (at, v) in items {
            let pos = p.index.value(&at);
            let Some(text) = scalar(v) else {
                self.d.error(
                    file,
                    pos,
                    "claim matcher must be a string, number, boolean, or a list of them",
                );
                ok = false;
                continue;
            };
            match Glob::parse(&text) {
                Ok(g) => out.push(g),
                Err(e) => {
                    self.d.error(file, pos, format!("bad glob: {e}"));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn publish(
        &mut self,
        p: &Parsed<'_>,
        base: &[Seg],
        pf: &PublishFile,
        is_role: bool,
    ) -> Option<Publish> {
        let file = p.src.display.as_str();
        let at = |rest: &[Seg]| [base, rest].concat();
        let mut ok = true;
        match &pf.endpoints {
            None if is_role => {
                self.d.error(
                    file,
                    p.index.key(base),
                    "publish.endpoints is required on a role",
                );
                ok = false;
            }
            Some(eps) if eps.is_empty() => {
                self.d.error(
                    file,
                    p.index.value(&at(&ypath!["endpoints"])),
                    "endpoints must not be empty",
                );
                ok = false;
            }
            Some(eps) => {
                for (j, ep) in eps.iter().enumerate() {
                    self.endpoint_ref(p, &at(&ypath!["endpoints", j]), ep);
                }
            }
            None => {}
        }
        let mut c = Constraints::default();
        if let Some(services) = &pf.services {
            if services.is_empty() {
                self.d.error(
                    file,
                    p.index.value(&at(&ypath!["services"])),
                    "services must not be empty (omit it to allow any service.name)",
                );
                ok = false;
            }
            let mut pats = Vec::with_capacity(services.len());
            for (j, s) in services.iter().enumerate() {
                let pos = p.index.value(&at(&ypath!["services", j]));
                match Pattern::parse(s) {
                    Ok(pat) => {
                        if pat.has_wildcard() && !pat.has_template() {
                            self.d.warn(
                                file,
                                pos,
                                format!(
                                    "service pattern `{s}` has a wildcard but no claim template: \
                                     any holder may publish as any matching service"
                                ),
                            );
                        }
                        pats.push(pat);
                    }
                    Err(e) => {
                        self.d.error(file, pos, format!("bad service pattern: {e}"));
                        ok = false;
                    }
                }
            }
            c.services = Some(pats);
        } else if is_role {
            self.d.warn(
                file,
                p.index.key(base),
                "no `services`: holders may publish any service.name",
            );
        }
        if pf.max_spans_per_batch == Some(0) {
            self.d.error(
                file,
                p.index.value(&at(&ypath!["max_spans_per_batch"])),
                "max_spans_per_batch must be at least 1",
            );
            ok = false;
        }
        c.max_spans = pf.max_spans_per_batch;
        let max_bytes = pf.max_bytes.map(|b| b.as_u64());
        if max_bytes == Some(0) {
            self.d.error(
                file,
                p.index.value(&at(&ypath!["max_bytes"])),
                "max_bytes must be at least 1",
            );
            ok = false;
        }
        c.max_bytes = max_bytes;
        if let Some(rate) = &pf.rate {
            for problem in rate.problems() {
                self.d
                    .error(file, p.index.value(&at(&ypath!["rate"])), problem);
                ok = false;
            }
            c.rate = Some(*rate);
        }
        for (j, key) in pf.require_attributes.iter().enumerate() {
            if key.is_empty() {
                self.d.error(
                    file,
                    p.index.value(&at(&ypath!["require_attributes", j])),
                    "attribute key must not be empty",
                );
                ok = false;
            }
        }
        c.require = pf.require_attributes.clone();
        for (j, key) in pf.forbid_attributes.iter().enumerate() {
            let pos = p.index.value(&at(&ypath!["forbid_attributes", j]));
            match Glob::parse(key) {
                Ok(g) if !key.is_empty() => c.forbid.push(g),
                Ok(_) => {
                    self.d.error(file, pos, "attribute key must not be empty");
                    ok = false;
                }
                Err(e) => {
                    self.d.error(file, pos, format!("bad glob: {e}"));
                    ok = false;
                }
            }
        }
        for (attr, claim) in &pf.attributes_equal_claims {
            let vpos = p.index.value(&at(&ypath!["attributes_equal_claims", attr]));
            if attr.is_empty() {
                self.d.error(file, vpos, "attribute key must not be empty");
                ok = false;
                continue;
            }
            match ClaimPath::parse_whole_reference(claim) {
                Ok(path) => c.equal.push((attr.clone(), path)),
                Err(e) => {
                    self.d.error(file, vpos, e.to_string());
                    ok = false;
                }
            }
        }
        for (attr, values) in &pf.attribute_values {
            let vpos = p.index.value(&at(&ypath!["attribute_values", attr]));
            if attr.is_empty() {
                self.d.error(file, vpos, "attribute key must not be empty");
                ok = false;
            } else if values.is_empty() || values.iter().any(String::is_empty) {
                self.d.error(
                    file,
                    vpos,
                    "attribute_values needs a non-empty list of non-empty values",
                );
                ok = false;
            } else {
                c.values.push((attr.clone(), values.clone()));
            }
        }
        c.on_violation = pf.on_violation;
        ok.then_some(Publish {
            endpoints: pf.endpoints.clone(),
            constraints: c,
        })
    }
}

/// Short hash of every file name and content, in load order.
fn version(sources: &[Source]) -> String {
    let mut all = Vec::new();
    for s in sources {
        all.extend_from_slice(s.name.as_bytes());
        all.push(0);
        all.extend_from_slice(s.text.as_bytes());
        all.push(0);
    }
    crate::fingerprint(&all)
}

/// Known claims by provider, used by [`LintContext`]; kept here so the
/// compiler and the lint context agree on the shape.
pub(crate) type ProviderClaims = BTreeMap<String, Option<BTreeSet<String>>>;
