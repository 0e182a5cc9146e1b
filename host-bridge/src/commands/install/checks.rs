//! What this machine has for each provider (`agentbox install --check`, and the first
//! lines of every install): tmux and git (every box), a Docker engine (docker boxes),
//! Daytona credentials (daytona boxes), and the static box binaries both of those put in
//! their image.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::daytona::login::Settings;

/// How long a probe (`tmux -V`, `docker info`) may take before it counts as missing.
const PROBE_LIMIT: Duration = Duration::from_secs(15);

/// One thing checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name (`tmux`, `git`, `docker`, `daytona`, `box-binaries`).
    pub name: &'static str,
    /// What it is for.
    pub what: &'static str,
    /// Whether it is there.
    pub ok: bool,
    /// What to do when it is not.
    pub fix: &'static str,
}

/// Everything checked.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The checks, in the order printed.
    pub checks: Vec<Check>,
}

impl Report {
    /// Probes this machine; `home` holds the Daytona credentials.
    pub fn gather(home: &Path) -> anyhow::Result<Self> {
        let daytona = Settings::load(home)?.key.is_some();
        let docker = docker_engine();
        Ok(Self {
            checks: vec![
                Check {
                    name: "tmux",
                    what: "tmux (agent sessions)",
                    ok: runs("tmux", &["-V"]),
                    fix: "install it (apt-get install tmux, brew install tmux)",
                },
                Check {
                    name: "git",
                    what: "git (seeding, push)",
                    ok: runs("git", &["--version"]),
                    fix: "install it (apt-get install git, brew install git)",
                },
                Check {
                    name: "docker",
                    what: "a Docker engine (the docker provider)",
                    ok: docker,
                    fix: "install Docker and start its engine (`docker info` must succeed)",
                },
                Check {
                    name: "daytona",
                    what: "Daytona credentials (the daytona provider)",
                    ok: daytona,
                    fix: "run `agentbox daytona login` (or `agentbox install --provider daytona`)",
                },
                Check {
                    name: "box-binaries",
                    what: "static agentbox-ctl and agentbox-relay for the boxes' CPU (docker and Daytona images)",
                    ok: box_binaries(docker),
                    fix: "use a release of agentbox (lib/agentbox/<target>/ beside bin/agentbox), or in the agentbox source run `scripts/box-binaries --release x86_64|aarch64`, or set AGENTBOX_BOX_BINARIES to a directory holding them",
                },
            ],
        })
    }

    /// Whether check `name` passed.
    pub fn ok(&self, name: &str) -> bool {
        self.checks.iter().any(|c| c.name == name && c.ok)
    }

    /// Whether the local provider can run (tmux and git).
    pub fn local_ready(&self) -> bool {
        self.ok("tmux") && self.ok("git")
    }

    /// The report as lines on stdout.
    pub fn print(&self) {
        for c in &self.checks {
            if c.ok {
                println!("ok       {}", c.what);
            } else {
                println!("missing  {}: {}", c.what, c.fix);
            }
        }
    }
}

/// Whether static box binaries are found where `prepare` looks
/// ([`crate::image::binaries::find`]) for the boxes this machine would make: the Docker
/// engine's CPU when `docker` (the engine answers), else Daytona's (x86_64).
fn box_binaries(docker: bool) -> bool {
    use crate::image::arch::BoxArch;
    let arch = if docker {
        BoxArch::of_provider("docker").unwrap_or(BoxArch::X86_64)
    } else {
        BoxArch::X86_64
    };
    crate::image::binaries::find(arch).is_ok()
}

/// Whether a Docker engine answers (`docker info`, bounded).
pub fn docker_engine() -> bool {
    runs("docker", &["info"])
}

/// Whether `program ARGS` exits 0 within [`PROBE_LIMIT`] (it is ended if not).
fn runs(program: &str, args: &[&str]) -> bool {
    let Ok(mut child) = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + PROBE_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}
