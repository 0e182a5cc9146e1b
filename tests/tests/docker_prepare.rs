//! `agentbox prepare --provider docker` pins the box image for the machine, not for one
//! project: the image's tag is the checksum of its inputs, so a second repository (same
//! `AGENTBOX_HOME`) finds it without building and without `--base-image` again, and makes
//! its boxes of it (`create --json`: JSON alone on stdout). A base
//! image that cannot be pulled (offline) fails with the way out: `--base-image IMG` and
//! `scripts/make-base-image`.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test`).

#[allow(dead_code)]
mod docker_common;

use agentbox_tests::run::TimedOutput;
use docker_common::Host;

#[test]
fn a_second_repository_finds_the_prepared_image_without_flags_or_a_build() {
    let host = Host::new();
    let first = host.project("first");
    let tag = host.prepare(&first);
    let second = host.project("second");

    // The pin is the machine's: the other repository resolves it as it is.
    let pinned = host.ok(&second, &["config", "get", "box.image"]);
    assert_eq!(pinned.trim(), tag, "box.image seen from another repository");

    // Preparing there again needs no flag (the base image and agents chosen are the
    // machine's too) and builds nothing.
    let args = ["prepare", "--provider", "docker"];
    let out = host.run(&second, &args);
    let again = agentbox_tests::succeeded(&args, &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(again.trim(), tag, "the same inputs, the same image");
    assert!(stderr.contains(&format!("{tag} is up to date")), "{stderr}");
    assert!(!stderr.contains("building"), "rebuilt:\n{stderr}");

    // A box of the second repository is made from it; with --json, stdout is the record
    // alone (the progress lines are on stderr).
    let name = format!("second{}", std::process::id());
    let args = ["create", "--provider", "docker", "--json", "--name", &name];
    let out = host.run(&second, &args);
    let record: serde_json::Value =
        serde_json::from_str(&agentbox_tests::succeeded(&args, &out)).expect("stdout is JSON only");
    assert_eq!(record["name"], name.as_str());
    assert!(String::from_utf8_lossy(&out.stderr).contains("==> waiting for services"));
    let container = host.container_of(&name);
    let image = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{.Config.Image}}", &container])
        .timed_output()
        .expect("docker inspect");
    assert_eq!(String::from_utf8_lossy(&image.stdout).trim(), tag);
    host.ok(&second, &["destroy", "-y", "--force", &name]);
}

#[test]
fn a_base_image_that_cannot_be_pulled_names_the_way_out() {
    let host = Host::new();
    let repo = host.project("repo");
    // `.invalid` never resolves: the pull fails as it does offline, at once.
    let base = "agentbox-no-registry.invalid/base:none";
    let args = [
        "prepare",
        "--provider",
        "docker",
        "--base-image",
        base,
        "--agents",
        "none",
    ];
    let out = host.run(&repo, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("the base image {base} is not on this machine")),
        "{stderr}"
    );
    assert!(stderr.contains("--base-image IMG"), "{stderr}");
    assert!(stderr.contains("scripts/make-base-image"), "{stderr}");
}
