//! A hostile invite handed to a teammate (`agentbox join`): its addresses may hide another
//! host behind userinfo (`http://127.0.0.1:1@host/`), put a "docker" relay on the LAN,
//! send plain http off this machine, or carry what a terminal takes for control sequences
//! (printed later by `agentbox url`); `join @FILE` may name a file that never ends. Each is
//! refused before anything is sent or recorded: no connection reaches the address, the
//! joiner's `AGENTBOX_HOME` keeps no record. No Docker needed: the "relay" is a plain
//! listener on the loopback that would accept anything. A relay that never ends its answer,
//! or never answers, makes `join` give up with a sentence, not hang.

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

/// How the fake relay answers.
#[derive(Clone, Copy)]
enum Answer {
    /// `200 []`, as a live share's `GET /v1/terms` would.
    Empty,
    /// `200` and a body that never ends.
    Endless,
    /// Nothing: it reads the request and holds the connection.
    Silent,
}

/// A "relay" on the loopback that answers every request as `answer` says and keeps each
/// request's head.
fn open_relay(answer: Answer) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
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
                match answer {
                    Answer::Empty => {
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]",
                        );
                    }
                    Answer::Endless => {
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n[\"",
                        );
                        let block = vec![b'a'; 64 << 10];
                        while conn.write_all(&block).is_ok() {}
                    }
                    // Holds the connection until the client gives up (read sees its end).
                    Answer::Silent => {
                        let _ = reader.read_line(&mut String::new());
                    }
                }
            });
        }
    });
    (port, seen)
}

fn invite(relay: &RelayAddress, web_url: Option<&str>) -> String {
    // Through JSON, so the fields an invite may gain later keep their defaults here.
    let invite: Invite = serde_json::from_value(serde_json::json!({
        "provider": "docker",
        "box_name": "b1",
        "relay": relay,
        "web_url": web_url,
        "share_id": ShareId::generate().expect("id"),
        "token": ShareToken::generate().expect("token"),
        "scopes": [Scope::AttachRead, Scope::Url],
        "expires_at_ms": agentbox_protocol::now_millis() + 3_600_000,
    }))
    .expect("an invite");
    invite.encode()
}

/// A Daytona key the joiner has, which no invite's address may ever see.
const JOINERS_KEY: &str = "dtn_joiners_own_key_0123456789";

/// `agentbox ARGS` with `home` as its AGENTBOX_HOME (and Daytona credentials of its own):
/// (exit code, stdout, stderr).
fn agentbox(home: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(bin_path("agentbox"))
        .args(args)
        .env("AGENTBOX_HOME", home)
        .env("DAYTONA_API_KEY", JOINERS_KEY)
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
    let (port, seen) = open_relay(Answer::Empty);
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
        let (code, stdout, stderr) = agentbox(&home, &["join", &invite(&relay, web.as_deref())]);
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

#[test]
fn join_gives_up_on_a_relay_that_never_finishes_answering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    for (answer, expected) in [
        (Answer::Endless, "over 1 MiB"),
        (Answer::Silent, "within 10s"),
    ] {
        let (port, seen) = open_relay(answer);
        let relay = RelayAddress::Loopback {
            url: format!("http://127.0.0.1:{port}"),
        };
        let (code, stdout, stderr) = agentbox(&home, &["join", &invite(&relay, None)]);
        assert_eq!(code, Some(1), "{stdout}{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
        assert_eq!(seen.lock().expect("lock").len(), 1, "{expected}");
    }
    let (_, stdout, _) = agentbox(&home, &["list", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).expect("json"),
        serde_json::json!([]),
        "a join that failed left a record"
    );
}

#[test]
fn join_never_replaces_a_box_of_the_same_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let (port, seen) = open_relay(Answer::Empty);
    let relay = || RelayAddress::Loopback {
        url: format!("http://127.0.0.1:{port}"),
    };
    let (code, _, stderr) = agentbox(&home, &["join", &invite(&relay(), None)]);
    assert_eq!(code, Some(0), "{stderr}");
    let saved = home.join("joined/b1/invite.json");
    let before = std::fs::read(&saved).expect("the first invite is kept");
    // Another invite naming the same box: refused, the first record and invite untouched.
    let other = invite(&relay(), Some(&format!("http://127.0.0.1:{port}/other")));
    let (code, _, stderr) = agentbox(&home, &["join", &other]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("already exists") && stderr.contains("--name"),
        "expected the name in use and --name in {stderr}"
    );
    assert_eq!(std::fs::read(&saved).expect("kept"), before);
    // Under a name of the joiner's choice it joins beside the first.
    let (code, _, stderr) = agentbox(&home, &["join", "--name", "b2", &other]);
    assert_eq!(code, Some(0), "{stderr}");
    let (_, stdout, _) = agentbox(&home, &["list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let mut names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["b1", "b2"]);
    // What the invites' address saw: their own share tokens, never the joiner's key or
    // the first box's token with the second invite.
    let heads = seen.lock().expect("lock").clone();
    assert_eq!(heads.len(), 3, "{heads:?}");
    let token_of = |invite: &str| Invite::decode(invite).expect("invite").token;
    let other_token = token_of(&other);
    for head in &heads {
        assert!(
            !head.contains(JOINERS_KEY),
            "the joiner's key was sent: {head}"
        );
        assert_eq!(head.matches("abxs_").count(), 1, "{head}");
    }
    assert!(heads[1..].iter().all(|h| h.contains(other_token.expose())));
}
