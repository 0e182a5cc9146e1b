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

fn ok(host: &DaytonaHost, cwd: &Path, args: &[&str]) -> String {
    agentbox_tests::succeeded(args, &run(host, cwd, args))
}

#[test]
fn on_daytona_the_quickstart_commit_has_the_users_identity_and_agent_states_do_not_outlive_a_stop()
{
    let base = agentbox_tests::docker_base_image();
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let host = DaytonaHost::start(
        KEY,
        &[
            ("DAYTONA_FAKE_TRANSITION_MS", "100"),
            ("DAYTONA_FAKE_DATA", &data_dir),
        ],
    );
    let repo = git_repo(&host.dir.path().join("proj"), "seeded\n");
    // The name comes from the global config, the email from the repo's (which wins).
    git(&repo, &["config", "--unset", "user.name"]);
    git(&repo, &["config", "user.email", "repo@example.com"]);
    std::fs::create_dir_all(host.user()).expect("mkdir");
    std::fs::write(
        host.user().join(".gitconfig"),
        format!(
            "[user]\n\tname = Global Person\n\temail = global@example.com\n\
             [credential]\n\thelper = store\n\
             [http]\n\textraHeader = Authorization: token {TOKEN}\n\
             [url \"https://x:{TOKEN}@github.com/\"]\n\tinsteadOf = https://github.com/\n"
        ),
    )
    .expect("write");
    host.login(&repo);
    ok(
        &host,
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
    let name = format!("daytona-ident-{}", std::process::id());
    ok(
        &host,
        &repo,
        &["create", "--provider", "daytona", "--name", &name],
    );

    // The README's quickstart commit, as written there.
    let commit = run(
        &host,
        &repo,
        &[
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "echo \"from the box\" >> NOTES.md && git add NOTES.md &&\n  git commit -qm \"from the box\"",
        ],
    );
    let stderr = String::from_utf8_lossy(&commit.stderr);
    assert!(
        commit.status.success() && !stderr.contains("Author identity unknown"),
        "{commit:?}"
    );
    let author = ok(
        &host,
        &repo,
        &[
            "exec",
            &name,
            "--",
            "git",
            "log",
            "-1",
            "--format=%an <%ae>",
        ],
    );
    assert_eq!(author.trim(), "Global Person <repo@example.com>");

    // Every git config the box has, from every file: the identity, and nothing else of
    // the host's.
    let all = ok(
        &host,
        &repo,
        &[
            "exec",
            &name,
            "--",
            "git",
            "config",
            "--list",
            "--show-origin",
        ],
    );
    assert!(all.contains("user.name=Global Person"), "{all}");
    for leaked in [TOKEN, "helper=store", "extraheader", "insteadof"] {
        assert!(
            !all.to_lowercase().contains(&leaked.to_lowercase()),
            "`{leaked}` reached the box:\n{all}"
        );
    }
    let grep = run(
        &host,
        &repo,
        &[
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            &format!("grep -rs {TOKEN} /home /workspace/.git"),
        ],
    );
    assert_eq!(
        grep.status.code(),
        Some(1),
        "the token is in the box: {}",
        String::from_utf8_lossy(&grep.stdout)
    );

    // An agent's state reaches the host, is gone at a stop and not back at a start; a
    // start of a running box and a stop of a stopped one succeed and say so.
    ok(
        &host,
        &repo,
        &[
            "exec",
            &name,
            "--",
            "agentbox-ctl",
            "session",
            "start",
            "claude",
            "--agent",
            "claude",
            "--",
            "sleep",
            "1000",
        ],
    );
    let summary = || {
        let listed: serde_json::Value =
            serde_json::from_str(&ok(&host, &repo, &["list", "--json"])).expect("list --json");
        listed[0]["agents_summary"].clone()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while summary() != "claude idle" {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent's state never reached the host: {}",
            summary()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let again = run(&host, &repo, &["start", &name]);
    assert!(
        again.status.success()
            && String::from_utf8_lossy(&again.stderr)
                .contains(&format!("box {name} is already running")),
        "{again:?}"
    );
    ok(&host, &repo, &["stop", &name]);
    assert_eq!(summary(), "-", "a state after stop");
    ok(&host, &repo, &["stop", &name]);
    ok(&host, &repo, &["start", &name]);
    assert_eq!(summary(), "-", "a stale state after start");
    ok(&host, &repo, &["destroy", "-y", "--force", &name]);
}

/// `create` of a Daytona box whose service dies before it is ready fails at once with the
/// unit's last log lines, and leaves no sandbox.
#[test]
fn on_daytona_a_dead_service_fails_create_at_once() {
    let base = agentbox_tests::docker_base_image();
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let host = DaytonaHost::start(
        KEY,
        &[
            ("DAYTONA_FAKE_TRANSITION_MS", "100"),
            ("DAYTONA_FAKE_DATA", &data_dir),
        ],
    );
    let repo = git_repo(&host.dir.path().join("dead"), "seeded\n");
    std::fs::write(
        repo.join("agentbox.yaml"),
        "services:\n  web:\n    command: 'echo starting web >&2; exec no-such-server-xyz'\n    ready_when: {port: 9}\n",
    )
    .expect("write");
    git(&repo, &["add", "agentbox.yaml"]);
    git(&repo, &["commit", "-qm", "a service that dies"]);
    host.login(&repo);
    ok(
        &host,
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
    let name = format!("daytona-dead-{}", std::process::id());
    let began = std::time::Instant::now();
    let out = run(
        &host,
        &repo,
        &["create", "--provider", "daytona", "--name", &name],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        began.elapsed() < std::time::Duration::from_secs(30),
        "create waited {:?}",
        began.elapsed()
    );
    assert!(
        stderr.contains("unit `web` failed before it was ready: exited with code 127")
            && stderr.contains("its last log lines:")
            && stderr.contains("starting web"),
        "{stderr}"
    );
    assert!(host.sandboxes().is_empty(), "{:?}", host.sandboxes());
}
