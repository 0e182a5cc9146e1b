//! Typed reading of a YAML tree that collects every problem instead of stopping at the
//! first: strings, booleans, numbers in a range, durations, ports, and mappings whose keys
//! are checked against a list. Knows nothing of `agentbox.yaml`'s rules ([`super::schema`]
//! has those).

use std::time::Duration;

use super::error::Diagnostic;
use super::yaml::{parse_bool, Node, Pos};

/// The keys of one mapping, checked.
pub(super) struct Fields<'a> {
    entries: Vec<(&'a str, &'a Node)>,
    /// Where the mapping is.
    pub(super) pos: Pos,
}

impl<'a> Fields<'a> {
    pub(super) fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
}

/// Reads typed values out of nodes, collecting an error (at the node's position) for each
/// that does not fit, and a warning for each unknown key.
#[derive(Default)]
pub(super) struct Reader {
    /// Errors, in the order found.
    pub(super) errors: Vec<Diagnostic>,
    /// Warnings as `line:col: warning: …`.
    pub(super) warnings: Vec<String>,
}

impl Reader {
    pub(super) fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            pos,
            message: message.into(),
        });
    }

    pub(super) fn warn(&mut self, pos: Pos, message: impl std::fmt::Display) {
        self.warnings
            .push(format!("{}:{}: warning: {message}", pos.line, pos.col));
    }

    pub(super) fn expect_map(&mut self, node: &Node, what: &str) -> bool {
        if matches!(node, Node::Map { .. }) {
            true
        } else {
            self.error(
                node.pos(),
                format!("{what} must be a mapping, found {}", node.describe()),
            );
            false
        }
    }

    pub(super) fn entries<'a>(&mut self, node: &'a Node, what: &str) -> Option<&'a [(Node, Node)]> {
        match node {
            Node::Map { entries, .. } => Some(entries),
            other => {
                self.error(
                    other.pos(),
                    format!("{what} must be a mapping, found {}", other.describe()),
                );
                None
            }
        }
    }

    /// A mapping whose keys must be strings, unique, and (else a warning) in `allowed`.
    pub(super) fn fields<'a>(
        &mut self,
        node: &'a Node,
        allowed: &[&str],
        what: &str,
    ) -> Option<Fields<'a>> {
        let entries = self.entries(node, what)?;
        let mut out: Vec<(&'a str, &'a Node)> = Vec::new();
        for (key, value) in entries {
            let Node::Scalar { value: k, .. } = key else {
                self.error(key.pos(), format!("keys in {what} must be strings"));
                continue;
            };
            if out.iter().any(|(seen, _)| seen == k) {
                self.error(key.pos(), format!("duplicate key `{k}` in {what}"));
                continue;
            }
            if !allowed.contains(&k.as_str()) {
                self.warn(key.pos(), format!("unknown key `{k}` in {what} (ignored)"));
                continue;
            }
            out.push((k.as_str(), value));
        }
        Some(Fields {
            entries: out,
            pos: node.pos(),
        })
    }

    pub(super) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match node {
            Node::Scalar { value, .. } if !node.is_null() => Some(value.clone()),
            other => {
                self.error(
                    other.pos(),
                    format!("{what} must be a string, found {}", other.describe()),
                );
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node {
            Node::Scalar {
                value,
                quoted: false,
                ..
            } if parse_bool(value).is_some() => parse_bool(value),
            other => {
                self.error(
                    other.pos(),
                    format!("{what} must be true or false, found {}", other.describe()),
                );
                None
            }
        }
    }

    pub(super) fn number(&mut self, node: &Node, what: &str) -> Option<f64> {
        match node {
            Node::Scalar {
                value,
                quoted: false,
                ..
            } => match value.parse::<f64>() {
                Ok(n) if n.is_finite() => Some(n),
                _ => {
                    self.error(
                        node.pos(),
                        format!("{what} must be a number, found `{value}`"),
                    );
                    None
                }
            },
            other => {
                self.error(
                    other.pos(),
                    format!("{what} must be a number, found {}", other.describe()),
                );
                None
            }
        }
    }

    /// An integer in `min..=max` (floats are floored, as the original did).
    pub(super) fn integer(&mut self, node: &Node, what: &str, min: u64, max: u64) -> Option<u64> {
        let n = self.number(node, what)?.floor();
        if n < min as f64 || n > max as f64 {
            self.error(
                node.pos(),
                format!("{what} must be between {min} and {max}, found {n}"),
            );
            return None;
        }
        Some(n as u64)
    }

    pub(super) fn millis(&mut self, node: &Node, what: &str, min: u64) -> Option<Duration> {
        self.integer(node, what, min, u64::from(u32::MAX))
            .map(Duration::from_millis)
    }

    pub(super) fn port(&mut self, node: &Node, what: &str) -> Option<u16> {
        self.integer(node, what, 1, 65535).map(|p| p as u16)
    }
}
