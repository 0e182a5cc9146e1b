//! Issue 20 #4: pushes that reported success and pushed nothing. The box used to move its
//! record of what the remote has after any answered push — a `--dry-run`, a push of
//! another branch — and the next `git push` then said "Everything up-to-date" without
//! asking the host: the commits never reached the remote and were lost with the box.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn git_out(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .timed_output()
        .expect("git");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The remote's log of `branch`, newest first (empty when it has no such branch).
fn remote_log(remote: &Path, branch: &str) -> Vec<String> {
    git_out(remote, &["log", "--format=%s", branch, "--"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_push_after_a_dry_run_or_another_branch_still_reaches_the_remote() {
    let host = Host::new();
    let repo = host.repo("records", "");
    let remote = host.dir.path().join("remote.git");
    git_in(host.dir.path(), &["init", "-q", "--bare", "remote.git"]);
    git_in(
        &repo,
        &["remote", "add", "origin", remote.to_str().expect("utf-8")],
    );
    host.ok(
        &repo,
        &[
            "config",
            "set",
            "--project",
            "policy.pushOtherBranch",
            "allow",
        ],
    );
    host.ok(&repo, &["create", "--name", "rec"]);
    let in_box = |script: &str| {
        let out = host.run(&repo, &["exec", "--", "sh", "-c", script]);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let commit = |msg: &str| {
        in_box(&format!(
            "echo {msg} >> work.txt && git add work.txt && git -c user.name=a -c user.email=a@b commit -qm {msg}"
        ));
    };

    // A dry run answers 0 and changes nothing on the remote...
    commit("one");
    in_box("git push --dry-run");
    assert!(
        remote_log(&remote, "agentbox/rec").is_empty(),
        "a dry run pushed"
    );
    // ...and the real push after it still goes to the host and lands.
    let said = in_box("git push");
    assert!(!said.contains("Everything up-to-date"), "{said}");
    assert_eq!(
        remote_log(&remote, "agentbox/rec")
            .first()
            .map(String::as_str),
        Some("one")
    );

    // A push of the same commits to another branch does not stand for the box's own.
    commit("two");
    in_box("git push origin HEAD:feature");
    assert_eq!(
        remote_log(&remote, "feature").first().map(String::as_str),
        Some("two")
    );
    assert_eq!(
        remote_log(&remote, "agentbox/rec")
            .first()
            .map(String::as_str),
        Some("one"),
        "only feature moved so far"
    );
    in_box("git push");
    assert_eq!(
        remote_log(&remote, "agentbox/rec")
            .first()
            .map(String::as_str),
        Some("two"),
        "the box's branch never got the commit pushed elsewhere first"
    );

    // Nothing new: the host's own push says so, and the remote is unchanged.
    in_box("git push");
    assert_eq!(
        remote_log(&remote, "agentbox/rec").len(),
        4,
        "two + one + the seed's two"
    );
    host.ok(&repo, &["destroy", "-y", "rec"]);
}

/// Issue 20 #5: `git push --tags` in the box made the host run `git push --tags`, which
/// published every tag of the host's repository. Now the box's tags go, by name, at the
/// objects the box gave them — lightweight and annotated — and no tag of the host's.
#[test]
fn push_tags_sends_the_boxs_tags_and_none_of_the_hosts() {
    let host = Host::new();
    let repo = host.repo("tags", "");
    let remote = host.dir.path().join("remote.git");
    git_in(host.dir.path(), &["init", "-q", "--bare", "remote.git"]);
    git_in(
        &repo,
        &["remote", "add", "origin", remote.to_str().expect("utf-8")],
    );
    host.ok(&repo, &["create", "--name", "tg"]);
    // A tag the host keeps to itself (a release not yet public, say).
    git_in(&repo, &["tag", "host-private"]);
    let child = host.spawn(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "echo t > t.txt && git add t.txt && git -c user.name=a -c user.email=a@b commit -qm tagged \
             && git tag box-light && git -c user.name=a -c user.email=a@b tag -a box-annotated -m 'a release' \
             && git push --tags",
        ],
    );
    // Publishing tags asks even under the default `pushOwnBranch: allow`, and the
    // approval names them.
    let approval = host.pending_approval(&repo);
    let summary = approval["summary"].as_str().unwrap_or_default().to_string();
    assert!(
        summary.contains("box-light") && summary.contains("box-annotated"),
        "the approval should name the tags: {summary}"
    );
    host.ok(&repo, &["approve", approval["id"].as_str().expect("id")]);
    let (ok, out) = finish(child);
    assert!(ok, "{out}");
    let remote_tags = git_out(&remote, &["tag", "--list"]);
    assert!(
        remote_tags.contains("box-light") && remote_tags.contains("box-annotated"),
        "the box's tags did not arrive: {remote_tags:?}"
    );
    assert!(
        !remote_tags.contains("host-private"),
        "a tag of the host's repository was published: {remote_tags:?}"
    );
    // Each at the box's object: the annotated one is a tag object with its message.
    let box_head = String::from_utf8_lossy(
        &host
            .run(&repo, &["exec", "--", "git", "rev-parse", "HEAD"])
            .stdout,
    )
    .trim()
    .to_string();
    assert_eq!(
        git_out(&remote, &["rev-parse", "box-light"]).trim(),
        box_head
    );
    assert_eq!(
        git_out(&remote, &["cat-file", "-t", "box-annotated"]).trim(),
        "tag"
    );
    assert!(git_out(&remote, &["cat-file", "-p", "box-annotated"]).contains("a release"));
    host.ok(&repo, &["destroy", "-y", "tg"]);
}
