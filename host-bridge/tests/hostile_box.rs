//! A compromised box's relay (issue 20's siblings): the host reads strings, ids, sizes and
//! times from a relay the box controls. Each test runs `agentbox` against a relay of the
//! test's own that answers what a compromised box would, and checks that nothing of it
//! forges the host's output, reaches a URL or path unchecked, or outlasts its bounds.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{finish_within, Host, TimedOutput, COMMAND_LIMIT};

/// One request the fake relay saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// The content type that makes the fake relay send its body, then bytes without end.
const ENDLESS: &str = "endless";

/// What the fake relay answers: status, content type, body.
type Answer = (u16, &'static str, Vec<u8>);

/// A relay that answers each request with `answer(method, path, body)` and records every
/// request it saw.
fn fake_relay(
    answer: impl Fn(&str, &str, &[u8]) -> Answer + Send + Sync + 'static,
) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let log = log.clone();
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                let mut parts = first.split_whitespace();
                let method = parts.next().unwrap_or_default().to_string();
                let path = parts.next().unwrap_or_default().to_string();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let (status, kind, reply) = answer(&method, &path, &body);
                log.lock().expect("log").push(Seen { method, path, body });
                if kind == ENDLESS {
                    // `reply` first, then bytes without end, until the host hangs up.
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(head.as_bytes());
                    let _ = conn.write_all(&reply);
                    let block = vec![b'z'; 64 << 10];
                    while conn.write_all(&block).is_ok() {}
                    return;
                }
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    reply.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&reply);
            });
        }
    });
    (port, seen)
}

/// A JSON answer.
fn json(status: u16, value: &serde_json::Value) -> Answer {
    (
        status,
        "application/json",
        serde_json::to_vec(value).expect("json"),
    )
}

/// The relay's error answer, with `message` as the box chose it.
fn relay_error(status: u16, message: &str) -> Answer {
    json(
        status,
        &serde_json::json!({"error": {"code": "internal", "message": message}}),
    )
}

/// Registers a ready local box `name` of project `project` whose relay is on `port`.
fn register(host: &Host, project: &Path, name: &str, port: u16) {
    // Creates the state database.
    host.ok(project, &["list"]);
    let boxdir = host.dir.path().join(format!("box-{name}"));
    std::fs::create_dir_all(&boxdir).expect("mkdir");
    let db = rusqlite::Connection::open(host.home().join("state.db")).expect("state.db");
    db.execute(
        "INSERT INTO boxes (name, provider, project, branch, dir, created_at_ms, phase, bridge_url, bridge_token) \
         VALUES (?1, 'local', ?2, ?3, ?4, 0, 'ready', ?5, 'token')",
        rusqlite::params![
            name,
            project.display().to_string(),
            format!("agentbox/{name}"),
            boxdir.display().to_string(),
            format!("http://127.0.0.1:{port}")
        ],
    )
    .expect("insert the box");
}

/// A project directory that is a git repository with one commit.
fn project(host: &Host) -> std::path::PathBuf {
    let dir = host.dir.path().join("project");
    std::fs::create_dir_all(&dir).expect("mkdir");
    common::git_in(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("README"), "hi\n").expect("write");
    common::git_in(&dir, &["add", "."]);
    common::git_in(&dir, &["commit", "-q", "-m", "one"]);
    dir
}

/// Lines a box tries to forge in the host's error output; none may start a line.
const FORGED: &str = "FORGED";

/// The box's words in every shape that could start a line of its own on a terminal.
fn forgeries() -> Vec<String> {
    [
        "x\nFORGED: all files downloaded",
        "x\rFORGED: carriage return",
        "x\r\nFORGED: crlf",
        "x\u{1b}[2K\u{1b}[1GFORGED: erased and rewritten",
        "x\u{1b}EFORGED: ESC E (next line)",
        "x\u{85}FORGED: NEL",
        "x\u{2028}FORGED: line separator",
        "x\u{b}FORGED: vertical tab",
        "x\u{c}FORGED: form feed",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

/// Whether `stderr` shows a line (as a terminal would break it) that starts with the
/// forged text, or holds a raw escape or carriage return.
fn forged(stderr: &str) -> bool {
    stderr
        .split(['\n', '\r', '\u{b}', '\u{c}', '\u{85}', '\u{2028}'])
        .any(|line| line.starts_with(FORGED))
        || stderr.contains('\u{1b}')
        || stderr.contains('\r')
}

#[test]
fn a_box_cannot_forge_lines_in_the_hosts_error_output() {
    let host = Host::new();
    let here = project(&host);
    let cases = forgeries();
    let mut tried = 0;
    for (i, text) in cases.iter().enumerate() {
        // The relay's error message carries the text (an error answer the host prints).
        let message = text.clone();
        let (port, _) = fake_relay(move |_, _, _| relay_error(500, &message));
        let name = format!("err{i}");
        register(&host, &here, &name, port);
        let out = host.run(&here, &["download", &name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "download against a failing relay");
        assert!(
            !forged(&stderr),
            "an error message of the box forged a line ({text:?}):\n{stderr}"
        );
        assert!(
            stderr.contains("FORGED"),
            "the box's words are shown, escaped: {stderr}"
        );
        tried += 1;

        // The listing names a path with the text (the host refuses it and says which).
        let path = format!("/{text}");
        let (port, seen) = fake_relay(move |_, p, _| {
            if p.starts_with("/v1/workspace/listing") {
                json(
                    200,
                    &serde_json::json!({"files": [{"path": path, "digest": "0".repeat(64)}], "skipped_names": 0}),
                )
            } else {
                relay_error(404, "no")
            }
        });
        let name = format!("list{i}");
        register(&host, &here, &name, port);
        let out = host.run(&here, &["download", &name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "download of a hostile listing");
        // Refused at the listing: nothing was fetched from the box after it.
        let asked = seen.lock().expect("log").clone();
        assert!(
            asked.iter().all(|s| s.method == "POST"
                && s.path == "/v1/workspace/listing"
                && serde_json::from_slice::<serde_json::Value>(&s.body).is_ok()),
            "the host went on after a hostile listing: {asked:?}"
        );
        assert!(
            !forged(&stderr),
            "a path listed by the box forged a line ({text:?}):\n{stderr}"
        );
        tried += 1;
    }
    eprintln!("{tried} hostile answers tried");
}

/// A term as the relay describes it, with the id and session the box chose.
fn term_info(id: &str, session: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "session": session, "produced": 0, "digest": "0".repeat(64),
        "input": 0, "held_from": 0, "read_only": false, "ended": null
    })
}

#[test]
fn a_term_id_or_session_the_host_cannot_use_is_refused_before_any_url_is_built() {
    use agentbox::attach::wire::Transport;
    use agentbox::attach::{self, Io, Options};
    use agentbox_protocol::term::TermSize;
    let good_id = format!("t{}", "0123456789abcdef".repeat(2));
    let hostile: Vec<(String, String)> = [
        "../../v1/bridge/result",
        "t0123456789abcdef/../../../v1/blobs",
        "t0123456789abcdef0123456789abcde?",
        "t0123456789abcdef0123456789abcde#",
        "t0123456789abcdef0123456789abcd%2F",
        "http://elsewhere.example/",
        "t0123456789abcdef0123456789abcde\n",
        "T0123456789ABCDEF0123456789ABCDEF",
        "",
    ]
    .iter()
    .map(|id| ((*id).to_string(), "main".to_string()))
    .chain(
        ["a\nFORGED: detached", "\u{1b}[2Jx", "../x", "a:b", ""]
            .iter()
            .map(|s| (good_id.clone(), (*s).to_string())),
    )
    .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (id, session) in &hostile {
        let answer = term_info(id, session);
        let (port, seen) = fake_relay(move |method, path, _| {
            if method == "POST" && path == "/v1/terms" {
                json(201, &answer)
            } else {
                relay_error(404, "no such term")
            }
        });
        let relay =
            agentbox::transfer::client::Relay::new(&format!("http://127.0.0.1:{port}"), "token");
        let (_keys_tx, keys) = tokio::sync::mpsc::unbounded_channel();
        let (_resize_tx, resizes) = tokio::sync::mpsc::unbounded_channel();
        let io = Io {
            keys,
            resizes,
            size: TermSize { cols: 80, rows: 24 },
            output: Box::new(|_| Ok(())),
            notice: Box::new(|_| {}),
        };
        let options = Options {
            session: None,
            shell: false,
            read_only: false,
            keep: std::time::Duration::from_secs(5),
            transport: Transport::Http,
            term: None,
        };
        let started = std::time::Instant::now();
        let result = rt.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(20),
                attach::run(&relay, &options, io),
            )
            .await
        });
        let said = match result {
            Ok(Err(e)) => format!("{e:#}"),
            Ok(Ok(outcome)) => panic!("attached to {id:?} / {session:?}: {outcome:?}"),
            Err(elapsed) => {
                panic!("attach to {id:?} / {session:?} neither failed nor ended ({elapsed})")
            }
        };
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "a hostile answer is refused, not retried: {:?} for {id:?}",
            started.elapsed()
        );
        assert!(
            !said.chars().any(char::is_control),
            "the refusal shows the box's words escaped: {said:?}"
        );
        let asked = seen.lock().expect("log").clone();
        assert!(
            asked
                .iter()
                .all(|s| s.method == "POST" && s.path == "/v1/terms"),
            "the host built a URL from a term it refused ({id:?}, {session:?}): {asked:?}"
        );
    }
    eprintln!("{} hostile terms tried", hostile.len());
}

/// A poll answer of the box's agent-state reports `(id, session, state, since_ms)`.
fn agent_reports(reports: &[(String, String, &str, u64)]) -> serde_json::Value {
    use agentbox_protocol::agent::AgentStatus;
    use agentbox_protocol::bridge::{HostRequest, LeasedRequest, PollResponse, RequestId};
    let requests = reports
        .iter()
        .map(|(id, session, state, since_ms)| LeasedRequest {
            id: RequestId::try_from(id.clone()).expect("request id"),
            lease: format!("lease-{id}"),
            lease_expires_at_ms: agentbox_protocol::now_millis() + 600_000,
            attempt: 1,
            created_at_ms: agentbox_protocol::now_millis(),
            request: HostRequest::AgentState(AgentStatus {
                session: session.parse().expect("session"),
                agent: "claude".into(),
                state: state.parse().expect("state"),
                detail: Some("needs you".into()),
                since_ms: *since_ms,
            }),
        })
        .collect();
    serde_json::to_value(PollResponse { requests }).expect("json")
}

/// A relay that hands out `batch` on its first poll, then nothing (each later poll held a
/// moment), and acknowledges every result; the ids of the results it got are counted.
fn reporting_relay(batch: serde_json::Value) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let handed = Arc::new(Mutex::new(Some(batch)));
    fake_relay(move |_, path, body| {
        if path.starts_with("/v1/bridge/poll") {
            let next = handed.lock().expect("batch").take();
            match next {
                Some(batch) => json(200, &batch),
                None => {
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    json(200, &serde_json::json!({"requests": []}))
                }
            }
        } else if path == "/v1/bridge/result" {
            let posted: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            json(
                200,
                &serde_json::json!({"id": posted["id"], "recorded": true}),
            )
        } else {
            json(200, &serde_json::json!({}))
        }
    })
}

fn results(seen: &Mutex<Vec<Seen>>) -> usize {
    seen.lock()
        .expect("log")
        .iter()
        .filter(|s| s.path == "/v1/bridge/result")
        .count()
}

#[test]
fn agent_reports_obey_policy_notify_a_per_box_budget_and_bounds() {
    let host = Host::new();
    let notified = host.dir.path().join("notified.txt");
    host.program(
        "notify-send",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\n",
            notified.display()
        ),
    );
    let now = agentbox_protocol::now_millis();
    // Project `quiet` denies notifications: a box's `waiting` must not raise one.
    let quiet = host.dir.path().join("quiet");
    std::fs::create_dir_all(&quiet).expect("mkdir");
    common::git_in(&quiet, &["init", "-q", "-b", "main"]);
    host.ok(
        &quiet,
        &["config", "set", "--project", "policy.notify", "deny"],
    );
    let quiet_reports: Vec<_> = (0..4)
        .map(|i| (format!("q{i}"), format!("s{i}"), "waiting", now + i))
        .collect();
    let (quiet_port, quiet_seen) = reporting_relay(agent_reports(&quiet_reports));
    register(&host, &quiet, "quiet", quiet_port);
    // Project `loud` allows them: its box flips 40 sessions to `waiting` (each a first
    // `waiting`, so each would notify), sends a far-future time, and 100 sessions more
    // than the host keeps.
    let loud = project(&host);
    let mut loud_reports: Vec<_> = (0..40)
        .map(|i| (format!("w{i}"), format!("s{i}"), "waiting", now + i))
        .collect();
    loud_reports.push(("future".into(), "s0".into(), "idle", u64::MAX));
    loud_reports.extend((0..100).map(|i| (format!("m{i}"), format!("many{i}"), "working", now)));
    let loud_count = loud_reports.len();
    let (loud_port, loud_seen) = reporting_relay(agent_reports(&loud_reports));
    register(&host, &loud, "loud", loud_port);

    host.ok(&loud, &["bridge", "start"]);
    let all = quiet_reports.len() + loud_count;
    let done = common::eventually(|| results(&quiet_seen) + results(&loud_seen) >= all);
    host.ok(&loud, &["bridge", "stop"]);
    assert!(
        done,
        "the bridge answered {} of {all} reports",
        results(&quiet_seen) + results(&loud_seen)
    );
    let shown = std::fs::read_to_string(&notified).unwrap_or_default();
    assert!(
        !shown.contains("agentbox: quiet"),
        "policy.notify deny, yet the box raised notifications:\n{shown}"
    );
    let loud_shown = shown
        .lines()
        .filter(|l| l.contains("agentbox: loud"))
        .count();
    assert!(
        (1..=3).contains(&loud_shown),
        "one box raised {loud_shown} notifications at once:\n{shown}"
    );
    let states: serde_json::Value = serde_json::from_slice(
        &std::fs::read(host.home().join("agents/loud.json")).expect("agent states"),
    )
    .expect("json");
    let states = states.as_object().expect("by session");
    assert!(
        states.len() <= 64,
        "the host recorded {} agent sessions of one box",
        states.len()
    );
    let held = states["s0"]["since_ms"].as_u64().expect("since_ms");
    assert!(
        held <= agentbox_protocol::now_millis() + 10 * 60 * 1000,
        "a forged far-future time was kept: {held}"
    );
    eprintln!(
        "{} hostile reports tried: {loud_shown} notifications shown, {} sessions kept",
        all,
        states.len()
    );
}

#[test]
fn a_sync_report_cannot_forge_lines_on_the_hosts_terminal() {
    let host = Host::new();
    let here = project(&host);
    let seeded = common_head(&here);
    std::fs::write(here.join("more.txt"), "more\n").expect("write");
    common::git_in(&here, &["add", "more.txt"]);
    common::git_in(&here, &["commit", "-q", "-m", "two"]);
    let mut tried = 0;
    for (i, text) in forgeries().iter().enumerate() {
        let said = text.clone();
        let (port, _) = fake_relay(move |method, path, body| {
            if method == "PUT" && path.starts_with("/v1/uploads/") {
                json(
                    200,
                    &serde_json::json!({"offset": body.len(), "busy": false}),
                )
            } else if method == "POST" && path.starts_with("/v1/sync/") {
                json(
                    200,
                    &serde_json::json!({
                        "commits": said, "merged": true, "changes": said,
                        "written": [], "kept_box_version": [said]
                    }),
                )
            } else {
                relay_error(404, "no")
            }
        });
        let name = format!("sync{i}");
        register(&host, &here, &name, port);
        let boxdir = host.dir.path().join(format!("box-{name}"));
        std::fs::write(
            boxdir.join("sync.json"),
            serde_json::to_vec(
                &serde_json::json!({"head": seeded, "changes_tree": "", "files": {}}),
            )
            .expect("json"),
        )
        .expect("sync.json");
        let out = host.run(&here, &["sync", &name]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "sync against the fake relay: {stderr}"
        );
        assert!(
            stdout.contains(FORGED),
            "the report is shown, escaped: {stdout}"
        );
        assert!(
            !forged(&stdout),
            "a sync report of the box forged a line ({text:?}):\n{stdout}"
        );
        tried += 1;
    }
    eprintln!("{tried} hostile sync reports tried");
}

/// The commit `repo`'s HEAD is at.
fn common_head(repo: &Path) -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo)
        .timed_output()
        .expect("git");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_download_past_its_announced_size_or_with_a_forged_digest_ends_and_is_escaped() {
    let host = Host::new();
    let here = project(&host);
    let content = b"hello".to_vec();
    let digest = blake3::hash(&content).to_hex().to_string();
    // (the digest the box vouches for, whether the copy should land)
    let cases: Vec<(String, bool)> = std::iter::once((digest.clone(), true))
        .chain(forgeries().into_iter().map(|f| (f, false)))
        .collect();
    for (i, (vouched, lands)) in cases.iter().enumerate() {
        let (body, vouched) = (content.clone(), vouched.clone());
        let (port, _) = fake_relay(move |method, path, _| {
            let id = "0123456789abcdef0123456789abcdef";
            if method == "POST" && path == "/v1/downloads" {
                json(
                    200,
                    &serde_json::json!({"id": id, "kind": "file", "size": body.len(), "name": "f.txt", "mode": 420}),
                )
            } else if method == "GET" && path == format!("/v1/downloads/{id}/digest") {
                json(
                    200,
                    &serde_json::json!({"blake3": vouched, "size": body.len()}),
                )
            } else if method == "GET" && path.starts_with(&format!("/v1/downloads/{id}")) {
                // The announced bytes, then more without end.
                (200, ENDLESS, body.clone())
            } else {
                json(200, &serde_json::json!({}))
            }
        });
        let name = format!("dl{i}");
        register(&host, &here, &name, port);
        let dest = host.dir.path().join(format!("got{i}.txt"));
        let mut child = host.spawn(
            &here,
            &[
                "cp",
                &format!("{name}:f.txt"),
                dest.to_str().expect("utf-8"),
            ],
        );
        let ended = common::eventually(|| child.try_wait().is_ok_and(|s| s.is_some()));
        if !ended {
            let _ = child.kill();
        }
        let (ok, out) = common::finish(child);
        assert!(
            ended,
            "cp kept reading a box that sends past its announced size"
        );
        assert_eq!(ok, *lands, "case {i}: {out}");
        assert!(!forged(&out), "a digest of the box forged a line:\n{out}");
        if *lands {
            assert_eq!(std::fs::read(&dest).expect("landed"), b"hello");
        } else {
            assert!(!dest.exists(), "a copy the box could not vouch for landed");
        }
    }
    eprintln!("{} hostile downloads tried", cases.len());
}

#[test]
fn an_upload_offset_past_the_end_is_refused_not_sent_from() {
    let host = Host::new();
    let here = project(&host);
    std::fs::write(here.join("up.txt"), "twelve bytes").expect("write");
    // Each way the box can name an offset: a 409's header, a PUT's answer, the status.
    let cases: [(u16, &'static str, &str); 4] = [
        (
            409,
            "application/json\r\nx-agentbox-offset: 1099511627776",
            "{\"error\":{\"code\":\"conflict\",\"message\":\"offset\"}}",
        ),
        (
            409,
            "application/json\r\nx-agentbox-offset: 18446744073709551615",
            "{\"error\":{\"code\":\"conflict\",\"message\":\"offset\"}}",
        ),
        (
            409,
            "application/json\r\nx-agentbox-offset: 13",
            "{\"error\":{\"code\":\"conflict\",\"message\":\"offset\"}}",
        ),
        (
            200,
            "application/json",
            "{\"offset\": 1099511627776, \"busy\": false}",
        ),
    ];
    for (i, (status, kind, body)) in cases.iter().enumerate() {
        let (status, kind, body) = (*status, *kind, body.as_bytes().to_vec());
        let (port, _) = fake_relay(move |method, path, _| {
            if method == "PUT" && path.starts_with("/v1/uploads/") {
                (status, kind, body.clone())
            } else if method == "GET" && path.starts_with("/v1/uploads/") {
                json(
                    200,
                    &serde_json::json!({"offset": 1u64 << 40, "busy": false}),
                )
            } else {
                relay_error(404, "no")
            }
        });
        let name = format!("up{i}");
        register(&host, &here, &name, port);
        let mut child = host.spawn(&here, &["cp", "up.txt", &format!("{name}:up.txt")]);
        let ended = common::eventually(|| child.try_wait().is_ok_and(|s| s.is_some()));
        if !ended {
            let _ = child.kill();
        }
        let out = finish_within(child, "agentbox cp", COMMAND_LIMIT).expect("wait for agentbox cp");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(ended, "case {i}: cp did not end");
        assert_eq!(out.status.code(), Some(1), "case {i}: {said}");
        assert!(!said.contains("panicked"), "case {i}: {said}");
        assert!(said.contains("upload"), "case {i}: {said}");
    }
    eprintln!("{} hostile upload offsets tried", cases.len());
}
