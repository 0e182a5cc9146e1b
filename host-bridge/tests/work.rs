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

    // A stopped box cannot be checked: start it to have it checked, or --force. (It said
    // "bring it back first (`agentbox download`…)", which a stopped box cannot do.)
    host.ok(&repo, &["create", "--name", "w2"]);
    host.ok(&repo, &["stop", "w2"]);
    host.fails(
        &repo,
        &["destroy", "-y", "w2"],
        "is stopped, so its unpushed commits and changed files cannot be checked: start it (`agentbox start w2`) and destroy it again",
    );
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

#[test]
fn download_leaves_host_edits_made_since_the_seed_unless_told() {
    let host = Host::new();
    // Seeded with an uncommitted edit of src/lib.txt and an untracked notes/deep/todo.md.
    let repo = host.repo("dlconflict", "");
    host.ok(&repo, &["create", "--name", "c1"]);
    let read = |p: &str| std::fs::read_to_string(repo.join(p)).expect("read");
    // Both sides change src/lib.txt and the untracked todo; only the host agentbox.yaml;
    // only the box makes out.txt.
    std::fs::write(repo.join("src/lib.txt"), "host edit\n").expect("write");
    std::fs::write(repo.join("notes/deep/todo.md"), "host todo\n").expect("write");
    std::fs::write(repo.join("agentbox.yaml"), "# host\n").expect("write");
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "echo box edit > src/lib.txt && echo box todo > notes/deep/todo.md && echo made > out.txt",
        ],
    );
    let plan: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["download", "--dry-run", "--json"])).expect("json");
    assert_eq!(
        plan["plan"]["conflicts"],
        serde_json::json!(["notes/deep/todo.md", "src/lib.txt"]),
        "{plan}"
    );
    assert_eq!(
        plan["plan"]["host_newer"],
        serde_json::json!(["agentbox.yaml"]),
        "{plan}"
    );

    // The conflicts stay the host's; the box's own new file comes.
    let done: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["download", "-y", "--json"])).expect("json");
    assert_eq!(done["written"], serde_json::json!(["out.txt"]), "{done}");
    assert_eq!(read("src/lib.txt"), "host edit\n");
    assert_eq!(read("notes/deep/todo.md"), "host todo\n");
    assert_eq!(read("agentbox.yaml"), "# host\n");
    assert_eq!(read("out.txt"), "made\n");
    let text = host.run(&repo, &["download", "--dry-run"]);
    let text = String::from_utf8_lossy(&text.stderr);
    assert!(
        text.contains("conflict src/lib.txt") && text.contains("--theirs"),
        "{text}"
    );

    // Asked for, the box's versions win.
    let done: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["download", "-y", "--theirs", "--json"]))
            .expect("json");
    assert_eq!(
        done["written"],
        serde_json::json!(["notes/deep/todo.md", "src/lib.txt"]),
        "{done}"
    );
    assert_eq!(read("src/lib.txt"), "box edit\n");
    assert_eq!(read("agentbox.yaml"), "# host\n");

    // What a download wrote is common ground: the box's next edit is no conflict.
    host.ok(
        &repo,
        &["exec", "--", "sh", "-c", "echo box edit 2 > src/lib.txt"],
    );
    let plan: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["download", "--dry-run", "--json"])).expect("json");
    assert_eq!(plan["plan"]["conflicts"], serde_json::json!([]), "{plan}");
    host.ok(&repo, &["download", "-y"]);
    assert_eq!(read("src/lib.txt"), "box edit 2\n");
    host.ok(&repo, &["destroy", "-y", "--force", "c1"]);
}
