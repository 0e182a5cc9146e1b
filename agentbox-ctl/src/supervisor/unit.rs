//! One unit as the supervisor sees it: its spec, its log, where it is in its life cycle
//! (state, generation, pid, restarts, backoff) and who waits for it; its status line, and
//! how it is terminated.

use std::time::{Duration, Instant};

use agentbox_protocol::ctl::{Exposure, LogStream, UnitKind, UnitState, UnitStatus};
use tokio::task::AbortHandle;

use super::handle::Reply;
use super::process::{self, Exit};
use crate::config::UnitSpec;
use crate::logs::UnitLog;
use crate::paths::Paths;

/// What to do when the current process of a unit has exited.
pub(super) enum AfterExit {
    Nothing,
    Remove,
    Replace(Box<UnitSpec>),
    Restart,
}

pub(super) struct Unit {
    pub(super) spec: UnitSpec,
    pub(super) log: UnitLog,
    pub(super) state: UnitState,
    pub(super) gen: u64,
    pub(super) wanted: bool,
    pub(super) force: bool,
    pub(super) ready: bool,
    pub(super) pid: Option<u32>,
    pub(super) restarts: u32,
    pub(super) delay: Option<Duration>,
    pub(super) exit: Option<Exit>,
    pub(super) started: Option<Instant>,
    pub(super) started_at_ms: Option<u64>,
    pub(super) finished_at_ms: Option<u64>,
    pub(super) next_restart_at_ms: Option<u64>,
    pub(super) blocked_on: Vec<String>,
    pub(super) detail: Option<String>,
    pub(super) stopping: bool,
    pub(super) after_exit: AfterExit,
    pub(super) waiters: Vec<Reply<UnitStatus>>,
    pub(super) probe: Option<AbortHandle>,
    /// Why the readiness probe killed the current run (its timeout passed), so the exit
    /// says so rather than only "killed by SIGTERM".
    pub(super) probe_gave_up: Option<String>,
}

impl Unit {
    pub(super) fn new(spec: UnitSpec, paths: &Paths, log_max: u64) -> Self {
        let log = UnitLog::new(&spec.name, paths.unit_log(&spec.name), log_max);
        let wanted = spec.kind == UnitKind::Task || spec.autostart;
        Self {
            spec,
            log,
            state: UnitState::Pending,
            gen: 0,
            wanted,
            force: false,
            ready: false,
            pid: None,
            restarts: 0,
            delay: None,
            exit: None,
            started: None,
            started_at_ms: None,
            finished_at_ms: None,
            next_restart_at_ms: None,
            blocked_on: Vec::new(),
            detail: (!wanted).then(|| "autostart is off".to_string()),
            stopping: false,
            after_exit: AfterExit::Nothing,
            waiters: Vec::new(),
            probe: None,
            probe_gave_up: None,
        }
    }

    pub(super) fn alive(&self) -> bool {
        self.pid.is_some()
    }

    /// Whether units that need this one may start.
    pub(super) fn satisfied(&self) -> bool {
        match self.spec.kind {
            UnitKind::Service => self.ready,
            UnitKind::Task => {
                self.state == UnitState::Exited && self.exit.is_none_or(Exit::success)
            }
        }
    }

    /// Whether units that need this one can never start without intervention.
    pub(super) fn failed(&self) -> bool {
        matches!(self.state, UnitState::Failed | UnitState::Skipped)
            || (self.spec.kind == UnitKind::Task && self.state == UnitState::Stopped)
    }

    pub(super) fn status(&self) -> UnitStatus {
        UnitStatus {
            name: self.spec.name.clone(),
            kind: self.spec.kind,
            state: self.state,
            ready: self.satisfied(),
            autostart: self.spec.kind == UnitKind::Task || self.spec.autostart,
            pid: self.pid,
            restarts: self.restarts,
            exit_code: self.exit.and_then(|e| e.code),
            exit_signal: self.exit.and_then(|e| e.signal).map(process::signal_name),
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
            next_restart_at_ms: self.next_restart_at_ms,
            blocked_on: self.blocked_on.clone(),
            detail: self.detail.clone(),
            expose: self.spec.expose.map(|e| Exposure {
                port: e.port,
                default: e.default,
            }),
            command: self.spec.command.display(),
        }
    }

    pub(super) fn note(&self, text: &str) {
        if let Err(e) = self.log.append(LogStream::Ctl, text) {
            tracing::warn!(unit = %self.spec.name, error = %e, "cannot write unit log");
        }
    }

    /// SIGTERM to the unit's group now, SIGKILL after its grace period; the exit arrives
    /// later as an event of the current generation.
    pub(super) fn terminate(&mut self) {
        if let Some(p) = self.probe.take() {
            p.abort();
        }
        if let Some(pgid) = self.pid {
            self.stopping = true;
            self.detail = Some("stopping".into());
            tokio::spawn(process::end_group(pgid, self.spec.stop_grace));
        }
    }

    pub(super) fn fire_waiters(&mut self) {
        let status = self.status();
        for w in self.waiters.drain(..) {
            let _ = w.send(Ok(status.clone()));
        }
    }
}
