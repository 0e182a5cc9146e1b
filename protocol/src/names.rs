//! The tmux session name, shared by the terminal API ([`crate::term`]), the agent reports
//! ([`crate::agent`]) and the ctl daemon's session requests ([`crate::ctl`]), which all
//! name sessions.

use serde::{Deserialize, Serialize};

/// The longest session name.
pub const MAX_SESSION_NAME: usize = 64;

/// Whether `name` can name a tmux session of the box: 1–64 of `[A-Za-z0-9_-]`.
pub fn valid_session_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SESSION_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A tmux session name ([`valid_session_name`]), checked when it is made, also when it is
/// deserialized: a session name crosses from the box to the host (agent reports, terms,
/// session lists) and the host prints it, keys its records by it and passes it back to
/// tmux, so it holds nothing a terminal, a path or a tmux target (`:`, `.`, prefix) could
/// read as more than a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(try_from = "String", into = "String")]
pub struct SessionName(#[cfg_attr(test, proptest(regex = "[A-Za-z0-9_-]{1,64}"))] String);

/// Why a text is not a [`SessionName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{shown}` is not a session name (1–64 of letters, digits, `_` and `-`)")]
pub struct BadSessionName {
    /// The refused text, escaped and cut to 80 characters.
    shown: String,
}

impl SessionName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionName {
    type Error = BadSessionName;

    /// The one way a `SessionName` is made: refuses anything [`valid_session_name`] refuses.
    fn try_from(s: String) -> Result<Self, BadSessionName> {
        if valid_session_name(&s) {
            Ok(Self(s))
        } else {
            Err(BadSessionName {
                shown: s
                    .chars()
                    .take(80)
                    .collect::<String>()
                    .escape_debug()
                    .to_string(),
            })
        }
    }
}

impl TryFrom<&str> for SessionName {
    type Error = BadSessionName;

    fn try_from(s: &str) -> Result<Self, BadSessionName> {
        Self::try_from(s.to_string())
    }
}

impl std::str::FromStr for SessionName {
    type Err = BadSessionName;

    fn from_str(s: &str) -> Result<Self, BadSessionName> {
        Self::try_from(s)
    }
}

impl From<SessionName> for String {
    fn from(name: SessionName) -> Self {
        name.0
    }
}

/// The name reads as text wherever a `&str` is wanted (it is never changed in place).
impl std::ops::Deref for SessionName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for SessionName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SessionName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for SessionName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for SessionName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::fmt::Display for SessionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::SessionName;

    #[test]
    fn a_session_name_from_the_other_side_parses_only_when_plain() {
        for good in ["claude", "claude-2", "a_b", &"x".repeat(64)] {
            let name = SessionName::try_from(good).expect(good);
            assert_eq!(name.as_str(), good);
            let json = serde_json::to_string(&name).expect("json");
            assert_eq!(serde_json::from_str::<SessionName>(&json).ok(), Some(name));
        }
        let hostile = [
            String::new(),
            "a:b".into(),
            "a.b".into(),
            "=claude".into(),
            "../x".into(),
            "x/y".into(),
            "claude\n[agentbox] approved".into(),
            "\u{1b}[2Jx".into(),
            "é".into(),
            " claude".into(),
            "x".repeat(65),
        ];
        for name in &hostile {
            assert!(SessionName::try_from(name.as_str()).is_err(), "{name:?}");
            let json = serde_json::to_string(name).expect("json");
            let err = serde_json::from_str::<SessionName>(&json).expect_err(name);
            assert!(err.to_string().contains("not a session name"), "{err}");
            assert!(!err.to_string().contains('\u{1b}'), "{err}");
        }
    }
}
