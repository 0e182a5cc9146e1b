//! Bounds on a YAML document before anyone builds it: `agentbox.yaml` comes from the
//! repository and can come back from a box (`agentbox download`), so both sides read it
//! as untrusted. A few hundred bytes of nested aliases ("billion laughs") expand to
//! billions of nodes in any loader that copies an anchor per alias; deep nesting
//! overflows recursive drops. [`check`] walks the parser's event stream once, counting
//! what a loader would build — each alias counts the whole size of its anchor — and stops
//! at the first limit crossed, with the position.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// The largest YAML document read, in bytes.
pub const MAX_BYTES: usize = 1 << 20;
/// The most nodes a document may expand to, aliases counted at their anchor's size.
pub const MAX_NODES: u64 = 100_000;
/// The deepest nesting of collections.
pub const MAX_DEPTH: usize = 64;

/// Why a document was refused, and where (1-based; line 0 when the whole file is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TooBig {
    /// Line, from 1 (0: the whole document).
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
    /// What limit was crossed.
    pub message: String,
}

/// Reads a YAML file, at most [`MAX_BYTES`] + 1 of it: a larger file is then refused by
/// [`check`] without having been read whole. Not UTF-8 is an `InvalidData` error.
pub fn read(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_BYTES as u64 + 1)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Refuses a document larger than [`MAX_BYTES`], deeper than [`MAX_DEPTH`], or that
/// expands to more than [`MAX_NODES`]. Syntax errors are left to the real parse, which
/// reports them in its own words.
pub fn check(source: &str) -> Result<(), TooBig> {
    if source.len() > MAX_BYTES {
        return Err(TooBig {
            line: 0,
            col: 0,
            message: format!(
                "the document is {} bytes; at most {MAX_BYTES} are read",
                source.len()
            ),
        });
    }
    let mut counter = Counter::default();
    // A syntax error ends the walk; the caller's own parse names it.
    let _ = Parser::new_from_str(source).load(&mut counter, true);
    match counter.refused {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[derive(Default)]
struct Counter {
    /// Per open collection: its anchor id and the nodes inside it so far.
    open: Vec<(usize, u64)>,
    /// Expanded size of each anchor.
    anchors: std::collections::HashMap<usize, u64>,
    total: u64,
    refused: Option<TooBig>,
}

impl Counter {
    fn add(&mut self, size: u64, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, size);
        }
        if let Some((_, inside)) = self.open.last_mut() {
            *inside = inside.saturating_add(size);
        }
        self.total = self.total.saturating_add(size);
        if self.total > MAX_NODES {
            self.refuse(
                mark,
                format!("the document expands to more than {MAX_NODES} nodes (aliases count at their anchor's size)"),
            );
        }
    }

    fn refuse(&mut self, mark: Marker, message: String) {
        self.refused.get_or_insert(TooBig {
            line: mark.line(),
            col: mark.col() + 1,
            message,
        });
    }
}

impl MarkedEventReceiver for Counter {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.refused.is_some() {
            return;
        }
        match ev {
            Event::Scalar(_, _, anchor, _) => self.add(1, anchor, mark),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.open.push((anchor, 0));
                if self.open.len() > MAX_DEPTH {
                    self.refuse(
                        mark,
                        format!("collections nest deeper than {MAX_DEPTH} levels"),
                    );
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, inside)) = self.open.pop() {
                    // The collection itself; what is inside was counted as it came.
                    self.total = self.total.saturating_sub(inside);
                    self.add(inside.saturating_add(1), anchor, mark);
                }
            }
            Event::Alias(id) => {
                let size = self.anchors.get(&id).copied().unwrap_or(1);
                self.add(size, 0, mark);
            }
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
    use std::fmt::Write as _;

    /// The classic: nine levels of ten aliases each, 10^9 leaves from ~700 bytes.
    fn laughs(levels: usize) -> String {
        let mut doc = String::from("a0: &a0 [\"lol\"]\n");
        for i in 1..=levels {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            let _ = writeln!(doc, "a{i}: &a{i} [{refs}]");
        }
        doc
    }

    #[test]
    fn an_alias_bomb_is_refused_with_its_position() {
        let err = check(&laughs(9)).expect_err("bomb");
        assert!(err.message.contains("more than 100000 nodes"), "{err:?}");
        assert!(err.line >= 5, "{err:?}");
    }

    #[test]
    fn ordinary_anchors_and_documents_pass() {
        check(&laughs(3)).expect("1111 nodes");
        check("x: &e {A: 1}\ny: *e\nservices:\n  web:\n    command: run\n").expect("small");
        check("").expect("empty");
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(check(&deep)
            .expect_err("deep")
            .message
            .contains("nest deeper"));
        let shallow = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        check(&shallow).expect("at the limit");
        let big = format!("k: \"{}\"\n", "x".repeat(MAX_BYTES));
        assert_eq!(check(&big).expect_err("big").line, 0);
    }

    #[test]
    fn many_plain_nodes_count_too() {
        let mut wide = String::new();
        for i in 0..=MAX_NODES {
            let _ = writeln!(wide, "- {i}");
        }
        assert!(check(&wide).is_err());
    }
}
