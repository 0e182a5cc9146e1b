//! A Daytona box behaves like a developer's machine (issue 21), as a docker box does
//! (`docker_dev_machine`): the README quickstart's commit in the box has the user's git
//! identity (`user.name`/`user.email`, the repo's config first, then the global one), and
//! nothing else of the host's git config (credential helpers, tokens in headers or URLs)
//! arrives; an agent's state does not outlive a stop, and `start`/`stop` are idempotent; a
//! service that dies before it is ready fails `create` at once with its last log lines.
//! Against the fake (its sandboxes real containers).
//!
//! Needs a running Docker engine and the offline base image (`scripts/test` sets both up).

use std::path::Path;
use std::process::{Output, Stdio};

use agentbox_tests::daytona_host::{git, git_repo, DaytonaHost};
use agentbox_tests::dev_machine::{
    assert_a_dead_service_fails_create_at_once, assert_agent_states_do_not_outlive_a_stop,
    assert_identity_and_no_credentials, global_gitconfig, Run, DEAD_SERVICE_YAML,
};
use agentbox_tests::run::{limit_for, TimedOutput};

const KEY: &str = "dtn_devmachine0123456789";

/// A token the host's global git config holds; it must never be seen in the box.
const TOKEN: &str = "ghp_d4ytonaSecretNeverInTheBox";

/// `agentbox ARGS` with the host's user (its `.gitconfig` the global git config) and no
/// system git config.
fn run(host: &DaytonaHost, cwd: &Path, args: &[&str]) -> Output {
    host.command(cwd, args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .output_within(limit_for(args))
        .expect("run agentbox")
}

/// The stdout of `run(ARGS)`, which must succeed.
fn succeeded_in(run: Run<'_>, args: &[&str]) -> String {
    agentbox_tests::succeeded(args, &run(args))
}

#[test]
fn on_daytona_the_quickstart_commit_has_the_users_identity_and_agent_states_do_not_outlive_a_stop()
{
    let host = DaytonaHost::start(KEY, &[("DAYTONA_FAKE_TRANSITION_MS", "100")]);
    let repo = git_repo(&host.dir.path().join("proj"), "seeded\n");
    // The name comes from the global config, the email from the repo's (which wins).
    git(&repo, &["config", "--unset", "user.name"]);
    git(&repo, &["config", "user.email", "repo@example.com"]);
    std::fs::create_dir_all(host.user()).expect("mkdir");
    std::fs::write(host.user().join(".gitconfig"), global_gitconfig(TOKEN)).expect("write");
    host.login(&repo);
    host.prepare(&repo);
    let name = format!("daytona-ident-{}", std::process::id());
    let agentbox = |args: &[&str]| run(&host, &repo, args);
    succeeded_in(
        &agentbox,
        &["create", "--provider", "daytona", "--name", &name],
    );
    assert_identity_and_no_credentials(&agentbox, &name, "repo@example.com", TOKEN);
    assert_agent_states_do_not_outlive_a_stop(&agentbox, &name);
    succeeded_in(&agentbox, &["destroy", "-y", "--force", &name]);
}

/// `create` of a Daytona box whose service dies before it is ready fails at once with the
/// unit's last log lines, and leaves no sandbox.
#[test]
fn on_daytona_a_dead_service_fails_create_at_once() {
    let host = DaytonaHost::start(KEY, &[("DAYTONA_FAKE_TRANSITION_MS", "100")]);
    let repo = git_repo(&host.dir.path().join("dead"), "seeded\n");
    std::fs::write(repo.join("agentbox.yaml"), DEAD_SERVICE_YAML).expect("write");
    git(&repo, &["add", "agentbox.yaml"]);
    git(&repo, &["commit", "-qm", "a service that dies"]);
    host.login(&repo);
    host.prepare(&repo);
    let name = format!("daytona-dead-{}", std::process::id());
    assert_a_dead_service_fails_create_at_once(|| {
        run(
            &host,
            &repo,
            &["create", "--provider", "daytona", "--name", &name],
        )
    });
    assert!(host.sandboxes().is_empty(), "{:?}", host.sandboxes());
}
