//! YAML path → (line, column) index, so semantic errors point at the node
//! that caused them. serde gives locations only for syntax and type errors;
//! this walks the same text with `yaml-rust2`'s event parser, whose events
//! carry source markers.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Deepest `[`/`{` flow nesting accepted. YAML scanners (libyaml, and the
/// `unsafe-libyaml` under serde_yaml) do work proportional to the flow
/// depth for every token, so `[[[[…` costs quadratic time: ~6 s for 54 KB,
/// minutes at the 1 MiB policy-file cap, all before the parser's own
/// 128-level recursion limit refuses it. Found by the `config_load` and
/// `policy_load` fuzz targets' slow inputs.
pub const MAX_FLOW_DEPTH: usize = 256;

/// Why a text refused by [`flow_too_deep`] was refused.
pub fn flow_too_deep_message() -> String {
    format!("[ / {{ nested deeper than {MAX_FLOW_DEPTH} levels")
}

/// Where `text` first nests `[`/`{` deeper than [`MAX_FLOW_DEPTH`], as
/// 1-based (line, column), checked in one linear pass before any YAML parser
/// sees the text. Comments are skipped; brackets inside quoted strings are
/// counted (a file needs more than 256 unbalanced ones to be refused).
pub fn flow_too_deep(text: &str) -> Option<(usize, usize)> {
    let (mut line, mut col, mut depth) = (1usize, 0usize, 0usize);
    let mut in_comment = false;
    let mut prev_blank = true;
    for c in text.chars() {
        col += 1;
        match c {
            '\n' => {
                line += 1;
                col = 0;
                in_comment = false;
                prev_blank = true;
                continue;
            }
            _ if in_comment => {}
            '#' if prev_blank => in_comment = true,
            '[' | '{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some((line, col));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev_blank = c == ' ' || c == '\t';
    }
    None
}

/// One step of a YAML path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Idx(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Seg {
        Seg::Key(s.to_string())
    }
}

impl From<&String> for Seg {
    fn from(s: &String) -> Seg {
        Seg::Key(s.clone())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Seg {
        Seg::Idx(i)
    }
}

/// Build a YAML path: `ypath!["bindings", 0, "role"]`.
macro_rules! ypath {
    ($($seg:expr),* $(,)?) => {
        [$($crate::policy::locate::Seg::from($seg)),*]
    };
}
pub(crate) use ypath;

/// A 1-based source position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub column: usize,
}

impl Pos {
    /// The start of the file (for whole-file problems).
    pub const START: Pos = Pos { line: 1, column: 1 };

    fn from_marker(m: Marker) -> Pos {
        // yaml-rust2 markers: line 1-based, column 0-based.
        Pos {
            line: m.line().max(1),
            column: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct NodeLoc {
    key: Option<Pos>,
    value: Pos,
}

/// A key that appears twice in one mapping (serde_yaml keeps the last one
/// silently, so the index reports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// Path of the mapping.
    pub map: Vec<Seg>,
    /// The repeated key.
    pub key: String,
    /// Where it first appears.
    pub first: Pos,
    /// Where it appears again.
    pub second: Pos,
}

/// Positions of every node of one YAML document, by path.
#[derive(Debug, Default)]
pub struct YamlIndex {
    nodes: HashMap<Vec<Seg>, NodeLoc>,
    duplicates: Vec<Duplicate>,
}

impl YamlIndex {
    /// Index `text`. A document yaml-rust2 cannot parse gives an empty index
    /// (every lookup then falls back to the start of the file).
    pub fn build(text: &str) -> YamlIndex {
        if flow_too_deep(text).is_some() {
            return YamlIndex::default();
        }
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return YamlIndex::default();
        }
        YamlIndex {
            nodes: builder.nodes,
            duplicates: builder.duplicates,
        }
    }

    /// Keys repeated within one mapping.
    pub fn duplicates(&self) -> &[Duplicate] {
        &self.duplicates
    }

    /// Position of the value at `path`, or of its nearest indexed ancestor.
    pub fn value(&self, path: &[Seg]) -> Pos {
        self.find(path).map(|n| n.value).unwrap_or(Pos::START)
    }

    /// Position of the mapping key at `path` (its value's if it has no key).
    pub fn key(&self, path: &[Seg]) -> Pos {
        self.find(path)
            .map(|n| n.key.unwrap_or(n.value))
            .unwrap_or(Pos::START)
    }

    fn find(&self, path: &[Seg]) -> Option<NodeLoc> {
        (0..=path.len())
            .rev()
            .find_map(|n| path.get(..n).and_then(|p| self.nodes.get(p)).copied())
    }
}

#[derive(Debug)]
enum Frame {
    Map {
        /// The pending key (with its position) once read; `None` = expecting a key.
        key: Option<(String, Pos)>,
        /// Keys seen so far, for duplicate detection.
        seen: HashMap<String, Pos>,
    },
    Seq {
        next: usize,
    },
}

#[derive(Debug, Default)]
struct Builder {
    nodes: HashMap<Vec<Seg>, NodeLoc>,
    duplicates: Vec<Duplicate>,
    frames: Vec<Frame>,
    path: Vec<Seg>,
    /// Depth inside a complex (non-scalar) mapping key, which we do not index.
    in_complex_key: usize,
}

/// What a node start means for the enclosing container.
enum Slot {
    Root,
    Key,
    Value(Seg, Option<Pos>),
}

impl Builder {
    /// Classify a node that starts now and advance the parent container.
    fn slot(&mut self) -> Slot {
        match self.frames.last_mut() {
            None => Slot::Root,
            Some(Frame::Map { key: None, .. }) => Slot::Key,
            Some(Frame::Map { key, .. }) => match key.take() {
                Some((k, kpos)) => Slot::Value(Seg::Key(k), Some(kpos)),
                None => Slot::Key,
            },
            Some(Frame::Seq { next }) => {
                let i = *next;
                *next += 1;
                Slot::Value(Seg::Idx(i), None)
            }
        }
    }

    fn record(&mut self, seg: Option<Seg>, key: Option<Pos>, value: Pos) {
        let mut path = self.path.clone();
        if let Some(s) = seg {
            path.push(s);
        }
        self.nodes.entry(path).or_insert(NodeLoc { key, value });
    }

    /// yaml-rust2 marks a block mapping at the `:` of its first key; move the
    /// enclosing mapping's position back to its first key.
    fn starts_no_later_than(&mut self, pos: Pos) {
        if let Some(node) = self.nodes.get_mut(&self.path)
            && (pos.line, pos.column) < (node.value.line, node.value.column)
        {
            node.value = pos;
        }
    }

    fn start_container(&mut self, pos: Pos, frame: Frame) {
        if self.in_complex_key > 0 {
            self.in_complex_key += 1;
            return;
        }
        match self.slot() {
            Slot::Root => {
                self.record(None, None, pos);
            }
            Slot::Key => {
                // A mapping or sequence used as a key: skip it entirely.
                self.in_complex_key = 1;
                if let Some(Frame::Map { key, .. }) = self.frames.last_mut() {
                    *key = Some(("<complex key>".into(), pos));
                }
                self.starts_no_later_than(pos);
                return;
            }
            Slot::Value(seg, kpos) => {
                self.record(Some(seg.clone()), kpos, pos);
                self.path.push(seg);
            }
        }
        self.frames.push(frame);
    }

    fn end_container(&mut self) {
        if self.in_complex_key > 0 {
            self.in_complex_key -= 1;
            return;
        }
        self.frames.pop();
        if !self.frames.is_empty() {
            self.path.pop();
        }
    }

    fn leaf(&mut self, text: Option<String>, pos: Pos) {
        if self.in_complex_key > 0 {
            return;
        }
        match self.slot() {
            Slot::Root => self.record(None, None, pos),
            Slot::Key => {
                let name = text.unwrap_or_else(|| "<alias>".into());
                if let Some(Frame::Map { key, seen }) = self.frames.last_mut() {
                    if let Some(first) = seen.get(&name) {
                        self.duplicates.push(Duplicate {
                            map: self.path.clone(),
                            key: name.clone(),
                            first: *first,
                            second: pos,
                        });
                    } else {
                        seen.insert(name.clone(), pos);
                    }
                    *key = Some((name, pos));
                }
                self.starts_no_later_than(pos);
            }
            Slot::Value(seg, kpos) => self.record(Some(seg), kpos, pos),
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        match ev {
            Event::MappingStart(..) => self.start_container(
                pos,
                Frame::Map {
                    key: None,
                    seen: HashMap::new(),
                },
            ),
            Event::SequenceStart(..) => self.start_container(pos, Frame::Seq { next: 0 }),
            Event::MappingEnd | Event::SequenceEnd => self.end_container(),
            Event::Scalar(text, ..) => self.leaf(Some(text), pos),
            Event::Alias(_) => self.leaf(None, pos),
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
roles:
  edge:
    publish:
      endpoints: [traces, logs]
      services:
        - \"${claims.project}\"
bindings:
  - role: edge
    subjects:
      - provider: dev
        claims:
          '[\"https://sts.amazonaws.com/\"].org_id': o-1
  - { role: other, name: x }
";

    #[test]
    fn finds_values_and_keys() {
        let idx = YamlIndex::build(DOC);
        assert_eq!(
            idx.key(&ypath!["roles", "edge"]),
            Pos { line: 2, column: 3 }
        );
        assert_eq!(
            idx.value(&ypath!["roles", "edge", "publish", "endpoints", 1]),
            Pos {
                line: 4,
                column: 27
            }
        );
        assert_eq!(
            idx.value(&ypath!["roles", "edge", "publish", "services", 0]),
            Pos {
                line: 6,
                column: 11
            }
        );
        assert_eq!(
            idx.value(&ypath!["bindings", 0, "role"]),
            Pos {
                line: 8,
                column: 11
            }
        );
        assert_eq!(
            idx.key(&ypath![
                "bindings",
                0,
                "subjects",
                0,
                "claims",
                "[\"https://sts.amazonaws.com/\"].org_id"
            ]),
            Pos {
                line: 12,
                column: 11
            }
        );
        assert_eq!(
            idx.value(&ypath!["bindings", 1, "role"]),
            Pos {
                line: 13,
                column: 13
            }
        );
        assert_eq!(
            idx.value(&ypath!["bindings", 1, "name"]),
            Pos {
                line: 13,
                column: 26
            }
        );
        // A block mapping starts at its first key (not at the `:`).
        assert_eq!(
            idx.value(&ypath!["bindings", 0]),
            Pos { line: 8, column: 5 }
        );
        assert_eq!(idx.value(&ypath!["roles"]), Pos { line: 2, column: 3 });
        assert_eq!(idx.value(&ypath![]), Pos { line: 1, column: 1 });
        // A flow mapping starts at its `{`.
        assert_eq!(
            idx.value(&ypath!["bindings", 1]),
            Pos {
                line: 13,
                column: 5
            }
        );
        // Unknown child: falls back to the nearest ancestor.
        assert_eq!(
            idx.value(&ypath!["bindings", 1, "nope"]),
            idx.value(&ypath!["bindings", 1])
        );
    }

    #[test]
    fn unparsable_text_falls_back_to_start() {
        let idx = YamlIndex::build("a: [b\n");
        assert_eq!(idx.value(&ypath!["a"]), Pos::START);
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let idx = YamlIndex::build("a:\n  x: 1\n  y: 2\n  x: 3\nb: [{k: 1, k: 2}]\n");
        let d: Vec<(Vec<Seg>, &str, Pos, Pos)> = idx
            .duplicates()
            .iter()
            .map(|d| (d.map.clone(), d.key.as_str(), d.first, d.second))
            .collect();
        assert_eq!(
            d,
            vec![
                (
                    ypath!["a"].to_vec(),
                    "x",
                    Pos { line: 2, column: 3 },
                    Pos { line: 4, column: 3 }
                ),
                (
                    ypath!["b", 0].to_vec(),
                    "k",
                    Pos { line: 5, column: 6 },
                    Pos {
                        line: 5,
                        column: 12
                    }
                ),
            ]
        );
    }

    #[test]
    fn complex_keys_are_skipped() {
        let idx = YamlIndex::build("? [a, b]\n: 1\nc: 2\n");
        assert_eq!(idx.value(&ypath!["c"]), Pos { line: 3, column: 4 });
    }

    #[test]
    fn flow_nesting_is_bounded_before_any_yaml_parser_runs() {
        let ok = format!(
            "a: {}{}\n",
            "[".repeat(MAX_FLOW_DEPTH),
            "]".repeat(MAX_FLOW_DEPTH)
        );
        assert_eq!(flow_too_deep(&ok), None);
        let deep = format!("a: 1\nb: {}\n", "[".repeat(100_000));
        assert_eq!(flow_too_deep(&deep), Some((2, 4 + MAX_FLOW_DEPTH)));
        // Balanced siblings never accumulate; comments are not counted.
        let wide = "[]".repeat(10_000);
        assert_eq!(flow_too_deep(&wide), None);
        let commented = format!("a: 1 # {}\n", "[".repeat(1000));
        assert_eq!(flow_too_deep(&commented), None);
        assert!(YamlIndex::build(&deep).nodes.is_empty());
    }
}
