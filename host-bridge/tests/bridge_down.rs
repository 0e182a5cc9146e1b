//! A stopped host bridge (issue 20 #17): a request in the box hears within seconds that
//! nobody on the host is picking it up, keeps waiting, and completes once the bridge is
//! started again. And the bridge's own life: it never outlives its home, and one that
//! cannot start says why at once.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const SENTENCE: &str = "the host bridge is not running; start it with `agentbox bridge start`";

#[test]
fn a_request_made_while_the_host_bridge_is_stopped_says_so_and_waits() {
    let host = Host::new();
    let repo = host.repo("waits", "");
    host.ok(&repo, &["create", "--name", "waiter"]);
    // `exec` itself starts a stopped bridge; the request is made later, from inside, while
    // the bridge is down (as an agent in a tmux session would).
    let delay = 22;
    let mut child = std::process::Command::new(AGENTBOX)
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            &format!(
                "sleep {delay}; agentbox-ctl notify --wait 120000 'made while the bridge was down'"
            ),
        ])
        .current_dir(&repo)
        .env("AGENTBOX_HOME", host.home())
        .env("AGENTBOX_OPENER", host.dir.path().join("opener"))
        .env("PATH", host.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn exec");
    let what = "`agentbox exec` of the notify";
    std::thread::sleep(Duration::from_secs(2));
    host.ok(&repo, &["bridge", "stop"]);
    let stopped = Instant::now();
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    // The request is made `delay` s after the exec began; the sentence must follow it within
    // about 10 s.
    let asked = stopped + Duration::from_secs(delay - 2);
    let deadline = asked + Duration::from_secs(12);
    let mut lines = Vec::new();
    let told_at = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((at, line)) => {
                let told = line.contains(SENTENCE);
                lines.push(line);
                if told {
                    break at;
                }
            }
            Err(_) => {
                let waited = stopped.elapsed().as_secs();
                let _ = child.kill();
                let ended = finish_within(child, what, Duration::from_secs(10)).map_or_else(
                    |e| e.to_string(),
                    |out| {
                        format!(
                            "{}; stdout: {}",
                            out.status,
                            String::from_utf8_lossy(&out.stdout)
                        )
                    },
                );
                panic!(
                    "no word that the bridge is down within {waited} s of stopping it; stderr so far: {lines:?}; the exec: {ended}"
                )
            }
        }
    };
    eprintln!(
        "told {} s after the bridge stopped ({} s after the request)",
        told_at.duration_since(stopped).as_secs(),
        told_at.saturating_duration_since(asked).as_secs()
    );
    assert!(
        !host.run(&repo, &["bridge", "status"]).status.success(),
        "the bridge must still be down"
    );
    host.ok(&repo, &["bridge", "start"]);
    // The request waits up to 120 s for an answer.
    let status = finish_within(child, what, COMMAND_LIMIT)
        .expect("wait for the exec")
        .status;
    let rest: Vec<String> = rx.try_iter().map(|(_, l)| l).collect();
    assert!(status.success(), "the request failed: {lines:?} {rest:?}");
    assert_eq!(
        lines
            .iter()
            .chain(&rest)
            .filter(|l| l.contains(SENTENCE))
            .count(),
        1,
        "the sentence is said once: {lines:?} {rest:?}"
    );
    let audit: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["audit", "--json"])).expect("json");
    let done = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| {
            e["kind"] == "notify"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("made while the bridge was down"))
        })
        .count();
    assert_eq!(done, 1, "the notify must run exactly once: {audit}");
}

#[test]
fn list_and_status_say_the_bridge_is_down_and_exec_starts_it() {
    let host = Host::new();
    let repo = host.repo("down", "");
    host.ok(&repo, &["create", "--name", "downer"]);
    host.ok(&repo, &["bridge", "stop"]);
    let down = "host bridge not running: boxes' requests wait; `agentbox bridge start`";
    let list = host.ok(&repo, &["list"]);
    assert!(
        list.contains(down),
        "list must say the bridge is down: {list}"
    );
    let status = host.ok(&repo, &["status", "downer"]);
    assert!(status.contains(down), "status must say so: {status}");
    assert_eq!(host.list(&repo)[0]["bridge_running"], false);
    let json: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["status", "downer", "--json"])).expect("json");
    assert_eq!(json["bridge_running"], false);

    // `exec` starts the bridge on demand, as `create` does.
    host.ok(&repo, &["exec", "--", "true"]);
    assert!(
        host.run(&repo, &["bridge", "status"]).status.success(),
        "exec must start the stopped bridge"
    );
    assert_eq!(host.list(&repo)[0]["bridge_running"], true);
    let list = host.ok(&repo, &["list"]);
    assert!(!list.contains(down), "{list}");
}

#[test]
fn a_bridge_ends_when_its_home_is_deleted() {
    let host = Host::new();
    std::fs::create_dir_all(host.home()).expect("mkdir home");
    let here = host.dir.path();
    host.ok(here, &["bridge", "start"]);
    let status: serde_json::Value =
        serde_json::from_str(&host.ok(here, &["bridge", "status", "--json"])).expect("json");
    let pid = status["pid"].as_u64().expect("a pid");
    assert!(pid_alive(pid), "{status}");

    // A temporary home removed (as every test's is, or `rm -rf ~/.agentbox`): its bridge
    // has nothing left to serve and ends instead of polling nothing for ever.
    std::fs::remove_dir_all(host.home()).expect("rm home");
    assert!(
        eventually(|| !pid_alive(pid)),
        "the bridge of a deleted home still runs"
    );
}

#[test]
fn a_bridge_that_cannot_start_says_why_at_once() {
    let host = Host::new();
    // A directory where the bridge's lock file belongs: `bridge run` fails at once.
    std::fs::create_dir_all(host.home().join("bridge.lock")).expect("mkdir bridge.lock");
    let here = host.dir.path();
    let t0 = Instant::now();
    let out = host.run(here, &["bridge", "start"]);
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the host bridge did not start")
            && stderr.contains("cannot open")
            && stderr.contains("bridge.lock")
            && stderr.contains("bridge.log"),
        "the failure, its reason and the log named: {stderr}"
    );
    assert!(
        took < Duration::from_secs(5),
        "a bridge that failed at once took {took:?} to be reported"
    );
}
