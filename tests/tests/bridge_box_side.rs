//! The box side of the bridge: `agentbox-ctl notify|open` → `relay.sock` → the journal →
//! the host's long-poll, lease, progress and result. The host here is the test itself,
//! speaking the HTTP API with the bridge token; the host bridge daemon is not built yet.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use agentbox_tests::bin_path;

use agentbox_tests::{spawn_relay, TEST_TOKEN as TOKEN};

struct Relay {
    dir: PathBuf,
    child: Option<Child>,
    port: u16,
}

fn start_relay(dir: &Path, lease_ms: u64) -> Relay {
    let (child, port) = spawn_relay(dir, &[("AGENTBOX_BRIDGE_LEASE_MS", &lease_ms.to_string())]);
    Relay {
        dir: dir.to_path_buf(),
        child: Some(child),
        port,
    }
}

impl Relay {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ctl(&self, args: &[&str]) -> Child {
        Command::new(bin_path("agentbox-ctl"))
            .args(args)
            .env("AGENTBOX_RUN_DIR", self.dir.join("run"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ctl")
    }

    fn poll(&self, wait_ms: u64) -> serde_json::Value {
        let url = format!(
            "http://127.0.0.1:{}/v1/bridge/poll?wait_ms={wait_ms}",
            self.port
        );
        rt().block_on(async {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("poll")
                .json()
                .await
                .expect("json")
        })
    }

    fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let url = format!("http://127.0.0.1:{}/v1/bridge/{path}", self.port);
        rt().block_on(async {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(TOKEN)
                .json(body)
                .send()
                .await
                .expect("post");
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or_default())
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

fn wait_output(child: Child) -> Output {
    agentbox_tests::run::finish_within(child, "wait", agentbox_tests::run::COMMAND_LIMIT)
        .expect("wait")
}

fn outcome(code: i32, stdout: &str) -> serde_json::Value {
    serde_json::json!({"exit_code": code, "stdout": stdout, "stderr": "", "bundle": null})
}

#[test]
fn open_round_trip_with_progress_and_the_hosts_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start_relay(dir.path(), 30_000);
    let caller = relay.ctl(&["open", "https://example.com/pr/1", "--wait", "20000"]);
    let t0 = Instant::now();
    let polled = relay.poll(20_000);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the held poll did not wake on the request"
    );
    let req = &polled["requests"][0];
    assert_eq!(
        req["request"],
        serde_json::json!({"open": {"url": "https://example.com/pr/1"}})
    );
    assert_eq!(req["attempt"], 1);
    let (id, lease) = (req["id"].clone(), req["lease"].clone());
    let (status, _) = relay.post(
        "progress",
        &serde_json::json!({"id": id, "lease": lease, "lines": ["opening…"]}),
    );
    assert_eq!(status, 204);
    let (status, ack) = relay.post(
        "result",
        &serde_json::json!({"id": id, "lease": lease, "outcome": outcome(3, "opened\n")}),
    );
    assert_eq!(
        (status, ack["recorded"].clone()),
        (200, serde_json::json!(true))
    );
    let out = wait_output(caller);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the caller exits with the host's exit code"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "opened\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("opening…"));
    // A second result for the same request is acknowledged as a duplicate.
    let (_, ack) = relay.post(
        "result",
        &serde_json::json!({"id": id, "lease": lease, "outcome": outcome(0, "")}),
    );
    assert_eq!(ack["recorded"], false);
    // A forged lease is refused.
    let (status, body) = relay.post(
        "result",
        &serde_json::json!({"id": id, "lease": "forged", "outcome": outcome(0, "")}),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("lease_expired"))
    );
}

#[test]
fn nobody_polling_fails_clearly_and_the_request_is_withdrawn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start_relay(dir.path(), 30_000);
    let t0 = Instant::now();
    let out = wait_output(relay.ctl(&["open", "https://example.com", "--wait", "500"]));
    assert_eq!(out.status.code(), Some(124));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no host picked up request"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        relay.poll(100)["requests"],
        serde_json::json!([]),
        "a withdrawn request must never run"
    );
}

#[test]
fn bad_requests_are_refused_in_the_box() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start_relay(dir.path(), 30_000);
    let out = wait_output(relay.ctl(&["open", "file:///etc/passwd", "--wait", "500"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http:// and https:// URLs"));
    assert_eq!(relay.poll(100)["requests"], serde_json::json!([]));
}

#[test]
fn an_expired_lease_is_redelivered_and_detached_notifies_wait_for_a_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start_relay(dir.path(), 300);
    let out = wait_output(relay.ctl(&["notify", "build", "done"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let first = relay.poll(1000);
    assert_eq!(first["requests"][0]["id"], id.as_str());
    assert_eq!(
        first["requests"][0]["request"]["notify"]["message"],
        "build done"
    );
    // The first host dies without answering: after the lease the request comes back.
    let second = relay.poll(5000);
    assert_eq!(second["requests"][0]["id"], id.as_str());
    assert_eq!(second["requests"][0]["attempt"], 2);
    let (_, ack) = relay.post("result", &serde_json::json!({"id": id, "lease": second["requests"][0]["lease"], "outcome": outcome(0, "")}));
    assert_eq!(ack["recorded"], true);
    assert_eq!(
        relay.poll(600)["requests"],
        serde_json::json!([]),
        "a done request is not delivered again"
    );
}

#[test]
fn a_relay_killed_mid_request_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut relay = start_relay(dir.path(), 30_000);
    let caller = relay.ctl(&[
        "open",
        "https://example.com/after-restart",
        "--wait",
        "30000",
    ]);
    // The request is journalled before the caller hears `Accepted`; wait until it is.
    let first = relay.poll(20_000);
    let lease = first["requests"][0]["lease"].clone();
    let id = first["requests"][0]["id"].clone();
    relay.kill();
    let relay = start_relay(dir.path(), 30_000);
    // The host answers with the lease it was given before the restart; the caller, which
    // reconnected on its own, gets the answer exactly once.
    let (status, ack) = relay.post(
        "result",
        &serde_json::json!({"id": id, "lease": lease, "outcome": outcome(7, "after restart\n")}),
    );
    assert_eq!(
        (status, ack["recorded"].clone()),
        (200, serde_json::json!(true))
    );
    let out = wait_output(caller);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "after restart\n");
    assert_eq!(relay.poll(100)["requests"], serde_json::json!([]));
}
