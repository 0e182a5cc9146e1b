//! Where a config value is: the `FILE:LINE:COL` of a dotted key's value, for the errors
//! of [`super::Resolved::load`] (the loader that reads the files keeps no positions).

use std::path::Path;

/// `FILE:LINE:COL` of the value of dotted `key` in config file `path` (nested mappings or
/// dotted keys alike), or `FILE` when it is not found there.
pub(super) fn located(path: &Path, key: &str) -> String {
    let found = agentbox_protocol::yaml_guard::read(path)
        .ok()
        .and_then(|text| position_of(&text, key));
    match found {
        Some((line, col)) => format!("{}:{line}:{col}", path.display()),
        None => path.display().to_string(),
    }
}

/// The line and column (from 1) of the value of dotted `key` in a YAML document, read
/// from the parser's events (the loader keeps no positions).
fn position_of(text: &str, key: &str) -> Option<(usize, usize)> {
    use yaml_rust2::parser::{Event, Parser};
    let join = |prefix: &str, k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    let mut parser = Parser::new_from_str(text);
    // Per open mapping: its dotted prefix and the key whose value comes next.
    let mut open: Vec<(String, Option<String>)> = Vec::new();
    // Sequences are no config value: skipped whole.
    let mut in_sequence = 0usize;
    loop {
        let (event, mark) = parser.next_token().ok()?;
        match event {
            Event::StreamEnd => return None,
            Event::SequenceStart(..) => in_sequence += 1,
            Event::SequenceEnd => {
                in_sequence = in_sequence.saturating_sub(1);
                if in_sequence == 0 {
                    if let Some((_, pending)) = open.last_mut() {
                        *pending = None;
                    }
                }
            }
            _ if in_sequence > 0 => {}
            Event::MappingStart(..) => {
                let prefix = match open.last_mut() {
                    Some((prefix, pending)) => join(prefix, &pending.take()?),
                    None => String::new(),
                };
                open.push((prefix, None));
            }
            Event::MappingEnd => {
                open.pop();
            }
            Event::Scalar(value, ..) => {
                if let Some((prefix, pending)) = open.last_mut() {
                    match pending.take() {
                        None => *pending = Some(value),
                        Some(k) if join(prefix, &k) == key => {
                            return Some((mark.line(), mark.col() + 1))
                        }
                        Some(_) => {}
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::position_of;

    #[test]
    fn positions_are_found_in_nested_and_dotted_keys() {
        let text = "a:\n  list: [1, {b: 2}]\n  b: x\nc.d: 'y'\n";
        assert_eq!(position_of(text, "a.b"), Some((3, 6)));
        assert_eq!(position_of(text, "c.d"), Some((4, 6)));
        assert_eq!(position_of(text, "a.list.b"), None);
        assert_eq!(position_of(text, "nope"), None);
        assert_eq!(position_of("[a, b]", "a"), None);
        assert_eq!(position_of("a: [", "a"), None);
    }
}
