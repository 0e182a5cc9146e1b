//! What the end-to-end tests of the host CLI share: a scratch AGENTBOX_HOME, repos, and
//! helpers to run `agentbox` and wait for things.
//!
//! Every command a test runs has a time limit ([`TimedOutput`], [`finish_within`]), so a
//! hang becomes a failure that names the command instead of a suite that never ends.
#![allow(dead_code)] // each test binary uses a part

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The end-to-end suites' time limits (tests/src/run.rs, std-only), compiled in by path:
/// a dev-dependency on agentbox-tests would be a cycle, as that crate depends on agentbox.
#[path = "../../../tests/src/run.rs"]
mod run;
pub use run::{finish_within, TimedOutput, COMMAND_LIMIT};

pub const AGENTBOX: &str = env!("CARGO_BIN_EXE_agentbox");

pub struct Host {
    pub dir: tempfile::TempDir,
}

impl Host {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bins = Path::new(AGENTBOX).parent().expect("bin dir");
        for b in ["agentbox-ctl", "agentbox-relay"] {
            assert!(
                bins.join(b).exists(),
                "{b} is not built: run `cargo test --workspace`"
            );
        }
        Self { dir }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A directory on the PATH of every `agentbox` this host runs (and so of its bridge
    /// daemon and its local boxes): stand-ins for host programs go there.
    pub fn bin(&self) -> PathBuf {
        self.dir.path().join("hostbin")
    }

    /// PATH with [`Host::bin`] first.
    pub fn path(&self) -> String {
        format!(
            "{}:{}",
            self.bin().display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// Writes an executable script into [`Host::bin`].
    pub fn program(&self, name: &str, script: &str) -> PathBuf {
        std::fs::create_dir_all(self.bin()).expect("mkdir");
        let path = self.bin().join(name);
        std::fs::write(&path, script).expect("write");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        path
    }

    /// A repo with two commits, an uncommitted edit, untracked and ignored files.
    pub fn repo(&self, name: &str, agentbox_yaml: &str) -> PathBuf {
        let repo = self.dir.path().join(name);
        std::fs::create_dir_all(repo.join("src")).expect("mkdir");
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(args)
                .timed_output()
                .expect("git")
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["config", "user.email", "t@example.com"]);
        git(&["config", "user.name", "T"]);
        std::fs::write(repo.join("src/lib.txt"), "one\n").expect("write");
        std::fs::write(repo.join(".gitignore"), "*.log\n").expect("write");
        git(&["add", "."]);
        git(&["commit", "-qm", "first"]);
        std::fs::write(repo.join("agentbox.yaml"), agentbox_yaml).expect("write");
        git(&["add", "."]);
        git(&["commit", "-qm", "second"]);
        std::fs::write(repo.join("src/lib.txt"), "one\nedited\n").expect("write");
        std::fs::create_dir_all(repo.join("notes/deep")).expect("mkdir");
        std::fs::write(repo.join("notes/deep/todo.md"), "untracked\n").expect("write");
        std::fs::write(repo.join("debug.log"), "ignored\n").expect("write");
        repo
    }

    /// `agentbox ARGS` in `cwd`, to its end within [`COMMAND_LIMIT`].
    pub fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        self.try_run(cwd, args).expect("run agentbox")
    }

    /// [`Host::run`], its failure to run or to end in time returned, not a panic.
    fn try_run(&self, cwd: &Path, args: &[&str]) -> std::io::Result<Output> {
        Command::new(AGENTBOX)
            .args(args)
            .current_dir(cwd)
            .env("AGENTBOX_HOME", self.home())
            .env("AGENTBOX_OPENER", self.dir.path().join("opener"))
            .env("AGENTBOX_GH", self.dir.path().join("gh"))
            .env("PATH", self.path())
            .timed_output()
    }

    pub fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.run(cwd, args);
        assert!(
            out.status.success(),
            "agentbox {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn fails(&self, cwd: &Path, args: &[&str], expected: &str) {
        let out = self.run(cwd, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "agentbox {args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "agentbox {args:?}: expected {expected:?} in {stderr}"
        );
    }

    /// `agentbox list --json`: an array, or the test fails (an empty list must be one the
    /// host gave, not an answer that failed to parse).
    pub fn list(&self, cwd: &Path) -> Vec<serde_json::Value> {
        let text = self.ok(cwd, &["list", "--json"]);
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(boxes)) => boxes,
            other => panic!("agentbox list --json is no JSON array: {other:?} from {text:?}"),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Leave no box processes behind, whatever the test did; a panic here (a command
        // past its limit) while a failed test unwinds would abort the whole suite.
        let listed = self
            .try_run(self.dir.path(), &["list", "--json"])
            .ok()
            .and_then(|out| serde_json::from_slice(&out.stdout).ok());
        if let Some(serde_json::Value::Array(boxes)) = listed {
            for b in boxes {
                let name = b["name"].as_str().unwrap_or_default().to_string();
                let _ = self.try_run(self.dir.path(), &["destroy", "-y", "--force", &name]);
            }
        }
        let _ = self.try_run(self.dir.path(), &["bridge", "stop"]);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn pid_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

pub fn web_service(port: u16) -> String {
    format!("services:\n  web:\n    command: exec python3 -m http.server {port} --bind 127.0.0.1\n    ready_when: {{port: {port}}}\n")
}

pub fn git_in(repo: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .timed_output()
        .expect("git")
        .status
        .success();
    assert!(ok, "git {args:?}");
}

impl Host {
    /// Starts `agentbox ARGS` without waiting for it (wait with [`finish`]), in a process
    /// group of its own, as [`TimedOutput`] runs commands: what it started goes with it
    /// when it is killed at its limit.
    pub fn spawn(&self, cwd: &Path, args: &[&str]) -> std::process::Child {
        Command::new(AGENTBOX)
            .args(args)
            .current_dir(cwd)
            .env("AGENTBOX_HOME", self.home())
            .env("PATH", self.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn agentbox")
    }

    /// Waits until exactly one approval is pending and returns it.
    pub fn pending_approval(&self, cwd: &Path) -> serde_json::Value {
        let mut found = None;
        assert!(
            eventually(|| {
                let v: serde_json::Value =
                    serde_json::from_str(&self.ok(cwd, &["approvals", "--json"])).expect("json");
                found = v.as_array().and_then(|a| a.first().cloned());
                found.is_some()
            }),
            "no approval showed up"
        );
        found.expect("approval")
    }
}

/// Waits for `child` (from [`Host::spawn`]) to end within [`COMMAND_LIMIT`]: whether it
/// succeeded, and its stdout and stderr.
pub fn finish(child: std::process::Child) -> (bool, String) {
    let what = format!("the spawned agentbox (pid {})", child.id());
    let out = finish_within(child, &what, COMMAND_LIMIT).expect("wait for agentbox");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
