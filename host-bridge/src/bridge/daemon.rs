//! The daemon's life: one per `AGENTBOX_HOME`, held by a `flock` on `bridge.lock` that
//! also carries its pid; started in the background on demand, stopped by SIGTERM. Its
//! main loop rescans the box records every second and starts a poller for each ready box.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};

use super::journal::HostJournal;
use super::poll::poll_box;
use super::shared::Shared;
use crate::home::Home;
use crate::state::State;

/// The daemon's lock file.
pub fn lock_path(home: &Home) -> PathBuf {
    home.root().join("bridge.lock")
}

/// The pid of the running daemon, if one holds the lock.
pub fn running_pid(home: &Home) -> Option<i32> {
    let file = File::open(lock_path(home)).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_unlocked_on_drop) => None,
        Err(_) => std::fs::read_to_string(lock_path(home))
            .ok()?
            .trim()
            .parse()
            .ok(),
    }
}

/// Runs the daemon in the foreground until SIGTERM or SIGINT.
pub fn run(home: &Home) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path(home))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!("the host bridge is already running"),
        Err((_, e)) => bail!("cannot lock {}: {e}", lock_path(home).display()),
    };
    lock.set_len(0)?;
    writeln!(lock, "{}", std::process::id())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(home.clone()))
}

async fn serve(home: Home) -> anyhow::Result<()> {
    let journal = HostJournal::open(&home.state_db())?;
    journal.checkpoint_in_background(&home.state_db())?;
    let shared = Shared {
        journal: Arc::new(Mutex::new(journal)),
        home: home.clone(),
        polled: Arc::default(),
        addresses: tokio::sync::watch::channel(std::collections::HashMap::new())
            .0
            .into(),
        inflight: Arc::default(),
        policies: Arc::default(),
        relays: Arc::default(),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tracing::info!("host bridge running");
    loop {
        let boxes = State::open(&home.state_db())
            .and_then(|s| s.all())
            .unwrap_or_default();
        // Pollers whose box went away or moved stop at once, even in a held poll.
        let current: std::collections::HashMap<String, String> = boxes
            .iter()
            .filter(|b| b.phase == "ready" && !b.is_joined())
            .filter_map(|b| Some((b.name.clone(), b.bridge_url.clone()?)))
            .collect();
        shared.addresses.send_if_modified(|old| {
            let changed = *old != current;
            if changed {
                old.clone_from(&current);
            }
            changed
        });
        // A joined box (a teammate's) is never served here: its requests are its owner's.
        for record in boxes
            .into_iter()
            .filter(|b| b.phase == "ready" && b.bridge_url.is_some() && !b.is_joined())
        {
            let fresh = shared
                .polled
                .lock()
                .is_ok_and(|mut p| p.insert(record.name.clone()));
            if fresh {
                tokio::spawn(poll_box(shared.clone(), record));
            }
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
    }
    tracing::info!("host bridge stopping");
    Ok(())
}

/// Starts the daemon in the background unless it runs; returns its pid.
pub fn ensure_started(home: &Home) -> anyhow::Result<i32> {
    if let Some(pid) = running_pid(home) {
        return Ok(pid);
    }
    let exe = std::env::current_exe()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.root().join("bridge.log"))?;
    std::process::Command::new("setsid")
        .arg(exe)
        .args(["bridge", "run"])
        .env("AGENTBOX_HOME", home.root())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the host bridge")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = running_pid(home) {
            return Ok(pid);
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the host bridge did not start; see {}",
                home.root().join("bridge.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the daemon if it runs.
pub fn stop(home: &Home) -> anyhow::Result<bool> {
    let Some(pid) = running_pid(home) else {
        return Ok(false);
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while running_pid(home).is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}
