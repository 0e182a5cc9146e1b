//! Agents in boxes, end to end on local boxes: a stand-in agent calls the hooks the way
//! Claude Code does, and its state travels box → ctl daemon → relay → host bridge →
//! `agentbox list --json`; the change to `waiting` raises one desktop notification.

mod common;

use std::path::Path;

use common::*;

/// The agents of box `name` as `agentbox list --json` shows them.
fn agents_of(host: &Host, cwd: &Path, name: &str) -> Vec<serde_json::Value> {
    host.list(cwd)
        .into_iter()
        .find(|b| b["name"] == name)
        .and_then(|b| b["agents"].as_array().cloned())
        .unwrap_or_default()
}

fn state_of(host: &Host, cwd: &Path, name: &str) -> Option<String> {
    agents_of(host, cwd, name)
        .first()
        .and_then(|a| a["state"].as_str().map(str::to_string))
}

fn wait_state(host: &Host, cwd: &Path, name: &str, want: &str) {
    assert!(
        eventually(|| state_of(host, cwd, name).as_deref() == Some(want)),
        "the host never saw `{want}`; it has {:?}",
        agents_of(host, cwd, name)
    );
}

#[test]
fn a_stand_in_agent_drives_its_state_to_the_host() {
    let host = Host::new();
    let steps = host.dir.path().join("steps");
    std::fs::create_dir_all(&steps).expect("mkdir");
    let notified = host.dir.path().join("notified.txt");
    // The host's desktop notifier: records each notification.
    host.program(
        "notify-send",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\n",
            notified.display()
        ),
    );
    // A stand-in `claude`: reports what Claude Code's hooks report, step by step as the
    // test allows (the local provider runs this machine's programs).
    let hook = |event: &str| format!("echo '{event}' | agentbox-ctl agent-state --from claude\n");
    let wait = |step: &str| {
        format!(
            "while [ ! -e {} ]; do sleep 0.05; done\n",
            steps.join(step).display()
        )
    };
    let script = [
        "#!/bin/sh\n".to_string(),
        hook(r#"{"hook_event_name":"SessionStart"}"#),
        hook(r#"{"hook_event_name":"UserPromptSubmit"}"#),
        hook(r#"{"hook_event_name":"PreToolUse","tool_name":"Bash"}"#),
        wait("ask"),
        hook(
            r#"{"hook_event_name":"Notification","notification_type":"permission_prompt","message":"Claude needs your permission to use Bash"}"#,
        ),
        // Asked again while still waiting: no second notification.
        hook(
            r#"{"hook_event_name":"Notification","notification_type":"permission_prompt","message":"Claude needs your permission to use Write"}"#,
        ),
        wait("answer"),
        hook(r#"{"hook_event_name":"PostToolUse","tool_name":"Bash"}"#),
        hook(r#"{"hook_event_name":"Stop"}"#),
        // A hook with a payload that is not JSON never fails the agent.
        "echo 'not json' | agentbox-ctl agent-state --from claude && echo hook-ok\n".into(),
        wait("exit"),
    ]
    .concat();
    host.program("claude", &script);

    let repo = host.repo("agents", "");
    host.ok(&repo, &["claude", "-d", "--name", "ag1"]);
    wait_state(&host, &repo, "ag1", "working");
    assert!(!notified.exists(), "notified before the agent waited");

    std::fs::write(steps.join("ask"), "").expect("step");
    wait_state(&host, &repo, "ag1", "waiting");
    let agent = &agents_of(&host, &repo, "ag1")[0];
    assert_eq!(agent["agent"], "claude");
    assert_eq!(agent["session"], "claude");
    let notifications = || std::fs::read_to_string(&notified).unwrap_or_default();
    assert!(eventually(
        || notifications().contains("claude is waiting for you")
    ));

    std::fs::write(steps.join("answer"), "").expect("step");
    wait_state(&host, &repo, "ag1", "idle");
    assert_eq!(
        notifications().lines().count(),
        1,
        "one notification per wait: {}",
        notifications()
    );
    assert!(
        notifications().contains("agentbox: ag1"),
        "{}",
        notifications()
    );

    // The text view and `status` show it too.
    let list = host.ok(&repo, &["list"]);
    assert!(list.contains("claude idle"), "{list}");
    let status: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["status", "ag1", "--json"])).expect("json");
    assert_eq!(status["agents"][0]["state"], "idle");
    // In the box: `session list` carries the state, and the bad hook payload was ignored.
    let sessions: serde_json::Value = serde_json::from_str(&host.ok(
        &repo,
        &[
            "exec",
            "ag1",
            "--",
            "agentbox-ctl",
            "session",
            "list",
            "--json",
        ],
    ))
    .expect("json");
    assert_eq!(sessions[0]["agent"]["state"], "idle");

    // The agent's program ends without a last hook: the box notices, the host shows it.
    std::fs::write(steps.join("exit"), "").expect("step");
    wait_state(&host, &repo, "ag1", "exited");
    let audit = host.ok(&repo, &["audit"]);
    assert!(audit.contains("agent state"), "{audit}");

    // A stopped box has no agents: what they said last is forgotten, not shown stale.
    host.ok(&repo, &["stop", "ag1"]);
    assert_eq!(state_of(&host, &repo, "ag1").as_deref(), None);
    // A destroyed box leaves no record of its agents for a later box of its name.
    host.ok(&repo, &["destroy", "-y", "--force", "ag1"]);
    assert!(!host.home().join("agents/ag1.json").exists());
}

#[test]
fn agent_state_refuses_bad_input_in_the_box() {
    let host = Host::new();
    let repo = host.repo("bad-states", "");
    host.ok(&repo, &["create", "--name", "ag2"]);
    let run = |args: &[&str]| {
        let mut all = vec!["exec", "ag2", "--", "agentbox-ctl", "agent-state"];
        all.extend_from_slice(args);
        host.run(&repo, &all)
    };
    let out = run(&["sleeping", "--session", "s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown agent state `sleeping`"));
    let out = run(&["idle"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AGENTBOX_SESSION"));
    let out = run(&["idle", "--session", "a:b"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid session name"));
    let out = run(&["idle", "--session", "s", "--agent", "$(x)"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid agent name"));
    // Hooks never fail their agent, even on garbage.
    let out = run(&["--from", "codex", "{not json"]);
    assert!(out.status.success());
    // A well-formed report of a session the host has no agent for still shows up.
    host.ok(
        &repo,
        &[
            "exec",
            "ag2",
            "--",
            "agentbox-ctl",
            "agent-state",
            "waiting",
            "--session",
            "side",
            "--agent",
            "codex",
            "--detail",
            "approve `rm`?",
        ],
    );
    // (The box marks it exited soon after: it has no such session; the audit keeps both.)
    assert!(eventually(|| host
        .ok(&repo, &["audit"])
        .contains("codex in session side: waiting")));
}

/// `agentbox` with extra environment (this machine's API key, a HOME of the test's own).
fn run_with(
    host: &Host,
    cwd: &Path,
    env: &[(&str, &Path)],
    secret: &str,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = std::process::Command::new(AGENTBOX);
    cmd.args(args)
        .current_dir(cwd)
        .env("AGENTBOX_HOME", host.home())
        .env("PATH", host.path())
        .env("ANTHROPIC_API_KEY", secret)
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.timed_output().expect("run agentbox")
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_containing(&p, needle));
        } else if meta.is_file()
            && std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        {
            found.push(p);
        }
    }
    found
}

#[test]
fn a_forwarded_key_reaches_the_agent_session_only_and_the_agent_resumes() {
    let host = Host::new();
    let secret = format!("sk-ant-test-{}", std::process::id() * 7919);
    let out_dir = host.dir.path().join("out");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let home = host.dir.path().join("user-home");
    std::fs::create_dir_all(&home).expect("mkdir");
    // The stand-in agent writes its arguments and (whole, by a rename) its environment,
    // then waits to be killed.
    host.program(
        "claude",
        &format!(
            "#!/bin/sh\necho \"$*\" >> {out}/agent-args\nenv > {out}/.partial.$$ && mv {out}/.partial.$$ {out}/agent-env.$$\nexec sleep 600\n",
            out = out_dir.display()
        ),
    );
    let yaml = format!(
        "services:\n  dump:\n    command: env > {}/service-env; exec sleep 600\n",
        out_dir.display()
    );
    let repo = host.repo("keys", &yaml);
    host.ok(
        &repo,
        &[
            "config",
            "set",
            "--global",
            "agents.forwardEnv",
            "ANTHROPIC_API_KEY,OPENAI_API_KEY",
        ],
    );
    // A repository cannot choose what leaves the host.
    std::fs::write(
        repo.join("agentbox.yaml"),
        format!("{yaml}defaults:\n  agents.forwardEnv: HOME\n"),
    )
    .expect("write");
    let refused = run_with(
        &host,
        &repo,
        &[("HOME", &home)],
        &secret,
        &["create", "--name", "nope"],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("agents.forwardEnv"));
    std::fs::write(repo.join("agentbox.yaml"), &yaml).expect("write");

    let made = run_with(
        &host,
        &repo,
        &[("HOME", &home)],
        &secret,
        &["claude", "-d", "--name", "ag3"],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let agent_env = || {
        std::fs::read_dir(&out_dir)
            .expect("read")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("agent-env."))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert!(eventually(
        || agent_env().len() == 1 && out_dir.join("service-env").exists()
    ));
    assert!(
        agent_env()[0].contains(&format!("ANTHROPIC_API_KEY={secret}")),
        "the agent session lacks the key: {:?}",
        agent_env()
    );
    let service_env = std::fs::read_to_string(out_dir.join("service-env")).expect("read");
    assert!(!service_env.contains(&secret), "a service got the key");
    assert!(service_env.contains("AGENTBOX_WORKSPACE"), "{service_env}");
    // No command line on this machine carries it, and no file agentbox keeps does.
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .timed_output()
        .expect("ps");
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains(&secret),
        "the key is in argv"
    );
    let leaks = files_containing(&host.home(), secret.as_bytes());
    assert!(leaks.is_empty(), "the key is in {leaks:?}");

    // Running: `agentbox claude BOX` attaches to the same agent (detached here: says how).
    let again = run_with(
        &host,
        &repo,
        &[("HOME", &home)],
        &secret,
        &["claude", "ag3", "-d"],
    );
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(agent_env().len(), 1, "the running agent was started again");

    // The agent ended (as after a box restart): it resumes its last conversation when it
    // has one for this workspace on disk (Claude's history directory is the working
    // directory with `-` for every other character), with the user's arguments after.
    let restart = |args: &[&str], starts: usize| {
        host.ok(
            &repo,
            &[
                "exec",
                "ag3",
                "--",
                "agentbox-ctl",
                "session",
                "kill",
                "claude",
            ],
        );
        let mut all = vec!["claude", "ag3", "-d", "--"];
        all.extend_from_slice(args);
        let out = run_with(&host, &repo, &[("HOME", &home)], &secret, &all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(eventually(|| agent_env().len() == starts));
    };
    let projects = home.join(".claude/projects");
    std::fs::create_dir_all(projects.join("-elsewhere")).expect("mkdir");
    std::fs::write(projects.join("-elsewhere/1.jsonl"), "{}\n").expect("write");
    restart(&["--model", "x"], 2);
    let encoded: String = host
        .home()
        .join("boxes/ag3/workspace")
        .display()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    std::fs::create_dir_all(projects.join(&encoded)).expect("mkdir");
    std::fs::write(projects.join(&encoded).join("1.jsonl"), "{}\n").expect("write");
    restart(&["--model", "it's"], 3);
    let args = std::fs::read_to_string(out_dir.join("agent-args")).expect("args");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        ["", "--model x", "--continue --model it's"]
    );
    assert!(agent_env().iter().all(|e| e.contains(&secret)));
}

#[test]
fn codex_reports_through_notify_and_its_screen() {
    let host = Host::new();
    let steps = host.dir.path().join("steps");
    std::fs::create_dir_all(&steps).expect("mkdir");
    let wait = |step: &str| {
        format!(
            "while [ ! -e {} ]; do sleep 0.05; done\n",
            steps.join(step).display()
        )
    };
    let args_file = host.dir.path().join("codex-args");
    // A stand-in `codex`: shows Codex's busy line while "working", calls its notify
    // program at the end of the first turn and not at the end of the second.
    let script = [
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\n", args_file.display()),
        wait("busy"),
        "printf 'Working (3s \\342\\200\\242 esc to interrupt)\\n'\n".into(),
        wait("done"),
        "printf '\\033[H\\033[2J> '\n".into(),
        "agentbox-ctl agent-state --from codex '{\"type\":\"agent-turn-complete\",\"last-assistant-message\":\"ok\"}'\n".into(),
        wait("busy2"),
        "printf 'Working (1s \\342\\200\\242 esc to interrupt)\\n'\n".into(),
        wait("quiet"),
        "printf '\\033[H\\033[2J> '\n".into(),
        "exec sleep 600\n".into(),
    ]
    .concat();
    host.program("codex", &script);
    let repo = host.repo("codex", "");
    host.ok(&repo, &["codex", "-d", "--name", "cx1"]);
    // Listed as soon as it starts, before any hook.
    wait_state(&host, &repo, "cx1", "idle");
    let args = std::fs::read_to_string(&args_file).expect("args");
    assert!(
        args.contains(r#"notify=["agentbox-ctl","agent-state","--from","codex"]"#),
        "{args}"
    );
    std::fs::write(steps.join("busy"), "").expect("step");
    wait_state(&host, &repo, "cx1", "working");
    std::fs::write(steps.join("done"), "").expect("step");
    wait_state(&host, &repo, "cx1", "idle");
    std::fs::write(steps.join("busy2"), "").expect("step");
    wait_state(&host, &repo, "cx1", "working");
    std::fs::write(steps.join("quiet"), "").expect("step");
    wait_state(&host, &repo, "cx1", "idle");
    assert_eq!(agents_of(&host, &repo, "cx1")[0]["agent"], "codex");
}
