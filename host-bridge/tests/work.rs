//! Work that must never be lost (issue 20): `destroy` of a box with work the host does not
//! have, `sync` after a seed from a dirty tree, `download` over host edits.

mod common;

use common::*;

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
    host.ok(&repo, &["destroy", "-y", "d1"]);
}
