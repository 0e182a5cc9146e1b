//! A box whose relay answers too much (issue 20 #8): the host bridge reads at most a cap of
//! any answer, says which box it refused and why, and backs off instead of polling again
//! in a tight loop.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Host;

/// The size of each poll answer of the fake relay (the issue saw 700 MB).
const HUGE: usize = 400 << 20;

/// A relay that answers every `GET /v1/bridge/poll` with `HUGE` bytes of valid JSON and no
/// announced length (so only reading it tells its size); counts the polls.
fn hostile_relay() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let polls = Arc::new(AtomicUsize::new(0));
    let counted = polls.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                if !first.contains("/v1/bridge/poll") {
                    let _ = conn.write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    return;
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"requests\":[],\"pad\":\"",
                );
                let block = vec![b'a'; 1 << 20];
                for _ in 0..HUGE >> 20 {
                    if conn.write_all(&block).is_err() {
                        return; // the host stopped reading: good
                    }
                }
                let _ = conn.write_all(b"\"}");
            });
        }
    });
    (port, polls)
}

/// The peak resident size of `pid`, in KiB.
fn vm_hwm_kib(pid: i64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn a_box_answering_a_huge_poll_is_refused_reported_and_backed_off() {
    let host = Host::new();
    let here = host.dir.path().to_path_buf();
    // Creates the state database.
    host.ok(&here, &["list"]);
    let (port, polls) = hostile_relay();
    let boxdir = here.join("evil-box");
    std::fs::create_dir_all(&boxdir).expect("mkdir");
    let db = rusqlite::Connection::open(host.home().join("state.db")).expect("state.db");
    db.execute(
        "INSERT INTO boxes (name, provider, project, branch, dir, created_at_ms, phase, bridge_url, bridge_token) \
         VALUES ('evil', 'local', ?1, 'agentbox/evil', ?2, 0, 'ready', ?3, 'token')",
        rusqlite::params![
            here.display().to_string(),
            boxdir.display().to_string(),
            format!("http://127.0.0.1:{port}")
        ],
    )
    .expect("insert the box");

    host.ok(&here, &["bridge", "start"]);
    let status: serde_json::Value =
        serde_json::from_str(&host.ok(&here, &["bridge", "status", "--json"])).expect("json");
    let pid = status["pid"].as_i64().expect("bridge pid");
    std::thread::sleep(Duration::from_secs(12));
    let hwm = vm_hwm_kib(pid);
    let seen = polls.load(Ordering::SeqCst);
    let audit = host.ok(&here, &["audit", "--json"]);
    host.ok(&here, &["bridge", "stop"]);
    db.execute("DELETE FROM boxes WHERE name = 'evil'", [])
        .expect("forget the box");

    eprintln!("bridge VmHWM {} MiB, {seen} polls in 12 s", hwm / 1024);
    assert!(
        hwm < 150 * 1024,
        "the host bridge grew to {} MiB reading the box's answers",
        hwm / 1024
    );
    assert!(
        (1..=3).contains(&seen),
        "the host polled the oversized box {seen} times in 12 s"
    );
    let audit: serde_json::Value = serde_json::from_str(&audit).expect("audit json");
    let refused = audit
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["kind"] == "poll" && e["decision"] == "refused" && e["box_name"] == "evil")
        .unwrap_or_else(|| panic!("no audit entry names the refused box: {audit}"));
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("box evil") && detail.contains(&(16u64 << 20).to_string()),
        "the audit entry should name the box and the cap: {detail}"
    );
}
