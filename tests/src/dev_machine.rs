//! What "a box behaves like a developer's machine" (issue 21) means on every provider, for
//! the suites that check it (`docker_dev_machine`, `daytona_dev_machine`): the user's git
//! identity and none of the host's git credentials in the box, an agent's state that does
//! not outlive a stop with `start`/`stop` idempotent, and a service that dies before it is
//! ready failing `create` at once. Each check takes how its suite runs `agentbox` ([`Run`]).

use std::process::Output;
use std::time::{Duration, Instant};

use crate::succeeded;

/// `agentbox ARGS` as the calling suite runs it (its home, user, directory and limits).
pub type Run<'a> = &'a dyn Fn(&[&str]) -> Output;

/// The identity [`global_gitconfig`] gives and, with the repository's own email (which
/// wins), the author a box's commit must have.
pub const GLOBAL_NAME: &str = "Global Person";

/// A user's global git config (`~/.gitconfig`): the identity [`GLOBAL_NAME`]
/// `<global@example.com>` and three ways of carrying `token` to a git server — a
/// credential helper, an auth header and a URL rewrite — none of which may reach a box.
pub fn global_gitconfig(token: &str) -> String {
    format!(
        "[user]\n\tname = {GLOBAL_NAME}\n\temail = global@example.com\n\
         [credential]\n\thelper = store\n\
         [http]\n\textraHeader = Authorization: token {token}\n\
         [url \"https://x:{token}@github.com/\"]\n\tinsteadOf = https://github.com/\n"
    )
}

/// In box `name`, made from a repository whose own `user.email` is `repo_email` by a user
/// with [`global_gitconfig`]`(token)`: the README quickstart's commit has the author
/// `Global Person <repo_email>`; the box's git config, from every file, has the identity
/// and nothing else of the host's; no file under `/home` or `/workspace/.git` holds `token`.
///
/// # Panics
/// When any of that does not hold.
pub fn assert_identity_and_no_credentials(run: Run<'_>, name: &str, repo_email: &str, token: &str) {
    // The README's quickstart commit, as written there.
    let commit = run(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "echo \"from the box\" >> NOTES.md && git add NOTES.md &&\n  git commit -qm \"from the box\"",
    ]);
    let stderr = String::from_utf8_lossy(&commit.stderr);
    assert!(
        commit.status.success() && !stderr.contains("Author identity unknown"),
        "{commit:?}"
    );
    let author = ["exec", name, "--", "git", "log", "-1", "--format=%an <%ae>"];
    assert_eq!(
        succeeded(&author, &run(&author)).trim(),
        format!("{GLOBAL_NAME} <{repo_email}>")
    );

    let list = [
        "exec",
        name,
        "--",
        "git",
        "config",
        "--list",
        "--show-origin",
    ];
    let all = succeeded(&list, &run(&list));
    assert!(all.contains(&format!("user.name={GLOBAL_NAME}")), "{all}");
    for leaked in [token, "helper=store", "extraheader", "insteadof"] {
        assert!(
            !all.to_lowercase().contains(&leaked.to_lowercase()),
            "`{leaked}` reached the box:\n{all}"
        );
    }
    let grep = run(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        &format!("grep -rs {token} /home /workspace/.git"),
    ]);
    assert_eq!(
        grep.status.code(),
        Some(1),
        "the token is in the box: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
}

/// In the only box of the project, box `name`: an agent's state (a Claude session) reaches
/// the host, is gone after a stop and not back after a start; a start of the running box
/// and a stop of the stopped one succeed, the start saying the box already runs. Leaves
/// the box running.
///
/// # Panics
/// When any of that does not hold.
pub fn assert_agent_states_do_not_outlive_a_stop(run: Run<'_>, name: &str) {
    let ok = |args: &[&str]| succeeded(args, &run(args));
    ok(&[
        "exec",
        name,
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
    ]);
    let summary = || {
        let listed: serde_json::Value =
            serde_json::from_str(&ok(&["list", "--json"])).expect("list --json");
        listed[0]["agents_summary"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while summary() != "claude idle" {
        assert!(
            Instant::now() < deadline,
            "the agent's state never reached the host: {}",
            summary()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let again = run(&["start", name]);
    assert!(
        again.status.success()
            && String::from_utf8_lossy(&again.stderr)
                .contains(&format!("box {name} is already running")),
        "{again:?}"
    );
    ok(&["stop", name]);
    assert_eq!(summary(), "-", "a state after stop");
    ok(&["stop", name]);
    ok(&["start", name]);
    assert_eq!(summary(), "-", "a stale state after start");
}

/// An `agentbox.yaml` whose service `web` says `starting web` on stderr and dies (exit
/// 127) before its port probe can pass.
pub const DEAD_SERVICE_YAML: &str = "services:\n  web:\n    command: 'echo starting web >&2; exec no-such-server-xyz'\n    ready_when: {port: 9}\n";

/// `create` (run by `create`) of a box of [`DEAD_SERVICE_YAML`] fails with exit 1 within
/// 30 s — not after the probe's 60 s — naming the unit, its exit and its last log lines.
///
/// # Panics
/// When it does not.
pub fn assert_a_dead_service_fails_create_at_once(create: impl FnOnce() -> Output) {
    let began = Instant::now();
    let out = create();
    let took = began.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(30), "create waited {took:?}");
    assert!(
        stderr.contains("unit `web` failed before it was ready: exited with code 127")
            && stderr.contains("its last log lines:")
            && stderr.contains("starting web"),
        "{stderr}"
    );
}
