//! The supervisor task: the state machine over every [`Unit`], driven by [`Command`]s and by
//! the events its own spawned tasks send back (exits, probe results, backoff timers,
//! `run_once` checks).
//!
//! It stays one file on purpose: the command handlers, the scheduler and the event
//! handlers call one another and share the generation rule that makes them race-free
//! (see the module docs of [`crate::supervisor`]), so reading one without the others
//! invites mistakes. The unit's own bookkeeping, the reload diff and the public types live
//! in sibling modules.

use std::sync::Arc;
use std::time::Instant;

use agentbox_protocol::ctl::{
    DaemonInfo, ReloadReport, StatusReport, UnitKind, UnitState, UnitStatus,
};
use agentbox_protocol::{now_millis, ErrorCode, ErrorReply};
use tokio::sync::{mpsc, oneshot, watch};

use super::handle::{Command, Handle, Reply};
use super::process::{self, Exit};
use super::unit::{AfterExit, Unit};
use super::{probe, reload, runonce};
use crate::config::{self, Config, OnTimeout, ProbeKind, RestartPolicy, RunOnce, UnitSpec};
use crate::paths::Paths;

/// What the supervisor's spawned tasks report; each names the unit and the generation it
/// was spawned for.
enum Event {
    Exited {
        name: String,
        gen: u64,
        exit: Exit,
    },
    SpawnFailed {
        name: String,
        gen: u64,
        error: String,
    },
    /// Not started: its port is held by a process of another box or of this machine. Like
    /// an exit (restarted by the unit's policy), since the holder may be on its way out.
    PortTaken {
        name: String,
        gen: u64,
        error: String,
    },
    Probe {
        name: String,
        gen: u64,
        result: Result<(), String>,
    },
    RestartDue {
        name: String,
        gen: u64,
    },
    Stable {
        name: String,
        gen: u64,
    },
    Gate {
        name: String,
        gen: u64,
        skip: Option<String>,
    },
}

/// The state the supervisor task owns.
pub struct Supervisor {
    paths: Paths,
    log_max: u64,
    /// Units the daemon runs whatever the config says (the relay in a box).
    builtins: Vec<UnitSpec>,
    units: Vec<Unit>,
    daemon: DaemonInfo,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    commands: mpsc::Receiver<Command>,
    status: watch::Sender<Arc<StatusReport>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Supervisor {
    /// Builds the supervisor from a loaded config (or the error that prevented loading:
    /// then it runs with no units and reports the error in `status`). Call [`Supervisor::run`]
    /// to start it.
    pub fn new(
        paths: Paths,
        loaded: Result<Config, config::ConfigError>,
        log_max: u64,
        builtins: Vec<UnitSpec>,
    ) -> (Self, Handle) {
        let (commands_tx, commands) = mpsc::channel(64);
        let (events_tx, events) = mpsc::unbounded_channel();
        let (config, config_error) = match loaded {
            Ok(c) => (c, None),
            Err(e) => (Config::default(), Some(e.to_string())),
        };
        let daemon = DaemonInfo {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            config_path: paths.config.display().to_string(),
            config_error,
            config_warnings: config.warnings.clone(),
        };
        let units: Vec<Unit> = builtins
            .iter()
            .cloned()
            .chain(config.units)
            .map(|s| Unit::new(s, &paths, log_max))
            .collect();
        let initial = Arc::new(StatusReport {
            daemon: daemon.clone(),
            units: units.iter().map(Unit::status).collect(),
        });
        let (status, status_rx) = watch::channel(initial);
        let sup = Self {
            paths,
            log_max,
            builtins,
            units,
            daemon,
            events_tx,
            events,
            commands,
            status,
            shutdown: None,
        };
        (
            sup,
            Handle {
                commands: commands_tx,
                status: status_rx,
            },
        )
    }

    /// Runs until a `Shutdown` command has stopped every unit (or every handle is gone).
    pub async fn run(mut self) {
        self.schedule();
        self.publish();
        loop {
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.handle_command(cmd),
                    None => {
                        let (tx, _rx) = oneshot::channel();
                        self.handle_command(Command::Shutdown(tx));
                    }
                },
                Some(ev) = self.events.recv() => self.handle_event(ev),
            }
            if self.shutdown.is_some() && !self.units.iter().any(Unit::alive) {
                self.publish();
                if let Some(done) = self.shutdown.take() {
                    let _ = done.send(());
                }
                return;
            }
            if self.shutdown.is_none() {
                self.schedule();
            }
            self.publish();
        }
    }

    fn publish(&self) {
        let report = StatusReport {
            daemon: self.daemon.clone(),
            units: self.units.iter().map(Unit::status).collect(),
        };
        self.status.send_if_modified(|old| {
            if **old == report {
                false
            } else {
                *old = Arc::new(report);
                true
            }
        });
    }

    fn index(&self, name: &str) -> Result<usize, ErrorReply> {
        self.units
            .iter()
            .position(|u| u.spec.name == name && !matches!(u.after_exit, AfterExit::Remove))
            .ok_or_else(|| {
                ErrorReply::new(
                    ErrorCode::NotFound,
                    format!("no unit named `{name}` (see `agentbox-ctl status`)"),
                )
            })
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Start(name, reply) => {
                let result = self.index(&name).and_then(|i| self.start(i));
                let _ = reply.send(result);
            }
            Command::Stop(name, reply) => match self.index(&name) {
                Ok(i) => self.stop(i, reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Restart(name, reply) => match self.index(&name) {
                Ok(i) if self.units[i].alive() => {
                    let unit = &mut self.units[i];
                    unit.after_exit = AfterExit::Restart;
                    unit.waiters.push(reply);
                    unit.terminate();
                }
                Ok(i) => {
                    self.units[i].state = UnitState::Stopped;
                    let result = self.start(i);
                    let _ = reply.send(result);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::RunTask {
                name,
                force,
                wait,
                reply,
            } => {
                let i = match self.index(&name) {
                    Ok(i) if self.units[i].spec.kind == UnitKind::Task => i,
                    Ok(_) => {
                        let _ = reply.send(Err(ErrorReply::new(
                            ErrorCode::BadRequest,
                            format!("`{name}` is a service, not a task: use `start` or `restart`"),
                        )));
                        return;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let unit = &mut self.units[i];
                if !unit.alive() && unit.state != UnitState::Starting {
                    unit.state = UnitState::Pending;
                    unit.wanted = true;
                    unit.force = force;
                    unit.detail = None;
                }
                if wait {
                    unit.waiters.push(reply);
                    self.schedule();
                } else {
                    self.schedule();
                    let _ = reply.send(Ok(self.units[i].status()));
                }
            }
            Command::Reload(reply) => {
                let result = self.reload();
                let _ = reply.send(result);
            }
            Command::Shutdown(done) => {
                self.shutdown = Some(done);
                for unit in &mut self.units {
                    unit.wanted = false;
                    if unit.alive() {
                        unit.terminate();
                    } else {
                        unit.gen += 1; // cancels a pending restart or run_once check
                    }
                }
            }
        }
    }

    fn start(&mut self, i: usize) -> Result<UnitStatus, ErrorReply> {
        let unit = &mut self.units[i];
        if unit.alive() || unit.state == UnitState::Starting {
            let pid = unit.pid.map_or(String::new(), |p| format!(" (pid {p})"));
            return Err(ErrorReply::new(
                ErrorCode::Conflict,
                format!(
                    "`{}` is already {}{pid}: use `restart`",
                    unit.spec.name, unit.state
                ),
            ));
        }
        unit.gen += 1; // cancels a pending backoff restart
        unit.state = UnitState::Pending;
        unit.wanted = true;
        unit.restarts = 0;
        unit.delay = None;
        unit.next_restart_at_ms = None;
        unit.detail = None;
        self.schedule();
        Ok(self.units[i].status())
    }

    fn stop(&mut self, i: usize, reply: Reply<UnitStatus>) {
        let unit = &mut self.units[i];
        unit.wanted = false;
        if unit.alive() {
            unit.waiters.push(reply);
            unit.terminate();
        } else {
            unit.gen += 1; // cancels a pending restart or run_once check
            unit.state = UnitState::Stopped;
            unit.next_restart_at_ms = None;
            unit.detail = Some("stopped on request".into());
            let _ = reply.send(Ok(unit.status()));
        }
    }

    /// Starts every wanted pending unit whose needs are met; marks blocked ones.
    fn schedule(&mut self) {
        loop {
            let mut changed = false;
            for i in 0..self.units.len() {
                if self.units[i].state != UnitState::Pending || !self.units[i].wanted {
                    continue;
                }
                if matches!(self.units[i].after_exit, AfterExit::Remove) {
                    continue;
                }
                let mut unmet = Vec::new();
                let mut failed = Vec::new();
                for need in &self.units[i].spec.needs {
                    match self.units.iter().find(|u| &u.spec.name == need) {
                        Some(dep) if dep.satisfied() => {}
                        Some(dep) if dep.failed() => failed.push(need.clone()),
                        _ => unmet.push(need.clone()),
                    }
                }
                let unit = &mut self.units[i];
                if !failed.is_empty() {
                    let why = format!("needs {}, which failed", failed.join(", "));
                    if unit.spec.kind == UnitKind::Task {
                        unit.state = UnitState::Skipped;
                        unit.detail = Some(why);
                        unit.blocked_on.clear();
                        unit.fire_waiters();
                        changed = true;
                    } else if unit.detail.as_deref() != Some(why.as_str()) {
                        unit.blocked_on = failed;
                        unit.detail = Some(why);
                    }
                } else if unmet.is_empty() {
                    unit.blocked_on.clear();
                    self.launch(i);
                    changed = true;
                } else {
                    unit.detail = Some(format!("waiting for {}", unmet.join(", ")));
                    unit.blocked_on = unmet;
                }
            }
            if !changed {
                break;
            }
        }
    }

    fn launch(&mut self, i: usize) {
        let events = self.events_tx.clone();
        let unit = &mut self.units[i];
        unit.gen += 1;
        unit.state = UnitState::Starting;
        unit.detail = None;
        unit.exit = None;
        unit.next_restart_at_ms = None;
        let gen = unit.gen;
        let name = unit.spec.name.clone();
        let force = std::mem::take(&mut unit.force);
        if let (Some(rule), false) = (unit.spec.run_once.clone(), force) {
            let cwd = unit.spec.resolved_cwd(&self.paths.workspace);
            let marker = self.paths.task_marker(&name);
            let fingerprint = runonce::fingerprint(&unit.spec.command, &cwd, &unit.spec.env);
            let env = process::unit_env(&unit.spec.env, &name);
            let log = unit.log.clone();
            unit.detail = Some("checking run_once".into());
            tokio::spawn(async move {
                let skip =
                    runonce::skip_reason(rule, &marker, &fingerprint, &cwd, &env, &log).await;
                let _ = events.send(Event::Gate { name, gen, skip });
            });
            return;
        }
        self.spawn_process(i);
    }

    fn spawn_process(&mut self, i: usize) {
        let events = self.events_tx.clone();
        let unit = &mut self.units[i];
        let name = unit.spec.name.clone();
        let gen = unit.gen;
        let cwd = unit.spec.resolved_cwd(&self.paths.workspace);
        let env = process::unit_env(&unit.spec.env, &name);
        let argv = unit.spec.command.argv();
        let lines = match unit.spec.ready_when.as_ref().map(|p| &p.kind) {
            Some(ProbeKind::LogMatch(_)) => Some(unit.log.subscribe()),
            _ => None,
        };
        // Sharing the machine's ports, a service whose port another box holds would only
        // crash-loop on "address in use" (or pass its probe on the other's listener).
        if unit.spec.kind == UnitKind::Service && probe::shared_ports() {
            let ports = unit
                .spec
                .ready_when
                .as_ref()
                .and_then(|p| probe::probe_port(&p.kind))
                .into_iter()
                .chain(unit.spec.expose.map(|e| e.port));
            if let Some(error) = ports.into_iter().find_map(probe::taken_by_other) {
                let _ = events.send(Event::PortTaken { name, gen, error });
                return;
            }
        }
        let spawned = match process::command(&argv, &cwd, &env) {
            None => Err("empty command".to_string()),
            Some(cmd) => process::spawn_logged(cmd, &unit.log).map_err(|e| {
                if cwd.is_dir() {
                    format!("cannot run `{}`: {e}", argv[0])
                } else {
                    format!("working directory {} does not exist", cwd.display())
                }
            }),
        };
        let (child, copier) = match spawned {
            Ok(pair) => pair,
            Err(error) => {
                let _ = events.send(Event::SpawnFailed { name, gen, error });
                return;
            }
        };
        let pid = child.id();
        unit.pid = pid;
        unit.started = Some(Instant::now());
        unit.started_at_ms = Some(now_millis());
        unit.finished_at_ms = None;
        unit.note(&format!(
            "started (pid {}): {}",
            pid.unwrap_or(0),
            unit.spec.command.display()
        ));
        let grace = unit.spec.stop_grace;
        {
            let events = events.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let exit = process::wait_run(child, copier, grace).await;
                let _ = events.send(Event::Exited { name, gen, exit });
            });
        }
        match (unit.spec.kind, unit.spec.ready_when.clone()) {
            (UnitKind::Task, _) => unit.state = UnitState::Running,
            (UnitKind::Service, None) => {
                unit.state = UnitState::Running;
                unit.ready = true;
            }
            (UnitKind::Service, Some(probe)) => {
                unit.state = UnitState::Starting;
                // What it waits for, for `status` and `create`'s progress.
                unit.detail = Some(format!(
                    "waiting for {} (timeout {}ms)",
                    probe.kind,
                    probe.timeout.as_millis()
                ));
                let events = events.clone();
                let name = name.clone();
                let task = tokio::spawn(async move {
                    let result = probe::run(&probe, lines).await;
                    let _ = events.send(Event::Probe { name, gen, result });
                });
                unit.probe = Some(task.abort_handle());
            }
        }
        if unit.spec.kind == UnitKind::Service {
            let reset_after = unit.spec.backoff.reset_after;
            tokio::spawn(async move {
                tokio::time::sleep(reset_after).await;
                let _ = events.send(Event::Stable { name, gen });
            });
        }
    }

    fn find_gen(&self, name: &str, gen: u64) -> Option<usize> {
        self.units
            .iter()
            .position(|u| u.spec.name == name && u.gen == gen)
    }

    fn handle_event(&mut self, ev: Event) {
        match ev {
            Event::Exited { name, gen, exit } => {
                if let Some(i) = self.find_gen(&name, gen) {
                    self.on_exit(i, exit);
                }
            }
            Event::SpawnFailed { name, gen, error } => {
                if let Some(i) = self.find_gen(&name, gen) {
                    let unit = &mut self.units[i];
                    unit.note(&error);
                    unit.state = UnitState::Failed;
                    unit.wanted = false;
                    unit.detail = Some(error);
                    unit.finished_at_ms = Some(now_millis());
                    unit.fire_waiters();
                }
            }
            Event::PortTaken { name, gen, error } => {
                if let Some(i) = self.find_gen(&name, gen) {
                    self.on_port_taken(i, error);
                }
            }
            Event::Probe { name, gen, result } => {
                let Some(i) = self.find_gen(&name, gen) else {
                    return;
                };
                let unit = &mut self.units[i];
                if !unit.alive() || unit.stopping {
                    return;
                }
                unit.probe = None;
                match result {
                    Ok(()) => {
                        unit.state = UnitState::Ready;
                        unit.ready = true;
                        unit.detail = None;
                        unit.note("ready");
                    }
                    Err(why) => self.on_probe_timeout(i, &why),
                }
            }
            Event::RestartDue { name, gen } => {
                if let Some(i) = self.find_gen(&name, gen) {
                    let unit = &self.units[i];
                    if unit.wanted && !unit.alive() && unit.state == UnitState::Exited {
                        self.launch(i);
                    }
                }
            }
            Event::Stable { name, gen } => {
                if let Some(i) = self.find_gen(&name, gen) {
                    if self.units[i].alive() {
                        self.units[i].delay = None;
                    }
                }
            }
            Event::Gate { name, gen, skip } => {
                let Some(i) = self.find_gen(&name, gen) else {
                    return;
                };
                match skip {
                    Some(why) => {
                        let unit = &mut self.units[i];
                        unit.note(&format!("skipped: {why}"));
                        unit.state = UnitState::Exited;
                        unit.exit = Some(Exit {
                            code: Some(0),
                            signal: None,
                        });
                        unit.detail = Some(format!("skipped: {why}"));
                        unit.finished_at_ms = Some(now_millis());
                        unit.fire_waiters();
                    }
                    None => self.spawn_process(i),
                }
            }
        }
    }

    fn on_probe_timeout(&mut self, i: usize, why: &str) {
        let events = self.events_tx.clone();
        let unit = &mut self.units[i];
        let Some(probe) = unit.spec.ready_when.clone() else {
            return;
        };
        match probe.on_timeout {
            OnTimeout::Kill => {
                unit.note(&format!("{why}; killing the service"));
                unit.detail = Some(why.to_string());
                unit.probe_gave_up = Some(why.to_string());
                if let Some(pgid) = unit.pid {
                    tokio::spawn(process::end_group(pgid, unit.spec.stop_grace));
                }
            }
            OnTimeout::MarkUnhealthy => {
                unit.note(&format!("{why}; marked unhealthy, still probing"));
                unit.state = UnitState::Running;
                unit.detail = Some(format!("unhealthy: {why}"));
                let (name, gen) = (unit.spec.name.clone(), unit.gen);
                let task = tokio::spawn(async move {
                    probe::until_ready(&probe).await;
                    let _ = events.send(Event::Probe {
                        name,
                        gen,
                        result: Ok(()),
                    });
                });
                unit.probe = Some(task.abort_handle());
            }
        }
    }

    /// A service whose port someone else holds: failed for whoever waits on it now (the
    /// detail names the holder), tried again after its backoff when its policy restarts
    /// it — a leftover of this box's previous daemon frees the port once it is ended.
    fn on_port_taken(&mut self, i: usize, error: String) {
        let unit = &mut self.units[i];
        unit.note(&error);
        unit.ready = false;
        unit.finished_at_ms = Some(now_millis());
        let restart = unit.wanted
            && self.shutdown.is_none()
            && !matches!(unit.spec.restart, RestartPolicy::Never);
        if !restart {
            unit.state = UnitState::Failed;
            unit.detail = Some(error);
            unit.wanted = false;
            unit.fire_waiters();
            return;
        }
        let b = unit.spec.backoff;
        let delay = unit
            .delay
            .map_or(b.initial, |prev| prev.mul_f64(b.factor).min(b.max));
        unit.delay = Some(delay);
        unit.restarts += 1;
        unit.state = UnitState::Exited;
        unit.next_restart_at_ms = Some(now_millis() + delay.as_millis() as u64);
        unit.detail = Some(format!("{error}; trying again in {}ms", delay.as_millis()));
        let (name, gen, events) = (unit.spec.name.clone(), unit.gen, self.events_tx.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::RestartDue { name, gen });
        });
    }

    fn on_exit(&mut self, i: usize, exit: Exit) {
        let unit = &mut self.units[i];
        if let Some(p) = unit.probe.take() {
            p.abort();
        }
        let ran_for = unit.started.map(|s| s.elapsed()).unwrap_or_default();
        unit.pid = None;
        unit.ready = false;
        unit.exit = Some(exit);
        let described = match unit.probe_gave_up.take() {
            Some(why) => format!("{why}; {}", exit.describe()),
            None => exit.describe(),
        };
        unit.finished_at_ms = Some(now_millis());
        unit.note(&exit.describe());
        let stopping = std::mem::take(&mut unit.stopping);

        match std::mem::replace(&mut unit.after_exit, AfterExit::Nothing) {
            AfterExit::Remove => {
                unit.state = UnitState::Stopped;
                unit.fire_waiters();
                self.units.remove(i);
                return;
            }
            AfterExit::Replace(spec) => {
                let waiters = std::mem::take(&mut unit.waiters);
                *unit = Unit::new(*spec, &self.paths, self.log_max);
                unit.waiters = waiters;
                unit.fire_waiters();
                return;
            }
            AfterExit::Restart => {
                unit.state = UnitState::Stopped;
                let waiters = std::mem::take(&mut unit.waiters);
                let result = self.start(i);
                for w in waiters {
                    let _ = w.send(result.clone());
                }
                return;
            }
            AfterExit::Nothing => {}
        }

        if stopping || self.shutdown.is_some() {
            unit.state = UnitState::Stopped;
            unit.detail = Some("stopped on request".into());
            unit.fire_waiters();
            return;
        }
        match unit.spec.kind {
            UnitKind::Task => {
                if exit.success() {
                    unit.state = UnitState::Exited;
                    unit.detail = None;
                    if unit.spec.run_once == Some(RunOnce::Marker) {
                        let cwd = unit.spec.resolved_cwd(&self.paths.workspace);
                        let fp = runonce::fingerprint(&unit.spec.command, &cwd, &unit.spec.env);
                        if let Err(e) =
                            runonce::write(&self.paths.task_marker(&unit.spec.name), &fp)
                        {
                            unit.note(&format!("could not write the run_once marker: {e}"));
                        }
                    }
                } else {
                    unit.state = UnitState::Failed;
                    unit.detail = Some(described);
                }
                unit.wanted = false;
                unit.fire_waiters();
            }
            UnitKind::Service => {
                let restart = match unit.spec.restart {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => !exit.success(),
                    RestartPolicy::Never => false,
                };
                if !restart || !unit.wanted {
                    unit.state = if exit.success() {
                        UnitState::Exited
                    } else {
                        UnitState::Failed
                    };
                    unit.detail = Some(described);
                    unit.wanted = false;
                    unit.fire_waiters();
                    return;
                }
                let b = unit.spec.backoff;
                let delay = match unit.delay {
                    Some(prev) if ran_for < b.reset_after => prev.mul_f64(b.factor).min(b.max),
                    _ => b.initial,
                };
                unit.delay = Some(delay);
                unit.restarts += 1;
                unit.state = UnitState::Exited;
                unit.next_restart_at_ms = Some(now_millis() + delay.as_millis() as u64);
                unit.detail = Some(format!(
                    "{described}; restarting in {}ms",
                    delay.as_millis()
                ));
                let (name, gen, events) =
                    (unit.spec.name.clone(), unit.gen, self.events_tx.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = events.send(Event::RestartDue { name, gen });
                });
            }
        }
    }

    fn reload(&mut self) -> Result<ReloadReport, ErrorReply> {
        let mut config = match config::load(&self.paths.config) {
            Ok(c) => c,
            Err(e) => {
                if self.daemon.config_error.is_some() {
                    self.daemon.config_error = Some(e.to_string());
                }
                return Err(ErrorReply::new(ErrorCode::BadRequest, e.to_string()));
            }
        };
        self.daemon.config_error = None;
        self.daemon.config_warnings.clone_from(&config.warnings);
        config.units.splice(0..0, self.builtins.iter().cloned());
        let mut report = ReloadReport {
            warnings: config.warnings.clone(),
            ..ReloadReport::default()
        };
        self.units = reload::reconcile(
            std::mem::take(&mut self.units),
            config.units,
            &self.paths,
            self.log_max,
            &mut report,
        );
        Ok(report)
    }
}
