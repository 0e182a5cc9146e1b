//! A box's `git push --tags` names each tag and its object (issue 20 #5's sibling): the host
//! pushes a tag only if the box's bundle carries it at that object, never an object the
//! host happens to have (a private commit of the user's, a tag of the host's), whatever
//! name the box gives it. Real git repositories, the bridge's own push executor.

mod common;

use std::path::Path;
use std::process::Command;

use agentbox::bridge::exec::{git_push, BoxFacts};
use agentbox_protocol::bridge::{BlobRef, GitFlag, GitOp, GitRequest, TagRef};
use common::TimedOutput;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .timed_output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn commit(dir: &Path, file: &str) -> String {
    std::fs::write(dir.join(file), file).expect("write");
    git(dir, &["add", file]);
    git(dir, &["commit", "-q", "-m", file]);
    git(dir, &["rev-parse", "HEAD"])
}

#[test]
fn a_tag_is_pushed_only_as_the_bundle_carries_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (host, remote, boxed) = (
        tmp.path().join("host"),
        tmp.path().join("remote.git"),
        tmp.path().join("box"),
    );
    for d in [&host, &remote] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    git(&remote, &["init", "-q", "--bare"]);
    git(&host, &["init", "-q"]);
    let base = commit(&host, "base");
    git(
        &host,
        &["remote", "add", "origin", remote.to_str().expect("utf-8")],
    );
    git(&host, &["push", "-q", "origin", "main"]);
    // What the host keeps to itself: a commit on a private branch, and a tag of its own.
    git(&host, &["checkout", "-q", "-b", "private"]);
    let private = commit(&host, "secret");
    git(&host, &["tag", "-a", "host-release", "-m", "not yet"]);
    let host_tag = git(&host, &["rev-parse", "host-release"]);
    let private_tree = git(&host, &["rev-parse", "HEAD^{tree}"]);
    git(&host, &["checkout", "-q", "main"]);
    // The box: the seed, one commit, one tag of its own, in a bundle since the seed.
    git(
        tmp.path(),
        &["clone", "-q", host.to_str().expect("utf-8"), "box"],
    );
    let own = commit(&boxed, "work");
    git(&boxed, &["tag", "box-tag"]);
    let bundle = tmp.path().join("push.bundle");
    git(
        &boxed,
        &[
            "bundle",
            "create",
            "-q",
            bundle.to_str().expect("utf-8"),
            "HEAD",
            "refs/tags/box-tag",
            &format!("^{base}"),
        ],
    );
    let lock = tmp.path().join("push.lock");
    let facts = BoxFacts {
        name: "b",
        project: &host,
        branch: "agentbox/b",
        push_lock: &lock,
    };
    let request = |tags: Vec<TagRef>| GitRequest {
        op: GitOp::Push,
        remote: Some("origin".into()),
        branch: None,
        flags: vec![GitFlag::Tags],
        bundle: Some(BlobRef {
            blake3: "0".repeat(64),
            size: 1,
        }),
        tags,
    };
    let tag = |name: &str, object: &str| TagRef {
        name: name.into(),
        object: object.into(),
    };
    // Each names an object of the host's, under a new name or the box's own tag's name.
    let hostile = [
        vec![tag("stolen", &private)],
        vec![tag("box-tag", &own), tag("stolen", &private)],
        vec![tag("box-tag", &private)],
        vec![tag("host-release", &host_tag)],
        vec![tag("release", &host_tag)],
        vec![tag("tree", &private_tree)],
        vec![tag("base", &base)],
    ];
    for tags in &hostile {
        let done = git_push(&facts, &request(tags.clone()), &bundle);
        assert_ne!(
            done.outcome.exit_code, 0,
            "the host pushed {tags:?}: {}",
            done.detail
        );
        let published = git(&remote, &["tag", "--list"]);
        assert!(published.is_empty(), "{tags:?} published tags: {published}");
        let leaked = Command::new("git")
            .args(["cat-file", "-e", &private])
            .current_dir(&remote)
            .timed_output()
            .expect("git");
        assert!(
            !leaked.status.success(),
            "{tags:?} put the host's private commit on the remote"
        );
    }
    // The box's own tag, as its bundle carries it, goes.
    let done = git_push(&facts, &request(vec![tag("box-tag", &own)]), &bundle);
    assert_eq!(done.outcome.exit_code, 0, "{}", done.detail);
    assert_eq!(git(&remote, &["rev-parse", "box-tag"]), own);
    eprintln!("{} hostile tag sets tried", hostile.len());
}
