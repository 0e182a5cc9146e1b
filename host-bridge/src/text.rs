//! Text from a box made safe to show on this machine's terminal.

use std::fmt::Write as _;

/// Text from the box made safe to show: control characters (terminal escapes included)
/// removed except newlines, length capped at `max` characters.
pub fn clean_text(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(max)
        .collect()
}

/// Text from the box as the body of a desktop notification: control characters (but
/// newlines) and invisible layout characters dropped, at most `max` characters, and `&`,
/// `<`, `>` written as entities. Notification servers read the body as markup (the
/// Desktop Notifications spec's `body-markup`): a box's `<a href=…>` would be a link no
/// `policy.open` saw, its `<b>` or `<img>` would dress its words up as the host's.
pub fn notification_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s
        .chars()
        .filter(|c| (!c.is_control() || *c == '\n') && !invisible_format(*c))
        .take(max)
    {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether `c` changes how the text around it is laid out without showing itself: the
/// bidirectional controls (which can reorder what is shown), zero-width characters, and
/// the line and paragraph separators (a new line to whatever honours them).
pub fn invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
            | '\u{061c}'
    )
}

/// A string from the box as it may reach the user's terminal: every control character
/// (escape, newline, carriage return, bell, C1 controls) and every invisible layout
/// character (bidirectional overrides, zero-width) written visibly (`\x1b`, `\n`,
/// `\u{202e}`), and a backslash doubled, so that the text cannot move the cursor, recolour,
/// forge or hide lines, and an odd name looks odd instead of silently changed.
pub fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() || invisible_format(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Like [`shown`], but newlines stay newlines: for messages of several lines (an error
/// chain) that may carry a box's words, where an escape or a carriage return must not
/// act but the host's own line breaks should.
pub fn shown_lines(s: &str) -> String {
    s.split('\n').map(shown).collect::<Vec<_>>().join("\n")
}

/// At most `max` characters of `s` as they are (nothing dropped: escape with [`shown`]
/// where it is printed), with the number of characters left out when it is longer.
pub fn capped(s: &str, max: usize) -> String {
    let total = s.chars().count();
    if total <= max {
        return s.to_string();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}… ({} more characters)", total - max)
}

#[cfg(test)]
mod tests {
    use super::{capped, clean_text, notification_text, shown, shown_lines};

    #[test]
    fn text_is_cleaned() {
        assert_eq!(clean_text("a\u{1b}[31mb\u{7}", 100), "a[31mb");
        assert_eq!(clean_text(&"x".repeat(50), 10).len(), 10);
    }

    #[test]
    fn box_strings_are_shown_escaped_never_dropped() {
        for (raw, visible) in [
            ("plain name.txt", "plain name.txt"),
            ("a\u{1b}[2Kb", "a\\x1b[2Kb"),
            ("line\nforged", "line\\nforged"),
            ("cr\rover", "cr\\rover"),
            ("tab\there", "tab\\there"),
            ("bell\u{7}", "bell\\x07"),
            ("del\u{7f}", "del\\x7f"),
            ("csi\u{9b}2J", "csi\\x9b2J"),
            ("rtl\u{202e}txt", "rtl\\u{202e}txt"),
            ("zero\u{200b}width", "zero\\u{200b}width"),
            ("ls\u{2028}forged", "ls\\u{2028}forged"),
            ("ps\u{2029}forged", "ps\\u{2029}forged"),
            ("back\\x1b", "back\\\\x1b"),
            ("ünïcødé ✓", "ünïcødé ✓"),
        ] {
            let out = shown(raw);
            assert_eq!(out, visible, "{raw:?}");
            assert!(!out.chars().any(char::is_control), "{raw:?}");
        }
        // Escaped text cannot be mistaken for what a different raw string shows.
        assert_ne!(shown("a\u{1b}"), shown("a\\x1b"));
        assert_eq!(shown_lines("one\ntwo\u{1b}[2K\r"), "one\ntwo\\x1b[2K\\r");
    }

    #[test]
    fn notification_text_is_plain_text_in_markup() {
        assert_eq!(
            notification_text("<a href=\"x\">go</a> & \u{202e}rtl\u{1b}[2J\nnext", 100),
            "&lt;a href=\"x\"&gt;go&lt;/a&gt; &amp; rtl[2J\nnext"
        );
        assert_eq!(notification_text(&"<".repeat(50), 10), "&lt;".repeat(10));
    }

    #[test]
    fn capped_text_keeps_what_it_shows_and_says_what_it_left_out() {
        assert_eq!(capped("a\u{1b}b", 10), "a\u{1b}b");
        assert_eq!(capped("abcdef", 3), "abc… (3 more characters)");
    }
}
