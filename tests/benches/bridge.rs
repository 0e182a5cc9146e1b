//! Bridge round trip (issue #6): a no-op request (`notify`) from the box's socket to the
//! host bridge daemon and back, 1000 sequential (p50, p99), and 16 concurrent callers
//! (requests/s), with the loopback HTTP floor (`GET /healthz` on the same relay) measured
//! in the same run. Real relay, real `agentbox bridge run`, real SQLite journals.
//!
//! Run: `cargo build --release --workspace && cargo bench -p agentbox-tests --bench bridge`
//! (the binaries it starts must be built first). Prints JSON lines.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentbox_protocol::bridge::{HostRequest, RelayEvent, RelayRequest};
use agentbox_protocol::hello::client_handshake_with;
use agentbox_protocol::Hello;
use futures_util::StreamExt;

const TOKEN: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

fn bin(name: &str) -> std::path::PathBuf {
    let path = std::env::current_exe()
        .expect("exe")
        .parent()
        .and_then(Path::parent)
        .expect("dir")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --workspace` first",
        path.display()
    );
    path
}

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

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

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    let relay = Command::new(bin("agentbox-relay"))
        .env("AGENTBOX_RUN_DIR", &run)
        .env("AGENTBOX_STATE_DIR", dir.path().join("state"))
        .env("AGENTBOX_WORKSPACE", dir.path().join("ws"))
        .env("AGENTBOX_WEB_PORT", "0")
        .env("AGENTBOX_BRIDGE_PORT", "0")
        .env("AGENTBOX_BIND_ADDR", "127.0.0.1")
        .env("AGENTBOX_BRIDGE_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("relay");
    let mut procs = Procs(vec![relay]);
    let info = run.join("relay.json");
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
    let url = format!("http://127.0.0.1:{port}");
    // The host: a state.db that knows this box, and the real bridge daemon.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let state = agentbox::state::State::open(&home.join("state.db")).expect("state");
    state
        .insert(&agentbox::state::BoxRecord {
            name: "bench".into(),
            provider: "local".into(),
            project: dir.path().to_path_buf(),
            branch: "agentbox/bench".into(),
            dir: dir.path().to_path_buf(),
            created_at_ms: 0,
            phase: "ready".into(),
            bridge_url: Some(url.clone()),
            bridge_token: TOKEN.into(),
        })
        .expect("insert");
    let bridge = Command::new(bin("agentbox"))
        .args(["bridge", "run"])
        .env("AGENTBOX_HOME", &home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bridge");
    procs.0.push(bridge);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let socket = run.join("relay.sock");
    rt.block_on(async {
        // Warm up: the daemon finds the box within a second.
        for _ in 0..20 {
            notify(&socket).await;
        }
        let mut seq = Vec::with_capacity(1000);
        for _ in 0..1000 {
            seq.push(notify(&socket).await);
        }
        seq.sort();
        let client = reqwest::Client::new();
        let mut floor = Vec::with_capacity(1000);
        for _ in 0..1000 {
            let t = Instant::now();
            client.get(format!("{url}/healthz")).send().await.expect("get").bytes().await.expect("body");
            floor.push(t.elapsed());
        }
        floor.sort();
        println!(
            "{{\"measure\":\"bridge_notify_round_trip_ms\",\"n\":1000,\"p50\":{:.3},\"p99\":{:.3},\"http_floor_p50\":{:.3},\"http_floor_p99\":{:.3},\"target_p50_max\":2.0,\"target_p99_max\":10.0}}",
            pct(&seq, 0.5), pct(&seq, 0.99), pct(&floor, 0.5), pct(&floor, 0.99)
        );
        let socket = Arc::new(socket);
        let t = Instant::now();
        let per = 100;
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let socket = socket.clone();
                tokio::spawn(async move {
                    for _ in 0..per {
                        notify(&socket).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let rate = f64::from(16 * per) / t.elapsed().as_secs_f64();
        println!("{{\"measure\":\"bridge_notify_16_concurrent\",\"requests\":{},\"per_second\":{rate:.0},\"target_min\":2000}}", 16 * per);
    });
}
