//! `agentbox exec` on a docker box as `docker exec` has it: the command after the box or
//! `--`, `-e`, `-w`, `-u`, `-d`, `-it` on a real terminal (of this terminal's size at once,
//! resized), exit codes 125/126/127 in agentbox's words (the engine writes its refusals on
//! the command's stdout), and a stopped box named with the way out.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test`).

#[allow(dead_code)]
mod docker_common;
#[allow(dead_code)]
mod exec_common;

use std::process::{Command, Stdio};

use agentbox_tests::bin_path;
use agentbox_tests::run::{limit_for, TimedOutput};
use docker_common::Host;

#[test]
fn exec_on_a_docker_box_is_docker_exec() {
    let host = Host::new();
    let repo = host.project("proj");
    host.prepare(&repo);
    let name = format!("ex{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "docker", "--name", &name]);
    let run = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(bin_path("agentbox"))
            .args(args)
            .current_dir(&repo)
            .env("AGENTBOX_HOME", host.home())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output_within(limit_for(args))
            .expect("run agentbox")
    };
    exec_common::check_options_and_codes(&name, &run);
    // `-it` on a real terminal: the box's terminal has this one's size from the start
    // (the docker CLI resizes only after the command started), and follows a resize.
    let env = [("AGENTBOX_HOME", host.home().to_string_lossy().into_owned())];
    exec_common::check_tty_size_at_start(&bin_path("agentbox"), &repo, &env, &name);
    exec_common::check_tty_missing_program(&bin_path("agentbox"), &repo, &env, &name);
    exec_common::check_interactive_tty(&bin_path("agentbox"), &repo, &env, &name);
    host.ok(&repo, &["stop", &name]);
    exec_common::check_stopped(&name, &run);
}
