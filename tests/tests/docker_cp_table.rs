//! `agentbox cp` follows `docker cp` to the letter: every cell of docker cp's table
//! (a file or directory source, written plain, with a trailing `/` or `/.`, × a missing,
//! file or directory destination, written plain, with a trailing `/` or `/.`, or under a
//! missing parent), both ways, is run with `docker cp` and with `agentbox cp` on the same
//! container in the same run, and the outcomes (failure, or success and the tree left
//! behind) must be the same. Refusals never end in an HTTP status.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test`).

#[allow(dead_code)]
mod docker_common;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use agentbox_tests::run::TimedOutput;
use docker_common::{docker, Host};

/// How a source is written (under `src/`: file `f`, directory `d` with `a` and `sub/b`).
const SOURCES: [&str; 5] = ["f", "f/", "d", "d/", "d/."];
/// How a destination is written (in a cell holding file `file` and directory `dir/keep`).
const DESTS: [&str; 10] = [
    "new", "new/", "new/.", "file", "file/", "file/.", "dir", "dir/", "dir/.", "gone/new",
];

/// The shell lines that lay out the sources under `root/src`.
fn sources_script(root: &str) -> String {
    format!(
        "mkdir -p {root}/src/d/sub && printf 'F\\n' > {root}/src/f && printf 'A\\n' > {root}/src/d/a && printf 'B\\n' > {root}/src/d/sub/b"
    )
}

/// The shell lines that lay out every cell under `root/<tool>/`.
fn cells_script(root: &str) -> String {
    let mut s = String::from("set -e");
    for tool in ["docker", "agentbox"] {
        for i in 0..SOURCES.len() * DESTS.len() {
            let cell = format!("{root}/{tool}/c{i}");
            let _ = write!(
                s,
                " && mkdir -p {cell}/dir && printf 'OLD\\n' > {cell}/file && printf 'K\\n' > {cell}/dir/keep"
            );
        }
    }
    s
}

/// `sh -c SCRIPT` on the host, which must succeed.
fn sh(script: &str) {
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .timed_output()
        .expect("sh");
    assert!(out.status.success(), "{script}: {out:?}");
}

/// `sh -c SCRIPT` in the container as its user, which must succeed; stdout.
fn in_box(container: &str, script: &str) -> String {
    let out = docker(&["exec", container, "sh", "-c", script]);
    assert!(out.status.success(), "{script}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What every cell under `root/<tool>` holds, one line per path (`p/` a directory,
/// `p=content` a file), by cell, from a listing script run where `root` is.
const LIST: &str = r#"cd "$0" && find . -mindepth 2 | sort | while read -r p; do if [ -d "$p" ]; then echo "$p/"; else printf '%s=%s\n' "$p" "$(cat "$p")"; fi; done"#;

fn by_cell(listing: &str) -> BTreeMap<String, Vec<String>> {
    let mut cells: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in listing.lines() {
        let rel = line.trim_start_matches("./");
        let (cell, rest) = rel.split_once('/').unwrap_or((rel, ""));
        cells
            .entry(cell.to_string())
            .or_default()
            .push(rest.to_string());
    }
    cells
}

fn host_listing(root: &Path) -> BTreeMap<String, Vec<String>> {
    let out = std::process::Command::new("sh")
        .args(["-c", LIST, root.to_str().expect("utf-8")])
        .timed_output()
        .expect("sh");
    by_cell(&String::from_utf8_lossy(&out.stdout))
}

fn box_listing(container: &str, root: &str) -> BTreeMap<String, Vec<String>> {
    let out = docker(&["exec", container, "sh", "-c", LIST, root]);
    by_cell(&String::from_utf8_lossy(&out.stdout))
}

/// One cell's outcome with one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Failed,
    Made(Vec<String>),
}

/// Whether a message ends in an HTTP status in parentheses, like `(409 Conflict)`.
fn ends_in_status(message: &str) -> bool {
    let m = message.trim_end();
    let Some(open) = m.rfind('(') else {
        return false;
    };
    let inner = &m[open + 1..];
    inner.ends_with(')')
        && inner.len() > 4
        && inner[..3].chars().all(|c| c.is_ascii_digit())
        && inner.as_bytes()[3] == b' '
}

#[test]
fn agentbox_cp_matches_docker_cp_cell_by_cell() {
    let host = Host::new();
    let repo = host.project("proj");
    host.prepare(&repo);
    let name = format!("cpt{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "docker", "--name", &name]);
    let container = host.container_of(&name);

    // Host → box: sources on the host, cells in the box.
    let up_src = host.dir.path().join("up");
    sh(&sources_script(up_src.to_str().expect("utf-8")));
    in_box(&container, &cells_script("/tmp/cpt/up"));
    // Box → host: sources in the box, cells on the host.
    in_box(&container, &sources_script("/tmp/cpt/down"));
    let down = host.dir.path().join("down");
    sh(&cells_script(down.to_str().expect("utf-8")));

    let mut failures: BTreeMap<(usize, &str), String> = BTreeMap::new();
    let mut ran: Vec<(usize, &str, &str, &str, bool, bool)> = Vec::new();
    for (si, s) in SOURCES.iter().enumerate() {
        for (ti, t) in DESTS.iter().enumerate() {
            let i = si * DESTS.len() + ti;
            let host_src = format!("{}/src/{s}", up_src.display());
            let by_docker = docker(&[
                "cp",
                &host_src,
                &format!("{container}:/tmp/cpt/up/docker/c{i}/{t}"),
            ]);
            let by_us = host.run(
                &repo,
                &[
                    "cp",
                    &host_src,
                    &format!("{name}:/tmp/cpt/up/agentbox/c{i}/{t}"),
                ],
            );
            ran.push((
                i,
                "up",
                s,
                t,
                by_docker.status.success(),
                by_us.status.success(),
            ));
            if !by_us.status.success() {
                failures.insert(
                    (i, "up"),
                    String::from_utf8_lossy(&by_us.stderr).into_owned(),
                );
            }
            let box_src = format!("/tmp/cpt/down/src/{s}");
            let by_docker = docker(&[
                "cp",
                &format!("{container}:{box_src}"),
                &format!("{}/docker/c{i}/{t}", down.display()),
            ]);
            let by_us = host.run(
                &repo,
                &[
                    "cp",
                    &format!("{name}:{box_src}"),
                    &format!("{}/agentbox/c{i}/{t}", down.display()),
                ],
            );
            ran.push((
                i,
                "down",
                s,
                t,
                by_docker.status.success(),
                by_us.status.success(),
            ));
            if !by_us.status.success() {
                failures.insert(
                    (i, "down"),
                    String::from_utf8_lossy(&by_us.stderr).into_owned(),
                );
            }
        }
    }

    let up = (
        box_listing(&container, "/tmp/cpt/up/docker"),
        box_listing(&container, "/tmp/cpt/up/agentbox"),
    );
    let down = (
        host_listing(&down.join("docker")),
        host_listing(&down.join("agentbox")),
    );
    let mut differ = Vec::new();
    let mut with_status = Vec::new();
    let mut table = String::new();
    for (i, way, s, t, docker_ok, us_ok) in &ran {
        let (theirs, ours) = if *way == "up" { &up } else { &down };
        let cell = format!("c{i}");
        let outcome = |ok: bool, tree: &BTreeMap<String, Vec<String>>| {
            if ok {
                Outcome::Made(tree.get(&cell).cloned().unwrap_or_default())
            } else {
                Outcome::Failed
            }
        };
        let (d, a) = (outcome(*docker_ok, theirs), outcome(*us_ok, ours));
        let said = failures.get(&(*i, *way)).cloned().unwrap_or_default();
        let _ = writeln!(
            table,
            "{way:<4} {s:<4} -> {t:<9} docker: {:<60} agentbox: {}",
            format!("{d:?}"),
            if d == a {
                "same".to_string()
            } else {
                format!("{a:?} {}", said.trim())
            }
        );
        if d != a {
            differ.push(format!("{way} {s} -> {t}"));
        }
        // A refusal says what was wrong, not which HTTP status carried it.
        if ends_in_status(&said) {
            with_status.push(format!("{way} {s} -> {t}: {}", said.trim()));
        }
    }
    eprintln!("{table}");
    assert!(
        differ.is_empty(),
        "{} cells differ from docker cp: {differ:#?}\n{table}",
        differ.len()
    );
    assert!(
        with_status.is_empty(),
        "refusals ending in an HTTP status: {with_status:#?}"
    );
    host.ok(&repo, &["destroy", "-y", "--force", &name]);
}

#[test]
fn an_http_status_at_the_end_is_recognised() {
    assert!(ends_in_status(
        "error: x: the destination directory does not exist (409 Conflict)\n"
    ));
    assert!(!ends_in_status("error: x: no such file (create it first)"));
    assert!(!ends_in_status("plain"));
}
