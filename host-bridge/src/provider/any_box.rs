//! A box of any provider ([`AnyBox`]) for the commands that work the same on all of them,
//! the settings creating a docker or daytona box needs ([`DockerSettings`]), and which
//! providers this build can run ([`ensure_available`]).

use super::size::Size;
use super::{daytona, docker, local};
use crate::state::BoxRecord;

/// Checks that `name` is a provider this build can run.
pub fn ensure_available(name: &str) -> anyhow::Result<()> {
    match name {
        "local" | "docker" | "daytona" => Ok(()),
        other => anyhow::bail!("unknown provider `{other}`: use local, docker or daytona"),
    }
}

/// What creating a docker or daytona box needs beyond the record.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// The box image (`box.image`) or Daytona snapshot (`box.imageDaytona`), pinned by
    /// `prepare`.
    pub image: String,
    /// [`docker::home_label`] of this `AGENTBOX_HOME`.
    pub home_label: String,
    /// `--size` / `box.size`.
    pub size: Option<Size>,
    /// The image is a checkpoint that holds the workspace already: no seeding.
    pub seeded: bool,
    /// `--dind`: the box runs a Docker engine of its own (docker boxes only).
    pub dind: bool,
    /// `box.autoStopMinutes`: idle minutes before Daytona stops the box (daytona only).
    pub auto_stop_minutes: u32,
}

/// A box of any provider, for the commands that work the same on all of them.
pub enum AnyBox {
    /// Processes on this machine.
    Local(local::LocalBox),
    /// A Docker container.
    Docker(docker::DockerBox),
    /// A Daytona sandbox.
    Daytona(Box<daytona::DaytonaBox>),
}

impl AnyBox {
    /// The box a record describes.
    pub fn open(record: &BoxRecord) -> anyhow::Result<Self> {
        if record.is_joined() {
            return Err(crate::state::joined_refusal(&record.name));
        }
        ensure_available(&record.provider)?;
        Ok(match record.provider.as_str() {
            "docker" => Self::Docker(docker::DockerBox::new(
                &record.name,
                &docker::home_label(crate::home::Home::from_env()?.root()),
                &record.project,
            )),
            "daytona" => Self::Daytona(Box::new(daytona::DaytonaBox::new(
                &record.name,
                crate::home::Home::from_env()?.root(),
            )?)),
            _ => Self::Local(local::LocalBox::new(&record.name, record.dir.clone())),
        })
    }

    /// Makes the box exist (directories, or the container), not started yet.
    pub fn lay_out(
        &self,
        record: &BoxRecord,
        docker: Option<&DockerSettings>,
    ) -> anyhow::Result<()> {
        match self {
            Self::Local(b) => b.lay_out(),
            Self::Docker(b) => {
                // The host keeps its records of the box (sync state) here.
                std::fs::create_dir_all(&record.dir)?;
                let s = docker.ok_or_else(|| anyhow::anyhow!("docker settings missing"))?;
                b.create(&s.image, &record.bridge_token, s.size, s.dind)
            }
            Self::Daytona(b) => {
                std::fs::create_dir_all(&record.dir)?;
                let s = docker.ok_or_else(|| anyhow::anyhow!("daytona settings missing"))?;
                b.create_stopping_after(
                    &s.image,
                    &record.bridge_token,
                    &s.home_label,
                    s.size,
                    s.auto_stop_minutes,
                )
            }
        }
    }

    /// The relay's bridge API of a started box at `url` (the record's `bridge_url`).
    pub fn relay(&self, url: &str, token: &str) -> anyhow::Result<crate::transfer::client::Relay> {
        match self {
            Self::Daytona(b) => b.relay(token),
            Self::Local(_) | Self::Docker(_) => Ok(crate::transfer::client::Relay::new(url, token)),
        }
    }

    /// Starts it; returns the bridge URL once it answers.
    pub fn start(&self, token: &str) -> anyhow::Result<String> {
        match self {
            Self::Local(b) => b.start(token),
            Self::Docker(b) => b.start(),
            Self::Daytona(b) => b.start(token),
        }
    }

    /// `agentbox-ctl ARGS` in the box, captured.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        match self {
            Self::Local(b) => b.ctl(args),
            Self::Docker(b) => b.ctl(args),
            Self::Daytona(b) => b.ctl(args),
        }
    }

    /// Whether it runs.
    pub fn running(&self) -> bool {
        match self {
            Self::Local(b) => b.running(),
            Self::Docker(b) => b.running(),
            Self::Daytona(b) => b.running(),
        }
    }

    /// Stops it, keeping the workspace.
    pub fn stop(&self) -> anyhow::Result<()> {
        match self {
            Self::Local(b) => b.stop(),
            Self::Docker(b) => b.stop(),
            Self::Daytona(b) => b.stop(),
        }
    }

    /// `argv` with this terminal's stdio (stdin included, and a terminal when this is
    /// one); its exit code.
    pub fn exec(&self, argv: &[String]) -> anyhow::Result<i32> {
        use std::io::IsTerminal;
        let mut request = agentbox_protocol::exec::ExecRequest::new(argv.to_vec());
        request.stdin = true;
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            request.tty = Some(crate::attach::terminal::size());
        }
        match self {
            Self::Local(b) => b.exec(&request),
            Self::Docker(b) => b.exec(&request),
            Self::Daytona(b) => b.exec(argv),
        }
    }

    /// Copies the host's agent credential files (under `host_home`) into the box; returns
    /// the agents whose credentials went.
    pub fn resync(&self, host_home: &std::path::Path) -> anyhow::Result<Vec<&'static str>> {
        match self {
            Self::Local(_) => anyhow::bail!(
                "a local box runs as you on this machine and uses your own agent credentials: nothing to resync"
            ),
            Self::Docker(b) => b.resync(host_home),
            Self::Daytona(b) => b.resync(host_home),
        }
    }

    /// Writes `data` into the box's run directory as `name`, readable by the box's user
    /// only; returns its path in the box.
    pub fn put_private_file(&self, name: &str, data: &[u8]) -> anyhow::Result<String> {
        match self {
            Self::Local(b) => b.put_private_file(name, data),
            Self::Docker(b) => {
                b.put_private_files("/run/agentbox", &[(name, data)])?;
                Ok(format!("/run/agentbox/{name}"))
            }
            Self::Daytona(b) => b.put_private_file(name, data),
        }
    }

    /// Removes every trace of it (and the host's records in `dir`).
    pub fn remove(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        match self {
            Self::Local(b) => b.remove(),
            Self::Docker(b) => {
                b.remove()?;
                remove_records(dir)
            }
            Self::Daytona(b) => {
                b.remove()?;
                remove_records(dir)
            }
        }
    }
}

/// Removes the host's records of a box that lives elsewhere.
fn remove_records(dir: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}
