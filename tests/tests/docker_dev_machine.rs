//! A docker box behaves like a developer's machine (issue 21): the README quickstart's
//! commit in the box has the user's git identity (`user.name`/`user.email`, the repo's
//! config first, then the global one), and nothing else of the host's git config
//! (credential helpers, tokens in headers or URLs) arrives. A service that dies before it
//! is ready fails `create` at once with its last log lines; an agent's state does not
//! outlive a stop; `start`/`stop` are idempotent.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test`).

#[allow(dead_code)]
mod docker_common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use agentbox_tests::bin_path;
use agentbox_tests::dev_machine::{
    assert_a_dead_service_fails_create_at_once, assert_agent_states_do_not_outlive_a_stop,
    assert_identity_and_no_credentials, global_gitconfig, DEAD_SERVICE_YAML,
};
use agentbox_tests::run::{limit_for, TimedOutput};
use docker_common::{commit, git, Host};

/// A token the host's global git config holds; it must never be seen in the box.
const TOKEN: &str = "ghp_h4SecretTokenNeverInTheBox";

/// `agentbox ARGS` with `home` as HOME (its `.gitconfig` is the global git config).
fn run_as(host: &Host, home: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin_path("agentbox"))
        .args(args)
        .current_dir(cwd)
        .env("AGENTBOX_HOME", host.home())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .output_within(limit_for(args))
        .expect("run agentbox")
}

fn ok_as(host: &Host, home: &Path, cwd: &Path, args: &[&str]) -> String {
    agentbox_tests::succeeded(args, &run_as(host, home, cwd, args))
}

#[test]
fn the_quickstart_commit_has_the_users_identity_and_no_credentials_arrive() {
    let host = Host::new();
    let repo = host.project("ident");
    host.prepare(&repo);
    let home = host.dir.path().join("user-home");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::write(home.join(".gitconfig"), global_gitconfig(TOKEN)).expect("write");
    // The repo's own config wins over the global one.
    git(&repo, &["config", "user.email", "repo@example.com"]);
    let name = format!("ident{}", std::process::id());
    let run = |args: &[&str]| run_as(&host, &home, &repo, args);
    ok_as(
        &host,
        &home,
        &repo,
        &["create", "--provider", "docker", "--name", &name],
    );
    assert_identity_and_no_credentials(&run, &name, "repo@example.com", TOKEN);
    ok_as(&host, &home, &repo, &["destroy", "-y", "--force", &name]);
}

/// `create` of a docker box whose service dies before it is ready fails at once with the
/// unit's last log lines (not after the probe's 60 s), and leaves no box; an agent's state
/// is cleared at a stop and not stale after a start; `start` of a running box and `stop`
/// of a stopped one succeed and say so.
#[test]
fn a_dead_service_fails_create_at_once_agent_states_do_not_outlive_a_stop_and_start_is_idempotent()
{
    let host = Host::new();
    let dead = host.project("dead");
    std::fs::write(dead.join("agentbox.yaml"), DEAD_SERVICE_YAML).expect("write");
    git(&dead, &["add", "agentbox.yaml"]);
    commit(&dead, "a service that dies");
    host.prepare(&dead);
    let name = format!("dead{}", std::process::id());
    assert_a_dead_service_fails_create_at_once(|| {
        host.run(&dead, &["create", "--provider", "docker", "--name", &name])
    });
    assert!(host.containers_of(&name).is_empty(), "a container stayed");

    let repo = host.project("idem");
    let name = format!("idem{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "docker", "--name", &name]);
    assert_agent_states_do_not_outlive_a_stop(&|args| host.run(&repo, args), &name);
    host.ok(&repo, &["destroy", "-y", "--force", &name]);
}
