//! Local boxes behave like a developer's machine (issue 21): the user's git identity is in
//! the box, two boxes on one port are an error at create naming the other box, `url`
//! never shows another box's service, a service that dies makes `create` fail at once
//! with its log, agent states do not outlive a stop, and `start` of a running box is fine.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn the_repos_git_identity_is_the_boxs_and_nothing_else_of_its_config() {
    let host = Host::new();
    let repo = host.repo("ident", "");
    git_in(&repo, &["config", "user.name", "Repo Person"]);
    git_in(&repo, &["config", "user.email", "repo.person@example.com"]);
    git_in(
        &repo,
        &["config", "credential.helper", "store --file /tmp/leak"],
    );
    host.ok(&repo, &["create", "--name", "id1"]);
    let local = |key: &str| {
        host.run(
            &repo,
            &[
                "exec", "id1", "--", "git", "config", "--local", "--get", key,
            ],
        )
    };
    assert_eq!(
        String::from_utf8_lossy(&local("user.name").stdout).trim(),
        "Repo Person"
    );
    assert_eq!(
        String::from_utf8_lossy(&local("user.email").stdout).trim(),
        "repo.person@example.com"
    );
    // The negative check sees: the key exists on the host side.
    assert!(!local("credential.helper").status.success());
    host.ok(
        &repo,
        &[
            "exec",
            "id1",
            "--",
            "sh",
            "-c",
            "echo x >> NOTES.md && git add NOTES.md && git commit -qm 'from the box'",
        ],
    );
    assert_eq!(
        host.ok(
            &repo,
            &[
                "exec",
                "id1",
                "--",
                "git",
                "log",
                "-1",
                "--format=%an <%ae>"
            ]
        )
        .trim(),
        "Repo Person <repo.person@example.com>"
    );
}

#[test]
fn two_local_boxes_on_one_port_an_error_naming_the_other_and_url_never_shows_it() {
    let host = Host::new();
    let port = free_port();
    let one = host.repo("one", &web_service(port));
    let two = host.repo("two", &web_service(port));
    host.ok(&one, &["create", "--name", "p1"]);
    let t0 = Instant::now();
    let out = host.run(&two, &["create", "--name", "p2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} is in use by box `p1`"))
            && stderr.contains("`agentbox stop p1`")
            && stderr.contains("another port in agentbox.yaml"),
        "{stderr}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert_eq!(host.list(&one).len(), 1, "the failed box stayed");

    // p1 stopped, p2 takes the port; p1 started again cannot serve it, and its URL for
    // the port is refused rather than showing p2's content.
    host.ok(&one, &["stop", "p1"]);
    host.ok(&two, &["create", "--name", "p2"]);
    host.ok(&one, &["start", "p1"]);
    let url = host.run(&one, &["url", "p1", "--port", &port.to_string()]);
    let stderr = String::from_utf8_lossy(&url.stderr);
    assert_eq!(url.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "port {port} is served by box `p2`, not by box `p1`"
        )),
        "{stderr}"
    );
    assert_eq!(
        host.ok(&two, &["url", "p2", "--port", &port.to_string()])
            .trim(),
        format!("http://127.0.0.1:{port}")
    );
}

#[test]
fn create_fails_at_once_on_a_service_that_died_with_its_last_log_lines() {
    let host = Host::new();
    let port = free_port();
    let repo = host.repo(
        "dead",
        &format!(
            "services:\n  web:\n    command: 'echo starting web >&2; exec no-such-server-xyz'\n    ready_when: {{port: {port}}}\n"
        ),
    );
    let t0 = Instant::now();
    let out = host.run(&repo, &["create", "--name", "d1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "create waited {:?}",
        t0.elapsed()
    );
    assert!(
        stderr.contains("unit `web` failed before it was ready: exited with code 127")
            && stderr.contains("its last log lines:")
            && stderr.contains("starting web"),
        "{stderr}"
    );
    assert!(host.list(&repo).is_empty());
}

#[test]
fn create_honours_the_probes_timeout_and_shows_what_it_waits_for() {
    let host = Host::new();
    let port = free_port();
    let repo = host.repo(
        "slow",
        &format!(
            "services:\n  web:\n    command: exec sleep 100\n    ready_when: {{port: {port}, timeout_ms: 2000}}\n    restart: never\n"
        ),
    );
    let out = host.run(&repo, &["create", "--name", "s1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "==> waiting for web (waiting for port {port} (timeout 2000ms))"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("readiness probe timed out after 2000ms"),
        "{stderr}"
    );
}

#[test]
fn agent_states_do_not_outlive_a_stop_and_start_is_idempotent() {
    let host = Host::new();
    let repo = host.repo("agents", "");
    host.ok(&repo, &["create", "--name", "a1"]);
    host.ok(
        &repo,
        &[
            "exec",
            "a1",
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
    let summary = |host: &Host| host.list(&repo)[0]["agents_summary"].clone();
    assert!(
        eventually(|| summary(&host) == "claude idle"),
        "the agent's state never reached the host: {}",
        summary(&host)
    );
    host.ok(&repo, &["stop", "a1"]);
    assert_eq!(summary(&host), "-");
    host.ok(&repo, &["start", "a1"]);
    assert_eq!(summary(&host), "-", "a stale state after start");
    // Starting a running box is fine, like stopping a stopped one.
    let out = host.run(&repo, &["start", "a1"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("box a1 is already running"),
        "{out:?}"
    );
}
