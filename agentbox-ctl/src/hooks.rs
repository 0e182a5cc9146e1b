//! Reading the agents' own hook payloads into agent states, for
//! `agentbox-ctl agent-state --from claude|codex`.
//!
//! - Claude Code runs the command for each hook event with a JSON object on stdin
//!   (`hook_event_name`, and for notifications `notification_type` and `message`).
//! - Codex runs its `notify` program with a JSON object as the last argument (`type`).
//!
//! An event that says nothing about the state (a subagent finished, a login succeeded)
//! maps to `None` and changes nothing.

use agentbox_protocol::agent::AgentState;
use serde_json::Value;

/// A state and its detail.
pub type Report = (AgentState, Option<String>);

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The state a Claude Code hook event means.
pub fn from_claude(event: &Value) -> Option<Report> {
    let name = event.get("hook_event_name").and_then(Value::as_str)?;
    match name {
        "SessionStart" | "Stop" => Some((AgentState::Idle, None)),
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" => Some((AgentState::Working, None)),
        "SessionEnd" => Some((AgentState::Exited, text(event, "reason"))),
        "Notification" => {
            let message = text(event, "message");
            let waiting = match event.get("notification_type").and_then(Value::as_str) {
                Some("permission_prompt" | "elicitation_dialog") => true,
                Some(_) => false,
                // Older versions send only the message.
                None => message
                    .as_deref()
                    .is_some_and(|m| m.to_ascii_lowercase().contains("permission")),
            };
            waiting.then_some((AgentState::Waiting, message))
        }
        _ => None,
    }
}

/// The state a Codex `notify` payload means.
pub fn from_codex(event: &Value) -> Option<Report> {
    match event.get("type").and_then(Value::as_str)? {
        "agent-turn-complete" => Some((AgentState::Idle, None)),
        t if t.contains("approval") => Some((AgentState::Waiting, text(event, "message"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claude_events_map_to_states() {
        let ev = |v: Value| from_claude(&v).map(|(s, _)| s);
        assert_eq!(
            ev(json!({"hook_event_name": "UserPromptSubmit"})),
            Some(AgentState::Working)
        );
        assert_eq!(
            ev(json!({"hook_event_name": "PreToolUse", "tool_name": "Bash"})),
            Some(AgentState::Working)
        );
        assert_eq!(
            ev(json!({"hook_event_name": "Stop"})),
            Some(AgentState::Idle)
        );
        assert_eq!(
            ev(json!({"hook_event_name": "SessionEnd", "reason": "exit"})),
            Some(AgentState::Exited)
        );
        let asked = from_claude(&json!({
            "hook_event_name": "Notification",
            "notification_type": "permission_prompt",
            "message": "Claude needs your permission to use Bash"
        }));
        assert_eq!(
            asked,
            Some((
                AgentState::Waiting,
                Some("Claude needs your permission to use Bash".into())
            ))
        );
        assert_eq!(
            ev(
                json!({"hook_event_name": "Notification", "notification_type": "idle_prompt", "message": "Claude is waiting for your input"})
            ),
            None
        );
        assert_eq!(
            ev(
                json!({"hook_event_name": "Notification", "message": "Claude needs your permission to use Write"})
            ),
            Some(AgentState::Waiting)
        );
        assert_eq!(ev(json!({"hook_event_name": "SubagentStop"})), None);
        assert_eq!(ev(json!({"nothing": 1})), None);
        assert_eq!(ev(json!([1, 2])), None);
    }

    #[test]
    fn codex_events_map_to_states() {
        assert_eq!(
            from_codex(&json!({"type": "agent-turn-complete", "last-assistant-message": "done"})),
            Some((AgentState::Idle, None))
        );
        assert_eq!(
            from_codex(&json!({"type": "approval-requested"})).map(|r| r.0),
            Some(AgentState::Waiting)
        );
        assert_eq!(from_codex(&json!({"type": "something-new"})), None);
    }
}
