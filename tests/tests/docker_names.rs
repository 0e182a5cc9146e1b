//! Two boxes never collide on one Docker engine: boxes of the same name from two
//! `AGENTBOX_HOME`s (the same project in both) live side by side, each home's commands
//! reach its own container (found by its labels), and a box whose container has the plain
//! name an older agentbox gave (`agentbox-<box>`) is still found. The host reads at most
//! `CAPTURE_CAP` bytes of a command's output in a box.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test`).

#[allow(dead_code)]
mod docker_common;

use docker_common::{docker, Host};

#[test]
fn boxes_of_one_name_from_two_homes_live_side_by_side() {
    let (one, two) = (Host::new(), Host::new());
    let repo = one.project("proj");
    one.prepare(&repo);
    two.prepare(&repo);
    let name = format!("same{}", std::process::id());
    one.ok(&repo, &["create", "--provider", "docker", "--name", &name]);
    // The second home's box of the same name, from the same project.
    two.ok(&repo, &["create", "--provider", "docker", "--name", &name]);
    let (c1, c2) = (one.container_of(&name), two.container_of(&name));
    assert_ne!(c1, c2);
    for c in [&c1, &c2] {
        assert!(c.starts_with(&format!("agentbox-{name}-")), "{c}");
    }

    // Each home's commands reach its own box.
    one.ok(
        &repo,
        &["exec", &name, "--", "sh", "-c", "echo one > mine.txt"],
    );
    two.ok(
        &repo,
        &["exec", &name, "--", "sh", "-c", "echo two > mine.txt"],
    );
    assert_eq!(
        one.ok(&repo, &["exec", &name, "--", "cat", "mine.txt"]),
        "one\n"
    );
    assert_eq!(
        two.ok(&repo, &["exec", &name, "--", "cat", "mine.txt"]),
        "two\n"
    );
    let state = |host: &Host| -> String {
        let list: serde_json::Value =
            serde_json::from_str(&host.ok(&repo, &["list", "--json"])).expect("json");
        list[0]["state"].as_str().unwrap_or_default().to_string()
    };
    one.ok(&repo, &["stop", &name]);
    assert_eq!(state(&one), "stopped");
    assert_eq!(state(&two), "running");
    one.ok(&repo, &["start", &name]);
    assert_eq!(state(&one), "running");
    // Neither home takes the other's box for a stray.
    assert_eq!(one.ok(&repo, &["prune", "--dry-run"]), "");
    assert_eq!(two.ok(&repo, &["prune", "--dry-run"]), "");
    one.ok(&repo, &["destroy", "-y", "--force", &name]);
    assert!(one.containers_of(&name).is_empty(), "destroy left the box");
    assert_eq!(
        two.container_of(&name),
        c2,
        "destroy took the other home's box"
    );
    assert_eq!(state(&two), "running");

    // What a box prints for the host is read up to a cap: past it, the box is named.
    let b = agentbox::provider::docker::DockerBox::new(
        &name,
        &agentbox::provider::docker::home_label(&two.home()),
        &repo,
    );
    let past = agentbox::provider::docker::CAPTURE_CAP + 1;
    let err = match b.capture(&["sh", "-c", &format!("head -c {past} /dev/zero")]) {
        Ok(out) => panic!("{} bytes were read, past the cap", out.stdout.len()),
        Err(e) => e,
    };
    assert!(
        err.to_string()
            .contains(&format!("box {name} printed more than")),
        "{err}"
    );
    let out = b.capture(&["sh", "-c", "echo fits"]).expect("capture");
    assert_eq!(out.stdout, b"fits\n");
}

/// A box made by an older agentbox has a container named `agentbox-<box>`: every command
/// still finds it by its labels, and destroy removes it.
#[test]
fn a_container_under_the_old_name_is_still_found() {
    let host = Host::new();
    let repo = host.project("proj");
    host.prepare(&repo);
    let name = format!("old{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "docker", "--name", &name]);
    host.ok(&repo, &["stop", &name]);
    let legacy = format!("agentbox-{name}");
    let renamed = docker(&["rename", &host.container_of(&name), &legacy]);
    assert!(renamed.status.success(), "{renamed:?}");
    host.ok(&repo, &["start", &name]);
    assert_eq!(host.container_of(&name), legacy);
    assert_eq!(
        host.ok(&repo, &["exec", &name, "--", "cat", "a.txt"]),
        "hello\n"
    );
    let list: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["list", "--json"])).expect("json");
    assert_eq!(list[0]["state"], "running");
    assert_eq!(host.ok(&repo, &["prune", "--dry-run"]), "");
    host.ok(&repo, &["destroy", "-y", "--force", &name]);
    assert!(
        host.containers_of(&name).is_empty(),
        "destroy left {legacy}"
    );
}

/// A container this home's labels give to a box name no record holds (left by an earlier
/// box: what `prune` removes) gives way to a new box of that name, under either name.
#[test]
fn a_stray_container_of_the_name_gives_way() {
    let host = Host::new();
    let repo = host.project("proj");
    let tag = host.prepare(&repo);
    let name = format!("stray{}", std::process::id());
    let label = host.label();
    let home = label.trim_start_matches("label=");
    let stray = format!("agentbox-{name}");
    let made = docker(&[
        "create",
        "--name",
        &stray,
        "--label",
        home,
        "--label",
        &format!("agentbox.box={name}"),
        &tag,
        "sleep",
        "60",
    ]);
    assert!(made.status.success(), "{made:?}");
    let created = host.run(&repo, &["create", "--provider", "docker", "--name", &name]);
    let said = agentbox_tests::succeeded(&["create"], &created);
    assert!(
        String::from_utf8_lossy(&created.stderr)
            .contains(&format!("removing {stray} left by an earlier box")),
        "{said}"
    );
    let now = host.container_of(&name);
    assert_ne!(now, stray);
    assert_eq!(
        host.ok(&repo, &["exec", &name, "--", "cat", "a.txt"]),
        "hello\n"
    );
    host.ok(&repo, &["destroy", "-y", "--force", &name]);
}
