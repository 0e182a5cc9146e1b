//! README.md's quickstart, run as it stands: the first ```sh block under "## Quickstart"
//! is taken out of README.md and run by `bash -e` in a fresh git repository with an
//! `origin` remote, with an `AGENTBOX_HOME` and a `HOME` of its own and the workspace's
//! binaries first on PATH (what the README's install step does) — once on the local
//! provider, which is what the README promises with nothing prepared, and once with the
//! provider switched to docker in the global config. A README edit that breaks a command
//! of the quickstart fails here.

#[allow(dead_code)]
mod docker_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use agentbox_tests::bin_path;
use agentbox_tests::run::TimedOutput;
use docker_common::{git, Host};

/// The quickstart runs a create, an exec with a push, an agent box and two destroys; a
/// docker box takes longer than a local one on a loaded machine.
const QUICKSTART_LIMIT: Duration = Duration::from_secs(600);

/// The quickstart's shell block, as README.md has it.
fn quickstart_block() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Quickstart"))
        .expect("README.md has a `## Quickstart` section");
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(block, _)| format!("{block}\n"))
        .expect("the quickstart section has a ```sh block");
    // What this test is for: the block must still be the quickstart.
    assert!(
        block.contains("agentbox create") && block.contains("git push"),
        "the quickstart block no longer creates a box and pushes from it:\n{block}"
    );
    block
}

/// A user's machine in a temporary directory: `user/` (HOME, with a git identity, as a
/// developer has), `home/` (AGENTBOX_HOME, through [`Host`], which removes its containers
/// on drop), `remote.git` and the repository `proj` whose `origin` it is, and `bin/` with
/// a stand-in `claude` (the local provider runs this machine's programs).
struct Machine {
    host: Host,
    repo: PathBuf,
}

impl Machine {
    fn new() -> Self {
        let host = Host::new();
        let dir = host.dir.path();
        let user = dir.join("user");
        std::fs::create_dir_all(&user).expect("mkdir");
        std::fs::write(
            user.join(".gitconfig"),
            "[user]\n\tname = Quick Start\n\temail = quick@example.com\n",
        )
        .expect("write .gitconfig");
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let claude = bin.join("claude");
        std::fs::write(&claude, "#!/bin/sh\necho 'claude (stand-in)'\nread -r _\n")
            .expect("write claude");
        std::fs::set_permissions(
            &claude,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )
        .expect("chmod");
        git(dir, &["init", "-q", "--bare", "remote.git"]);
        let repo = host.project("proj");
        let remote = dir.join("remote.git");
        git(
            &repo,
            &["remote", "add", "origin", remote.to_str().expect("utf-8")],
        );
        Self { host, repo }
    }

    /// A command with this machine's HOME, AGENTBOX_HOME and PATH (the workspace's
    /// binaries, then `bin/`, then the test's PATH), in the repository.
    fn command(&self, program: &str) -> Command {
        let dir = self.host.dir.path();
        let binaries = bin_path("agentbox")
            .parent()
            .expect("target/<profile>")
            .to_path_buf();
        let path = std::env::join_paths([binaries, dir.join("bin")].into_iter().chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .expect("PATH");
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.repo)
            .env("HOME", dir.join("user"))
            .env("AGENTBOX_HOME", self.host.home())
            .env("PATH", path)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        cmd
    }

    /// The README's quickstart block, run by `bash -e` (each command must succeed).
    fn run_quickstart(&self) -> Output {
        self.command("bash")
            .args(["-e", "-c", &quickstart_block()])
            .output_within(QUICKSTART_LIMIT)
            .expect("run the quickstart")
    }

    /// What the quickstart promises, seen from outside it: the box's branch on the
    /// remote, with the box's commit, and no box left.
    fn check_outcome(&self, out: &Output) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the README quickstart failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let remote = self.host.dir.path().join("remote.git");
        let log = git(&remote, &["log", "-1", "--format=%s|%an", "agentbox/demo"]);
        assert_eq!(log.trim(), "from the box|Quick Start", "{stdout}");
        let notes = git(&remote, &["show", "agentbox/demo:NOTES.md"]);
        assert_eq!(notes, "from the box\n");
        assert!(
            stdout.contains("refs/heads/agentbox/demo"),
            "`git ls-remote` in the quickstart did not show the box's branch:\n{stdout}"
        );
        let list = self
            .command("agentbox")
            .args(["list", "--json"])
            .timed_output()
            .expect("agentbox list");
        let boxes: serde_json::Value =
            serde_json::from_slice(&list.stdout).expect("list --json is JSON");
        assert_eq!(
            boxes.as_array().map(Vec::len),
            Some(0),
            "the quickstart's boxes are still there: {boxes}"
        );
    }
}

impl Drop for Machine {
    /// Boxes a failed quickstart left behind (local ones are processes of this machine;
    /// [`Host`] removes the containers).
    fn drop(&mut self) {
        for name in ["demo", "ag"] {
            let _ = self
                .command("agentbox")
                .args(["destroy", "-y", name])
                .timed_output();
        }
    }
}

#[test]
fn the_readme_quickstart_runs_on_the_local_provider() {
    let machine = Machine::new();
    let out = machine.run_quickstart();
    machine.check_outcome(&out);
}

#[test]
fn the_readme_quickstart_runs_on_the_docker_provider() {
    let base = agentbox_tests::docker_base_image();
    let machine = Machine::new();
    // The docker provider's one step before a first box (README's provider table), with
    // the agent the quickstart starts; then docker for every box of this machine.
    let prepared = machine
        .command("agentbox")
        .args([
            "prepare",
            "--provider",
            "docker",
            "--base-image",
            &base,
            "--agents",
            "claude",
        ])
        .output_within(agentbox_tests::run::BUILD_LIMIT)
        .expect("agentbox prepare");
    agentbox_tests::succeeded(&["prepare"], &prepared);
    let set = machine
        .command("agentbox")
        .args(["config", "set", "--global", "box.provider", "docker"])
        .timed_output()
        .expect("agentbox config set");
    agentbox_tests::succeeded(&["config", "set"], &set);

    let out = machine.run_quickstart();
    machine.check_outcome(&out);
    assert!(
        machine.host.containers_of("demo").is_empty()
            && machine.host.containers_of("ag").is_empty(),
        "the quickstart's containers are still there"
    );
}
