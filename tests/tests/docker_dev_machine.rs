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
use agentbox_tests::run::{limit_for, TimedOutput};
use docker_common::{git, Host};

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
    std::fs::write(
        home.join(".gitconfig"),
        format!(
            "[user]\n\tname = Global Person\n\temail = global@example.com\n\
             [credential]\n\thelper = store\n\
             [http]\n\textraHeader = Authorization: token {TOKEN}\n\
             [url \"https://x:{TOKEN}@github.com/\"]\n\tinsteadOf = https://github.com/\n"
        ),
    )
    .expect("write");
    // The repo's own config wins over the global one.
    git(&repo, &["config", "user.email", "repo@example.com"]);
    let name = format!("ident{}", std::process::id());
    ok_as(
        &host,
        &home,
        &repo,
        &["create", "--provider", "docker", "--name", &name],
    );

    // The README's quickstart commit, as written there.
    let commit = run_as(
        &host,
        &home,
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
    assert_eq!(
        ok_as(
            &host,
            &home,
            &repo,
            &[
                "exec",
                &name,
                "--",
                "git",
                "log",
                "-1",
                "--format=%an <%ae>"
            ]
        )
        .trim(),
        "Global Person <repo@example.com>"
    );

    // Every git config the box has, from every file: it lists the identity (so it sees),
    // and nothing else of the host's.
    let all = ok_as(
        &host,
        &home,
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
    let grep = run_as(
        &host,
        &home,
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
        "the token is in the box: {grep:?}"
    );
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
    std::fs::write(
        dead.join("agentbox.yaml"),
        "services:\n  web:\n    command: 'echo starting web >&2; exec no-such-server-xyz'\n    ready_when: {port: 9}\n",
    )
    .expect("write");
    git(&dead, &["add", "agentbox.yaml"]);
    git(
        &dead,
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=T",
            "commit",
            "-qm",
            "a service that dies",
        ],
    );
    host.prepare(&dead);
    let name = format!("dead{}", std::process::id());
    let began = std::time::Instant::now();
    let out = host.run(&dead, &["create", "--provider", "docker", "--name", &name]);
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
    assert!(host.containers_of(&name).is_empty(), "a container stayed");

    let repo = host.project("idem");
    let name = format!("idem{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "docker", "--name", &name]);
    // An agent's state reaches the host, is gone at a stop and not back at a start.
    host.ok(
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
            serde_json::from_str(&host.ok(&repo, &["list", "--json"])).expect("list --json");
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
    host.ok(&repo, &["stop", &name]);
    assert_eq!(summary(), "-", "a state after stop");
    host.ok(&repo, &["start", &name]);
    assert_eq!(summary(), "-", "a stale state after start");
    let again = host.run(&repo, &["start", &name]);
    assert!(again.status.success(), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains(&format!("box {name} is already running")),
        "{again:?}"
    );
    host.ok(&repo, &["stop", &name]);
    host.ok(&repo, &["stop", &name]);
    host.ok(&repo, &["destroy", "-y", "--force", &name]);
}
