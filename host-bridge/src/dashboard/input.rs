//! Keys to [`Intent`]s: the one place that says which key does what (the footer and the
//! help screen list the same keys).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::model::Intent;

/// The keys, as the help screen lists them.
pub const KEYS: &[(&str, &str)] = &[
    ("↑/↓ k/j", "select a box"),
    (
        "Enter, a",
        "attach to its agent's session (detach with Ctrl-a d to come back)",
    ),
    ("o", "open its WebProxy in the browser, or pick a service"),
    ("s", "open its screen (desktop) in the browser"),
    ("y / n", "approve / deny its oldest waiting request"),
    ("S", "stop it (asks first), or start it when stopped"),
    ("Esc", "clear the message, leave a question"),
    ("?", "this help"),
    ("q", "quit"),
];

/// What `key` means, if anything (key releases and repeats of terminals that report them
/// mean nothing).
pub fn intent(key: KeyEvent) -> Option<Intent> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(key.code, KeyCode::Char('c' | 'd')).then_some(Intent::Quit);
    }
    Some(match key.code {
        KeyCode::Char('q') => Intent::Quit,
        KeyCode::Up | KeyCode::Char('k') => Intent::Up,
        KeyCode::Down | KeyCode::Char('j') => Intent::Down,
        KeyCode::Enter => Intent::Enter,
        KeyCode::Char('a') => Intent::Attach,
        KeyCode::Char('o') => Intent::Open,
        KeyCode::Char('s') => Intent::Screen,
        KeyCode::Char('y') => Intent::Yes,
        KeyCode::Char('n') => Intent::No,
        KeyCode::Char('S') => Intent::StopStart,
        KeyCode::Char('?') => Intent::Help,
        KeyCode::Esc => Intent::Back,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_intents_and_others_to_nothing() {
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        assert_eq!(intent(key(KeyCode::Char('q'))), Some(Intent::Quit));
        assert_eq!(intent(key(KeyCode::Char('S'))), Some(Intent::StopStart));
        assert_eq!(intent(key(KeyCode::Char('s'))), Some(Intent::Screen));
        assert_eq!(intent(key(KeyCode::Down)), Some(Intent::Down));
        assert_eq!(intent(key(KeyCode::Char('x'))), None);
        assert_eq!(
            intent(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Intent::Quit)
        );
        let mut release = key(KeyCode::Char('y'));
        release.kind = KeyEventKind::Release;
        assert_eq!(intent(release), None);
    }
}
