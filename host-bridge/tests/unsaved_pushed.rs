//! `destroy` counts as unpushed only the commits the host does not have (issue 20 #16's
//! false finding): a push the host carried out whose answer the box never recorded (its
//! `git push` was killed by a stop, as in the Daytona e2e's queued push, or a box from a
//! checkpoint of it) is not work at stake.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .timed_output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn commits_the_host_received_are_not_unpushed_work_whatever_the_box_recorded() {
    let host = Host::new();
    let repo = host.repo("pushedproj", "");
    let remote = host.dir.path().join("pushed-remote.git");
    git_ok(
        host.dir.path(),
        &["init", "-q", "--bare", "pushed-remote.git"],
    );
    git_ok(
        &repo,
        &["remote", "add", "origin", remote.to_str().expect("utf-8")],
    );
    git_ok(&repo, &["push", "-q", "origin", "main"]);
    host.ok(&repo, &["create", "--name", "p1"]);
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "git config user.email b@b && git config user.name b \
             && echo a > a.txt && git add a.txt && git commit -qm one \
             && echo b > b.txt && git add b.txt && git commit -qm two && git push -q",
        ],
    );
    assert_eq!(
        git_ok(&remote, &["log", "-1", "--format=%s", "agentbox/p1"]),
        "two"
    );
    // The box loses its record of the answer (its `git push` died before it wrote it).
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "git",
            "update-ref",
            "-d",
            "refs/agentbox/host-has",
        ],
    );
    // One more commit the host has not received: that one, and only that one, counts.
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "echo c > c.txt && git add c.txt && git commit -qm three",
        ],
    );
    host.fails(
        &repo,
        &["destroy", "-y", "p1"],
        "box `p1` has 1 commit not pushed",
    );
    host.ok(
        &repo,
        &["exec", "--", "git", "reset", "-q", "--hard", "HEAD~1"],
    );
    host.ok(&repo, &["destroy", "-y", "p1"]);
    assert!(host.list(&repo).is_empty(), "the box is still there");
}
