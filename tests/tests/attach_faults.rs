//! The relay's terminal API under faults, driven through the host's attach loop
//! (`agentbox::attach::run`): a connection cut mid-output resumes with every byte once and
//! in order (the client's blake3 equals the relay's), on WebSocket and on HTTP streaming;
//! a path that refuses WebSocket falls back to HTTP; an outage longer than the keep window
//! attaches again. Also the API's answers to bad input.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentbox::attach::wire::Transport;
use agentbox::attach::{run, Io, Options, Outcome};
use agentbox::transfer::client::Relay;
use agentbox_protocol::term::{TermEnd, TermInfo, TermSize};
use agentbox_tests::fault_proxy::{Fault, FaultProxy};
use agentbox_tests::{spawn_relay, TEST_TOKEN};
use tokio::sync::mpsc;

/// A relay over a tmux server with one bash session `main` (prefix C-b: no config).
struct Box_ {
    dir: tempfile::TempDir,
    relay: std::process::Child,
    port: u16,
}

impl Box_ {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["run", "state", "ws"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        let ok = Command::new("tmux")
            .arg("-S")
            .arg(dir.path().join("run/tmux.sock"))
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "main",
                "-x",
                "100",
                "-y",
                "30",
            ])
            .args(["bash", "--norc", "--noprofile"])
            .current_dir(dir.path().join("ws"))
            .env("PS1", "$ ")
            .status()
            .expect("tmux")
            .success();
        assert!(ok, "tmux new-session");
        let (relay, port) = spawn_relay(dir.path(), &[]);
        Self { dir, relay, port }
    }

    fn direct(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn term(&self, id: &str) -> TermInfo {
        reqwest::blocking_get_json(&format!("{}/v1/terms/{id}", self.direct()))
    }
}

impl Drop for Box_ {
    fn drop(&mut self) {
        let _ = self.relay.kill();
        let _ = self.relay.wait();
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(self.dir.path().join("run/tmux.sock"))
            .arg("kill-server")
            .status();
    }
}

/// A blocking JSON GET with the test token (the tests drive the async client elsewhere).
mod reqwest {
    pub fn blocking_get_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            ::reqwest::Client::new()
                .get(url)
                .bearer_auth(super::TEST_TOKEN)
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json")
        })
    }
}

/// The attach loop on a thread, fed by channels.
struct Viewer {
    keys: mpsc::UnboundedSender<Vec<u8>>,
    received: Arc<Mutex<Vec<u8>>>,
    notices: Arc<Mutex<Vec<String>>>,
    done: std::thread::JoinHandle<anyhow::Result<Outcome>>,
}

impl Viewer {
    fn start(url: &str, transport: Transport, keep: Duration) -> Self {
        let (keys, keys_rx) = mpsc::unbounded_channel();
        let (resize_tx, resizes) = mpsc::unbounded_channel();
        let received = Arc::new(Mutex::new(Vec::new()));
        let notices = Arc::new(Mutex::new(Vec::new()));
        let (r, n) = (received.clone(), notices.clone());
        let relay = Relay::new(url, TEST_TOKEN);
        let done = std::thread::spawn(move || {
            let _keep_resizes_open = resize_tx;
            let io = Io {
                keys: keys_rx,
                resizes,
                size: TermSize {
                    cols: 100,
                    rows: 30,
                },
                output: Box::new(move |b| {
                    r.lock().expect("received").extend_from_slice(b);
                    Ok(())
                }),
                notice: Box::new(move |line| n.lock().expect("notices").push(line.to_string())),
            };
            let options = Options {
                session: Some("main".into()),
                shell: false,
                read_only: false,
                keep,
                transport,
                term: None,
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(run(&relay, &options, io))
        });
        Self {
            keys,
            received,
            notices,
            done,
        }
    }

    fn type_keys(&self, keys: &str) {
        self.keys.send(keys.as_bytes().to_vec()).expect("type");
    }

    fn screen(&self) -> String {
        let bytes = self.received.lock().expect("received").clone();
        let mut parser = vt100::Parser::new(
            std::num::NonZero::new(30).expect("rows"),
            std::num::NonZero::new(100).expect("cols"),
            0,
        );
        parser.process(&bytes);
        parser.screen().contents()
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.screen().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let notices = self.notices.lock().expect("notices").clone();
        panic!(
            "the screen never showed {text:?}:\n{}\nnotices: {notices:?}\nfinished: {}",
            self.screen(),
            self.done.is_finished()
        );
    }

    /// Detaches (tmux's default prefix, C-b d) and returns the outcome.
    fn detach(self) -> Outcome {
        self.type_keys("\x02d");
        let outcome = self.done.join().expect("viewer thread").expect("attach");
        assert_eq!(outcome.end, TermEnd::Detached);
        outcome
    }
}

/// Prints a lot through the session, so the cut lands mid-output.
fn flood(viewer: &Viewer) {
    // A shell loop, not `seq`: tmux skips drawing what scrolls by faster than a frame.
    // Lines of ~90 columns: on a loaded machine tmux may draw only a few frames of the
    // flood, and each frame must still carry thousands of bytes for the cut to land
    // mid-output (short lines made a coalesced flood smaller than the cut point).
    viewer.type_keys("p=$(printf %080d 0); for i in $(seq 1 3000); do echo line-$i-$p; done; echo flood-$((1+1))-done\r");
    viewer.wait_for("flood-2-done");
}

fn assert_lossless(b: &Box_, outcome: &Outcome) {
    let relay_side = b.term(&outcome.term_id);
    assert_eq!(
        outcome.received, relay_side.produced,
        "bytes lost or repeated"
    );
    assert_eq!(
        outcome.digest, relay_side.digest,
        "the stream differs from what the relay sent"
    );
}

fn cut_mid_output(transport: Transport) {
    let b = Box_::start();
    let proxy = FaultProxy::start(b.port, Fault::CutDown(5_000));
    let viewer = Viewer::start(
        &format!("http://127.0.0.1:{}", proxy.port),
        transport,
        Duration::from_secs(60),
    );
    viewer.wait_for("$");
    flood(&viewer);
    assert!(
        proxy.fired.load(std::sync::atomic::Ordering::SeqCst),
        "the cut never happened ({} bytes down)",
        proxy.down.load(std::sync::atomic::Ordering::SeqCst)
    );
    viewer.type_keys("echo typed-after-$((3*3))\r");
    viewer.wait_for("typed-after-9");
    let notices = viewer.notices.lock().expect("notices").clone();
    let outcome = viewer.detach();
    assert!(outcome.resumed >= 1, "no resume: {outcome:?} {notices:?}");
    assert_eq!(
        outcome.reopened, 0,
        "re-attached instead of resuming: {notices:?}"
    );
    assert!(outcome.received > 5_000);
    assert_lossless(&b, &outcome);
}

#[test]
fn a_websocket_cut_mid_output_resumes_with_no_byte_lost_or_repeated() {
    cut_mid_output(Transport::Ws);
}

#[test]
fn an_http_stream_cut_mid_output_resumes_with_no_byte_lost_or_repeated() {
    cut_mid_output(Transport::Http);
}

#[test]
fn a_path_that_refuses_websocket_falls_back_to_http_streaming() {
    let b = Box_::start();
    let proxy = FaultProxy::start(b.port, Fault::RefuseWebSocket);
    let viewer = Viewer::start(
        &format!("http://127.0.0.1:{}", proxy.port),
        Transport::Auto,
        Duration::from_secs(60),
    );
    viewer.type_keys("echo fell-back-$((2*4))\r");
    viewer.wait_for("fell-back-8");
    let notices = viewer.notices.lock().expect("notices").clone();
    let outcome = viewer.detach();
    assert!(
        proxy.fired.load(std::sync::atomic::Ordering::SeqCst),
        "no upgrade was tried"
    );
    assert_eq!(outcome.transport, Transport::Http);
    assert!(
        notices.iter().any(|n| n.contains("refused WebSocket")),
        "{notices:?}"
    );
    assert_lossless(&b, &outcome);
}

#[test]
fn an_outage_longer_than_the_window_attaches_again_and_tmux_redraws() {
    let b = Box_::start();
    let proxy = FaultProxy::start(b.port, Fault::None);
    let viewer = Viewer::start(
        &format!("http://127.0.0.1:{}", proxy.port),
        Transport::Ws,
        Duration::from_secs(1),
    );
    viewer.type_keys("echo before-$((5+5))\r");
    viewer.wait_for("before-10");
    proxy.outage(true);
    // Typed while cut off: sent once the connection is back.
    viewer.type_keys("echo during-$((6+6))\r");
    // The relay ends a viewer-less term a second after the window.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let terms: Vec<TermInfo> = reqwest::blocking_get_json(&format!("{}/v1/terms", b.direct()));
        if terms.iter().all(|t| t.ended == Some(TermEnd::Expired)) || terms.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the term never expired: {terms:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    proxy.outage(false);
    viewer.type_keys("echo after-$((7+7))\r");
    viewer.wait_for("after-14");
    // Nothing typed during the outage was lost.
    viewer.wait_for("during-12");
    // The redraw shows what was on the screen before the outage.
    viewer.wait_for("before-10");
    let notices = viewer.notices.lock().expect("notices").clone();
    let outcome = viewer.detach();
    assert!(outcome.reopened >= 1, "{outcome:?} {notices:?}");
    assert!(notices.iter().any(|n| n.contains("redrawn")), "{notices:?}");
}

#[test]
fn the_terminal_api_refuses_bad_input_with_reasons() {
    let b = Box_::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let http = ::reqwest::Client::new();
        let url = |p: &str| format!("{}{p}", b.direct());
        let post = |p: &str, body: serde_json::Value| {
            http.post(url(p)).bearer_auth(TEST_TOKEN).json(&body).send()
        };
        let status_and_message = |r: ::reqwest::Response| async move {
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (
                status,
                body["error"]["message"].as_str().unwrap_or("").to_string(),
            )
        };
        let size = serde_json::json!({"cols": 80, "rows": 24});
        let cases = [
            (
                serde_json::json!({"session": "a:b", "size": size}),
                400,
                "not a session name",
            ),
            (
                serde_json::json!({"session": "nope", "size": size}),
                404,
                "no session named `nope` (sessions: main)",
            ),
            (
                serde_json::json!({"session": "main", "size": {"cols": 0, "rows": 24}}),
                400,
                "out of range",
            ),
            (
                serde_json::json!({"session": "main", "size": size, "term": "xterm;rm -rf /"}),
                400,
                "TERM must be",
            ),
            (
                serde_json::json!({"session": "main", "size": size, "keep_ms": 999_999_999_u64}),
                400,
                "over the limit",
            ),
        ];
        for (body, status, message) in cases {
            let answer =
                status_and_message(post("/v1/terms", body.clone()).await.expect("post")).await;
            assert_eq!(answer.0, status, "{body}: {answer:?}");
            assert!(answer.1.contains(message), "{body}: {answer:?}");
        }
        // No token, no term.
        let r = http
            .post(url("/v1/terms"))
            .json(&serde_json::json!({"size": size}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 401);
        // A real term: input must follow on; a repeat is skipped; offsets past the end fail.
        let info: TermInfo = post("/v1/terms", serde_json::json!({"size": size}))
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        let input = |offset: u64, body: &'static str| {
            http.post(url(&format!("/v1/terms/{}/input?offset={offset}", info.id)))
                .bearer_auth(TEST_TOKEN)
                .body(body)
                .send()
        };
        assert_eq!(input(0, "ec").await.expect("input").status().as_u16(), 204);
        assert_eq!(
            input(0, "echo").await.expect("input").status().as_u16(),
            204
        );
        let gap = input(9, "x").await.expect("input");
        assert_eq!(gap.status().as_u16(), 409);
        assert_eq!(gap.headers()["x-agentbox-offset"], "4");
        let ahead = http
            .get(url(&format!(
                "/v1/terms/{}/output?offset=999999999",
                info.id
            )))
            .bearer_auth(TEST_TOKEN)
            .send()
            .await
            .expect("get");
        assert_eq!(ahead.status().as_u16(), 400);
        let missing = http
            .get(url("/v1/terms/t00000000000000000000000000000000"))
            .bearer_auth(TEST_TOKEN)
            .send()
            .await
            .expect("get");
        assert_eq!(missing.status().as_u16(), 404);
        let traversal = http
            .get(url("/v1/terms/..%2F..%2Fetc"))
            .bearer_auth(TEST_TOKEN)
            .send()
            .await
            .expect("get");
        assert_eq!(traversal.status().as_u16(), 404);
        let info_now: TermInfo = http
            .get(url(&format!("/v1/terms/{}", info.id)))
            .bearer_auth(TEST_TOKEN)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(info_now.input, 4, "the repeated `ec` was typed twice");
        let closed = http
            .delete(url(&format!("/v1/terms/{}", info.id)))
            .bearer_auth(TEST_TOKEN)
            .send()
            .await
            .expect("delete");
        assert_eq!(closed.status().as_u16(), 204);
    });
}
