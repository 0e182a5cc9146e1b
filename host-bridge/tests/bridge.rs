//! The bridge end to end on local boxes: notify/open, git push/fetch/pull, gh, copies
//! under the host policy and approvals, attacks refused, kill -9 and concurrency.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A box's `agentbox-ctl open` picks the host's program as `agentbox url --open` does:
/// without `AGENTBOX_OPENER`, `$BROWSER` (its words kept, `%s` the address), so a user
/// whose browser is set there gets the box's pages in it too (the bridge once knew only
/// `AGENTBOX_OPENER` and `xdg-open`, and reached `$BROWSER` only through xdg-open's own
/// fallback); and its answer does not wait for the browser to exit.
#[test]
fn a_boxs_open_uses_browser_like_url_open() {
    let host = Host::new();
    let sentinel = host.dir.path().join("browsed.txt");
    let pid_file = host.dir.path().join("browser.pid");
    // A browser started by its own name runs until its window is closed: this one stays 40 s.
    let browser = host.program(
        "my-browser",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> {}\necho $$ > {}\nexec sleep 40\n",
            sentinel.display(),
            pid_file.display()
        ),
    );
    // An xdg-open that fails (a machine with no desktop session): `url --open` never gets
    // that far when `$BROWSER` is set, and neither may the box's open.
    host.program("xdg-open", "#!/bin/sh\nexit 3\n");
    let repo = host.repo("browses", "");
    let run = |args: &[&str]| {
        Command::new(AGENTBOX)
            .args(args)
            .current_dir(&repo)
            .env("AGENTBOX_HOME", host.home())
            .env_remove("AGENTBOX_OPENER")
            .env("BROWSER", format!("{} --new-tab %s", browser.display()))
            .env("PATH", host.path())
            .timed_output()
            .expect("run agentbox")
    };
    let made = run(&["create", "--name", "browser"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let asked = std::time::Instant::now();
    let out = run(&[
        "exec",
        "--",
        "agentbox-ctl",
        "open",
        "https://example.com/pr/8",
        "--wait",
        "20000",
    ]);
    let answered = asked.elapsed();
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").arg(pid.trim()).timed_output();
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&sentinel).expect("the browser ran"),
        "--new-tab\nhttps://example.com/pr/8\n"
    );
    // The open is answered once the browser has the address, not when its window closes.
    assert!(
        answered < Duration::from_secs(15),
        "the box waited {answered:?} for the browser to exit"
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
            .timed_output()
            .expect("git")
    };
    assert!(Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&remote)
        .timed_output()
        .expect("git")
        .status
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
            vec!["git", "push", "origin", "main"],
            "only the checked-out commit can be pushed",
        ),
        (
            vec!["git", "push", "origin", "HEAD:refs/tags/v1"],
            "not a plain branch name",
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
    // Another branch: the host asks (policy.pushOtherBranch defaults to ask), then pushes.
    let child = host.spawn(
        &repo,
        &["exec", "--", "git", "push", "origin", "HEAD:feature-x"],
    );
    let approval = host.pending_approval(&repo);
    assert!(
        approval["summary"]
            .as_str()
            .is_some_and(|s| s.contains("feature-x")),
        "{approval}"
    );
    host.ok(&repo, &["approve", approval["id"].as_str().expect("id")]);
    let (ok, out) = finish(child);
    assert!(ok, "{out}");
    let log = git(&remote, &["log", "-1", "--format=%s", "feature-x"]);
    assert_eq!(String::from_utf8_lossy(&log.stdout).trim(), "more");
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
    // The whole project comes without its .git (remote URLs, hooks, credentials).
    host.ok(&repo, &["exec", "--", "mkdir", "whole"]);
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "agentbox-ctl",
            "cp",
            "--from-host",
            ".",
            "whole/",
        ],
    );
    assert_eq!(
        host.ok(&repo, &["exec", "--", "cat", "whole/cpyproj/src/lib.txt"]),
        "one\nedited\n"
    );
    // Asked so that a failing exec cannot pass for "absent".
    assert_eq!(
        host.ok(
            &repo,
            &[
                "exec",
                "--",
                "sh",
                "-c",
                "cd whole/cpyproj && if test -e .git; then echo present; else echo absent; fi",
            ],
        ),
        "absent\n",
        "the project's .git came along"
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
            "done", "denied", "expired", "done", "done", "refused", "refused", "refused",
            "refused", "refused", "refused", "refused"
        ]
    );
    host.ok(&repo, &["destroy", "-y", "--force", "cpy"]);
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

/// A bare `origin` for `repo` whose pre-receive hook records each push that changes it
/// (`pushes.txt`), then holds the push until the test releases it: a window to kill
/// things in that cannot close early.
struct HeldRemote {
    /// The bare repository.
    path: std::path::PathBuf,
    /// One line per push the hook saw.
    count: std::path::PathBuf,
    /// Created by the test to let the held push finish.
    release: std::path::PathBuf,
    /// One line per push the hook let through.
    done: std::path::PathBuf,
}

impl HeldRemote {
    fn new(host: &Host, repo: &std::path::Path) -> Self {
        git_in(host.dir.path(), &["init", "-q", "--bare", "remote.git"]);
        let path = host.dir.path().join("remote.git");
        git_in(
            repo,
            &["remote", "add", "origin", path.to_str().expect("utf-8")],
        );
        let count = host.dir.path().join("pushes.txt");
        let release = host.dir.path().join("release-push");
        let done = host.dir.path().join("pushes-done.txt");
        let hook = path.join("hooks/pre-receive");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\ncat >/dev/null\necho push >> {count}\ni=0\nwhile [ ! -e {release} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\necho done >> {done}\n",
                count = count.display(),
                release = release.display(),
                done = done.display(),
            ),
        )
        .expect("hook");
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        Self {
            path,
            count,
            release,
            done,
        }
    }

    /// Waits until a push is inside the hook, held.
    fn wait_held(&self) {
        assert!(
            eventually(|| self.count.exists()),
            "the push never reached the remote"
        );
        assert!(!self.done.exists(), "the push was not held");
    }

    /// Asserts the push is still held (what was just done happened mid-push), then lets
    /// it finish.
    fn release_after(&self, what: &str) {
        assert!(
            !self.done.exists(),
            "{what} landed after the push had finished: it proves nothing"
        );
        std::fs::write(&self.release, "").expect("release");
    }
}

#[test]
fn a_push_survives_kill_9_of_the_host_bridge_and_takes_effect_once() {
    let host = Host::new();
    let repo = host.repo("killed", "");
    let remote = HeldRemote::new(&host, &repo);
    let out = Command::new(AGENTBOX)
        .args(["create", "--name", "k1"])
        .current_dir(&repo)
        .env("AGENTBOX_HOME", host.home())
        .env("AGENTBOX_BRIDGE_LEASE_MS", "2000")
        .timed_output()
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
    remote.wait_held();
    let status: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["bridge", "status", "--json"])).expect("json");
    let pid = status["pid"].as_i64().expect("bridge pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    // Until it has died it still holds its lock, and `bridge start` would take it for a
    // running bridge and start none.
    assert!(
        eventually(|| !pid_alive(u64::try_from(pid).expect("pid"))),
        "the killed bridge never ended"
    );
    host.ok(&repo, &["bridge", "start"]);
    remote.release_after("the kill of the host bridge");
    let (ok, out) = finish(push);
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read_to_string(&remote.count).expect("count"),
        "push\n",
        "the remote saw the push more than once"
    );
    let log = Command::new("git")
        .arg("-C")
        .arg(&remote.path)
        .args(["log", "-1", "--format=%s", "agentbox/k1"])
        .timed_output()
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
            "cd .git && find . -maxdepth 1 -name '*.bundle' | wc -l",
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
    host.ok(&repo, &["destroy", "-y", "--force", "f1"]);
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

#[test]
fn a_push_survives_kill_9_of_the_relay_and_takes_effect_once() {
    let host = Host::new();
    let repo = host.repo("relaykill", "");
    let remote = HeldRemote::new(&host, &repo);
    host.ok(&repo, &["create", "--name", "r1"]);
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
    let relay_pid = || -> i32 {
        let info: serde_json::Value = serde_json::from_slice(
            &std::fs::read(host.home().join("boxes/r1/run/relay.json")).expect("relay.json"),
        )
        .expect("json");
        i32::try_from(info["pid"].as_i64().expect("pid")).expect("pid")
    };
    let before = relay_pid();
    let push = host.spawn(&repo, &["exec", "--", "git", "push"]);
    remote.wait_held();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    remote.release_after("the kill of the relay");
    let (ok, out) = finish(push);
    assert!(ok, "{out}");
    assert_ne!(
        relay_pid(),
        before,
        "the ctl daemon did not restart the relay"
    );
    assert_eq!(
        std::fs::read_to_string(&remote.count).expect("count"),
        "push\n",
        "the remote saw the push more than once"
    );
    let log = Command::new("git")
        .arg("-C")
        .arg(&remote.path)
        .args(["log", "-1", "--format=%s", "agentbox/r1"])
        .timed_output()
        .expect("git log");
    assert_eq!(String::from_utf8_lossy(&log.stdout), "in-box\n");
    host.ok(&repo, &["destroy", "-y", "r1"]);
}
