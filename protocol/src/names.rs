//! The shape of a tmux session name, shared by the terminal API ([`crate::term`]) and the
//! agent reports ([`crate::agent`]), which both name sessions.

/// Whether `name` can name a tmux session of the box: 1–64 of `[A-Za-z0-9_-]`.
pub fn valid_session_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
