//! The `local` provider end to end: a box from a scratch repo, driven through the real
//! `agentbox` binary, with the real ctl daemon, relay, git and tmux.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const AGENTBOX: &str = env!("CARGO_BIN_EXE_agentbox");

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bins = Path::new(AGENTBOX).parent().expect("bin dir");
        for b in ["agentbox-ctl", "agentbox-relay"] {
            assert!(
                bins.join(b).exists(),
                "{b} is not built: run `cargo test --workspace`"
            );
        }
        Self { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A repo with two commits, an uncommitted edit, untracked and ignored files.
    fn repo(&self, name: &str, agentbox_yaml: &str) -> PathBuf {
        let repo = self.dir.path().join(name);
        std::fs::create_dir_all(repo.join("src")).expect("mkdir");
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(args)
                .status()
                .expect("git")
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["config", "user.email", "t@example.com"]);
        git(&["config", "user.name", "T"]);
        std::fs::write(repo.join("src/lib.txt"), "one\n").expect("write");
        std::fs::write(repo.join(".gitignore"), "*.log\n").expect("write");
        git(&["add", "."]);
        git(&["commit", "-qm", "first"]);
        std::fs::write(repo.join("agentbox.yaml"), agentbox_yaml).expect("write");
        git(&["add", "."]);
        git(&["commit", "-qm", "second"]);
        std::fs::write(repo.join("src/lib.txt"), "one\nedited\n").expect("write");
        std::fs::create_dir_all(repo.join("notes/deep")).expect("mkdir");
        std::fs::write(repo.join("notes/deep/todo.md"), "untracked\n").expect("write");
        std::fs::write(repo.join("debug.log"), "ignored\n").expect("write");
        repo
    }

    fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new(AGENTBOX)
            .args(args)
            .current_dir(cwd)
            .env("AGENTBOX_HOME", self.home())
            .env("AGENTBOX_OPENER", self.dir.path().join("opener"))
            .env("AGENTBOX_GH", self.dir.path().join("gh"))
            .stdin(Stdio::null())
            .output()
            .expect("run agentbox")
    }

    fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.run(cwd, args);
        assert!(
            out.status.success(),
            "agentbox {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, cwd: &Path, args: &[&str], expected: &str) {
        let out = self.run(cwd, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "agentbox {args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "agentbox {args:?}: expected {expected:?} in {stderr}"
        );
    }

    fn list(&self, cwd: &Path) -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&self.ok(cwd, &["list", "--json"]))
            .expect("json")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Leave no box processes behind, whatever the test did.
        let out = self.run(self.dir.path(), &["list", "--json"]);
        if let Ok(serde_json::Value::Array(boxes)) = serde_json::from_slice(&out.stdout) {
            for b in boxes {
                let name = b["name"].as_str().unwrap_or_default().to_string();
                let _ = self.run(self.dir.path(), &["destroy", "-y", &name]);
            }
        }
        let _ = self.run(self.dir.path(), &["bridge", "stop"]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn pid_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

fn web_service(port: u16) -> String {
    format!("services:\n  web:\n    command: exec python3 -m http.server {port} --bind 127.0.0.1\n    ready_when: {{port: {port}}}\n")
}

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
    let web = &status["units"][0];
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
        s["units"][0]["state"] == "ready"
    }));

    // destroy leaves nothing.
    let ctl_pid: u64 = std::fs::read_to_string(host.home().join("boxes/b1/run/ctl.lock"))
        .expect("lock")
        .trim()
        .parse()
        .expect("pid");
    host.fails(&repo, &["destroy", "b1"], "pass -y");
    host.ok(&repo, &["destroy", "-y", "b1"]);
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
        .output()
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
    host.fails(&repo, &["exec", "--", "true"], "this project has 2 boxes");
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
        "not available in this version",
    );
    host.fails(
        &repo,
        &["create", "--branch", "nope"],
        "there is no branch `nope`",
    );
    host.fails(
        &repo,
        &["exec", "ghost", "--", "true"],
        "no box named `ghost`",
    );
    host.fails(
        &repo,
        &["exec", "9", "--", "true"],
        "there is no box number 9",
    );
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

#[test]
fn notify_and_open_reach_the_host_through_the_bridge() {
    let host = Host::new();
    // The host's URL opener, as configured on the host: a script that records its argv.
    let sentinel = host.dir.path().join("opened.txt");
    let opener = host.dir.path().join("opener");
    std::fs::write(
        &opener,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> {}\n",
            sentinel.display()
        ),
    )
    .expect("write");
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let repo = host.repo("asks", "");
    host.ok(&repo, &["create", "--name", "asker"]);
    assert!(
        host.run(&repo, &["bridge", "status"]).status.success(),
        "create must start the bridge on demand"
    );

    let out = host.run(
        &repo,
        &[
            "exec",
            "--",
            "agentbox-ctl",
            "notify",
            "--wait",
            "20000",
            "tests",
            "passed",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = host.run(
        &repo,
        &[
            "exec",
            "--",
            "agentbox-ctl",
            "open",
            "https://example.com/pr/7",
            "--wait",
            "20000",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "opened https://example.com/pr/7\n"
    );
    assert_eq!(
        std::fs::read_to_string(&sentinel).expect("opened"),
        "https://example.com/pr/7\n",
        "the opener ran once, with the URL as its only argument"
    );

    // Refused in the box: nothing reaches the host.
    let out = host.run(
        &repo,
        &[
            "exec",
            "--",
            "agentbox-ctl",
            "open",
            "file:///etc/passwd",
            "--wait",
            "2000",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&sentinel)
            .expect("opened")
            .lines()
            .count(),
        1
    );

    let audit: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["audit", "--json"])).expect("json");
    let kinds: Vec<(&str, &str)> = audit
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or(""),
                e["decision"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(kinds, [("notify", "done"), ("open", "done")]);
    assert!(audit[0]["detail"]
        .as_str()
        .unwrap_or("")
        .contains("tests passed"));

    // Stopped, the bridge no longer answers; started, it picks up what waited.
    host.ok(&repo, &["bridge", "stop"]);
    assert_eq!(
        host.run(&repo, &["bridge", "status"]).status.code(),
        Some(1)
    );
    let id = host
        .ok(
            &repo,
            &["exec", "--", "agentbox-ctl", "notify", "while", "away"],
        )
        .trim()
        .to_string();
    host.ok(&repo, &["bridge", "start"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let audit: serde_json::Value =
            serde_json::from_str(&host.ok(&repo, &["audit", "--json"])).expect("json");
        if audit
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["request_id"] == id.as_str()))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the queued notify was never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn git_push_from_the_box_lands_in_the_hosts_remote_and_attacks_are_refused() {
    let host = Host::new();
    let repo = host.repo("pusher", "");
    let remote = host.dir.path().join("remote.git");
    let git = |dir: &Path, args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .expect("git")
    };
    assert!(Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&remote)
        .status()
        .expect("git")
        .success());
    assert!(git(
        &repo,
        &["remote", "add", "origin", remote.to_str().expect("utf-8")]
    )
    .status
    .success());
    host.ok(&repo, &["create", "--name", "p1"]);

    // The agent commits in the box and pushes with plain `git push` (the shim).
    let commit = host.run(&repo, &["exec", "--", "sh", "-c", "echo work > work.txt && git add work.txt && git -c user.name=a -c user.email=a@b commit -qm 'box work' && git push"]);
    assert!(
        commit.status.success(),
        "{}",
        String::from_utf8_lossy(&commit.stderr)
    );
    let log = git(&remote, &["log", "--format=%s", "agentbox/p1"]);
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).lines().next(),
        Some("box work"),
        "the push did not land"
    );

    // A second commit waits while each attack is refused with a clear error; nothing runs
    // on the host.
    let more = host.run(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "echo more >> work.txt && git -c user.name=a -c user.email=a@b commit -qam more",
        ],
    );
    assert!(
        more.status.success(),
        "{}",
        String::from_utf8_lossy(&more.stderr)
    );
    let sentinel = host.dir.path().join("pwned");
    let payload = format!("--receive-pack=touch {}", sentinel.display());
    for (args, expected) in [
        (
            vec!["git", "push", payload.as_str(), "origin"],
            "is not allowed",
        ),
        (vec!["git", "push", "--exec=sh"], "is not allowed"),
        (
            vec!["git", "push", "-c", "core.sshCommand=sh"],
            "is not allowed",
        ),
        (
            vec!["git", "push", "origin", "HEAD:main"],
            "only this box's branch",
        ),
        (
            vec!["git", "push", "/tmp/elsewhere.git"],
            "is not a remote name",
        ),
        (
            vec!["git", "push", "nosuchremote"],
            "no remote named `nosuchremote`",
        ),
    ] {
        let mut argv = vec!["exec", "--"];
        argv.extend(args.iter().copied());
        let out = host.run(&repo, &argv);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!sentinel.exists(), "a box-supplied command ran on the host");
    let branches = git(&remote, &["branch", "--format=%(refname:short)"]);
    assert_eq!(
        String::from_utf8_lossy(&branches.stdout).trim(),
        "agentbox/p1",
        "only the box branch exists on the remote"
    );
    let audit: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["audit", "--json"])).expect("json");
    let entries = audit.as_array().expect("entries");
    assert!(entries
        .iter()
        .any(|e| e["kind"] == "git push" && e["decision"] == "done"));
    assert!(entries.iter().any(|e| e["kind"] == "git push"
        && e["decision"] == "refused"
        && e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("nosuchremote"))));
    // Nothing new to push is not an error.
    let again = host.run(&repo, &["exec", "--", "git", "push"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn cp_both_ways_through_the_cli() {
    let host = Host::new();
    let repo = host.repo("cpproj", "");
    host.ok(&repo, &["create", "--name", "c1"]);
    std::fs::create_dir_all(repo.join("out/sub")).expect("mkdir");
    std::fs::write(repo.join("out/sub/f.txt"), "from host\n").expect("write");
    // Into the workspace (relative box path), then under a new name.
    let written = host.ok(&repo, &["cp", "--json", "out", "c1:"]);
    let v: serde_json::Value = serde_json::from_str(&written).expect("json");
    assert!(
        v["written"][0]
            .as_str()
            .is_some_and(|p| p.ends_with("workspace/out")),
        "{v}"
    );
    assert_eq!(
        host.ok(&repo, &["exec", "--", "cat", "out/sub/f.txt"]),
        "from host\n"
    );
    host.ok(
        &repo,
        &["exec", "--", "sh", "-c", "echo made in box > made.txt"],
    );
    host.ok(&repo, &["cp", "c1:made.txt", "got.txt"]);
    assert_eq!(
        std::fs::read_to_string(repo.join("got.txt")).expect("got"),
        "made in box\n"
    );
    host.fails(
        &repo,
        &["cp", "a", "b"],
        "one side of cp must be a box path",
    );
    host.fails(&repo, &["cp", "nobox:x", "y"], "no box named `nobox`");
    host.fails(&repo, &["cp", "c1:missing", "y"], "missing");
    host.ok(&repo, &["destroy", "-y", "c1"]);
}

fn git_in(repo: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .status()
        .expect("git")
        .success();
    assert!(ok, "git {args:?}");
}

#[test]
fn sync_sends_only_what_changed_and_the_box_wins_conflicts() {
    let host = Host::new();
    let repo = host.repo("syncproj", "");
    std::fs::write(repo.join("notes/mine.md"), "seeded\n").expect("write");
    host.ok(&repo, &["create", "--name", "s1"]);

    // The host moves on: a commit (with the edit the box already has uncommitted), an
    // uncommitted change, a new and a changed untracked file.
    std::fs::write(repo.join("src/new.txt"), "new\n").expect("write");
    git_in(&repo, &["add", "src"]);
    git_in(&repo, &["commit", "-qm", "third"]);
    std::fs::write(repo.join(".gitignore"), "*.log\n*.tmp\n").expect("write");
    std::fs::write(repo.join("notes/new.md"), "brand new\n").expect("write");
    std::fs::write(repo.join("notes/deep/todo.md"), "untracked v2\n").expect("write");
    std::fs::write(repo.join("notes/mine.md"), "host v2\n").expect("write");
    // The box changes one of those untracked files itself.
    host.ok(
        &repo,
        &["exec", "--", "sh", "-c", "echo box version > notes/mine.md"],
    );

    let out: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["sync", "--json"])).expect("json");
    assert_eq!(out["report"]["merged"], true, "{out}");
    assert!(
        out["bytes_sent"]
            .as_u64()
            .is_some_and(|b| b > 0 && b < 64 * 1024),
        "{out}"
    );
    assert_eq!(
        out["kept_in_box"],
        serde_json::json!(["notes/mine.md"]),
        "{out}"
    );
    let cat = |p: &str| host.ok(&repo, &["exec", "--", "cat", p]);
    assert_eq!(
        host.ok(&repo, &["exec", "--", "git", "log", "--format=%s", "-3"]),
        "third\nsecond\nfirst\n"
    );
    assert_eq!(cat("src/new.txt"), "new\n");
    assert_eq!(cat("src/lib.txt"), "one\nedited\n");
    assert_eq!(cat(".gitignore"), "*.log\n*.tmp\n");
    assert_eq!(cat("notes/new.md"), "brand new\n");
    assert_eq!(cat("notes/deep/todo.md"), "untracked v2\n");
    assert_eq!(cat("notes/mine.md"), "box version\n");

    // Nothing new: nothing travels.
    let again: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["sync", "--json"])).expect("json");
    assert_eq!(again["bytes_sent"], 0, "{again}");

    // Conflicting commits on both sides: the merge is left undone, the box keeps its work.
    host.ok(
        &repo,
        &["exec", "--", "sh", "-c", "echo box line > src/lib.txt && git -c user.email=b@b -c user.name=b commit -qam box && echo wip > wip.txt"],
    );
    std::fs::write(repo.join("src/lib.txt"), "host line\n").expect("write");
    git_in(&repo, &["commit", "-qam", "host"]);
    let out: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["sync", "--json"])).expect("json");
    assert_eq!(out["report"]["merged"], false, "{out}");
    assert!(
        out["report"]["commits"]
            .as_str()
            .is_some_and(|c| c.contains("refs/agentbox/host")),
        "{out}"
    );
    assert_eq!(cat("src/lib.txt"), "box line\n");
    assert_eq!(cat("wip.txt"), "wip\n");
    assert_eq!(
        host.ok(
            &repo,
            &[
                "exec",
                "--",
                "git",
                "log",
                "-1",
                "--format=%s",
                "refs/agentbox/host"
            ]
        ),
        "host\n"
    );
    host.ok(&repo, &["destroy", "-y", "s1"]);
}

#[test]
fn download_shows_changes_holds_host_executed_files_and_never_writes_git() {
    let host = Host::new();
    let repo = host.repo("dlproj", "");
    host.ok(&repo, &["create", "--name", "d1"]);
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "echo box edit > src/lib.txt && mkdir -p out .vscode && echo made > out/new.txt \
             && echo 'rm -rf ~' > .envrc && echo '{}' > .vscode/tasks.json \
             && echo SECRET=1 > .env && echo '.env' >> .gitignore && echo x > debug.log \
             && echo hook > .git/hooks/post-checkout",
        ],
    );
    // Dry run: the list, nothing written.
    let plan: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["download", "--dry-run", "--json"])).expect("json");
    let listed: Vec<(&str, &str, bool)> = plan["plan"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or(""),
                f["change"].as_str().unwrap_or(""),
                f["host_executed"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (".envrc", "new", true),
            (".gitignore", "modified", false),
            (".vscode/tasks.json", "new", true),
            ("out/new.txt", "new", false),
            ("src/lib.txt", "modified", false),
        ],
        "{plan}"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("src/lib.txt")).expect("lib"),
        "one\nedited\n"
    );
    // Without a terminal, confirmation must be explicit.
    host.fails(&repo, &["download"], "pass -y");

    let done: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["download", "-y", "--json"])).expect("json");
    assert_eq!(
        done["written"],
        serde_json::json!([".gitignore", "out/new.txt", "src/lib.txt"]),
        "{done}"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("src/lib.txt")).expect("lib"),
        "box edit\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("out/new.txt")).expect("new"),
        "made\n"
    );
    assert!(
        !repo.join(".envrc").exists(),
        "a host-executed file was written"
    );
    assert!(!repo.join(".vscode/tasks.json").exists());
    assert!(
        !repo.join(".env").exists(),
        "an ignored .env came without --with-env"
    );
    assert!(!repo.join(".git/hooks/post-checkout").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&repo)
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".agentbox-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "staging left in the project");

    // Explicit approval and --with-env bring the rest.
    host.ok(
        &repo,
        &["download", "-y", "--with-env", "--allow-host-executed"],
    );
    assert_eq!(
        std::fs::read_to_string(repo.join(".envrc")).expect("envrc"),
        "rm -rf ~\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join(".env")).expect("env"),
        "SECRET=1\n"
    );
    assert!(!repo.join(".git/hooks/post-checkout").exists());
    let again: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["download", "--dry-run", "--json", "--with-env"]))
            .expect("json");
    assert_eq!(again["plan"]["files"], serde_json::json!([]), "{again}");
    host.ok(&repo, &["destroy", "-y", "d1"]);
}

impl Host {
    /// Starts `agentbox ARGS` without waiting for it.
    fn spawn(&self, cwd: &Path, args: &[&str]) -> std::process::Child {
        Command::new(AGENTBOX)
            .args(args)
            .current_dir(cwd)
            .env("AGENTBOX_HOME", self.home())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agentbox")
    }

    /// Waits until exactly one approval is pending and returns it.
    fn pending_approval(&self, cwd: &Path) -> serde_json::Value {
        let mut found = None;
        assert!(
            eventually(|| {
                let v: serde_json::Value =
                    serde_json::from_str(&self.ok(cwd, &["approvals", "--json"])).expect("json");
                found = v.as_array().and_then(|a| a.first().cloned());
                found.is_some()
            }),
            "no approval showed up"
        );
        found.expect("approval")
    }
}

fn finish(child: std::process::Child) -> (bool, String) {
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn copies_to_and_from_the_host_wait_for_approval_and_stay_in_the_project() {
    let host = Host::new();
    let repo = host.repo("cpyproj", "");
    std::fs::create_dir_all(repo.join("docs")).expect("mkdir");
    host.ok(&repo, &["create", "--name", "cpy"]);
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "mkdir -p out && echo report > out/r.txt && echo 'rm -rf ~' > .envrc",
        ],
    );

    // Approved: the tree lands in the project.
    let child = host.spawn(
        &repo,
        &[
            "exec",
            "--",
            "agentbox-ctl",
            "cp",
            "--to-host",
            "out",
            "docs/",
        ],
    );
    let approval = host.pending_approval(&repo);
    assert_eq!(approval["kind"], "cp to host");
    assert!(
        approval["summary"]
            .as_str()
            .is_some_and(|s| s.contains("docs")),
        "{approval}"
    );
    let id = approval["id"].as_str().expect("id").to_string();
    host.ok(&repo, &["approve", &id]);
    let (ok, out) = finish(child);
    assert!(ok, "{out}");
    assert!(out.contains("waiting for approval on the host"), "{out}");
    assert_eq!(
        std::fs::read_to_string(repo.join("docs/out/r.txt")).expect("landed"),
        "report\n"
    );
    host.fails(&repo, &["approve", &id], "already approved");

    // Denied: nothing lands, the box hears why.
    let child = host.spawn(
        &repo,
        &[
            "exec",
            "--",
            "agentbox-ctl",
            "cp",
            "--to-host",
            "out/r.txt",
            "r2.txt",
        ],
    );
    let approval = host.pending_approval(&repo);
    host.ok(&repo, &["deny", approval["id"].as_str().expect("id")]);
    let (ok, out) = finish(child);
    assert!(!ok && out.contains("denied"), "{out}");
    assert!(!repo.join("r2.txt").exists());

    // Expired: refused once the approval times out.
    host.ok(
        &repo,
        &["config", "set", "--global", "approvals.ttlSeconds", "1"],
    );
    let (ok, out) = finish(host.spawn(
        &repo,
        &[
            "exec",
            "--",
            "agentbox-ctl",
            "cp",
            "--to-host",
            "out/r.txt",
            "r3.txt",
        ],
    ));
    assert!(!ok && out.contains("nobody approved it in time"), "{out}");
    assert!(!repo.join("r3.txt").exists());

    // The policy can let copies run unasked; the limits still hold.
    host.ok(
        &repo,
        &["config", "set", "--project", "policy.copyFromHost", "allow"],
    );
    host.ok(
        &repo,
        &["config", "set", "--project", "policy.copyToHost", "allow"],
    );
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "agentbox-ctl",
            "cp",
            "--from-host",
            "src/lib.txt",
            "from-host.txt",
        ],
    );
    assert_eq!(
        host.ok(&repo, &["exec", "--", "cat", "from-host.txt"]),
        "one\nedited\n"
    );
    let outside = host.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::os::unix::fs::symlink(&outside, repo.join("link")).expect("symlink");
    for (args, why) in [
        (
            vec!["--to-host", "out/r.txt", "../escaped.txt"],
            "leaves the project",
        ),
        (
            vec!["--to-host", "out/r.txt", ".git/hooks/pre-commit"],
            ".git",
        ),
        (vec!["--to-host", ".envrc", "."], "run by the host"),
        (vec!["--to-host", "out/r.txt", "link/"], "symlink"),
        (vec!["--from-host", ".git/config", "x"], ".git"),
        (vec!["--from-host", "../", "x"], "leaves the project"),
        (vec!["--from-host", "/etc/passwd", "x"], "absolute"),
    ] {
        let mut full = vec!["exec", "--", "agentbox-ctl", "cp"];
        full.extend(&args);
        let out = host.run(&repo, &full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(why),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);
    assert!(!host.dir.path().join("escaped.txt").exists() && !repo.join(".envrc").exists());
    assert!(!repo.join(".git/hooks/pre-commit").exists());
    let audit: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["audit", "--json"])).expect("json");
    let decisions: Vec<&str> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("cp ")))
        .map(|e| e["decision"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        decisions,
        [
            "done", "denied", "expired", "done", "refused", "refused", "refused", "refused",
            "refused", "refused", "refused"
        ]
    );
    host.ok(&repo, &["destroy", "-y", "cpy"]);
}

#[test]
fn a_repository_cannot_set_the_host_policy() {
    let host = Host::new();
    let repo = host.repo("sneaky", "defaults:\n  policy:\n    copyToHost: allow\n");
    host.fails(&repo, &["create"], "the policy comes from host config only");
}

#[test]
fn two_hundred_concurrent_requests_complete_once_each() {
    let host = Host::new();
    let repo = host.repo("many", "");
    host.ok(&repo, &["create", "--name", "many"]);
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "for i in $(seq 200); do (agentbox-ctl notify --wait 120000 n$i || echo $i >> failed.txt) & done; wait",
        ],
    );
    assert!(
        !host
            .run(&repo, &["exec", "--", "test", "-e", "failed.txt"])
            .status
            .success(),
        "some requests failed: {}",
        host.ok(&repo, &["exec", "--", "sh", "-c", "cat failed.txt || true"])
    );
    let audit: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["audit", "--json"])).expect("json");
    let done: Vec<&str> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "notify" && e["decision"] == "done")
        .filter_map(|e| e["request_id"].as_str())
        .collect();
    let unique: std::collections::BTreeSet<&str> = done.iter().copied().collect();
    assert_eq!((done.len(), unique.len()), (200, 200));
    host.ok(&repo, &["destroy", "-y", "many"]);
}

#[test]
fn a_push_survives_kill_9_of_the_host_bridge_and_takes_effect_once() {
    let host = Host::new();
    let repo = host.repo("killed", "");
    let remote = host.dir.path().join("remote.git");
    git_in(host.dir.path(), &["init", "-q", "--bare", "remote.git"]);
    git_in(
        &repo,
        &["remote", "add", "origin", remote.to_str().expect("utf-8")],
    );
    // The remote counts the pushes that change it, and takes its time with each.
    let count = host.dir.path().join("pushes.txt");
    let hook = remote.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat >/dev/null\necho push >> {}\nsleep 2\n",
            count.display()
        ),
    )
    .expect("hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let out = Command::new(AGENTBOX)
        .args(["create", "--name", "k1"])
        .current_dir(&repo)
        .env("AGENTBOX_HOME", host.home())
        .env("AGENTBOX_BRIDGE_LEASE_MS", "2000")
        .stdin(Stdio::null())
        .output()
        .expect("create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "echo x >> src/lib.txt && git -c user.email=b@b -c user.name=b commit -qam in-box",
        ],
    );
    let push = host.spawn(&repo, &["exec", "--", "git", "push"]);
    assert!(
        eventually(|| count.exists()),
        "the push never reached the remote"
    );
    let status: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["bridge", "status", "--json"])).expect("json");
    let pid = status["pid"].as_i64().expect("bridge pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    host.ok(&repo, &["bridge", "start"]);
    let (ok, out) = finish(push);
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read_to_string(&count).expect("count"),
        "push\n",
        "the remote saw the push more than once"
    );
    let log = Command::new("git")
        .arg("-C")
        .arg(&remote)
        .args(["log", "-1", "--format=%s", "agentbox/k1"])
        .output()
        .expect("git log");
    assert_eq!(String::from_utf8_lossy(&log.stdout), "in-box\n");
    host.ok(&repo, &["destroy", "-y", "k1"]);
}

#[test]
fn fetch_and_pull_in_the_box_go_through_the_host() {
    let host = Host::new();
    let repo = host.repo("fetcher", "");
    let remote = host.dir.path().join("upstream.git");
    git_in(host.dir.path(), &["init", "-q", "--bare", "upstream.git"]);
    git_in(
        &repo,
        &["remote", "add", "origin", remote.to_str().expect("utf-8")],
    );
    git_in(&repo, &["push", "-q", "origin", "main"]);
    host.ok(&repo, &["create", "--name", "f1"]);

    // Someone else moves main on the remote.
    let other = host.dir.path().join("other");
    git_in(
        host.dir.path(),
        &[
            "clone",
            "-q",
            "-b",
            "main",
            remote.to_str().expect("utf-8"),
            "other",
        ],
    );
    std::fs::write(other.join("upstream.txt"), "from upstream\n").expect("write");
    git_in(&other, &["add", "."]);
    git_in(
        &other,
        &[
            "-c",
            "user.email=o@o",
            "-c",
            "user.name=o",
            "commit",
            "-qm",
            "upstream change",
        ],
    );
    git_in(&other, &["push", "-q", "origin", "main"]);

    let out = host.ok(&repo, &["exec", "--", "git", "fetch", "origin", "main"]);
    assert!(out.contains("fetched origin/main"), "{out}");
    assert_eq!(
        host.ok(
            &repo,
            &[
                "exec",
                "--",
                "git",
                "log",
                "-1",
                "--format=%s",
                "refs/remotes/origin/main"
            ]
        ),
        "upstream change\n"
    );
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "git",
            "-c",
            "user.email=b@b",
            "-c",
            "user.name=b",
            "commit",
            "-qam",
            "box work",
        ],
    );
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "git",
            "-c",
            "user.email=b@b",
            "-c",
            "user.name=b",
            "pull",
            "origin",
            "main",
        ],
    );
    assert_eq!(
        host.ok(&repo, &["exec", "--", "cat", "upstream.txt"]),
        "from upstream\n"
    );
    // Nothing new: no bundle, still fine.
    host.ok(&repo, &["exec", "--", "git", "fetch", "origin"]);
    let left = host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "ls .git/*.bundle 2>/dev/null | wc -l",
        ],
    );
    assert_eq!(left.trim(), "0", "bundles left in .git");

    let sentinel = host.dir.path().join("pwned");
    let upload_pack = format!("--upload-pack=touch {}", sentinel.display());
    for (args, why) in [
        (
            vec!["git", "fetch", "/tmp/elsewhere.git", "main"],
            "not a remote name",
        ),
        (
            vec!["git", "fetch", upload_pack.as_str(), "origin"],
            "is not allowed",
        ),
        (vec!["git", "pull", "origin"], "name the branch"),
        (
            vec!["git", "fetch", "nosuch", "main"],
            "no remote named `nosuch`",
        ),
        (
            vec!["git", "fetch", "origin", "--", "main"],
            "is not allowed",
        ),
    ] {
        let mut full = vec!["exec", "--"];
        full.extend(&args);
        let out = host.run(&repo, &full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(why),
            "{args:?}: {stderr}"
        );
    }
    assert!(!sentinel.exists());
    host.ok(&repo, &["destroy", "-y", "f1"]);
}

#[test]
fn gh_pr_goes_to_the_hosts_gh_for_the_boxs_branch_only() {
    let host = Host::new();
    // The host's gh: records each argument on a line, answers like gh.
    let record = host.dir.path().join("gh-calls.txt");
    let gh = host.dir.path().join("gh");
    std::fs::write(
        &gh,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> {}; done\necho --- >> {}\necho https://github.example/o/r/pull/7\n",
            record.display(),
            record.display()
        ),
    )
    .expect("write");
    std::fs::set_permissions(&gh, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let repo = host.repo("ghproj", "");
    host.ok(&repo, &["create", "--name", "g1"]);
    host.ok(
        &repo,
        &["config", "set", "--project", "policy.prCreate", "allow"],
    );

    let out = host.ok(
        &repo,
        &[
            "exec",
            "--",
            "gh",
            "pr",
            "create",
            "--title",
            "--repo=evil/x",
            "--body",
            "line 1\nline 2",
            "--draft",
        ],
    );
    assert_eq!(out, "https://github.example/o/r/pull/7\n");
    host.ok(&repo, &["exec", "--", "gh", "pr", "view"]);
    host.ok(
        &repo,
        &[
            "exec", "--", "gh", "pr", "list", "--state", "merged", "-L", "5",
        ],
    );
    let calls = std::fs::read_to_string(&record).expect("calls");
    assert_eq!(
        calls,
        "pr\ncreate\n--head=agentbox/g1\n--title=--repo=evil/x\n--body=line 1\nline 2\n--draft\n---\n\
         pr\nview\nagentbox/g1\n---\n\
         pr\nlist\n--state=merged\n--limit=5\n---\n"
    );
    for (args, why) in [
        (vec!["gh", "pr", "merge", "7"], "not carried to the host"),
        (vec!["gh", "api", "/user"], "not carried to the host"),
        (vec!["gh", "auth", "token"], "not carried to the host"),
        (
            vec!["gh", "pr", "create", "-t", "x", "--repo", "evil/x"],
            "not carried",
        ),
        (
            vec!["gh", "pr", "list", "--state", "open;rm"],
            "is not a state",
        ),
    ] {
        let mut full = vec!["exec", "--"];
        full.extend(&args);
        let out = host.run(&repo, &full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(why),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&record).expect("calls"),
        calls,
        "a refused request ran gh"
    );
    host.ok(&repo, &["destroy", "-y", "g1"]);
}
