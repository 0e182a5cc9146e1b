//! What a coding agent in a box is doing, as its hooks report it.
//!
//! The agent's hooks (Claude Code's hooks, Codex's `notify`, an OpenCode plugin) call
//! `agentbox-ctl agent-state`; the ctl daemon keeps the latest [`AgentStatus`] per
//! session and forwards each change to the host as a bridge request
//! ([`crate::bridge::HostRequest::AgentState`]), where `agentbox list` shows it.

use serde::{Deserialize, Serialize};

use crate::EpochMillis;

/// The longest [`AgentStatus::detail`] kept.
pub const MAX_DETAIL: usize = 200;

/// An agent's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Working on a turn.
    Working,
    /// Waiting for the user: a permission prompt or a question.
    Waiting,
    /// Done with its turn; ready for the next prompt.
    Idle,
    /// Stopped by an error.
    Error,
    /// Its program is no longer running.
    Exited,
}

impl AgentState {
    /// The lowercase name (`working`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Working => "working",
            Self::Waiting => "waiting",
            Self::Idle => "idle",
            Self::Error => "error",
            Self::Exited => "exited",
        }
    }
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for AgentState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "working" => Self::Working,
            "waiting" => Self::Waiting,
            "idle" => Self::Idle,
            "error" => Self::Error,
            "exited" => Self::Exited,
            _ => {
                return Err(format!(
                    "unknown agent state `{s}`: working, waiting, idle, error or exited"
                ))
            }
        })
    }
}

/// The latest state of the agent in one tmux session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct AgentStatus {
    /// The tmux session the agent runs in.
    pub session: crate::names::SessionName,
    /// Which agent (`claude`, `codex`, `opencode`, or another name).
    pub agent: String,
    /// What it is doing.
    pub state: AgentState,
    /// A short human text (what it waits for), at most [`MAX_DETAIL`] characters.
    pub detail: Option<String>,
    /// When the box saw this state begin (the box's clock; strictly increasing per session).
    pub since_ms: EpochMillis,
}

/// Whether `name` can name an agent: 1–32 of `[A-Za-z0-9_-]`.
pub fn valid_agent_name(name: &str) -> bool {
    name.len() <= 32 && crate::names::valid_session_name(name)
}

/// `text` made fit for a detail: control characters gone, at most [`MAX_DETAIL`] characters.
pub fn clean_detail(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DETAIL)
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for s in [
            AgentState::Working,
            AgentState::Waiting,
            AgentState::Idle,
            AgentState::Error,
            AgentState::Exited,
        ] {
            assert_eq!(s.as_str().parse::<AgentState>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).expect("json"), format!("\"{s}\""));
        }
        assert!("busy"
            .parse::<AgentState>()
            .err()
            .is_some_and(|e| e.contains("unknown agent state")));
    }

    #[test]
    fn details_are_cleaned() {
        assert_eq!(clean_detail("a\x1b[31mb\nc"), "a [31mb c");
        assert_eq!(clean_detail(&"x".repeat(500)).len(), MAX_DETAIL);
        assert!(valid_agent_name("claude"));
        assert!(!valid_agent_name("a b"));
        assert!(!valid_agent_name(""));
    }
}
