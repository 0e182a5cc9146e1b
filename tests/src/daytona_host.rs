//! The host side of the Daytona end-to-end tests: a `daytona-fake` over HTTPS, and an
//! `agentbox` home and user that run the CLI against it ([`DaytonaHost`]), with what the
//! tests share around it — a git repository to make boxes of ([`git_repo`]), the login
//! with the key on stdin, the snapshot's `prepare`, and the clean-up of what the fake made
//! in Docker (its sandboxes' containers and its snapshot and checkpoint images,
//! [`remove_fake_docker`]) when the host is dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::fake_tls::DaytonaFake;
use crate::run::{finish_within, limit_for, TimedOutput, COMMAND_LIMIT};
use crate::{bin_path, succeeded};

/// A fake Daytona, and a temporary directory holding the `AGENTBOX_HOME` (`home/`) and the
/// user's `HOME` (`user/`) the CLI runs with. Dropping it stops the host's bridge, the fake,
/// and removes what the fake made in Docker.
pub struct DaytonaHost {
    /// The temporary directory.
    pub dir: tempfile::TempDir,
    /// The fake.
    pub fake: DaytonaFake,
    /// Its API URL (`https://127.0.0.1:PORT/api`).
    pub api: String,
    /// Its API key.
    pub key: String,
}

impl DaytonaHost {
    /// Starts a fake that takes API key `key`, with `env` (its `DAYTONA_FAKE_*` knobs).
    ///
    /// # Panics
    /// When the fake does not start.
    pub fn start(key: &str, env: &[(&str, &str)]) -> Self {
        let fake = DaytonaFake::start(&["--port", "0", "--api-key", key], env);
        Self {
            api: fake.api(),
            fake,
            dir: tempfile::tempdir().expect("tempdir"),
            key: key.to_string(),
        }
    }

    /// The `AGENTBOX_HOME`.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The user's `HOME` (where agent credentials are looked for).
    pub fn user(&self) -> PathBuf {
        self.dir.path().join("user")
    }

    /// `agentbox ARGS` in `cwd`, with this host's home and none of the caller's Daytona
    /// settings.
    pub fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin_path("agentbox"));
        c.args(args)
            .current_dir(cwd)
            .env("AGENTBOX_HOME", self.home())
            .env("HOME", self.user())
            .env_remove("DAYTONA_API_KEY")
            .env_remove("DAYTONA_API_URL")
            .env_remove("DAYTONA_ORGANIZATION_ID")
            .env_remove("DAYTONA_INSECURE");
        c
    }

    /// Runs `agentbox ARGS` without stdin, within its time limit.
    ///
    /// # Panics
    /// When it cannot be run or outlives its limit.
    pub fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        self.command(cwd, args)
            .stdin(Stdio::null())
            .output_within(limit_for(args))
            .expect("run agentbox")
    }

    /// The stdout of `agentbox ARGS`, which must succeed.
    ///
    /// # Panics
    /// When it fails.
    pub fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        succeeded(args, &self.run(cwd, args))
    }

    /// `agentbox daytona login --api-url API` with the key on stdin, as a user pastes it.
    ///
    /// # Panics
    /// When the login fails.
    pub fn login(&self, cwd: &Path) {
        let mut login = self
            .command(cwd, &["daytona", "login", "--api-url", &self.api])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("login");
        login
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{}\n", self.key).as_bytes())
            .expect("key");
        let out = finish_within(login, "login", COMMAND_LIMIT).expect("login");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `agentbox prepare --provider daytona` in `cwd`, on the Docker tests' base image
    /// ([`crate::docker_base_image`]) with no agents: the fake builds the snapshot. Its
    /// stdout (the snapshot's name).
    ///
    /// # Panics
    /// When no Docker engine answers or the prepare fails.
    pub fn prepare(&self, cwd: &Path) -> String {
        let base = crate::docker_base_image();
        self.ok(
            cwd,
            &[
                "prepare",
                "--provider",
                "daytona",
                "--base-image",
                &base,
                "--agents",
                "none",
            ],
        )
    }

    /// `POST /_fake/faults BODY` (a JSON object of the fake's knobs).
    ///
    /// # Panics
    /// When the fake refuses it.
    pub fn faults(&self, body: &str) {
        let ok = Command::new("curl")
            .args(["-fsS", "-X", "POST", "-H", "content-type: application/json"])
            .args(["-d", body])
            .arg(format!("{}/_fake/faults", self.fake.root))
            .timed_output()
            .expect("curl")
            .status
            .success();
        assert!(ok, "faults {body}");
    }

    /// The fake's sandboxes, as its API lists them.
    pub fn sandboxes(&self) -> Vec<serde_json::Value> {
        let out = Command::new("curl")
            .args(["-fsS", "-H", &format!("Authorization: Bearer {}", self.key)])
            .arg(format!("{}/sandbox", self.api))
            .timed_output()
            .expect("curl");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["items"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for DaytonaHost {
    fn drop(&mut self) {
        let _ = self
            .command(self.dir.path(), &["bridge", "stop"])
            .timed_output();
        let pid = self.fake.child.id();
        let _ = self.fake.child.kill();
        let _ = self.fake.child.wait();
        remove_fake_docker(pid);
    }
}

/// Removes what the fake of process `pid` made in Docker: its sandboxes' containers
/// (`daytona-fake-sbx-<pid>-…`), the images it built for snapshots
/// (`daytona-fake-build:snap<pid><n>`) and committed for checkpoints
/// (`daytona-fake-ckpt:c-<pid>-…`). Another fake's are left alone.
pub fn remove_fake_docker(pid: u32) {
    let listed = |args: &[&str]| -> Vec<String> {
        Command::new("docker")
            .args(args)
            .timed_output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = listed(&[
        "ps",
        "-aq",
        "--filter",
        "label=daytona-fake=1",
        "--filter",
        &format!("name=daytona-fake-sbx-{pid:x}-"),
    ]);
    if !containers.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&containers)
            .timed_output();
    }
    // A snapshot's tag is its id without dashes: `snap`, the pid, 8 hex digits.
    let build = format!("daytona-fake-build:snap{pid:x}");
    let ckpt = format!("daytona-fake-ckpt:c-{pid:x}-");
    let images: Vec<String> = ["daytona-fake-build", "daytona-fake-ckpt"]
        .iter()
        .flat_map(|repo| listed(&["images", "--format", "{{.Repository}}:{{.Tag}}", repo]))
        .filter(|image| {
            image.starts_with(&ckpt)
                || (image.starts_with(&build) && image.len() == build.len() + 8)
        })
        .collect();
    if !images.is_empty() {
        let _ = Command::new("docker")
            .args(["rmi", "-f"])
            .args(&images)
            .timed_output();
    }
}

/// `git -C DIR ARGS`, which must succeed.
///
/// # Panics
/// When it fails.
pub fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .timed_output()
        .expect("git")
        .status
        .success();
    assert!(ok, "git {args:?}");
}

/// A git repository at `dir` (made) on branch `main` with one commit of `README` holding
/// `readme`.
///
/// # Panics
/// When git fails.
pub fn git_repo(dir: &Path, readme: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.email", "t@example.com"]);
    git(dir, &["config", "user.name", "T"]);
    std::fs::write(dir.join("README"), readme).expect("write");
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "first"]);
    dir.to_path_buf()
}
