//! The `local` provider end to end: a box from a scratch repo, driven through the real
//! `agentbox` binary, with the real ctl daemon, relay, git and tmux.

mod common;

use std::process::Command;

use common::*;

#[test]
fn create_exec_stop_start_destroy() {
    let host = Host::new();
    let port = free_port();
    let repo = host.repo("proj", &web_service(port));
    let name = host
        .ok(&repo, &["create", "--name", "b1"])
        .trim()
        .to_string();
    assert_eq!(name, "b1");

    // The workspace has the commits, the uncommitted edit and the untracked file, on
    // agentbox/b1; ignored files stay behind.
    assert_eq!(
        host.ok(&repo, &["exec", "--", "git", "branch", "--show-current"])
            .trim(),
        "agentbox/b1"
    );
    assert_eq!(
        host.ok(&repo, &["exec", "--", "git", "log", "--format=%s"]),
        "second\nfirst\n"
    );
    assert_eq!(
        host.ok(&repo, &["exec", "--", "cat", "src/lib.txt"]),
        "one\nedited\n"
    );
    assert_eq!(
        host.ok(&repo, &["exec", "--", "cat", "notes/deep/todo.md"]),
        "untracked\n"
    );
    let status = host.ok(&repo, &["exec", "--", "git", "status", "--porcelain"]);
    assert!(
        status.contains(" M src/lib.txt") && status.contains("?? notes/"),
        "{status}"
    );
    assert!(!host
        .run(&repo, &["exec", "--", "test", "-e", "debug.log"])
        .status
        .success());
    assert!(
        !host
            .run(&repo, &["exec", "--", "git", "remote"])
            .stdout
            .iter()
            .any(|_| true),
        "the box must not see host remotes"
    );

    // exec: cwd, environment, exit codes, stdin.
    let pwd = host.ok(&repo, &["exec", "b1", "--", "pwd"]);
    assert!(pwd.trim().ends_with("boxes/b1/workspace"), "{pwd}");
    assert_eq!(
        host.ok(
            &repo,
            &["exec", "--", "sh", "-c", "echo $AGENTBOX_BOX_NAME"]
        )
        .trim(),
        "b1"
    );
    assert_eq!(
        host.run(&repo, &["exec", "--", "sh", "-c", "exit 42"])
            .status
            .code(),
        Some(42)
    );
    assert!(
        host.ok(&repo, &["exec", "--", "sh", "-c", "command -v git"])
            .contains("boxes/b1/bin/git"),
        "shims first on PATH"
    );
    // The shim sends pull to the host (which has no remote in this repo).
    let pull = host.run(&repo, &["exec", "--", "git", "pull"]);
    assert_eq!(pull.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&pull.stderr);
    assert!(
        stderr.contains("refused by the host: the host repository has no remote named `origin`"),
        "{stderr}"
    );

    // The service from the repo's agentbox.yaml is ready.
    let status: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["status", "--json"])).expect("json");
    assert_eq!(status["running"], true);
    let units = status["units"].as_array().cloned().unwrap_or_default();
    assert!(
        units.iter().any(|u| u["name"] == "agentbox-relay"),
        "the relay runs as the daemon's built-in unit: {status}"
    );
    let web = units
        .iter()
        .find(|u| u["name"] == "web")
        .expect("the web unit");
    assert_eq!(
        (web["name"].as_str(), web["state"].as_str()),
        (Some("web"), Some("ready")),
        "{status}"
    );
    let web_pid = web["pid"].as_u64().expect("pid");

    // stop / start keep the workspace.
    host.ok(&repo, &["exec", "--", "sh", "-c", "echo kept > mine.txt"]);
    host.ok(&repo, &["stop"]);
    assert_eq!(host.list(&repo)[0]["state"], "stopped");
    assert!(
        eventually(|| !pid_alive(web_pid)),
        "the service survived stop"
    );
    host.fails(&repo, &["attach"], "is stopped");
    host.ok(&repo, &["start", "1"]);
    assert_eq!(host.list(&repo)[0]["state"], "running");
    assert_eq!(host.ok(&repo, &["exec", "--", "cat", "mine.txt"]), "kept\n");
    assert!(eventually(|| {
        let s: serde_json::Value =
            serde_json::from_str(&host.ok(&repo, &["status", "--json"])).unwrap_or_default();
        s["units"].as_array().is_some_and(|u| {
            u.iter()
                .any(|u| u["name"] == "web" && u["state"] == "ready")
        })
    }));

    // destroy leaves nothing.
    let ctl_pid: u64 = std::fs::read_to_string(host.home().join("boxes/b1/run/ctl.lock"))
        .expect("lock")
        .trim()
        .parse()
        .expect("pid");
    host.fails(&repo, &["destroy", "b1"], "pass -y");
    host.ok(&repo, &["destroy", "-y", "--force", "b1"]);
    assert!(host.list(&repo).is_empty());
    assert!(!host.home().join("boxes/b1").exists());
    assert!(
        eventually(|| !pid_alive(ctl_pid)),
        "the daemon survived destroy"
    );
    let refs = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["for-each-ref", "refs/agentbox-seed"])
        .timed_output()
        .expect("git");
    assert!(
        refs.stdout.is_empty(),
        "temporary seed refs were left in the user's repo"
    );
}

#[test]
fn two_boxes_of_one_repo_side_by_side() {
    let host = Host::new();
    let repo = host.repo("twin", "");
    assert_eq!(host.ok(&repo, &["create"]).trim(), "twin-1");
    assert_eq!(host.ok(&repo, &["create"]).trim(), "twin-2");
    host.ok(
        &repo,
        &["exec", "twin-1", "--", "sh", "-c", "echo one > which"],
    );
    host.ok(
        &repo,
        &["exec", "twin-2", "--", "sh", "-c", "echo two > which"],
    );
    assert_eq!(
        host.ok(&repo, &["exec", "twin-1", "--", "cat", "which"]),
        "one\n"
    );
    assert_eq!(
        host.ok(&repo, &["exec", "2", "--", "cat", "which"]),
        "two\n"
    );
    assert_eq!(
        host.ok(
            &repo,
            &["exec", "twin-2", "--", "git", "branch", "--show-current"]
        )
        .trim(),
        "agentbox/twin-2"
    );
    // `exec` exits 125 when agentbox cannot run the command, as `docker exec` does.
    let out = host.run(&repo, &["exec", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("this project has 2 boxes"));
    let list = host.list(&repo);
    assert!(list.iter().all(|b| b["state"] == "running"), "{list:?}");
}

#[test]
fn run_starts_the_command_in_a_tmux_session() {
    let host = Host::new();
    let repo = host.repo("runner", "");
    let name = host
        .ok(
            &repo,
            &[
                "run",
                "-d",
                "--",
                "sh",
                "-c",
                "echo started > ran.txt; exec sleep 100",
            ],
        )
        .trim()
        .to_string();
    assert!(eventually(|| host
        .run(&repo, &["exec", &name, "--", "test", "-f", "ran.txt"])
        .status
        .success()));
    let sessions: serde_json::Value = serde_json::from_str(&host.ok(
        &repo,
        &[
            "exec",
            &name,
            "--",
            "agentbox-ctl",
            "session",
            "list",
            "--json",
        ],
    ))
    .expect("json");
    assert_eq!(sessions[0]["name"], "agent");
    assert_eq!(sessions[0]["running"], true);
}

#[test]
fn bad_input_is_one_clear_line_and_leaves_nothing() {
    let host = Host::new();
    let not_a_repo = host.dir.path().join("plain");
    std::fs::create_dir_all(&not_a_repo).expect("mkdir");
    host.fails(&not_a_repo, &["create"], "is not inside a git repository");

    let broken = host.repo(
        "broken",
        "services:\n  web:\n    command: x\n    restart: sometimes\n",
    );
    host.fails(
        &broken,
        &["create"],
        "agentbox.yaml:4:14: `restart` must be always, on-failure or never",
    );
    assert!(host.list(&broken).is_empty());
    assert!(
        !host.home().join("boxes").exists()
            || std::fs::read_dir(host.home().join("boxes"))
                .expect("dir")
                .next()
                .is_none()
    );

    let repo = host.repo("fine", "");
    host.ok(&repo, &["create", "--name", "taken"]);
    host.fails(
        &repo,
        &["create", "--name", "taken"],
        "a box named `taken` already exists",
    );
    host.fails(&repo, &["create", "--name", "bad name"], "invalid box name");
    host.fails(&repo, &["create", "--provider", "aws"], "not a provider");
    host.fails(
        &repo,
        &["create", "--provider", "docker"],
        "run `agentbox prepare --provider docker` first",
    );
    host.fails(
        &repo,
        &["create", "--provider", "daytona"],
        "run `agentbox prepare --provider daytona` first",
    );
    host.fails(
        &repo,
        &["create", "--branch", "nope"],
        "there is no branch `nope`",
    );
    // `exec` that cannot reach a box exits 125, as docker exec does when it cannot run.
    for (args, expected) in [
        (["exec", "ghost", "--", "true"], "no box named `ghost`"),
        (["exec", "9", "--", "true"], "there is no box number 9"),
    ] {
        let out = host.run(&repo, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "agentbox {args:?}: {stderr}");
        assert!(stderr.contains(expected), "agentbox {args:?}: {stderr}");
    }
    host.fails(&repo, &["status", "ghost"], "no box named `ghost`");
    assert_eq!(host.list(&repo).len(), 1);
}

#[test]
fn config_layers() {
    let host = Host::new();
    let repo = host.repo("cfg", "defaults:\n  box.bundleDepth: 7\n");
    assert_eq!(
        host.ok(&repo, &["config", "get", "box.provider"]).trim(),
        "local"
    );
    host.ok(
        &repo,
        &["config", "set", "box.bundleDepth", "50", "--global"],
    );
    host.ok(&repo, &["config", "set", "box.bundleDepth", "60"]);
    assert_eq!(
        host.ok(&repo, &["config", "get", "box.bundleDepth"]).trim(),
        "7"
    );
    let all = host.ok(&repo, &["config", "get", "box.bundleDepth", "--all"]);
    assert_eq!(
        all,
        "agentbox.yaml  7\nproject        60\nglobal         50\nbuilt-in       200\n"
    );
    host.fails(
        &repo,
        &["config", "set", "box.provider", "aws"],
        "not a provider",
    );
    host.fails(
        &repo,
        &["config", "set", "box.colour", "red"],
        "unknown config key `box.colour`",
    );
    host.ok(&repo, &["config", "unset", "box.bundleDepth"]);
    let list: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["config", "list", "--json"])).expect("json");
    let depth = list
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["key"] == "box.bundleDepth")
        .expect("row")
        .clone();
    assert_eq!(
        (depth["value"].as_str(), depth["from"].as_str()),
        (Some("7"), Some("agentbox.yaml"))
    );
    // The seed honours the resolved depth: one commit with depth 1 (from the committed
    // branch; uncommitted changes need depth 2 to carry their stash commit).
    host.ok(&repo, &["config", "set", "box.bundleDepth", "1"]);
    std::fs::write(repo.join("agentbox.yaml"), "").expect("write");
    let name = host
        .ok(&repo, &["create", "--branch", "main"])
        .trim()
        .to_string();
    assert_eq!(
        host.ok(
            &repo,
            &["exec", &name, "--", "git", "rev-list", "--count", "HEAD"]
        )
        .trim(),
        "1"
    );
    assert_eq!(
        host.ok(&repo, &["exec", &name, "--", "cat", "src/lib.txt"]),
        "one\n",
        "--branch seeds the committed state"
    );
    let with_changes = host.ok(&repo, &["create"]).trim().to_string();
    assert_eq!(
        host.ok(&repo, &["exec", &with_changes, "--", "cat", "src/lib.txt"]),
        "one\nedited\n"
    );
}

/// Issue 20 #13: the local provider passes this machine's environment through an
/// allowlist. Tokens, cloud keys, the SSH agent and database URLs in the user's shell
/// reach neither the box's daemon and services nor an `exec` in it.
#[test]
fn host_secrets_stay_out_of_a_local_box() {
    let host = Host::new();
    let out_dir = host.dir.path().join("out");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let yaml = format!(
        "services:\n  dump:\n    command: env > {}/.partial && mv {}/.partial {}/service-env; exec sleep 600\n",
        out_dir.display(),
        out_dir.display(),
        out_dir.display()
    );
    let repo = host.repo("secrets", &yaml);
    let secrets: Vec<(&str, String)> = [
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "NPM_TOKEN",
        "SSH_AUTH_SOCK",
        "DATABASE_URL",
        "MY_COMPANY_SECRET",
    ]
    .into_iter()
    .map(|k| (k, format!("leak-{k}-{}", std::process::id())))
    .collect();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(AGENTBOX);
        cmd.args(args)
            .current_dir(&repo)
            .env("AGENTBOX_HOME", host.home())
            .env("PATH", host.path())
            .env("LC_TIME", "C");
        for (k, v) in &secrets {
            cmd.env(k, v);
        }
        let out = cmd.timed_output().expect("run agentbox");
        assert!(
            out.status.success(),
            "agentbox {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["create", "--name", "sec"]);
    let exec_env = run(&["exec", "sec", "--", "env"]);
    assert!(eventually(|| out_dir.join("service-env").exists()));
    let service_env = std::fs::read_to_string(out_dir.join("service-env")).expect("read");
    let daemon_pid = std::fs::read_to_string(host.home().join("boxes/sec/run/ctl.lock"))
        .expect("ctl.lock")
        .trim()
        .to_string();
    let daemon_env = std::fs::read(format!("/proc/{daemon_pid}/environ")).expect("environ");
    let daemon_env = String::from_utf8_lossy(&daemon_env).replace('\0', "\n");
    for (what, env) in [
        ("exec", &exec_env),
        ("a service", &service_env),
        ("the ctl daemon", &daemon_env),
    ] {
        // Each dump is the box's environment: the contract is there, and what the
        // allowlist keeps (the locale) came through.
        assert!(env.contains("AGENTBOX_BOX_NAME=sec"), "{what}: {env}");
        assert!(env.contains("LC_TIME=C"), "{what}: {env}");
        for (k, v) in &secrets {
            assert!(!env.contains(v.as_str()), "{what} got {k}: {env}");
        }
    }
    run(&["destroy", "-y", "sec"]);
}

/// Issue 20 #11: a small `agentbox.yaml` of nested aliases (which a box can hand back
/// through `download`) is refused by the host's config reader and by the box's
/// validator with its position, under a memory limit that the expansion would blow.
#[test]
fn yaml_alias_bombs_are_refused_by_host_and_box() {
    use std::fmt::Write as _;
    let host = Host::new();
    let repo = host.repo("bomb", "services: {}\n");
    let mut bomb = String::from("defaults:\n  box.size: 2-4-8\nx0: &x0 [lol]\n");
    for i in 1..=9 {
        let refs = vec![format!("*x{}", i - 1); 10].join(", ");
        let _ = writeln!(bomb, "x{i}: &x{i} [{refs}]");
    }
    assert!(bomb.len() < 1000, "a small file: {} bytes", bomb.len());
    std::fs::write(repo.join("agentbox.yaml"), &bomb).expect("write");
    let ctl = std::path::Path::new(AGENTBOX)
        .with_file_name("agentbox-ctl")
        .display()
        .to_string();
    // 1 GiB of address space: the expansion needs tens of GiB.
    let limited = |program: &str, args: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -v 1048576; exec {program} {args}"))
            .current_dir(&repo)
            .env("AGENTBOX_HOME", host.home())
            .env("PATH", host.path())
            .timed_output()
            .expect("sh")
    };
    for (what, out) in [
        ("agentbox config list", limited(AGENTBOX, "config list")),
        (
            "agentbox-ctl validate",
            limited(&ctl, "validate agentbox.yaml"),
        ),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains("agentbox.yaml:") && stderr.contains("more than 100000 nodes"),
            "{what}: {stderr}"
        );
    }
}

/// Review of issue 20: a local box writes its own `run/relay.json` and `ctl.lock`. A pid
/// planted there (any process of this machine) is never signalled by `stop`; and a
/// repository (which the box can edit and `download` bring back) cannot choose where
/// boxes run or how much a box may send.
#[test]
fn a_pid_planted_in_the_box_dir_is_never_signalled_and_the_repo_cannot_pick_the_provider() {
    let host = Host::new();
    let repo = host.repo("planted", "services: {}\n");
    host.ok(&repo, &["create", "--name", "pl"]);
    let mut victim = Command::new("sleep").arg("60").spawn().expect("sleep");
    let run = host.home().join("boxes/pl/run");
    let info = run.join("relay.json");
    let mut relay: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&info).expect("relay.json")).expect("json");
    relay["pid"] = serde_json::json!(victim.id());
    std::fs::write(&info, relay.to_string()).expect("plant");
    host.ok(&repo, &["stop", "pl"]);
    assert!(
        victim.try_wait().expect("wait").is_none(),
        "agentbox stop signalled a host process named in the box's relay.json"
    );
    victim.kill().expect("kill");
    finish_within(victim, "sleep 60", COMMAND_LIMIT).expect("the killed sleep ends");
    host.ok(&repo, &["destroy", "-y", "--force", "pl"]);

    for key in ["box.provider: local", "transfer.maxBytes: 99999999999"] {
        std::fs::write(repo.join("agentbox.yaml"), format!("defaults:\n  {key}\n")).expect("write");
        host.fails(&repo, &["create", "--name", "nope"], "defaults may not set");
    }
}
