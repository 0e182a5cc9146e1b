//! The `local` provider: a box is a directory under `AGENTBOX_HOME/boxes/<name>/` with its
//! own workspace, run, state and log directories, and its ctl daemon and relay run as
//! processes of this machine, each in its own session, pointed there by the environment
//! contract. The relay's bridge listens on a free loopback port.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long the host waits for the box's daemon to answer a request (the longest it
/// takes is `agentbox-ctl wait-ready --timeout 60000`), as for a docker box.
const CTL_LIMIT: Duration = Duration::from_secs(120);

/// The directories of one local box.
#[derive(Debug, Clone)]
pub struct LocalBox {
    /// Box name.
    pub name: String,
    /// `AGENTBOX_HOME/boxes/<name>`.
    pub dir: PathBuf,
}

const SHIM_GIT: &str = include_str!("../../../box/shims/git");
const SHIM_GH: &str = include_str!("../../../box/shims/gh");

/// Where the box binaries this machine runs are: `AGENTBOX_BOX_BIN_DIR`, else next to this
/// executable (resolved through symlinks), else, in a release, the static ones for this
/// machine's architecture in `lib/agentbox/<target>/` beside its `bin/`.
pub fn box_binaries() -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = match std::env::var_os("AGENTBOX_BOX_BIN_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe()?;
            let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
            let dir = exe
                .parent()
                .map(Path::to_path_buf)
                .context("no executable directory")?;
            let release = crate::image::arch::BoxArch::host()
                .and_then(|arch| Some(dir.parent()?.join("lib/agentbox").join(arch.target())));
            match release {
                Some(lib)
                    if !dir.join("agentbox-ctl").is_file()
                        && lib.join("agentbox-ctl").is_file() =>
                {
                    lib
                }
                _ => dir,
            }
        }
    };
    let ctl = dir.join("agentbox-ctl");
    let relay = dir.join("agentbox-relay");
    for bin in [&ctl, &relay] {
        if !bin.is_file() {
            bail!(
                "{} is missing: build it (cargo build --workspace) or set AGENTBOX_BOX_BIN_DIR",
                bin.display()
            );
        }
    }
    Ok((ctl, relay))
}

/// Gives a box process only the allowlisted part of this machine's environment
/// ([`crate::credentials::box_inherits_var`]): tokens, keys and sockets stay out of the
/// box's daemon, relay, services and `exec`s (an agent session gets the keys
/// `agents.forwardEnv` names, by itself). The box's own contract is added after this.
fn inherit_allowlisted_env(cmd: &mut Command) {
    cmd.env_clear();
    for (name, value) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(crate::credentials::box_inherits_var)
        {
            cmd.env(name, value);
        }
    }
}

impl LocalBox {
    /// The box at `dir`.
    pub fn new(name: &str, dir: PathBuf) -> Self {
        Self {
            name: name.to_string(),
            dir,
        }
    }

    /// The box workspace.
    pub fn workspace(&self) -> PathBuf {
        self.dir.join("workspace")
    }

    /// The box run dir (sockets, token, relay.json).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// Creates the directories, shims and links. Fails if the directory exists.
    pub fn lay_out(&self) -> anyhow::Result<()> {
        if self.dir.exists() {
            bail!(
                "{} already exists: remove it or pick another name",
                self.dir.display()
            );
        }
        for sub in ["workspace", "run", "state", "log", "bin"] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(self.dir.join(sub))?;
        }
        let (ctl, _) = box_binaries()?;
        std::os::unix::fs::symlink(&ctl, self.bin_dir().join("agentbox-ctl"))?;
        for (name, text) in [("git", SHIM_GIT), ("gh", SHIM_GH)] {
            let path = self.bin_dir().join(name);
            std::fs::write(&path, text)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    }

    /// The environment contract of this box, plus PATH with the shims first.
    pub fn env(&self) -> Vec<(String, String)> {
        let d = |p: PathBuf| p.display().to_string();
        let path = std::env::var("PATH").unwrap_or_default();
        let real_git = crate::shell::which("git").map_or_else(|| "/usr/bin/git".to_string(), d);
        vec![
            ("AGENTBOX".into(), "1".into()),
            ("AGENTBOX_BOX_NAME".into(), self.name.clone()),
            ("AGENTBOX_WORKSPACE".into(), d(self.workspace())),
            ("AGENTBOX_RUN_DIR".into(), d(self.run_dir())),
            ("AGENTBOX_STATE_DIR".into(), d(self.dir.join("state"))),
            ("AGENTBOX_LOG_DIR".into(), d(self.dir.join("log"))),
            ("AGENTBOX_REAL_GIT".into(), real_git),
            (
                "PATH".into(),
                format!("{}:{path}", self.bin_dir().display()),
            ),
        ]
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        inherit_allowlisted_env(&mut cmd);
        cmd.envs(self.env()).current_dir(self.workspace());
        cmd
    }

    /// Writes `data` as `name` in the run directory, mode 0600; returns its path.
    pub fn put_private_file(&self, name: &str, data: &[u8]) -> anyhow::Result<String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.run_dir().join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(data)?;
        Ok(path.display().to_string())
    }

    fn spawn_detached(
        &self,
        program: &Path,
        args: &[&str],
        log: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log").join(log))?;
        let mut cmd = Command::new("setsid");
        cmd.arg(program).args(args);
        inherit_allowlisted_env(&mut cmd);
        cmd.envs(self.env()).current_dir(self.workspace());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        cmd.spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        Ok(())
    }

    /// The box's loopback ports (bridge, web): chosen free at the first start and kept in
    /// `ports.json` among the host's records of the box (not in the box's directory: the
    /// host sends the bridge token where it says), so a relay restarted by the ctl daemon
    /// comes back where the host bridge looks for it.
    fn ports(&self) -> anyhow::Result<(u16, u16)> {
        let (path, read) = crate::home::host_record(&self.dir, "ports.json");
        if let Some(v) = std::fs::read(&read)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        {
            if let (Some(b), Some(w)) = (v["bridge"].as_u64(), v["web"].as_u64()) {
                return Ok((u16::try_from(b)?, u16::try_from(w)?));
            }
        }
        let free = || -> std::io::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (bridge, web) = (free()?, free()?);
        if let Some(records) = path.parent() {
            std::fs::create_dir_all(records)?;
        }
        std::fs::write(
            &path,
            serde_json::json!({"bridge": bridge, "web": web}).to_string(),
        )?;
        Ok((bridge, web))
    }

    /// Starts the ctl daemon, which runs the relay as its built-in unit (restarted if it
    /// dies); returns the bridge URL once both answer. When they do not within 15 s, what
    /// was started is stopped again before the error.
    pub fn start(&self, token: &str) -> anyhow::Result<String> {
        let (ctl, relay) = box_binaries()?;
        let _ = std::fs::remove_file(self.run_dir().join("relay.json"));
        let (bridge_port, web_port) = self.ports()?;
        let relay_path = relay.display().to_string();
        self.spawn_detached(
            &ctl,
            &["daemon"],
            "ctl-daemon.log",
            &[
                ("AGENTBOX_RELAY", relay_path.as_str()),
                ("AGENTBOX_BRIDGE_TOKEN", token),
                ("AGENTBOX_BRIDGE_PORT", &bridge_port.to_string()),
                ("AGENTBOX_WEB_PORT", &web_port.to_string()),
                ("AGENTBOX_BIND_ADDR", "127.0.0.1"),
                // This machine's ports are shared with other boxes: the daemon takes only
                // its own listeners for ready, and fails a service whose port is taken.
                ("AGENTBOX_SHARED_PORTS", "1"),
            ],
        )?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let url = loop {
            if let Some(port) = self.relay_info().and_then(|v| v["bridge_port"].as_u64()) {
                break format!("http://127.0.0.1:{port}");
            }
            if Instant::now() > deadline {
                // Not a daemon restarting a relay that cannot come up, forever.
                let _ = self.stop();
                bail!(
                    "the relay did not start; see {} and `agentbox-ctl logs agentbox-relay`",
                    self.dir.join("log/ctl-daemon.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while !self
            .ctl_within(&["status"], Duration::from_secs(5))
            .is_ok_and(|o| o.status.success())
        {
            if Instant::now() > deadline {
                let _ = self.stop();
                bail!(
                    "the ctl daemon did not start; see {}",
                    self.dir.join("log/ctl-daemon.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(url)
    }

    /// The URL of the WebProxy, or of a box port (local services listen on this machine).
    pub fn web_url(&self, port: Option<u16>) -> anyhow::Result<String> {
        if let Some(p) = port {
            self.ensure_not_served_by_another(p)?;
            return Ok(format!("http://127.0.0.1:{p}"));
        }
        let port = self
            .relay_info()
            .and_then(|v| v["web_port"].as_u64())
            .with_context(|| format!("box {} is not running", self.name))?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// Refuses a port of this machine that a process of another box (or no box) listens
    /// on while none of this box's processes does: its URL would show the other's content.
    fn ensure_not_served_by_another(&self, port: u16) -> anyhow::Result<()> {
        use agentbox_protocol::listeners;
        let Some(holders) = listeners::holders(port) else {
            return Ok(()); // no /proc: nothing to tell them apart by
        };
        let run_dir = self.run_dir().display().to_string();
        let ours =
            |pid: &u32| listeners::env_of(*pid, "AGENTBOX_RUN_DIR").is_some_and(|d| d == run_dir);
        if holders.is_empty() || holders.iter().any(ours) {
            return Ok(());
        }
        let pid = holders[0];
        match listeners::env_of(pid, "AGENTBOX_BOX_NAME") {
            Some(other) => bail!(
                "port {port} is served by box `{}`, not by box `{}`: stop that box (`agentbox stop {}`) and restart this one's service (`agentbox status {}` says why it is not running)",
                crate::text::shown(&other),
                self.name,
                crate::text::shown(&other),
                self.name
            ),
            None => bail!(
                "port {port} is served by pid {pid} ({}), a program of this machine outside box `{}`",
                crate::text::shown(&listeners::command_of(pid).unwrap_or_default()),
                self.name
            ),
        }
    }

    fn relay_info(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.run_dir().join("relay.json")).ok()?).ok()
    }

    /// Runs `agentbox-ctl ARGS` in the box and captures its output.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        self.ctl_within(args, CTL_LIMIT)
    }

    /// [`ctl`](Self::ctl) within `limit`: the daemon's socket is the box's, and a box
    /// that never answers costs the host that long, never more.
    fn ctl_within(&self, args: &[&str], limit: Duration) -> anyhow::Result<std::process::Output> {
        let (ctl, _) = box_binaries()?;
        crate::timed::output_within(self.command(&ctl).args(args), limit).with_context(|| {
            format!(
                "box {} did not answer `agentbox-ctl {}`",
                self.name,
                args.join(" ")
            )
        })
    }

    /// Whether both processes are alive.
    pub fn running(&self) -> bool {
        self.relay_pid().is_some() && self.ctl_pid().is_some()
    }

    /// A pid read from the box's own files (`relay.json`, `ctl.lock`), which the box can
    /// write: taken only when it is a live process of this box — its environment carries
    /// this box's run dir — and not this process or an ancestor. A planted `-1`, `0` or
    /// the pid of any other process of this machine is never signalled or waited on.
    fn box_pid(&self, pid: Option<i64>) -> Option<i32> {
        let pid = i32::try_from(pid?).ok().filter(|p| *p > 1)?;
        let marker = format!("AGENTBOX_RUN_DIR={}", self.run_dir().display());
        let ours = std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == marker.as_bytes()));
        (ours && pid_alive(pid) && !ancestors().contains(&pid)).then_some(pid)
    }

    fn relay_pid(&self) -> Option<i32> {
        self.box_pid(self.relay_info().and_then(|v| v["pid"].as_i64()))
    }

    fn ctl_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.run_dir().join("ctl.lock")).ok()?;
        // The lock file keeps the pid after the daemon exits; the socket tells if it serves.
        if !self.run_dir().join("ctl.sock").exists() {
            return None;
        }
        self.box_pid(text.trim().parse().ok())
    }

    /// Stops the daemon (which stops its units), the relay and the tmux server, then
    /// SIGKILLs whatever of the box still runs (see [`LocalBox::kill_leftovers`]): what
    /// `exec` started in the background, or the units of a daemon killed with SIGKILL.
    pub fn stop(&self) -> anyhow::Result<()> {
        if let Some(pid) = self.ctl_pid() {
            let asked = self
                .ctl_within(&["shutdown"], Duration::from_secs(20))
                .is_ok_and(|o| o.status.success());
            if !asked {
                // Its socket did not take the request: the signal does the same.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            wait_gone(pid, Duration::from_secs(30));
        }
        if let Some(pid) = self.relay_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            wait_gone(pid, Duration::from_secs(10));
        }
        // The socket is the box's too: bounded, and the sweep below ends the server anyway.
        let _ = crate::timed::output_within(
            Command::new("tmux")
                .arg("-S")
                .arg(self.run_dir().join("tmux.sock"))
                .arg("kill-server"),
            Duration::from_secs(5),
        );
        self.kill_leftovers();
        Ok(())
    }

    /// SIGKILLs every process of this box that is still running. Each one (daemon,
    /// relay, units, sessions, `exec`s and all they start) inherits the box's
    /// environment contract, so `AGENTBOX_RUN_DIR=<this box's run dir>` in
    /// `/proc/PID/environ` marks it; this process and its ancestors are spared (an
    /// `agentbox` run from inside the box). Every descendant of such a process is one too,
    /// marker or not (`env -i` drops it). Repeated until none is found, so a fork during
    /// the sweep is caught by the next round.
    pub fn kill_leftovers(&self) {
        let marker = format!("AGENTBOX_RUN_DIR={}", self.run_dir().display());
        let spared = ancestors();
        for _ in 0..20 {
            let found: Vec<i32> = box_processes(marker.as_bytes())
                .into_iter()
                .filter(|p| !spared.contains(p))
                .collect();
            if found.is_empty() {
                return;
            }
            for pid in &found {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            for pid in found {
                wait_gone(pid, Duration::from_secs(2));
            }
        }
    }

    /// Runs `request` in the box with this terminal's stdout and stderr (and stdin with
    /// `-i`); returns its exit code, 126 (said on stderr) when it cannot be executed, 127
    /// when there is no such program. A local box runs as you, on your terminal: `-u`
    /// may only name you, and `-t` is this terminal.
    pub fn exec(&self, request: &agentbox_protocol::exec::ExecRequest) -> anyhow::Result<i32> {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let (program, args) = request.argv.split_first().context("no command given")?;
        if let Some(user) = request.user.as_deref() {
            let me = nix::unistd::Uid::current();
            let name = nix::unistd::User::from_uid(me)
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_default();
            if user != name && user != me.to_string() {
                bail!(
                    "box {} is local: it runs as you (`{name}`) on this machine, so `-u` can only name you",
                    self.name
                );
            }
        }
        let cwd = match request.cwd.as_deref() {
            Some(dir) => self.workspace().join(dir),
            None => self.workspace(),
        };
        if !cwd.is_dir() {
            eprintln!(
                "agentbox: cannot run `{program}`: no directory {} in box {}",
                cwd.display(),
                self.name
            );
            return Ok(126);
        }
        let mut cmd = self.command(Path::new(program));
        cmd.args(args).envs(&request.env).current_dir(&cwd);
        if !request.stdin {
            cmd.stdin(Stdio::null());
        }
        if request.detach {
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let (code, why) = if e.kind() == std::io::ErrorKind::NotFound {
                    (127, "no such program in the box's PATH".to_string())
                } else {
                    (126, e.to_string())
                };
                eprintln!(
                    "agentbox: cannot run `{program}` in box {}: {why}",
                    self.name
                );
                return Ok(code);
            }
        };
        if request.detach {
            // Left running; it is reparented when this process exits.
            return Ok(0);
        }
        let status = child
            .wait()
            .with_context(|| format!("cannot wait for `{program}` in box {}", self.name))?;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    /// Ends what of the box still runs, then removes every trace of it on disk.
    pub fn remove(&self) -> anyhow::Result<()> {
        self.kill_leftovers();
        let records = crate::home::host_records(&self.dir);
        if records != self.dir {
            let _ = std::fs::remove_dir_all(&records);
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", self.dir.display())),
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    pid > 1
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
}

fn wait_gone(pid: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The live processes of the box: those whose environment holds the entry `marker`
/// (`NAME=value`), and every descendant of one (a box process can drop the marker with
/// `env -i`, not its parent). Processes of other users, whose environment cannot be read,
/// are not among them.
fn box_processes(marker: &[u8]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .collect();
    let mut found: std::collections::BTreeSet<i32> = pids
        .iter()
        .copied()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|entry| entry == marker))
        })
        .collect();
    let parents: Vec<(i32, i32)> = pids
        .iter()
        .filter_map(|pid| Some((*pid, parent_of(*pid)?)))
        .collect();
    // Descendants, to any depth: repeated until no new child of a box process appears.
    loop {
        let more: Vec<i32> = parents
            .iter()
            .filter(|(pid, parent)| found.contains(parent) && !found.contains(pid))
            .map(|(pid, _)| *pid)
            .collect();
        if more.is_empty() {
            break;
        }
        found.extend(more);
    }
    found.into_iter().filter(|pid| pid_alive(*pid)).collect()
}

/// The parent of `pid` (`/proc/PID/stat`'s fourth field), if it can be read.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// This process and its ancestors, by `/proc/PID/stat`'s parent field.
fn ancestors() -> Vec<i32> {
    let mut chain = Vec::new();
    let mut pid = i32::try_from(std::process::id()).unwrap_or(0);
    while pid > 1 && !chain.contains(&pid) {
        chain.push(pid);
        pid = parent_of(pid).unwrap_or(0);
    }
    chain
}
