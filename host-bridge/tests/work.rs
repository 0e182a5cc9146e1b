//! Work that must never be lost (issue 20): `destroy` of a box with work the host does not
//! have, `sync` after a seed from a dirty tree, `download` over host edits.

mod common;

use common::*;

#[test]
fn destroy_names_the_work_it_would_lose_and_wants_force_for_it() {
    let host = Host::new();
    // Seeded from a dirty tree (an uncommitted edit, an untracked file): what the host
    // gave is not the box's work.
    let repo = host.repo("workproj", "");
    host.ok(&repo, &["create", "--name", "clean"]);
    host.ok(&repo, &["destroy", "-y", "clean"]);
    assert!(host.list(&repo).is_empty());

    host.ok(&repo, &["create", "--name", "w1"]);
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "git config user.email b@b && git config user.name b \
             && echo a > a.txt && git add a.txt && git commit -qm one \
             && echo b > b.txt && git add b.txt && git commit -qm two \
             && echo box > src/lib.txt && echo new > notes/box.md",
        ],
    );
    host.fails(
        &repo,
        &["destroy", "-y", "w1"],
        "box `w1` has 2 commits not pushed and 2 changed files not brought back",
    );
    host.fails(&repo, &["destroy", "w1"], "-y also needs --force");
    assert_eq!(host.list(&repo).len(), 1, "the box is still there");
    assert_eq!(
        host.ok(&repo, &["exec", "--", "cat", "src/lib.txt"]),
        "box\n"
    );
    host.ok(&repo, &["destroy", "-y", "--force", "w1"]);
    assert!(host.list(&repo).is_empty());

    // A stopped box cannot be checked: --force is the only way.
    host.ok(&repo, &["create", "--name", "w2"]);
    host.ok(&repo, &["stop", "w2"]);
    host.fails(&repo, &["destroy", "-y", "w2"], "is stopped");
    host.ok(&repo, &["destroy", "-y", "--force", "w2"]);
    assert!(host.list(&repo).is_empty());
}

#[test]
fn sync_after_a_seed_from_a_dirty_tree_applies_what_the_box_did_not_touch() {
    let host = Host::new();
    // Seeded with an uncommitted edit of src/lib.txt.
    let repo = host.repo("dirtysync", "");
    host.ok(&repo, &["create", "--name", "d1"]);
    let cat = |p: &str| host.ok(&repo, &["exec", "--", "cat", p]);
    assert_eq!(cat("src/lib.txt"), "one\nedited\n");

    // The host edits the seeded file again and another tracked file; the box touches
    // neither.
    std::fs::write(repo.join("src/lib.txt"), "one\nedited\nmore\n").expect("write");
    std::fs::write(repo.join("agentbox.yaml"), "# host\n").expect("write");
    let out: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["sync", "--json"])).expect("json");
    assert_eq!(cat("src/lib.txt"), "one\nedited\nmore\n", "{out}");
    assert_eq!(cat("agentbox.yaml"), "# host\n", "{out}");
    assert_eq!(
        out["report"]["kept_box_version"],
        serde_json::json!([]),
        "{out}"
    );

    // Both sides change agentbox.yaml, only the host src/lib.txt: the conflict is named
    // and the box's version stays; the other file takes the host's.
    host.ok(
        &repo,
        &["exec", "--", "sh", "-c", "echo '# box' > agentbox.yaml"],
    );
    std::fs::write(repo.join("agentbox.yaml"), "# host 2\n").expect("write");
    std::fs::write(repo.join("src/lib.txt"), "one\nv3\n").expect("write");
    let out: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["sync", "--json"])).expect("json");
    assert_eq!(cat("agentbox.yaml"), "# box\n", "{out}");
    assert_eq!(cat("src/lib.txt"), "one\nv3\n", "{out}");
    assert_eq!(
        out["report"]["kept_box_version"],
        serde_json::json!(["agentbox.yaml"]),
        "{out}"
    );
    host.ok(&repo, &["destroy", "-y", "--force", "d1"]);
}
