//! `agentbox exec` on a docker box as `docker exec` has it: the command after the box or
//! `--`, `-e`, `-w`, `-u`, `-d`, exit codes 125/126/127 in agentbox's words (the engine
//! writes its refusals on the command's stdout), and a stopped box named with the way out.
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
    // Not checked here: `exec -it` on a docker box. bash gets a terminal, but `stty size`
    // says 0x0 (the docker CLI's resize does not reach this engine, 20.10); the Daytona
    // suite checks the terminal, its size and a resize through the relay.
    host.ok(&repo, &["stop", &name]);
    exec_common::check_stopped(&name, &run);
}
