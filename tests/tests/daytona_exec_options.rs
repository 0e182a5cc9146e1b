//! `agentbox exec` on a Daytona box (the fake, its sandboxes real containers) as `docker
//! exec` has it, through the relay's `/v1/exec`: the command after the box or `--`, `-e`,
//! `-w`, `-u` (sudo in the box), `-d`, `-it` on a real terminal (a PTY in the box,
//! resized), exit codes 125/126/127, and a stopped box named with the way out — the same
//! checks as the docker provider's (`exec_common`).
//!
//! Needs a running Docker engine and the offline base image (`scripts/test` sets both up).

#[allow(dead_code)] // check_tty_size_at_start is for the docker CLI's race
mod exec_common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use agentbox_tests::fake_tls::DaytonaFake;
use agentbox_tests::run::{limit_for, TimedOutput};
use agentbox_tests::{bin_path, succeeded};

const KEY: &str = "dtn_execopts0123456789abc";

struct Host {
    dir: tempfile::TempDir,
    fake: DaytonaFake,
    api: String,
}

impl Host {
    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin_path("agentbox"));
        c.args(args).current_dir(cwd);
        for (k, v) in self.env() {
            c.env(k, v);
        }
        c.env_remove("DAYTONA_API_KEY")
            .env_remove("DAYTONA_API_URL")
            .env_remove("DAYTONA_ORGANIZATION_ID");
        c
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AGENTBOX_HOME",
                self.dir.path().join("home").display().to_string(),
            ),
            ("HOME", self.dir.path().join("user").display().to_string()),
        ]
    }

    fn run_env(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(cwd, args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output_within(limit_for(args))
            .expect("run agentbox")
    }

    fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        succeeded(args, &self.run_env(cwd, args, &[]))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self
            .command(self.dir.path(), &["bridge", "stop"])
            .timed_output();
        // The fake's sandboxes: containers named after its pid.
        let pid = self.fake.child.id();
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", "label=daytona-fake=1"])
            .args(["--filter", &format!("name=daytona-fake-sbx-{pid:x}-")])
            .timed_output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).timed_output();
            }
        }
        let _ = self.fake.child.kill();
        let _ = self.fake.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .timed_output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}");
}

fn repo(host: &Host) -> PathBuf {
    let repo = host.dir.path().join("proj");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.email", "t@example.com"]);
    git(&repo, &["config", "user.name", "T"]);
    std::fs::write(repo.join("README"), "seeded\n").expect("write");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "first"]);
    repo
}

#[test]
fn exec_on_daytona_is_docker_exec() {
    let base = agentbox_tests::docker_base_image();
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let fake = DaytonaFake::start(
        &["--port", "0", "--api-key", KEY],
        &[
            ("DAYTONA_FAKE_TRANSITION_MS", "100"),
            ("DAYTONA_FAKE_DATA", &data_dir),
        ],
    );
    let api = fake.api();
    let host = Host {
        dir: tempfile::tempdir().expect("tempdir"),
        fake,
        api,
    };
    let repo = repo(&host);
    let mut login = host
        .command(&repo, &["daytona", "login", "--api-url", &host.api])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("login");
    login
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{KEY}\n").as_bytes())
        .expect("key");
    let out =
        agentbox_tests::run::finish_within(login, "login", agentbox_tests::run::COMMAND_LIMIT)
            .expect("login");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    host.ok(
        &repo,
        &[
            "prepare",
            "--provider",
            "daytona",
            "--base-image",
            &base,
            "--agents",
            "none",
        ],
    );
    let name = format!("dx{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "daytona", "--name", &name]);

    let run = |args: &[&str], env: &[(&str, &str)]| host.run_env(&repo, args, env);
    exec_common::check_options_and_codes(&name, &run);
    exec_common::check_interactive_tty(&bin_path("agentbox"), &repo, &host.env(), &name);
    host.ok(&repo, &["stop", &name]);
    exec_common::check_stopped(&name, &run);
    host.ok(&repo, &["destroy", &name, "-y", "--force"]);
}
