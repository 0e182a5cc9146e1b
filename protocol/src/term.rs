//! The terminal API of the relay's bridge port: a viewer of a tmux session of the box.
//!
//! `POST /v1/terms` ([`TermOpen`]) starts `tmux attach -t =SESSION` in a PTY for one
//! viewer and answers [`TermInfo`]. Everything the PTY prints is numbered by byte offset
//! from 0; a viewer reads from the offset it has, so a reconnect delivers every byte once
//! and in order. Input is numbered the same way, so a retried send is never typed twice.
//!
//! Two transports carry the same stream:
//!
//! - WebSocket, `GET /v1/terms/{id}/ws?offset=N`. The relay's first message is a text
//!   [`TermEvent::Hello`]; then binary messages are output bytes from `N` on, and text
//!   messages are [`TermEvent`]s. The viewer sends binary messages of an 8-byte big-endian
//!   input offset followed by the bytes ([`encode_input`]), and text [`TermControl`]s.
//! - HTTP streaming, for paths that refuse the upgrade (Daytona's private previews):
//!   `GET /v1/terms/{id}/output?offset=N` streams output bytes from `N` (ending after
//!   [`STREAM_IDLE_MS`] without output, below proxies' idle cuts, or when the viewer ends);
//!   `POST /v1/terms/{id}/input?offset=K` with the bytes; `POST /v1/terms/{id}/resize`
//!   with a [`TermSize`]; `GET /v1/terms/{id}` for [`TermInfo`].
//!
//! An offset the relay no longer holds is `410 Gone`: the viewer opens a new term and tmux
//! redraws the screen. An unknown term is `404` (it ended, or the relay restarted).

use serde::{Deserialize, Serialize};

pub use crate::names::{valid_session_name, BadSessionName, SessionName, MAX_SESSION_NAME};

/// How long an HTTP output stream stays open without a byte to send.
pub const STREAM_IDLE_MS: u64 = 15_000;

/// The default time a viewer's term outlives its connection, waiting for a reconnect.
pub const DEFAULT_KEEP_MS: u64 = 5 * 60 * 1000;

/// The longest a viewer may ask its term to wait for a reconnect.
pub const MAX_KEEP_MS: u64 = 60 * 60 * 1000;

/// Whether `term` can be a `TERM` value: 1–64 of `[A-Za-z0-9._+-]`.
pub fn valid_term_name(term: &str) -> bool {
    !term.is_empty()
        && term.len() <= 64
        && term
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TermSize {
    /// Columns (1–1000).
    pub cols: u16,
    /// Rows (1–1000).
    pub rows: u16,
}

impl TermSize {
    /// Whether both sides are in 1–1000.
    pub fn is_valid(self) -> bool {
        (1..=1000).contains(&self.cols) && (1..=1000).contains(&self.rows)
    }
}

/// `POST /v1/terms`: open a viewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TermOpen {
    /// The session to view; with `shell`, the name of the new shell session (made up when
    /// absent). Without either, the only session of the box.
    #[serde(default)]
    pub session: Option<SessionName>,
    /// Start a fresh login shell in a new session, which ends when the shell exits.
    #[serde(default)]
    pub shell: bool,
    /// The viewer's terminal size.
    pub size: TermSize,
    /// The viewer's `TERM` (`xterm-256color` when absent).
    #[serde(default)]
    pub term: Option<String>,
    /// The viewer cannot type (tmux `attach -r`, and the relay drops input).
    #[serde(default)]
    pub read_only: bool,
    /// How long the term waits for a reconnect after its viewer's connection drops
    /// ([`DEFAULT_KEEP_MS`] when absent, at most [`MAX_KEEP_MS`]).
    #[serde(default)]
    pub keep_ms: Option<u64>,
}

/// Why a term ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum TermEnd {
    /// The viewer detached (`Ctrl-a d`); the session goes on.
    Detached,
    /// The session ended (its program exited or it was killed).
    SessionEnded,
    /// Nobody reconnected within the keep window; the session goes on.
    Expired,
    /// The viewer closed it, or the relay is stopping; the session goes on.
    Closed,
}

impl TermEnd {
    /// A sentence for the viewer's terminal.
    pub fn describe(self, session: &str) -> String {
        match self {
            Self::Detached => format!("detached from session `{session}` (it keeps running)"),
            Self::SessionEnded => format!("session `{session}` ended"),
            Self::Expired => format!("the connection to session `{session}` was gone too long"),
            Self::Closed => format!("the box closed the view of session `{session}`"),
        }
    }
}

/// What the relay says of a term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TermInfo {
    /// The term's id (`t` + 32 hex), checked when it is read.
    pub id: TermId,
    /// The session it views.
    pub session: SessionName,
    /// Bytes of output so far (the next output offset).
    pub produced: u64,
    /// blake3 (hex) of every output byte so far: a viewer that holds `produced` bytes can
    /// prove it lost and repeated nothing.
    pub digest: String,
    /// Input bytes taken so far (the next input offset).
    pub input: u64,
    /// The oldest output offset still held.
    pub held_from: u64,
    /// The viewer cannot type.
    pub read_only: bool,
    /// Set once the term has ended (its output is complete at `produced`).
    pub ended: Option<TermEnd>,
}

/// A text message from the relay on a term's WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum TermEvent {
    /// First message: output follows from `output_offset`; input is taken from
    /// `input_offset` (resend anything after it).
    Hello {
        /// Where the output that follows starts.
        output_offset: u64,
        /// The next input offset the relay expects.
        input_offset: u64,
    },
    /// The term ended; every output byte before `produced` has been sent.
    Ended {
        /// Why.
        reason: TermEnd,
        /// The final output size.
        produced: u64,
    },
}

/// A text message from the viewer on a term's WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum TermControl {
    /// The viewer's terminal changed size.
    Resize(TermSize),
}

/// An input message on the WebSocket: the 8-byte big-endian input offset, then the bytes.
pub fn encode_input(offset: u64, bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(8 + bytes.len());
    message.extend_from_slice(&offset.to_be_bytes());
    message.extend_from_slice(bytes);
    message
}

/// The inverse of [`encode_input`]; `None` when the message is shorter than its offset.
pub fn decode_input(message: &[u8]) -> Option<(u64, &[u8])> {
    let (head, bytes) = message.split_at_checked(8)?;
    let offset = u64::from_be_bytes(head.try_into().ok()?);
    Some((offset, bytes))
}

/// Whether `id` has the shape of a term id.
pub fn is_term_id(id: &str) -> bool {
    id.len() == 33
        && id.starts_with('t')
        && id[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A new random term id.
pub fn new_term_id() -> std::io::Result<TermId> {
    let mut token = crate::token::new_bridge_token()?;
    token.truncate(32);
    TermId::try_from(format!("t{token}")).map_err(std::io::Error::other)
}

/// A term id (`t` + 32 lowercase hex, [`is_term_id`]), checked when it is made, also when
/// it is deserialized: the host builds URLs (`/v1/terms/{id}/…`) from the id a relay
/// answers, so an id holds nothing a path or query could use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(try_from = "String", into = "String")]
pub struct TermId(#[cfg_attr(test, proptest(regex = "t[0-9a-f]{32}"))] String);

impl TermId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TermId {
    type Error = String;

    /// The one way a `TermId` is made: refuses anything but `t` and 32 lowercase hex digits.
    fn try_from(s: String) -> Result<Self, String> {
        if is_term_id(&s) {
            Ok(Self(s))
        } else {
            Err(format!(
                "`{}` is not a term id (`t` and 32 lowercase hex digits)",
                s.escape_debug()
            ))
        }
    }
}

impl From<TermId> for String {
    fn from(id: TermId) -> Self {
        id.0
    }
}

/// The id reads as text wherever a `&str` is wanted (it is never changed in place).
impl std::ops::Deref for TermId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TermId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::TermId;

    #[test]
    fn a_term_id_from_the_other_side_parses_only_when_plain() {
        let good = format!("t{}", "0123456789abcdef".repeat(2));
        assert_eq!(
            TermId::try_from(good.clone()).map(String::from),
            Ok(good.clone())
        );
        let hostile = [
            String::new(),
            "t".into(),
            "../../v1/bridge/result".into(),
            format!("t{}/../x", "0".repeat(27)),
            format!("t{}?a=", "0".repeat(29)),
            format!("t{}#", "0".repeat(31)),
            format!("t{}%2F", "0".repeat(29)),
            format!("t{}\n", "0".repeat(31)),
            format!("T{}", "0".repeat(32)),
            format!("t{}", "A".repeat(32)),
            format!("t{}", "0".repeat(33)),
            format!("t{}", "0".repeat(31)),
            format!("t{}é", "0".repeat(30)),
            format!("{good} "),
        ];
        for id in &hostile {
            assert!(TermId::try_from(id.clone()).is_err(), "{id:?} parsed");
            let json = serde_json::to_string(id).expect("json");
            assert!(
                serde_json::from_str::<TermId>(&json).is_err(),
                "{id:?} deserialized"
            );
        }
    }
}
