//! The bridge behind an edge that cuts idle requests with `504` (as Daytona's does after
//! ~25 s; here after 1 s, so that every held poll meets it): nothing is lost or done twice.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agentbox_tests::bin_path;
use agentbox_tests::fault_proxy::{Fault, FaultProxy};
use agentbox_tests::run::TimedOutput;

fn agentbox(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin_path("agentbox"))
        .args(args)
        .current_dir(cwd)
        .env("AGENTBOX_HOME", home)
        .stdin(Stdio::null())
        .timed_output()
        .expect("agentbox");
    assert!(
        out.status.success(),
        "agentbox {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .status()
        .expect("git")
        .success();
    assert!(ok, "git {args:?}");
}

#[test]
fn requests_get_through_an_edge_that_answers_504_to_idle_polls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (home, repo) = (dir.path().join("home"), dir.path().join("repo"));
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("a.txt"), "a\n").expect("write");
    git(&repo, &["add", "."]);
    git(
        &repo,
        &[
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "c",
        ],
    );
    agentbox(&home, &repo, &["create", "--name", "edge"]);

    // The host bridge now reaches the relay only through the edge.
    let state = agentbox::state::State::open(&home.join("state.db")).expect("state");
    let record = state.get("edge").expect("get").expect("record");
    let port: u16 = record
        .bridge_url
        .as_deref()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("bridge port");
    let edge = FaultProxy::start(port, Fault::GatewayTimeoutAfterIdleMs(1000));
    state
        .update(
            "edge",
            "ready",
            Some(&format!("http://127.0.0.1:{}", edge.port)),
        )
        .expect("update");
    // The host bridge rescans the state every second and moves its poller over.
    let deadline = Instant::now() + Duration::from_secs(10);
    while edge.up.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the host bridge never polled through the edge"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    agentbox(
        &home,
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            // Gaps longer than the edge's idle cut: every held poll in between meets a 504.
            "for i in $(seq 8); do sleep 1.3; agentbox-ctl notify --wait 60000 m$i || echo $i >> failed.txt; done",
        ],
    );
    // Asked so that a failing exec cannot pass for "no failures".
    let failed = agentbox(
        &home,
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "if test -e failed.txt; then cat failed.txt; else echo none; fi",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&failed.stdout),
        "none\n",
        "some requests did not get through"
    );
    assert!(
        edge.gateway_timeouts.load(Ordering::SeqCst) >= 3,
        "the edge never cut a poll: the test proves nothing"
    );
    let audit: serde_json::Value =
        serde_json::from_slice(&agentbox(&home, &repo, &["audit", "--json"]).stdout).expect("json");
    let mut ids: Vec<&str> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "notify" && e["decision"] == "done")
        .filter_map(|e| e["request_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 8, "{audit}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8, "a request ran twice");
    agentbox(&home, &repo, &["destroy", "-y", "edge"]);
    agentbox(&home, &repo, &["bridge", "stop"]);
}
