//! Bridge round trip through Daytona's preview proxy (issue 19): a no-op request
//! (`notify`) from the box's socket to the real host bridge daemon and back, where the
//! daemon reaches the relay through `daytona-fake`'s preview proxy, as it reaches a Daytona
//! sandbox — once over HTTPS (the fake's default, its CA trusted through `SSL_CERT_FILE`)
//! and once over plain HTTP (`--plain-http`), in the same run. 1000 sequential calls each
//! (p50, p99), and the TLS handshakes the fake counted during the 1000 HTTPS calls
//! (`GET /_fake/stats`): the bridge must reuse its connection.
//!
//! Targets: HTTPS p50 ≤ 5 ms and ≤ 2× the plain-HTTP p50; ≤ 2 handshakes per 1000 calls.
//!
//! Run: `cargo build --release --workspace && cargo bench -p agentbox-tests --bench
//! daytona_bridge` (the binaries it starts must be built first). Prints JSON lines and
//! exits non-zero when a target is missed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentbox_protocol::bridge::{HostRequest, RelayEvent, RelayRequest};
use agentbox_protocol::hello::client_handshake_with;
use agentbox_protocol::Hello;
use agentbox_tests::fake_tls::{http_client, DaytonaFake};
use agentbox_tests::{bin_path, spawn_relay, TEST_TOKEN};
use futures_util::StreamExt;
use serde_json::{json, Value};

const KEY: &str = "bench-key";
const CALLS: usize = 1000;

/// Child processes, ended when dropped (before the fake, which is dropped last).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One `notify` from the box's side, submitted on `relay.sock` and followed to its end.
async fn notify(socket: &Path) -> Duration {
    let t = Instant::now();
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let request = RelayRequest::Submit {
        request: HostRequest::Notify {
            message: "bench".into(),
        },
        wait_ms: 30_000,
    };
    let (mut conn, _) = client_handshake_with::<_, RelayEvent, RelayRequest>(
        stream,
        &Hello::new("bench", "0"),
        request,
    )
    .await
    .expect("handshake");
    while let Some(Ok(event)) = conn.next().await {
        match event {
            RelayEvent::Finished(_) => return t.elapsed(),
            RelayEvent::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    panic!("the relay closed the connection");
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// What one scheme measured.
struct Figures {
    p50: f64,
    p99: f64,
    handshakes: u64,
    connections: u64,
}

/// `METHOD {root}{path}` with the API key.
async fn api(
    client: &reqwest::Client,
    root: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = client
        .request(method, format!("{root}{path}"))
        .bearer_auth(KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Sets up the fake (HTTPS, or plain HTTP), a relay as its sandbox's port 8788, a Daytona
/// box record and the bridge daemon, and measures [`CALLS`] sequential round trips.
fn measure(https: bool) -> Figures {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["run", "state", "ws", "home"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
    }
    let args = ["--api-key", KEY];
    let fake = if https {
        DaytonaFake::start(&args, &[])
    } else {
        DaytonaFake::start_with(&[&args[..], &["--plain-http"]].concat(), &[], "http")
    };
    let (relay, relay_port) = spawn_relay(dir.path(), &[]);
    let mut procs = Procs(vec![relay]);
    let home = dir.path().join("home");
    let name = "bench";
    let home_label = agentbox::provider::docker::home_label(&home);
    let sandbox_name = agentbox::provider::daytona::sandbox_name(name, &home_label);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let client = if https {
        http_client()
    } else {
        reqwest::Client::new()
    };
    let root = fake.root.clone();
    let url = rt.block_on(async {
        let created = api(
            &client,
            &root,
            reqwest::Method::POST,
            "/api/sandbox",
            Some(json!({"name": sandbox_name,
                "labels": {"agentbox.box": name, "agentbox.home": home_label}})),
        )
        .await;
        let id = created["id"].as_str().expect("id").to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = api(
                &client,
                &root,
                reqwest::Method::GET,
                &format!("/api/sandbox/{id}"),
                None,
            )
            .await;
            if s["state"] == "started" {
                break;
            }
            assert!(Instant::now() < deadline, "the sandbox did not start: {s}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ok = client
            .post(format!("{root}/_fake/upstream"))
            .json(
                &json!({"sandbox": id, "port": 8788, "target": format!("127.0.0.1:{relay_port}")}),
            )
            .send()
            .await
            .expect("upstream")
            .status();
        assert!(ok.is_success(), "upstream: {ok}");
        let link = api(
            &client,
            &root,
            reqwest::Method::GET,
            &format!("/api/sandbox/{id}/ports/8788/preview-url"),
            None,
        )
        .await;
        link["url"].as_str().expect("url").to_string()
    });
    let state = agentbox::state::State::open(&home.join("state.db")).expect("state");
    state
        .insert(&agentbox::state::BoxRecord {
            name: name.into(),
            provider: "daytona".into(),
            project: dir.path().to_path_buf(),
            branch: format!("agentbox/{name}"),
            dir: dir.path().to_path_buf(),
            created_at_ms: 0,
            phase: "ready".into(),
            bridge_url: Some(url),
            bridge_token: TEST_TOKEN.into(),
        })
        .expect("insert");
    let bridge = Command::new(bin_path("agentbox"))
        .args(["bridge", "run"])
        .env("AGENTBOX_HOME", &home)
        .env("DAYTONA_API_URL", fake.api())
        .env("DAYTONA_API_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bridge");
    procs.0.push(bridge);
    let socket = dir.path().join("run/relay.sock");
    let stats = || async {
        let v: Value = client
            .get(format!("{root}/_fake/stats"))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json");
        (
            v["handshakes"].as_u64().unwrap_or(0),
            v["connections"].as_u64().unwrap_or(0),
        )
    };
    let figures = rt.block_on(async {
        // Warm up: the daemon finds the box, mints its preview link and connects.
        for _ in 0..20 {
            tokio::time::timeout(Duration::from_secs(30), notify(&socket))
                .await
                .expect("the bridge answers within 30 s");
        }
        let (handshakes_before, connections_before) = stats().await;
        let mut seq = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            seq.push(notify(&socket).await);
        }
        let (handshakes_after, connections_after) = stats().await;
        seq.sort();
        Figures {
            p50: pct(&seq, 0.5),
            p99: pct(&seq, 0.99),
            handshakes: handshakes_after - handshakes_before,
            connections: connections_after - connections_before,
        }
    });
    drop(procs);
    drop(fake);
    figures
}

fn main() {
    let plain = measure(false);
    let tls = measure(true);
    let ratio = tls.p50 / plain.p50;
    let ok = tls.p50 <= 5.0 && ratio <= 2.0 && tls.handshakes <= 2;
    println!(
        "{{\"measure\":\"daytona_bridge_round_trip_ms\",\"n\":{CALLS},\"https_p50\":{:.3},\"https_p99\":{:.3},\"plain_p50\":{:.3},\"plain_p99\":{:.3},\"https_over_plain_p50\":{ratio:.2},\"target_https_p50_max\":5.0,\"target_ratio_max\":2.0}}",
        tls.p50, tls.p99, plain.p50, plain.p99
    );
    println!(
        "{{\"measure\":\"daytona_bridge_tls_handshakes_per_{CALLS}_calls\",\"handshakes\":{},\"connections\":{},\"plain_connections\":{},\"target_max\":2}}",
        tls.handshakes, tls.connections, plain.connections
    );
    if !ok {
        eprintln!("a target was missed");
        std::process::exit(1);
    }
}
