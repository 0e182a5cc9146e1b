//! The dashboard's data, gathered off the screen's thread. What the host already records is
//! read from disk every second: the box records (`state.db`), the agents' states the host
//! bridge keeps (`agents/<box>.json`) and the approvals waiting in its store. What only the
//! box knows (does it run, its services) comes from one [`Probe`] per box, every few
//! seconds. The screen takes the latest [`Snapshot`] whenever it draws.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::model::{Agent, BoxView, Reach, Snapshot};
use super::probe::Probe;
use crate::bridge::journal::HostJournal;
use crate::home::Home;
use crate::state::{BoxRecord, State};

/// How often the host's own records are read again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The boxes the dashboard shows: one project's, or every box of this home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The boxes seeded from this repository.
    Project(PathBuf),
    /// Every box.
    All,
}

impl Scope {
    /// Whether `record` is shown.
    fn shows(&self, record: &BoxRecord) -> bool {
        match self {
            Self::All => true,
            Self::Project(p) => &record.project == p,
        }
    }
}

/// What the screen asks of the collector.
enum Ask {
    /// Probe box `0` again now.
    Poke(String),
}

/// The collector thread: its latest snapshot, and a line to it. Dropping it ends the
/// thread and, with it, every probe.
pub struct Collector {
    latest: Arc<Mutex<(u64, Snapshot)>>,
    asks: Sender<Ask>,
}

impl Collector {
    /// Starts collecting for `scope` under `home`.
    pub fn start(home: Home, scope: Scope) -> Self {
        let latest = Arc::new(Mutex::new((0, Snapshot::default())));
        let (asks, rx) = mpsc::channel();
        let out = latest.clone();
        std::thread::spawn(move || {
            let mut sources = Sources::new(home, scope);
            loop {
                let snapshot = sources.snapshot();
                {
                    let mut latest = out.lock().unwrap_or_else(PoisonError::into_inner);
                    latest.0 += 1;
                    latest.1 = snapshot;
                }
                match rx.recv_timeout(REFRESH) {
                    Ok(Ask::Poke(name)) => {
                        if let Some(p) = sources.probes.get(&name) {
                            p.poke();
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        });
        Self { latest, asks }
    }

    /// The latest snapshot if it is newer than `seen` (a counter), with its counter.
    pub fn newer(&self, seen: u64) -> Option<(u64, Snapshot)> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        (latest.0 > seen).then(|| latest.clone())
    }

    /// Asks box `name` again now and gathers a fresh snapshot soon after.
    pub fn poke(&self, name: &str) {
        let _ = self.asks.send(Ask::Poke(name.to_string()));
    }
}

/// The host's records, opened once, and the probes.
struct Sources {
    home: Home,
    scope: Scope,
    state: Option<State>,
    journal: Option<HostJournal>,
    probes: BTreeMap<String, Probe>,
}

impl Sources {
    fn new(home: Home, scope: Scope) -> Self {
        Self {
            state: State::open(&home.state_db()).ok(),
            journal: HostJournal::open(&home.state_db()).ok(),
            home,
            scope,
            probes: BTreeMap::new(),
        }
    }

    /// Reads the records and the probes' latest findings.
    fn snapshot(&mut self) -> Snapshot {
        let mut error = None;
        if self.state.is_none() {
            self.state = State::open(&self.home.state_db()).ok();
        }
        if self.journal.is_none() {
            self.journal = HostJournal::open(&self.home.state_db()).ok();
        }
        let records = match self.state.as_ref().map(State::numbered) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                error = Some(format!("box records: {e}"));
                Vec::new()
            }
            None => {
                error = Some("box records: cannot open state.db".into());
                Vec::new()
            }
        };
        let records: Vec<(u64, BoxRecord)> = records
            .into_iter()
            .filter(|(_, r)| self.scope.shows(r))
            .collect();
        let approvals = match self.journal.as_ref().map(|j| j.approvals(false)) {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                error.get_or_insert(format!("approvals: {e}"));
                Vec::new()
            }
            None => Vec::new(),
        };
        // A probe per box, restarted when its record changed (a start moves its relay).
        self.probes.retain(|name, p| {
            records
                .iter()
                .any(|(_, r)| &r.name == name && *r == p.record)
        });
        for (_, r) in &records {
            if !self.probes.contains_key(&r.name) {
                self.probes.insert(r.name.clone(), Probe::start(r.clone()));
            }
        }
        let boxes = records
            .into_iter()
            .map(|(number, r)| {
                let found = self.probes.get(&r.name).map(Probe::found);
                let (reach, services) =
                    found.map_or((Reach::Unknown, None), |f| (f.reach, f.services));
                let running = reach != Reach::Stopped;
                let agents = crate::agents::load(&self.home.agent_states(&r.name))
                    .into_values()
                    .map(|s| Agent {
                        state: crate::agents::shown_state(&s, running),
                        session: s.session.to_string(),
                        agent: s.agent,
                    })
                    .collect();
                BoxView {
                    number,
                    approvals: approvals
                        .iter()
                        .filter(|a| a.box_name == r.name)
                        .cloned()
                        .collect(),
                    name: r.name,
                    provider: r.provider,
                    reach,
                    agents,
                    services,
                }
            })
            .collect();
        Snapshot {
            boxes,
            bridge_running: crate::bridge::running_pid(&self.home).is_some(),
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, project: &str) -> BoxRecord {
        BoxRecord {
            name: name.into(),
            provider: "local".into(),
            project: project.into(),
            branch: format!("agentbox/{name}"),
            dir: "/nonexistent".into(),
            created_at_ms: 1,
            phase: "creating".into(),
            bridge_url: None,
            bridge_token: String::new(),
        }
    }

    #[test]
    fn a_project_shows_its_own_boxes_and_all_shows_every_box() {
        let mine = record("a", "/src/mine");
        let theirs = record("b", "/src/theirs");
        let project = Scope::Project("/src/mine".into());
        assert!(project.shows(&mine));
        assert!(!project.shows(&theirs));
        assert!(Scope::All.shows(&theirs));
    }

    #[test]
    fn a_box_still_being_made_is_not_asked_anything() {
        let found = crate::dashboard::probe::probe(&record("a", "/src/mine"));
        assert_eq!(found.reach, Reach::Phase("creating".into()));
        assert_eq!(found.services, None);
        // A teammate's box is its owner's: nothing is asked of it either.
        let mut joined = record("j", "/src/mine");
        joined.phase = "ready".into();
        joined.provider = crate::state::JOINED.into();
        assert_eq!(
            crate::dashboard::probe::probe(&joined).reach,
            Reach::Phase("joined".into())
        );
    }
}
