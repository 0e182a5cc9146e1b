//! A box on this machine for tests: a scratch directory laid out as the environment
//! contract says, a real `agentbox-ctl daemon`, and helpers to run the CLI against it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const CTL: &str = env!("CARGO_BIN_EXE_agentbox-ctl");

pub struct TestBox {
    pub dir: tempfile::TempDir,
    pub daemon: Option<Child>,
    extra_env: Vec<(String, String)>,
}

impl TestBox {
    /// A box whose workspace holds `config` as agentbox.yaml. The daemon is not started.
    pub fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("workspace")).expect("workspace");
        std::fs::write(dir.path().join("workspace/agentbox.yaml"), config).expect("config");
        Self {
            dir,
            daemon: None,
            extra_env: Vec::new(),
        }
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.extra_env.push((key.into(), value.into()));
        self
    }

    pub fn workspace(&self) -> PathBuf {
        self.dir.path().join("workspace")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    pub fn write_config(&self, config: &str) {
        std::fs::write(self.workspace().join("agentbox.yaml"), config).expect("config");
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("AGENTBOX_WORKSPACE", self.workspace())
            .env("AGENTBOX_RUN_DIR", self.run_dir())
            .env("AGENTBOX_LOG_DIR", self.log_dir())
            .env("AGENTBOX_STATE_DIR", self.dir.path().join("state"))
            .env_remove("AGENTBOX_CONFIG")
            .env("RUST_LOG", "debug");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
    }

    /// Starts the daemon and waits until it answers.
    pub fn start(&mut self) -> &mut Self {
        let mut cmd = Command::new(CTL);
        cmd.arg("daemon").stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(std::fs::File::create(self.dir.path().join("daemon.log")).expect("daemon log"));
        self.env(&mut cmd);
        self.daemon = Some(cmd.spawn().expect("spawn daemon"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ctl(&["status"]).status.success() {
                return self;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not come up:\n{}", self.daemon_log());
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Runs `agentbox-ctl ARGS` against this box.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(CTL);
        cmd.args(args).stdin(Stdio::null());
        self.env(&mut cmd);
        cmd.output().expect("run agentbox-ctl")
    }

    /// Runs a CLI command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "agentbox-ctl {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndaemon:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status json")
    }

    pub fn unit(&self, name: &str) -> serde_json::Value {
        let status = self.status_json();
        status["units"]
            .as_array()
            .and_then(|a| a.iter().find(|u| u["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no unit {name} in {status}"))
    }

    /// Polls `cond` on the unit's JSON status until it holds (10 s at most).
    pub fn wait_unit(
        &self,
        name: &str,
        what: &str,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let u = self.unit(name);
            if cond(&u) {
                return u;
            }
            assert!(
                Instant::now() < deadline,
                "unit {name} never became {what}: {u}\n{}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn stop_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = self.ctl(&["shutdown"]);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestBox {
    fn drop(&mut self) {
        self.stop_daemon();
        // Agent sessions outlive the daemon on purpose; tests clean theirs up.
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(self.run_dir().join("tmux.sock"))
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether process `pid` exists (zombies count as gone).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits up to `timeout` for `cond`.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

pub fn read_pid(path: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
