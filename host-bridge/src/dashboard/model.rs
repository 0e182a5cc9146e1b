//! What the dashboard shows and which box is selected: a [`Snapshot`] of every box (from the
//! host's records and the background probes), the [`Mode`] the screen is in, and what a
//! key asks for ([`Intent`] in, [`Effect`] out). No terminal, no I/O: the view draws a
//! [`Model`] and the loop carries out its effects.

use agentbox_protocol::agent::AgentState;

use crate::bridge::journal::Approval;

/// Whether a box runs, as the last probe found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Not probed yet.
    Unknown,
    /// Its processes run and its supervisor answered.
    Running,
    /// Stopped (its workspace kept).
    Stopped,
    /// Not ready yet (`creating`, or another phase of its record).
    Phase(String),
    /// It should run but did not answer; why.
    Unreachable(String),
}

impl Reach {
    /// The word the STATE column shows.
    pub fn word(&self) -> &str {
        match self {
            Self::Unknown => "…",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Phase(p) => p,
            Self::Unreachable(_) => "unreachable",
        }
    }
}

/// One service of a box, as its supervisor reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its name in agentbox.yaml.
    pub name: String,
    /// `running`, `starting`, `backoff`, …
    pub state: String,
    /// The port it exposes, if any.
    pub port: Option<u16>,
}

/// One agent session of a box, as the host bridge recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// The tmux session.
    pub session: String,
    /// The agent (`claude`, `codex`, …).
    pub agent: String,
    /// Its state (exited when the box does not run).
    pub state: AgentState,
}

impl Agent {
    /// `claude waiting`, or `codex(review) idle` when the session has another name.
    pub fn label(&self) -> String {
        if self.agent == self.session {
            format!("{} {}", self.agent, self.state.as_str())
        } else {
            format!("{}({}) {}", self.agent, self.session, self.state.as_str())
        }
    }
}

/// One box, everything the dashboard knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxView {
    /// The number `list` shows.
    pub number: u64,
    /// Its name.
    pub name: String,
    /// `local`, `docker` or `daytona`.
    pub provider: String,
    /// Whether it runs.
    pub reach: Reach,
    /// Its agents, by session.
    pub agents: Vec<Agent>,
    /// Its services, when a probe got them.
    pub services: Option<Vec<Service>>,
    /// Its requests waiting for the user's decision, oldest first.
    pub approvals: Vec<Approval>,
}

impl BoxView {
    /// The session attach should take: the first agent's that has not exited (attach picks
    /// the box's only session itself when there is none).
    pub fn attach_session(&self) -> Option<&str> {
        self.agents
            .iter()
            .find(|a| a.state != AgentState::Exited)
            .map(|a| a.session.as_str())
    }
}

/// Everything the dashboard shows at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The boxes, in `list`'s order.
    pub boxes: Vec<BoxView>,
    /// Whether the host bridge daemon runs (without it, approvals and agent states stall).
    pub bridge_running: bool,
    /// What went wrong reading the records, if anything.
    pub error: Option<String>,
}

/// What the screen is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The table.
    Normal,
    /// The key list over the table.
    Help,
    /// Asking whether to stop box `0`.
    ConfirmStop(String),
    /// Choosing what of box `name` to open.
    PickUrl {
        /// The box.
        name: String,
        /// The choices: a label and the port (`None`: the WebProxy).
        choices: Vec<(String, Option<u16>)>,
        /// The highlighted choice.
        selected: usize,
    },
}

/// What a key means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// `q`, Ctrl-C.
    Quit,
    /// ↑, `k`.
    Up,
    /// ↓, `j`.
    Down,
    /// Enter.
    Enter,
    /// `a`.
    Attach,
    /// `o`.
    Open,
    /// `s`.
    Screen,
    /// `y`.
    Yes,
    /// `n`.
    No,
    /// `S`.
    StopStart,
    /// `?`.
    Help,
    /// Esc.
    Back,
}

/// What the loop must do for an intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Leave the dashboard.
    Quit,
    /// Attach the terminal to a session of box `name`.
    Attach {
        /// The box.
        name: String,
        /// The session, when the box has agents.
        session: Option<String>,
    },
    /// Open the WebProxy (`port` None) or a service of box `name` in the browser.
    Open {
        /// The box.
        name: String,
        /// The service's port.
        port: Option<u16>,
    },
    /// Open box `name`'s screen in the browser.
    Screen(String),
    /// Approve (`approve`) or deny approval `id`.
    Decide {
        /// The approval's id.
        id: String,
        /// Approve, or deny.
        approve: bool,
    },
    /// Stop box `0`.
    Stop(String),
    /// Start box `0`.
    Start(String),
}

/// The dashboard's state.
#[derive(Debug, Clone)]
pub struct Model {
    /// The latest snapshot.
    pub snapshot: Snapshot,
    /// The selected row.
    pub selected: usize,
    /// What the screen is doing.
    pub mode: Mode,
    /// The last action's outcome, shown above the footer.
    pub message: Option<String>,
}

impl Model {
    /// A model of `snapshot` with its first box selected.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot,
            selected: 0,
            mode: Mode::Normal,
            message: None,
        }
    }

    /// The selected box, if there is one.
    pub fn current(&self) -> Option<&BoxView> {
        self.snapshot.boxes.get(self.selected)
    }

    /// Takes a new snapshot, keeping the same box selected (by name) when it is still there.
    pub fn update(&mut self, snapshot: Snapshot) {
        let name = self.current().map(|b| b.name.clone());
        self.snapshot = snapshot;
        if let Some(i) = name.and_then(|n| self.snapshot.boxes.iter().position(|b| b.name == n)) {
            self.selected = i;
        }
        self.selected = self
            .selected
            .min(self.snapshot.boxes.len().saturating_sub(1));
    }

    /// Applies what a key means; the effect the loop must carry out, if any.
    pub fn handle(&mut self, intent: Intent) -> Option<Effect> {
        match self.mode.clone() {
            Mode::Help => {
                if intent == Intent::Quit {
                    return Some(Effect::Quit);
                }
                self.mode = Mode::Normal;
                None
            }
            Mode::ConfirmStop(name) => {
                self.mode = Mode::Normal;
                match intent {
                    Intent::Yes | Intent::Enter => Some(Effect::Stop(name)),
                    _ => {
                        self.message = Some(format!("box `{name}` left running"));
                        None
                    }
                }
            }
            Mode::PickUrl {
                name,
                choices,
                selected,
            } => self.pick(intent, name, choices, selected),
            Mode::Normal => self.normal(intent),
        }
    }

    /// A key in the URL picker.
    fn pick(
        &mut self,
        intent: Intent,
        name: String,
        choices: Vec<(String, Option<u16>)>,
        selected: usize,
    ) -> Option<Effect> {
        let last = choices.len().saturating_sub(1);
        let selected = match intent {
            Intent::Up => selected.saturating_sub(1),
            Intent::Down => (selected + 1).min(last),
            Intent::Enter | Intent::Open => {
                self.mode = Mode::Normal;
                let port = choices.get(selected).and_then(|c| c.1);
                return Some(Effect::Open { name, port });
            }
            Intent::Quit => return Some(Effect::Quit),
            _ => {
                self.mode = Mode::Normal;
                return None;
            }
        };
        self.mode = Mode::PickUrl {
            name,
            choices,
            selected,
        };
        None
    }

    /// A key on the table.
    fn normal(&mut self, intent: Intent) -> Option<Effect> {
        let count = self.snapshot.boxes.len();
        match intent {
            Intent::Quit => return Some(Effect::Quit),
            Intent::Help => {
                self.mode = Mode::Help;
                return None;
            }
            Intent::Back => {
                self.message = None;
                return None;
            }
            Intent::Up => {
                self.selected = self.selected.saturating_sub(1);
                return None;
            }
            Intent::Down => {
                self.selected = (self.selected + 1).min(count.saturating_sub(1));
                return None;
            }
            _ => {}
        }
        let Some(b) = self.current().cloned() else {
            self.message = Some("no box selected".into());
            return None;
        };
        match intent {
            Intent::Enter | Intent::Attach => self.needs_running(&b).then(|| Effect::Attach {
                name: b.name.clone(),
                session: b.attach_session().map(str::to_string),
            }),
            Intent::Open => {
                if !self.needs_running(&b) {
                    return None;
                }
                let ports: Vec<(String, Option<u16>)> = b
                    .services
                    .iter()
                    .flatten()
                    .filter_map(|s| s.port.map(|p| (format!("{} (port {p})", s.name), Some(p))))
                    .collect();
                if ports.is_empty() {
                    return Some(Effect::Open {
                        name: b.name,
                        port: None,
                    });
                }
                let mut choices = vec![("the box's WebProxy (default)".to_string(), None)];
                choices.extend(ports);
                self.mode = Mode::PickUrl {
                    name: b.name,
                    choices,
                    selected: 0,
                };
                None
            }
            Intent::Screen => self
                .needs_running(&b)
                .then(|| Effect::Screen(b.name.clone())),
            Intent::Yes | Intent::No => match b.approvals.first() {
                Some(a) => Some(Effect::Decide {
                    id: a.id.clone(),
                    approve: intent == Intent::Yes,
                }),
                None => {
                    self.message = Some(format!("box `{}` has nothing waiting", b.name));
                    None
                }
            },
            Intent::StopStart => match b.reach {
                Reach::Stopped => Some(Effect::Start(b.name)),
                Reach::Phase(p) => {
                    self.message = Some(format!("box `{}` is {p}", b.name));
                    None
                }
                _ => {
                    self.mode = Mode::ConfirmStop(b.name);
                    None
                }
            },
            _ => None,
        }
    }

    /// Whether box `b` runs; if not, says so in the message.
    fn needs_running(&mut self, b: &BoxView) -> bool {
        match &b.reach {
            Reach::Running | Reach::Unknown | Reach::Unreachable(_) => true,
            // A joined box is its owner's to run: attach and open go to it as they are.
            Reach::Phase(p) if p == "joined" => true,
            Reach::Stopped => {
                self.message = Some(format!("box `{}` is stopped: S starts it", b.name));
                false
            }
            Reach::Phase(p) => {
                self.message = Some(format!("box `{}` is {p}", b.name));
                false
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A box of the tests: running, no agents, services or approvals.
    pub(crate) fn view(name: &str) -> BoxView {
        BoxView {
            number: 1,
            name: name.into(),
            provider: "local".into(),
            reach: Reach::Running,
            agents: Vec::new(),
            services: Some(Vec::new()),
            approvals: Vec::new(),
        }
    }

    /// An approval waiting in box `box_name`.
    pub(crate) fn approval(id: &str, box_name: &str, summary: &str) -> Approval {
        Approval {
            id: id.into(),
            box_name: box_name.into(),
            request_id: "r1".into(),
            kind: "open".into(),
            summary: summary.into(),
            created_ms: 1,
            expires_ms: u64::MAX,
            state: "pending".into(),
            digest: None,
        }
    }

    fn model(names: &[&str]) -> Model {
        Model::new(Snapshot {
            boxes: names.iter().map(|n| view(n)).collect(),
            bridge_running: true,
            error: None,
        })
    }

    #[test]
    fn selection_moves_within_the_rows_and_follows_its_box_across_snapshots() {
        let mut m = model(&["a", "b", "c"]);
        assert_eq!(m.handle(Intent::Up), None);
        assert_eq!(m.selected, 0);
        m.handle(Intent::Down);
        m.handle(Intent::Down);
        m.handle(Intent::Down);
        assert_eq!(m.current().map(|b| b.name.as_str()), Some("c"));
        // A box before it went: the selection stays on `c`.
        m.update(model(&["b", "c"]).snapshot);
        assert_eq!(m.current().map(|b| b.name.as_str()), Some("c"));
        // `c` went too: the selection stays in range.
        m.update(model(&["b"]).snapshot);
        assert_eq!(m.current().map(|b| b.name.as_str()), Some("b"));
        m.update(Snapshot::default());
        assert_eq!(m.current(), None);
        assert_eq!(m.handle(Intent::Attach), None);
        assert_eq!(m.message.as_deref(), Some("no box selected"));
    }

    #[test]
    fn stop_asks_first_and_start_does_not() {
        let mut m = model(&["a"]);
        assert_eq!(m.handle(Intent::StopStart), None);
        assert_eq!(m.mode, Mode::ConfirmStop("a".into()));
        assert_eq!(m.handle(Intent::No), None);
        assert_eq!(m.mode, Mode::Normal);
        m.handle(Intent::StopStart);
        assert_eq!(m.handle(Intent::Yes), Some(Effect::Stop("a".into())));
        m.snapshot.boxes[0].reach = Reach::Stopped;
        assert_eq!(m.handle(Intent::StopStart), Some(Effect::Start("a".into())));
        // A stopped box is not attached: the message says how to start it.
        assert_eq!(m.handle(Intent::Attach), None);
        assert_eq!(
            m.message.as_deref(),
            Some("box `a` is stopped: S starts it")
        );
    }

    #[test]
    fn y_and_n_decide_the_oldest_waiting_approval_of_the_selected_box() {
        let mut m = model(&["a", "b"]);
        m.snapshot.boxes[1].approvals =
            vec![approval("x1", "b", "open"), approval("x2", "b", "push")];
        assert_eq!(m.handle(Intent::Yes), None, "box a has nothing waiting");
        m.handle(Intent::Down);
        assert_eq!(
            m.handle(Intent::Yes),
            Some(Effect::Decide {
                id: "x1".into(),
                approve: true
            })
        );
        assert_eq!(
            m.handle(Intent::No),
            Some(Effect::Decide {
                id: "x1".into(),
                approve: false
            })
        );
    }

    #[test]
    fn open_picks_among_services_with_ports_and_attach_takes_a_live_agent() {
        let mut m = model(&["a"]);
        assert_eq!(
            m.handle(Intent::Open),
            Some(Effect::Open {
                name: "a".into(),
                port: None
            })
        );
        m.snapshot.boxes[0].services = Some(vec![Service {
            name: "web".into(),
            state: "running".into(),
            port: Some(3000),
        }]);
        assert_eq!(m.handle(Intent::Open), None);
        assert!(matches!(m.mode, Mode::PickUrl { .. }));
        m.handle(Intent::Down);
        m.handle(Intent::Down);
        assert_eq!(
            m.handle(Intent::Enter),
            Some(Effect::Open {
                name: "a".into(),
                port: Some(3000)
            })
        );
        m.snapshot.boxes[0].agents = vec![
            Agent {
                session: "old".into(),
                agent: "claude".into(),
                state: AgentState::Exited,
            },
            Agent {
                session: "codex".into(),
                agent: "codex".into(),
                state: AgentState::Waiting,
            },
        ];
        assert_eq!(
            m.handle(Intent::Enter),
            Some(Effect::Attach {
                name: "a".into(),
                session: Some("codex".into())
            })
        );
    }
}
