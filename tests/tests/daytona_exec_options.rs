//! `agentbox exec` on a Daytona box (the fake, its sandboxes real containers) as `docker
//! exec` has it, through the relay's `/v1/exec`: the command after the box or `--`, `-e`,
//! `-w`, `-u` (sudo in the box), `-d`, `-it` on a real terminal (a PTY in the box,
//! resized), exit codes 125/126/127, and a stopped box named with the way out — the same
//! checks as the docker provider's (`exec_common`).
//!
//! Needs a running Docker engine and the offline base image (`scripts/test` sets both up).

#[allow(dead_code)] // check_tty_size_at_start is for the docker CLI's race
mod exec_common;

use std::path::Path;
use std::process::{Output, Stdio};

use agentbox_tests::bin_path;
use agentbox_tests::daytona_host::{git_repo, DaytonaHost};
use agentbox_tests::run::{limit_for, TimedOutput};

const KEY: &str = "dtn_execopts0123456789abc";

/// `agentbox ARGS` in `cwd` with `env` added.
fn run_env(host: &DaytonaHost, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    host.command(cwd, args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output_within(limit_for(args))
        .expect("run agentbox")
}

#[test]
fn exec_on_daytona_is_docker_exec() {
    let host = DaytonaHost::start(KEY, &[("DAYTONA_FAKE_TRANSITION_MS", "100")]);
    let repo = git_repo(&host.dir.path().join("proj"), "seeded\n");
    host.login(&repo);
    host.prepare(&repo);
    let name = format!("dx{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "daytona", "--name", &name]);

    let run = |args: &[&str], env: &[(&str, &str)]| run_env(&host, &repo, args, env);
    exec_common::check_options_and_codes(&name, &run);
    let env = [
        ("AGENTBOX_HOME", host.home().display().to_string()),
        ("HOME", host.user().display().to_string()),
    ];
    exec_common::check_interactive_tty(&bin_path("agentbox"), &repo, &env, &name);
    host.ok(&repo, &["stop", &name]);
    exec_common::check_stopped(&name, &run);
    host.ok(&repo, &["destroy", &name, "-y", "--force"]);
}
