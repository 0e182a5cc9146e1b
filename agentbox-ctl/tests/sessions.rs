//! Agent sessions on the box's private tmux server (real tmux).

mod common;

use std::time::Duration;

use common::{eventually, TestBox};

/// `session list --json`: an array, or the test fails (an empty list must be one the
/// daemon gave, not an answer that failed to parse).
fn sessions(b: &TestBox) -> Vec<serde_json::Value> {
    let text = b.ok(&["session", "list", "--json"]);
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Array(list)) => list,
        other => panic!("session list --json is no JSON array: {other:?} from {text:?}"),
    }
}

#[test]
fn start_list_kill_with_exact_names() {
    let mut b = TestBox::new("");
    b.start();
    assert!(sessions(&b).is_empty());
    std::fs::create_dir_all(b.workspace().join("sub")).expect("mkdir");
    b.ok(&["session", "start", "claude-dash", "--", "sleep", "100"]);
    // `claude` must not be mistaken for `claude-dash` (tmux prefix matching).
    let out = b.ctl(&["session", "kill", "claude"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no session named `claude`"));
    b.ok(&[
        "session",
        "start",
        "claude",
        "--cwd",
        "sub",
        "--",
        "bash",
        "-c",
        "pwd > here; exec sleep 100",
    ]);
    let dup = b.ctl(&["session", "start", "claude", "--", "sleep", "1"]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let list = sessions(&b);
    let names: Vec<&str> = list
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["claude", "claude-dash"]);
    assert!(list
        .iter()
        .all(|s| s["running"] == true && s["attached"] == 0 && s["started_at_ms"].is_u64()));
    let here = b.workspace().join("sub/here");
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&here).is_ok_and(|s| s.trim().ends_with("/sub"))
    }));
    b.ok(&["session", "kill", "claude"]);
    let names: Vec<String> = sessions(&b)
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["claude-dash"]);
}

#[test]
fn an_ended_command_leaves_a_dead_session() {
    let mut b = TestBox::new("");
    b.start();
    b.ok(&["session", "start", "agent", "--", "true"]);
    assert!(eventually(Duration::from_secs(5), || sessions(&b)
        .first()
        .is_some_and(|s| s["running"] == false)));
}

#[test]
fn bad_session_requests_are_refused() {
    let mut b = TestBox::new("");
    b.start();
    for (args, expected) in [
        (
            vec!["session", "start", "a.b", "--", "true"],
            "invalid session name",
        ),
        (
            vec!["session", "start", "ok", "--cwd", "missing", "--", "true"],
            "does not exist",
        ),
    ] {
        let out = b.ctl(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{args:?}"
        );
    }
}

/// What the CLI refuses itself reads as the reason, never as an answer of the daemon's.
#[test]
fn a_missing_program_or_environment_file_is_said_in_words() {
    let mut b = TestBox::new("");
    b.start();
    let missing = b.workspace().join("no-such-env.json");
    let missing = missing.to_string_lossy();
    for (args, expected) in [
        (
            vec![
                "session",
                "start",
                "agent",
                "--needs",
                "no-such-agent-program",
                "--",
                "true",
            ],
            "agentbox-ctl: `no-such-agent-program` is not installed in the box (not on its PATH)",
        ),
        (
            vec![
                "session",
                "start",
                "agent",
                "--env-file",
                &missing,
                "--",
                "true",
            ],
            "agentbox-ctl: cannot use the environment file",
        ),
    ] {
        let out = b.ctl(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("unexpected answer"), "{args:?}: {stderr}");
    }
}

#[test]
fn sessions_do_not_inherit_tokens() {
    let mut b = TestBox::new("").with_env("AGENTBOX_BRIDGE_TOKEN", "secret-bridge-token");
    b.start();
    b.ok(&[
        "session",
        "start",
        "agent",
        "--",
        "bash",
        "-c",
        "env > env.txt; exec sleep 100",
    ]);
    let path = b.workspace().join("env.txt");
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&path).is_ok_and(|s| s.contains("PATH="))
    }));
    assert!(!std::fs::read_to_string(&path)
        .expect("env")
        .contains("secret-"));
}
