//! The bridge token in our own header: the host sends it as `x-agentbox-token` (Daytona's
//! preview proxy takes `Authorization: Bearer` for a Daytona API key), local clients may
//! still send `Authorization: Bearer`; a wrong token in either is refused.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RELAY: &str = env!("CARGO_BIN_EXE_agentbox-relay");
const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Relay {
    _dir: tempfile::TempDir,
    child: Child,
    url: String,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Relay {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("ws")).expect("ws");
    let child = Command::new(RELAY)
        .env("AGENTBOX_RUN_DIR", dir.path().join("run"))
        .env("AGENTBOX_WORKSPACE", dir.path().join("ws"))
        .env("AGENTBOX_BRIDGE_PORT", "0")
        .env("AGENTBOX_WEB_PORT", "0")
        .env("AGENTBOX_STATE_DIR", dir.path().join("state"))
        .env("AGENTBOX_BIND_ADDR", "127.0.0.1")
        .env("AGENTBOX_BRIDGE_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("relay");
    let info = dir.path().join("run/relay.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = loop {
        if let Some(p) = std::fs::read(&info)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["bridge_port"].as_u64())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "relay did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    Relay {
        _dir: dir,
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// The status and error code of a `GET /v1/bridge/poll` with these headers.
fn poll(relay: &Relay, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(async {
            let mut request =
                reqwest::Client::new().get(format!("{}/v1/bridge/poll?wait_ms=0&max=1", relay.url));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or_default())
        })
}

#[test]
fn the_bridge_token_is_taken_from_x_agentbox_token() {
    let relay = start();
    let (status, body) = poll(&relay, &[("x-agentbox-token", TOKEN)]);
    assert_eq!(status, 200, "{body}");
    assert!(body["requests"].is_array(), "not a poll answer: {body}");
    // Local clients' bearer token still works.
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(poll(&relay, &[("authorization", &bearer)]).0, 200);
}

#[test]
fn a_wrong_token_in_our_header_is_refused_even_beside_another_header() {
    let relay = start();
    for headers in [
        vec![("x-agentbox-token", "wrong")],
        vec![("x-agentbox-token", &TOKEN[..63])],
        vec![
            ("x-agentbox-token", "wrong"),
            ("authorization", "Bearer also-wrong"),
        ],
        vec![],
    ] {
        let (status, body) = poll(&relay, &headers);
        assert_eq!(status, 401, "{headers:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
}

/// A refusal waits for the rest of a small body: answered (and the connection closed) while
/// the client was still sending, the client's late body met a reset and it never read the
/// refusal (curl 7.88 over HTTP/2 ended with no status; hyper's client with a broken pipe).
#[test]
fn a_refusal_comes_after_the_requests_small_body() {
    use std::io::{Read, Write};
    let relay = start();
    let addr = relay.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    let body = br#"{"argv":["id"]}"#;
    write!(
        conn,
        "POST /v1/exec HTTP/1.1\r\nhost: x\r\nx-agentbox-token: wrong\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .expect("head");
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut early = [0u8; 64];
    match conn.read(&mut early) {
        Ok(n) => panic!(
            "the refusal came before the body: {:?}",
            String::from_utf8_lossy(&early[..n])
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
    conn.write_all(body).expect("the body is still taken");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !answer.windows(15).any(|w| w == b"wrong bridge to") {
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("{e} after {:?}", String::from_utf8_lossy(&answer)),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("missing or wrong bridge token"), "{answer}");
}
