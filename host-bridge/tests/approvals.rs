//! Issue 20, holes 2, 3 and 9, played by a hostile box: an approval shows everything that
//! decides the request's effect, it runs only the exact request it showed (not another
//! one the box put under its id), a recorded outcome answers only the request it was for,
//! and no string from the box reaches the user's terminal raw.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The box's relay journal: the box owns it and can write anything into it.
fn relay_db(host: &Host, box_name: &str) -> PathBuf {
    host.home()
        .join("boxes")
        .join(box_name)
        .join("state")
        .join("relay.db")
}

/// Plays a compromised box: rewrites the request journalled under `id` with `change` and
/// queues it again, so that the host leases it anew.
fn requeue_changed(
    host: &Host,
    box_name: &str,
    id: &str,
    change: impl FnOnce(&mut serde_json::Value),
) {
    let conn = rusqlite::Connection::open(relay_db(host, box_name)).expect("open relay.db");
    conn.busy_timeout(Duration::from_secs(10)).expect("timeout");
    let text: String = conn
        .query_row("SELECT request FROM requests WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .expect("the request is journalled");
    let mut request: serde_json::Value = serde_json::from_str(&text).expect("json");
    change(&mut request);
    let changed = conn
        .execute(
            "UPDATE requests SET request = ?2, state = 'queued', lease_expires_at_ms = NULL WHERE id = ?1",
            rusqlite::params![id, request.to_string()],
        )
        .expect("rewrite");
    assert_eq!(changed, 1);
}

/// The audit entries of request `id`, once there are at least `count`.
fn audit_of(host: &Host, repo: &Path, id: &str, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let audit: serde_json::Value =
            serde_json::from_str(&host.ok(repo, &["audit", "--json"])).expect("json");
        let entries: Vec<serde_json::Value> = audit
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["request_id"] == id)
            .cloned()
            .collect();
        if entries.len() >= count {
            return entries;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} got {} audit entries, not {count}",
            entries.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .timed_output()
        .expect("git")
}

/// A repo with a bare `origin` whose `main` has the host's commits.
fn repo_with_remote(host: &Host, name: &str) -> (PathBuf, PathBuf) {
    let repo = host.repo(name, "");
    let remote = host.dir.path().join(format!("{name}-remote.git"));
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
    assert!(git(&repo, &["push", "-q", "origin", "main"])
        .status
        .success());
    (repo, remote)
}

#[test]
fn a_forced_push_shows_the_force_and_the_exact_ref_update_in_its_approval() {
    let host = Host::new();
    let (repo, remote) = repo_with_remote(&host, "forced");
    let main_before = git(&remote, &["rev-parse", "main"]).stdout;
    host.ok(&repo, &["create", "--name", "f1"]);
    // The box commits and asks for a forced push onto the host's main.
    let rewrite = host.run(&repo, &["exec", "--", "sh", "-c", "echo evil > evil.txt && git add evil.txt && git -c user.name=a -c user.email=a@b commit -qm evil"]);
    assert!(
        rewrite.status.success(),
        "{}",
        String::from_utf8_lossy(&rewrite.stderr)
    );
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &["--force-with-lease", "origin", "HEAD:main"],
            &["force", "origin", "refs/heads/main", "bytes"],
        ),
        (
            &["--tags", "origin", "HEAD:main"],
            &["tags", "origin", "refs/heads/main"],
        ),
        (
            &["-n", "--force-with-lease", "origin", "HEAD:release"],
            &["dry run", "force", "refs/heads/release"],
        ),
    ];
    for (args, shown) in cases {
        let mut argv = vec!["exec", "--", "git", "push"];
        argv.extend(args);
        let child = host.spawn(&repo, &argv);
        let approval = host.pending_approval(&repo);
        let summary = approval["summary"].as_str().unwrap_or("").to_lowercase();
        host.ok(&repo, &["deny", approval["id"].as_str().expect("id")]);
        let (ok, out) = finish(child);
        assert!(!ok, "{out}");
        for word in shown {
            assert!(
                summary.contains(word),
                "`git push {}`: the approval does not show `{word}`: {summary}",
                args.join(" ")
            );
        }
        // The text listing shows the same.
        let listed = host.ok(&repo, &["approvals", "--all"]).to_lowercase();
        assert!(listed.contains(&summary), "{listed}");
    }
    assert_eq!(git(&remote, &["rev-parse", "main"]).stdout, main_before);
    host.ok(&repo, &["destroy", "-y", "--force", "f1"]);
}

#[test]
fn an_approval_runs_only_the_request_it_showed() {
    let host = Host::new();
    let repo = host.repo("bound", "");
    host.ok(&repo, &["create", "--name", "b1"]);
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "mkdir -p out && echo report > out/r.txt",
        ],
    );
    let mut hostile = 0;
    // The user is shown a copy into `shown.txt`; while the bridge is down the box swaps it
    // for another destination, another name, or a copy the other way; the user approves
    // what was shown.
    for (n, change) in [
        (
            "dest",
            Box::new(|v: &mut serde_json::Value| v["copy_to_host"]["dest"] = "evil.txt".into())
                as Box<dyn FnOnce(&mut serde_json::Value)>,
        ),
        (
            "name",
            Box::new(|v: &mut serde_json::Value| v["copy_to_host"]["name"] = "evil.txt".into()),
        ),
        (
            "kind",
            Box::new(
                |v: &mut serde_json::Value| *v = serde_json::json!({"copy_from_host": {"src": "src/lib.txt", "dest": "stolen.txt"}}),
            ),
        ),
    ] {
        hostile += 1;
        let child = host.spawn(
            &repo,
            &[
                "exec",
                "--",
                "agentbox-ctl",
                "cp",
                "--to-host",
                "out/r.txt",
                "shown.txt",
            ],
        );
        let approval = host.pending_approval(&repo);
        let (id, request_id) = (
            approval["id"].as_str().expect("id").to_string(),
            approval["request_id"]
                .as_str()
                .expect("request id")
                .to_string(),
        );
        host.ok(&repo, &["bridge", "stop"]);
        requeue_changed(&host, "b1", &request_id, change);
        host.ok(&repo, &["approve", &id]);
        host.ok(&repo, &["bridge", "start"]);
        let entries = audit_of(&host, &repo, &request_id, 1);
        let (_, out) = finish(child);
        assert!(
            entries.iter().all(|e| e["decision"] == "refused"),
            "{n}: the changed request ran under the approval of another: {entries:?} {out}"
        );
        assert!(
            entries[0]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("changed")),
            "{n}: {entries:?}"
        );
        assert!(
            !repo.join("evil.txt").exists(),
            "{n}: the swapped copy landed"
        );
        assert!(!repo.join("shown.txt").exists(), "{n}");
        assert!(
            !host.home().join("boxes/b1/workspace/stolen.txt").exists(),
            "{n}: a host file went to the box under the approval of a copy to the host"
        );
        // Approved or not, the approval stays bound: the box cannot put the request back
        // to have it run now.
        host.ok(&repo, &["bridge", "stop"]);
        requeue_changed(&host, "b1", &request_id, |_| {});
        host.ok(&repo, &["bridge", "start"]);
        audit_of(&host, &repo, &request_id, 2);
        assert!(!repo.join("shown.txt").exists(), "{n}");
    }
    assert_eq!(hostile, 3);
    // The honest path still works.
    let child = host.spawn(
        &repo,
        &[
            "exec",
            "--",
            "agentbox-ctl",
            "cp",
            "--to-host",
            "out/r.txt",
            "shown.txt",
        ],
    );
    let approval = host.pending_approval(&repo);
    host.ok(&repo, &["approve", approval["id"].as_str().expect("id")]);
    let (ok, out) = finish(child);
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read_to_string(repo.join("shown.txt")).expect("landed"),
        "report\n"
    );
    host.ok(&repo, &["destroy", "-y", "--force", "b1"]);
}

#[test]
fn a_recorded_outcome_answers_only_the_request_it_was_for() {
    let host = Host::new();
    let repo = host.repo("replayed", "");
    host.ok(&repo, &["create", "--name", "r1"]);
    host.ok(
        &repo,
        &["config", "set", "--project", "policy.notify", "allow"],
    );
    let id = host
        .ok(&repo, &["exec", "--", "agentbox-ctl", "notify", "first"])
        .trim()
        .to_string();
    audit_of(&host, &repo, &id, 1);
    // Re-delivered unchanged: answered from the record. (The bridge is restarted around
    // each rewrite so that it polls at once, not after its 20 s hold.)
    host.ok(&repo, &["bridge", "stop"]);
    requeue_changed(&host, "r1", &id, |_| {});
    host.ok(&repo, &["bridge", "start"]);
    let entries = audit_of(&host, &repo, &id, 2);
    assert_eq!(entries[1]["decision"], "replayed", "{entries:?}");
    // Re-delivered changed: not answered with another request's outcome.
    host.ok(&repo, &["bridge", "stop"]);
    requeue_changed(&host, "r1", &id, |v| {
        v["notify"]["message"] = "second".into();
    });
    host.ok(&repo, &["bridge", "start"]);
    let entries = audit_of(&host, &repo, &id, 3);
    assert_eq!(entries[2]["decision"], "refused", "{entries:?}");
    assert!(
        entries[2]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("changed")),
        "{entries:?}"
    );
    host.ok(&repo, &["destroy", "-y", "r1"]);
}

/// Names and texts a box can choose, each with what the terminal must show instead.
const HOSTILE: [(&str, &str); 5] = [
    ("a\u{1b}[2Kb", "a\\x1b[2Kb"),
    ("line\nforged", "line\\nforged"),
    ("cr\rover", "cr\\rover"),
    ("bell\u{7}", "bell\\x07"),
    ("rtl\u{202e}txt", "rtl\\u{202e}txt"),
];

fn assert_shown(what: &str, text: &str, lines: usize) {
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
        "{what}: a raw control character reached the terminal: {text:?}"
    );
    assert_eq!(text.lines().count(), lines, "{what}: {text:?}");
    for (_, visible) in HOSTILE {
        assert!(
            text.contains(visible),
            "{what}: `{visible}` not shown in {text:?}"
        );
    }
}

#[test]
fn box_strings_reach_the_terminal_escaped() {
    let host = Host::new();
    let repo = host.repo("escapes", "");
    host.ok(&repo, &["create", "--name", "e1"]);
    host.ok(
        &repo,
        &["config", "set", "--project", "policy.notify", "allow"],
    );
    for (raw, _) in HOSTILE {
        // File names in the workspace, for `download`'s plan.
        std::fs::write(
            host.home()
                .join("boxes/e1/workspace")
                .join(format!("f-{raw}")),
            "x",
        )
        .expect("write");
    }
    let out = host.run(&repo, &["download", "--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = String::from_utf8_lossy(&out.stderr);
    let plan: String = plan
        .lines()
        .filter(|l| l.contains("f-"))
        .flat_map(|l| [l, "\n"])
        .collect();
    assert_shown("download", &plan, HOSTILE.len());

    // An error that carries the relay's words (here the box path it could not send).
    let out = host.run(
        &repo,
        &[
            "cp",
            &format!("e1:{}", HOSTILE[0].0),
            host.dir.path().join("got").to_str().expect("utf-8"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !err.contains('\u{1b}') && err.contains(HOSTILE[0].1),
        "{err:?}"
    );

    // Notifications, for `audit`.
    for (raw, _) in HOSTILE {
        host.ok(&repo, &["exec", "--", "agentbox-ctl", "notify", raw]);
    }
    // A notify's audit entry is written after its answer reaches the box: wait for all.
    let mut audit = String::new();
    common::eventually(|| {
        audit = host.ok(&repo, &["audit"]);
        audit.lines().count() > HOSTILE.len()
    });
    // A header, then one line each.
    assert_shown("audit", &audit, HOSTILE.len() + 1);
    let json: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["audit", "--json"])).expect("--json stays JSON");
    assert!(
        json[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(HOSTILE[0].0)),
        "{json}"
    );

    // Copies named by the box, for `approvals`, `approve` and `deny`.
    for (raw, _) in HOSTILE {
        let name = format!("c-{raw}");
        std::fs::write(host.home().join("boxes/e1/workspace").join(&name), "x").expect("write");
        let child = host.spawn(
            &repo,
            &[
                "exec",
                "--",
                "agentbox-ctl",
                "cp",
                "--to-host",
                &name,
                "docs/",
            ],
        );
        host.pending_approval(&repo);
        let listed = host.ok(&repo, &["approvals"]);
        assert_eq!(listed.lines().count(), 1, "{listed:?}");
        assert!(
            !listed.chars().any(|c| c.is_control() && c != '\n'),
            "{listed:?}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&host.ok(&repo, &["approvals", "--json"])).expect("json");
        let id = json[0]["id"].as_str().expect("id").to_string();
        let denied = host.ok(&repo, &["deny", &id]);
        assert_eq!(denied.lines().count(), 1, "{denied:?}");
        assert!(
            !denied.chars().any(|c| c.is_control() && c != '\n'),
            "{denied:?}"
        );
        finish(child);
    }
    let all = host.ok(&repo, &["approvals", "--all"]);
    assert_shown("approvals", &all, HOSTILE.len());
    host.ok(&repo, &["destroy", "-y", "--force", "e1"]);
}

/// How long approvals wait is the host's policy: a repository's `agentbox.yaml` (which a
/// box can edit and a pull can bring) may not set any `approvals.*` key.
#[test]
fn a_repository_cannot_set_approvals() {
    let host = Host::new();
    let repo = host.repo(
        "approvalsrepo",
        "services: {}\ndefaults:\n  approvals.ttlSeconds: 999999\n",
    );
    let refusal = "agentbox.yaml: defaults may not set `approvals.ttlSeconds`: the policy comes from host config only";
    host.fails(&repo, &["create", "--name", "ap1"], refusal);
    host.fails(&repo, &["config", "get", "approvals.ttlSeconds"], refusal);
    assert!(host.list(&repo).is_empty(), "a box was made");
    // The host's own config may set it, and that is what is used.
    std::fs::write(repo.join("agentbox.yaml"), "services: {}\n").expect("write");
    host.ok(
        &repo,
        &["config", "set", "--global", "approvals.ttlSeconds", "60"],
    );
    let got = host.ok(&repo, &["config", "get", "approvals.ttlSeconds"]);
    assert!(got.starts_with("60"), "{got}");
}
