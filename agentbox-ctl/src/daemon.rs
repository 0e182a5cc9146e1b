//! `agentbox-ctl daemon`: single-instance lock, socket, supervisor, graceful shutdown.
//!
//! Order matters: the lock is taken first (a second daemon refuses to start instead of
//! stealing the socket), the socket is bound before any unit is spawned, and on SIGTERM,
//! SIGINT or a `Shutdown` request every unit's process group is stopped before exit.
//! Units a daemon killed with SIGKILL left behind are ended (see `supervisor::groups`)
//! right after the lock is taken. A broken config does not stop the daemon: it runs
//! with no units and reports the error through `status`, and `reload` picks up the
//! fixed file.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::config::{self, UnitSpec};
use crate::logs::DEFAULT_MAX_BYTES;
use crate::paths::Paths;
use crate::server::{self, Context};
use crate::session::Tmux;
use crate::supervisor::{Command, Supervisor};

/// Takes the single-instance lock, recording our pid in the lock file.
fn lock(paths: &Paths) -> anyhow::Result<Flock<File>> {
    let path = paths.lock_file();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut locked) => {
            locked.set_len(0)?;
            writeln!(locked, "{}", std::process::id())?;
            Ok(locked)
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another agentbox-ctl daemon is already running (pid {}; lock {})",
                pid.trim(),
                path.display()
            )
        }
        Err((_, e)) => bail!("cannot lock {}: {e}", path.display()),
    }
}

fn create_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Binds `ctl.sock` with mode 0600, replacing a stale socket (safe: we hold the lock).
fn bind(paths: &Paths) -> anyhow::Result<UnixListener> {
    let socket = paths.ctl_socket();
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot remove stale {}", socket.display()))
        }
    }
    let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(&socket);
    nix::sys::stat::umask(old_umask);
    let listener = listener.with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The units the daemon runs whatever `agentbox.yaml` says: with `AGENTBOX_RELAY` set (a
/// path, or `auto` for the `agentbox-relay` next to this executable), the relay as service
/// `agentbox-relay`, restarted always. It is the only unit that gets the bridge token.
/// With `AGENTBOX_DIND=1` (a docker box made with `create --dind`), the box's own Docker
/// engine as service `agentbox-dockerd`. With `AGENTBOX_SCREEN=1` (an image made with
/// `prepare --browser`), the screen's units ([`crate::screen`]).
fn builtin_units() -> anyhow::Result<Vec<UnitSpec>> {
    let mut units = Vec::new();
    if let Some(setting) = std::env::var_os("AGENTBOX_RELAY").filter(|v| !v.is_empty()) {
        let path = if setting == "auto" {
            std::env::current_exe()?.with_file_name("agentbox-relay")
        } else {
            std::path::PathBuf::from(setting)
        };
        if !path.is_file() {
            bail!("AGENTBOX_RELAY: {} is not a file", path.display());
        }
        let mut env = std::collections::BTreeMap::new();
        if let Ok(token) = std::env::var("AGENTBOX_BRIDGE_TOKEN") {
            env.insert("AGENTBOX_BRIDGE_TOKEN".to_string(), token);
        }
        units.push(builtin_service(
            "agentbox-relay",
            vec![path.display().to_string()],
            env,
            None,
        ));
    }
    match std::env::var("AGENTBOX_DIND").as_deref() {
        Err(_) | Ok("" | "0") => {}
        Ok("1") => units.push(builtin_service(
            "agentbox-dockerd",
            vec!["sudo".into(), "-n".into(), DIND_START.into()],
            std::collections::BTreeMap::new(),
            Some(config::Probe {
                kind: config::ProbeKind::LogMatch(regex::Regex::new("API listen on")?),
                interval: Duration::from_millis(200),
                initial_delay: Duration::ZERO,
                timeout: Duration::from_secs(60),
                on_timeout: config::OnTimeout::MarkUnhealthy,
            }),
        )),
        Ok(other) => bail!("AGENTBOX_DIND={other}: use 1 (run the box's Docker engine) or 0"),
    }
    let screen = std::env::var("AGENTBOX_SCREEN").ok();
    for part in crate::screen::units(screen.as_deref())? {
        let ready = (part.ready_port != 0).then(|| config::Probe {
            kind: config::ProbeKind::Port {
                host: "127.0.0.1".into(),
                port: part.ready_port,
            },
            interval: Duration::from_millis(200),
            initial_delay: Duration::ZERO,
            timeout: Duration::from_secs(30),
            on_timeout: config::OnTimeout::MarkUnhealthy,
        });
        let mut unit = builtin_service(
            part.name,
            part.argv,
            std::collections::BTreeMap::new(),
            ready,
        );
        unit.needs = part.needs;
        unit.stop_grace = Duration::from_secs(5);
        if part.exposed {
            unit.expose = Some(config::Expose {
                port: part.ready_port,
                default: false,
            });
        }
        units.push(unit);
    }
    Ok(units)
}

/// What starts the box's Docker engine (box/dind in the image), run as root.
const DIND_START: &str = "/usr/local/lib/agentbox/dind";

/// A built-in service: started with the daemon, restarted always, not exposed.
fn builtin_service(
    name: &str,
    argv: Vec<String>,
    env: std::collections::BTreeMap<String, String>,
    ready_when: Option<config::Probe>,
) -> UnitSpec {
    UnitSpec {
        name: name.into(),
        kind: agentbox_protocol::ctl::UnitKind::Service,
        command: config::Command::Argv(argv),
        cwd: None,
        env,
        needs: Vec::new(),
        autostart: true,
        restart: config::RestartPolicy::Always,
        backoff: config::Backoff::default(),
        ready_when,
        expose: None,
        run_once: None,
        // dockerd stops its containers first (10 s each by default).
        stop_grace: Duration::from_secs(15),
        pos: config::Pos::default(),
    }
}

/// Runs the daemon until a signal or a `Shutdown` request.
pub async fn run(paths: Paths) -> anyhow::Result<()> {
    create_dir(&paths.run_dir, 0o700)?;
    // It may have been made before us (an image's `mkdir`, 0755): it holds the sockets and
    // the bridge token, so only the box's user may enter it.
    std::fs::set_permissions(&paths.run_dir, std::fs::Permissions::from_mode(0o700)).with_context(
        || {
            format!(
                "cannot make {} private (mode 0700): it must belong to this user",
                paths.run_dir.display()
            )
        },
    )?;
    create_dir(&paths.log_dir, 0o755)?;
    let _lock = lock(&paths)?;
    // A daemon killed with SIGKILL left its units running: end them before anything of
    // ours binds a port, then record our own.
    let ledger = crate::supervisor::groups::ledger_path(&paths.run_dir);
    let reaped = crate::supervisor::groups::reap(&ledger);
    if reaped > 0 {
        tracing::warn!(
            groups = reaped,
            "killed the units a previous daemon left running"
        );
    }
    crate::supervisor::groups::init(ledger);
    if let Err(e) = create_dir(&paths.state_dir, 0o755) {
        tracing::warn!("{e:#}; run_once markers will not persist");
    }

    let loaded = config::load(&paths.config);
    match &loaded {
        Ok(c) => {
            for w in &c.warnings {
                tracing::warn!("{w}");
            }
            let services = c
                .units
                .iter()
                .filter(|u| u.kind == agentbox_protocol::ctl::UnitKind::Service)
                .count();
            tracing::info!(config = %paths.config.display(), services, tasks = c.units.len() - services, "config loaded");
        }
        Err(e) => tracing::error!(
            "config not loaded, running with no units until `agentbox-ctl reload`:\n{e}"
        ),
    }
    let log_max = std::env::var("AGENTBOX_LOG_MAX_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_BYTES);

    let listener = bind(&paths)?;
    let tmux = Tmux::new(&paths).context("cannot write the tmux config")?;
    let builtins = builtin_units()?;
    let (supervisor, handle) = Supervisor::new(paths.clone(), loaded, log_max, builtins);
    let supervisor_task = tokio::spawn(supervisor.run());
    let shutdown = CancellationToken::new();
    let (agents, agent_changes) = crate::agents::Agents::new();
    tokio::spawn(crate::agents::forward(paths.run_dir.clone(), agent_changes));
    tokio::spawn(crate::agents::watch(
        agents.clone(),
        tmux.clone(),
        shutdown.clone(),
    ));
    let ctx = Context {
        supervisor: handle.clone(),
        paths: paths.clone(),
        tmux,
        agents,
        shutdown: shutdown.clone(),
    };
    let server_task = tokio::spawn(server::serve(listener, ctx));
    tracing::info!(socket = %paths.ctl_socket().display(), pid = std::process::id(), "agentbox-ctl daemon listening");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        () = shutdown.cancelled() => tracing::info!("shutdown requested"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
    shutdown.cancel();
    let (tx, rx) = tokio::sync::oneshot::channel();
    if handle.send(Command::Shutdown(tx)).await.is_some() {
        // Every unit gets its grace period; SIGKILL cannot be resisted beyond that.
        if tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .is_err()
        {
            tracing::warn!("units did not stop within 60 s");
        }
    }
    let _ = std::fs::remove_file(paths.ctl_socket());
    server_task.abort();
    supervisor_task.abort();
    tracing::info!("stopped");
    Ok(())
}
