//! A YAML document as a tree of nodes that remember where they came from, so that every
//! config error can say `agentbox.yaml:12:5: …`.
//!
//! Built from `yaml-rust2`'s event stream. Aliases are resolved to copies of their anchor;
//! tags are ignored. Scalars keep their quoting style so that `"true"` stays a string.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based position in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

impl Pos {
    fn from_marker(m: Marker) -> Self {
        Self {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// One node of the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A scalar; `quoted` when written with quotes or as a block scalar.
    Scalar {
        /// The text.
        value: String,
        /// Whether it was quoted (then it is always a string).
        quoted: bool,
        /// Where it starts.
        pos: Pos,
    },
    /// A sequence.
    Seq {
        /// Its items.
        items: Vec<Node>,
        /// Where it starts.
        pos: Pos,
    },
    /// A mapping, in document order.
    Map {
        /// Key/value pairs.
        entries: Vec<(Node, Node)>,
        /// Where it starts.
        pos: Pos,
    },
}

impl Node {
    /// Where the node starts.
    pub fn pos(&self) -> Pos {
        match self {
            Node::Scalar { pos, .. } | Node::Seq { pos, .. } | Node::Map { pos, .. } => *pos,
        }
    }

    /// Whether this is the null scalar (`~`, `null`, or nothing at all).
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { value, quoted: false, .. }
            if value.is_empty() || value == "~" || value == "null" || value == "Null" || value == "NULL")
    }

    /// A word for error messages: "a mapping", "a list", "a string", …
    pub fn describe(&self) -> &'static str {
        match self {
            Node::Map { .. } => "a mapping",
            Node::Seq { .. } => "a list",
            n if n.is_null() => "null",
            Node::Scalar { quoted: true, .. } => "a string",
            Node::Scalar { value, .. } => {
                if parse_bool(value).is_some() {
                    "a boolean"
                } else if value.parse::<f64>().is_ok() {
                    "a number"
                } else {
                    "a string"
                }
            }
        }
    }
}

/// YAML 1.2 core-schema booleans (plus the capitalised forms people write).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// A syntax error, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

/// Parses the first document of `source`. An empty source gives `None`. A document over
/// the bounds of [`agentbox_protocol::yaml_guard`] (size, depth, alias expansion) is
/// refused before any node is built.
pub fn parse(source: &str) -> Result<Option<Node>, SyntaxError> {
    agentbox_protocol::yaml_guard::check(source).map_err(|e| SyntaxError {
        pos: Pos {
            line: e.line,
            col: e.col,
        },
        message: e.message,
    })?;
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        pos: Pos::from_marker(*e.marker()),
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root)
}

#[derive(Default)]
struct Builder {
    /// Open collections: the node being filled, and for maps a pending key.
    stack: Vec<(Node, Option<Node>, usize)>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some((Node::Seq { items, .. }, _, _)) => items.push(node),
            Some((Node::Map { entries, .. }, pending_key, _)) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => entries.push((key, node)),
            },
            Some((Node::Scalar { .. }, _, _)) => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        match ev {
            Event::Scalar(value, style, anchor, _tag) => {
                let quoted = !matches!(style, TScalarStyle::Plain);
                self.push_value(Node::Scalar { value, quoted, pos }, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push((
                    Node::Seq {
                        items: Vec::new(),
                        pos,
                    },
                    None,
                    anchor,
                ));
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push((
                    Node::Map {
                        entries: Vec::new(),
                        pos,
                    },
                    None,
                    anchor,
                ));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((mut node, _, anchor)) = self.stack.pop() {
                    fix_block_start(&mut node);
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push_value(node, 0),
                None => {
                    self.error.get_or_insert(SyntaxError {
                        pos,
                        message: "alias refers to an unknown anchor".into(),
                    });
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// The parser marks a block collection one column past its first item; use the first
/// item's position then (flow collections keep the position of their bracket).
fn fix_block_start(node: &mut Node) {
    let first = match node {
        Node::Map { entries, .. } => entries.first().map(|(k, _)| k.pos()),
        Node::Seq { items, .. } => items.first().map(Node::pos),
        Node::Scalar { .. } => None,
    };
    if let (Some(first), Node::Map { pos, .. } | Node::Seq { pos, .. }) = (first, node) {
        if first.line == pos.line && first.col < pos.col {
            *pos = first;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let root = parse("a:\n  b: 1\n").expect("parse").expect("doc");
        let Node::Map { entries, pos } = root else {
            panic!("map")
        };
        assert_eq!(pos, Pos { line: 1, col: 1 });
        let Node::Map { entries: inner, .. } = &entries[0].1 else {
            panic!("inner map")
        };
        assert_eq!(inner[0].0.pos(), Pos { line: 2, col: 3 });
        assert_eq!(inner[0].1.pos(), Pos { line: 2, col: 6 });
    }

    #[test]
    fn quoted_scalars_are_marked() {
        let root = parse("a: \"true\"\nb: true\n")
            .expect("parse")
            .expect("doc");
        let Node::Map { entries, .. } = root else {
            panic!("map")
        };
        assert!(matches!(&entries[0].1, Node::Scalar { quoted: true, .. }));
        assert!(matches!(&entries[1].1, Node::Scalar { quoted: false, .. }));
    }

    #[test]
    fn aliases_resolve_and_empty_is_none() {
        let root = parse("x: &e {A: 1}\ny: *e\n").expect("parse").expect("doc");
        let Node::Map { entries, .. } = root else {
            panic!("map")
        };
        assert!(matches!(&entries[1].1, Node::Map { entries, .. } if entries.len() == 1));
        assert_eq!(parse("").expect("parse"), None);
        assert_eq!(parse("# only a comment\n").expect("parse"), None);
    }

    #[test]
    fn an_alias_bomb_is_refused_before_it_is_built() {
        use std::fmt::Write as _;
        let mut doc = String::from("a0: &a0 [x]\n");
        for i in 1..=9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            let _ = writeln!(doc, "a{i}: &a{i} [{refs}]");
        }
        let err = parse(&doc).expect_err("bomb");
        assert!(err.message.contains("nodes"), "{err:?}");
        assert!(err.pos.line > 1, "{err:?}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("unclosed");
        assert!(err.pos.line >= 1, "{err:?}");
    }
}
