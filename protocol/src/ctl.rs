//! `agentbox-ctl` CLI ↔ ctl daemon, over `AGENTBOX_RUN_DIR/ctl.sock`.
//!
//! One [`CtlRequest`] per connection after the handshake. Most requests get one
//! [`CtlResponse`]; `Logs { follow: true }` and `WaitReady` may stream several frames
//! ([`CtlResponse::LogLines`] batches, then [`CtlResponse::End`]).
//!
//! The status types are also the JSON of `agentbox-ctl status --json`, so their field
//! names are a public contract (golden tests pin them).

use serde::{Deserialize, Serialize};

use crate::{EpochMillis, ErrorReply};

/// A request to the ctl daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum CtlRequest {
    /// Liveness check; answered with [`CtlResponse::Pong`].
    Ping,
    /// Every unit's status; answered with [`CtlResponse::Status`].
    Status,
    /// Wait until the named units (all autostart units when empty) are ready, or one fails,
    /// or `timeout_ms` passes; answered with [`CtlResponse::WaitReady`].
    WaitReady {
        /// Units to wait for; empty means every task and every autostart service.
        units: Vec<String>,
        /// Server-side deadline.
        timeout_ms: u64,
    },
    /// Start a unit (a service, or re-run a task).
    Start {
        /// Unit name.
        name: String,
    },
    /// Stop a unit: SIGTERM to its process group, SIGKILL after the grace period.
    Stop {
        /// Unit name.
        name: String,
    },
    /// Stop, then start.
    Restart {
        /// Unit name.
        name: String,
    },
    /// Re-read the config: start new units, stop removed ones, restart changed ones.
    Reload,
    /// Run a task now.
    RunTask {
        /// Task name.
        name: String,
        /// Ignore `run_once` markers and checks.
        force: bool,
        /// Answer only when the task has finished.
        wait: bool,
    },
    /// A unit's log lines.
    Logs {
        /// Unit name.
        name: String,
        /// How many of the latest lines to send first.
        tail: u32,
        /// Keep the connection open and stream new lines (across rotation).
        follow: bool,
    },
    /// Create a tmux session running `argv`.
    SessionStart(SessionSpec),
    /// List the tmux sessions.
    SessionList,
    /// Kill a tmux session by exact name.
    SessionKill {
        /// Session name.
        name: crate::names::SessionName,
    },
    /// Ask the daemon to stop every unit and exit.
    Shutdown,
    /// An agent's hook reports its state (`agentbox-ctl agent-state`).
    AgentState(crate::agent::AgentStatus),
    /// Stream a [`CtlResponse::Status`] now and after every change, until the client
    /// disconnects (the relay follows exposed services this way).
    WatchStatus,
}

/// How to start an agent session in tmux.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SessionSpec {
    /// The session name (exact: never a tmux prefix match).
    pub name: crate::names::SessionName,
    /// Working directory; the workspace when absent.
    pub cwd: Option<String>,
    /// Program and arguments, run directly (no shell).
    pub argv: Vec<String>,
    /// Extra environment for this session only.
    pub env: Vec<(String, String)>,
    /// The session ends when its command exits (a shell), instead of keeping the dead
    /// pane's last output on screen (an agent).
    #[serde(default)]
    pub ends_with_command: bool,
    /// The agent the session runs (`claude`, `codex`, …): it shows as `idle` until its
    /// hooks say more.
    #[serde(default)]
    pub agent: Option<String>,
}

/// A response from the ctl daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum CtlResponse {
    /// Answer to [`CtlRequest::Ping`].
    Pong,
    /// The request was carried out and has nothing to report.
    Done,
    /// Every unit.
    Status(StatusReport),
    /// One unit after a start/stop/restart/run-task.
    Unit(UnitStatus),
    /// Result of a wait.
    WaitReady(WaitReadyReport),
    /// Result of a reload.
    Reload(ReloadReport),
    /// A batch of log lines (possibly one of many when following).
    LogLines(Vec<LogLine>),
    /// The tmux sessions.
    Sessions(Vec<SessionInfo>),
    /// A stream of frames is over.
    End,
    /// The request failed.
    Error(ErrorReply),
}

/// Whether a unit is a long-running service or a run-to-completion task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// Supervised and restarted by policy.
    Service,
    /// Runs once to completion.
    Task,
}

/// The lifecycle state of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    /// Not started: waiting for its `needs`, or `autostart: false`.
    Pending,
    /// Spawned, readiness probe not yet passed.
    Starting,
    /// Alive; with no probe this also means ready.
    Running,
    /// Alive and its readiness probe passed.
    Ready,
    /// Exited with code 0 (a finished task), or a service waiting out its restart backoff.
    Exited,
    /// A task that failed, or a service that crashed and will not be restarted.
    Failed,
    /// Stopped on request.
    Stopped,
    /// A task not run because something it needs failed.
    Skipped,
}

impl UnitState {
    /// The lowercase name used in JSON and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Ready => "ready",
            Self::Exited => "exited",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for UnitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A port a service exposes through the WebProxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Exposure {
    /// The port the service listens on inside the box.
    pub port: u16,
    /// Whether requests whose Host names no service go here.
    pub default: bool,
}

/// One unit's status: the element of `agentbox-ctl status --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct UnitStatus {
    /// Unit name.
    pub name: String,
    /// Service or task.
    pub kind: UnitKind,
    /// Lifecycle state.
    pub state: UnitState,
    /// Whether dependents may proceed: a ready service, a task that exited 0.
    pub ready: bool,
    /// Started by the scheduler without being asked (tasks always are).
    pub autostart: bool,
    /// Process id of the running unit (its process group leader).
    pub pid: Option<u32>,
    /// Restarts since the unit was last started by hand.
    pub restarts: u32,
    /// Exit code of the last run (`None` if it has not exited or died by a signal).
    pub exit_code: Option<i32>,
    /// Name of the signal that ended the last run, if one did.
    pub exit_signal: Option<String>,
    /// When the current or last run started.
    pub started_at_ms: Option<EpochMillis>,
    /// When the last run ended.
    pub finished_at_ms: Option<EpochMillis>,
    /// When a service in backoff will be restarted.
    pub next_restart_at_ms: Option<EpochMillis>,
    /// Dependencies not yet satisfied (while pending).
    pub blocked_on: Vec<String>,
    /// A short human explanation of the state ("probe timed out after 60000ms", …).
    pub detail: Option<String>,
    /// The WebProxy exposure, if any.
    pub expose: Option<Exposure>,
    /// The command line as written in the config.
    pub command: String,
}

/// The daemon itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DaemonInfo {
    /// Daemon process id.
    pub pid: u32,
    /// Daemon release version.
    pub version: String,
    /// The config file it reads.
    pub config_path: String,
    /// Set when the config could not be loaded: the daemon then runs with no units and
    /// keeps serving, so agent hooks and `status` still work.
    pub config_error: Option<String>,
    /// Warnings from the last load (unknown keys, …).
    pub config_warnings: Vec<String>,
}

/// Answer to [`CtlRequest::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StatusReport {
    /// The daemon.
    pub daemon: DaemonInfo,
    /// Every unit: tasks then services, each in config order.
    pub units: Vec<UnitStatus>,
}

/// A unit that kept a wait from succeeding, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct UnitProblem {
    /// Unit name.
    pub name: String,
    /// Its state at the end of the wait.
    pub state: Option<UnitState>,
    /// Why it is not ready ("exited with code 1", "no such unit", "still starting").
    pub reason: String,
}

/// Answer to [`CtlRequest::WaitReady`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WaitReadyReport {
    /// Every target is ready.
    pub ready: bool,
    /// Targets that failed (the wait ends as soon as one does).
    pub failed: Vec<UnitProblem>,
    /// Targets still not ready at the deadline.
    pub timed_out: Vec<UnitProblem>,
}

/// Answer to [`CtlRequest::Reload`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ReloadReport {
    /// Units new in the config.
    pub added: Vec<String>,
    /// Units gone from the config (stopped).
    pub removed: Vec<String>,
    /// Units whose definition changed (restarted).
    pub changed: Vec<String>,
    /// Warnings from the new config.
    pub warnings: Vec<String>,
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// The unit's standard output.
    Stdout,
    /// The unit's standard error.
    Stderr,
    /// A line written by the supervisor about the unit (exit, restart, probe).
    Ctl,
}

impl LogStream {
    /// One-letter tag used in log files and plain output.
    pub fn tag(self) -> char {
        match self {
            Self::Stdout => 'O',
            Self::Stderr => 'E',
            Self::Ctl => 'C',
        }
    }

    /// Inverse of [`LogStream::tag`].
    pub fn from_tag(tag: char) -> Option<Self> {
        match tag {
            'O' => Some(Self::Stdout),
            'E' => Some(Self::Stderr),
            'C' => Some(Self::Ctl),
            _ => None,
        }
    }
}

/// One line of a unit's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LogLine {
    /// Unit name.
    pub unit: String,
    /// When the line was read.
    pub ts_ms: EpochMillis,
    /// Source stream.
    pub stream: LogStream,
    /// The text, without its line terminator (invalid UTF-8 replaced).
    pub line: String,
}

/// A tmux session in the box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SessionInfo {
    /// Exact session name.
    pub name: crate::names::SessionName,
    /// Whether the session's first pane still runs its command.
    pub running: bool,
    /// When the session was created.
    pub started_at_ms: Option<EpochMillis>,
    /// Number of attached clients.
    pub attached: u32,
    /// The agent's latest state, when an agent in the session reported one.
    #[serde(default)]
    pub agent: Option<crate::agent::AgentStatus>,
}
