//! The daemon's life: one per `AGENTBOX_HOME`, held by a `flock` on `bridge.lock` that
//! also carries its pid ([`HomeDaemon`]); started in the background on demand, stopped by
//! SIGTERM or by its home being deleted. Its main loop rescans the box records every second and starts a poller for
//! each ready box.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::journal::HostJournal;
use super::poll::poll_box;
use super::shared::Shared;
use crate::home::Home;
use crate::home_daemon::HomeDaemon;
use crate::state::State;

/// The host bridge as a per-home daemon: `bridge.lock`, `bridge.log`, `agentbox bridge run`.
const DAEMON: HomeDaemon = HomeDaemon {
    name: "the host bridge",
    command: "bridge",
    lock_file: "bridge.lock",
    log_file: "bridge.log",
};

/// The daemon's lock file.
pub fn lock_path(home: &Home) -> PathBuf {
    DAEMON.lock_path(home)
}

/// The pid of the running daemon, if one holds the lock.
pub fn running_pid(home: &Home) -> Option<i32> {
    DAEMON.running_pid(home)
}

/// Runs the daemon in the foreground until SIGTERM or SIGINT.
pub fn run(home: &Home) -> anyhow::Result<()> {
    let _lock = DAEMON.hold(home)?;
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
    let home_gone = DAEMON.home_gone(&home);
    tokio::pin!(home_gone);
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
            () = &mut home_gone => {
                tracing::info!("its home is gone");
                break;
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
    }
    tracing::info!("host bridge stopping");
    Ok(())
}

/// Starts the daemon in the background unless it runs; returns its pid.
pub fn ensure_started(home: &Home) -> anyhow::Result<i32> {
    DAEMON.ensure_started(home, running_pid)
}

/// Stops the daemon if it runs; whether one ran.
pub fn stop(home: &Home) -> anyhow::Result<bool> {
    DAEMON.stop(home)
}
