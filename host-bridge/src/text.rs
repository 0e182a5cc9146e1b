//! Text from a box made safe to show on this machine's terminal.

/// Text from the box made safe to show: control characters (terminal escapes included)
/// removed except newlines, length capped at `max` characters.
pub fn clean_text(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::clean_text;

    #[test]
    fn text_is_cleaned() {
        assert_eq!(clean_text("a\u{1b}[31mb\u{7}", 100), "a[31mb");
        assert_eq!(clean_text(&"x".repeat(50), 10).len(), 10);
    }
}
