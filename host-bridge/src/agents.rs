//! What the host knows of the agents in its boxes: the latest state each agent reported
//! through the bridge, per box in `AGENTBOX_HOME/agents/<box>.json`, for `agentbox list`
//! and `agentbox status`.
//!
//! Reports are the box's claims: names are checked, text is cleaned, a time is clamped to
//! at most [`MAX_AHEAD_MS`] past the host's clock, a box keeps at most [`MAX_SESSIONS`]
//! agents on record, and a report older than the one on record (re-delivered, or
//! overtaken) changes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use agentbox_protocol::agent::{clean_detail, valid_agent_name, AgentState, AgentStatus};

/// The most agent sessions the host records for one box; a report of another session
/// past it is refused (the box's own agents are a handful).
pub const MAX_SESSIONS: usize = 64;

/// How far past the host's clock a report's time may be (clock skew); a later one is
/// clamped there, so a forged far-future time holds the record for at most this long.
pub const MAX_AHEAD_MS: u64 = 10 * 60 * 1000;

/// One bridge daemon per home applies reports; this keeps its concurrent requests from
/// interleaving their read-modify-write of a file.
static WRITE: Mutex<()> = Mutex::new(());

/// The agents of one box, by session.
pub type States = BTreeMap<agentbox_protocol::term::SessionName, AgentStatus>;

/// The states on record in `path` (none when there is no file or it is unreadable).
pub fn load(path: &Path) -> States {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// What applying a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The state on record before, if any.
    pub previous: Option<AgentState>,
    /// Whether the report was newer than the record (and so is now the record).
    pub recorded: bool,
}

/// Checks a report from a box; `Err` says why it is refused.
pub fn check(status: &AgentStatus) -> Result<AgentStatus, String> {
    // The session is a `SessionName`: checked when the report was parsed.
    if !valid_agent_name(&status.agent) {
        return Err("the report names an invalid agent".into());
    }
    let mut status = status.clone();
    status.since_ms = status
        .since_ms
        .min(agentbox_protocol::now_millis().saturating_add(MAX_AHEAD_MS));
    status.detail = status
        .detail
        .as_deref()
        .map(clean_detail)
        .filter(|d| !d.is_empty());
    Ok(status)
}

/// Records `status` in `path` unless the record is newer.
pub fn apply(path: &Path, status: &AgentStatus) -> std::io::Result<Applied> {
    let _guard = WRITE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut states = load(path);
    let previous = states.get(&status.session).cloned();
    if previous
        .as_ref()
        .is_some_and(|p| p.since_ms >= status.since_ms)
    {
        return Ok(Applied {
            previous: previous.map(|p| p.state),
            recorded: false,
        });
    }
    if previous.is_none() && states.len() >= MAX_SESSIONS {
        return Err(std::io::Error::other(format!(
            "the box already has {MAX_SESSIONS} agent sessions on record, the most the host keeps"
        )));
    }
    states.insert(status.session.clone(), status.clone());
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, &states)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(Applied {
        previous: previous.map(|p| p.state),
        recorded: true,
    })
}

/// One line for a box's agents, such as `claude waiting, codex idle` (`-` for none).
pub fn summary(states: &States, box_running: bool) -> String {
    if states.is_empty() {
        return "-".into();
    }
    states
        .values()
        .map(|s| {
            let state = shown_state(s, box_running);
            if s.agent == s.session.as_str() {
                format!("{} {state}", s.agent)
            } else {
                format!("{}({}) {state}", s.agent, s.session)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The state to show: an agent of a box that is not running has exited, whatever it said.
pub fn shown_state(status: &AgentStatus, box_running: bool) -> AgentState {
    if box_running {
        status.state
    } else {
        AgentState::Exited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(state: AgentState, since_ms: u64) -> AgentStatus {
        AgentStatus {
            session: "claude".parse().expect("session name"),
            agent: "claude".into(),
            state,
            detail: Some("needs \x1b[31myou".into()),
            since_ms,
        }
    }

    #[test]
    fn newer_reports_win_and_older_ones_change_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agents").join("b.json");
        let first = apply(&path, &report(AgentState::Working, 10)).expect("apply");
        assert_eq!(
            first,
            Applied {
                previous: None,
                recorded: true
            }
        );
        let second = apply(&path, &report(AgentState::Waiting, 20)).expect("apply");
        assert_eq!(second.previous, Some(AgentState::Working));
        let stale = apply(&path, &report(AgentState::Idle, 15)).expect("apply");
        assert!(!stale.recorded);
        assert_eq!(load(&path)["claude"].state, AgentState::Waiting);
        assert_eq!(summary(&load(&path), true), "claude waiting");
        assert_eq!(summary(&load(&path), false), "claude exited");
        assert_eq!(summary(&States::new(), true), "-");
    }

    #[test]
    fn a_box_cannot_hold_the_record_with_future_times_or_flood_it_with_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.json");
        let now = agentbox_protocol::now_millis();
        // Far-future times are clamped to the allowed skew, not kept.
        for forged in [u64::MAX, u64::MAX / 2, now + 365 * 24 * 3600 * 1000] {
            let clamped = check(&report(AgentState::Waiting, forged)).expect("ok");
            assert!(
                clamped.since_ms <= agentbox_protocol::now_millis() + MAX_AHEAD_MS,
                "{forged} kept as {}",
                clamped.since_ms
            );
        }
        // A time within the skew is kept as sent.
        let near = check(&report(AgentState::Idle, now + 1000)).expect("ok");
        assert_eq!(near.since_ms, now + 1000);
        // Sessions past the cap are refused; those on record still update.
        for i in 0..MAX_SESSIONS + 40 {
            let mut r = report(AgentState::Working, 1);
            r.session = format!("s{i}").parse().expect("session name");
            let applied = apply(&path, &check(&r).expect("ok"));
            assert_eq!(applied.is_ok(), i < MAX_SESSIONS, "session {i}");
        }
        assert_eq!(load(&path).len(), MAX_SESSIONS);
        let mut r = report(AgentState::Idle, 2);
        r.session = "s0".parse().expect("session name");
        assert!(
            apply(&path, &r)
                .expect("an agent on record updates")
                .recorded
        );
    }

    #[test]
    fn reports_are_checked_and_cleaned() {
        let clean = check(&report(AgentState::Waiting, 1)).expect("ok");
        assert_eq!(clean.detail.as_deref(), Some("needs  [31myou"));
        // A report naming session `../x` does not parse: the name is a `SessionName`.
        let mut bad = serde_json::to_value(report(AgentState::Idle, 1)).expect("json");
        bad["session"] = "../x".into();
        assert!(serde_json::from_value::<AgentStatus>(bad).is_err());
        let mut bad = report(AgentState::Idle, 1);
        bad.agent = "$(rm -rf)".into();
        assert!(check(&bad).is_err());
    }
}
