//! One background thread per box asking it whether it runs and what its services are
//! (`agentbox-ctl status --json`, as `agentbox services` does), every few seconds and
//! when poked (after a stop or start). The screen reads the last answer and never waits
//! for a box: a slow one shows its previous state, a dead one shows as unreachable.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agentbox_protocol::ctl::{StatusReport, UnitKind};

use super::model::{Reach, Service};
use crate::provider::AnyBox;
use crate::state::BoxRecord;
use crate::text::capped;

/// How often a box is asked: a local box costs two process checks and a socket call;
/// a docker or Daytona box an API call and an exec, so they are asked less often.
pub fn interval(provider: &str) -> Duration {
    if provider == "local" {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(5)
    }
}

/// What the last probe of a box found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Whether it runs.
    pub reach: Reach,
    /// Its services, when it answered.
    pub services: Option<Vec<Service>>,
}

/// A box's probe thread: dropping it ends the thread after its current probe.
pub struct Probe {
    /// The record it probes (a changed record gets a new probe).
    pub record: BoxRecord,
    found: Arc<Mutex<Found>>,
    poke: Sender<()>,
}

impl Probe {
    /// Starts probing `record`'s box.
    pub fn start(record: BoxRecord) -> Self {
        let found = Arc::new(Mutex::new(Found {
            reach: Reach::Unknown,
            services: None,
        }));
        let (poke, pokes) = mpsc::channel();
        let (r, f) = (record.clone(), found.clone());
        std::thread::spawn(move || loop {
            let now = probe(&r);
            *f.lock().unwrap_or_else(PoisonError::into_inner) = now;
            match pokes.recv_timeout(interval(&r.provider)) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        });
        Self {
            record,
            found,
            poke,
        }
    }

    /// What the last probe found.
    pub fn found(&self) -> Found {
        self.found
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asks the box again now (it changed: stopped, started).
    pub fn poke(&self) {
        let _ = self.poke.send(());
    }
}

/// Asks `record`'s box once.
pub fn probe(record: &BoxRecord) -> Found {
    let reach = |reach| Found {
        reach,
        services: None,
    };
    if record.phase != "ready" {
        return reach(Reach::Phase(record.phase.clone()));
    }
    // A teammate's box: its owner runs it; this home may only attach, read its logs and
    // open its URL (`agentbox join`), never ask it for its status.
    if record.is_joined() {
        return reach(Reach::Phase("joined".into()));
    }
    let b = match AnyBox::open(record) {
        Ok(b) => b,
        Err(e) => return reach(Reach::Unreachable(format!("{e:#}"))),
    };
    if !b.running() {
        return reach(Reach::Stopped);
    }
    let out = match b.ctl(&["status", "--json"]) {
        Ok(out) => out,
        Err(e) => return reach(Reach::Unreachable(format!("{e:#}"))),
    };
    if !out.status.success() {
        let why = capped(String::from_utf8_lossy(&out.stderr).trim(), 200);
        return reach(Reach::Unreachable(format!("status failed: {why}")));
    }
    match serde_json::from_slice::<StatusReport>(&out.stdout) {
        Ok(report) => Found {
            reach: Reach::Running,
            services: Some(
                report
                    .units
                    .into_iter()
                    // `agentbox-*` units are the box's own (its relay, its engine).
                    .filter(|u| u.kind == UnitKind::Service && !u.name.starts_with("agentbox-"))
                    .map(|u| Service {
                        port: u.expose.as_ref().map(|e| e.port),
                        name: u.name,
                        state: u.state.as_str().to_string(),
                    })
                    .collect(),
            ),
        },
        Err(e) => reach(Reach::Unreachable(format!(
            "the box answered `status` with something else: {e}"
        ))),
    }
}
