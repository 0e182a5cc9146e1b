//! The WebProxy end to end: the real ctl daemon supervising real services (the
//! `test-backend` binary), the real relay in front, real HTTP and WebSocket clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentbox_tests::bin_path;
use agentbox_tests::run::TimedOutput;
use futures_util::{SinkExt, StreamExt};

const BACKEND: &str = env!("CARGO_BIN_EXE_test-backend");

struct WebBox {
    dir: tempfile::TempDir,
    ctl: Child,
    relay: Child,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A service running the test backend on `port`, exposed, with a port probe.
fn service(name: &str, port: u16, delay_ms: u64, extra: &str) -> String {
    format!(
        "  {name}:\n    command: [\"{BACKEND}\", \"{port}\", \"{delay_ms}\"]\n    ready_when: {{port: {port}, interval_ms: 20, timeout_ms: 60000}}\n    expose: {{port: {port}}}\n{extra}"
    )
}

impl WebBox {
    /// The box's bridge token (the relay wrote it to its run dir).
    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run/bridge.token"))
            .expect("bridge.token")
            .trim()
            .to_string()
    }

    fn start(config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("ws")).expect("ws");
        std::fs::write(dir.path().join("ws/agentbox.yaml"), config).expect("config");
        let contract = |cmd: &mut Command| {
            cmd.env("AGENTBOX_WORKSPACE", dir.path().join("ws"))
                .env("AGENTBOX_RUN_DIR", dir.path().join("run"))
                .env("AGENTBOX_LOG_DIR", dir.path().join("log"))
                .env("AGENTBOX_STATE_DIR", dir.path().join("state"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        };
        let mut ctl = Command::new(bin_path("agentbox-ctl"));
        ctl.arg("daemon");
        contract(&mut ctl);
        ctl.stderr(std::fs::File::create(dir.path().join("ctl.log")).expect("log"));
        let ctl = ctl.spawn().expect("ctl");
        let mut relay = Command::new(bin_path("agentbox-relay"));
        contract(&mut relay);
        relay
            .env("RUST_LOG", "agentbox_relay=debug")
            .stderr(std::fs::File::create(dir.path().join("relay.log")).expect("log"));
        relay
            .env("AGENTBOX_WEB_PORT", "0")
            .env("AGENTBOX_BRIDGE_PORT", "0")
            .env("AGENTBOX_BIND_ADDR", "127.0.0.1");
        for (k, v) in env {
            relay.env(k, v);
        }
        let relay = relay.spawn().expect("relay");
        let info = dir.path().join("run/relay.json");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            let parsed = std::fs::read(&info)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            if let Some(p) = parsed.and_then(|v| v["web_port"].as_u64()) {
                break u16::try_from(p).expect("port");
            }
            assert!(Instant::now() < deadline, "relay did not start");
            std::thread::sleep(Duration::from_millis(10));
        };
        Self {
            dir,
            ctl,
            relay,
            port,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin_path("agentbox-ctl"))
            .args(args)
            .env("AGENTBOX_RUN_DIR", self.dir.path().join("run"))
            .timed_output()
            .expect("ctl")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ctl(&["status"]).status.success() {
            assert!(Instant::now() < deadline, "the ctl daemon did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = self.ctl(&["wait-ready", "--timeout", "20000"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        // The relay follows the daemon: wait until it has seen the services ready too.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let services = get_json(&self.url("/_agentbox/services"));
            if services["services"]
                .as_array()
                .is_some_and(|s| !s.is_empty() && s.iter().all(|x| x["ready"] == true))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the relay never saw the services ready");
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }
}

impl Drop for WebBox {
    fn drop(&mut self) {
        let _ = self.ctl(&["shutdown"]);
        let _ = self.relay.kill();
        let _ = self.relay.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !matches!(self.ctl.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.ctl.kill();
        let _ = self.ctl.wait();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

fn get_json(url: &str) -> serde_json::Value {
    rt().block_on(async {
        reqwest::get(url)
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    })
}

/// Sends raw bytes, returns what came back until the server closed or 5 s passed.
fn raw(port: u16, request: &[u8]) -> String {
    raw_within(port, request, Duration::from_secs(5))
}

/// `raw` with a read timeout of `limit`.
fn raw_within(port: u16, request: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(limit)).expect("timeout");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn host_is_preserved_and_forwarded_headers_added() {
    let b = WebBox::start(
        &format!("services:\n{}", service("web", free_port(), 0, "")),
        &[],
    );
    b.wait_ready();
    let reply = raw(
        b.port,
        b"GET /host HTTP/1.1\r\nHost: web.box-7.example.com:8443\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body: serde_json::Value =
        serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap_or("")).expect("json body");
    assert_eq!(body["host"], "web.box-7.example.com:8443");
    assert_eq!(body["x-forwarded-host"], "web.box-7.example.com:8443");
    assert_eq!(body["x-forwarded-for"], "127.0.0.1");
    assert_eq!(body["x-forwarded-proto"], "http");
    // HTTP/2 with prior knowledge reaches the HTTP/1 service with the same Host.
    let body: serde_json::Value = rt().block_on(async {
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .expect("client");
        let resp = client.get(b.url("/host")).send().await.expect("h2 get");
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        resp.json().await.expect("json")
    });
    assert_eq!(body["host"], format!("127.0.0.1:{}", b.port));
}

#[test]
fn websocket_echo_with_the_same_host() {
    let b = WebBox::start(
        &format!("services:\n{}", service("web", free_port(), 0, "")),
        &[],
    );
    b.wait_ready();
    rt().block_on(async {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://127.0.0.1:{}/ws", b.port),
            )
            .expect("request");
        request
            .headers_mut()
            .insert("host", "web.preview.example:443".parse().expect("host"));
        let (mut ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("ws connect");
        assert_eq!(response.status(), 101);
        let first = ws.next().await.expect("frame").expect("message");
        assert_eq!(
            first.into_text().expect("text").as_str(),
            "host:web.preview.example:443"
        );
        for i in 0..20 {
            let text = format!("ping {i} {}", "x".repeat(i * 100));
            ws.send(tokio_tungstenite::tungstenite::Message::text(text.clone()))
                .await
                .expect("send");
            let echo = ws.next().await.expect("frame").expect("message");
            assert_eq!(echo.into_text().expect("text").as_str(), text);
        }
        ws.close(None).await.expect("close");
    });
}

/// Asks the test backend to let one held request or gated event go.
fn release(port: u16) {
    let reply = raw(
        port,
        b"GET /release HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// Reads from `s` until `seen` holds `what`; a read that times out fails the test.
fn read_until(s: &mut TcpStream, seen: &mut String, what: &str) {
    let mut buf = [0u8; 1024];
    while !seen.contains(what) {
        let n = s
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("waiting for {what:?}: {e}; seen {seen:?}"));
        assert!(n > 0, "closed before {what:?}: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[test]
fn server_sent_events_are_not_buffered() {
    let b = WebBox::start(
        &format!("services:\n{}", service("web", free_port(), 0, "")),
        &[],
    );
    b.wait_ready();
    // The backend sends the first event at once and each later one only when released,
    // so the stream cannot end, nor a buffer fill, before the client has seen event 0.
    let mut s = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    s.write_all(b"GET /sse?gated=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let t0 = Instant::now();
    let mut seen = String::new();
    read_until(&mut s, &mut seen, "data: 0");
    eprintln!("first event after {:?}", t0.elapsed());
    assert!(
        !seen.contains("data: 1"),
        "an event nobody released: {seen}"
    );
    release(b.port);
    read_until(&mut s, &mut seen, "data: 1");
    assert!(
        !seen.contains("data: 2"),
        "an event nobody released: {seen}"
    );
    release(b.port);
    read_until(&mut s, &mut seen, "data: 2");
}

#[test]
fn a_request_before_the_service_is_ready_is_held_then_served() {
    let b = WebBox::start(
        &format!("services:\n{}", service("web", free_port(), 2500, "")),
        &[],
    );
    // The service listens 2.5 s after it was spawned; make sure the request is sent while
    // it is not ready yet (the relay's own view), so a 200 proves the request was held.
    // The relay may not have reached the supervisor yet: wait until it lists the service.
    let deadline = Instant::now() + Duration::from_secs(10);
    let services = loop {
        let services = get_json(&b.url("/_agentbox/services"));
        if services["services"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
        {
            break services;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never listed the service: {services}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        services["services"][0]["ready"], false,
        "the service was ready too early for this test: {services}"
    );
    let reply = raw(
        b.port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("backend\n"), "{reply}");
}

#[test]
fn past_the_hold_time_a_503_names_the_service_state_and_logs() {
    let b = WebBox::start(
        &format!("services:\n{}", service("web", free_port(), 60_000, "")),
        &[("AGENTBOX_PROXY_HOLD_MS", "400")],
    );
    // The owner (the bridge token in X-Agentbox-Token) sees the last log lines.
    let token = b.token();
    let html = raw(
        b.port,
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Agentbox-Token: {token}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(html.starts_with("HTTP/1.1 503"), "{html}");
    assert!(
        html.contains("web")
            && html.contains("is still starting")
            && html.contains("state: <b>starting</b>"),
        "{html}"
    );
    assert!(html.contains("started (pid"), "no log lines: {html}");
    let json = raw(
        b.port,
        format!("GET / HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nX-Agentbox-Token: {token}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let body: serde_json::Value =
        serde_json::from_str(json.split("\r\n\r\n").nth(1).unwrap_or("")).expect("json");
    assert_eq!(body["service"], "web");
    assert_eq!(body["state"], "starting");
    assert_eq!(body["error"]["code"], "timeout");
    assert!(
        body["log_tail"].as_array().is_some_and(|l| !l.is_empty()),
        "{body}"
    );
}

/// Issue 20 #10: the WebProxy can be public (a Daytona preview of 8080); its error pages
/// show a visitor the service's state, never its log lines (which carry what the
/// command printed), unless the request carries the bridge token — and a wrong token
/// is no token.
#[test]
fn a_visitor_without_the_token_sees_the_state_and_no_log_lines() {
    let b = WebBox::start(
        &format!(
            "services:\n{}",
            service(
                "web",
                free_port(),
                60_000,
                "    env: {DATABASE_URL: postgres://u:pw@db/x}\n"
            )
        ),
        &[("AGENTBOX_PROXY_HOLD_MS", "400")],
    );
    let wrong = "0".repeat(b.token().len());
    for extra in [String::new(), format!("X-Agentbox-Token: {wrong}\r\n")] {
        let html = raw(
            b.port,
            format!("GET / HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
        );
        assert!(
            html.starts_with("HTTP/1.1 503") && html.contains("state: <b>starting</b>"),
            "{html}"
        );
        assert!(html.contains("owner only"), "{html}");
        assert!(!html.contains("started (pid"), "log lines shown: {html}");
        let json = raw(
            b.port,
            format!("GET / HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
        );
        let body: serde_json::Value =
            serde_json::from_str(json.split("\r\n\r\n").nth(1).unwrap_or("")).expect("json");
        assert_eq!(body["state"], "starting", "{body}");
        assert_eq!(body["log_tail"], serde_json::json!([]), "{body}");
    }
}

/// The bridge token a request shows the WebProxy is the owner's: no service sees it, on
/// either proxy path (the general path answers such requests; both drop the header).
#[test]
fn the_bridge_token_never_reaches_a_service() {
    let b = WebBox::start(
        &format!("services:\n{}", service("web", free_port(), 0, "")),
        &[],
    );
    b.wait_ready();
    let token = b.token();
    for close in ["close", "keep-alive"] {
        let reply = raw(
            b.port,
            format!("GET /host HTTP/1.1\r\nHost: x\r\nX-Agentbox-Token: {token}\r\nConnection: {close}\r\n\r\nGET /host HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("\"x-agentbox-token\":null"), "{reply}");
        assert!(
            !reply.contains(&token),
            "the service saw the token: {reply}"
        );
    }
}

#[test]
fn a_service_that_is_down_gets_a_502() {
    let port = free_port();
    let b = WebBox::start(
        &format!("services:\n  web:\n    command: 'echo dying; exit 3'\n    restart: never\n    expose: {{port: {port}}}\n"),
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let owner = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Agentbox-Token: {}\r\nConnection: close\r\n\r\n",
        b.token()
    );
    let reply = loop {
        let reply = raw(b.port, owner.as_bytes());
        // Until the supervisor has seen the exit, the service may still count as running and
        // the proxy reports the refused connection; the settled answer names the state.
        if reply.contains("is not running") || Instant::now() > deadline {
            break reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    assert!(
        reply.contains("is not running (failed)") && reply.contains("dying"),
        "{reply}"
    );
    // A visitor gets the state, not what the service printed.
    let visitor = raw(
        b.port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        visitor.contains("is not running (failed)") && !visitor.contains("dying"),
        "{visitor}"
    );
}

#[test]
fn routing_by_host_label_and_the_services_list() {
    let config = format!(
        "services:\n{}{}",
        service("web", free_port(), 0, ""),
        service("api", free_port(), 0, "")
    );
    let b = WebBox::start(&config, &[]);
    b.wait_ready();
    let services = get_json(&b.url("/_agentbox/services"));
    let names: Vec<&str> = services["services"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["web", "api"]);
    assert_eq!(services["services"][0]["default"], true);
    let port_of = |i: usize| {
        services["services"][i]["port"]
            .as_u64()
            .expect("port")
            .to_string()
    };
    for (host, port) in [
        ("api.box.example", port_of(1)),
        ("web.box.example", port_of(0)),
        ("other.box.example", port_of(0)),
    ] {
        let reply = raw(
            b.port,
            format!("GET /host HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let body: serde_json::Value =
            serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap_or("")).expect("json");
        assert_eq!(body["host"], host);
        assert_eq!(
            body["backend-port"],
            port.as_str(),
            "{host} went to the wrong service"
        );
    }
}

#[test]
fn follows_reloads_live() {
    let b = WebBox::start("services: {}\n", &[]);
    let reply = raw(
        b.port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        reply.starts_with("HTTP/1.1 503") && reply.contains("no service is exposed"),
        "{reply}"
    );
    std::fs::write(
        b.dir.path().join("ws/agentbox.yaml"),
        format!("services:\n{}", service("web", free_port(), 0, "")),
    )
    .expect("write");
    assert!(b.ctl(&["reload"]).status.success());
    let reply = raw(
        b.port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[test]
fn a_backend_restarted_mid_stream_ends_that_stream_and_serves_the_next() {
    let b = WebBox::start(
        &format!("services:\n{}", service("web", free_port(), 0, "")),
        &[],
    );
    b.wait_ready();
    let mut s = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    s.write_all(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(b.ctl(&["restart", "web"]).status.success());
    // The old stream ends (no hang) …
    let t0 = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(
                t0.elapsed() < Duration::from_secs(8),
                "the stream outlived its backend"
            ),
        }
    }
    // … and a new request is held until the new process is ready, then served.
    let reply = raw(
        b.port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[test]
fn a_slow_backend_does_not_hold_up_others() {
    let b = WebBox::start(
        &format!("services:\n{}", service("web", free_port(), 0, "")),
        &[],
    );
    b.wait_ready();
    let port = b.port;
    // A request the backend holds until the test releases it.
    let slow = std::thread::spawn(move || {
        raw_within(
            port,
            b"GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(60),
        )
    });
    let held = || {
        let reply = raw(
            port,
            b"GET /held HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        reply
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while held() != "1" {
        assert!(
            Instant::now() < deadline,
            "the held request never reached the backend"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Ten requests are answered while it is held: none waits behind it.
    let t0 = Instant::now();
    for i in 0..10 {
        let reply = raw(
            port,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(reply.starts_with("HTTP/1.1 200"), "request {i}: {reply:?}");
    }
    eprintln!("10 requests beside a held one took {:?}", t0.elapsed());
    assert_eq!(
        held(),
        "1",
        "the held request ended before the others were served"
    );
    assert!(
        !slow.is_finished(),
        "the held request was answered unreleased"
    );
    release(port);
    assert!(slow.join().expect("slow").ends_with("released\n"));
    // Streaming request bodies pass through too.
    let body = "y".repeat(300_000);
    let echoed = rt().block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/echo"))
            .body(body.clone())
            .send()
            .await
            .expect("post")
            .text()
            .await
            .expect("text")
    });
    assert_eq!(echoed.len(), body.len());
}

#[test]
fn bad_input_gets_431_or_400_and_slow_clients_are_cut_off() {
    let b = WebBox::start(
        &format!("services:\n{}", service("web", free_port(), 0, "")),
        &[("AGENTBOX_PROXY_HEADER_TIMEOUT_MS", "700")],
    );
    b.wait_ready();
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    assert!(raw(b.port, huge.as_bytes()).starts_with("HTTP/1.1 431"));
    assert!(raw(b.port, b"GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(
        raw(b.port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").starts_with("HTTP/1.1 400")
    );
    // A slowloris client: half a head, then nothing. It is cut off; others are served.
    let mut slow = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    assert!(raw(
        b.port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .starts_with("HTTP/1.1 200"));
    slow.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "the slow client was never cut off"
    );
    let _ = b.run_dir();
}

/// What the scripted service has seen.
#[derive(Default)]
struct Seen {
    /// Connections accepted.
    connections: std::sync::atomic::AtomicUsize,
    /// `/die` requests read.
    dies: std::sync::atomic::AtomicUsize,
}

/// A service the test scripts byte by byte: each connection reads request heads (and
/// `Content-Length` bodies) and answers by path, the way no framework would.
fn scripted_service(listener: &std::net::TcpListener, seen: &std::sync::Arc<Seen>) {
    use std::sync::atomic::Ordering;
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { return };
        seen.connections.fetch_add(1, Ordering::SeqCst);
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            loop {
                let Some(end) = read_head(&mut conn, &mut buf) else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end);
                let mut words = head.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < length {
                    let mut chunk = [0u8; 16384];
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                buf.drain(..length);
                if path == "/die" {
                    seen.dies.fetch_add(1, Ordering::SeqCst);
                }
                let reply: Vec<u8> = match (method, path) {
                    ("HEAD", "/len") => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec(),
                    (_, "/len") => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
                    (_, "/info") => b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                    (_, "/chunked") => CHUNKED.to_vec(),
                    (_, "/big") => {
                        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big_body().len()).into_bytes();
                        r.extend_from_slice(&big_body());
                        r
                    }
                    (_, "/upload") => {
                        let text = format!("got {length}");
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len()).into_bytes()
                    }
                    (_, "/bye") => {
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye");
                        return;
                    }
                    (_, "/close") => {
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil-close");
                        return;
                    }
                    // `/die` and anything else: the connection ends with no answer.
                    _ => return,
                };
                if conn.write_all(&reply).is_err() {
                    return;
                }
            }
        });
    }
}

const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";

fn big_body() -> Vec<u8> {
    (0..1_048_576u32).map(|i| (i % 251) as u8).collect()
}

/// Reads until `buf` holds a whole head; its length, or `None` at the end of the stream.
fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 4096];
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether a loopback TCP socket towards `port` is in CLOSE_WAIT (its peer closed and
/// the close has arrived), from `/proc/net/tcp`.
fn close_wait_towards(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let remote = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"08")
    })
}

/// Reads exactly `expected.len()` bytes and compares them.
fn expect_exactly(conn: &mut TcpStream, expected: &[u8], what: &str) {
    let mut got = vec![0u8; expected.len()];
    conn.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        got == expected,
        "{what}: got {:?}",
        String::from_utf8_lossy(&got[..got.len().min(300)])
    );
}

#[test]
fn plain_http1_keeps_its_framing_on_one_connection_and_service_closes_are_survived() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(Seen::default());
    let service_seen = seen.clone();
    std::thread::spawn(move || scripted_service(&listener, &service_seen));
    let b = WebBox::start(
        &format!(
            "services:\n  raw:\n    command: exec sleep 1000\n    ready_when: {{port: {port}}}\n    expose: {{port: {port}}}\n"
        ),
        &[("AGENTBOX_PROXY_HEADER_TIMEOUT_MS", "700")],
    );
    b.wait_ready();
    let mut c = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let len_reply: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    c.write_all(b"GET /len HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    expect_exactly(&mut c, len_reply, "length-framed");
    // Two requests in one write are answered in order; HEAD gets no body.
    c.write_all(b"GET /len HTTP/1.1\r\nHost: x\r\n\r\nHEAD /len HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    expect_exactly(&mut c, len_reply, "pipelined GET");
    expect_exactly(
        &mut c,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        "pipelined HEAD",
    );
    c.write_all(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    expect_exactly(
        &mut c,
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "informational then final",
    );
    c.write_all(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    expect_exactly(&mut c, CHUNKED, "chunked with trailers");
    // A large body moves through the pipe (splice) byte for byte.
    c.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut big = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    big.extend_from_slice(&big_body());
    expect_exactly(&mut c, &big, "1 MiB body");
    // The service closes its connection after answering, without saying so: the next
    // request on the same client connection still gets through.
    c.write_all(b"GET /bye HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    expect_exactly(
        &mut c,
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye",
        "bye",
    );
    // Wait until the service's close has reached the relay's end (its socket to the
    // service is in CLOSE_WAIT): the next request must then find the connection closed
    // and take a new one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !close_wait_towards(port) {
        assert!(
            Instant::now() < deadline,
            "the service's close never reached the relay"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let connections = seen.connections.load(std::sync::atomic::Ordering::SeqCst);
    c.write_all(b"GET /len HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    expect_exactly(&mut c, len_reply, "after the service closed");
    assert_eq!(
        seen.connections.load(std::sync::atomic::Ordering::SeqCst),
        connections + 1,
        "the request after the close did not take exactly one new connection"
    );
    // A body larger than what arrives with the head streams through.
    let upload = vec![b'u'; 300_000];
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        upload.len()
    )
    .into_bytes();
    request.extend_from_slice(&upload);
    c.write_all(&request).expect("write");
    expect_exactly(
        &mut c,
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ngot 300000",
        "streamed upload",
    );
    // A body that ends with the service's connection ends the client's.
    c.write_all(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).expect("read to end");
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close"
    );
    // A POST the service drops without answering is not sent twice: it gets a 502 page.
    let reply = raw(
        b.port,
        b"POST /die HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    assert!(reply.contains("\"service\":\"raw\""), "{reply}");
    assert_eq!(
        seen.dies.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the dropped POST reached the service more than once"
    );
    // A kept-alive client that starts a second head and stalls is cut off like a first.
    let mut slow = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    slow.write_all(b"GET /len HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    expect_exactly(&mut slow, len_reply, "before stalling");
    std::thread::sleep(Duration::from_secs(1));
    slow.write_all(b"GET /len HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        rest.is_empty() && t0.elapsed() < Duration::from_secs(3),
        "{rest:?}"
    );
}
