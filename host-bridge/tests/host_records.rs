//! The host's records of a box (`sync.json`, `downloaded.json`, `ports.json`) live in
//! `AGENTBOX_HOME/records/<box>`, not in the box's directory a local box works in (issue
//! 20's sibling): what a box writes there does not become what the host believes, and a
//! box made before the move still reads its records where they were.

mod common;

use common::*;

#[test]
fn a_local_box_cannot_rewrite_what_the_host_believes_through_its_directory() {
    let host = Host::new();
    let repo = host.repo("recordsproj", "");
    host.ok(&repo, &["create", "--name", "r1"]);
    let boxdir = host.home().join("boxes/r1");
    let records = host.home().join("records/r1");
    for name in ["sync.json", "ports.json"] {
        assert!(
            records.join(name).exists(),
            "{name} is not among the host's records"
        );
        assert!(
            !boxdir.join(name).exists(),
            "{name} is in the box's directory"
        );
    }
    let ports = std::fs::read_to_string(records.join("ports.json")).expect("ports");
    // The box writes records of its own making where the host used to keep them: a bridge
    // port of its choosing (where the host would send its token) and a sync record.
    let lure = free_port();
    let forged: [(&str, String); 2] = [
        (
            "ports.json",
            serde_json::json!({"bridge": lure, "web": free_port()}).to_string(),
        ),
        (
            "sync.json",
            serde_json::json!({"head": "0".repeat(40), "changes_tree": "", "files": {"README.md": "0".repeat(64)}}).to_string(),
        ),
    ];
    for (name, body) in &forged {
        let script = format!("printf '%s' '{body}' > ../{name}");
        host.ok(&repo, &["exec", "--", "sh", "-c", &script]);
        assert!(boxdir.join(name).exists(), "the box could not write {name}");
    }
    host.ok(&repo, &["stop", "r1"]);
    host.ok(&repo, &["start", "r1"]);
    assert_eq!(
        std::fs::read_to_string(records.join("ports.json")).expect("ports"),
        ports,
        "the box moved the host's idea of its ports"
    );
    let db = rusqlite::Connection::open(host.home().join("state.db")).expect("state.db");
    let url: String = db
        .query_row("SELECT bridge_url FROM boxes WHERE name = 'r1'", [], |r| {
            r.get(0)
        })
        .expect("bridge url");
    assert!(
        !url.ends_with(&format!(":{lure}")),
        "the host would send its bridge token to the box's chosen port {lure}: {url}"
    );
    // The sync record is the host's: a sync still works from what the host sent.
    host.ok(&repo, &["sync", "r1"]);
    host.ok(&repo, &["destroy", "-y", "--force", "r1"]);
    assert!(
        !records.exists(),
        "destroy left the host's records of the box"
    );
}
