//! What `agentbox.yaml` describes once it is read: a [`Config`] of [`UnitSpec`]s (services
//! and tasks) with their commands, restart policies, readiness probes, exposure and
//! `run_once` rules. Plain data, shared by the schema reader, the graph check and the
//! supervisor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentbox_protocol::ctl::UnitKind;

use super::yaml::Pos;

/// A loaded config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// Every unit: tasks first, then services, each in file order.
    pub units: Vec<UnitSpec>,
    /// Problems that do not stop the config from loading (unknown keys, …).
    pub warnings: Vec<String>,
}

impl Config {
    /// The unit named `name`.
    pub fn unit(&self, name: &str) -> Option<&UnitSpec> {
        self.units.iter().find(|u| u.name == name)
    }
}

/// How a unit's command is run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Command {
    /// A string, run as `bash -c STRING`.
    Shell(String),
    /// An argv list, run directly.
    Argv(Vec<String>),
}

impl Command {
    /// The command as one line, for status output.
    pub fn display(&self) -> String {
        match self {
            Command::Shell(s) => s.clone(),
            Command::Argv(v) => v.join(" "),
        }
    }

    /// Program and arguments to execute.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Shell(s) => vec!["bash".into(), "-c".into(), s.clone()],
            Command::Argv(v) => v.clone(),
        }
    }
}

/// When a service is restarted after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Whatever the exit status.
    Always,
    /// Unless it exited with code 0.
    OnFailure,
    /// Never.
    Never,
}

/// Restart delays: `initial`, multiplied by `factor` after each crash, capped at `max`,
/// and back to `initial` after a run that lasted `reset_after`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Growth per consecutive crash.
    pub factor: f64,
    /// A run at least this long counts as stable and resets the delay.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            reset_after: Duration::from_secs(10),
        }
    }
}

/// What a readiness probe checks.
#[derive(Debug, Clone)]
pub enum ProbeKind {
    /// A TCP connect succeeds.
    Port {
        /// Host to connect to.
        host: String,
        /// Port.
        port: u16,
    },
    /// An HTTP GET answers with the expected status.
    Http {
        /// The URL (http only).
        url: String,
        /// Expected status; any 2xx when absent.
        expect_status: Option<u16>,
    },
    /// A line of the unit's output matches.
    LogMatch(regex::Regex),
}

impl PartialEq for ProbeKind {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Port { host: a, port: p }, Self::Port { host: b, port: q }) => a == b && p == q,
            (
                Self::Http {
                    url: a,
                    expect_status: s,
                },
                Self::Http {
                    url: b,
                    expect_status: t,
                },
            ) => a == b && s == t,
            (Self::LogMatch(a), Self::LogMatch(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl std::fmt::Display for ProbeKind {
    /// What the probe waits for, as `create` and `status` show it ("port 8000", …).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Port { host, port } if host == "127.0.0.1" || host == "localhost" => {
                write!(f, "port {port}")
            }
            Self::Port { host, port } => write!(f, "port {host}:{port}"),
            Self::Http {
                url,
                expect_status: Some(s),
            } => write!(f, "{url} to answer {s}"),
            Self::Http { url, .. } => write!(f, "{url} to answer 2xx"),
            Self::LogMatch(re) => write!(f, "a log line matching /{}/", re.as_str()),
        }
    }
}

/// What happens when a probe does not pass within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// Kill the service; its restart policy decides what follows.
    Kill,
    /// Keep it running, not ready, and keep probing.
    MarkUnhealthy,
}

/// `ready_when`.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// What to check.
    pub kind: ProbeKind,
    /// Pause between attempts.
    pub interval: Duration,
    /// Pause before the first attempt.
    pub initial_delay: Duration,
    /// Give up after this long (counted from the start, delay included).
    pub timeout: Duration,
    /// What giving up means.
    pub on_timeout: OnTimeout,
}

/// `expose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expose {
    /// Port the service listens on.
    pub port: u16,
    /// Marked `default: true` (or the only/first exposed service).
    pub default: bool,
}

/// `run_once`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOnce {
    /// Skip when a marker keyed on command, cwd and env exists.
    Marker,
    /// Skip when this shell command exits 0.
    Check(String),
}

/// One service or task.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitSpec {
    /// Unique name (`[A-Za-z0-9_-]+`).
    pub name: String,
    /// Service or task.
    pub kind: UnitKind,
    /// What to run.
    pub command: Command,
    /// Working directory as written (relative to the workspace).
    pub cwd: Option<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Units that must be satisfied first (deduplicated, in file order).
    pub needs: Vec<String>,
    /// Started by the scheduler (services; tasks always are).
    pub autostart: bool,
    /// Restart policy (services).
    pub restart: RestartPolicy,
    /// Restart delays (services).
    pub backoff: Backoff,
    /// Readiness probe (services).
    pub ready_when: Option<Probe>,
    /// WebProxy exposure (services).
    pub expose: Option<Expose>,
    /// Skip rule (tasks).
    pub run_once: Option<RunOnce>,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub stop_grace: Duration,
    /// Where the unit is defined.
    pub pos: Pos,
}

impl UnitSpec {
    /// The working directory, resolved against `workspace`.
    pub fn resolved_cwd(&self, workspace: &Path) -> PathBuf {
        match &self.cwd {
            Some(dir) => workspace.join(dir),
            None => workspace.to_path_buf(),
        }
    }
}
