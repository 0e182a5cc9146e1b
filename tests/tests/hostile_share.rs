//! A hostile invite handed to a teammate (`agentbox join`): its addresses may hide another
//! host behind userinfo (`http://127.0.0.1:1@host/`), put a "docker" relay on the LAN,
//! send plain http off this machine, or carry what a terminal takes for control sequences
//! (printed later by `agentbox url`); `join @FILE` may name a file that never ends. Each is
//! refused before anything is sent or recorded: no connection reaches the address, the
//! joiner's `AGENTBOX_HOME` keeps no record. No Docker needed: the "relay" is a plain
//! listener on the loopback that would accept anything.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentbox_protocol::share::{Invite, RelayAddress, Scope, ShareId, ShareToken};
use agentbox_tests::bin_path;
use agentbox_tests::run::TimedOutput;

/// A limit far above what a refused join takes (milliseconds).
const LIMIT: Duration = Duration::from_secs(30);

/// A "relay" that answers every request `200 []` and keeps each request's head.
fn open_relay() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut head = String::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => head.push_str(&line),
                }
            }
            log.lock().expect("lock").push(head);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]",
            );
        }
    });
    (port, seen)
}

fn invite(relay: RelayAddress, web_url: Option<String>) -> String {
    Invite {
        provider: "docker".into(),
        box_name: "b1".into(),
        relay,
        web_url,
        share_id: ShareId::generate().expect("id"),
        token: ShareToken::generate().expect("token"),
        scopes: vec![Scope::AttachRead, Scope::Url],
        expires_at_ms: agentbox_protocol::now_millis() + 3_600_000,
    }
    .encode()
}

/// `agentbox ARGS` with `home` as its AGENTBOX_HOME: (exit code, stdout, stderr).
fn agentbox(home: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(bin_path("agentbox"))
        .args(args)
        .env("AGENTBOX_HOME", home)
        .current_dir(home.parent().expect("parent"))
        .output_within(LIMIT)
        .expect("agentbox ran within its limit");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn join_refuses_an_invite_whose_address_is_not_what_it_seems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let (port, seen) = open_relay();
    let here = format!("http://127.0.0.1:{port}");
    let cases = [
        (
            "userinfo hiding the host",
            RelayAddress::Loopback {
                url: format!("http://127.0.0.1:1@127.0.0.1:{port}"),
            },
            None,
            "user name",
        ),
        (
            "a docker relay off the loopback",
            RelayAddress::Loopback {
                url: "http://192.0.2.1:8788".into(),
            },
            None,
            "loopback",
        ),
        (
            "plain http to another machine",
            RelayAddress::Daytona {
                sandbox_id: "sb-1".into(),
                url: "http://192.0.2.1:8788".into(),
                preview_token: None,
            },
            None,
            "plain http",
        ),
        (
            "a web address with C1 control sequences",
            RelayAddress::Loopback { url: here.clone() },
            Some(format!("{here}/\u{9b}2J\u{9b}H")),
            "printable",
        ),
    ];
    for (what, relay, web, expected) in cases {
        let (code, stdout, stderr) = agentbox(&home, &["join", &invite(relay, web)]);
        assert_eq!(code, Some(1), "{what}: {stdout}{stderr}");
        assert!(
            stderr.contains("not an agentbox invite") && stderr.contains(expected),
            "{what}: expected {expected:?} in {stderr}"
        );
        assert!(!stderr.contains('\u{9b}'), "{what}: raw C1 in {stderr:?}");
    }
    assert!(
        seen.lock().expect("lock").is_empty(),
        "a refused invite's address was called: {:?}",
        seen.lock().expect("lock")
    );
    let (code, stdout, stderr) = agentbox(&home, &["list", "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).expect("json"),
        serde_json::json!([]),
        "a refused invite left a record"
    );
    assert!(!home.join("joined").exists(), "a refused invite left files");
}

#[test]
fn join_reads_no_more_of_a_file_than_an_invite_can_be() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let (code, stdout, stderr) = agentbox(&home, &["join", "@/dev/zero"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("longer than any invite"),
        "expected the length named in {stderr}"
    );
}
