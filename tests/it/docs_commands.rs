//! The documentation cannot drift from the binary: every `spangate …` command
//! shown in README.md and docs/*.md (shell code blocks and inline code) is
//! checked against the real binary's argument parser, and every relative link
//! resolves to an existing file and heading.
//!
//! A command is checked by running the built `spangate` with the documented
//! arguments plus `--help`: clap parses every subcommand, flag and typed value
//! before it acts on `--help`, so an unknown subcommand or flag, or a value
//! that does not parse, exits 2, while a valid line prints help and exits 0
//! without doing anything. Placeholders (`FILE`, `NAME`, `$TOKEN`) are plain
//! strings to the parser; `<name>` becomes a sample value (`<command>` in the
//! subcommand's place, like `…`, ends the checked part of a line).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

/// One command line shown in a document.
#[derive(Debug)]
struct Shown {
    file: String,
    line: usize,
    text: String,
    /// The arguments after `spangate`.
    argv: Vec<String>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, sorted.
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Shell-ish fenced blocks are searched; YAML, JSON and other blocks are not.
fn is_shell(kind: &CodeBlockKind) -> bool {
    match kind {
        CodeBlockKind::Fenced(lang) => {
            matches!(lang.as_ref(), "" | "sh" | "bash" | "shell" | "console")
        }
        CodeBlockKind::Indented => false,
    }
}

/// The `spangate` argument vectors in one shell line (pipelines and `&&`
/// chains are split; `VAR=value` prefixes skipped; `cargo run --locked --`
/// and `docker run … spangate` count as `spangate`). `Err` when the line
/// mentions spangate but cannot be split like a shell would.
fn commands_in_line(line: &str) -> Result<Vec<Vec<String>>, String> {
    let line = line.trim();
    let line = line.strip_prefix("$ ").unwrap_or(line);
    if !line.contains("spangate") && !line.contains("cargo run") {
        return Ok(Vec::new());
    }
    let Some(words) = shlex::split(line) else {
        return Err("cannot split the line like a shell would (unbalanced quotes?)".into());
    };
    let mut out = Vec::new();
    for segment in words.split(|w| matches!(w.as_str(), "|" | "||" | "&&" | ";")) {
        let mut rest: &[String] = segment;
        while let Some(first) = rest.first() {
            let is_assignment = first.split_once('=').is_some_and(|(name, _)| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            });
            if !is_assignment {
                break;
            }
            rest = &rest[1..];
        }
        let argv: Option<&[String]> = match rest {
            [first, tail @ ..] if first == "spangate" => Some(tail),
            [c, r, l, dd, tail @ ..]
                if c == "cargo" && r == "run" && l == "--locked" && dd == "--" =>
            {
                Some(tail)
            }
            [d, r, tail @ ..] if d == "docker" && r == "run" => tail
                .iter()
                .position(|w| w == "spangate")
                .map(|i| &tail[i + 1..]),
            _ => None,
        };
        let Some(argv) = argv else { continue };
        let mut args = Vec::new();
        for word in argv {
            if word == "…" || word == "..." || word.ends_with('…') {
                break;
            }
            if word.starts_with('<') && word.ends_with('>') {
                if args.is_empty() {
                    break; // `spangate <command>`: any subcommand
                }
                args.push("sample".to_string());
            } else {
                args.push(word.clone());
            }
        }
        out.push(args);
    }
    Ok(out)
}

/// Every command shown in one Markdown text.
fn commands_in(file: &str, text: &str) -> (Vec<Shown>, Vec<String>) {
    let mut shown = Vec::new();
    let mut problems = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (event, range) in Parser::new(text).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(kind)) if is_shell(&kind) => {
                block = Some((line_of(text, range.start) + 1, String::new()));
            }
            Event::Text(t) => {
                if let Some((_, buf)) = block.as_mut() {
                    buf.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                let Some((first_line, buf)) = block.take() else {
                    continue;
                };
                // Join `\` continuations, remembering where each command starts.
                let mut joined: Vec<(usize, String)> = Vec::new();
                let mut continuing = false;
                for (i, l) in buf.lines().enumerate() {
                    let (body, cont) = match l.trim_end().strip_suffix('\\') {
                        Some(b) => (b, true),
                        None => (l, false),
                    };
                    match joined.last_mut() {
                        Some((_, acc)) if continuing => {
                            acc.push(' ');
                            acc.push_str(body);
                        }
                        _ => joined.push((first_line + i, body.to_string())),
                    }
                    continuing = cont;
                }
                for (line, l) in joined {
                    match commands_in_line(&l) {
                        Ok(cmds) => shown.extend(cmds.into_iter().map(|argv| Shown {
                            file: file.to_string(),
                            line,
                            text: l.trim().to_string(),
                            argv,
                        })),
                        Err(e) => problems.push(format!("{file}:{line}: `{}`: {e}", l.trim())),
                    }
                }
            }
            Event::Code(code)
                if block.is_none()
                    && (code.starts_with("spangate ")
                        || code.as_ref() == "spangate"
                        || code.starts_with("cargo run --locked -- ")) =>
            {
                let line = line_of(text, range.start);
                match commands_in_line(&code) {
                    Ok(cmds) => shown.extend(cmds.into_iter().map(|argv| Shown {
                        file: file.to_string(),
                        line,
                        text: code.to_string(),
                        argv,
                    })),
                    Err(e) => problems.push(format!("{file}:{line}: `{code}`: {e}")),
                }
            }
            _ => {}
        }
    }
    (shown, problems)
}

/// Parse `argv` with the real binary. `Err` carries clap's message.
fn check(argv: &[String]) -> Result<(), String> {
    let mut args: Vec<&str> = argv.iter().map(String::as_str).collect();
    if !args
        .iter()
        .any(|a| matches!(*a, "--help" | "-h" | "--version" | "-V" | "help"))
    {
        args.push("--help");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_spangate"))
        .args(&args)
        .env_remove("SPANGATE_CONFIG")
        .env_remove("SPANGATE_ADMIN_TOKEN")
        .output()
        .map_err(|e| format!("cannot run spangate: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed without a message")
            .to_string())
    }
}

#[test]
fn every_documented_spangate_command_parses() {
    let mut all = Vec::new();
    let mut failures = Vec::new();
    for path in doc_files() {
        let text = std::fs::read_to_string(&path).expect("read doc");
        let (shown, problems) = commands_in(&rel(&path), &text);
        all.extend(shown);
        failures.extend(problems);
    }
    // The docs show dozens of commands; finding few means the scan broke.
    assert!(
        all.len() >= 30,
        "only {} commands found in the docs: {all:#?}",
        all.len()
    );
    for s in &all {
        if let Err(e) = check(&s.argv) {
            failures.push(format!("{}:{}: `{}`: {e}", s.file, s.line, s.text));
        }
    }
    assert!(
        failures.is_empty(),
        "documented commands the binary does not accept:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_check_refuses_commands_the_binary_does_not_have() {
    let doc = "Text.\n\n```sh\nspangate policy validate --remote policies/*.yaml\n\
               spangate policy frobnicate\nspangate secrets retire lightstep-prod three\n\
               cargo run --locked -- dev --no-such-flag\n```\n\n\
               Inline: `spangate status --nope`.\n";
    let (shown, problems) = commands_in("sample.md", doc);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(shown.len(), 5, "{shown:#?}");
    for s in &shown {
        assert!(check(&s.argv).is_err(), "accepted: {}", s.text);
    }
    assert_eq!(shown[0].line, 4);
    assert_eq!(shown[4].line, 10);
}

#[test]
fn the_scan_finds_commands_in_pipelines_continuations_and_prefixes() {
    let doc = "```sh\nvault read -field=token x | spangate secrets rotate lp   # stdin\n\
               LIGHTSTEP_ACCESS_TOKEN=x spangate serve \\\n  --config c.yaml\n\
               $ spangate policy check ./policies\n\
               docker run --rm -p 4318:4318 -e TOKEN spangate dev --demo\n\
               spangate secrets show <name>\nspangate secrets …\n```\n\
               ```yaml\n# spangate policy nothing-to-see\n```\n";
    let (shown, problems) = commands_in("sample.md", doc);
    assert!(problems.is_empty(), "{problems:?}");
    let argvs: Vec<Vec<String>> = shown.into_iter().map(|s| s.argv).collect();
    let want: Vec<Vec<&str>> = vec![
        vec!["secrets", "rotate", "lp"],
        vec!["serve", "--config", "c.yaml"],
        vec!["policy", "check", "./policies"],
        vec!["dev", "--demo"],
        vec!["secrets", "show", "sample"],
        vec!["secrets"],
    ];
    assert_eq!(argvs, want);
    for argv in &argvs {
        check(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    }
}

/// GitHub's heading anchors: lower case, spaces to `-`, punctuation other
/// than `-` and `_` dropped; repeated headings get `-1`, `-2`, ….
fn anchors_of(text: &str) -> Vec<String> {
    let mut anchors: Vec<String> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut heading: Option<String> = None;
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let Some(h) = heading.take() else { continue };
                let slug: String = h
                    .trim()
                    .to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect();
                let n = seen.entry(slug.clone()).or_insert(0);
                anchors.push(if *n == 0 { slug } else { format!("{slug}-{n}") });
                *n += 1;
            }
            _ => {}
        }
    }
    anchors
}

#[test]
fn relative_links_in_the_docs_resolve() {
    let mut failures = Vec::new();
    let mut links = 0;
    for path in doc_files() {
        let text = std::fs::read_to_string(&path).expect("read doc");
        let dir = path.parent().expect("doc dir");
        for (event, range) in Parser::new(&text).into_offset_iter() {
            let dest = match event {
                Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => dest_url,
                _ => continue,
            };
            if dest.contains("://") || dest.starts_with("mailto:") {
                continue;
            }
            links += 1;
            let at = format!("{}:{}", rel(&path), line_of(&text, range.start));
            let (file, anchor) = match dest.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (dest.as_ref(), None),
            };
            let target = if file.is_empty() {
                path.clone()
            } else {
                dir.join(file)
            };
            if !target.exists() {
                failures.push(format!("{at}: {dest}: no such file"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if target.extension().is_none_or(|x| x != "md") {
                failures.push(format!("{at}: {dest}: anchor into a non-Markdown file"));
                continue;
            }
            let target_text = std::fs::read_to_string(&target).expect("read link target");
            if !anchors_of(&target_text).iter().any(|a| a == anchor) {
                failures.push(format!("{at}: {dest}: no heading with that anchor"));
            }
        }
    }
    assert!(links >= 50, "only {links} relative links found");
    assert!(
        failures.is_empty(),
        "broken links:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_link_check_knows_github_anchors() {
    let doc = "# Getting started\n## Try it: `spangate dev`\n## `upstreams.<name>.spool`\n\
               ## Counters (in `/admin/v1/status`)\n## Notes\n## Notes\n";
    assert_eq!(
        anchors_of(doc),
        vec![
            "getting-started",
            "try-it-spangate-dev",
            "upstreamsnamespool",
            "counters-in-adminv1status",
            "notes",
            "notes-1",
        ]
    );
}
