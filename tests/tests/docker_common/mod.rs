//! What the Docker suites `docker_names`, `docker_cp_table` and `docker_wedged` share:
//! an `AGENTBOX_HOME` of their own whose containers and volumes go when it is dropped, a
//! git project, and the box image.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use agentbox_tests::bin_path;
use agentbox_tests::run::{limit_for, TimedOutput};

/// One `AGENTBOX_HOME` (and a directory for its projects); its containers, volumes and
/// bridge are removed on drop, whatever failed.
pub struct Host {
    /// Holds `home/` and the projects.
    pub dir: tempfile::TempDir,
}

impl Host {
    /// A fresh home.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Its `AGENTBOX_HOME`.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `agentbox ARGS` in `cwd` under this home.
    pub fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new(bin_path("agentbox"))
            .args(args)
            .current_dir(cwd)
            .env("AGENTBOX_HOME", self.home())
            .stdin(Stdio::null())
            .output_within(limit_for(args))
            .expect("run agentbox")
    }

    /// `agentbox ARGS`, which must succeed; its stdout.
    pub fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        agentbox_tests::succeeded(args, &self.run(cwd, args))
    }

    /// The label filter of this home's containers and volumes.
    pub fn label(&self) -> String {
        format!(
            "label=agentbox.home={}",
            agentbox::provider::docker::home_label(&self.home())
        )
    }

    /// The names of this home's containers of box `name` (by their labels).
    pub fn containers_of(&self, name: &str) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--format",
                "{{.Names}}",
                "--filter",
                &self.label(),
            ])
            .args(["--filter", &format!("label=agentbox.box={name}")])
            .timed_output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// The one container of box `name`.
    pub fn container_of(&self, name: &str) -> String {
        let found = self.containers_of(name);
        assert_eq!(found.len(), 1, "containers of box {name}: {found:?}");
        found[0].clone()
    }

    /// A git repository `dir/<name>` with one commit.
    pub fn project(&self, name: &str) -> PathBuf {
        let repo = self.dir.path().join(name);
        std::fs::create_dir_all(&repo).expect("mkdir");
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("a.txt"), "hello\n").expect("write");
        git(&repo, &["add", "."]);
        commit(&repo, "first");
        repo
    }

    /// `agentbox prepare` of the docker image without agents, pinned for `repo`; its tag.
    pub fn prepare(&self, repo: &Path) -> String {
        let base = agentbox_tests::docker_base_image();
        let tag = self.ok(
            repo,
            &[
                "prepare",
                "--provider",
                "docker",
                "--base-image",
                &base,
                "--agents",
                "none",
            ],
        );
        tag.trim().to_string()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = Command::new(bin_path("agentbox"))
            .args(["bridge", "stop"])
            .env("AGENTBOX_HOME", self.home())
            .timed_output();
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &self.label()])
            .timed_output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker")
                    .args(["rm", "-f", "-v", id])
                    .timed_output();
            }
        }
        if let Ok(out) = Command::new("docker")
            .args(["volume", "ls", "-q", "--filter", &self.label()])
            .timed_output()
        {
            for name in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker")
                    .args(["volume", "rm", name])
                    .timed_output();
            }
        }
    }
}

/// `git commit -qm MESSAGE` in `repo` as `T <t@example.com>` (the test repositories have
/// no identity of their own), which must succeed.
pub fn commit(repo: &Path, message: &str) {
    git(
        repo,
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=T",
            "commit",
            "-qm",
            message,
        ],
    );
}

/// `git -C dir ARGS`, which must succeed; its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .timed_output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker ARGS`.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .timed_output()
        .expect("docker")
}
