//! The agents' states, as their hooks report them (`agentbox-ctl agent-state`).
//!
//! The daemon keeps the latest [`AgentStatus`] per tmux session, shows it in `session list`,
//! and forwards every change to the host through the relay's journal, in order, from one
//! task (a hook never waits for the host). A session whose program ended is marked
//! `exited` by a watcher, for agents that die without a last hook.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentbox_protocol::agent::{clean_detail, valid_agent_name, AgentState, AgentStatus};
use agentbox_protocol::bridge::HostRequest;
use agentbox_protocol::ctl::SessionInfo;
use agentbox_protocol::term::SessionName;
use agentbox_protocol::{ErrorCode, ErrorReply};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::session::Tmux;

/// How often the watcher looks for agents whose session ended, and at the screens of
/// agents without a hook for starting work.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Agents whose hooks say when a turn ends but not when one starts: the watcher reads
/// their screen for the busy indicator they show while working.
const SCREEN_READ: &[(&str, &str)] = &[("codex", "esc to interrupt")];

/// The agents' states; cheap to clone.
#[derive(Clone)]
pub struct Agents {
    states: Arc<Mutex<HashMap<SessionName, AgentStatus>>>,
    /// Sessions whose `working` came from reading the screen (and so may end the same way).
    screen_working: Arc<Mutex<std::collections::HashSet<SessionName>>>,
    forward: mpsc::UnboundedSender<AgentStatus>,
}

impl Agents {
    /// The table, and the receiving end of the changes for [`forward`].
    pub fn new() -> (Self, mpsc::UnboundedReceiver<AgentStatus>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                states: Arc::default(),
                screen_working: Arc::default(),
                forward: tx,
            },
            rx,
        )
    }

    /// Records a report. A report that changes nothing (same state and detail) is not
    /// forwarded; otherwise its time is made later than the previous one's.
    pub fn report(&self, status: AgentStatus) -> Result<(), ErrorReply> {
        self.screen_working
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(status.session.as_str());
        self.record(status)
    }

    /// A session started for `agent`: `idle` until it reports, unless it already did.
    pub fn started(&self, session: &SessionName, agent: &str) {
        let known = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(session.as_str());
        if !known {
            let _ = self.record(AgentStatus {
                session: session.clone(),
                agent: agent.to_string(),
                state: AgentState::Idle,
                detail: None,
                since_ms: agentbox_protocol::now_millis(),
            });
        }
    }

    /// What the screen of an agent without a turn-start hook shows: busy or not. Busy
    /// makes it `working`; no longer busy ends a `working` that the screen began.
    fn screen_says(&self, status: &AgentStatus, busy: bool) {
        let mut from_screen = self
            .screen_working
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = match (busy, status.state) {
            (true, AgentState::Idle | AgentState::Error) => AgentState::Working,
            (false, AgentState::Working) if from_screen.contains(status.session.as_str()) => {
                AgentState::Idle
            }
            _ => return,
        };
        if next == AgentState::Working {
            from_screen.insert(status.session.clone());
        } else {
            from_screen.remove(status.session.as_str());
        }
        drop(from_screen);
        let _ = self.record(AgentStatus {
            state: next,
            detail: None,
            since_ms: agentbox_protocol::now_millis(),
            ..status.clone()
        });
    }

    fn record(&self, mut status: AgentStatus) -> Result<(), ErrorReply> {
        if !crate::session::valid_name(&status.session) {
            return Err(ErrorReply::new(
                ErrorCode::BadRequest,
                format!("invalid session name `{}`", status.session),
            ));
        }
        if !valid_agent_name(&status.agent) {
            return Err(ErrorReply::new(
                ErrorCode::BadRequest,
                format!(
                    "invalid agent name `{}`: use letters, digits, `_` and `-`",
                    status.agent
                ),
            ));
        }
        status.detail = status
            .detail
            .map(|d| clean_detail(&d))
            .filter(|d| !d.is_empty());
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = states.get(status.session.as_str()) {
            if old.state == status.state && old.detail == status.detail && old.agent == status.agent
            {
                return Ok(());
            }
            status.since_ms = status.since_ms.max(old.since_ms + 1);
        }
        states.insert(status.session.clone(), status.clone());
        // The forwarder lives as long as the daemon; a send after it stopped is moot.
        let _ = self.forward.send(status);
        Ok(())
    }

    /// Forgets what an earlier session of this name reported (a new one starts).
    pub fn forget(&self, session: &str) {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        states.remove(session);
    }

    /// Adds each session's agent state to `sessions`.
    pub fn annotate(&self, sessions: &mut [SessionInfo]) {
        let states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for s in sessions {
            s.agent = states.get(s.name.as_str()).cloned();
        }
    }

    fn live(&self) -> Vec<AgentStatus> {
        let states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        states
            .values()
            .filter(|s| s.state != AgentState::Exited)
            .cloned()
            .collect()
    }
}

/// Sends each change to the relay's journal, one at a time and in order. A relay that
/// cannot be reached costs that change (logged); the table still has it.
pub async fn forward(run_dir: PathBuf, mut changes: mpsc::UnboundedReceiver<AgentStatus>) {
    while let Some(status) = changes.recv().await {
        let dir = run_dir.clone();
        let sent = tokio::task::spawn_blocking(move || {
            crate::host::journal(&dir, HostRequest::AgentState(status))
        })
        .await;
        match sent {
            Ok(Ok(id)) => tracing::debug!(%id, "agent state journalled"),
            Ok(Err(e)) => tracing::warn!("agent state not sent to the host: {e}"),
            Err(e) => tracing::warn!("agent state forwarder failed: {e}"),
        }
    }
}

/// Marks `exited` the agents whose session is gone or whose program ended.
pub async fn watch(agents: Agents, tmux: Tmux, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let live = agents.live();
        if live.is_empty() {
            continue;
        }
        let Ok(sessions) = tmux.list().await else {
            continue;
        };
        for status in live {
            let running = sessions
                .iter()
                .any(|s| s.name == status.session && s.running);
            if !running {
                let _ = agents.report(AgentStatus {
                    state: AgentState::Exited,
                    detail: None,
                    since_ms: agentbox_protocol::now_millis(),
                    ..status
                });
                continue;
            }
            let Some((_, busy_text)) = SCREEN_READ.iter().find(|(a, _)| *a == status.agent) else {
                continue;
            };
            if let Ok(screen) = tmux.capture(&status.session).await {
                let busy = screen.to_ascii_lowercase().contains(busy_text);
                agents.screen_says(&status, busy);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: AgentState, since_ms: u64) -> AgentStatus {
        AgentStatus {
            session: "claude".parse().expect("session name"),
            agent: "claude".into(),
            state,
            detail: None,
            since_ms,
        }
    }

    #[test]
    fn only_changes_are_forwarded_in_increasing_time() {
        let (agents, mut rx) = Agents::new();
        agents.report(status(AgentState::Working, 100)).expect("ok");
        agents.report(status(AgentState::Working, 150)).expect("ok");
        // A clock that stepped back still yields a later time.
        agents.report(status(AgentState::Waiting, 90)).expect("ok");
        let first = rx.try_recv().expect("first");
        let second = rx.try_recv().expect("second");
        assert_eq!(first.state, AgentState::Working);
        assert_eq!(second.state, AgentState::Waiting);
        assert_eq!(second.since_ms, 101);
        assert!(rx.try_recv().is_err(), "the repeat was forwarded");
    }

    #[test]
    fn the_screen_starts_and_ends_work_only_where_hooks_do_not_say() {
        let (agents, mut rx) = Agents::new();
        let cx: SessionName = "cx".parse().expect("session name");
        agents.started(&cx, "codex");
        let idle = rx.try_recv().expect("initial");
        assert_eq!(idle.state, AgentState::Idle);
        agents.screen_says(&idle, true);
        let working = rx.try_recv().expect("working");
        assert_eq!(working.state, AgentState::Working);
        agents.screen_says(&working, false);
        assert_eq!(rx.try_recv().expect("idle").state, AgentState::Idle);
        // A hook's `working` is not ended by the screen.
        let mut hooked = working.clone();
        hooked.since_ms += 10;
        agents.report(hooked).expect("report");
        let hooked = rx.try_recv().expect("hooked");
        agents.screen_says(&hooked, false);
        assert!(rx.try_recv().is_err());
        // `started` never overrides a report that came first.
        agents.started(&cx, "codex");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn bad_names_are_refused() {
        let (agents, _rx) = Agents::new();
        // A bad session name cannot even be made (the report does not parse).
        assert!("a:b".parse::<SessionName>().is_err());
        let mut s = status(AgentState::Idle, 1);
        s.agent = "a b".into();
        assert!(agents.report(s).is_err());
    }
}
