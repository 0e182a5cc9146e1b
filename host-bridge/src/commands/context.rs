//! [`Ctx`]: what most commands start from — `AGENTBOX_HOME`, the box records, the
//! directory the command runs in — and the look-ups they share.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::cli::Scope;
use crate::config::Resolved;
use crate::git;
use crate::home::{project_id, Home};
use crate::provider::AnyBox;
use crate::state::{BoxRecord, State};
use crate::transfer::client::Relay;

/// The small context a command runs in.
pub struct Ctx {
    /// `AGENTBOX_HOME`.
    pub home: Home,
    /// The box records.
    pub state: State,
    /// Where the command runs (the project is the git repository around it).
    pub cwd: PathBuf,
}

impl Ctx {
    /// From the environment: `AGENTBOX_HOME`, its state database and the current directory.
    pub fn new() -> anyhow::Result<Self> {
        let home = Home::from_env()?;
        let state = State::open(&home.state_db())?;
        Ok(Self {
            home,
            state,
            cwd: std::env::current_dir()?,
        })
    }

    /// The repository around the current directory, if any.
    pub fn repo(&self) -> Option<PathBuf> {
        git::repo_root(&self.cwd).ok()
    }

    /// The layered configuration, with `flags` on top.
    pub fn resolved(&self, flags: BTreeMap<String, String>) -> anyhow::Result<Resolved> {
        let repo = self.repo();
        let project = repo
            .as_deref()
            .map(|r| self.home.project_config(&project_id(r)));
        Resolved::load(
            &self.home.config(),
            project.as_ref(),
            repo.as_deref(),
            flags,
        )
        .map_err(anyhow::Error::msg)
    }

    /// `transfer.maxBytes`: the largest transfer accepted from a box.
    pub fn max_transfer_bytes(&self) -> anyhow::Result<u64> {
        Ok(self
            .resolved(BTreeMap::new())?
            .get("transfer.maxBytes")
            .and_then(|(v, _)| v.parse().ok())
            .unwrap_or(1 << 30))
    }

    /// A name, an index from `list`, or the project's only box.
    pub fn resolve(&self, target: Option<&str>) -> anyhow::Result<BoxRecord> {
        let all = self.state.all()?;
        match target {
            Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                // Numbers are never reused: a destroyed box's number names no box.
                let n: u64 = t.parse().unwrap_or(0);
                self.state.by_number(n)?.with_context(|| {
                    format!("there is no box number {t} (destroyed, or never made: see `agentbox list`)")
                })
            }
            Some(name) => self
                .state
                .get(name)?
                .with_context(|| format!("no box named `{name}` (see `agentbox list`)")),
            None => {
                let repo = self
                    .repo()
                    .context("name a box: you are not inside a git repository")?;
                let mut mine: Vec<BoxRecord> =
                    all.into_iter().filter(|b| b.project == repo).collect();
                match mine.len() {
                    0 => bail!("this project has no box: create one with `agentbox create`"),
                    1 => Ok(mine.remove(0)),
                    n => bail!(
                        "this project has {n} boxes ({}): name one",
                        mine.iter()
                            .map(|b| b.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            }
        }
    }

    /// The config file `config set|unset` (and `prepare`'s pins) write: the global one,
    /// or this project's (the default inside a repository).
    pub fn config_file(&self, scope: &Scope) -> anyhow::Result<PathBuf> {
        if scope.global {
            return Ok(self.home.config());
        }
        match self.repo() {
            Some(repo) => Ok(self.home.project_config(&project_id(&repo))),
            None if scope.project => bail!("--project needs a git repository: run it inside one"),
            None => Ok(self.home.config()),
        }
    }

    /// The project config file (where `prepare` and `checkpoint --set-default` pin).
    pub fn project_config_file(&self) -> anyhow::Result<PathBuf> {
        self.config_file(&Scope {
            global: false,
            project: false,
        })
    }
}

/// A client for the box's relay, from the host's own record.
pub fn relay_of(record: &BoxRecord) -> anyhow::Result<Relay> {
    if record.is_joined() {
        return Err(super::joined::refused(&record.name));
    }
    let url = record
        .bridge_url
        .as_deref()
        .with_context(|| format!("box `{}` has no relay address yet: start it", record.name))?;
    AnyBox::open(record)?.relay(url, &record.bridge_token)
}

/// Refuses a stopped box with the command that starts it.
pub fn ensure_running(b: &AnyBox, name: &str) -> anyhow::Result<()> {
    if b.running() {
        Ok(())
    } else {
        bail!("box `{name}` is stopped: start it with `agentbox start {name}`")
    }
}
